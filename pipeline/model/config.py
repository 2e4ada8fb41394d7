"""`Seq2SeqConfig`: everything needed to rebuild a model, saved as `config.json` in every checkpoint.

Later stages rebuild a model from its checkpoint alone, so this holds the vocabulary ids, the languages
(a language's id is its index) and the routing of each side as well as the `ModelConfig` fields. It has
no defaults of its own: `build` takes them from `pipeline.config` (the one place defaults live).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pipeline.config import ROUTINGS, TASK_ROUTINGS, ModelConfig, ModelSpec
from pipeline.errors import PipelineError

# `fused`: at every MoE position a dense FFN of width top_k * d_ff (what extraction produces).
MODEL_ROUTINGS = (*ROUTINGS, "fused")
SIDES = ("encoder", "decoder")


@dataclass
class Seq2SeqConfig:
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    languages: list[str]  # a language's id is its index in this list
    encoder_routing: str  # none | token | sentence | target | pair | source | fused
    decoder_routing: str
    # the ModelConfig fields; pipeline/config.py documents them
    d_model: int
    num_heads: int
    d_ff: int
    encoder_layers: int
    decoder_layers: int
    dropout: float
    attention_dropout: float
    max_positions: int
    moe_every: int
    num_experts: int
    top_k: int
    balance_loss_weight: float
    router_z_loss_weight: float
    second_expert_policy: str
    capacity_factor: float
    expert_lr_scale: float

    def __post_init__(self) -> None:
        self.languages = list(self.languages)
        self.validate()

    # ----------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, model_cfg: ModelConfig, spec: ModelSpec, vocab_size: int, pad_id: int, bos_id: int,
              eos_id: int, languages: list[str]) -> "Seq2SeqConfig":
        """The config of one model of params.yaml (`spec.num_experts` overrides `model.num_experts`)."""
        fields = {f.name: getattr(model_cfg, f.name) for f in dataclasses.fields(ModelConfig)}
        if spec.num_experts is not None:
            fields["num_experts"] = spec.num_experts
        return cls(vocab_size=vocab_size, pad_id=pad_id, bos_id=bos_id, eos_id=eos_id,
                   languages=list(languages), encoder_routing=spec.encoder_routing,
                   decoder_routing=spec.decoder_routing, **fields)

    @classmethod
    def from_vocab(cls, model_cfg: ModelConfig, spec: ModelSpec, vocab: Any,
                   languages: list[str]) -> "Seq2SeqConfig":
        """`build` with the size and special ids of a `pipeline.data.vocab.Vocab`."""
        return cls.build(model_cfg, spec, vocab.size, vocab.pad_id, vocab.bos_id, vocab.eos_id, languages)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config.json") -> "Seq2SeqConfig":
        """From a parsed config.json; an unknown or missing key is a `PipelineError` naming it."""
        if not isinstance(data, dict):
            raise PipelineError(f"{source}: expected a JSON object")
        names = [f.name for f in dataclasses.fields(cls)]
        if "attention_dropout" not in data and "dropout" in data:
            # checkpoints written before attention_dropout existed used `dropout` for both
            data = {**data, "attention_dropout": data["dropout"]}
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown:
            raise PipelineError(f"{source}: unknown key(s) {', '.join(unknown)}")
        if missing:
            raise PipelineError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except PipelineError as exc:
            raise PipelineError(f"{source}: {exc}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # ----------------------------------------------------------------------------------------------

    def routing(self, side: str) -> str:
        return self.encoder_routing if side == "encoder" else self.decoder_routing

    def num_layers(self, side: str) -> int:
        return self.encoder_layers if side == "encoder" else self.decoder_layers

    def is_moe_position(self, index: int) -> bool:
        """Layer `index` (0-based) has an MoE (or fused) FFN when its side is routed (Sec 2: every
        other layer for moe_every=2, i.e. layers 1, 3, ...)."""
        return (index + 1) % self.moe_every == 0

    def has_experts(self, side: str) -> bool:
        return self.routing(side) not in ("none", "fused")

    def validate(self) -> None:
        def need(ok: bool, key: str, why: str) -> None:
            if not ok:
                raise PipelineError(f"{key}: {why}")

        for key in ("vocab_size", "d_model", "num_heads", "d_ff", "max_positions", "moe_every",
                    "num_experts", "top_k"):
            value = getattr(self, key)
            need(isinstance(value, int) and value > 0, key, f"must be a positive integer, got {value!r}")
        for key in ("encoder_layers", "decoder_layers"):
            need(isinstance(getattr(self, key), int) and getattr(self, key) >= 1, key, "must be >= 1")
        for key in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, key)
            need(isinstance(value, int) and 0 <= value < self.vocab_size, key,
                 f"must be an id below vocab_size {self.vocab_size}, got {value!r}")
        need(len(self.languages) >= 1 and all(isinstance(x, str) for x in self.languages), "languages",
             "must be a non-empty list of language codes")
        need(self.d_model % self.num_heads == 0, "num_heads", "must divide d_model")
        need(self.d_model % 2 == 0, "d_model", "must be even (sinusoidal positions)")
        need(self.top_k <= self.num_experts, "top_k", f"must be <= num_experts ({self.num_experts})")
        need(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        need(0 <= self.attention_dropout < 1, "attention_dropout", "must be in [0, 1)")
        need(self.second_expert_policy in ("all", "random"), "second_expert_policy",
             f"must be all or random, got {self.second_expert_policy!r}")
        need(self.capacity_factor >= 0, "capacity_factor", "must be >= 0")
        for side in SIDES:
            need(self.routing(side) in MODEL_ROUTINGS, f"{side}_routing",
                 f"must be one of {', '.join(MODEL_ROUTINGS)}, got {self.routing(side)!r}")

    @property
    def task_routed_sides(self) -> list[str]:
        return [side for side in SIDES if self.routing(side) in TASK_ROUTINGS]
