"""The extract stage end to end on a tiny checkpoint, with a fake vocabulary and corpus reader."""

import json

import pytest

from pipeline.model import save_checkpoint
from stages import extract as stage
from tiny_models import FakeVocab, task_moe, tiny_model

PAIRS = [("in the beginning", "am anfang"), ("and god said", "und gott sprach"), ("light", "licht")]


@pytest.fixture
def setup(tmp_path, monkeypatch, repo_root):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "meta.json").write_text(json.dumps({"languages": ["en", "de", "fr"],
                                                  "directions": ["en-de", "en-fr", "de-en"]}))
    monkeypatch.setattr(stage, "_load_vocab", lambda path: FakeVocab())
    monkeypatch.setattr(stage, "_test_pairs", lambda corpus, direction, limit: PAIRS[:limit])

    def run(model, *extra):
        save_checkpoint(model, tmp_path / "model")
        return stage.main(["--params", str(repo_root / "params.yaml"), "--model", str(tmp_path / "model"),
                           "--corpus", str(corpus), "--out", str(tmp_path / "sub"),
                           "--report", str(tmp_path / "extract.json"), *extra])

    return tmp_path, run


def test_stage_writes_verified_subnetworks_and_report(setup):
    tmp_path, run = setup
    assert run(task_moe("token", "target", 2)) == 0
    manifest = json.loads((tmp_path / "sub" / "manifest.json").read_text())
    assert sorted(manifest["tasks"]) == ["de", "en", "fr"]
    assert all((tmp_path / "sub" / key / "model.safetensors").exists() for key in manifest["tasks"])
    report = json.loads((tmp_path / "extract.json").read_text())
    assert report["max_abs_logit_diff"] < 1e-5
    assert set(report["tasks"]["de"]["per_direction"]) == {"en-de"}
    assert 0 < report["tasks"]["de"]["resident_fraction"] < 1
    assert report["wall_seconds"] > 0  # the report's wall-time table reads it


def test_stage_fails_and_writes_nothing_above_tolerance(setup, monkeypatch, capsys):
    tmp_path, run = setup
    monkeypatch.setattr("pipeline.extract.verify_subnetwork", lambda *args: 0.5)
    assert run(task_moe("token", "target", 2)) == 2
    assert "differs from" in capsys.readouterr().err
    assert not (tmp_path / "sub").exists() and not (tmp_path / "extract.json").exists()


def test_stage_rejects_a_token_routed_decoder(setup, capsys):
    tmp_path, run = setup
    assert run(tiny_model("token", "token")) == 2
    assert "error: cannot extract: decoder routing is 'token'" in capsys.readouterr().err
    assert not (tmp_path / "sub").exists()
