"""Tiny models for the model tests: d_model 16, 2 layers per side, 4 experts, 3 languages."""

from __future__ import annotations

import torch

from pipeline.config import ModelConfig, ModelSpec
from pipeline.model import Seq2Seq, Seq2SeqConfig

LANGUAGES = ["en", "de", "fr"]
VOCAB, PAD, BOS, EOS = 24, 0, 2, 3


def tiny_config(encoder_routing="token", decoder_routing="target", num_experts=4, **overrides):
    fields = dict(d_model=16, num_heads=2, d_ff=32, encoder_layers=2, decoder_layers=2, dropout=0.0,
                  attention_dropout=0.0,
                  max_positions=64, num_experts=num_experts)
    fields.update(overrides)
    return Seq2SeqConfig.build(ModelConfig(**fields), ModelSpec(encoder_routing, decoder_routing),
                               VOCAB, PAD, BOS, EOS, LANGUAGES)


def tiny_model(encoder_routing="token", decoder_routing="target", seed=0, **overrides) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(tiny_config(encoder_routing, decoder_routing, **overrides)).eval()


def random_batch(batch=3, src_len=7, tgt_len=5, seed=1):
    """src/tgt_in of real tokens (ids 4..VOCAB-1) with some right padding, and language ids."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (batch, src_len), generator=g)
    tgt = torch.randint(4, VOCAB, (batch, tgt_len), generator=g)
    tgt[:, 0] = BOS
    for b in range(1, batch):  # sentences of different lengths
        src[b, src_len - b:] = PAD
        tgt[b, tgt_len - b:] = PAD
    src_lang = torch.tensor([0, 1, 2, 0, 1, 2][:batch])
    tgt_lang = torch.tensor([1, 0, 0, 2, 2, 1][:batch])
    return src, tgt, src_lang, tgt_lang


def task_moe(encoder_routing, decoder_routing, top_k):
    """A task-routed model whose tasks pick different experts (6 experts, task gates scaled up)."""
    model = tiny_model(encoder_routing, decoder_routing, num_experts=6, top_k=top_k, seed=4)
    with torch.no_grad():  # task embeddings spread apart, so tasks pick different experts
        for moe in model.moe_layers().values():
            if hasattr(moe.router, "task_embedding"):
                moe.router.gate.weight.mul_(20)
    return model


class FakeVocab:
    """Characters to ids 4..23 (lossy but deterministic); a tag id per target language."""

    pad_id, bos_id, eos_id, size = PAD, BOS, EOS, 24

    def encode_source(self, text, tgt_lang):
        return [4 + LANGUAGES.index(tgt_lang), *[4 + ord(c) % 20 for c in text], EOS]

    def encode_target(self, text):
        return [*[4 + ord(c) % 20 for c in text], EOS]

    def decode(self, ids):
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(chr(ord("a") + i - 4))
        return "".join(out)
