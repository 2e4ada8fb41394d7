"""Distillation init from a teacher's non-expert weights, and sparse upcycling."""

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.surgery import copy_non_expert_weights, upcycle
from tiny_models import random_batch, tiny_model


def _clone_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("ffn_init", ["fresh", "expert_mean"])
def test_student_gets_exactly_the_teachers_non_expert_weights(ffn_init):
    teacher = tiny_model("token", "target", seed=1)
    student = tiny_model("none", "none", seed=2)
    before = _clone_state(student)
    summary = copy_non_expert_weights(teacher, student, ffn_init)
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    moe_layers = {"encoder.layers.1", "decoder.layers.1"}
    assert set(summary[ffn_init]) == moe_layers
    for name, value in student_state.items():
        layer = name.partition(".ffn.")[0]
        if layer not in moe_layers:
            assert torch.equal(value, teacher_state[name]), name
        elif ffn_init == "fresh":
            assert torch.equal(value, before[name]), name
    if ffn_init == "expert_mean":
        experts = teacher.decoder.layers[1].ffn.experts
        ffn = student.decoder.layers[1].ffn
        assert torch.allclose(ffn.w_in.weight, experts.w_in.mean(0).t())
        assert torch.allclose(ffn.w_in.bias, experts.b_in.mean(0))
        assert torch.allclose(ffn.w_out.weight, experts.w_out.mean(0).t())
        assert torch.allclose(ffn.w_out.bias, experts.b_out.mean(0))
        assert not torch.equal(ffn.w_in.weight, before["decoder.layers.1.ffn.w_in.weight"])
    # the dense layers of a dense position are the teacher's: same output on an all-dense teacher
    dense_teacher = tiny_model("none", "none", seed=3)
    copy_non_expert_weights(dense_teacher, student, ffn_init)
    batch = random_batch()
    assert torch.equal(student(*batch).logits, dense_teacher(*batch).logits)


def test_surgery_rejects_models_that_do_not_fit():
    teacher = tiny_model("token", "token")
    with pytest.raises(PipelineError, match="d_model 16 vs 32"):
        copy_non_expert_weights(teacher, tiny_model("none", "none", d_model=32), "fresh")
    with pytest.raises(PipelineError, match="student must be dense"):
        copy_non_expert_weights(teacher, tiny_model("token", "none"), "fresh")
    with pytest.raises(PipelineError, match="ffn_init"):
        copy_non_expert_weights(teacher, tiny_model("none", "none"), "random")
    with pytest.raises(PipelineError, match="decoder_layers 2 vs 3"):
        upcycle(tiny_model("none", "none"), tiny_model("token", "token", decoder_layers=3))


@pytest.mark.parametrize("routing", [("token", "token"), ("token", "target"), ("sentence", "pair")],
                         ids=lambda r: "/".join(r))
def test_upcycled_moe_computes_what_the_dense_model_does(routing):
    dense = tiny_model("none", "none", seed=1)
    moe = tiny_model(*routing, seed=2)
    router_before = moe.decoder.layers[1].ffn.router.gate.weight.clone()
    summary = upcycle(dense, moe)
    assert set(summary["upcycled"]) == {"encoder.layers.1", "decoder.layers.1"}
    batch = random_batch()
    real = batch[1] != 0  # an MoE layer skips padding, a dense FFN does not
    assert torch.allclose(moe(*batch).logits[real], dense(*batch).logits[real], atol=1e-5)
    assert torch.equal(moe.decoder.layers[1].ffn.router.gate.weight, router_before)  # router fresh
    experts = moe.encoder.layers[1].ffn.experts
    assert torch.equal(experts.w_in[0], experts.w_in[3])
