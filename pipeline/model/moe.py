"""Feed-forward sublayers: the dense FFN and the GShard MoE layer (experts + router + dispatch).

Dimension legend: B batch, L sequence length, D model width, F FFN width (d_ff), E experts,
K top-k, N tokens (B*L).

MoE layer (GShard; Kudugunta et al. 2021 Sec 3): `y = Σ_{e in top-k} G_e(x) · FFN_e(x)`,
`FFN_e(x) = W_out^e ReLU(W_in^e x + b_in^e) + b_out^e`. Dispatch is dropless by default: each token is
sent to its k experts, grouped by expert (one matmul pair per expert on CPU, one batched matmul over
padded groups on GPU), so a sentence's output does not depend on what else is in the batch
(docs/design.md §3 Dispatch). `capacity_factor > 0` switches on
GShard-style dropping during training only: an assignment beyond its expert's capacity contributes
0 (the token passes through the residual). At inference every token always reaches its experts.

Both FFN kinds take the same arguments and return an `FFNOutput`, so a Transformer layer does not
care which it holds. Parameter names: expert weights live under `.experts.`, router weights under
`.router.` (see `is_expert_parameter`, `is_router_parameter`).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.routing import (
    RouterState, balance_loss, capacity_keep, expert_capacity, random_expert_keep, router_z_loss,
    top_k_gating, unit_weights,
)


class LayerRouting(NamedTuple):
    """What one MoE layer did, for analysis (which experts each language uses) and logging."""

    expert_index: Tensor  # (B, L, K) chosen experts
    weights: Tensor  # (B, L, K) gate weights actually applied (0 where dropped)
    token_mask: Tensor  # (B, L) real tokens
    balance_loss: Tensor  # scalar, unweighted, detached
    z_loss: Tensor  # scalar, unweighted, detached


class FFNOutput(NamedTuple):
    output: Tensor  # (B, L, D)
    aux_loss: Optional[Tensor]  # this layer's weighted auxiliary loss; None for a dense FFN
    routing: Optional[LayerRouting]  # None for a dense FFN
    router_state: RouterState  # for the next incremental decoding step


def is_expert_parameter(name: str) -> bool:
    return ".experts." in f".{name}"


def is_router_parameter(name: str) -> bool:
    return ".router." in f".{name}"


class FeedForward(nn.Module):
    """Dense FFN `W_out ReLU(W_in x + b_in) + b_out` of width F (also the fused FFN of a sub-network)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_in = nn.Linear(d_model, d_ff)
        self.w_out = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor, token_mask: Optional[Tensor] = None, task_ids: Optional[Tensor] = None,
                router_state: RouterState = None) -> FFNOutput:
        return FFNOutput(self.w_out(F.relu(self.w_in(x))), None, None, None)


class Experts(nn.Module):
    """E FFNs stored batched; `forward` runs each expert on the tokens assigned to it.

    Two equivalent ways to run the groups: `grouped` (one matmul pair per expert: no wasted FLOPs,
    best on CPU) and `padded` (all experts in one batched matmul over groups padded to the largest:
    a few kernel launches whatever E, best for training on GPU). `auto` uses `padded` only while training
    on a GPU: at inference, routing can be very skewed (a task-routed layer sends every token of a target
    language to the same k experts), and padding every group to the largest would charge the MoE models
    up to E/k times the FFN work they need, which would bias the serving benchmark.
    """

    def __init__(self, num_experts: int, d_model: int, d_ff: int, dispatch: str = "auto"):
        super().__init__()
        if dispatch not in ("auto", "grouped", "padded"):
            raise ValueError(f"dispatch must be auto, grouped or padded, got {dispatch!r}")
        self.dispatch = dispatch
        self.w_in = nn.Parameter(torch.empty(num_experts, d_model, d_ff))  # (E, D, F)
        self.b_in = nn.Parameter(torch.empty(num_experts, d_ff))  # (E, F)
        self.w_out = nn.Parameter(torch.empty(num_experts, d_ff, d_model))  # (E, F, D)
        self.b_out = nn.Parameter(torch.empty(num_experts, d_model))  # (E, D)
        # the same distribution as nn.Linear's default, expert by expert
        for weight, bias, fan_in in ((self.w_in, self.b_in, d_model), (self.w_out, self.b_out, d_ff)):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    @property
    def num_experts(self) -> int:
        return self.w_in.shape[0]

    def forward(self, x: Tensor, expert_index: Tensor, weights: Tensor, keep: Tensor) -> Tensor:
        """x (N, D); expert_index, weights, keep (N, K) -> Σ_k weight · FFN_{expert}(x) (N, D)."""
        N, K = expert_index.shape
        flat_expert = expert_index.reshape(-1)  # (N*K,)
        chosen = keep.reshape(-1).nonzero().squeeze(1)  # the M assignments to run
        chosen = chosen[flat_expert[chosen].argsort(stable=True)]  # grouped by expert
        tokens = torch.div(chosen, K, rounding_mode="floor")  # (M,)
        experts = flat_expert[chosen]  # (M,) sorted
        counts = torch.bincount(experts, minlength=self.num_experts)  # (E,)
        run = self._runner(x.is_cuda)
        y = run(x.index_select(0, tokens), experts, counts) * weights.reshape(-1)[chosen, None]
        return torch.zeros_like(x).index_add(0, tokens, y.to(x.dtype))

    def _runner(self, is_cuda: bool):
        """`_run_padded` or `_run_grouped`, as `dispatch` says (see the class docstring)."""
        padded = self.dispatch == "padded" or (self.dispatch == "auto" and is_cuda and self.training)
        return self._run_padded if padded else self._run_grouped

    def _run_grouped(self, x: Tensor, experts: Tensor, counts: Tensor) -> Tensor:
        """x (M, D) sorted by expert -> FFN outputs (M, D), one matmul pair per expert held here."""
        # unbind once: indexing w_in[e] per expert would make E full-size gradients in backward
        params = zip(self.w_in.unbind(0), self.b_in.unbind(0), self.w_out.unbind(0), self.b_out.unbind(0))
        outputs = [x[:0]]  # (0, D), part of x's graph even when no expert runs (expert_parallel.py)
        for x_e, (w_in, b_in, w_out, b_out) in zip(x.split(counts.tolist()), params):
            if x_e.shape[0] > 0:
                hidden = F.relu(torch.addmm(b_in, x_e, w_in))  # (n_e, F)
                outputs.append(torch.addmm(b_out, hidden, w_out))  # (n_e, D)
        return torch.cat(outputs)

    def _run_padded(self, x: Tensor, experts: Tensor, counts: Tensor) -> Tensor:
        """x (M, D) sorted by expert -> FFN outputs (M, D), through groups padded to (E, C, D).

        `experts` index the experts held here (`w_in.shape[0]` of them: all E, or one shard of them
        under expert parallelism)."""
        capacity = int(counts.max())  # C: the largest group
        slot = torch.arange(x.shape[0], device=x.device) - (counts.cumsum(0) - counts)[experts]  # (M,)
        groups = x.new_zeros(self.w_in.shape[0], capacity, x.shape[1]).index_put((experts, slot), x)
        hidden = F.relu(torch.baddbmm(self.b_in[:, None, :], groups, self.w_in))  # (E, C, F)
        return torch.baddbmm(self.b_out[:, None, :], hidden, self.w_out)[experts, slot]  # (M, D)


class MoELayer(nn.Module):
    """Router + experts. Returns the mixed output, the weighted auxiliary loss and the routing."""

    def __init__(self, router: nn.Module, experts: Experts, top_k: int, balance_loss_weight: float,
                 router_z_loss_weight: float = 0.0, second_expert_policy: str = "all",
                 capacity_factor: float = 0.0):
        super().__init__()
        self.router = router
        self.experts = experts
        self.top_k = top_k
        self.balance_loss_weight = balance_loss_weight
        self.router_z_loss_weight = router_z_loss_weight
        self.second_expert_policy = second_expert_policy
        self.capacity_factor = capacity_factor

    def forward(self, x: Tensor, token_mask: Tensor, task_ids: Optional[Tensor],
                router_state: RouterState = None) -> FFNOutput:
        B, L, D = x.shape
        route = self.router(x, token_mask, task_ids, router_state)
        gating = top_k_gating(route.logits, self.top_k)  # (B, L, K)
        keep = (route.units >= 0)[..., None].expand_as(gating.weights)  # (B, L, K)
        if self.training and self.second_expert_policy == "random":
            # one draw per routing unit, so a sentence's tokens keep or drop the same expert
            draws = torch.rand(B * L, self.top_k, device=x.device)[route.units.clamp(min=0)]
            keep = keep & random_expert_keep(gating.weights, draws)
        if self.training and self.capacity_factor > 0:
            capacity = expert_capacity(int(token_mask.sum()), self.experts.num_experts, self.top_k,
                                       self.capacity_factor)
            keep = capacity_keep(gating.expert_index.reshape(-1, self.top_k),
                                 keep.reshape(-1, self.top_k), self.experts.num_experts,
                                 capacity).view(B, L, self.top_k)
        weights = gating.weights * keep
        y = self.experts(x.reshape(B * L, D), gating.expert_index.reshape(B * L, self.top_k),
                         weights.reshape(B * L, self.top_k), keep.reshape(B * L, self.top_k))
        unit_weight = unit_weights(route.units)
        balance = balance_loss(gating, unit_weight)
        z_loss = router_z_loss(route.logits, unit_weight)
        aux = self.balance_loss_weight * balance + self.router_z_loss_weight * z_loss
        routing = LayerRouting(gating.expert_index, weights.detach(), token_mask, balance.detach(),
                               z_loss.detach())
        return FFNOutput(y.view(B, L, D), aux, routing, route.state)
