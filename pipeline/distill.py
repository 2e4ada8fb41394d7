"""Distillation of the token-MoE teacher into a dense student (paper Sec 4.4).

Sequence-level KD (Kim & Rush 2016), the paper's method: the teacher translates the source side of every
training direction, and the student (the dense baseline's architecture, initialised from the teacher's
non-expert weights) trains on those translations. Word-level KD (a KL term against the teacher's token
distribution, `pipeline.train.losses.word_kd_loss`) can be used instead (the default, on the references)
or with it. A student initialised from the teacher takes up the teacher's learning-rate schedule where the
teacher stopped (`distill.lr_schedule: continue`), as the upcycled models take up the warm start's.

A student started from the teacher trains `distill.max_steps` steps that the dense baseline never took, so
its gain over dense mixes what the teacher taught with what more training gives. `train_control` trains
the equal-steps control, `dense_long`: the dense baseline itself, trained those steps on the references
with the student's schedule and no teacher. Student vs `dense_long` is what the teacher gives the student
(its weights as a start, its translations or token distributions) beyond training as long.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from pipeline.config import DecodeConfig, Params, to_dict
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, read_json, write_json
from pipeline.roles import CONTROL, STUDENT  # the output names of train_student / train_control

log = logging.getLogger(__name__)


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def translate_training_sources(teacher_dir: Path, corpus_dir: Path, out_dir: Path,
                               decode_cfg: DecodeConfig, sequence_level: bool = True) -> dict:
    """Write `out_dir/train/<src>-<tgt>.tsv` with the teacher's translations as targets.

    With `sequence_level` off the original targets are kept (word-level KD alone). Where the teacher's
    translation comes out empty (an undertrained teacher stops at once), the reference is kept instead, so
    no training pair is lost; `meta.json` counts these per direction, with the BLEU of the targets written
    against the references (how much worse than the references the student's data is), and the report
    shows them.
    """
    from pipeline.data.corpus import load_split
    from pipeline.decode import translate
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.train.api import load_vocab

    import sacrebleu
    import torch

    started = time.perf_counter()
    metric = sacrebleu.BLEU()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher = load_checkpoint(teacher_dir, device=device).eval()
    vocab = load_vocab(corpus_dir)
    check_compatible(teacher, vocab, corpus_dir, what=str(teacher_dir))
    train = load_split(corpus_dir, "train")
    stats = {"teacher": str(teacher_dir), "sequence_level": sequence_level,
             "decode": to_dict(decode_cfg), "directions": {}}
    with atomic_dir(out_dir) as tmp:
        (tmp / "train").mkdir()
        for direction, pairs in tqdm(sorted(train.items()), desc="teacher translates", unit="dir"):
            src_lang, tgt_lang = direction.split("-")
            if sequence_level:
                targets = translate(teacher, vocab, [p.source for p in pairs], src_lang, tgt_lang,
                                    decode_cfg)
            else:
                targets = [p.target for p in pairs]
            empty, written = 0, []
            with (tmp / "train" / f"{direction}.tsv").open("w", encoding="utf-8") as handle:
                for pair, target in zip(pairs, targets):
                    if not _clean(target):
                        target, empty = pair.target, empty + 1
                    written.append(_clean(target))
                    handle.write(f"{pair.id}\t{_clean(pair.source)}\t{written[-1]}\n")
            stats["directions"][direction] = {"pairs": len(pairs),
                                              "teacher": len(pairs) - empty if sequence_level else 0,
                                              "empty_kept_reference": empty}
            if sequence_level:  # how good the student's targets are: the teacher's BLEU on its training data
                bleu = metric.corpus_score(written, [[_clean(p.target) for p in pairs]])
                stats["directions"][direction]["bleu_vs_reference"] = round(bleu.score, 2)
        if sequence_level and stats["directions"]:
            scores = [d["bleu_vs_reference"] for d in stats["directions"].values()]
            stats["bleu_vs_reference_avg"] = round(sum(scores) / len(scores), 2)
            stats["bleu_signature"] = metric.get_signature().format()
        stats["wall_seconds"] = time.perf_counter() - started
        write_json(tmp / "meta.json", stats)
    return stats


def check_compatible(teacher, vocab, corpus_dir: Path, what: str, fix: str = "retrain the teacher") -> None:
    """The teacher (or another model read from disk) must share the corpus' vocabulary and language ids."""
    from pipeline.train.api import corpus_languages

    if teacher.cfg.vocab_size != vocab.size:
        raise PipelineError(f"{what}: vocabulary size {teacher.cfg.vocab_size} differs from the "
                            f"corpus' {vocab.size} ({corpus_dir}/spm.model): {fix}")
    languages = corpus_languages(corpus_dir)
    if list(teacher.cfg.languages) != languages:
        raise PipelineError(f"{what}: languages {teacher.cfg.languages} differ from the corpus' "
                            f"{languages}: {fix}")


def schedule_steps(model_dir: Path, what: str = "teacher") -> int:
    """Steps on a trained model's lr schedule at the weights it kept: its warm start's plus its own.

    From its meta.json: `train.steps`, or `train.best_checkpoint_step` where it kept its best-validation
    weights (`train.keep_checkpoint: best_val_loss`), since those were taken at that step.
    """
    path = Path(model_dir) / "meta.json"
    hint = f"rerun the {what}'s train stage, or set distill.lr_schedule: restart"
    if not path.exists():
        raise PipelineError(f"{path}: file not found, so no step to continue the lr schedule from ({hint})")
    meta = read_json(path)
    try:
        record = meta["train"]
        steps = int(record["steps"])
        if record.get("kept_checkpoint") == "best_val_loss" and record.get("best_checkpoint_step") is not None:
            steps = int(record["best_checkpoint_step"])
        warm = int(meta.get("warmstart_steps") or 0)
    except (KeyError, TypeError, ValueError):
        raise PipelineError(f"{path}: no train.steps to continue the lr schedule from ({hint})") from None
    if steps < 0 or warm < 0:
        raise PipelineError(f"{path}: negative steps ({warm} + {steps}) ({hint})")
    return warm + steps


def train_student(params: Params, teacher_dir: Path, corpus_dir: Path, distill_dir: Path,
                  out_dir: Path, reports_dir: Path, run_name: Optional[str] = None) -> dict:
    """Train the dense student on the teacher's translations (and/or its token distributions).

    `run_name` names its resume folder (default `student`; the seeds stage's is `seed<N>/student`)."""
    from pipeline.data.corpus import load_split
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.model.surgery import copy_non_expert_weights
    from pipeline.train.api import build_model, corpus_languages, finish, load_vocab, make_job
    from pipeline.train.run import fit

    dcfg = params.distill
    teacher = load_checkpoint(teacher_dir).eval()
    vocab = load_vocab(corpus_dir)
    check_compatible(teacher, vocab, corpus_dir, what=str(teacher_dir))
    languages = corpus_languages(corpus_dir)
    student = build_model(params, "dense", vocab, languages)
    offset = 0
    if dcfg.student_init == "teacher":
        copy_non_expert_weights(teacher, student, dcfg.ffn_init)
        if dcfg.lr_schedule == "continue":
            offset = schedule_steps(teacher_dir)
    distill_meta = read_json(Path(distill_dir) / "meta.json")
    train_pairs = load_split(distill_dir, "train")
    job = make_job(params, STUDENT, student, corpus_dir, out_dir, reports_dir, vocab, languages,
                   train_pairs=train_pairs, teacher=teacher if dcfg.word_level.enabled else None,
                   kd=dcfg.word_level, max_steps=dcfg.max_steps, inputs=[teacher_dir, distill_dir],
                   schedule_offset=offset, run_name=run_name)
    job.meta = {"teacher": str(teacher_dir), "distill": to_dict(dcfg), "distill_data": distill_meta,
                "schedule_offset": offset}
    log.info("training the student (init=%s, ffn_init=%s, sequence_level=%s, word_level=%s, "
             "lr schedule from step %d)", dcfg.student_init, dcfg.ffn_init, dcfg.sequence_level,
             dcfg.word_level.enabled, offset)
    return finish(job, fit(job), params)


def train_control(params: Params, base_dir: Path, corpus_dir: Path, out_dir: Path, reports_dir: Path,
                  run_name: Optional[str] = None) -> dict:
    """The student's recipe without the teacher: `dense_long`, distillation's equal-steps control.

    A student started from the teacher (`distill.student_init: teacher`) trains `distill.max_steps` more
    steps after the teacher's; the dense baseline (`base_dir`) trains as many more here, on the references,
    on the schedule the student follows (`distill.lr_schedule`: continued from where the baseline stopped,
    or restarted), with the same seed (and the same batches when the student trains on the references,
    `distill.sequence_level: false`). A fresh student's control is a fresh dense model trained as long.
    Either way, the student and this model differ only in what the teacher gives the student: its weights
    as a starting point, and its translations or token distributions to learn from. `run_name` names its
    resume folder as in `train_student`.
    """
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.train.api import build_model, corpus_languages, finish, load_vocab, make_job
    from pipeline.train.run import fit

    dcfg = params.distill
    vocab = load_vocab(corpus_dir)
    languages = corpus_languages(corpus_dir)
    model = build_model(params, "dense", vocab, languages)
    offset, inputs = 0, []
    if dcfg.student_init == "teacher":
        base = load_checkpoint(base_dir)
        check_compatible(base, vocab, corpus_dir, what=str(base_dir), fix="rerun its train stage")
        if base.moe_layers():
            raise PipelineError(f"{base_dir}: has MoE layers; the control continues the dense baseline")
        want, have = model.cfg.to_dict(), base.cfg.to_dict()
        differ = sorted(k for k in set(want) | set(have)
                        if json.dumps(want.get(k), sort_keys=True) != json.dumps(have.get(k), sort_keys=True))
        if differ:
            raise PipelineError(f"{Path(base_dir) / 'config.json'}: {', '.join(differ)} differ from params "
                                "(model, models.dense): rerun its train stage")
        model.load_state_dict(base.state_dict())
        inputs = [base_dir]
        if dcfg.lr_schedule == "continue":
            offset = schedule_steps(base_dir, what="dense baseline")
    job = make_job(params, CONTROL, model, corpus_dir, out_dir, reports_dir, vocab, languages,
                   max_steps=dcfg.max_steps, inputs=inputs, schedule_offset=offset, run_name=run_name)
    job.meta = {"control": {"of": STUDENT, "base": str(base_dir) if inputs else None,
                            "student_init": dcfg.student_init, "lr_schedule": dcfg.lr_schedule,
                            "max_steps": dcfg.max_steps}, "schedule_offset": offset}
    log.info("training the control %s (from %s, lr schedule from step %d)", CONTROL,
             base_dir if inputs else "fresh weights", offset)
    return finish(job, fit(job), params)
