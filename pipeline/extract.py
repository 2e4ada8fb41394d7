"""Sub-network extraction from a task-routed MoE, and loading whatever serves a direction.

docs/design.md §3 "Sub-network extraction": in a task-routed layer, task t always uses the same top-k experts
e_1..e_k with weights w_1..w_k, so the layer is the dense FFN of width k · d_ff
    W_in = [W_in^{e_1}; …; W_in^{e_k}],  b_in = [b_in^{e_1}; …],
    W_out = [w_1 W_out^{e_1}, …, w_k W_out^{e_k}],  b_out = Σ w_i b_out^{e_i}
(routing `fused`). Token- and sentence-routed layers stay as they are: for Token/Target the encoder
keeps its experts and each target language gets its own dense decoder. The result must compute what
the full model computes for that task; `verify_subnetwork` measures it instead of assuming it.

Task keys: the key of the task routing in use (target language, source language, or direction
`src-tgt` for pair); a model routed by two different task kinds is keyed by direction.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from pipeline.config import TASK_ROUTINGS
from pipeline.decode import pad_batch
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, read_json, write_json
from pipeline.model.checkpoint import load_checkpoint, save_checkpoint
from pipeline.model.moe import MoELayer
from pipeline.model.routing import task_ids, top_k_gating
from pipeline.model.transformer import Seq2Seq

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1


# --------------------------------------------------------------------------------------------------
# task keys


def task_key_kind(model: Seq2Seq) -> str:
    """target | source | pair: what identifies a sub-network of this model."""
    cfg = model.cfg
    if cfg.decoder_routing not in TASK_ROUTINGS:
        raise PipelineError(f"cannot extract: decoder routing is {cfg.decoder_routing!r}; extraction "
                            f"needs task routing ({'/'.join(TASK_ROUTINGS)})")
    kinds = {cfg.routing(side) for side in cfg.task_routed_sides}
    return kinds.pop() if len(kinds) == 1 else "pair"


def task_key(kind: str, direction: str) -> str:
    src, tgt = split_direction(direction)
    return {"target": tgt, "source": src, "pair": direction}[kind]


def split_direction(direction: str) -> tuple[str, str]:
    src, sep, tgt = direction.partition("-")
    if not sep or not src or not tgt:
        raise PipelineError(f"direction {direction!r} is not of the form <src>-<tgt>")
    return src, tgt


# --------------------------------------------------------------------------------------------------
# extraction


def task_gating(moe: MoELayer, routing: str, src_lang: int, tgt_lang: int,
                num_languages: int) -> tuple[list[int], list[float]]:
    """The experts and weights a task-routed layer uses for one task: the router's own gating."""
    device = moe.experts.w_in.device
    task = task_ids(routing, torch.tensor([src_lang], device=device), torch.tensor([tgt_lang], device=device),
                    num_languages)
    x = torch.zeros(1, 1, moe.experts.w_in.shape[1], device=device)  # a task router ignores x
    route = moe.router(x, torch.ones(1, 1, dtype=torch.bool, device=device), task)
    gating = top_k_gating(route.logits, moe.top_k)
    return gating.expert_index.view(-1).tolist(), gating.weights.view(-1).tolist()


def fuse_experts(w_in: Tensor, b_in: Tensor, w_out: Tensor, b_out: Tensor, experts: list[int],
                 weights: list[float]) -> dict[str, Tensor]:
    """Batched expert tensors (E, D, F), (E, F), (E, F, D), (E, D) -> one FFN of width k·F, as the
    state of a `FeedForward` (Linear layout: weight (out, in))."""
    index = torch.tensor(experts, device=w_in.device)
    w = torch.tensor(weights, dtype=w_out.dtype, device=w_out.device)  # (K,)
    D = w_in.shape[1]
    fused_in = w_in[index].permute(0, 2, 1).reshape(-1, D)  # (K*F, D) = [W_in^{e_1}; ...]
    fused_out = (w[:, None, None] * w_out[index]).reshape(-1, D).t()  # (D, K*F)
    return {"w_in.weight": fused_in, "w_in.bias": b_in[index].reshape(-1),
            "w_out.weight": fused_out.contiguous(), "w_out.bias": (w[:, None] * b_out[index]).sum(0)}


@torch.no_grad()
def extract_task(model: Seq2Seq, src_lang: str, tgt_lang: str) -> tuple[Seq2Seq, dict]:
    """The sub-network serving direction src_lang -> tgt_lang, and its per-layer expert choice."""
    cfg = model.cfg
    languages = cfg.languages
    sub_cfg = dataclasses.replace(cfg, **{f"{side}_routing": "fused" for side in cfg.task_routed_sides})
    sub = Seq2Seq(sub_cfg).to(next(model.parameters()).device)
    routed = _task_routed_layers(model)
    state = {name: t for name, t in model.state_dict().items()
             if name.partition(".ffn.")[0] not in routed}  # the routed layers' FFNs are replaced
    layers = {}
    for name, moe in routed.items():
        routing = cfg.routing(name.partition(".")[0])
        experts, weights = task_gating(moe, routing, languages.index(src_lang), languages.index(tgt_lang),
                                       len(languages))
        fused = fuse_experts(moe.experts.w_in, moe.experts.b_in, moe.experts.w_out, moe.experts.b_out,
                             experts, weights)
        state.update({f"{name}.ffn.{key}": value for key, value in fused.items()})
        layers[name] = {"experts": experts, "weights": weights}
    sub.load_state_dict(state, strict=True)  # every tensor accounted for
    return sub.eval(), layers


def _task_routed_layers(model: Seq2Seq) -> dict[str, MoELayer]:
    sides = model.cfg.task_routed_sides
    return {name: moe for name, moe in model.moe_layers().items() if name.partition(".")[0] in sides}


def extract_subnetworks(model: Seq2Seq, directions: Optional[list[str]] = None
                        ) -> dict[str, tuple[Seq2Seq, dict]]:
    """One sub-network per task key of `directions` (default: every ordered pair of the model's
    languages): {key: (sub-network, manifest entry)}."""
    kind = task_key_kind(model)
    languages = model.cfg.languages
    if directions is None:
        directions = [f"{s}-{t}" for s in languages for t in languages if s != t]
    groups: dict[str, list[str]] = {}
    for direction in directions:
        for lang in split_direction(direction):
            if lang not in languages:
                raise PipelineError(f"cannot extract {direction}: the model has no language {lang!r} "
                                    f"(it knows {', '.join(languages)})")
        groups.setdefault(task_key(kind, direction), []).append(direction)
    full_parameters = model.parameter_count().total
    out = {}
    for key, members in groups.items():
        sub, layers = extract_task(model, *split_direction(members[0]))
        out[key] = (sub, {"directions": members, "layers": layers,
                          "resident_parameters": sub.parameter_count().total,
                          "full_parameters": full_parameters})
    return out


# --------------------------------------------------------------------------------------------------
# verification


def teacher_forced_batch(vocab, pairs: list[tuple[str, str]], src_lang: str, tgt_lang: str,
                         languages: list[str]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Tokenized (source, reference) pairs of one direction, padded: src, tgt_in = bos + reference."""
    src = [vocab.encode_source(s, tgt_lang) for s, _ in pairs]
    tgt_in = [[vocab.bos_id, *vocab.encode_target(t)[:-1]] for _, t in pairs]
    n = len(pairs)
    return (pad_batch(src, vocab.pad_id, "cpu"), pad_batch(tgt_in, vocab.pad_id, "cpu"),
            torch.full((n,), languages.index(src_lang)), torch.full((n,), languages.index(tgt_lang)))


@torch.no_grad()
def verify_subnetwork(full: Seq2Seq, sub: Seq2Seq, src: Tensor, tgt_in: Tensor, src_lang: Tensor,
                      tgt_lang: Tensor) -> float:
    """Max |logit difference| between the two models over the real target positions (eval, fp32)."""
    was_training = full.training, sub.training
    full.eval(), sub.eval()
    try:
        expected = full(src, tgt_in, src_lang, tgt_lang).logits.float()
        actual = sub(src, tgt_in, src_lang, tgt_lang).logits.float()
    finally:
        full.train(was_training[0]), sub.train(was_training[1])
    mask = (tgt_in != full.cfg.pad_id)[..., None]
    return float(((expected - actual).abs() * mask).max()) if mask.any() else 0.0


# --------------------------------------------------------------------------------------------------
# on disk


def save_subnetworks(subnetworks: dict[str, tuple[Seq2Seq, dict]], folder: str | Path,
                     source: Seq2Seq, extra: Optional[dict] = None) -> dict:
    """Write one checkpoint folder per task key and `manifest.json`, atomically; return the manifest."""
    routes = {d: key for key, (_, entry) in subnetworks.items() for d in entry["directions"]}
    manifest = {
        "format": MANIFEST_FORMAT,
        "key_kind": task_key_kind(source),
        "source_routing": {"encoder": source.cfg.encoder_routing,
                           "decoder": source.cfg.decoder_routing},
        "languages": source.cfg.languages,
        "full_parameters": source.parameter_count().total,
        "routes": routes,
        "tasks": {key: {"folder": key, **entry} for key, (_, entry) in subnetworks.items()},
        **(extra or {}),
    }
    with atomic_dir(folder) as tmp:
        for key, (sub, _) in subnetworks.items():
            save_checkpoint(sub, tmp / key)
        write_json(tmp / MANIFEST_FILE, manifest)
    return manifest


class SingleModel:
    """One checkpoint serves every direction."""

    is_extracted = False

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        self.model = load_checkpoint(folder, device)
        self.languages = list(self.model.cfg.languages)
        self.full_parameters = self.model.parameter_count().total

    def model_for(self, src_lang: str, tgt_lang: str) -> Seq2Seq:
        return self.model

    def resident_parameters(self, src_lang: str, tgt_lang: str) -> int:
        return self.full_parameters


class ExtractedModels:
    """Sub-networks keyed by task; each loaded on first use and kept."""

    is_extracted = True

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        self.folder = Path(folder)
        self.device = device
        self.manifest = read_json(self.folder / MANIFEST_FILE)
        required = ("tasks", "routes", "languages", "full_parameters", "key_kind")
        missing = [key for key in required if key not in self.manifest]
        if self.manifest.get("format") != MANIFEST_FORMAT or missing:
            raise PipelineError(f"{self.folder / MANIFEST_FILE}: not a sub-network manifest "
                                f"(format {MANIFEST_FORMAT}; missing: {', '.join(missing) or 'none'}); "
                                "rerun the extract stage")
        self.languages = list(self.manifest["languages"])
        self.full_parameters = int(self.manifest["full_parameters"])
        self._load = functools.lru_cache(maxsize=None)(self._load_task)

    def task_for(self, src_lang: str, tgt_lang: str) -> str:
        direction = f"{src_lang}-{tgt_lang}"
        key = self.manifest["routes"].get(direction) or task_key(self.manifest["key_kind"], direction)
        if key not in self.manifest["tasks"]:
            raise PipelineError(f"{self.folder / MANIFEST_FILE}: no sub-network serves {direction} "
                                f"(have: {', '.join(self.manifest['tasks'])})")
        return key

    def _load_task(self, key: str) -> Seq2Seq:
        return load_checkpoint(self.folder / self.manifest["tasks"][key]["folder"], self.device)

    def model_for(self, src_lang: str, tgt_lang: str) -> Seq2Seq:
        return self._load(self.task_for(src_lang, tgt_lang))

    def resident_parameters(self, src_lang: str, tgt_lang: str) -> int:
        return int(self.manifest["tasks"][self.task_for(src_lang, tgt_lang)]["resident_parameters"])


def load_deployable(folder: str | Path, device: str | torch.device = "cpu") -> SingleModel | ExtractedModels:
    """What serves each direction: a folder with manifest.json holds sub-networks, else one checkpoint."""
    folder = Path(folder)
    if (folder / MANIFEST_FILE).exists():
        return ExtractedModels(folder, device)
    return SingleModel(folder, device)
