"""More training seeds: are the teacher's gain over dense, and the student's result against its control,
properties of the recipe, or of one training run?

The compare stage's intervals resample test sentences with the trained models held fixed: they say how
sure the run is about *these* models, not how much another `train.seed` would move them. The seeds stage
retrains the warm start and `seeds.models` once per seed in `seeds.extra`: the main recipe with only
`train.seed` changed (dropout, batch order, router init). Every model comes from its own seed's models,
as in the main run:
- the entries of `models:` (dense, token_moe, task_moe) from the seed's warm start (MoEs upcycled);
- `student` from the seed's teacher (`distill.teacher`), on distillation data the seed's teacher makes as
  the distill_data stage does (with `distill.sequence_level: false`, the references: no translation);
- `dense_long` (the student's equal-steps control) from the seed's dense, as the control stage does.
It translates the test split with each model as the evaluate stage does. `pipeline.stats.compare.across_seeds`
then sets each seed's gains over its own dense, and its student against its own dense_long, beside the
main run's and summarises them over seeds.

Outputs (two DVC outputs, each written to a temporary folder and renamed when every seed has finished):
    models/seeds/seed<N>/{warmstart,<model>}/            checkpoints
    models/seeds/seed<N>/distill_data/                   the student's training data (as data/distill)
    reports/seeds/seed<N>/train/<model>/metrics.json      training metrics (and val_hyps/)
    reports/seeds/seed<N>/evaluate/<model>/{hyps/,metrics.json}
    reports/seeds/index.json  {"main_seed", "extra", "models", "seeds": {"<N>": {<model>: {"bleu",
                               "train_seconds", "evaluate_seconds"}, "warmstart_seconds"}}}
With `seeds.extra: []` only index.json (and models/seeds/README) is written, in no time, and the same
bytes every time, so compare and report do not rerun for it. A seed's runs resume from
`.resume/seed<N>/<model>/` (see pipeline.train.api.make_job): an interrupted stage, or one rerun with
one more seed, retrains nothing that finished, and only translates the test split again (with
`distill.sequence_level: true` also the training sources, for each seed's student: it resumes when the
translations come out byte-identical). A student's `train_seconds` in the index include
making its distillation data.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

from pipeline.config import Params
from pipeline.roles import CONTROL, STUDENT
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

INDEX = "index.json"
DISTILLED = (STUDENT, CONTROL)  # trained from the seed's other models, so after them


def training_order(models: list[str]) -> list[str]:
    """`models` with the student and its control after the models they start from."""
    return [m for m in models if m not in DISTILLED] + [m for m in DISTILLED if m in models]


def seed_folder(seed: int) -> str:
    return f"seed{seed}"


def with_seed(params: Params, seed: int) -> Params:
    out = copy.deepcopy(params)
    out.train.seed = seed
    return out


def train_seeds(params: Params, corpus_dir: str | Path, models_out: str | Path, reports_out: str | Path) -> dict:
    """Train and evaluate `params.seeds.models` for every seed of `params.seeds.extra`; return the index."""
    from pipeline.evaluate import evaluate_model
    from pipeline.train.api import train_warmstart

    corpus_dir = Path(corpus_dir)
    for name in ("meta.json", "spm.model"):
        if not (corpus_dir / name).exists():
            raise PipelineError(f"{corpus_dir / name}: file not found (run `dvc repro prepare`)")
    cfg = params.seeds
    start = time.perf_counter()
    index = {"main_seed": params.train.seed, "extra": list(cfg.extra), "models": list(cfg.models),
             "seeds": {}}
    with atomic_dir(models_out) as models_tmp, atomic_dir(reports_out) as reports_tmp:
        (models_tmp / "README").write_text(
            "One folder per seed of seeds.extra (params.yaml): the warm start and seeds.models retrained "
            "with train.seed set to it.\n", encoding="utf-8")
        for seed in cfg.extra:
            p = with_seed(params, seed)
            tag = seed_folder(seed)
            m_dir, r_dir = models_tmp / tag, reports_tmp / tag
            row: dict = {}
            t0 = time.perf_counter()
            log.info("seed %d: warm start (%d steps)", seed, p.train.warmstart_steps)
            train_warmstart(p, corpus_dir, m_dir / "warmstart", r_dir / "train" / "warmstart",
                            run_name=f"{tag}/warmstart")
            warm_seconds = time.perf_counter() - t0
            for name in training_order(cfg.models):
                t0 = time.perf_counter()
                log.info("seed %d: training %s", seed, name)
                _train(p, name, corpus_dir, m_dir, r_dir / "train" / name, run_name=f"{tag}/{name}")
                t1 = time.perf_counter()
                metrics = evaluate_model(f"{name}@{tag}", m_dir / name, corpus_dir,
                                         r_dir / "evaluate" / name, p.evaluate,
                                         high_resource=p.data.high_resource)
                row[name] = {"bleu": metrics["bleu"], "train_seconds": t1 - t0,
                             "evaluate_seconds": time.perf_counter() - t1}
            row["warmstart_seconds"] = warm_seconds
            index["seeds"][str(seed)] = row
        _record_final_paths(models_tmp, Path(models_out))
        write_json(reports_tmp / INDEX, index)
    log.info("seeds: %d extra seed(s) in %.0f s", len(cfg.extra), time.perf_counter() - start)
    return index


def _record_final_paths(tmp: Path, final: Path) -> None:
    """The student's and dense_long's run records name the models they came from (`teacher`,
    `control.base`, the distillation data's `teacher`); name them where they end up, not in the temporary
    folder the stage writes to. Run records only: resume fingerprints skip them."""
    old, new = (json.dumps(str(path))[1:-1] for path in (tmp, final))  # as written inside JSON strings
    for path in tmp.rglob("meta.json"):
        text = path.read_text(encoding="utf-8")
        if old in text:
            path.write_text(text.replace(old, new), encoding="utf-8")


def _train(p: Params, name: str, corpus_dir: Path, m_dir: Path, reports_dir: Path, run_name: str) -> None:
    """Train one of a seed's models into `m_dir / name`, from the seed's warm start or other models."""
    from pipeline.distill import train_control, train_student, translate_training_sources
    from pipeline.train.api import train_model

    if name == STUDENT:
        teacher = m_dir / p.distill.teacher
        translate_training_sources(teacher, corpus_dir, m_dir / "distill_data", p.distill.decode,
                                   p.distill.sequence_level)
        train_student(p, teacher, corpus_dir, m_dir / "distill_data", m_dir / name, reports_dir,
                      run_name=run_name)
    elif name == CONTROL:
        train_control(p, m_dir / "dense", corpus_dir, m_dir / name, reports_dir, run_name=run_name)
    else:
        train_model(p, name, corpus_dir, m_dir / name, reports_dir, warmstart_dir=m_dir / "warmstart",
                    run_name=run_name)


def load_seed_hypotheses(seeds_dir: str | Path, directions: list[str]) -> tuple[dict, dict]:
    """(index, {seed: {model: {direction: lines}}}) from the seeds stage's reports folder."""
    from pipeline.evaluate import read_lines

    seeds_dir = Path(seeds_dir)
    index = read_json(seeds_dir / INDEX)
    for key in ("main_seed", "extra", "models"):
        if key not in index:
            raise PipelineError(f"{seeds_dir / INDEX}: missing key {key!r} (rerun `dvc repro seeds`)")
    hyps: dict[int, dict[str, dict[str, list[str]]]] = {}
    for seed in index["extra"]:
        for name in index["models"]:
            folder = seeds_dir / seed_folder(seed) / "evaluate" / name / "hyps"
            if not folder.is_dir():
                raise PipelineError(f"{folder}: no evaluation of {name!r} for seed {seed} "
                                    "(rerun `dvc repro seeds`)")
            hyps.setdefault(int(seed), {})[name] = {d: read_lines(folder / f"{d}.txt") for d in directions}
    return index, hyps
