"""The Transformer: causality, the KV cache, task ids, parameter counts, the config."""

import dataclasses

import pytest
import torch

from pipeline.config import ModelConfig, ModelSpec
from pipeline.errors import PipelineError
from pipeline.model import Seq2SeqConfig, count_parameters, is_expert_parameter
from pipeline.model.moe import FeedForward, MoELayer
from tiny_models import random_batch, tiny_config, tiny_model

ROUTING_PAIRS = [("none", "none"), ("token", "token"), ("token", "target"), ("sentence", "sentence"),
                 ("pair", "pair"), ("source", "fused")]


def test_moe_layers_sit_at_every_moe_every_th_layer():
    model = tiny_model("token", "none", encoder_layers=4, decoder_layers=3, moe_every=2)
    kinds = [type(layer.ffn) for layer in model.encoder.layers]
    assert kinds == [FeedForward, MoELayer, FeedForward, MoELayer]
    assert all(type(layer.ffn) is FeedForward for layer in model.decoder.layers)
    fused = tiny_model("token", "fused", top_k=2)
    assert fused.decoder.layers[1].ffn.w_in.out_features == 2 * 32
    assert fused.decoder.layers[0].ffn.w_in.out_features == 32


def test_decoder_is_causal():
    model = tiny_model("token", "sentence")
    src, tgt, sl, tl = random_batch()
    changed = tgt.clone()
    changed[0, 3] = 5 if tgt[0, 3] != 5 else 6
    a, b = model(src, tgt, sl, tl).logits, model(src, changed, sl, tl).logits
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6)
    assert not torch.allclose(a[0, 3:], b[0, 3:])


@pytest.mark.parametrize("routing", ROUTING_PAIRS, ids=lambda r: "/".join(r))
def test_incremental_decoding_with_the_cache_equals_full_decoding(routing):
    model = tiny_model(*routing)
    src, tgt, sl, tl = random_batch(batch=2, tgt_len=6)
    tgt[:] = torch.where(tgt == 0, 7, tgt)  # decoding feeds no padding
    memory = model.encode(src, sl, tl)
    full = model.decode(tgt, memory, sl, tl).logits
    cache = model.start_decoding(memory, sl, tl)
    steps = []
    for t in range(tgt.shape[1]):
        logits, cache = model.decode_step(tgt[:, t:t + 1], cache)
        steps.append(logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    assert cache.position == tgt.shape[1]
    # chunks of several tokens, and reordering the batch, give the same
    logits, cache = model.decode_step(tgt[:, :4], model.start_decoding(memory, sl, tl))
    logits2, _ = model.decode_step(tgt[:, 4:].flip(0), cache.reorder(torch.tensor([1, 0])))
    assert torch.allclose(torch.cat([logits, logits2.flip(0)], 1), full, atol=1e-5)


def test_target_routing_follows_the_target_language():
    model = tiny_model("token", "target", num_experts=8)
    src, tgt, sl, tl = random_batch(batch=6)
    routing = model(src, tgt, sl, tl).routing["decoder.layers.1"]
    for b in range(6):
        for c in range(6):
            same = torch.equal(routing.expert_index[b, 0], routing.expert_index[c, 0])
            if tl[b] == tl[c]:
                assert same


def test_parameter_counts():
    model = tiny_model("token", "target", num_experts=4, top_k=2)
    counts = count_parameters(model)
    assert counts.total == sum(p.numel() for p in model.parameters())
    components = counts.as_dict()
    assert counts.total == sum(v for k, v in components.items() if k not in ("total", "active_per_token"))
    assert counts.active_per_token == counts.total - counts.experts // 2  # 2 of 4 experts active
    assert counts.experts == sum(p.numel() for p in model.expert_parameters())
    assert all(is_expert_parameter(n) for n, _ in model.named_expert_parameters())
    assert len(model.expert_parameters()) + len(model.non_expert_parameters()) == \
        len(list(model.parameters()))
    dense = count_parameters(tiny_model("none", "none"))
    assert dense.experts == dense.routers == 0 and dense.active_per_token == dense.total


def test_config_build_and_round_trip():
    cfg = Seq2SeqConfig.build(ModelConfig(num_experts=8), ModelSpec("token", "target", num_experts=16),
                              100, 0, 2, 3, ["en", "de"])
    assert cfg.num_experts == 16 and cfg.decoder_routing == "target"
    assert Seq2SeqConfig.from_dict(cfg.to_dict()) == cfg
    assert set(cfg.to_dict()) - {f.name for f in dataclasses.fields(ModelConfig)} == {
        "vocab_size", "pad_id", "bos_id", "eos_id", "languages", "encoder_routing", "decoder_routing"}


def test_config_rejects_unknown_keys_and_bad_values():
    data = tiny_config().to_dict()
    with pytest.raises(PipelineError, match=r"x/config.json: unknown key\(s\) colour"):
        Seq2SeqConfig.from_dict({**data, "colour": 1}, source="x/config.json")
    with pytest.raises(PipelineError, match="missing key"):
        Seq2SeqConfig.from_dict({k: v for k, v in data.items() if k != "d_ff"})
    with pytest.raises(PipelineError, match="decoder_routing"):
        Seq2SeqConfig.from_dict({**data, "decoder_routing": "language"})
    with pytest.raises(PipelineError, match="top_k"):
        Seq2SeqConfig.from_dict({**data, "top_k": 5})


def test_dropout_only_in_training():
    model = tiny_model("token", "token", dropout=0.3)
    batch = random_batch()
    assert torch.equal(model(*batch).logits, model(*batch).logits)
    model.train()
    assert not torch.equal(model(*batch).logits, model(*batch).logits)
