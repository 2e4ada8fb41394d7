"""The cases of tests/model/test_expert_parallel.py, built the same way by the single process (the reference)
and by each rank of the expert-parallel run (`rank_worker`, started by `run_on_ranks`).

A case is a model (one MoE layer, or a tiny Seq2Seq) built from a seed, so every rank and the reference hold
the same full weights, and one batch per rank. Each rank computes `loss_r` on its own batch; the reference
runs every rank's batch through the unsharded model and adds the losses: the gradients of that sum are what
the ranks' gradients must add up to (experts: each rank holds its shard's; the rest: all-reduced).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.model.moe import Experts, MoELayer
from pipeline.model.routing import SentenceRouter, TaskRouter, TokenRouter
from tiny_models import BOS, EOS, PAD, FakeVocab, random_batch, tiny_model

WORLD = 2
D, F, E = 16, 32, 8

# one MoE layer: (router kind, top_k, dispatch, per-rank (batch, length), task ids of rank r's sentences)
LAYER_CASES = {
    "token": ("token", 2, "grouped", [(3, 7), (2, 5)]),
    "token_top1_padded": ("token", 1, "padded", [(3, 7), (2, 5)]),
    "sentence": ("sentence", 2, "grouped", [(3, 7), (2, 5)]),
    "sentence_causal": ("sentence_causal", 2, "grouped", [(3, 7), (2, 5)]),
    "task": ("task", 2, "grouped", [(3, 7), (4, 5)]),
    "task_one_rank_only": ("task_skewed", 2, "grouped", [(3, 7), (4, 5)]),  # every token to rank 0's experts
    "token_rank1_empty": ("token", 2, "grouped", [(4, 6), (0, 6)]),
}

# whole models: (encoder routing, decoder routing); tiny_model's 4 experts, 2 per rank
DECODING_CASES = [("token", "token"), ("token", "none")]
MODEL_CASES = [("token", "token"), ("sentence", "sentence"), ("token", "target"), ("source", "pair"),
               ("target", "source")]


def make_layer(case: str) -> MoELayer:
    kind, top_k, dispatch, _ = LAYER_CASES[case]
    torch.manual_seed(7)
    if kind == "token":
        router = TokenRouter(D, E)
    elif kind.startswith("sentence"):
        router = SentenceRouter(D, E, causal=kind == "sentence_causal")
    else:
        router = TaskRouter(D, E, num_tasks=3)
    layer = MoELayer(router, Experts(E, D, F, dispatch=dispatch), top_k, balance_loss_weight=0.1,
                     router_z_loss_weight=0.01).train()
    if kind == "task_skewed":  # every task's top-2 among experts 0..3: rank 1 receives nothing
        with torch.no_grad():
            router.gate.weight[4:] = 0.0
            router.gate.weight[:4] *= 50
            router.task_embedding.weight.abs_()
            router.gate.weight[:4].abs_()
    return layer


def layer_batch(case: str, rank: int):
    """x (B, L, D) requiring grad, token mask, task ids, and the fixed random weights of the loss."""
    _, _, _, shapes = LAYER_CASES[case]
    B, L = shapes[rank]
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(B, L, D, generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    for b in range(B):
        mask[b, L - (b % 3):] = False  # some padding
    tasks = torch.randint(0, 3, (B,), generator=g)
    probe = torch.randn(B, L, D, generator=g)
    return x.requires_grad_(), mask, tasks, probe


def layer_loss(layer: MoELayer, case: str, rank: int):
    x, mask, tasks, probe = layer_batch(case, rank)
    out = layer(x, mask, tasks)
    return out.output, (out.output * probe).sum() + out.aux_loss, x


def make_model(routing: tuple[str, str]):
    model = tiny_model(*routing, seed=3).train()
    with torch.no_grad():  # task embeddings spread apart, so the tasks use different experts
        for moe in model.moe_layers().values():
            if hasattr(moe.router, "task_embedding"):
                moe.router.gate.weight.mul_(20)
    return model


def model_batch(rank: int):
    src, tgt, sl, tl = random_batch(batch=6, src_len=7, tgt_len=5, seed=1)
    rows = slice(0, 4) if rank == 0 else slice(4, 6)  # ranks with 4 and 2 sentences
    g = torch.Generator().manual_seed(200 + rank)
    b = rows.stop - rows.start
    return src[rows], tgt[rows], sl[rows], tl[rows], torch.randn(b, 5, 24, generator=g)


def model_loss(model, rank: int):
    src, tgt, sl, tl, probe = model_batch(rank)
    out = model(src, tgt, sl, tl)
    return out.logits, (out.logits * probe).sum() + out.aux_loss


def decoding_model(routing=("token", "token")):
    """(token, token): the ranks agree on stopping through the decoder's exchanges; (token, none): no MoE
    layer in the decoder, so by an all-reduce per step."""
    model = tiny_model(*routing, seed=2)
    with torch.no_grad():  # a random model rarely ends: make eos likelier, for varied lengths
        model.embed.weight[EOS] *= 4.0
    return model


def decoding_sources(rank: int):
    """Rank 0: 3 sentences; rank 1: 1 sentence (its decoding ends first or last, by the limits)."""
    src, _, sl, tl = random_batch(batch=4, src_len=8, seed=5)
    src[:, -1] = torch.where(src[:, -1] == PAD, PAD, EOS)
    rows = slice(0, 3) if rank == 0 else slice(3, 4)
    limits = [12, 4, 9] if rank == 0 else [15]
    return src[rows], sl[rows], tl[rows], limits


def translate_sources(rank: int) -> list[str]:
    """Rank 1 has more (and longer) sentences, so more batches under a small token budget."""
    return ["abc", "hello"] if rank == 0 else ["a longer sentence", "xyz", "more words here", "q"]


VOCAB = FakeVocab()
assert BOS != EOS


# --------------------------------------------------------------------------------------------------
# what each rank runs


def _gathered_grads(model, rank: int) -> dict[str, torch.Tensor]:
    """Every parameter's gradient as the whole model's: expert shards gathered, the rest summed."""
    import torch.distributed as dist

    from pipeline.model.expert_parallel import gather_shards, sharded_parameter_names

    sharded = set(sharded_parameter_names(model))
    grads = {}
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        if name in sharded:
            grads[name] = gather_shards(g)
        else:
            g = g.clone()
            dist.all_reduce(g)
            grads[name] = g
    return grads


def rank_worker(rank: int, world: int, out_dir: str) -> None:
    import torch.distributed as dist

    from pipeline.config import DecodeConfig
    from pipeline.decode import beam_search, greedy_search, translate
    from pipeline.errors import PipelineError
    from pipeline.model.expert_parallel import gather_experts, shard_experts

    results: dict = {"layers": {}, "models": {}}
    for case in LAYER_CASES:
        layer = shard_experts(make_layer(case))
        y, loss, x = layer_loss(layer, case, rank)
        loss.backward()
        results["layers"][case] = {"output": y.detach(), "x_grad": x.grad, "grads": _gathered_grads(layer, rank),
                                   "local_experts": layer.experts.local_experts}
    for routing in MODEL_CASES:
        model = shard_experts(make_model(routing))
        logits, loss = model_loss(model, rank)
        loss.backward()
        results["models"]["/".join(routing)] = {"logits": logits.detach(),
                                                "grads": _gathered_grads(model, rank)}
    # shard -> gather gives the model back; counting parameters of a shard counts what this rank holds
    model = make_model(("token", "target"))
    full_count = model.parameter_count()
    shard_experts(model)
    results["shard_count"] = model.parameter_count().as_dict()
    results["full_count"] = full_count.as_dict()
    gather_experts(model)
    fresh = make_model(("token", "target")).state_dict()
    results["roundtrip"] = model.state_dict().keys() == fresh.keys() and all(
        torch.equal(value, fresh[name]) for name, value in model.state_dict().items())
    # decoding in lockstep: each rank its own sentences
    for routing in DECODING_CASES:
        model = shard_experts(decoding_model(routing))
        src, sl, tl, limits = decoding_sources(rank)
        key = "/".join(routing)
        results[key, "greedy"] = greedy_search(model, src, sl, tl, limits)
        results[key, "beam"] = beam_search(model, src, sl, tl, 3, 0.6, limits)
        results[key, "translate"] = translate(model, VOCAB, translate_sources(rank), "en", "de",
                                              DecodeConfig(beam_size=2, batch_tokens=12))
    # an expert count the group cannot split evenly: one clear line naming the key
    try:
        shard_experts(tiny_model("token", "token", num_experts=3, top_k=2))
        results["uneven_error"] = None
    except PipelineError as exc:
        results["uneven_error"] = str(exc)
    dist.barrier()
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
