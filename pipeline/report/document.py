"""The whole report: figures, sections in order, the headline metrics; written atomically."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from pipeline.io import atomic_dir, atomic_file, write_json
from pipeline.report import plots, sections, verdicts
from pipeline.report.inputs import Inputs, load_inputs

log = logging.getLogger(__name__)


def make_plots(inputs: Inputs, plots_dir: Path) -> dict[str, Optional[str]]:
    """Write every figure whose data exist; returns {title: file name, or None if not drawn}."""
    avg = {name: v["groups"]["avg"] for name, v in inputs.compare["systems"].items()}
    jobs = [("Quality vs serving cost", "quality_vs_cost.png",
             lambda p: plots.quality_vs_cost(avg, inputs.benchmark, p)),
            ("Learning curves: BLEU and gain over dense by step", "learning_curves.png",
             lambda p: plots.learning_curves(inputs.study, p)),
            ("Validation loss: the MoEs' lead over dense by step", "loss_lead.png",
             lambda p: plots.loss_lead(inputs.study, p)),
            ("Training curves", "training_curves.png", lambda p: plots.training_curves(inputs.curves, p)),
            ("Throughput vs batch size", "throughput_vs_batch.png",
             lambda p: plots.throughput_vs_batch(inputs.benchmark, p))]
    jobs += [(f"Expert usage by target language: {name}", f"expert_usage_{name}.png",
              lambda p, n=name, u=usage: plots.expert_usage(n, u, p))
             for name, usage in inputs.expert_usage.items()]
    if inputs.compare.get("across_seeds"):
        jobs.append(("Differences per training seed", "seed_gains.png",
                     lambda p: plots.seed_gains(inputs.compare["across_seeds"], p)))
    if not inputs.expert_usage:  # meta.json without `expert_usage`, or no models folder
        jobs.append(("Expert usage by target language", "expert_usage.png", lambda p: False))
    return {title: filename if draw(plots_dir / filename) else None for title, filename, draw in jobs}


def plots_section(made: dict[str, Optional[str]], link_dir: str) -> str:
    out = ["## Figures\n"]
    for title, filename in made.items():
        out.append(f"### {title}\n\n![{title}]({link_dir}/{filename})\n" if filename
                   else f"### {title}\n\nnot available\n")
    return "\n".join(out)


def render(inputs: Inputs, commit: str, params: Optional[dict], made: dict[str, Optional[str]],
           link_dir: str = "plots") -> str:
    found = verdicts.compute(inputs)
    parts = [
        "# Beyond distillation, audited: how much of the MoE gain survives?\n",
        sections.answer_section(inputs, found, verdicts.answer(found, inputs)),
        sections.hypotheses_section(inputs),
        sections.bleu_section(inputs), sections.gains_section(inputs), sections.seeds_section(inputs),
        sections.curves_section(inputs), sections.paper_section(inputs), sections.throughput_section(inputs),
        sections.extraction_section(inputs), sections.training_section(inputs),
        sections.distillation_section(inputs), sections.data_section(inputs),
        plots_section(made, link_dir), sections.provenance_section(inputs, commit, params)]
    return "\n\n".join(p for p in parts if p) + "\n"


def write_report(reports_dir: str | Path, models_dir: str | Path, corpus_dir: str | Path,
                 out: str | Path, plots_dir: str | Path, commit: str = "unknown",
                 params: Optional[dict] = None, lock_path: str | Path = "dvc.lock",
                 metrics_path: Optional[str | Path] = None) -> str:
    """Read the inputs, draw the figures into `plots_dir`, write the Markdown to `out` and, with
    `metrics_path`, the headline numbers (`verdicts.headline_metrics`); return the Markdown."""
    inputs = load_inputs(reports_dir, models_dir, corpus_dir, lock_path)
    out, plots_dir = Path(out), Path(plots_dir)
    with atomic_dir(plots_dir) as tmp:
        made = make_plots(inputs, tmp)
    link_dir = Path(os.path.relpath(plots_dir.resolve(), out.parent.resolve())).as_posix()
    text = render(inputs, commit, params, made, link_dir)
    with atomic_file(out) as handle:
        handle.write(text)
    if metrics_path is not None:
        write_json(metrics_path, verdicts.headline_metrics(verdicts.compute(inputs), inputs))
    return text
