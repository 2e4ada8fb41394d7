"""Weight surgery between dense and MoE models of the same dimensions.

- `copy_non_expert_weights(teacher, student, ffn_init)`: the distillation student's initialisation
  (Kudugunta et al. 2021 Sec 4.4: the dense student starts from the teacher's non-expert weights). At
  the teacher's MoE positions the student's dense FFN is left as initialised (`fresh`) or set to the
  mean of the experts' weights (`expert_mean`, our option).
- `upcycle(dense, moe)`: sparse upcycling: every expert of each MoE layer starts as a copy of the dense
  FFN at that position; routers stay as initialised. Since the gate weights sum to 1, the upcycled
  model computes exactly what the dense one does.

Both write into the target model in place and return a summary of what they did.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pipeline.errors import PipelineError
from pipeline.model.moe import Experts, is_router_parameter
from pipeline.model.transformer import Seq2Seq

FFN_INITS = ("fresh", "expert_mean")
_SHARED_FIELDS = ("vocab_size", "pad_id", "bos_id", "eos_id", "d_model", "num_heads", "d_ff",
                  "encoder_layers", "decoder_layers")

# dense FFN tensor name -> (expert tensor, transposed?)  Linear stores (out, in); experts (E, in, out)
_FFN_FROM_EXPERTS = {"w_in.weight": ("w_in", True), "w_in.bias": ("b_in", False),
                     "w_out.weight": ("w_out", True), "w_out.bias": ("b_out", False)}


def _require_same_dims(a: Seq2Seq, b: Seq2Seq, what: str) -> None:
    diffs = [f"{k} {getattr(a.cfg, k)} vs {getattr(b.cfg, k)}" for k in _SHARED_FIELDS
             if getattr(a.cfg, k) != getattr(b.cfg, k)]
    if diffs:
        raise PipelineError(f"{what}: the models differ in {', '.join(diffs)}")


def _require_dense(model: Seq2Seq, what: str) -> None:
    routings = (model.cfg.encoder_routing, model.cfg.decoder_routing)
    if routings != ("none", "none"):
        raise PipelineError(f"{what} must be dense (routing none/none), got {routings[0]}/{routings[1]}")


def _split_ffn_name(name: str) -> tuple[str, str] | None:
    """'decoder.layers.1.ffn.w_in.weight' -> ('decoder.layers.1', 'w_in.weight')."""
    if ".ffn." not in name:
        return None
    layer, _, rest = name.partition(".ffn.")
    return layer, rest


def _expert_mean(experts: Experts, tensor_name: str) -> Tensor:
    source, transposed = _FFN_FROM_EXPERTS[tensor_name]
    mean = getattr(experts, source).detach().mean(0)
    return mean.t() if transposed else mean


@torch.no_grad()
def copy_non_expert_weights(teacher: Seq2Seq, student: Seq2Seq, ffn_init: str = "expert_mean") -> dict:
    """Copy embeddings, attention, norms and dense FFNs from `teacher` into the dense `student`."""
    if ffn_init not in FFN_INITS:
        raise PipelineError(f"ffn_init must be one of {', '.join(FFN_INITS)}, got {ffn_init!r}")
    _require_dense(student, "the student")
    _require_same_dims(teacher, student, "distillation init")
    teacher_state = teacher.state_dict()
    moe = teacher.moe_layers()
    summary = {"copied": 0, "expert_mean": [], "fresh": []}
    for name, target in student.state_dict().items():
        split = _split_ffn_name(name)
        if split and split[0] in moe:
            layer, tensor_name = split
            if ffn_init == "expert_mean":
                target.copy_(_expert_mean(moe[layer].experts, tensor_name))
            bucket = summary[ffn_init]
            if layer not in bucket:
                bucket.append(layer)
        elif name in teacher_state and teacher_state[name].shape == target.shape:
            target.copy_(teacher_state[name])
            summary["copied"] += 1
        else:
            raise PipelineError(f"distillation init: the teacher has no weight {name} of shape "
                                f"{tuple(target.shape)} (teacher routing {teacher.cfg.encoder_routing}/"
                                f"{teacher.cfg.decoder_routing})")
    return summary


@torch.no_grad()
def upcycle(dense: Seq2Seq, moe: Seq2Seq) -> dict:
    """Initialise `moe` from `dense`: everything copied, the dense FFN into every expert."""
    _require_dense(dense, "the dense model")
    _require_same_dims(dense, moe, "upcycling")
    dense_state = dense.state_dict()
    summary = {"copied": 0, "upcycled": [], "fresh_routers": []}
    for name, target in moe.state_dict().items():
        if is_router_parameter(name):
            layer = name.partition(".ffn.")[0]
            if layer not in summary["fresh_routers"]:
                summary["fresh_routers"].append(layer)
            continue
        if ".ffn.experts." in name:
            layer, _, expert_tensor = name.partition(".ffn.experts.")
            dense_name, transposed = {v[0]: (k, v[1]) for k, v in _FFN_FROM_EXPERTS.items()}[expert_tensor]
            source = dense_state[f"{layer}.ffn.{dense_name}"]
            target.copy_((source.t() if transposed else source).expand_as(target))
            if layer not in summary["upcycled"]:
                summary["upcycled"].append(layer)
        elif name in dense_state and dense_state[name].shape == target.shape:
            target.copy_(dense_state[name])
            summary["copied"] += 1
        else:
            raise PipelineError(f"upcycling: the dense model has no weight {name} of shape "
                                f"{tuple(target.shape)}")
    return summary
