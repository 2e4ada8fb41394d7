"""Training batches: directions mixed by temperature sampling, length-bucketed under a token budget.

The stream is a deterministic function of (seed, batch index): batches come from "pools" of sentences
sampled with `temperature_probs`, sorted by length and cut into batches whose padded size fits the budget,
then shuffled. Resuming at step N regenerates the same stream and skips N batches, so a resumed run sees
exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

POOL_SENTENCES = 4096  # sentences per pool: large enough for tight length buckets


@dataclass
class Example:
    source: list[int]  # token ids, starting with the <2xx> tag, ending with eos
    target: list[int]  # token ids, ending with eos
    src_lang: int
    tgt_lang: int


@dataclass
class Batch:
    src: torch.Tensor  # (B, S)
    tgt_in: torch.Tensor  # (B, T): bos + target[:-1]
    tgt_out: torch.Tensor  # (B, T): target
    src_lang: torch.Tensor  # (B,)
    tgt_lang: torch.Tensor  # (B,)

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device) for t in (self.src, self.tgt_in, self.tgt_out, self.src_lang,
                                              self.tgt_lang)))

    @property
    def num_target_tokens(self) -> int:
        return int((self.tgt_out != 0).sum())


def collate(examples: Sequence[Example], pad_id: int, bos_id: int) -> Batch:
    """Pad a list of examples into a `Batch` (right padding)."""
    b = len(examples)
    s = max(len(e.source) for e in examples)
    t = max(len(e.target) for e in examples)
    src = torch.full((b, s), pad_id, dtype=torch.long)
    tgt_in = torch.full((b, t), pad_id, dtype=torch.long)
    tgt_out = torch.full((b, t), pad_id, dtype=torch.long)
    for i, e in enumerate(examples):
        src[i, : len(e.source)] = torch.tensor(e.source)
        tgt_out[i, : len(e.target)] = torch.tensor(e.target)
        tgt_in[i, 0] = bos_id
        tgt_in[i, 1 : len(e.target)] = torch.tensor(e.target[:-1])
    langs = torch.tensor([[e.src_lang, e.tgt_lang] for e in examples], dtype=torch.long)
    return Batch(src, tgt_in, tgt_out, langs[:, 0].contiguous(), langs[:, 1].contiguous())


def length_order(examples: Sequence[Example]) -> list[int]:
    """Indices of `examples` by (target length, source length), ties in input order: the order in which
    `bucket` (and so `fixed_batches`) lays them out."""
    return sorted(range(len(examples)), key=lambda i: (len(examples[i].target), len(examples[i].source)))


def bucket(examples: Sequence[Example], batch_tokens: int, max_sentences: int) -> list[list[Example]]:
    """Cut length-sorted examples into batches whose padded size (B x max len) fits `batch_tokens`."""
    ordered = [examples[i] for i in length_order(examples)]
    batches: list[list[Example]] = []
    current: list[Example] = []
    longest = 0
    for e in ordered:
        length = max(len(e.source), len(e.target))
        grown = max(longest, length)
        if current and (grown * (len(current) + 1) > batch_tokens or len(current) >= max_sentences):
            batches.append(current)
            current, grown = [], length
        current.append(e)
        longest = grown
    if current:
        batches.append(current)
    return batches


class MixedBatchStream(torch.utils.data.IterableDataset):
    """An endless, reproducible stream of training batches over several directions."""

    def __init__(self, data: dict[str, list[Example]], probs: dict[str, float], batch_tokens: int,
                 max_sentences: int, pad_id: int, bos_id: int, seed: int, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1):
        super().__init__()
        self.names = sorted(data)
        self.data = data
        self.weights = [probs[name] for name in self.names]
        self.batch_tokens, self.max_sentences = batch_tokens, max_sentences
        self.pad_id, self.bos_id, self.seed = pad_id, bos_id, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size

    def _pool(self, index: int) -> list[list[Example]]:
        rng = random.Random(f"{self.seed}-{index}")
        picks = rng.choices(self.names, weights=self.weights, k=POOL_SENTENCES)
        examples = [self.data[name][rng.randrange(len(self.data[name]))] for name in picks]
        batches = bucket(examples, self.batch_tokens, self.max_sentences)
        rng.shuffle(batches)
        return batches

    def batch_lists(self) -> Iterator[list[Example]]:
        """Global batch index i goes to rank i % world_size; the batches of the first `start_batch`
        steps (start_batch x world_size global batches) are skipped."""
        rank, world = self.rank, self.world_size
        if world == 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()  # DDP
        index, pool = 0, 0
        while True:
            for batch in self._pool(pool):
                if index >= self.start_batch * world and index % world == rank:
                    yield batch
                index += 1
            pool += 1

    def __iter__(self) -> Iterator[Batch]:
        for examples in self.batch_lists():
            yield collate(examples, self.pad_id, self.bos_id)


def fixed_batches(examples: Sequence[Example], batch_tokens: int, max_sentences: int, pad_id: int,
                  bos_id: int) -> list[Batch]:
    """Deterministic batches over all of `examples` (validation); their rows, in order, are the
    examples in `length_order`."""
    return [collate(b, pad_id, bos_id) for b in bucket(examples, batch_tokens, max_sentences)]
