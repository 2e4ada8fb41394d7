"""Loss functions as pure tensor maths (legend: B batch, T target length, V vocabulary)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_cross_entropy(logits: torch.Tensor, target: torch.Tensor, pad_id: int,
                        label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over non-pad target tokens, and their count.

    logits (B, T, V), target (B, T). Returning the sum and the count lets validation average exactly over
    tokens across batches of different sizes.
    """
    loss = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=pad_id,
                           label_smoothing=label_smoothing, reduction="sum")
    return loss, (target != pad_id).sum()


def sentence_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                           pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy summed over each sentence's non-pad target tokens (B,), and their counts (B,).

    What the learning curves bootstrap over: resampling sentences needs each sentence's own loss.
    """
    per_token = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=pad_id,
                                reduction="none").view_as(target)  # (B, T), 0 at padding
    return per_token.sum(1), (target != pad_id).sum(1)


def word_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                 pad_id: int, temperature: float = 1.0) -> torch.Tensor:
    """Word-level distillation (Kim & Rush 2016): mean over non-pad tokens of KL(teacher_T || student_T).

    Scaled by T^2 so its gradient does not shrink with the temperature (Hinton et al. 2015). With a one-hot
    teacher and T = 1 it equals the cross-entropy against the teacher's token.
    """
    mask = (target != pad_id).float()  # (B, T)
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    # xlogy gives 0 * log 0 = 0 for the teacher's zero-probability tokens
    kl = (torch.xlogy(p_teacher, p_teacher) - p_teacher * log_p_student).sum(-1)  # (B, T)
    return (kl * mask).sum() / mask.sum().clamp_min(1) * temperature**2


def inverse_sqrt_schedule(step: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warmup to 1 at `warmup_steps`, then 1/sqrt decay (Vaswani et al.)."""
    step = step + 1
    if warmup_steps <= 0:
        return 1.0
    return min(step / warmup_steps, (warmup_steps / step) ** 0.5)
