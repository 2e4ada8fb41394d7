"""Routers and the gating maths of an MoE layer (GShard top-k gating; Kudugunta et al. 2021, Sec 3.1).

Dimension legend: B batch, L sequence length (S source or T target), D model width, E experts,
K top-k, N tokens (B*L), U routing units.

Every router has the same interface: token states `x (B, L, D)`, a token mask (True for real tokens)
and task ids `(B,)` in; a `RouterOutput` out, with router logits for every token `(B, L, E)` and the
*routing unit* each token belongs to. The unit is what the paper routes: a token (token routing), a
sentence (sentence routing) or a task occurrence, i.e. a sentence of that task (task routing). The
load-balancing and z losses average over units, and the random second expert is drawn once per unit,
so every token of a sentence goes to the same experts under sentence and task routing. The MoE layer
never branches on the routing kind.

The gating maths below are pure tensor functions; the modules only hold the gate weights.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import TASK_ROUTINGS
from pipeline.errors import PipelineError

RouterState = Optional[tuple[Tensor, ...]]  # carried between incremental decoding steps, batch first


class RouterOutput(NamedTuple):
    logits: Tensor  # (B, L, E)
    units: Tensor  # (B, L) long: the routing unit of each token; -1 for padding
    state: RouterState  # what the next decoding step needs (the causal sentence router only)


class Gating(NamedTuple):
    expert_index: Tensor  # (..., K) the chosen experts, best first
    weights: Tensor  # (..., K) gate weights, renormalised over the chosen experts
    probs: Tensor  # (..., E) router probabilities (fp32)


# --------------------------------------------------------------------------------------------------
# pure functions


def task_ids(routing: str, src_lang: Tensor, tgt_lang: Tensor, num_languages: int) -> Optional[Tensor]:
    """The task id of each sentence (B,) for a task routing; None for the others (Sec 3.1)."""
    if routing == "target":
        return tgt_lang
    if routing == "source":
        return src_lang
    if routing == "pair":
        return src_lang * num_languages + tgt_lang
    return None


def num_tasks(routing: str, num_languages: int) -> int:
    return num_languages * num_languages if routing == "pair" else num_languages


def token_units(token_mask: Tensor) -> Tensor:
    """(B, L) unit ids when every real token is its own unit; -1 for padding."""
    B, L = token_mask.shape
    ids = torch.arange(B * L, device=token_mask.device).view(B, L)
    return ids.masked_fill(~token_mask, -1)


def sentence_units(token_mask: Tensor) -> Tensor:
    """(B, L) unit ids when every sentence is one unit; -1 for padding."""
    B, L = token_mask.shape
    ids = torch.arange(B, device=token_mask.device)[:, None].expand(B, L)
    return ids.masked_fill(~token_mask, -1)


def unit_weights(units: Tensor) -> Tensor:
    """(B, L) weight of each token such that every routing unit counts once: 1 / (tokens in its unit)."""
    flat = units.reshape(-1)
    valid = flat >= 0
    index = flat.clamp(min=0)
    counts = torch.bincount(index, weights=valid.float(), minlength=1)  # (U,)
    weights = valid.float() / counts[index].clamp(min=1.0)
    return weights.view_as(units)


def top_k_gating(logits: Tensor, top_k: int) -> Gating:
    """softmax, the top-k experts, their weights renormalised to sum to 1 (docs/design.md §3 Router)."""
    probs = logits.float().softmax(dim=-1)
    top_probs, expert_index = probs.topk(top_k, dim=-1)
    weights = top_probs / top_probs.sum(dim=-1, keepdim=True)
    return Gating(expert_index, weights, probs)


def random_expert_keep(weights: Tensor, draws: Tensor) -> Tensor:
    """GShard's second_expert_policy=random: keep the first expert always, a later one (weight w)
    with probability min(1, 2w). `draws` are uniform [0, 1) numbers shaped like `weights` (..., K)."""
    keep = draws < 2 * weights
    keep[..., 0] = True
    return keep


def balance_loss(gating: Gating, unit_weight: Tensor) -> Tensor:
    """Switch/GShard load balancing `E · Σ_e f_e · P_e` over routing units (docs/design.md §3).

    f_e: fraction of the units' k choices that went to e (all k counted, divided by k);
    P_e: mean router probability of e. 1 for perfectly uniform routing, up to E when one expert takes all.
    `unit_weight (B, L)` from `unit_weights` makes each unit count once and padding not at all.
    """
    E = gating.probs.shape[-1]
    K = gating.expert_index.shape[-1]
    w = unit_weight.reshape(-1, 1)  # (N, 1)
    total = w.sum().clamp(min=1e-9)
    probs = gating.probs.reshape(-1, E)  # (N, E)
    index = gating.expert_index.reshape(-1, K)  # (N, K)
    assigned = torch.zeros_like(probs).scatter_add_(1, index, torch.ones_like(index, dtype=probs.dtype))
    fraction = (assigned * w).sum(0) / (total * K)  # (E,)
    mean_prob = (probs * w).sum(0) / total  # (E,)
    return E * (fraction * mean_prob).sum()


def router_z_loss(logits: Tensor, unit_weight: Tensor) -> Tensor:
    """ST-MoE router z-loss: mean over units of logsumexp(logits)^2 (keeps router logits small)."""
    z = torch.logsumexp(logits.float(), dim=-1) ** 2  # (B, L)
    return (z * unit_weight).sum() / unit_weight.sum().clamp(min=1e-9)


def expert_capacity(num_tokens: int, num_experts: int, top_k: int, capacity_factor: float) -> int:
    """GShard capacity: capacity_factor × the even share of the k·N assignments, at least 1."""
    return max(1, int(-(-capacity_factor * top_k * num_tokens // num_experts)))


def capacity_keep(expert_index: Tensor, keep: Tensor, num_experts: int, capacity: int) -> Tensor:
    """Which assignments fit their expert's capacity (N, K) bool; GShard priority: every token's
    first choice before any second choice, then token order. Assignments not in `keep` use no room."""
    N, K = expert_index.shape
    index = expert_index.t().reshape(-1)  # (K*N,) choice-major
    valid = keep.t().reshape(-1)
    one_hot = F.one_hot(index, num_experts) * valid[:, None]  # (K*N, E)
    position = (one_hot.cumsum(0) - 1).gather(1, index[:, None]).squeeze(1)  # (K*N,)
    fits = (position < capacity) & valid
    return fits.view(K, N).t()


# --------------------------------------------------------------------------------------------------
# routers: thin modules around the gate weights W_g


def _gate(d_model: int, num_experts: int) -> nn.Linear:
    gate = nn.Linear(d_model, num_experts, bias=False)
    nn.init.normal_(gate.weight, std=0.02)
    return gate


class TokenRouter(nn.Module):
    """G = GATE(x_s): each token routed on its own state."""

    def __init__(self, d_model: int, num_experts: int):
        super().__init__()
        self.gate = _gate(d_model, num_experts)

    def forward(self, x: Tensor, token_mask: Tensor, task_ids: Optional[Tensor],
                state: RouterState = None) -> RouterOutput:
        return RouterOutput(self.gate(x), token_units(token_mask), None)


class SentenceRouter(nn.Module):
    """G = GATE(mean_s x_s) over the sentence's real tokens, the same for all its tokens.

    In the decoder (`causal=True`) the mean runs over the prefix up to each token instead: the whole
    target sentence is not known while decoding, and using it in training would leak future tokens.
    There each token is its own routing unit, and `state` (running sum, count) carries the prefix
    between incremental decoding steps.
    """

    def __init__(self, d_model: int, num_experts: int, causal: bool = False):
        super().__init__()
        self.gate = _gate(d_model, num_experts)
        self.causal = causal

    def forward(self, x: Tensor, token_mask: Tensor, task_ids: Optional[Tensor],
                state: RouterState = None) -> RouterOutput:
        B, L, E = x.shape[0], x.shape[1], self.gate.out_features
        mask = token_mask[..., None].to(x.dtype)  # (B, L, 1)
        if not self.causal:
            mean = (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)
            logits = self.gate(mean)[:, None, :].expand(B, L, E)
            return RouterOutput(logits, sentence_units(token_mask), None)
        past_sum, past_count = state if state is not None else (x.new_zeros(B, x.shape[2]),
                                                                 x.new_zeros(B, 1))
        sums = past_sum[:, None, :] + (x * mask).cumsum(1)  # (B, L, D)
        counts = past_count[:, None, :] + mask.cumsum(1)  # (B, L, 1)
        logits = self.gate(sums / counts.clamp(min=1.0))
        return RouterOutput(logits, token_units(token_mask), (sums[:, -1], counts[:, -1]))


class TaskRouter(nn.Module):
    """G = GATE(task embedding): one learned vector per task id, the same for all tokens of a sentence."""

    def __init__(self, d_model: int, num_experts: int, num_tasks: int):
        super().__init__()
        self.task_embedding = nn.Embedding(num_tasks, d_model)
        self.gate = _gate(d_model, num_experts)

    def forward(self, x: Tensor, token_mask: Tensor, task_ids: Optional[Tensor],
                state: RouterState = None) -> RouterOutput:
        B, L, E = x.shape[0], x.shape[1], self.gate.out_features
        logits = self.gate(self.task_embedding(task_ids)).to(x.dtype)  # (B, E)
        return RouterOutput(logits[:, None, :].expand(B, L, E), sentence_units(token_mask), None)


def make_router(routing: str, d_model: int, num_experts: int, num_languages: int,
                causal: bool) -> nn.Module:
    """The router of one MoE layer for a routing kind (token | sentence | target | pair | source)."""
    if routing == "token":
        return TokenRouter(d_model, num_experts)
    if routing == "sentence":
        return SentenceRouter(d_model, num_experts, causal=causal)
    if routing in TASK_ROUTINGS:
        return TaskRouter(d_model, num_experts, num_tasks(routing, num_languages))
    raise PipelineError(f"routing {routing!r} has no router (expected token, sentence, "
                        f"{', '.join(TASK_ROUTINGS)})")
