"""evaluate: scores equal sacrebleu's command line; groups; hypothesis files; the stage's errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.config import EvaluateConfig
from pipeline.errors import PipelineError
from pipeline.evaluate import (aggregate, direction_groups, evaluate_model, read_lines,
                               score_direction, tokenizer_for, write_lines)

REFS = ["The cat sat on the mat.", "Hello world!", "It rained all day, and we stayed home.",
        "Numbers like 3.14 and 1,000 matter.", "Short."]
HYPS = ["The cat sat on a mat.", "Hello, world", "It rained the whole day and we stayed at home.",
        "Numbers like 3.14 and 1000 matter.", ""]
ZH_REFS = ["我们今天去公园散步。", "他喜欢读书和写作。"]
ZH_HYPS = ["我们今天去公园走走。", "他喜欢读书。"]


def sacrebleu_cli(tmp_path, hyps, refs, tokenize):
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
         "-m", "bleu", "chrf", "-tok", tokenize, "-w", "6", "-f", "json"],
        capture_output=True, text=True, check=True).stdout
    bleu, chrf = json.loads(out)
    return bleu, chrf


@pytest.mark.parametrize("hyps,refs,lang", [(HYPS, REFS, "de"), (ZH_HYPS, ZH_REFS, "zh")])
def test_scores_and_signatures_equal_sacrebleu_command_line(tmp_path, hyps, refs, lang):
    ours = score_direction(hyps, refs, lang)
    bleu, chrf = sacrebleu_cli(tmp_path, hyps, refs, tokenizer_for(lang))
    assert ours["bleu"] == pytest.approx(bleu["score"], abs=1e-6)
    assert ours["chrf"] == pytest.approx(chrf["score"], abs=1e-6)
    assert ours["bleu_signature"] == bleu["signature"]
    assert ours["chrf_signature"] == chrf["signature"]
    assert 0 < ours["bleu"] < 100


def test_tokenizer_choice():
    assert tokenizer_for("de") == "13a"
    assert tokenizer_for("zh") == "zh"
    assert tokenizer_for("ja") in ("ja-mecab", "char")  # char when MeCab is not installed


def test_groups_and_aggregates():
    directions = ["en-de", "en-it", "de-en", "it-en"]
    groups = direction_groups(directions, "en", ["de"])
    assert groups == {"avg": directions, "xx_to_pivot": ["de-en", "it-en"],
                      "pivot_to_xx": ["en-de", "en-it"], "high": ["en-de", "de-en"],
                      "low": ["en-it", "it-en"]}
    scores = {d: {"bleu": b, "chrf": 2 * b} for d, b in zip(directions, [10.0, 20.0, 30.0, 50.0])}
    agg = aggregate(scores, groups)
    assert agg["avg"]["bleu"] == 27.5 and agg["high"]["bleu"] == 20.0 and agg["low"]["chrf"] == 70.0
    assert aggregate(scores, direction_groups(directions, "en", []))["high"] is None


def test_hypothesis_lines_round_trip(tmp_path):
    lines = ["a b", "", "with\nnewline", "  spaced  "]
    write_lines(tmp_path / "h.txt", lines)
    assert read_lines(tmp_path / "h.txt") == ["a b", "", "with newline", "  spaced  "]


def test_evaluate_model_writes_hyps_and_metrics(tmp_path, fake_stack, corpus_factory):
    pairs = [("a b c d e", "a b c d e"), ("f g h i j", "f g h i k"), ("x y z", "q r s")]
    corpus = corpus_factory(tmp_path / "corpus", {"en-de": pairs, "en-it": pairs, "de-en": pairs,
                                                "it-en": pairs}, high_resource=["de"])
    (tmp_path / "model").mkdir()
    out = tmp_path / "eval" / "dense"
    metrics = evaluate_model("dense", tmp_path / "model", corpus, out,
                             EvaluateConfig(max_sentences=2))
    assert read_lines(out / "hyps" / "en-de.txt") == ["a b c d e", "f g h i j"]  # first 2, aligned
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["bleu"] == pytest.approx(metrics["bleu"])
    assert set(on_disk["groups"]) == {"avg", "xx_to_pivot", "pivot_to_xx", "high", "low"}
    assert on_disk["directions"]["en-de"]["sentences"] == 2
    assert on_disk["directions"]["en-de"]["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert on_disk["decode"]["beam_size"] == 4 and on_disk["sentences"] == 8
    assert [p.name for p in out.parent.iterdir()] == ["dense"]  # no temporary folder left


def test_missing_inputs_raise(tmp_path, fake_stack, corpus_factory):
    corpus = corpus_factory(tmp_path / "corpus", {"en-de": [("a", "a")]})
    with pytest.raises(PipelineError, match="model folder not found"):
        evaluate_model("x", tmp_path / "nope", corpus, tmp_path / "out", EvaluateConfig())
    (tmp_path / "model").mkdir()
    (corpus / "test" / "en-de.tsv").unlink()
    with pytest.raises(PipelineError, match="en-de.tsv"):
        evaluate_model("x", tmp_path / "model", corpus, tmp_path / "out", EvaluateConfig())
    assert not (tmp_path / "out").exists()


def test_stage_rejects_missing_model_folder_with_one_line(tmp_path, capsys):
    from pathlib import Path

    from stages.evaluate import main

    params = Path(__file__).resolve().parents[2] / "params.yaml"
    status = main(["--params", str(params), "--model", "dense", "--model-dir",
                   str(tmp_path / "models" / "dense"), "--corpus", str(tmp_path / "corpus"),
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ") and "models/dense" in err and "not found" in err
