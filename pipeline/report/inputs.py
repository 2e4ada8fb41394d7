"""What the report reads: every stage's JSON, read once into `Inputs`.

Only `compare.json` is required; every other input may be missing and is then reported as "not
available". Inputs (paths as the report stage passes them):
- `<reports>/compare.json` (pipeline.stats.compare): its `setup.roles` say which model is the teacher,
  the task-MoE, the sub-networks, the student and its control (`pipeline.roles.Roles`);
- `<reports>/evaluate/<model>/metrics.json` (pipeline.evaluate), with `hypotheses`: how many translations
  are empty or one repeated line (a model with degenerate translations has no result);
- `<reports>/benchmark.json` (pipeline.benchmark), `<reports>/extract.json` (pipeline.extract),
  `<reports>/curves.json` (pipeline.stats.curves), `<reports>/prepare/stats.json` (pipeline.data.prepare);
- `<reports>/train/<model>/metrics.json`, `train_curve.csv` (step, train_loss, lr) and `val_curve.csv`
  (step, val_loss, val_bleu);
- `<models>/<model>/config.json` (routing) and `meta.json` (`expert_usage`, the student's `distill` and
  `distill_data`, the control's `control`, `threads`);
- `<corpus>/meta.json`, `dvc.lock` (hashes of data and checkpoints), `<reports>/seeds/index.json`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.report.provenance import read_lock
from pipeline.roles import Roles

log = logging.getLogger(__name__)

CURVE_FILES = ("train_curve.csv", "val_curve.csv")  # what training writes beside metrics.json


@dataclass
class Inputs:
    compare: dict
    evaluations: dict[str, dict] = field(default_factory=dict)  # model -> evaluate metrics.json
    benchmark: Optional[dict] = None
    extract: Optional[dict] = None
    prepare_stats: Optional[dict] = None
    train: dict[str, dict] = field(default_factory=dict)  # model -> train metrics.json
    curves: dict[str, list[dict]] = field(default_factory=dict)  # model -> rows of both curve files
    model_configs: dict[str, dict] = field(default_factory=dict)
    model_meta: dict[str, dict] = field(default_factory=dict)  # model -> meta.json (minus expert_usage)
    expert_usage: dict[str, dict] = field(default_factory=dict)
    corpus_meta: Optional[dict] = None
    lock: Optional[dict] = None
    study: Optional[dict] = None  # reports/curves.json: the learning-curve study
    distill_data: Optional[dict] = None  # data/distill/meta.json, as the distilled model's meta.json keeps it
    distill: Optional[dict] = None  # the distilled model's meta.json: its distill settings, schedule_offset
    control: Optional[dict] = None  # the control's meta.json: `control` settings and schedule_offset
    seeds: Optional[dict] = None  # reports/seeds/index.json: the seeds stage's extra seeds

    @property
    def roles(self) -> Roles:
        return Roles.from_dict(self.compare.get("setup", {}).get("roles"))

    @property
    def systems(self) -> list[str]:
        return list(self.compare["systems"])

    @property
    def setup(self) -> dict:
        return self.compare.get("setup", {})

    @property
    def confidence(self) -> float:
        return self.setup.get("confidence", 0.95)

    @property
    def pivot(self) -> str:
        return self.setup.get("pivot") or (self.corpus_meta or {}).get("pivot", "en")

    def avg(self, section: str, name: str) -> Optional[dict]:
        """compare.json's average over all directions of `name` in `section` (systems, vs_baseline,
        vs_control, fractions), or None."""
        return (self.compare.get(section) or {}).get(name, {}).get("groups", {}).get("avg")

    def degenerate(self, name: str) -> Optional[str]:
        """Why `name`'s test translations are no result (mostly empty, or one line repeated), or None."""
        return ((self.evaluations.get(name) or {}).get("hypotheses") or {}).get("degenerate")

    def seconds_per_step(self, name: str) -> Optional[float]:
        m = self.train.get(name, {})
        seconds = m.get("train_seconds") or m.get("wall_seconds")
        steps = (m.get("steps") or 0) - (m.get("resumed_from_step") or 0)
        return seconds / steps if seconds and steps > 0 else None


def _optional_json(path: Path) -> Optional[Any]:
    if not path.exists():
        return None
    try:
        return read_json(path)
    except PipelineError as exc:
        log.warning("ignoring %s", exc)
        return None


def read_curve_rows(folder: Path) -> list[dict]:
    """The rows of a model's training and validation curves, merged by step (None where a file has no
    value for a step)."""
    def value(text: str):
        try:
            return float(text)
        except (TypeError, ValueError):
            return None

    rows: dict[float, dict] = {}
    for name in CURVE_FILES:
        path = folder / name
        if not path.exists():
            continue
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                parsed = {k: value(v) for k, v in row.items()}
                rows.setdefault(parsed["step"], {}).update(parsed)
    return [rows[s] for s in sorted(rows)]


def load_inputs(reports_dir: str | Path, models_dir: str | Path, corpus_dir: str | Path,
                lock_path: str | Path = "dvc.lock") -> Inputs:
    reports, models = Path(reports_dir), Path(models_dir)
    compare_path = reports / "compare.json"
    if not compare_path.exists():
        raise PipelineError(f"{compare_path}: file not found (run `dvc repro compare` first)")
    inputs = Inputs(compare=read_json(compare_path))
    names = set(inputs.systems)
    names |= {p.name for p in (reports / "train").glob("*") if p.is_dir()}
    for name in sorted(names):
        model_meta = _optional_json(models / name / "meta.json") or {}
        found = {
            "evaluations": _optional_json(reports / "evaluate" / name / "metrics.json"),
            "train": _optional_json(reports / "train" / name / "metrics.json"),
            "model_configs": _optional_json(models / name / "config.json"),
            "expert_usage": model_meta.get("expert_usage"),
            "model_meta": {k: v for k, v in model_meta.items() if k != "expert_usage"} or None,
        }
        for attr, value in found.items():
            if value:
                getattr(inputs, attr)[name] = value
        if model_meta.get("distill_data"):  # the student keeps data/distill/meta.json in its meta.json
            inputs.distill_data = model_meta["distill_data"]
        if model_meta.get("distill"):
            inputs.distill = {**model_meta["distill"], "schedule_offset": model_meta.get("schedule_offset")}
        if model_meta.get("control"):
            inputs.control = {**model_meta["control"], "schedule_offset": model_meta.get("schedule_offset")}
        rows = read_curve_rows(reports / "train" / name)
        if rows:
            inputs.curves[name] = rows
    inputs.benchmark = _optional_json(reports / "benchmark.json")
    inputs.seeds = _optional_json(reports / "seeds" / "index.json")
    inputs.study = _optional_json(reports / "curves.json")
    inputs.extract = _optional_json(reports / "extract.json")
    inputs.prepare_stats = _optional_json(reports / "prepare" / "stats.json")
    inputs.corpus_meta = _optional_json(Path(corpus_dir) / "meta.json")
    inputs.lock = read_lock(Path(lock_path))
    return inputs


def engine_bleu(row: dict, bleu: dict[str, dict]) -> Optional[float]:
    """A CTranslate2 row's BLEU on the whole test set's footing: its PyTorch model's test average (`bleu`:
    model -> {"bleu", ...}) plus the change the benchmark measured between the engines on the same
    sentences (`bleu_change_vs_pytorch`); None without either. The row's own BLEU may cover fewer
    sentences (benchmark.bleu_sentences), so it is not comparable with the PyTorch rows' as it stands."""
    base = (bleu.get(row.get("base_model")) or {}).get("bleu")
    change = row.get("bleu_change_vs_pytorch")
    return None if base is None or change is None else base + change
