"""The learning-curve study on synthetic validation translations with known BLEU."""

from __future__ import annotations

import json

import pytest

from pipeline.config import CompareConfig
from pipeline.stats.curves import extrapolate, learning_curves
from pipeline.errors import PipelineError
from pipeline.evaluate import write_lines

DIRECTIONS = ("en-de", "de-en")
CFG = CompareConfig(bootstrap_resamples=200, seed=3)


@pytest.fixture
def write_curve(make_synthetic):
    """write(train_reports, model, {step: share of sentences right}, warm): val_hyps/<step>/<dir>.txt
    and index.json as training writes them."""

    def write(train_reports, model, shares_by_step: dict[int, float], warm: int = 0, n: int = 120):
        folder = train_reports / model / "val_hyps"
        for step, share in shares_by_step.items():
            hyps, _, _ = make_synthetic({"s": share}, directions=DIRECTIONS, n=n)
            (folder / f"{step:07d}").mkdir(parents=True)
            for direction, lines in hyps["s"].items():
                write_lines(folder / f"{step:07d}" / f"{direction}.txt", lines)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.json").write_text(json.dumps({"model": model, "warmstart_steps": warm,
                                                       "steps": sorted(shares_by_step)}))

    return write


@pytest.fixture
def corpus(tmp_path, make_synthetic):
    """meta.json and the validation TSVs whose first targets are the synthetic references."""
    _, refs, _ = make_synthetic({"s": 1.0}, directions=DIRECTIONS, n=200)
    root = tmp_path / "corpus"
    (root / "valid").mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"directions": list(DIRECTIONS), "pivot": "en",
                                                "languages": ["en", "de"]}))
    for direction, lines in refs.items():
        rows = "".join(f"1.1.{i}\tsource {i}\t{line}\n" for i, line in enumerate(lines))
        (root / "valid" / f"{direction}.tsv").write_text(rows, encoding="utf-8")
    return root


def test_gain_grows_and_first_significant_step_is_found(tmp_path, corpus, write_curve):
    reports = tmp_path / "train"
    write_curve(reports, "dense", {100: 0.3, 200: 0.3, 300: 0.3, 400: 0.3})
    write_curve(reports, "token_moe", {100: 0.3, 200: 0.3, 300: 0.5, 400: 0.7})
    study = learning_curves(reports, corpus, ["dense", "token_moe"], CFG)
    gains = {g["step"]: g for g in study["gain_vs_dense"]["token_moe"]}
    # same hypotheses at step 100: no difference in any resample
    assert gains[100]["diff"] == 0 and gains[100]["low"] == 0 == gains[100]["high"]
    assert not gains[100]["significant"] and not gains[200]["significant"]
    assert gains[300]["significant"] and gains[300]["diff"] == pytest.approx(20, abs=6)
    assert study["first_significant_step"]["token_moe"] == 300
    bleu = {p["step"]: p for p in study["bleu"]["dense"]}
    assert all(p["low"] <= p["bleu"] <= p["high"] for p in bleu.values())
    assert study["setup"]["sentences_per_direction"] == 120 and study["setup"]["steps"] == [100, 200, 300, 400]


def test_shared_warm_start_points_come_first(tmp_path, corpus, write_curve):
    reports = tmp_path / "train"
    write_curve(reports, "warmstart", {50: 0.1, 100: 0.2})
    write_curve(reports, "dense", {150: 0.3, 200: 0.35}, warm=100)
    write_curve(reports, "token_moe", {150: 0.3, 200: 0.4}, warm=100)
    study = learning_curves(reports, corpus, ["dense", "token_moe"], CFG)
    assert study["setup"]["steps"] == [50, 100, 150, 200] and study["setup"]["warmstart_steps"] == 100
    first = study["bleu"]["dense"][0]
    assert first == {**study["bleu"]["token_moe"][0]} and first["bleu"] == pytest.approx(10, abs=3)


def test_models_warm_started_differently_are_refused(tmp_path, corpus, write_curve):
    reports = tmp_path / "train"
    write_curve(reports, "warmstart", {100: 0.2})
    write_curve(reports, "dense", {200: 0.3}, warm=100)
    write_curve(reports, "token_moe", {200: 0.3}, warm=0)
    with pytest.raises(PipelineError, match="different numbers of steps"):
        learning_curves(reports, corpus, ["dense", "token_moe"], CFG)


def test_missing_or_incomplete_hypotheses_name_the_path(tmp_path, corpus, write_curve):
    reports = tmp_path / "train"
    write_curve(reports, "dense", {100: 0.3})
    with pytest.raises(PipelineError, match=r"token_moe/val_hyps/index.json: file not found"):
        learning_curves(reports, corpus, ["dense", "token_moe"], CFG)
    write_curve(reports, "token_moe", {100: 0.3})
    (reports / "token_moe" / "val_hyps" / "0000100" / "de-en.txt").unlink()
    with pytest.raises(PipelineError, match=r"0000100: no hypotheses for de-en"):
        learning_curves(reports, corpus, ["dense", "token_moe"], CFG)


def test_extrapolation_of_a_straight_line():
    gains = [{"step": s, "diff": 0.001 * s - 0.5, "low": 0.001 * s - 1.5, "high": 0.001 * s + 0.5}
             for s in (500, 1000, 1500, 2000)]
    line = extrapolate(gains, after_step=0)
    assert line["slope_per_1000_steps"] == pytest.approx(1.0)
    assert line["target_gain"] == pytest.approx(1.0)  # the last interval's half-width
    assert line["step_reaching_target"] == pytest.approx(2000)  # clamped to the last measured step
    assert extrapolate(gains, after_step=0, target=3.0)["step_reaching_target"] == pytest.approx(3500)
    assert extrapolate(gains, after_step=1000) is None  # fewer than 3 points after the warm start
    falling = [{**g, "diff": -g["diff"]} for g in gains]
    assert extrapolate(falling, after_step=0)["step_reaching_target"] is None
