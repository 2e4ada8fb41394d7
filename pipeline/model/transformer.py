"""Encoder-decoder Transformer whose FFNs may be MoE layers (Kudugunta et al. 2021, Sec 2-3).

Dimension legend: B batch, S source length, T target length, D model width, E experts, K top-k,
V vocab, H heads, Dh head width.

- Pre-LN layers (LayerNorm before each sublayer, a final LayerNorm per side), ReLU FFNs.
- One embedding shared by source and target, scaled by sqrt(D) and tied with the output projection.
- Sinusoidal positions: no parameters and no length limit, so a sub-network or a longer test sentence
  needs nothing special; `max_positions` only caps decoding length.
- At every `moe_every`-th layer (index i with (i+1) % moe_every == 0) a side that is routed has an MoE
  FFN (`MoELayer`), a `fused` side has a dense FFN of width top_k * d_ff, an unrouted side a dense one.
- Task ids come from language ids: target -> tgt_lang, source -> src_lang, pair -> src * L + tgt.
- Incremental decoding: `start_decoding` computes the cross-attention K/V once per source sentence;
  `decode_step` appends to the self-attention K/V and returns a new `DecoderCache` (nothing mutated).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.attention import KeyValue, MultiHeadAttention, causal_mask, padding_mask
from pipeline.model.config import SIDES, Seq2SeqConfig
from pipeline.model.counting import ParameterCount, count_parameters
from pipeline.model.moe import (
    Experts, FeedForward, FFNOutput, LayerRouting, MoELayer, is_expert_parameter,
)
from pipeline.model.routing import RouterState, make_router, task_ids

__all__ = ["Seq2Seq", "Seq2SeqConfig", "Seq2SeqOutput", "EncoderOutput", "DecoderOutput",
           "DecoderCache", "DecoderStep"]

Routing = dict[str, LayerRouting]  # "encoder.layers.1" -> what that MoE layer did


class EncoderOutput(NamedTuple):
    states: Tensor  # (B, S, D)
    token_mask: Tensor  # (B, S) real source tokens
    aux_loss: Tensor  # scalar, weighted, summed over the encoder's MoE layers
    routing: Routing


class DecoderOutput(NamedTuple):
    logits: Tensor  # (B, T, V)
    aux_loss: Tensor
    routing: Routing


class Seq2SeqOutput(NamedTuple):
    logits: Tensor  # (B, T, V)
    aux_loss: Tensor  # scalar: balance (+ z) losses, already weighted, summed over all MoE layers
    routing: Routing


class LayerCache(NamedTuple):
    self_kv: KeyValue  # (B, H, t, Dh) each: the target prefix so far
    router_state: RouterState


class DecoderCache(NamedTuple):
    memory_kv: tuple[KeyValue, ...]  # per decoder layer: cross-attention K/V, computed once
    memory_mask: Tensor  # (B, 1, 1, S)
    src_lang: Tensor  # (B,)
    tgt_lang: Tensor  # (B,)
    layers: tuple[Optional[LayerCache], ...]  # per decoder layer; None before the first step
    position: int  # target tokens consumed so far

    def reorder(self, index: Tensor, memory: bool = True) -> "DecoderCache":
        """Keep / repeat / permute batch rows (beam search, finished sentences).

        `memory=False` leaves the per-sentence part (cross-attention K/V, mask, languages) as it is:
        for a reorder that keeps the batch's rows of each sentence where they are (beam search picking
        parents among the beams of one sentence), copying it would only copy the same values.
        """
        if not memory:
            return self._replace(layers=_select(self.layers, index))
        return self._replace(memory_kv=_select(self.memory_kv, index),
                             memory_mask=self.memory_mask.index_select(0, index),
                             src_lang=self.src_lang.index_select(0, index),
                             tgt_lang=self.tgt_lang.index_select(0, index),
                             layers=_select(self.layers, index))


class DecoderStep(NamedTuple):
    logits: Tensor  # (B, t, V) for the t tokens fed
    cache: DecoderCache


def _select(tree, index: Tensor):
    if tree is None:
        return None
    if isinstance(tree, Tensor):
        return tree.index_select(0, index)
    return type(tree)(*(_select(x, index) for x in tree)) if hasattr(tree, "_fields") else \
        tuple(_select(x, index) for x in tree)


def sinusoidal_positions(positions: Tensor, dim: int) -> Tensor:
    """(L,) positions -> (L, D) sin/cos encodings (Vaswani et al. 2017)."""
    freqs = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
                      * (-math.log(10000.0) / dim))  # (D/2,)
    angles = positions.float()[:, None] * freqs[None, :]  # (L, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (L, D) interleaved


def _sum_aux(outputs: list[FFNOutput], like: Tensor) -> Tensor:
    losses = [f.aux_loss for f in outputs if f.aux_loss is not None]
    return torch.stack(losses).sum() if losses else like.new_zeros(())


def _make_ffn(cfg: Seq2SeqConfig, side: str, index: int) -> nn.Module:
    routing = cfg.routing(side)
    if routing == "none" or not cfg.is_moe_position(index):
        return FeedForward(cfg.d_model, cfg.d_ff)
    if routing == "fused":
        return FeedForward(cfg.d_model, cfg.top_k * cfg.d_ff)
    router = make_router(routing, cfg.d_model, cfg.num_experts, len(cfg.languages),
                         causal=side == "decoder")
    return MoELayer(router, Experts(cfg.num_experts, cfg.d_model, cfg.d_ff), cfg.top_k,
                    cfg.balance_loss_weight, cfg.router_z_loss_weight, cfg.second_expert_policy,
                    cfg.capacity_factor)


# --------------------------------------------------------------------------------------------------
# layers


class EncoderLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, ffn: nn.Module):
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(cfg.d_model)
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout)
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.ffn = ffn
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, token_mask: Tensor, attn_mask: Tensor,
                task: Optional[Tensor]) -> tuple[Tensor, FFNOutput]:
        h = self.self_attn_norm(x)
        x = x + self.dropout(self.self_attn(h, self.self_attn.project_kv(h), attn_mask))
        f = self.ffn(self.ffn_norm(x), token_mask, task)
        return x + self.dropout(f.output), f


class DecoderLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, ffn: nn.Module):
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(cfg.d_model)
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout)
        self.cross_attn_norm = nn.LayerNorm(cfg.d_model)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout)
        self.ffn_norm = nn.LayerNorm(cfg.d_model)
        self.ffn = ffn
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, token_mask: Tensor, self_mask: Optional[Tensor], memory_kv: KeyValue,
                memory_mask: Tensor, task: Optional[Tensor],
                cache: Optional[LayerCache]) -> tuple[Tensor, FFNOutput, LayerCache]:
        h = self.self_attn_norm(x)
        k, v = self.self_attn.project_kv(h)  # (B, H, t, Dh)
        if cache is not None:
            k, v = torch.cat([cache.self_kv[0], k], dim=2), torch.cat([cache.self_kv[1], v], dim=2)
        x = x + self.dropout(self.self_attn(h, (k, v), self_mask))
        x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), memory_kv, memory_mask))
        f = self.ffn(self.ffn_norm(x), token_mask, task, cache.router_state if cache else None)
        return x + self.dropout(f.output), f, LayerCache((k, v), f.router_state)


# --------------------------------------------------------------------------------------------------
# the model


class Seq2Seq(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, D, padding_idx=cfg.pad_id)
        nn.init.normal_(self.embed.weight, std=D ** -0.5)  # scaled by sqrt(D): unit variance inputs
        with torch.no_grad():
            self.embed.weight[cfg.pad_id].zero_()
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(
            EncoderLayer(cfg, _make_ffn(cfg, "encoder", i)) for i in range(cfg.encoder_layers))
        self.encoder.final_norm = nn.LayerNorm(D)
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(
            DecoderLayer(cfg, _make_ffn(cfg, "decoder", i)) for i in range(cfg.decoder_layers))
        self.decoder.final_norm = nn.LayerNorm(D)

    # -- helpers ------------------------------------------------------------------------------------

    def task_ids(self, side: str, src_lang: Tensor, tgt_lang: Tensor) -> Optional[Tensor]:
        return task_ids(self.cfg.routing(side), src_lang, tgt_lang, len(self.cfg.languages))

    def _embed(self, tokens: Tensor, start: int) -> Tensor:
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) * math.sqrt(self.cfg.d_model)
        return self.embed_dropout(x + sinusoidal_positions(positions, self.cfg.d_model).to(x.dtype))

    def named_expert_parameters(self):
        return [(n, p) for n, p in self.named_parameters() if is_expert_parameter(n)]

    def expert_parameters(self) -> list[nn.Parameter]:
        """Expert weights (their own learning rate: ModelConfig.expert_lr_scale)."""
        return [p for _, p in self.named_expert_parameters()]

    def non_expert_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not is_expert_parameter(n)]

    def parameter_count(self) -> ParameterCount:
        return count_parameters(self)

    # -- encoder ------------------------------------------------------------------------------------

    def encode(self, src: Tensor, src_lang: Tensor, tgt_lang: Tensor) -> EncoderOutput:
        """src (B, S) -> states (B, S, D)."""
        token_mask = src != self.cfg.pad_id  # (B, S)
        attn_mask = padding_mask(token_mask)  # (B, 1, 1, S)
        task = self.task_ids("encoder", src_lang, tgt_lang)
        x = self._embed(src, 0)
        ffn_outputs = []
        for layer in self.encoder.layers:
            x, f = layer(x, token_mask, attn_mask, task)
            ffn_outputs.append(f)
        routing = {f"encoder.layers.{i}": f.routing for i, f in enumerate(ffn_outputs) if f.routing}
        return EncoderOutput(self.encoder.final_norm(x), token_mask, _sum_aux(ffn_outputs, x), routing)

    # -- decoder ------------------------------------------------------------------------------------

    def start_decoding(self, memory: EncoderOutput, src_lang: Tensor, tgt_lang: Tensor) -> DecoderCache:
        """The cache before the first target token: cross-attention K/V of every decoder layer."""
        memory_kv = tuple(layer.cross_attn.project_kv(memory.states) for layer in self.decoder.layers)
        return DecoderCache(memory_kv, padding_mask(memory.token_mask), src_lang, tgt_lang,
                            (None,) * len(self.decoder.layers), 0)

    def decode_step(self, tokens: Tensor, cache: DecoderCache) -> DecoderStep:
        """Feed the next tokens (B, t) (usually t = 1); logits (B, t, V) and the extended cache."""
        out, cache, _, _ = self._decode(tokens, cache)
        return DecoderStep(out, cache)

    def decode(self, tgt_in: Tensor, memory: EncoderOutput, src_lang: Tensor,
               tgt_lang: Tensor) -> DecoderOutput:
        """Teacher-forced decoding of tgt_in (B, T) against the encoder output."""
        logits, _, aux, routing = self._decode(tgt_in, self.start_decoding(memory, src_lang, tgt_lang))
        return DecoderOutput(logits, aux, routing)

    def _decode(self, tokens: Tensor, cache: DecoderCache):
        token_mask = tokens != self.cfg.pad_id  # (B, t)
        self_mask = causal_mask(tokens.shape[1], cache.position, tokens.device)
        task = self.task_ids("decoder", cache.src_lang, cache.tgt_lang)
        x = self._embed(tokens, cache.position)
        ffn_outputs, layer_caches = [], []
        for layer, memory_kv, layer_cache in zip(self.decoder.layers, cache.memory_kv, cache.layers):
            x, f, new_cache = layer(x, token_mask, self_mask, memory_kv, cache.memory_mask, task,
                                    layer_cache)
            ffn_outputs.append(f)
            layer_caches.append(new_cache)
        logits = F.linear(self.decoder.final_norm(x), self.embed.weight)  # tied output projection
        routing = {f"decoder.layers.{i}": f.routing for i, f in enumerate(ffn_outputs) if f.routing}
        new_cache = cache._replace(layers=tuple(layer_caches), position=cache.position + tokens.shape[1])
        return logits, new_cache, _sum_aux(ffn_outputs, x), routing

    # -- both -------------------------------------------------------------------------------------

    def forward(self, src: Tensor, tgt_in: Tensor, src_lang: Tensor, tgt_lang: Tensor) -> Seq2SeqOutput:
        """src (B, S), tgt_in (B, T) (bos + target[:-1]), language ids (B,) -> logits (B, T, V)."""
        memory = self.encode(src, src_lang, tgt_lang)
        decoded = self.decode(tgt_in, memory, src_lang, tgt_lang)
        return Seq2SeqOutput(decoded.logits, memory.aux_loss + decoded.aux_loss,
                             {**memory.routing, **decoded.routing})

    def moe_layers(self) -> dict[str, MoELayer]:
        """`"decoder.layers.1"` -> its MoE layer, for every MoE layer."""
        out = {}
        for side in SIDES:
            for i, layer in enumerate(getattr(self, side).layers):
                if isinstance(layer.ffn, MoELayer):
                    out[f"{side}.layers.{i}"] = layer.ffn
        return out
