"""Decoding: greedy and beam search (ids in, ids out), and `translate` (text in, text out).

Dimension legend: B batch (sentences), K beam size, n live rows, S source length, V vocab.

Both searches are batched and incremental: the encoder runs once, the decoder is fed one token per
step with the `DecoderCache` (cross-attention K/V computed once per sentence, self-attention K/V
appended). Sentences that are done leave the batch; only then is the per-sentence part of the cache
(cross-attention K/V) gathered again, while a beam step moves only the self-attention K/V of the
beams. `use_cache=False` recomputes the decoder over the whole prefix at every step (the reference
the tests compare the cache against).

Conventions: decoding starts from bos; pad and bos are never generated; a hypothesis ends at eos
or after `max_len` generated tokens (counting the eos; capped by the model's max_positions);
returned ids exclude bos and eos. Beam scores are summed log-probabilities divided by the GNMT
length penalty ((5 + length) / 6) ** length_penalty, length counting the eos; a sentence stops when
K hypotheses have ended (among the K best candidates of a step), as in fairseq. The searches switch
the model to eval mode and back.

Expert parallelism (`pipeline.model.expert_parallel`): every rank of an expert-parallel model decodes its
own sentences, and every MoE layer call exchanges tokens with the other ranks, so the ranks must run the
same number of encoder passes and decoder steps. The searches agree on stopping (`_Steps`: a flag carried by
the decoder's exchanges, or an all-reduce per step when the decoder has no MoE layer), and a rank whose
sentences are done feeds empty steps (0 rows) until all are; `translate` runs as many batches on every rank
(empty ones where a rank has fewer). Without sharded experts nothing changes.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch import Tensor

from pipeline.errors import PipelineError
from pipeline.model.expert_parallel import LOCKSTEP, ShardedExperts, all_ranks_done, expert_parallel_group

MaxLen = Union[int, Sequence[int], Tensor]


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _limits(max_len: MaxLen, batch: int, max_positions: int) -> list[int]:
    """Per-sentence length limits, capped by the model's max_positions."""
    if isinstance(max_len, Tensor):
        max_len = max_len.tolist()
    values = [int(max_len)] * batch if isinstance(max_len, (int, float)) else [int(x) for x in max_len]
    if len(values) != batch:
        raise ValueError(f"max_len has {len(values)} entries for a batch of {batch}")
    return [max(1, min(v, max_positions)) for v in values]


def _never_generated(logits: Tensor, cfg) -> Tensor:
    """pad and bos are never generated (as in fairseq): their scores are -inf."""
    return logits.index_fill(-1, torch.tensor([cfg.pad_id, cfg.bos_id], device=logits.device),
                             float("-inf"))


class _CachedDecoder:
    """Feeds one token per row per step through the KV cache."""

    def __init__(self, model, memory, src_lang: Tensor, tgt_lang: Tensor):
        self.model = model
        self.cache = model.start_decoding(memory, src_lang, tgt_lang)

    def step(self, last: Tensor) -> Tensor:
        """last (n, 1) -> next-token logits (n, V)."""
        logits, self.cache = self.model.decode_step(last, self.cache)
        return _never_generated(logits[:, -1], self.model.cfg)

    def reorder(self, index: Tensor, memory: bool = True) -> None:
        self.cache = self.cache.reorder(index, memory)


class _UncachedDecoder:
    """The reference: re-decodes the whole prefix at every step."""

    def __init__(self, model, memory, src_lang: Tensor, tgt_lang: Tensor):
        self.model, self.memory = model, memory
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.prefix = memory.states.new_zeros(memory.states.shape[0], 0, dtype=torch.long)

    def step(self, last: Tensor) -> Tensor:
        self.prefix = torch.cat([self.prefix, last], dim=1)
        logits = self.model.decode(self.prefix, self.memory, self.src_lang, self.tgt_lang).logits
        return _never_generated(logits[:, -1], self.model.cfg)

    def reorder(self, index: Tensor, memory: bool = True) -> None:
        # the reference moves every row whatever `memory` says: the tests hold the cache against it
        self.memory = self.memory._replace(states=self.memory.states.index_select(0, index),
                                           token_mask=self.memory.token_mask.index_select(0, index))
        self.src_lang = self.src_lang.index_select(0, index)
        self.tgt_lang = self.tgt_lang.index_select(0, index)
        self.prefix = self.prefix.index_select(0, index)


def _start(model, src: Tensor, src_lang: Tensor, tgt_lang: Tensor, use_cache: bool):
    memory = model.encode(src, src_lang, tgt_lang)
    return (_CachedDecoder if use_cache else _UncachedDecoder)(model, memory, src_lang, tgt_lang)


class _Steps:
    """When a search loop ends. One process: as soon as its sentences are done (`before`). An expert-parallel
    model: when every rank's are. Where the decoder has sharded MoE layers, each rank's "done" flag rides on
    their exchanges (`LOCKSTEP`): every rank steps, and `after` the step says whether every rank was done
    before it (that step was then idle everywhere: one wasted step per search, no collective of its own).
    Otherwise the ranks agree by an all-reduce before each step."""

    def __init__(self, model, device):
        self.parallel, self.group = expert_parallel_group(model)
        self.device = device if device.type == "cuda" else torch.device("cpu")
        self.piggyback = self.parallel and any(
            isinstance(moe.experts, ShardedExperts) for name, moe in model.moe_layers().items()
            if name.startswith("decoder."))
        LOCKSTEP.set(None)

    def before(self, done: bool) -> bool:
        if not self.parallel:
            return done
        if self.piggyback:
            LOCKSTEP.set(int(done))
            return False
        return all_ranks_done(done, self.group, self.device)

    def after(self) -> bool:
        if not self.piggyback:
            return False
        all_done, heard = LOCKSTEP.all_done, LOCKSTEP.heard
        LOCKSTEP.set(None)
        if not heard:
            raise RuntimeError("expert-parallel decoding: a decoder step ran no sharded MoE layer")
        return all_done


@torch.inference_mode()
def greedy_search(model, src: Tensor, src_lang: Tensor, tgt_lang: Tensor, max_len: MaxLen,
                  use_cache: bool = True) -> list[list[int]]:
    """src (B, S) -> B lists of generated ids (no bos, no eos)."""
    cfg = model.cfg
    B, device = src.shape[0], src.device
    limits = _limits(max_len, B, cfg.max_positions)
    with _eval_mode(model):
        decoder = _start(model, src, src_lang, tgt_lang, use_cache)
        alive = list(range(B))  # sentence of each live row
        outputs: list[list[int]] = [[] for _ in range(B)]
        last = torch.full((B, 1), cfg.bos_id, dtype=torch.long, device=device)
        steps, done = _Steps(model, device), B == 0
        while not steps.before(done):  # ends by `done` at the latest after max(limits) steps
            token = decoder.step(last).argmax(dim=-1)  # (n,); 0 rows once done (expert parallel)
            if steps.after():
                break
            if done:
                continue
            keep = []
            for row, (b, t) in enumerate(zip(alive, token.tolist())):
                if t == cfg.eos_id:
                    continue
                outputs[b].append(t)
                if len(outputs[b]) < limits[b]:
                    keep.append(row)
            if not keep:
                done = True
                decoder.reorder(token.new_zeros(0))
                last = last[:0]
                continue
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=device)
                decoder.reorder(index)
                token = token.index_select(0, index)
                alive = [alive[r] for r in keep]
            last = token[:, None]
    return outputs


@torch.inference_mode()
def beam_search(model, src: Tensor, src_lang: Tensor, tgt_lang: Tensor, beam_size: int,
                length_penalty: float, max_len: MaxLen, use_cache: bool = True) -> list[list[int]]:
    """src (B, S) -> for each sentence the best finished hypothesis (ids, no bos/eos)."""
    cfg = model.cfg
    B, K, device = src.shape[0], beam_size, src.device
    limits = _limits(max_len, B, cfg.max_positions)
    with _eval_mode(model):
        decoder = _start(model, src, src_lang, tgt_lang, use_cache)
        decoder.reorder(torch.arange(B, device=device).repeat_interleave(K))  # K rows per sentence
        alive = list(range(B))
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
        seqs = torch.zeros(B * K, 0, dtype=torch.long, device=device)
        last = torch.full((B * K, 1), cfg.bos_id, dtype=torch.long, device=device)
        steps, done, step = _Steps(model, device), B == 0, -1
        while not steps.before(done):  # ends by `done` at the latest after max(limits) steps
            if done:  # expert parallel: this rank's sentences are done, others' may not be
                decoder.step(last)
                if steps.after():
                    break
                continue
            step += 1
            n, length = len(alive), step + 1
            penalty = ((5.0 + length) / 6.0) ** length_penalty
            log_probs = decoder.step(last).float().log_softmax(dim=-1)  # (n*K, V)
            steps.after()  # False: this rank was not done
            V = log_probs.shape[-1]
            candidates = (scores[:, :, None] + log_probs.view(n, K, V)).view(n, K * V)
            top_scores, top_index = candidates.topk(min(2 * K, K * V), dim=1)  # (n, 2K)
            parent, token = top_index // V, top_index % V
            is_eos = token == cfg.eos_id
            # hypotheses ending here: eos among the K best candidates
            for row, j in (is_eos[:, :K] & top_scores[:, :K].isfinite()).nonzero().tolist():
                b = alive[row]
                if len(finished[b]) < K:
                    hyp = seqs[row * K + parent[row, j]].tolist()
                    finished[b].append((top_scores[row, j].item() / penalty, hyp))
            # the search goes on with the K best candidates that do not end
            order = is_eos.to(torch.int8).argsort(dim=1, stable=True)[:, :K]
            scores = top_scores.gather(1, order)
            parent, token = parent.gather(1, order), token.gather(1, order)
            rows = (torch.arange(n, device=device)[:, None] * K + parent).view(-1)  # (n*K,)
            seqs = torch.cat([seqs.index_select(0, rows), token.view(-1, 1)], dim=1)
            keep = []
            for row, b in enumerate(alive):
                if len(finished[b]) >= K:
                    continue
                if length >= limits[b]:  # out of room: the live hypotheses end here, without eos
                    for k in range(K):
                        if scores[row, k].isfinite():
                            finished[b].append((scores[row, k].item() / penalty,
                                                seqs[row * K + k].tolist()))
                    continue
                keep.append(row)
            if not keep:
                done = True
                decoder.reorder(rows[:0])
                last = last[:0]
                continue
            if len(keep) == n:  # every sentence goes on: only the beams' own state moves
                decoder.reorder(rows, memory=False)
                last = token.view(-1, 1)
                continue
            keep_t = torch.tensor(keep, device=device)
            keep_rows = (keep_t[:, None] * K + torch.arange(K, device=device)).view(-1)
            decoder.reorder(rows.index_select(0, keep_rows))
            scores = scores.index_select(0, keep_t)
            seqs = seqs.index_select(0, keep_rows)
            last = token.view(-1, 1).index_select(0, keep_rows)
            alive = [alive[r] for r in keep]
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in finished]


# --------------------------------------------------------------------------------------------------
# text in, text out


def pad_batch(rows: list[list[int]], pad_id: int, device="cpu") -> Tensor:
    """Id lists -> (B, L) padded on the right."""
    out = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device)


def token_batches(lengths: Sequence[int], budget: int, beam_size: int = 1) -> list[list[int]]:
    """Indices sorted by length (longest first), cut into batches of at most `budget` padded source
    tokens times the beam size (at least one sentence per batch)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] * beam_size <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def _same_count_on_every_rank(model, batches: list[list[int]], device) -> list[list[int]]:
    """An expert-parallel model's ranks must run as many batches: pad with empty ones to the most any has."""
    parallel, group = expert_parallel_group(model)
    if not parallel:
        return batches
    import torch.distributed as dist

    count = torch.tensor([len(batches)], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(count, op=dist.ReduceOp.MAX, group=group)
    return batches + [[] for _ in range(int(count.item()) - len(batches))]


def translate(model, vocab, sources: list[str], src_lang: str, tgt_lang: str, cfg,
              device: Optional[torch.device | str] = None,
              progress: Optional[Callable[[int], None]] = None) -> list[str]:
    """Translate `sources` (untokenized text) with `cfg: DecodeConfig`; outputs in input order.

    Each source is encoded as `<2tgt> ... eos`; its length limit is max_len_a * len + max_len_b
    tokens; greedy search for beam_size 1, beam search otherwise. `progress(n)` is called after each
    batch with the number of sentences it held.
    """
    languages = model.cfg.languages
    for lang in (src_lang, tgt_lang):
        if lang not in languages:
            raise PipelineError(f"language {lang!r} is not one the model knows ({', '.join(languages)})")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    encoded = [vocab.encode_source(text, tgt_lang) for text in sources]
    results: list[str] = [""] * len(sources)
    batches = _same_count_on_every_rank(
        model, token_batches([len(e) for e in encoded], cfg.batch_tokens, cfg.beam_size), device)
    with torch.inference_mode(), _eval_mode(model):
        for batch in batches:
            src = pad_batch([encoded[i] for i in batch], model.cfg.pad_id, device) if batch else \
                torch.full((0, 1), model.cfg.pad_id, dtype=torch.long, device=device)
            src_ids = torch.full((len(batch),), languages.index(src_lang), device=device)
            tgt_ids = torch.full((len(batch),), languages.index(tgt_lang), device=device)
            limits = [int(cfg.max_len_a * len(encoded[i]) + cfg.max_len_b) for i in batch]
            if cfg.beam_size == 1:
                hyps = greedy_search(model, src, src_ids, tgt_ids, limits)
            else:
                hyps = beam_search(model, src, src_ids, tgt_ids, cfg.beam_size, cfg.length_penalty,
                                   limits)
            for i, ids in zip(batch, hyps):
                results[i] = vocab.decode(ids)
            if progress is not None:
                progress(len(batch))
    return results
