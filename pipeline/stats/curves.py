"""The learning-curve study: where (if anywhere) does the MoE overtake the dense model?

Every validation during training writes the greedy translations of the first `train.val_bleu_sentences`
validation pairs of each direction to `reports/train/<model>/val_hyps/<step>/<direction>.txt` (step
counts a warm start's steps). This module scores them all against the validation references with the
same paired bootstrap as `pipeline.stats.compare` (one resampling of the sentences per direction, shared by
every model and step), and gives, per step:

- each model's average BLEU over directions, with its interval;
- each model's difference to dense at the same step, with its interval and whether it excludes 0.

When the models were warm-started from a shared dense run (`train.warmstart_steps`), that run's
validations are the first points of every curve: before the warm start ends the models are one model.

The budget at which a gain would become significant is not measured here; `extrapolate` fits a line to
the gain after the warm start and says where it would cross the interval's half-width, labelled as an
extrapolation. When training saved every validation sentence's loss beside the translations,
`pipeline.stats.loss_curves` adds the same study on the validation loss (`"loss"` in the result): far less
noisy than BLEU on a subset, it shows how far ahead of dense each MoE is, in nats and in dense steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pipeline.config import CompareConfig
from pipeline.errors import PipelineError
from pipeline.evaluate import read_lines
from pipeline.roles import Roles
from pipeline.stats.bootstrap import Bootstrap
from pipeline.stats.compare import BASELINE, difference, system_score

WARMSTART = "warmstart"
VAL_HYPS = "val_hyps"


def read_val_hyps(folder: Path, directions: Sequence[str]) -> tuple[dict, dict[int, dict[str, list[str]]]]:
    """(index.json, {step: {direction: lines}}) of one model's validation hypotheses."""
    index_path = folder / "index.json"
    if not index_path.exists():
        raise PipelineError(f"{index_path}: file not found (rerun the training stage that writes it)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{index_path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    steps = {}
    for step in index.get("steps", []):
        step_dir = folder / f"{int(step):07d}"
        missing = [d for d in directions if not (step_dir / f"{d}.txt").exists()]
        if missing:
            raise PipelineError(f"{step_dir}: no hypotheses for {', '.join(missing)}")
        steps[int(step)] = {d: read_lines(step_dir / f"{d}.txt") for d in directions}
    return index, steps


def collect(train_reports: Path, models: Sequence[str], directions: Sequence[str]
            ) -> tuple[dict[str, dict[int, dict[str, list[str]]]], int]:
    """{model: {step: {direction: lines}}} with the shared warm start's points prepended; and its steps."""
    curves, offsets = {}, {}
    for model in models:
        index, steps = read_val_hyps(train_reports / model / VAL_HYPS, directions)
        curves[model], offsets[model] = steps, int(index.get("warmstart_steps", 0))
    if len(set(offsets.values())) > 1:
        raise PipelineError(f"{train_reports}: the models were warm-started for different numbers of "
                            f"steps ({offsets}); rerun the train stages")
    warm = next(iter(offsets.values()), 0)
    if warm:
        _, shared = read_val_hyps(train_reports / WARMSTART / VAL_HYPS, directions)
        for model in models:
            curves[model] = {**{s: h for s, h in shared.items() if s <= warm}, **curves[model]}
    return curves, warm


def collect_losses(train_reports: Path, models: Sequence[str], directions: Sequence[str], warm: int,
                   steps: Sequence[int]) -> Optional[dict[str, dict[int, dict]]]:
    """{model: {step: losses}} from the same folders as `collect` (the warm start's for steps up to
    `warm`); None if any of them has no losses.json (written by older runs)."""
    from pipeline.stats.loss_curves import read_losses

    out: dict[str, dict[int, dict]] = {}
    for model in models:
        out[model] = {}
        for step in steps:
            owner = WARMSTART if warm and step <= warm else model
            losses = read_losses(train_reports / owner / VAL_HYPS / f"{int(step):07d}", directions)
            if losses is None:
                return None
            out[model][step] = losses
    return out


def extrapolate(gains: list[dict], after_step: int, target: Optional[float] = None) -> Optional[dict]:
    """A least-squares line through the gain after the warm start; the step where it reaches `target`
    (default: the half-width of the last interval, where the gain would start to be significant)."""
    points = [g for g in gains if g["step"] > after_step]
    if len(points) < 3:
        return None
    steps = np.array([g["step"] for g in points], dtype=float)
    diffs = np.array([g["diff"] for g in points], dtype=float)
    slope, intercept = np.polyfit(steps, diffs, 1)
    last = points[-1]
    if target is None:
        target = (last["high"] - last["low"]) / 2
    out = {"fit_points": len(points), "slope_per_1000_steps": float(slope * 1000),
           "intercept": float(intercept), "target_gain": float(target), "step_reaching_target": None,
           "method": "least-squares line through the gain vs step after the warm start; an "
                     "extrapolation, not a measurement"}
    if slope > 0:
        out["step_reaching_target"] = float(max((target - intercept) / slope, last["step"]))
    return out


def learning_curves(train_reports: str | Path, corpus_dir: str | Path, models: Sequence[str],
                    cfg: CompareConfig, target_gain: float = 1.5, roles: Roles = Roles()) -> dict:
    """Score every model at every validation step; see the module docstring. `models` are the trained
    models to compare (`Roles.trained`: the baseline, the teacher and the task-MoE)."""
    from pipeline.data.corpus import load_split
    from pipeline.evaluate import read_corpus_meta

    start = time.perf_counter()
    train_reports = Path(train_reports)
    if BASELINE not in models:
        raise PipelineError(f"params.models: the learning curves need the baseline {BASELINE!r}")
    directions = read_corpus_meta(Path(corpus_dir))["directions"]
    curves, warm = collect(train_reports, models, directions)
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    if not steps:
        raise PipelineError(f"{train_reports}: no validation step shared by {', '.join(models)} "
                            "(set train.val_bleu_sentences > 0)")
    valid = load_split(Path(corpus_dir), "valid")
    n = {len(curves[m][s][d]) for m in models for s in steps for d in directions}
    if len(n) != 1:
        raise PipelineError(f"{train_reports}: validation hypotheses have different lengths {sorted(n)}; "
                            "rerun the train stages")
    n = n.pop()
    refs = {d: [p.target for p in valid[d][:n]] for d in directions}
    short = [d for d in directions if len(refs[d]) != n]
    if short:
        raise PipelineError(f"{Path(corpus_dir) / 'valid'}: fewer than {n} pairs for {', '.join(short)}")
    hyps = {f"{m}@{s}": curves[m][s] for m in models for s in steps}
    bs = Bootstrap(hyps, refs, cfg.bootstrap_resamples, cfg.seed)
    conf = cfg.confidence
    scores = {m: [{"step": s, **system_score(bs, f"{m}@{s}", directions, conf)} for s in steps]
              for m in models}
    gains, first, extra = {}, {}, {}
    for m in models:
        if m == BASELINE:
            continue
        gains[m] = [{"step": s, **difference(bs, f"{m}@{s}", f"{BASELINE}@{s}", directions, conf)}
                    for s in steps]
        own = [g for g in gains[m] if g["step"] > warm]
        first[m] = next((g["step"] for g in own if g["significant"] and g["diff"] > 0), None)
        extra[m] = {"significant": extrapolate(gains[m], warm),
                    "target": extrapolate(gains[m], warm, target=target_gain)}
    losses = collect_losses(train_reports, models, directions, warm, steps)
    loss = None
    if losses is not None:
        from pipeline.stats.loss_curves import loss_curves

        loss = loss_curves(losses, steps, warm, cfg, scores, target_gain)
    return {"setup": {"models": list(models), "baseline": BASELINE, "roles": roles.as_dict(), "steps": steps,
                      "warmstart_steps": warm, "split": "valid", "sentences_per_direction": n,
                      "directions": list(directions), "decode": "greedy",
                      "resamples": cfg.bootstrap_resamples, "seed": cfg.seed, "confidence": conf,
                      "target_gain": target_gain, "signatures": bs.signatures,
                      "wall_seconds": time.perf_counter() - start},
            "bleu": scores, "gain_vs_dense": gains, "first_significant_step": first,
            "extrapolation": extra, "loss": loss}
