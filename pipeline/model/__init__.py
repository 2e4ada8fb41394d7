"""The translation model: an encoder-decoder Transformer whose FFNs may be MoE layers.

routing.py     routers (token, sentence, task) and the gating maths (top-k, balance and z losses)
moe.py         dense FFN, experts, the MoE layer and its dropless dispatch
attention.py   multi-head attention with explicit K/V caching
transformer.py Seq2Seq (encode, decode, incremental decoding)
config.py      Seq2SeqConfig (saved as config.json)
counting.py    parameter counts (total, active per token, per component)
checkpoint.py  save / load (safetensors + config.json)
surgery.py     distillation init from a teacher's non-expert weights; sparse upcycling
"""

from pipeline.model.checkpoint import load_checkpoint, load_config, save_checkpoint
from pipeline.model.config import MODEL_ROUTINGS, Seq2SeqConfig
from pipeline.model.counting import ParameterCount, count_parameters
from pipeline.model.moe import is_expert_parameter, is_router_parameter
from pipeline.model.transformer import (
    DecoderCache, DecoderOutput, DecoderStep, EncoderOutput, Seq2Seq, Seq2SeqOutput,
)

__all__ = [
    "MODEL_ROUTINGS", "DecoderCache", "DecoderOutput", "DecoderStep", "EncoderOutput", "ParameterCount",
    "Seq2Seq", "Seq2SeqConfig", "Seq2SeqOutput", "count_parameters", "is_expert_parameter",
    "is_router_parameter", "load_checkpoint", "load_config", "save_checkpoint",
]
