"""Expert parallelism on 2 CPU processes (gloo) against one process: outputs, every gradient, decoding.

One launch of 2 ranks runs every case (`expert_parallel_cases.rank_worker`); the tests below compare what
each rank saved with the unsharded model run in this process. Tolerance 1e-5 (absolute) throughout.
"""

from __future__ import annotations

import pytest
import torch

from expert_parallel_cases import (
    DECODING_CASES, LAYER_CASES, MODEL_CASES, VOCAB, WORLD, decoding_model, decoding_sources, layer_loss, make_layer,
    make_model, model_loss, rank_worker, translate_sources,
)
from pipeline.config import DecodeConfig
from pipeline.decode import beam_search, greedy_search, translate
from pipeline.model.expert_parallel import run_on_ranks

TOL = 1e-5
MAX_DIFF: dict[str, float] = {}  # the largest differences seen, printed at the end (pytest -s)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("expert_parallel")
    run_on_ranks(rank_worker, WORLD, str(out))
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _record(kind: str, diff: float) -> float:
    MAX_DIFF[kind] = max(MAX_DIFF.get(kind, 0.0), diff)
    return diff


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_sharded_layer_equals_one_process(ranks, case):
    reference = make_layer(case)
    total = 0.0
    outputs, x_grads = [], []
    for rank in range(WORLD):
        y, loss, x = layer_loss(reference, case, rank)
        total = total + loss
        outputs.append(y.detach())
        x_grads.append(x)
    total.backward()
    names = [n for n, _ in reference.named_parameters()]
    assert any(".experts." in f".{n}" for n in names) and any(".router." in f".{n}" for n in names)
    for rank in range(WORLD):
        got = ranks[rank]["layers"][case]
        assert got["local_experts"] == reference.experts.num_experts // WORLD
        assert _record("forward", _max_diff(got["output"], outputs[rank])) <= TOL
        assert _record("gradient", _max_diff(got["x_grad"], x_grads[rank].grad)) <= TOL
        assert set(got["grads"]) == set(names)
        for name, p in reference.named_parameters():
            assert _record("gradient", _max_diff(got["grads"][name], p.grad)) <= TOL, name
    experts_grad = reference.experts.w_in.grad.abs().sum(dim=(1, 2))
    if case == "task_one_rank_only":  # the skew the case is for: rank 1's experts get no token at all
        assert (experts_grad[4:] == 0).all() and (experts_grad[:4] > 0).sum() >= 2
    else:  # the exchange did carry tokens both ways: experts on both ranks were used
        assert experts_grad[:4].sum() > 0 and experts_grad[4:].sum() > 0


@pytest.mark.parametrize("routing", MODEL_CASES, ids=lambda r: "/".join(r))
def test_sharded_model_equals_one_process(ranks, routing):
    """A tiny Seq2Seq (encoder and decoder MoE layers, every routing kind on some side): logits, aux loss
    included in the loss, and the gradient of every parameter."""
    reference = make_model(routing)
    total = 0.0
    logits = []
    for rank in range(WORLD):
        out, loss = model_loss(reference, rank)
        total = total + loss
        logits.append(out.detach())
    total.backward()
    for rank in range(WORLD):
        got = ranks[rank]["models"]["/".join(routing)]
        assert _record("forward", _max_diff(got["logits"], logits[rank])) <= TOL
        params = dict(reference.named_parameters())
        assert set(got["grads"]) == set(params)
        for name, p in params.items():
            assert p.grad is not None, name
            assert _record("gradient", _max_diff(got["grads"][name], p.grad)) <= TOL, name


def test_shards_hold_their_share_and_gather_back(ranks):
    for rank in range(WORLD):
        shard, full = ranks[rank]["shard_count"], ranks[rank]["full_count"]
        assert shard["experts"] * WORLD == full["experts"]
        assert {k: v for k, v in shard.items() if k not in ("experts", "total")} == \
            {k: v for k, v in full.items() if k not in ("experts", "total")}
        assert shard["active_per_token"] == full["active_per_token"]
        assert ranks[rank]["roundtrip"]


@pytest.mark.parametrize("routing", DECODING_CASES, ids=lambda r: "/".join(r))
def test_lockstep_decoding_equals_one_process(ranks, routing):
    """Each rank decodes its own sentences (different counts, lengths and limits): the same hypotheses as
    one process decoding them with the unsharded model, greedy, beam and `translate`."""
    model = decoding_model(routing)
    key = "/".join(routing)
    ends = []
    for rank in range(WORLD):
        src, sl, tl, limits = decoding_sources(rank)
        greedy = greedy_search(model, src, sl, tl, limits)
        assert ranks[rank][key, "greedy"] == greedy
        assert ranks[rank][key, "beam"] == beam_search(model, src, sl, tl, 3, 0.6, limits)
        cfg = DecodeConfig(beam_size=2, batch_tokens=12)
        assert ranks[rank][key, "translate"] == translate(model, VOCAB, translate_sources(rank), "en", "de",
                                                          cfg)
        ends.append(max(len(h) for h in greedy))
    assert ends[0] != ends[1]  # the ranks' sentences ended at different steps: one of them idled


def test_uneven_shards_are_a_clear_error(ranks):
    message = ranks[0]["uneven_error"]
    assert message is not None and "model.num_experts (3)" in message and "2 ranks" in message
    assert "\n" not in message


def test_report_largest_differences(ranks):
    """Prints the largest forward and gradient differences over every case above (run with -s)."""
    if len(MAX_DIFF) < 2:
        pytest.skip("run with the comparison tests")
    print(f"\nexpert parallel vs one process: largest |forward diff| {MAX_DIFF['forward']:.3g}, "
          f"largest |gradient diff| {MAX_DIFF['gradient']:.3g}")
    assert max(MAX_DIFF.values()) <= TOL
