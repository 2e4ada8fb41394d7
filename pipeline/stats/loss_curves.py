"""Validation-loss learning curves: how far ahead of dense is each MoE, and how fast does its lead grow?

Greedy BLEU on a few hundred validation sentences (`pipeline.stats.curves`) is too noisy to see a lead of a
tenth of a BLEU point grow. Every validation also records each validation sentence's cross-entropy
(`val_hyps/<step>/losses.json`, written by training: all `data.valid_size` sentences of every
direction), so this module measures, per step:

- each model's loss in nats per target token (all directions pooled, as `val_loss`), with a paired
  bootstrap interval: the sentences of each direction resampled with the indices `pipeline.stats.compare`
  uses, the same for every model and step;
- each MoE's lead, `loss(dense) − loss(model)` (positive = the MoE is better), with its interval;
- the lead in dense steps: the lead divided by how fast dense's own loss was falling over the
  validation interval ending at that step (`steps_ahead`); `(steps since the warm start + steps_ahead) /
  steps since the warm start` is the MoE's speed-up in steps.

`extrapolate_lead` fits a line to the lead after the warm start and gives the step where it would reach
the loss difference that dense's own curve trades for `target_gain` BLEU (a least-squares line of
dense's validation BLEU against its loss after the warm start): labelled as an extrapolation, and only
as good as the assumption that a nat of the MoE's lead buys as much BLEU as a nat of dense's training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pipeline.config import CompareConfig
from pipeline.errors import PipelineError
from pipeline.stats.bootstrap import counts_from_indices, interval, resample_indices
from pipeline.stats.compare import BASELINE

LOSSES = "losses.json"  # pipeline.train.run.VAL_LOSSES: what training writes beside the hypotheses


def read_losses(step_dir: Path, directions: Sequence[str]) -> Optional[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{direction: (nll (n,), tokens (n,))} of one validation, or None when that run saved none."""
    path = step_dir / LOSSES
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["directions"]
        out = {d: (np.asarray(data[d]["nll"], dtype=float), np.asarray(data[d]["tokens"], dtype=float))
               for d in directions}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"{path}: not a validation-loss file ({type(exc).__name__}: {exc})") from None
    for d, (nll, tokens) in out.items():
        if nll.shape != tokens.shape or not np.all(np.isfinite(nll)) or np.any(tokens <= 0):
            raise PipelineError(f"{path}: {d}: losses and token counts do not match or are not valid")
    return out


class LossBootstrap:
    """Pooled loss per token of every (model, step), actual and resampled (R,)."""

    def __init__(self, losses: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], resamples: int,
                 seed: int):
        first = next(iter(losses.values()))
        self.directions = list(first)
        self.actual: dict[str, float] = {}
        self.resampled: dict[str, np.ndarray] = {}
        counts = {}
        for d in self.directions:
            n = len(first[d][1])
            counts[d] = counts_from_indices(resample_indices(n, resamples, seed, d), n)  # (R, n)
        for key, by_direction in losses.items():
            nll = sum(by_direction[d][0].sum() for d in self.directions)
            tokens = sum(by_direction[d][1].sum() for d in self.directions)
            self.actual[key] = float(nll / tokens)
            r_nll = sum(counts[d] @ by_direction[d][0] for d in self.directions)  # (R,)
            r_tokens = sum(counts[d] @ by_direction[d][1] for d in self.directions)
            self.resampled[key] = r_nll / r_tokens


def _check_same_sentences(losses: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]) -> None:
    """Every model was scored on the same references: the same token count for every sentence."""
    keys = list(losses)
    reference = losses[keys[0]]
    for key in keys[1:]:
        for d, (_, tokens) in losses[key].items():
            if not np.array_equal(tokens, reference[d][1]):
                raise PipelineError(f"validation losses of {key} and {keys[0]} are not over the same "
                                    f"{d} sentences; rerun the train stages")


def loss_curves(losses: dict[str, dict[int, dict]], steps: Sequence[int], warm: int, cfg: CompareConfig,
                bleu: Optional[dict[str, list[dict]]] = None, target_gain: float = 1.5) -> dict:
    """The study of the module docstring. `losses[model][step]` as `read_losses` gives them (every model
    at every step of `steps`); `bleu` the greedy BLEU curves of `pipeline.stats.curves`, for the extrapolation."""
    flat = {f"{m}@{s}": losses[m][s] for m in losses for s in steps}
    _check_same_sentences(flat)
    bs = LossBootstrap(flat, cfg.bootstrap_resamples, cfg.seed)
    conf = cfg.confidence
    curve = {m: [{"step": s, "loss": bs.actual[f"{m}@{s}"],
                  **dict(zip(("low", "high"), interval(bs.resampled[f"{m}@{s}"], conf)))}
                 for s in steps] for m in losses}
    dense = {p["step"]: p["loss"] for p in curve[BASELINE]}
    rates = {s: (dense[prev] - dense[s]) / (s - prev) for prev, s in zip(steps, steps[1:])}
    leads, first, extra = {}, {}, {}
    for m in losses:
        if m == BASELINE:
            continue
        leads[m] = []
        for s in steps:
            diff_bs = bs.resampled[f"{BASELINE}@{s}"] - bs.resampled[f"{m}@{s}"]
            low, high = interval(diff_bs, conf)
            diff = dense[s] - bs.actual[f"{m}@{s}"]
            rate = rates.get(s)
            leads[m].append({"step": s, "diff": diff, "low": low, "high": high,
                             "significant": bool(low > 0 or high < 0),
                             "steps_ahead": diff / rate if s > warm and rate and rate > 0 else None})
        first[m] = next((g["step"] for g in leads[m] if g["step"] > warm and g["significant"]
                         and g["diff"] > 0), None)
        extra[m] = extrapolate_lead(leads[m], warm, bleu_per_nat(curve[BASELINE], bleu, warm), target_gain)
    return {"setup": {"unit": "nats per target token, all directions pooled",
                      "sentences_per_direction": {d: int(len(flat[next(iter(flat))][d][1]))
                                                  for d in bs.directions},
                      "resamples": cfg.bootstrap_resamples, "seed": cfg.seed, "confidence": conf,
                      "target_gain": target_gain},
            "loss": curve, "lead_vs_dense": leads, "first_significant_step": first,
            "dense_loss_drop_per_1000_steps": [{"step": s, "drop": r * 1000} for s, r in rates.items()],
            "extrapolation": extra}


def bleu_per_nat(dense_loss: list[dict], bleu: Optional[dict[str, list[dict]]], warm: int) -> Optional[float]:
    """BLEU dense gains per nat its validation loss falls, after the warm start (least squares over its
    validation points; at least 3). None without BLEU curves or when BLEU does not rise as loss falls."""
    if not bleu or BASELINE not in bleu:
        return None
    by_step = {p["step"]: p["bleu"] for p in bleu[BASELINE]}
    points = [(p["loss"], by_step[p["step"]]) for p in dense_loss if p["step"] > warm and p["step"] in by_step]
    if len(points) < 3:
        return None
    slope = np.polyfit([x for x, _ in points], [y for _, y in points], 1)[0]
    return float(-slope) if slope < 0 else None


def extrapolate_lead(leads: list[dict], warm: int, per_nat: Optional[float], target_gain: float) -> Optional[dict]:
    """A least-squares line through the lead after the warm start, and where it would reach the loss
    lead worth `target_gain` BLEU at dense's `per_nat` exchange rate."""
    points = [g for g in leads if g["step"] > warm]
    if len(points) < 3:
        return None
    slope, intercept = np.polyfit([g["step"] for g in points], [g["diff"] for g in points], 1)
    out = {"fit_points": len(points), "lead_per_1000_steps": float(slope * 1000),
           "intercept": float(intercept), "bleu_per_nat": per_nat, "target_gain": target_gain,
           "target_lead": target_gain / per_nat if per_nat else None, "step_reaching_target": None,
           "method": "least-squares line through the validation-loss lead vs step after the warm start, "
                     "the target converted at dense's own BLEU per nat; an extrapolation, not a "
                     "measurement"}
    if out["target_lead"] is not None and slope > 1e-12:  # a flat line fits a slope of ~1e-19
        out["step_reaching_target"] = float(max((out["target_lead"] - intercept) / slope,
                                                points[-1]["step"]))
    return out
