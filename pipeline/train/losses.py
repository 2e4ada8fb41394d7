"""Loss functions as pure tensor maths (legend: B batch, T target length, V vocabulary)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_cross_entropy(logits: torch.Tensor, target: torch.Tensor, pad_id: int,
                        label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over non-pad target tokens, and their count.

    logits (B, T, V), target (B, T). Returning the sum and the count lets validation average exactly over
    tokens across batches of different sizes. The same value as `F.cross_entropy(..., ignore_index=pad_id,
    label_smoothing=..., reduction="sum")`, computed by `SmoothedCrossEntropy` in fewer passes over the
    (B*T, V) logits (equal within float rounding; tests/train/test_losses.py).
    """
    flat = logits.float().flatten(0, 1)
    loss = SmoothedCrossEntropy.apply(flat, target.flatten(), pad_id, label_smoothing)
    return loss, (target != pad_id).sum()


class SmoothedCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross-entropy summed over non-pad rows, with a hand-written backward.

    Per row: `loss = lse(x) − (1 − ε) x_y − ε mean(x)` (the cross-entropy against the smoothed target
    `(1 − ε) onehot(y) + ε / V`), and `∂loss/∂x = softmax(x) − (1 − ε) onehot(y) − ε / V`. PyTorch's own
    cross-entropy builds the log-softmax, a zero-filled gradient, the smoothing term's gradient and their
    sum, each a pass over the whole (N, V) block; this works through it in row chunks that stay in the
    CPU's cache, one pass forward and one backward. It is where a training step of the CPU default spent
    about a third of its time (benchmarks/train_step.py).
    """

    CHUNK = 1024  # rows per chunk: 1024 x 8000 fp32 is 32 MB

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, pad_id: int, smoothing: float):
        n = logits.shape[0]
        lse = logits.new_empty(n)
        mean = logits.new_empty(n)
        for start in range(0, n, SmoothedCrossEntropy.CHUNK):
            rows = logits[start:start + SmoothedCrossEntropy.CHUNK]
            lse[start:start + rows.shape[0]] = torch.logsumexp(rows, dim=1)
            mean[start:start + rows.shape[0]] = rows.mean(dim=1)
        keep = (target != pad_id).to(logits.dtype)
        picked = logits.gather(1, target[:, None]).squeeze(1)
        loss = ((lse - (1 - smoothing) * picked - smoothing * mean) * keep).sum()
        ctx.save_for_backward(logits, target, lse, keep)
        ctx.smoothing = smoothing
        return loss

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        logits, target, lse, keep = ctx.saved_tensors
        smoothing, (n, vocab) = ctx.smoothing, logits.shape
        scale = keep * grad_output
        grad = torch.empty_like(logits)
        for start in range(0, n, SmoothedCrossEntropy.CHUNK):
            stop = min(start + SmoothedCrossEntropy.CHUNK, n)
            out = grad[start:stop]
            torch.sub(logits[start:stop], lse[start:stop, None], out=out)
            out.exp_().sub_(smoothing / vocab).mul_(scale[start:stop, None])
        rows = torch.arange(n, device=logits.device)
        grad[rows, target] -= (1 - smoothing) * scale
        return grad, None, None, None


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
