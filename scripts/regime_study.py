"""The regime study: which CPU-sized recipe makes the MoE's gain over dense large enough to divide by?

Each variant is params.yaml with a few keys changed (`set:` in the variants file). For every variant the
script trains, with the pipeline's own functions and at equal steps, the warm start (if any), dense,
token_moe and task_moe, translates the test split with each (the `evaluate` stage's beam search), and
measures:

- the validation-loss lead of each MoE over dense at the last step, in nats per target token (all 5,000
  validation sentences), with a paired bootstrap interval (`pipeline.stats.loss_curves`);
- the test BLEU gain of each MoE over dense, with a paired bootstrap interval (`pipeline.stats.compare`);
- seconds per training step (validation excluded) of every model, and the lead at equal wall time: the
  MoE's validation loss interpolated at the step it reaches in dense's training time, against dense's
  at its last step (a slower MoE is charged for its speed).

Work is shared and resumable: a corpus, warm start or model is trained once per distinct setting it
depends on (a key hashed from those settings) under the work folder, and skipped when it exists, so an
interrupted study continues where it stopped and variants that share dense reuse it.

    python scripts/regime_study.py docs/results/regime-2026-12-03/variants.yaml
    python scripts/regime_study.py VARIANTS --only reference every_layer   # some variants
    python scripts/regime_study.py VARIANTS --summarize                    # table and plot only
    python scripts/regime_study.py VARIANTS --summarize --beside ../regime-2026-12-03/results.json
                                          # earlier studies' rows beside these (as written, not re-measured)

The variants file pins what it was made at: its top-level `base:` ({dotted key: value}) applies under
every variant's own `set:`, so a study keeps its settings when params.yaml's defaults move on. A variant
with `from_run: <folder>` (relative to the repository) trains nothing: it measures the pipeline's own run
in that workspace (its `models/`, `reports/train/`, `reports/evaluate/` and `data/corpus/`, as `dvc repro`
or `dvc pull` leave them), whose stages must have run with the variant's settings (`dvc.lock`).

`table.md` also gives the frontier: each MoE's gain beside what its comparison cost to train (the warm
start, dense and that MoE, at the variant's own step times), and which gains no cheaper variant beats.

Writes `results.json`, `table.md` and `regime.png` beside the variants file (or in `--out`). Needs
`data/raw` (`dvc repro fetch`). Train one study at a time on a machine: the step times are measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import Params, load_params, params_from_dict, to_dict  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.io import read_json, write_json  # noqa: E402

log = logging.getLogger("regime")
MOES = ("token_moe", "task_moe")
# model keys that do not change a dense model: variants differing only in these share dense
MOE_ONLY = ("moe_every", "num_experts", "top_k", "balance_loss_weight", "router_z_loss_weight",
            "second_expert_policy", "capacity_factor", "expert_lr_scale")
# train keys that change what is observed, not the weights (tests/train/test_training.py)
OBSERVE_ONLY = ("val_every", "val_bleu_sentences", "logger", "keep_checkpoint")
# train keys added after work was keyed, left out of a key while at this value (the behaviour from before
# they existed), so that adding a setting does not orphan the models trained before it
ADDED_LATER = {"expert_parallel": False}


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def variant_params(base: dict, overrides: dict, where: str) -> Params:
    """params.yaml's tree with `overrides` ({dotted key: value}) applied, validated."""
    from omegaconf import OmegaConf

    tree = OmegaConf.create(base)
    for key, value in overrides.items():
        if OmegaConf.select(tree, key, default="<missing>") == "<missing>":
            raise PipelineError(f"{where}: {key}: no such key in params.yaml")
        OmegaConf.update(tree, key, value, merge=False)
    return params_from_dict(OmegaConf.to_container(tree), source=where)


def variant_settings(base: dict, pinned: dict, variant: dict, where: str) -> Params:
    """A variant's settings: params.yaml, then the file's `base:`, then the variant's own `set:`."""
    variant_params(base, pinned, f"{where}: base")  # a bad pinned key is named as the base's
    return variant_params(base, {**pinned, **(variant.get("set") or {})}, f"{where}: {variant['name']}: set")


class Study:
    def __init__(self, work: Path, raw: Path):
        self.work, self.raw = work, raw

    # -- keys: what each product depends on ----------------------------------------------------
    def corpus_key(self, p: Params) -> str:
        return key_of("corpus", to_dict(p.data))

    def dense_model(self, p: Params) -> dict:
        return {k: v for k, v in to_dict(p.model).items() if k not in MOE_ONLY}

    def train_settings(self, p: Params, steps: bool = True) -> dict:
        t = {k: v for k, v in to_dict(p.train).items()
             if k not in OBSERVE_ONLY and not (k in ADDED_LATER and v == ADDED_LATER[k])}
        if not steps:
            t.pop("max_steps")
        return t

    def warm_key(self, p: Params) -> str:
        return key_of("warmstart", self.corpus_key(p), self.dense_model(p), self.train_settings(p, False))

    def model_key(self, p: Params, name: str) -> str:
        spec = to_dict(p.models[name])
        model = self.dense_model(p) if name == "dense" else to_dict(p.model)
        return key_of(name, self.warm_key(p), model, spec, self.train_settings(p))

    # -- products ------------------------------------------------------------------------------
    def corpus(self, p: Params) -> Path:
        from pipeline.data.prepare import prepare_corpus

        out = self.work / "corpus" / self.corpus_key(p)
        if not (out / "meta.json").exists():
            log.info("prepare -> %s", out)
            prepare_corpus(p.data, self.raw, out, self.work / "corpus" / f"{out.name}.stats.json")
        return out

    def warmstart(self, p: Params) -> Path:
        from pipeline.train.api import train_warmstart

        key = self.warm_key(p)
        out = self.work / "models" / f"warmstart-{key}"
        if not (out / "warmstart.json").exists():
            log.info("warmstart (%d steps) -> %s", p.train.warmstart_steps, out)
            train_warmstart(p, self.corpus(p), out, self.work / "reports" / out.name, run_name=out.name)
        return out

    def model(self, p: Params, name: str) -> Path:
        from pipeline.train.api import train_model

        out = self.work / "models" / f"{name}-{self.model_key(p, name)}"
        if not (out / "meta.json").exists():
            log.info("train %s (%d steps) -> %s", name, p.train.max_steps, out)
            train_model(p, name, self.corpus(p), out, self.reports(out), self.warmstart(p),
                        run_name=out.name)
        return out

    def reports(self, model_dir: Path) -> Path:
        return self.work / "reports" / model_dir.name

    def evaluation(self, p: Params, name: str) -> Path:
        from pipeline.evaluate import evaluate_model

        model_dir = self.model(p, name)
        out = self.work / "evaluate" / model_dir.name
        if (out / "metrics.json").exists():
            check_evaluation(out, p.evaluate)
        else:
            log.info("evaluate %s -> %s", name, out)
            evaluate_model(name, model_dir, self.corpus(p), out, p.evaluate,
                           high_resource=p.data.high_resource)
        return out


class RunStudy(Study):
    """A pipeline workspace measured as a variant: the stages' outputs, where `dvc repro` writes them.

    Nothing is trained or translated here: a missing output is an error naming it, and the settings each
    stage ran with, as `dvc.lock` records them (not `reports/params.yaml`, which the config stage rewrites
    at the start of every `dvc repro`, finished or not), must be the variant's, so a row cannot carry
    another recipe's figures."""

    def __init__(self, workspace: Path):
        super().__init__(workspace, workspace / "data" / "raw")

    def check_settings(self, p: Params, models: list[str]) -> None:
        import yaml

        lock = self.work / "dvc.lock"
        if not lock.exists():
            raise PipelineError(f"{lock}: missing (is {self.work} a pipeline workspace after `dvc repro`?)")
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages") or {}
        want = to_dict(p)
        for stage in ["prepare", *(f"{kind}@{m}" for m in models for kind in ("train", "evaluate"))]:
            recorded = ((stages.get(stage) or {}).get("params") or {}).get("reports/params.yaml")
            if not recorded:
                raise PipelineError(f"{lock}: {stage}: no settings recorded (run `dvc repro`)")
            for key, value in recorded.items():
                ours = lookup(want, key)
                if key == "train":  # observation settings change no weights (OBSERVE_ONLY)
                    value, ours = ({k: v for k, v in (x or {}).items() if k not in OBSERVE_ONLY}
                                   for x in (value, ours))
                if value != ours:
                    raise PipelineError(f"{lock}: {stage}: {key}: the run's settings differ from the variant's")

    def _output(self, path: Path) -> Path:
        if not path.exists():
            raise PipelineError(f"{path}: missing from the run (dvc repro or dvc pull it)")
        return path

    def corpus(self, p: Params) -> Path:
        return self._output(self.work / "data" / "corpus")

    def warmstart(self, p: Params) -> Path:
        return self._output(self.work / "models" / "warmstart")

    def model(self, p: Params, name: str) -> Path:
        return self._output(self.work / "models" / name)

    def reports(self, model_dir: Path) -> Path:
        return self._output(self.work / "reports" / "train" / model_dir.name)

    def evaluation(self, p: Params, name: str) -> Path:
        out = self._output(self.work / "reports" / "evaluate" / name / "metrics.json").parent
        check_evaluation(out, p.evaluate)
        return out


def lookup(tree: dict, dotted: str):
    """tree["a"]["b"] for "a.b"; None where a part is missing."""
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def check_evaluation(out: Path, cfg) -> None:
    """An evaluation folder is keyed by its model only: refuse one translated with other evaluate settings,
    whose BLEU would stand in the table as if made with these."""
    made = read_json(out / "metrics.json")
    want = {"decode": to_dict(cfg.decode), "max_sentences": cfg.max_sentences}
    have = {k: made.get(k) for k in want}
    if have != want:
        raise PipelineError(f"{out / 'metrics.json'}: translated with {have}, the study's evaluate settings are "
                            f"{want}; remove {out} to translate again")


# --------------------------------------------------------------------------------------------------
# measurements


def step_seconds(metrics: dict) -> float:
    """Seconds per training step, validation excluded (older runs: wall time per step)."""
    steps = metrics["steps"] - metrics.get("resumed_from_step", 0)
    seconds = metrics.get("train_seconds") or metrics["wall_seconds"]
    return seconds / steps


def final_losses(reports: Path, directions: list[str]) -> tuple[int, dict]:
    from pipeline.stats.loss_curves import read_losses

    index = read_json(reports / "val_hyps" / "index.json")
    step = index["steps"][-1]
    losses = read_losses(reports / "val_hyps" / f"{step:07d}", directions)
    if losses is None:
        raise PipelineError(f"{reports}: no validation losses at step {step}")
    return step, losses


def losses_at(reports: Path, directions: list[str], step: float) -> dict:
    """Per-sentence validation losses interpolated linearly between the validations around `step`."""
    import numpy as np

    from pipeline.stats.loss_curves import read_losses

    steps = read_json(reports / "val_hyps" / "index.json")["steps"]
    lo = max([s for s in steps if s <= step], default=steps[0])
    hi = min([s for s in steps if s >= step], default=steps[-1])
    a = read_losses(reports / "val_hyps" / f"{lo:07d}", directions)
    if hi == lo:
        return a
    b = read_losses(reports / "val_hyps" / f"{hi:07d}", directions)
    w = (step - lo) / (hi - lo)
    return {d: ((1 - w) * a[d][0] + w * np.asarray(b[d][0]), a[d][1]) for d in directions}


def lead(dense: dict, moe: dict, cfg) -> dict:
    from pipeline.stats.bootstrap import interval
    from pipeline.stats.loss_curves import LossBootstrap

    bs = LossBootstrap({"dense": dense, "moe": moe}, cfg.bootstrap_resamples, cfg.seed)
    low, high = interval(bs.resampled["dense"] - bs.resampled["moe"], cfg.confidence)
    return {"diff": bs.actual["dense"] - bs.actual["moe"], "low": low, "high": high,
            "dense_loss": bs.actual["dense"], "moe_loss": bs.actual["moe"]}


def time_steps(study: Study, p: Params, name: str, steps: int = 20, warmup: int = 3) -> float:
    """Median seconds of one training step of `name` (forward, backward, clipping, AdamW; no validation)
    on the variant's batch stream, measured now: with the machine to itself this is the variant's speed,
    whatever else shared the cores while it trained."""
    import statistics

    import torch

    from pipeline.data.sampling import temperature_probs
    from pipeline.train.api import build_model, corpus_languages, load_vocab
    from pipeline.train.batching import MixedBatchStream
    from pipeline.train.examples import load_examples
    from pipeline.train.module import TranslationModule

    corpus = study.corpus(p)
    vocab, languages = load_vocab(corpus), corpus_languages(corpus)
    train = load_examples(corpus, "train", vocab, languages, p.model.max_positions)
    probs = temperature_probs({d: len(x) for d, x in train.items()}, p.data.temperature)
    model = build_model(p, name, vocab, languages).train()
    module = TranslationModule(model, p.train, vocab.pad_id, p.model.expert_lr_scale)
    module.log = lambda *a, **k: None  # no trainer attached
    optimizer = module.configure_optimizers()["optimizer"]
    stream = iter(MixedBatchStream(train, probs, p.train.batch_tokens, p.train.max_sentences, vocab.pad_id,
                                   vocab.bos_id, seed=p.train.seed))
    times = []
    for i in range(warmup + steps):
        batch = next(stream)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        module._shared_step(batch, "train").backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.train.grad_clip)
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(study: Study, p: Params, models: list[str], timed: Optional[dict] = None) -> dict:
    """Train and evaluate what the variant needs; its figures."""
    from pipeline.stats.bootstrap import Bootstrap
    from pipeline.stats.compare import difference, system_score
    from pipeline.data.corpus import load_split
    from pipeline.evaluate import read_corpus_meta, read_lines

    corpus = study.corpus(p)
    directions = read_corpus_meta(corpus)["directions"]
    dirs = {m: study.model(p, m) for m in models}
    evals = {m: study.evaluation(p, m) for m in models}
    test = load_split(corpus, "test")
    hyps = {m: {d: read_lines(evals[m] / "hyps" / f"{d}.txt") for d in directions} for m in models}
    refs = {d: [x.target for x in test[d]][: len(hyps["dense"][d])] for d in directions}
    cfg = p.compare
    bs = Bootstrap(hyps, refs, cfg.bootstrap_resamples, cfg.seed)
    out: dict = {"models": {}, "corpus": corpus.name, "directions": directions}
    dense_step, dense_losses = final_losses(study.reports(dirs["dense"]), directions)
    dense_metrics = read_json(study.reports(dirs["dense"]) / "metrics.json")
    speed = {m: (timed or {}).get(m) or step_seconds(read_json(study.reports(dirs[m]) / "metrics.json"))
             for m in models}
    dense_train = speed["dense"] * dense_metrics["steps"]
    for m in models:
        metrics = read_json(study.reports(dirs[m]) / "metrics.json")
        row = {"folder": dirs[m].name, "steps": metrics["steps"], "seconds_per_step": speed[m],
               "seconds_per_step_source": "timed alone (--time)" if (timed or {}).get(m) else "training run",
               "seconds_per_step_in_training": step_seconds(metrics), "val_loss": metrics.get("val_loss"),
               "params_total": metrics.get("params_total"),
               "test_bleu": system_score(bs, m, directions, cfg.confidence),
               "warmstart_steps": read_json(dirs[m] / "meta.json").get("warmstart_steps", 0)}
        if m != "dense":
            row["gain_vs_dense"] = difference(bs, m, "dense", directions, cfg.confidence)
            step, losses = final_losses(study.reports(dirs[m]), directions)
            if step != dense_step:
                raise PipelineError(f"{dirs[m]}: last validation at step {step}, dense's at {dense_step}")
            row["loss_lead"] = lead(dense_losses, losses, cfg)
            # equal wall time: the step this MoE reaches in dense's training seconds
            warm = row["warmstart_steps"]
            reach = warm + min(metrics["steps"], dense_train / row["seconds_per_step"])
            row["equal_time_step"] = reach
            row["loss_lead_equal_time"] = lead(dense_losses, losses_at(study.reports(dirs[m]), directions,
                                                                       reach), cfg)
        out["models"][m] = row
    out["signature"] = next(iter(bs.signatures.values()))
    return out


# --------------------------------------------------------------------------------------------------
# outputs


def fmt_ci(x: dict, key: str = "diff", digits: int = 2) -> str:
    return f"{x[key]:+.{digits}f} [{x['low']:+.{digits}f}, {x['high']:+.{digits}f}]"


def table(results: list[dict]) -> str:
    head = ("| variant | what | total steps | s/step dense / token / task | test BLEU dense | "
            "token_moe gain [95% CI] | task_moe gain [95% CI] | token_moe loss lead, nats | "
            "task_moe loss lead, nats | token_moe lead at equal time |\n|" + "---|" * 10)
    rows = []
    for r in results:
        m = r["models"]
        if "dense" not in m:
            continue

        def cell(model: str, key: str, digits: int = 2) -> str:  # a model the variant did not run: "–"
            return fmt_ci(m[model][key], digits=digits) if model in m else "–"

        total = m["dense"]["warmstart_steps"] + m["dense"]["steps"]
        sps = " / ".join(f"{m[k]['seconds_per_step']:.2f}" if k in m else "–" for k in ("dense", *MOES))
        rows.append(
            f"| {r['name']} | {r['what']} | {total:,} | {sps} | {m['dense']['test_bleu']['bleu']:.2f} | "
            f"{cell('token_moe', 'gain_vs_dense')} | {cell('task_moe', 'gain_vs_dense')} | "
            f"{cell('token_moe', 'loss_lead', 3)} | {cell('task_moe', 'loss_lead', 3)} | "
            f"{cell('token_moe', 'loss_lead_equal_time', 3)} |")
    return head + "\n" + "\n".join(rows) + "\n"


def training_minutes(models: dict, moe: str) -> float:
    """What one MoE's comparison cost to train: the warm start (if any), dense and that MoE, each at its own
    s/step. Per MoE, so that a variant that ran only some of the models is charged as a full one."""
    dense, row = models["dense"], models[moe]
    warm = dense["warmstart_steps"] * dense["seconds_per_step"]
    return (warm + dense["steps"] * dense["seconds_per_step"] + row["steps"] * row["seconds_per_step"]) / 60


def frontier(results: list[dict]) -> str:
    """Each MoE's gain beside its training budget; "yes" when the gain is positive and no variant of
    smaller or equal budget has a larger one (point estimates): the best gain measured at that budget."""
    rows = [r for r in results if "dense" in r["models"]]
    budget = {(id(r), moe): training_minutes(r["models"], moe) for r in rows for moe in MOES if moe in r["models"]}

    def best(r: dict, moe: str) -> bool:
        gain = r["models"][moe]["gain_vs_dense"]["diff"]
        cheaper = [o["models"][moe]["gain_vs_dense"]["diff"] for o in rows
                   if (id(o), moe) in budget and budget[id(o), moe] <= budget[id(r), moe]]
        return gain > 0 and gain >= max(cheaper)

    lines = ["| variant | token_moe: training minutes | gain [95% CI] | best at this budget | "
             "task_moe: training minutes | gain [95% CI] | best at this budget |", "|" + "---|" * 7]
    for r in sorted(rows, key=lambda r: min(v for (i, _), v in budget.items() if i == id(r))):
        cells = []
        for moe in MOES:
            if (id(r), moe) not in budget:
                cells += ["–", "–", "–"]
                continue
            cells += [f"{budget[id(r), moe]:.0f}", fmt_ci(r["models"][moe]["gain_vs_dense"]),
                      "yes" if best(r, moe) else "no"]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5))
    for ax, key, label in ((axes[0], "gain_vs_dense", "test BLEU gain over dense"),
                           (axes[1], "loss_lead", "validation-loss lead over dense (nats/token)")):
        for offset, (moe, marker) in enumerate(zip(MOES, ("o", "s"))):
            xs, ys, lo, hi, names = [], [], [], [], []
            for r in results:
                row = r["models"].get(moe)
                if not row:
                    continue
                dense = r["models"]["dense"]
                # x: a model's training wall time, warm start included, at its own step time
                warm_s = dense["warmstart_steps"] * dense["seconds_per_step"]
                xs.append((warm_s + row["steps"] * row["seconds_per_step"]) / 60)
                g = row[key]
                ys.append(g["diff"])
                lo.append(g["diff"] - g["low"])
                hi.append(g["high"] - g["diff"])
                names.append(r["name"].replace("(regime-20", "("))  # "(26-12-03)": the study's date, short
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker, capsize=3, label=moe)
            for x, y, n in zip(xs, ys, names):
                ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 4 - 10 * offset), fontsize=7)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("training minutes per model (warm start included), on its study's machine")
        ax.margins(x=0.25)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].axhline(1.0, color="red", lw=0.8, ls="--")
    axes[0].set_title("test BLEU gain (95% paired bootstrap CI)")
    axes[1].set_title("validation-loss lead at the last step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", type=Path, help="YAML: variants: [{name, what, set: {key: value}}]")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("STUDY_DIR", ROOT.parent / "regime-work")),
                    help="where corpora, checkpoints and translations go (default ../regime-work)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: the variants file's)")
    ap.add_argument("--raw", type=Path, default=ROOT / "data" / "raw")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run")
    ap.add_argument("--summarize", action="store_true", help="only gather finished variants")
    ap.add_argument("--beside", type=Path, nargs="*", default=[], metavar="RESULTS_JSON",
                    help="results.json of earlier studies whose variants the table and plot show beside these, "
                         "named with their folder; their figures are copied, not re-measured")
    ap.add_argument("--time", type=int, default=0, metavar="STEPS",
                    help="time STEPS training steps of every model now (median) for the s/step column and the "
                         "equal-time lead, instead of the training runs' own times (which other jobs may have "
                         "slowed); run it with the machine to itself")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import yaml

    try:
        spec = yaml.safe_load(args.variants.read_text())
        variants = spec["variants"]
        pinned = spec.get("base") or {}
        base = to_dict(load_params(args.params))
        if base["profile"] != "default":
            raise PipelineError(f"{args.params}: profile: the study varies the default; got {base['profile']!r}")
        if not (args.raw / "bible.db").exists() and base["data"]["source"] == "bible":
            raise PipelineError(f"{args.raw}: no bible.db (run `dvc repro fetch`)")
        out_dir = (args.out or args.variants.parent).resolve()
        study = Study(args.work.resolve(), args.raw.resolve())
        args.work.mkdir(parents=True, exist_ok=True)
        names = [v["name"] for v in variants]
        unknown = sorted(set(args.only or []) - set(names))
        if unknown:
            raise PipelineError(f"--only: no variant named {', '.join(unknown)} in {args.variants}")
        results = []
        earlier = beside_rows(args.beside)
        os.chdir(study.work)  # training's resume folders (.resume/<run>) go under the work folder
        for v in variants:
            p = variant_settings(base, pinned, v, str(args.variants))
            models = v.get("models", ["dense", *MOES])
            selected = args.only is None or v["name"] in args.only
            if v.get("from_run"):
                source = RunStudy((ROOT / v["from_run"]).resolve())
                try:
                    source.check_settings(p, models)
                    done = True
                except PipelineError as exc:
                    if selected and not args.summarize:
                        raise
                    log.info("%s: skipped: %s", v["name"], exc)
                    continue
            else:
                source = study
                done = all((study.work / "evaluate" / f"{m}-{study.model_key(p, m)}" / "metrics.json").exists()
                           for m in models)
            if args.summarize or not selected:
                if not done:
                    continue
            started = time.perf_counter()
            timed = None
            if args.time:
                timed = {m: time_steps(source, p, m, steps=args.time) for m in models}
                log.info("%s: median s/step %s", v["name"], {m: round(t, 3) for m, t in timed.items()})
            result = {"name": v["name"], "what": v.get("what", ""), "set": v.get("set") or {}, "base": pinned,
                      **({"from_run": v["from_run"]} if v.get("from_run") else {}),
                      **measure(source, p, models, timed)}
            log.info("%s done in %.0f s", v["name"], time.perf_counter() - started)
            results.append(result)
            write_json(out_dir / "results.json", {"base": str(args.params.name), "variants": results,
                                                  "machine": machine(), "beside": earlier})
            (out_dir / "table.md").write_text(table(earlier + results) + "\n## Frontier\n\n"
                                              "Training minutes: the warm start (if any), dense and that MoE, "
                                              "at each variant's own s/step on its own machine (rows of other "
                                              "studies: theirs). \"Best\" compares point estimates, not "
                                              "intervals.\n\n" + frontier(earlier + results))
            plot(earlier + results, out_dir / "regime.png")
        print(table(earlier + results))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def beside_rows(paths: list[Path]) -> list[dict]:
    """The variants of earlier studies' results.json files, each named `<variant> (<its folder>)`."""
    rows = []
    for path in paths:
        try:
            rows += [{**v, "name": f"{v['name']} ({path.resolve().parent.name})", "models": v["models"]}
                     for v in read_json(path)["variants"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PipelineError(f"--beside {path}: not a study's results.json ({exc!r})") from None
    return rows


def machine() -> dict:
    import platform

    import torch

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "python": platform.python_version()}


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    sys.exit(main())
