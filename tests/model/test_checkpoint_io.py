"""Checkpoints: round trip, and clear one-line errors for missing, truncated or mismatched files."""

import json

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model import load_checkpoint, save_checkpoint
from tiny_models import random_batch, tiny_model


def test_round_trip_gives_the_same_model(tmp_path):
    model = tiny_model("token", "target")
    folder = save_checkpoint(model, tmp_path / "m", meta={"step": 7}, meta_name="train_meta.json")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors",
                                                       "train_meta.json"]
    assert json.loads((folder / "train_meta.json").read_text()) == {"step": 7}
    loaded = load_checkpoint(folder)
    assert loaded.cfg == model.cfg and not loaded.training
    batch = random_batch()
    assert torch.equal(loaded(*batch).logits, model(*batch).logits)
    assert not list(tmp_path.glob(".m.tmp-*"))  # no temporary left behind


def test_saving_again_keeps_other_files(tmp_path):
    model = tiny_model("none", "none")
    save_checkpoint(model, tmp_path)
    (tmp_path / "notes.txt").write_text("kept")
    save_checkpoint(model, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "kept"


def _one_line_error(folder, match):
    with pytest.raises(PipelineError, match=match) as info:
        load_checkpoint(folder)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_folder_or_files(tmp_path):
    _one_line_error(tmp_path / "nope", "checkpoint folder not found")
    save_checkpoint(tiny_model("none", "none"), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    _one_line_error(tmp_path / "m", r"model.safetensors: file not found")
    (tmp_path / "m" / "config.json").unlink()
    _one_line_error(tmp_path / "m", r"config.json: file not found")


def test_truncated_weights_are_rejected(tmp_path):
    folder = save_checkpoint(tiny_model("token", "target"), tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    message = _one_line_error(folder, "truncated or corrupt")
    assert str(weights) in message
    weights.write_bytes(b"")
    _one_line_error(folder, "truncated or corrupt")


def test_config_that_does_not_match_the_weights_is_rejected(tmp_path):
    folder = save_checkpoint(tiny_model("token", "target"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())

    (folder / "config.json").write_text(json.dumps({**config, "d_ff": 48}))
    message = _one_line_error(folder, "does not match .*config.json: wrong shapes")
    assert "ffn" in message

    (folder / "config.json").write_text(json.dumps({**config, "decoder_routing": "none"}))
    _one_line_error(folder, "unexpected weights decoder.layers.1.ffn.experts")

    (folder / "config.json").write_text(json.dumps({**config, "decoder_layers": 3}))
    _one_line_error(folder, "missing weights decoder.layers.2")

    (folder / "config.json").write_text(json.dumps({**config, "colour": "blue"}))
    _one_line_error(folder, r"config.json: unknown key\(s\) colour")

    (folder / "config.json").write_text("{not json")
    _one_line_error(folder, "config.json: not valid JSON")


def test_checkpoint_from_before_attention_dropout_loads_with_dropout_for_both(tmp_path):
    model = tiny_model("token", "target", dropout=0.2)
    folder = save_checkpoint(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    del config["attention_dropout"]  # as older runs wrote it
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_checkpoint(folder)
    assert loaded.cfg.attention_dropout == 0.2
    assert loaded.encoder.layers[0].self_attn.dropout == 0.2
