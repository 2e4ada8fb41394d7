"""Fit one model with Lightning: data streams, checkpoints, resume, curves and the metrics a stage writes.

Resume: Lightning's `last.ckpt` and a fingerprint of the settings live in `.resume/<name>/` (ignored by git
and DVC, outside the stage's outputs, which DVC deletes before a run). When `dvc repro` reruns an
interrupted stage with the same settings, training continues from that checkpoint, and the batch stream
skips the batches already seen; with other settings it starts over. A run that finished keeps its
metrics there too (`final.json`): rerunning it with the same settings (`dvc repro -f`) publishes the same
weights and metrics again without training, instead of a zero-step run's empty figures.

Several processes (`train.strategy: ddp` with `train.devices` > 1 or `train.num_nodes` > 1; launched by
Lightning itself, by torchrun or by SLURM): each rank trains on its own share of the batch stream (global
batch i goes to rank i mod W), gradients are averaged, and only the first rank writes the checkpoint, the
metrics, the curves and the validation translations; `tokens_per_second` is the whole job's (every rank's
tokens over the slowest rank's training seconds; `world_size` beside it). With `train.expert_parallel` the
experts of every MoE layer are sharded over the ranks as well (`TranslationModule.setup`;
pipeline/model/expert_parallel.py); checkpoints hold the full experts, gathered from the ranks, and the kept
model is whole again after `fit`. tests/train/test_ddp.py runs both on 2 CPU processes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from pipeline.config import DecodeConfig, TrainConfig, WordKDConfig
from pipeline.data.sampling import temperature_probs
from pipeline.errors import PipelineError
from pipeline.io import write_json
from pipeline.machine import compute_record, keep_freed_memory
from pipeline.train.batching import Example, MixedBatchStream, fixed_batches, length_order
from pipeline.train.module import TranslationModule

log = logging.getLogger(__name__)


class _NoTips(logging.Filter):
    """Drops Lightning's advertising tips (one per Trainer); its real messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("\N{ELECTRIC LIGHT BULB} Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoTips())
# Lightning's tree helpers call an API that torch deprecated; the warning says nothing about this run
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
CURVE_FIELDS = ["step", "train_loss", "val_loss", "val_bleu", "lr"]
# what a run publishes beside its metrics: the training and the validation curve (DVC plots), each with
# only the rows that have its values
PUBLISHED_CURVES = {"train_curve.csv": ("step", "train_loss", "lr"),
                    "val_curve.csv": ("step", "val_loss", "val_bleu")}
FINAL = "final.json"  # a finished run's metrics, in its resume folder


@dataclass
class TrainJob:
    """Everything one training run needs; the stage fills it, `fit` runs it."""

    name: str
    model: torch.nn.Module
    cfg: TrainConfig
    vocab: Any
    languages: list[str]
    train_examples: dict[str, list[Example]]
    valid_examples: dict[str, list[Example]]
    valid_pairs: dict[str, list]  # raw validation pairs per direction, for the quick BLEU
    temperature: float
    out_dir: Path
    reports_dir: Path
    resume_dir: Path
    fingerprint: dict = field(default_factory=dict)  # settings that must match to resume
    expert_lr_scale: float = 1.0
    teacher: Optional[torch.nn.Module] = None
    kd: Optional[WordKDConfig] = None
    max_steps: Optional[int] = None  # overrides cfg.max_steps
    schedule_offset: int = 0  # steps already taken by a warm start: the lr schedule continues from there
    is_global_zero: bool = True  # set by `fit`: under DDP only the first rank writes the outputs
    meta: dict = field(default_factory=dict)  # extra provenance for the checkpoint's meta.json


class _TransferBatch(TranslationModule):
    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch.to(device)


class CurveWriter(Callback):
    """Appends (step, train_loss, val_loss, val_bleu, lr) rows to a CSV as training goes."""

    def __init__(self, path: Path, every: int = 10, start_step: int = 0):
        self.path, self.every = path, every
        if path.exists() and _global_rank() == 0:  # keep the rows of the run being resumed, drop later ones
            rows = [r for r in _read_curves(path) if int(r["step"]) <= start_step]
            _write_curves(path, rows)

    def _append(self, trainer, **values) -> None:
        if not trainer.is_global_zero:  # under DDP the first rank writes for all
            return
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CURVE_FIELDS)
            if new:
                writer.writeheader()
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else ""
            writer.writerow({"step": trainer.global_step, "lr": lr, **values})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0 and "train_loss" in trainer.callback_metrics:
            self._append(trainer, train_loss=float(trainer.callback_metrics["train_loss"]))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        metrics = trainer.callback_metrics
        bleu = float(metrics["val_bleu"]) if "val_bleu" in metrics else ""
        self._append(trainer, val_loss=float(metrics["val_loss"]), val_bleu=bleu)


def _read_curves(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_curves(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def publish_curves(src: Path, reports_dir: Path, offset: int = 0) -> None:
    """Split the run's curve log into `PUBLISHED_CURVES`, each row only where its values exist, its step
    counted from the start of the lr schedule (`offset`: a warm start's steps), as the validation
    translations' steps are, so every model's curves share one axis."""
    from pipeline.io import atomic_file

    rows = _read_curves(src) if src.exists() else []
    rows = [{**r, "step": int(r["step"]) + offset} for r in rows]
    reports_dir.mkdir(parents=True, exist_ok=True)
    for name, fields in PUBLISHED_CURVES.items():
        with atomic_file(reports_dir / name, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(r for r in rows if r.get(fields[1]) not in (None, ""))


VAL_HYPS = "val_hyps"  # reports/train/<name>/val_hyps/<step>/<direction>.txt: the learning-curve data
VAL_LOSSES = "losses.json"  # beside them: every validation sentence's loss at that step


def quick_bleu_fn(vocab, valid_pairs: dict[str, list], sentences: int,
                  hyps_dir: Optional[Path] = None, loss_rows: Optional[list[tuple[str, int]]] = None):
    """Greedy BLEU averaged over directions on the first `sentences` validation pairs of each.

    With `hyps_dir`, `bleu(model, step)` also writes the hypotheses to `hyps_dir/<step>/<direction>.txt`
    (`step` counts a warm start's steps too), so the learning-curve stage can score every validation
    with intervals. With `loss_rows` ((direction, index) of each validation row) and the `losses` of
    that validation (see `TranslationModule`), it writes every validation sentence's cross-entropy
    beside them (`VAL_LOSSES`), in corpus order.
    """
    import sacrebleu

    from pipeline.decode import translate

    greedy = DecodeConfig(beam_size=1)

    def bleu(model: torch.nn.Module, step: Optional[int] = None, losses=None) -> float:
        was_training = model.training
        model.eval()
        scores, outputs = [], {}
        for direction, pairs in sorted(valid_pairs.items()):
            src_lang, tgt_lang = direction.split("-")
            chosen = pairs[:sentences]
            hyps = translate(model, vocab, [p.source for p in chosen], src_lang, tgt_lang, greedy)
            outputs[direction] = hyps
            scores.append(sacrebleu.corpus_bleu(hyps, [[p.target for p in chosen]]).score)
        model.train(was_training)
        if hyps_dir is not None and step is not None and _global_rank() == 0:
            by_sentence = sentence_losses(loss_rows, losses, valid_pairs) \
                if loss_rows is not None and losses is not None else None
            save_val_hyps(Path(hyps_dir), step, outputs, by_sentence)
        return sum(scores) / len(scores)

    return bleu


def sentence_losses(rows: list[tuple[str, int]], losses: tuple[list[float], list[int]],
                    valid_pairs: dict[str, list]) -> dict:
    """{direction: {"nll": [...], "tokens": [...]}} in corpus order, from per-row values and the
    (direction, index) of each row; every validation sentence must have exactly one row."""
    nll, tokens = losses
    if not len(rows) == len(nll) == len(tokens):
        raise PipelineError(f"validation: {len(nll)} sentence losses for {len(rows)} sentences")
    out = {d: {"nll": [None] * len(p), "tokens": [None] * len(p)} for d, p in valid_pairs.items()}
    for (direction, index), value, count in zip(rows, nll, tokens):
        out[direction]["nll"][index] = round(float(value), 4)
        out[direction]["tokens"][index] = int(count)
    missing = [d for d, v in out.items() if None in v["nll"]]
    if missing:
        raise PipelineError(f"validation: no loss for some sentences of {', '.join(sorted(missing))}")
    return out


def save_val_hyps(hyps_dir: Path, step: int, outputs: dict[str, list[str]],
                  losses: Optional[dict] = None) -> None:
    """One folder per step, written whole (a folder that exists is complete)."""
    from pipeline.evaluate import write_lines
    from pipeline.io import atomic_dir

    with atomic_dir(hyps_dir / f"{step:07d}") as tmp:
        for direction, lines in outputs.items():
            write_lines(tmp / f"{direction}.txt", lines)
        if losses is not None:
            (tmp / VAL_LOSSES).write_text(json.dumps(
                {"unit": "nats: cross-entropy summed over each sentence's target tokens (eos "
                         "included), no label smoothing", "directions": losses}) + "\n")


def _publish_val_hyps(src: Path, dest: Path, meta: dict) -> None:
    """Copy the run's validation hypotheses to the reports folder, with an index of the steps."""
    from pipeline.io import atomic_dir

    steps = sorted(int(d.name) for d in src.iterdir() if d.name.isdigit()) if src.is_dir() else []
    with atomic_dir(dest) as tmp:
        for step in steps:
            shutil.copytree(src / f"{step:07d}", tmp / f"{step:07d}")
        (tmp / "index.json").write_text(json.dumps({**meta, "steps": steps}, indent=2) + "\n")


def _resume_checkpoint(job: TrainJob) -> tuple[Optional[Path], int]:
    """(checkpoint to resume from, its global step), or (None, 0) to start over."""
    last, stamp = job.resume_dir / "last.ckpt", job.resume_dir / "fingerprint.json"
    if last.exists() and stamp.exists():
        if json.loads(stamp.read_text()) == job.fingerprint:
            try:
                step = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
            except Exception as exc:  # a checkpoint cut short by the interruption itself
                log.warning("cannot resume from %s (%s); starting over", last, exc)
                step = None
            max_steps = job.max_steps or job.cfg.max_steps
            if step is not None and (step < max_steps or (step == max_steps and (job.resume_dir / FINAL).exists())):
                log.info("resuming %s from %s at step %d", job.name, last, step)
                return last, step
    if _global_rank() == 0:  # under DDP every rank runs this; only the first one resets the folder
        shutil.rmtree(job.resume_dir, ignore_errors=True)
        job.resume_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(job.fingerprint, sort_keys=True))
    return None, 0


def _global_rank() -> int:
    """This process' rank, also before Lightning has joined the processes: 0 on the first process only.
    From the process group when there is one, else from what the launcher set: torchrun's RANK, SLURM's
    SLURM_PROCID (several tasks), or Lightning's own launcher's NODE_RANK and LOCAL_RANK."""
    import os

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"])
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"])
    local, node = int(env.get("LOCAL_RANK", 0)), int(env.get("NODE_RANK", 0))
    return node * int(env.get("LOCAL_WORLD_SIZE", local + 1)) + local


def _job_throughput(module: TranslationModule) -> dict:
    """Training throughput of the whole job: every rank's tokens over the slowest rank's training time."""
    mine = (int(module.tokens_seen), float(module.train_seconds))
    ranks = [mine]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        ranks = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(ranks, mine)  # any backend (NCCL too)
    slowest = max(seconds for _, seconds in ranks)
    return {"tokens_per_second": sum(tokens for tokens, _ in ranks) / slowest if slowest else 0.0,
            "train_seconds": slowest, "world_size": len(ranks)}


def fit(job: TrainJob) -> dict:
    """Train, then return the metrics dict; the kept weights (`train.keep_checkpoint`) stay in job.model."""
    cfg = job.cfg
    max_steps = job.max_steps or cfg.max_steps
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls on GPUs that have them; no-op on CPU
    keep_freed_memory()  # no page faults through each step's logits and gradient; the same weights
    ckpt_path, start_step = _resume_checkpoint(job)
    if ckpt_path is not None and start_step == max_steps:
        return _finished(job)
    hyps_dir = job.resume_dir / VAL_HYPS
    if hyps_dir.is_dir() and _global_rank() == 0:
        for folder in hyps_dir.iterdir():
            if not folder.name.isdigit() or int(folder.name) > job.schedule_offset + start_step:
                shutil.rmtree(folder) if folder.is_dir() else folder.unlink()

    sizes = {d: len(ex) for d, ex in job.train_examples.items()}
    probs = temperature_probs(sizes, job.temperature)
    pad, bos = job.vocab.pad_id, job.vocab.bos_id
    stream = MixedBatchStream(job.train_examples, probs, cfg.batch_tokens, cfg.max_sentences, pad, bos,
                              seed=cfg.seed, start_batch=start_step)
    valid = [b for d in sorted(job.valid_examples)
             for b in fixed_batches(job.valid_examples[d], cfg.batch_tokens, cfg.max_sentences, pad, bos)]
    loss_rows = [(d, i) for d in sorted(job.valid_examples) for i in length_order(job.valid_examples[d])]
    bleu_fn = (quick_bleu_fn(job.vocab, job.valid_pairs, cfg.val_bleu_sentences, hyps_dir, loss_rows)
               if cfg.val_bleu_sentences else None)
    module = _TransferBatch(job.model, cfg, pad, job.expert_lr_scale, job.teacher, job.kd, bleu_fn,
                            schedule_offset=job.schedule_offset)

    # Both saved after each validation. "best" compares fresh validation losses; "last" is its own
    # callback because a monitored callback's save_last only refreshes it when the score improves,
    # which would resume (and keep) stale weights.
    checkpoint = ModelCheckpoint(dirpath=job.resume_dir, filename="best", monitor="val_loss",
                                 mode="min", save_top_k=1, save_on_train_epoch_end=False,
                                 enable_version_counter=False)
    last = ModelCheckpoint(dirpath=job.resume_dir, filename="last", monitor=None, save_top_k=1,
                           save_on_train_epoch_end=False, enable_version_counter=False)
    curves = CurveWriter(job.resume_dir / "curves.csv", every=max(1, min(10, cfg.val_every)),
                         start_step=start_step)
    # the resume folder holds the fingerprint (and the checkpoint to resume from) by design
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    if job.teacher is not None:  # the frozen teacher stays in eval mode on purpose (tests/test_distill.py)
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start")
    trainer = _trainer(
        max_steps=max_steps, val_check_interval=min(cfg.val_every, max_steps),
        check_val_every_n_epoch=None, num_sanity_val_steps=0, gradient_clip_val=cfg.grad_clip or None,
        precision=cfg.precision, accelerator=cfg.accelerator, devices=cfg.devices,
        strategy=cfg.strategy, num_nodes=cfg.num_nodes, callbacks=[checkpoint, last, curves],
        logger=_logger(cfg, job), log_every_n_steps=max(1, min(10, cfg.val_every)),
        enable_model_summary=False, default_root_dir=job.resume_dir, use_distributed_sampler=False,
    )
    train_loader = torch.utils.data.DataLoader(stream, batch_size=None)
    # Its own generator: each validation pass starts an iterator, which would otherwise draw its seed
    # from the global RNG and so shift the dropout masks of every later training step (the training
    # trajectory would then depend on train.val_every).
    valid_loader = torch.utils.data.DataLoader(valid, batch_size=None,
                                               generator=torch.Generator().manual_seed(cfg.seed))
    started = time.perf_counter()
    try:
        trainer.fit(module, train_loader, valid_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into exit(1): it is an interruption
            raise KeyboardInterrupt from None
        raise
    wall = time.perf_counter() - started
    job.is_global_zero = trainer.is_global_zero
    if trainer.global_step % cfg.val_every:  # the last validation came before the last step
        trainer.validate(module, valid_loader, verbose=False)
        # "last" is saved after each validation inside fit only: without this it would stay at the last
        # validation's step, and a rerun of the finished run would train its last steps again
        trainer.save_checkpoint(job.resume_dir / "last.ckpt")
    throughput = _job_throughput(module)
    if module.expert_parallel:  # every rank gets the whole model back (the kept weights, the outputs)
        from pipeline.model.expert_parallel import gather_experts

        gather_experts(job.model)

    best = checkpoint.best_model_path
    if cfg.keep_checkpoint == "best_val_loss" and best and Path(best).exists():
        state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        job.model.load_state_dict({k[len("model."):]: v for k, v in state.items()
                                   if k.startswith("model.")})
    job.model.to("cpu").eval()
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("val_loss", "val_bleu")}
    final["best_val_loss"] = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None \
        else final.get("val_loss", math.nan)
    final["best_checkpoint_step"] = _step_of(best)
    final["kept_checkpoint"] = cfg.keep_checkpoint
    final.update(steps=trainer.global_step, resumed_from_step=start_step, wall_seconds=wall,
                 **throughput, expert_parallel=module.expert_parallel,
                 device=str(trainer.strategy.root_device), precision=cfg.precision, **compute_record())
    if bleu_fn is not None:  # the last validation already scored the last step's weights
        final["val_bleu_kept_checkpoint"] = (final["val_bleu"] if cfg.keep_checkpoint == "last"
                                             and "val_bleu" in final else float(bleu_fn(job.model)))
    if job.is_global_zero:
        _publish(job)
        write_json(job.resume_dir / FINAL, final)
    return final


def _publish(job: TrainJob) -> None:
    """The run's curves and validation translations into its reports folder."""
    publish_curves(job.resume_dir / "curves.csv", job.reports_dir, job.schedule_offset)
    _publish_val_hyps(job.resume_dir / VAL_HYPS, job.reports_dir / VAL_HYPS,
                      {"model": job.name, "warmstart_steps": job.schedule_offset,
                       "sentences_per_direction": job.cfg.val_bleu_sentences,
                       "decode": "greedy", "split": "valid (first N pairs of each direction)"})


def _finished(job: TrainJob) -> dict:
    """A run that finished with these settings: its kept weights and metrics, published again."""
    final = json.loads((job.resume_dir / FINAL).read_text())
    kept = job.resume_dir / ("best.ckpt" if final.get("kept_checkpoint") == "best_val_loss" else "last.ckpt")
    if not kept.exists():
        kept = job.resume_dir / "last.ckpt"
    state = torch.load(kept, map_location="cpu", weights_only=False)["state_dict"]
    job.model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    job.model.to("cpu").eval()
    job.is_global_zero = _global_rank() == 0
    if job.is_global_zero:
        _publish(job)
    log.info("%s: the run in %s finished with these settings; its weights and metrics are published "
             "again, nothing is retrained", job.name, job.resume_dir)
    return final


def _trainer(**kwargs) -> L.Trainer:
    """Lightning's Trainer; a device setting this machine cannot honour is a one-line error."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(**kwargs)
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        settings = ", ".join(f"{k}={kwargs[k]!r}" for k in ("accelerator", "devices", "strategy",
                                                            "num_nodes", "precision"))
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PipelineError(f"train.accelerator/devices/strategy/precision ({settings}): {first}") from None


def _step_of(path: str) -> Optional[int]:
    if not path or not Path(path).exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def _logger(cfg: TrainConfig, job: TrainJob):
    if cfg.logger == "dvclive":
        try:
            from dvclive.lightning import DVCLiveLogger

            return DVCLiveLogger(dir=str(job.resume_dir / "dvclive"), dvcyaml=None,
                                 save_dvc_exp=False, report=None)
        except ImportError:  # fall back to CSV below
            pass
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(job.resume_dir), name="csv")
