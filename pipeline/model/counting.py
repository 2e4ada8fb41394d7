"""Parameter counts: total, active per token (k of E experts), and per component.

"Active per token" is what one token's forward pass touches: every non-expert weight plus, in each
MoE layer, top_k of its num_experts experts. "Resident" (what must be loaded to serve a task) is the
total of the model that serves it: the full model, or the task's extracted sub-network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from pipeline.model.moe import is_expert_parameter, is_router_parameter

COMPONENTS = ("embeddings", "attention", "norms", "ffn", "experts", "routers")


@dataclass(frozen=True)
class ParameterCount:
    total: int
    active_per_token: int
    embeddings: int  # the shared (tied) embedding
    attention: int
    norms: int
    ffn: int  # dense (and fused) FFNs
    experts: int
    routers: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def component_of(name: str) -> str:
    if is_expert_parameter(name):
        return "experts"
    if is_router_parameter(name):
        return "routers"
    if name.startswith("embed."):
        return "embeddings"
    if "attn." in name:
        return "attention"
    if "norm." in name:
        return "norms"
    if ".ffn." in name:
        return "ffn"
    raise ValueError(f"parameter {name!r} belongs to no known component")


def count_parameters(model: nn.Module) -> ParameterCount:
    """Counts for a `Seq2Seq` (tied weights counted once)."""
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        counts[component_of(name)] += p.numel()
    config = model.cfg
    active_experts = 0
    for moe in model.moe_layers().values():
        held = moe.experts.w_in.shape[0]  # all E, or this rank's shard under expert parallelism
        per_expert = sum(p.numel() for p in moe.experts.parameters()) // held
        active_experts += per_expert * config.top_k
    total = sum(counts.values())
    return ParameterCount(total=total, active_per_token=total - counts["experts"] + active_experts,
                          **counts)
