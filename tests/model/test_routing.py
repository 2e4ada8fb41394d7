"""Gating maths and routers: balance loss, units, capacity, and what each router sends where."""

import pytest
import torch

from pipeline.model.routing import (
    Gating, SentenceRouter, TaskRouter, TokenRouter, balance_loss, capacity_keep, random_expert_keep,
    sentence_units, task_ids, token_units, top_k_gating, unit_weights,
)


def _skewed_gating(strength: float, tokens=64, experts=4, top_k=2) -> Gating:
    """Every token prefers expert 0 by `strength` logits; the other experts' order varies per token."""
    logits = torch.randn(tokens, experts) * 0.01
    logits[:, 0] += strength
    return top_k_gating(logits, top_k)


def test_balance_loss_is_one_for_uniform_routing():
    E, K, N = 4, 2, 8
    probs = torch.full((N, E), 1 / E)
    index = torch.tensor([[0, 1], [2, 3]] * (N // 2))  # every expert chosen equally often
    gating = Gating(index, torch.full((N, K), 0.5), probs)
    loss = balance_loss(gating, torch.ones(N))
    assert loss.item() == pytest.approx(1.0)


def test_balance_loss_grows_with_skew():
    losses = [balance_loss(g, torch.ones(64)).item()
              for g in (_skewed_gating(s) for s in (0.0, 1.0, 2.0, 4.0, 8.0))]
    assert losses[0] == pytest.approx(1.0, abs=0.02)
    assert all(a < b for a, b in zip(losses, losses[1:])), losses
    # all on expert 0 and one other: f_0 = 1/2, P_0 -> 1: E * 1/2 = 2 for E=4, K=2
    assert losses[-1] == pytest.approx(2.0, abs=0.01)


def test_balance_loss_counts_each_sentence_once_and_ignores_padding():
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 4)
    logits[1] = logits[1, :1]  # sentence routing: one set of logits per sentence
    logits[0] = logits[0, :1]
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    gating = top_k_gating(logits, 2)
    by_units = balance_loss(gating, unit_weights(sentence_units(mask)))
    per_sentence = balance_loss(top_k_gating(logits[:, 0], 2), torch.ones(2))
    assert by_units.item() == pytest.approx(per_sentence.item(), rel=1e-6)
    by_tokens = balance_loss(gating, unit_weights(token_units(mask)))
    assert by_tokens.item() != pytest.approx(per_sentence.item(), rel=1e-3)  # 5:2 weighting differs


def test_top_k_weights_are_renormalised():
    gating = top_k_gating(torch.randn(10, 8), 3)
    assert torch.allclose(gating.weights.sum(-1), torch.ones(10))
    assert (gating.weights[:, 0] >= gating.weights[:, 1]).all()
    assert gating.expert_index.shape == (10, 3)


def test_capacity_keeps_first_choices_before_second_choices():
    # 4 tokens, top-2 over 2 experts; capacity 2 per expert
    index = torch.tensor([[0, 1], [0, 1], [1, 0], [0, 1]])
    keep = capacity_keep(index, torch.ones(4, 2, dtype=torch.bool), num_experts=2, capacity=2)
    # first choices: expert 0 <- tokens 0, 1, 3 (token 3 over capacity); expert 1 <- token 2
    # second choices: expert 1 <- token 0 (fits: 2nd slot), 1 and 3 over; expert 0 full
    expected = torch.tensor([[True, True], [True, False], [True, False], [False, False]])
    assert torch.equal(keep, expected)


def test_random_policy_always_keeps_the_first_expert():
    weights = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    draws = torch.tensor([[0.99, 0.25], [0.99, 0.79], [0.99, 0.99]])
    keep = random_expert_keep(weights, draws)
    assert torch.equal(keep, torch.tensor([[True, False], [True, True], [True, True]]))


def test_task_ids_from_language_ids():
    src, tgt = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    assert task_ids("target", src, tgt, 3).tolist() == [1, 2, 0]
    assert task_ids("source", src, tgt, 3).tolist() == [0, 1, 2]
    assert task_ids("pair", src, tgt, 3).tolist() == [1, 5, 6]
    assert task_ids("token", src, tgt, 3) is None


@pytest.mark.parametrize("router", [SentenceRouter(8, 4), TaskRouter(8, 4, num_tasks=3)],
                         ids=["sentence", "task"])
def test_sentence_and_task_routing_send_all_tokens_of_a_sentence_to_the_same_experts(router):
    x = torch.randn(3, 6, 8)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 4:] = False
    out = router(x, mask, torch.tensor([0, 1, 2]))
    gating = top_k_gating(out.logits, 2)
    for b in range(3):
        real = gating.expert_index[b][mask[b]]
        assert (real == real[0]).all()
    assert (out.units[mask] == torch.arange(3)[:, None].expand(3, 6)[mask]).all()
    assert (out.units[~mask] == -1).all()


def test_token_routing_differs_between_tokens():
    router = TokenRouter(8, 4)
    x = torch.randn(1, 32, 8)
    gating = top_k_gating(router(x, torch.ones(1, 32, dtype=torch.bool), None).logits * 50, 1)
    assert gating.expert_index.unique().numel() > 1


def test_sentence_router_ignores_padding_content():
    router = SentenceRouter(8, 4)
    x = torch.randn(1, 6, 8)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    y = x.clone()
    y[0, 4:] = 100.0
    assert torch.equal(router(x, mask, None).logits[0, 0], router(y, mask, None).logits[0, 0])


def test_causal_sentence_router_state_matches_full_prefix():
    router = SentenceRouter(8, 4, causal=True)
    x = torch.randn(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.bool)
    full = router(x, mask, None).logits
    state, steps = None, []
    for t in range(5):
        out = router(x[:, t:t + 1], mask[:, t:t + 1], None, state)
        steps.append(out.logits)
        state = out.state
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-6)
    # token t's routing only depends on tokens <= t
    x2 = x.clone()
    x2[:, 3:] = 0
    assert torch.allclose(router(x2, mask, None).logits[:, :3], full[:, :3])
