"""The validation-loss learning curves on synthetic per-sentence losses with a known lead."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import CompareConfig
from pipeline.errors import PipelineError
from pipeline.stats.loss_curves import bleu_per_nat, extrapolate_lead, loss_curves, read_losses

DIRECTIONS = ("en-de", "de-en")
CFG = CompareConfig(bootstrap_resamples=300, seed=5)
N = 200


def _sentences(loss_per_token: float, seed: int, noise: float = 0.02):
    """{direction: (nll, tokens)}: sentence difficulty shared by every model (seed 0), plus noise."""
    shared = np.random.default_rng(0)
    own = np.random.default_rng(seed)
    out = {}
    for d in DIRECTIONS:
        tokens = shared.integers(5, 40, size=N).astype(float)
        difficulty = shared.normal(0, 0.5, size=N)
        nll = tokens * (loss_per_token + difficulty + own.normal(0, noise, size=N))
        out[d] = (nll, tokens)
    return out


def _study(dense: dict[int, float], moe: dict[int, float], warm: int = 0, bleu=None):
    steps = sorted(dense)
    losses = {"dense": {s: _sentences(dense[s], seed=s) for s in steps},
              "token_moe": {s: _sentences(moe[s], seed=1000 + s) for s in steps}}
    return loss_curves(losses, steps, warm, CFG, bleu=bleu)


def test_pooled_loss_and_lead_with_intervals():
    dense = {100: 4.0, 200: 3.8, 300: 3.6, 400: 3.5}
    moe = {100: 4.0, 200: 3.8, 300: 3.55, 400: 3.4}
    study = _study(dense, moe)
    for model, truth in (("dense", dense), ("token_moe", moe)):
        for point in study["loss"][model]:
            # the shared difficulty has mean ~0, so the pooled loss is near the constructed one
            assert point["loss"] == pytest.approx(truth[point["step"]], abs=0.08)
            assert point["low"] <= point["loss"] <= point["high"]
    leads = {g["step"]: g for g in study["lead_vs_dense"]["token_moe"]}
    for step, g in leads.items():
        assert g["diff"] == pytest.approx(dense[step] - moe[step], abs=0.006)  # paired: difficulty cancels
        assert g["low"] <= g["diff"] <= g["high"]
    assert not leads[100]["significant"] and not leads[200]["significant"] and leads[300]["significant"] and leads[400]["significant"]
    assert study["first_significant_step"]["token_moe"] == 300
    # steps ahead: the lead over how fast dense fell in the interval ending there (0.1 per 100 at 400)
    assert leads[400]["steps_ahead"] == pytest.approx(leads[400]["diff"] / 0.001, rel=0.15)
    assert leads[100]["steps_ahead"] is None  # no earlier point to measure dense's rate


def test_a_model_against_the_same_losses_leads_by_nothing():
    steps = [100, 200]
    same = {s: _sentences(3.0, seed=s) for s in steps}
    study = loss_curves({"dense": same, "token_moe": same}, steps, 0, CFG)
    for g in study["lead_vs_dense"]["token_moe"]:
        assert g["diff"] == 0 and g["low"] == 0 == g["high"] and not g["significant"]


def test_warm_start_steps_are_not_a_lead():
    dense = {50: 4.5, 100: 4.2, 150: 4.0, 200: 3.9, 250: 3.8}
    moe = {**dense, 150: 3.95, 200: 3.8, 250: 3.65}
    study = _study(dense, moe, warm=100)
    leads = {g["step"]: g for g in study["lead_vs_dense"]["token_moe"]}
    assert leads[100]["steps_ahead"] is None and study["first_significant_step"]["token_moe"] == 150


def test_extrapolation_reaches_the_target_lead_at_dense_exchange_rate():
    # dense: 10 BLEU per nat; lead grows 0.01 nats per 100 steps from 0 at step 100
    leads = [{"step": s, "diff": 0.0001 * (s - 100)} for s in (200, 300, 400, 500)]
    line = extrapolate_lead(leads, warm=100, per_nat=10.0, target_gain=1.5)
    assert line["target_lead"] == pytest.approx(0.15)
    assert line["lead_per_1000_steps"] == pytest.approx(0.1)
    assert line["step_reaching_target"] == pytest.approx(1600)
    flat = [{"step": s, "diff": 0.02} for s in (200, 300, 400)]
    assert extrapolate_lead(flat, warm=100, per_nat=10.0, target_gain=1.5)["step_reaching_target"] is None
    assert extrapolate_lead(leads[:2], warm=100, per_nat=10.0, target_gain=1.5) is None  # too few points


def test_bleu_per_nat_from_dense_curves():
    loss = [{"step": s, "loss": v} for s, v in ((100, 4.0), (200, 3.9), (300, 3.8), (400, 3.7))]
    bleu = {"dense": [{"step": s, "bleu": 2 + 12 * (4.0 - v)} for s, v in
                      ((100, 4.0), (200, 3.9), (300, 3.8), (400, 3.7))]}
    assert bleu_per_nat(loss, bleu, warm=0) == pytest.approx(12)
    assert bleu_per_nat(loss, bleu, warm=200) is None  # two points after the warm start
    falling = {"dense": [{"step": p["step"], "bleu": 10 - p["step"] / 100} for p in loss]}
    assert bleu_per_nat(loss, falling, warm=0) is None


def test_models_scored_on_different_sentences_are_refused():
    steps = [100]
    a = {100: _sentences(3.0, seed=1)}
    b = {100: {d: (nll, tokens + 1) for d, (nll, tokens) in _sentences(3.0, seed=2).items()}}
    with pytest.raises(PipelineError, match="not over the same"):
        loss_curves({"dense": a, "token_moe": b}, steps, 0, CFG)


def test_read_losses(tmp_path):
    assert read_losses(tmp_path, DIRECTIONS) is None  # a run that saved none
    (tmp_path / "losses.json").write_text(json.dumps(
        {"directions": {d: {"nll": [1.5, 2.0], "tokens": [3, 4]} for d in DIRECTIONS}}))
    nll, tokens = read_losses(tmp_path, DIRECTIONS)["de-en"]
    assert nll.tolist() == [1.5, 2.0] and tokens.tolist() == [3, 4]
    (tmp_path / "losses.json").write_text(json.dumps({"directions": {"en-de": {"nll": [1.0]}}}))
    with pytest.raises(PipelineError, match=r"losses\.json: not a validation-loss file"):
        read_losses(tmp_path, DIRECTIONS)
    (tmp_path / "losses.json").write_text(json.dumps(
        {"directions": {d: {"nll": [1.0, 2.0], "tokens": [3, 0]} for d in DIRECTIONS}}))
    with pytest.raises(PipelineError, match="do not match or are not valid"):
        read_losses(tmp_path, DIRECTIONS)
