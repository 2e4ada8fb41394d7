"""Loss maths: word-level KD against a one-hot teacher is cross-entropy; the schedule's shape."""

import pytest
import torch
import torch.nn.functional as F

from pipeline.train.losses import inverse_sqrt_schedule, token_cross_entropy, word_kd_loss


def test_word_kd_with_one_hot_teacher_equals_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    target = torch.randint(1, 11, (2, 5))
    target[1, 3:] = 0  # padding
    one_hot = torch.full((2, 5, 11), -1e9)
    one_hot.scatter_(-1, target[..., None], 0.0)
    ce_sum, n = token_cross_entropy(logits, target, pad_id=0)
    kd = word_kd_loss(logits, one_hot, target, pad_id=0, temperature=1.0)
    assert kd.item() == pytest.approx((ce_sum / n).item(), rel=1e-5)


def test_word_kd_is_zero_when_student_equals_teacher_and_positive_otherwise():
    logits = torch.randn(3, 4, 7)
    target = torch.randint(1, 7, (3, 4))
    assert word_kd_loss(logits, logits, target, 0, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert word_kd_loss(logits, torch.randn(3, 4, 7), target, 0, 2.0).item() > 0


def test_cross_entropy_ignores_padding():
    logits = torch.randn(1, 4, 6)
    target = torch.tensor([[1, 2, 0, 0]])
    total, n = token_cross_entropy(logits, target, pad_id=0)
    expected = F.cross_entropy(logits[0, :2], target[0, :2], reduction="sum")
    assert n.item() == 2 and total.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_fused_cross_entropy_equals_pytorchs_in_value_and_gradient(smoothing, monkeypatch):
    """Several chunks (a chunk size of 7 rows), padding rows, a vocabulary wider than a chunk."""
    from pipeline.train.losses import SmoothedCrossEntropy

    monkeypatch.setattr(SmoothedCrossEntropy, "CHUNK", 7)
    torch.manual_seed(3)
    logits = (4 * torch.randn(3, 11, 50)).requires_grad_()
    target = torch.randint(1, 50, (3, 11))
    target[0, 6:] = 0
    target[2, 2:] = 0
    total, n = token_cross_entropy(logits, target, pad_id=0, label_smoothing=smoothing)
    (total * 0.5).backward()
    mine = logits.grad.clone()
    logits.grad = None
    expected = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=0,
                               label_smoothing=smoothing, reduction="sum")
    (expected * 0.5).backward()
    assert n.item() == int((target != 0).sum())
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(mine, logits.grad, atol=1e-6)
    assert mine[0, 6:].abs().max() == 0  # padding rows get no gradient


def test_inverse_sqrt_schedule_warms_up_then_decays():
    factors = [inverse_sqrt_schedule(s, 100) for s in range(400)]
    assert factors[0] == pytest.approx(0.01)
    assert max(factors) == pytest.approx(1.0) and factors.index(1.0) == 99
    assert factors[399] == pytest.approx(0.5)
    assert inverse_sqrt_schedule(10, 0) == 1.0
