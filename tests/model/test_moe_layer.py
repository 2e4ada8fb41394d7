"""The MoE layer: equals a dense FFN in the degenerate case, dropless dispatch, gradients, aux loss."""

import pytest
import torch

from pipeline.model.moe import Experts, FeedForward, MoELayer
from pipeline.model.routing import TaskRouter, TokenRouter
from tiny_models import random_batch, tiny_model


def _moe(num_experts=4, top_k=2, capacity_factor=0.0, policy="all", router=None, d_model=16, d_ff=32):
    router = router or TokenRouter(d_model, num_experts)
    return MoELayer(router, Experts(num_experts, d_model, d_ff), top_k, balance_loss_weight=0.01,
                    second_expert_policy=policy, capacity_factor=capacity_factor)


def test_one_expert_top1_moe_equals_dense_ffn():
    dense = FeedForward(16, 32)
    moe = _moe(num_experts=1, top_k=1)
    with torch.no_grad():
        moe.experts.w_in[0] = dense.w_in.weight.t()
        moe.experts.b_in[0] = dense.w_in.bias
        moe.experts.w_out[0] = dense.w_out.weight.t()
        moe.experts.b_out[0] = dense.w_out.bias
    x = torch.randn(2, 5, 16)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    y = moe(x, mask, None).output
    expected = dense(x).output
    assert torch.allclose(y[mask], expected[mask], atol=1e-6)
    assert (y[~mask] == 0).all()  # padding is not dispatched


def test_top2_output_is_the_weighted_sum_of_the_chosen_experts():
    moe = _moe()
    x = torch.randn(1, 6, 16)
    out = moe(x, torch.ones(1, 6, dtype=torch.bool), None)
    e = moe.experts
    expected = torch.zeros(6, 16)
    for t in range(6):
        for k in range(2):
            i, w = out.routing.expert_index[0, t, k], out.routing.weights[0, t, k]
            h = torch.relu(x[0, t] @ e.w_in[i] + e.b_in[i]) @ e.w_out[i] + e.b_out[i]
            expected[t] += w * h
    assert torch.allclose(out.output[0], expected, atol=1e-6)


def test_padded_and_grouped_dispatch_agree_with_gradients():
    torch.manual_seed(2)
    grouped, padded = Experts(5, 16, 32, dispatch="grouped"), Experts(5, 16, 32, dispatch="padded")
    padded.load_state_dict(grouped.state_dict())
    x = torch.randn(40, 16)
    index = torch.randint(0, 4, (40, 2))  # expert 4 gets nothing
    index[:, 1] = (index[:, 0] + 1) % 4
    weights = torch.rand(40, 2)
    keep = torch.rand(40, 2) > 0.2
    outputs = []
    for experts in (grouped, padded):
        y = experts(x, index, weights, keep)
        y.square().sum().backward()
        outputs.append((y, experts.w_in.grad, experts.b_out.grad))
    for a, b in zip(*outputs):
        assert torch.allclose(a, b, atol=1e-5)
    assert outputs[0][1][4].abs().sum() == 0  # the idle expert gets a zero gradient
    nothing = torch.zeros(40, 2, dtype=torch.bool)
    assert (padded(x, index, weights, nothing) == 0).all() and (grouped(x, index, weights, nothing) == 0).all()


def _first_sentence_alone_and_in_batch(moe):
    torch.manual_seed(5)
    x = torch.randn(4, 9, 16)
    mask = torch.ones(4, 9, dtype=torch.bool)
    mask[0, 6:] = False
    alone = moe(x[:1, :6], mask[:1, :6], None).output[0]
    in_batch = moe(x, mask, None).output[0, :6]
    return alone, in_batch


def test_dropless_output_of_a_sentence_does_not_depend_on_the_batch():
    moe = _moe(num_experts=4).train()  # training mode: dispatch is the same as in eval
    alone, in_batch = _first_sentence_alone_and_in_batch(moe)
    assert torch.allclose(alone, in_batch, atol=1e-6)


def test_capacity_dropping_makes_the_output_depend_on_the_batch():
    moe = _moe(num_experts=4, capacity_factor=0.5).train()
    alone, in_batch = _first_sentence_alone_and_in_batch(moe)
    assert not torch.allclose(alone, in_batch, atol=1e-3)
    assert torch.allclose(*_first_sentence_alone_and_in_batch(moe.eval()), atol=1e-6)  # eval: dropless


def test_model_output_of_a_sentence_does_not_depend_on_the_batch():
    model = tiny_model("token", "token")
    src, tgt, sl, tl = random_batch(batch=4, src_len=8, tgt_len=6)
    full = model(src, tgt, sl, tl).logits
    for b in (1, 3):  # padded sentences, alone and unpadded
        n_src, n_tgt = int((src[b] != 0).sum()), int((tgt[b] != 0).sum())
        alone = model(src[b:b + 1, :n_src], tgt[b:b + 1, :n_tgt], sl[b:b + 1], tl[b:b + 1]).logits
        assert torch.allclose(alone[0], full[b, :n_tgt], atol=1e-5)


def test_gradients_reach_routers_and_experts():
    model = tiny_model("token", "target").train()
    src, tgt, sl, tl = random_batch()
    out = model(src, tgt, sl, tl)
    (out.logits.square().mean() + out.aux_loss).backward()
    names = dict(model.named_parameters())
    for name in ("encoder.layers.1.ffn.router.gate.weight", "decoder.layers.1.ffn.router.gate.weight",
                 "decoder.layers.1.ffn.router.task_embedding.weight",
                 "encoder.layers.1.ffn.experts.w_in", "decoder.layers.1.ffn.experts.w_out"):
        assert names[name].grad is not None and names[name].grad.abs().sum() > 0, name


def test_aux_loss_is_the_weighted_sum_over_layers():
    model = tiny_model("token", "target", balance_loss_weight=0.5, router_z_loss_weight=0.25).train()
    out = model(*random_batch())
    expected = sum(0.5 * r.balance_loss + 0.25 * r.z_loss for r in out.routing.values())
    assert set(out.routing) == {"encoder.layers.1", "decoder.layers.1"}
    assert out.aux_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert tiny_model("none", "none")(*random_batch()).aux_loss.item() == 0.0


def test_random_second_expert_is_drawn_per_sentence_under_task_routing():
    moe = _moe(policy="random", router=TaskRouter(16, 4, num_tasks=3)).train()
    x = torch.randn(64, 5, 16)
    mask = torch.ones(64, 5, dtype=torch.bool)
    routing = moe(x, mask, torch.randint(0, 3, (64,))).routing
    second_kept = routing.weights[..., 1] > 0  # (B, L)
    assert (second_kept == second_kept[:, :1]).all()  # same decision for every token of a sentence
    assert 0 < second_kept[:, 0].sum() < 64  # some dropped, some kept
    assert (moe.eval()(x, mask, torch.zeros(64, dtype=torch.long)).routing.weights[..., 1] > 0).all()
