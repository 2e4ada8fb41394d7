"""Train one model spec from params on the prepared corpus: what `stages/train.py` calls."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional

import torch

from pipeline.config import ModelSpec, Params, model_spec, to_dict
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, read_json, write_json
from pipeline.train.examples import load_examples
from pipeline.train.run import VAL_HYPS, TrainJob, fit, publish_curves

log = logging.getLogger(__name__)
RESUME_ROOT = Path(".resume")


def corpus_languages(corpus_dir: Path) -> list[str]:
    meta = read_json(Path(corpus_dir) / "meta.json")
    if "languages" not in meta:
        raise PipelineError(f"{corpus_dir}/meta.json: no 'languages' key (rerun the prepare stage)")
    return list(meta["languages"])


def load_vocab(corpus_dir: Path):
    from pipeline.data.vocab import Vocab

    path = Path(corpus_dir) / "spm.model"
    if not path.exists():
        raise PipelineError(f"{path}: file not found (run the prepare stage first)")
    return Vocab(path)


def build_model(params: Params, name: str, vocab, languages: list[str],
                spec: Optional[ModelSpec] = None):
    from pipeline.model.config import Seq2SeqConfig
    from pipeline.model.transformer import Seq2Seq

    spec = spec or model_spec(params, name)
    cfg = Seq2SeqConfig.build(params.model, spec, vocab_size=vocab.size,
                              pad_id=vocab.pad_id, bos_id=vocab.bos_id, eos_id=vocab.eos_id,
                              languages=languages)
    torch.manual_seed(params.train.seed)  # the initial weights follow train.seed too
    return Seq2Seq(cfg)


# A checkpoint's run record (timings, metrics): it differs between two runs that made the same weights
RUN_RECORDS = ("meta.json",)


def digest(paths, skip: tuple[str, ...] = ()) -> str:
    """sha256 over the contents of files (folders: every file below them not named in `skip`), in a
    stable order."""
    h = hashlib.sha256()
    files = []
    for path in map(Path, paths):
        files += sorted(p for p in path.rglob("*") if p.is_file() and p.name not in skip) \
            if path.is_dir() else [path]
    for path in files:
        h.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def code_version() -> str:
    """A hash of the library's source: a resume across code changes would mix two programs."""
    root = Path(__file__).resolve().parent.parent
    return digest(sorted(root.rglob("*.py")))


def make_job(params: Params, name: str, model, corpus_dir: Path, out_dir: Path, reports_dir: Path,
             vocab, languages: list[str], train_pairs: Optional[dict] = None, inputs=(),
             run_name: Optional[str] = None, **extra) -> TrainJob:
    """A `TrainJob` on the corpus (or on `train_pairs`, e.g. the teacher's translations).

    `inputs` (files or folders whose contents the run depends on besides the corpus: a warm start, a
    teacher, distillation data) go into the resume fingerprint with the corpus and the code version, so
    an interrupted run is only continued when nothing it was started from has changed. A checkpoint
    folder counts by its weights and config, not its run record (meta.json: timings), so a warm start
    retrained to the same weights still lets the models after it resume; the lr schedule's offset,
    which the record gives, is fingerprinted itself. `run_name`
    (default `name`) names its resume folder: the seeds stage trains `dense` again as `seed2/dense`.
    """
    from pipeline.data.corpus import load_split

    max_len = params.model.max_positions
    train = load_examples(corpus_dir, "train", vocab, languages, max_len, pairs_by_direction=train_pairs)
    valid_pairs = load_split(corpus_dir, "valid")
    valid = load_examples(corpus_dir, "valid", vocab, languages, max_len,
                          pairs_by_direction=valid_pairs)
    # max_steps is left out: raising it continues a finished or interrupted run instead of restarting
    settings = {key: to_dict(getattr(params, key)) for key in ("data", "model", "train", "distill")}
    settings["architecture"] = to_dict(model.cfg)  # also for models outside params.models (student)
    settings["train"].pop("max_steps")
    settings["distill"].pop("max_steps")
    fingerprint = {"params": settings, "name": run_name or name, "torch": torch.__version__,
                   "train_sizes": {d: len(x) for d, x in train.items()}, "code": code_version(),
                   "schedule_offset": extra.get("schedule_offset", 0),
                   "inputs": digest([Path(corpus_dir) / "meta.json", Path(corpus_dir) / "spm.model",
                                     *inputs], skip=RUN_RECORDS)}
    return TrainJob(name=name, model=model, cfg=params.train, vocab=vocab, languages=languages,
                    train_examples=train, valid_examples=valid, valid_pairs=valid_pairs,
                    temperature=params.data.temperature, out_dir=Path(out_dir),
                    reports_dir=Path(reports_dir), resume_dir=RESUME_ROOT / (run_name or name),
                    fingerprint=fingerprint, expert_lr_scale=params.model.expert_lr_scale, **extra)


def finish(job: TrainJob, metrics: dict, params: Params) -> dict:
    """Save the checkpoint and the metrics of a finished `fit` (on the first rank only)."""
    from pipeline.model.checkpoint import save_checkpoint

    if not job.is_global_zero:
        return metrics

    model = job.model
    counts = model.parameter_count().as_dict()
    metrics = {"model": job.name, **{f"params_{k}": v for k, v in counts.items()}, **metrics}
    meta = {"name": job.name, "train": metrics, "params": to_dict(params), **job.meta}
    usage = expert_usage(model, job)
    if usage:
        meta["expert_usage"] = usage
    save_checkpoint(model, job.out_dir, meta=meta)
    write_json(Path(job.reports_dir) / "metrics.json", metrics)
    return metrics


@torch.inference_mode()
def expert_usage(model, job: TrainJob, max_batches: int = 20) -> dict:
    """{layer: {target language: fraction of routing choices per expert}} on validation batches.

    What the report's heatmaps show: which experts each target language uses.
    """
    from pipeline.train.batching import fixed_batches

    examples = [e for d in sorted(job.valid_examples) for e in job.valid_examples[d]]
    batches = fixed_batches(examples, job.cfg.batch_tokens, job.cfg.max_sentences, job.vocab.pad_id,
                            job.vocab.bos_id)[:max_batches]
    counts: dict[str, dict[int, torch.Tensor]] = {}
    model.eval()
    for batch in batches:
        out = model(batch.src, batch.tgt_in, batch.src_lang, batch.tgt_lang)
        for layer, info in out.routing.items():
            num_experts = model.moe_layers()[layer].experts.num_experts
            for lang in batch.tgt_lang.unique().tolist():
                rows = (batch.tgt_lang == lang)[:, None] & info.token_mask  # (B, L)
                chosen = info.expert_index[rows][info.weights[rows] > 0]  # (N*K,) applied choices
                hist = torch.bincount(chosen.flatten(), minlength=num_experts).float()
                layer_counts = counts.setdefault(layer, {})
                layer_counts[lang] = layer_counts.get(lang, 0) + hist
    return {layer: {job.languages[lang]: (h / h.sum().clamp_min(1)).tolist()
                    for lang, h in sorted(by_lang.items())}
            for layer, by_lang in counts.items()}


WARMSTART_MARKER = "warmstart.json"


def train_warmstart(params: Params, corpus_dir: Path, out_dir: Path, reports_dir: Path,
                    run_name: Optional[str] = None) -> dict:
    """The shared dense warm start (`train.warmstart_steps`); with 0 steps only a marker is written."""
    steps = params.train.warmstart_steps
    if steps == 0:
        with atomic_dir(out_dir) as tmp:
            write_json(tmp / WARMSTART_MARKER, {"steps": 0, "note": "models train from scratch"})
        with atomic_dir(Path(reports_dir) / VAL_HYPS) as tmp:  # no validations: an empty curve
            write_json(tmp / "index.json", {"model": "warmstart", "warmstart_steps": 0, "steps": []})
        write_json(Path(reports_dir) / "metrics.json", {"model": "warmstart", "steps": 0})
        publish_curves(Path(out_dir) / "no-curve.csv", Path(reports_dir))  # the curve files, header only
        return {"steps": 0}
    vocab = load_vocab(corpus_dir)
    languages = corpus_languages(corpus_dir)
    model = build_model(params, "warmstart", vocab, languages, spec=ModelSpec())
    job = make_job(params, "warmstart", model, corpus_dir, out_dir, reports_dir, vocab, languages,
                   max_steps=steps, run_name=run_name)
    metrics = finish(job, fit(job), params)
    if job.is_global_zero:  # under DDP only the first rank writes
        write_json(Path(out_dir) / WARMSTART_MARKER, {"steps": steps})
    return metrics


def warm_start(model, warmstart_dir: Optional[Path]) -> int:
    """Initialise `model` from the dense warm start (upcycling its MoE layers); return the steps it had."""
    if warmstart_dir is None:
        return 0
    marker = read_json(Path(warmstart_dir) / WARMSTART_MARKER)
    if not marker.get("steps"):
        return 0
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.model.surgery import upcycle

    dense = load_checkpoint(warmstart_dir)
    if dense.cfg.vocab_size != model.cfg.vocab_size or dense.cfg.languages != model.cfg.languages:
        raise PipelineError(f"{warmstart_dir}: vocabulary or languages differ from the corpus'; "
                            "rerun the warmstart stage")
    upcycle(dense, model)  # a dense target gets the weights as they are
    return int(marker["steps"])


def train_model(params: Params, name: str, corpus_dir: Path, out_dir: Path, reports_dir: Path,
                warmstart_dir: Optional[Path] = None, run_name: Optional[str] = None) -> dict:
    vocab = load_vocab(corpus_dir)
    languages = corpus_languages(corpus_dir)
    model = build_model(params, name, vocab, languages)
    offset = warm_start(model, warmstart_dir)
    job = make_job(params, name, model, corpus_dir, out_dir, reports_dir, vocab, languages,
                   schedule_offset=offset, inputs=[warmstart_dir] if warmstart_dir else [],
                   run_name=run_name)
    job.meta["warmstart_steps"] = offset
    log.info("training %s: %s (warm start: %d steps)", name, model_spec(params, name), offset)
    return finish(job, fit(job), params)
