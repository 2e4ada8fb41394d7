"""Distillation: the teacher's translations become the student's data; bad teachers are rejected clearly."""

import copy
import csv
import json
import shutil
from pathlib import Path

import pytest
import sacrebleu
import torch

from pipeline.config import DecodeConfig
from pipeline.data.corpus import load_split
from pipeline.decode import translate
from pipeline.distill import schedule_steps, train_control, train_student, translate_training_sources
from pipeline.errors import PipelineError
from pipeline.model.checkpoint import load_checkpoint, save_checkpoint
from pipeline.train import api
from pipeline.train.losses import inverse_sqrt_schedule

TEACHER_WARMSTART, TEACHER_STEPS = 30, 20  # what the teacher fixture's meta.json says it trained


@pytest.fixture
def params(smoke_params):
    p = copy.deepcopy(smoke_params)
    p.train.val_bleu_sentences = 0
    p.train.logger = "csv"
    p.distill.max_steps = 5
    return p


@pytest.fixture(autouse=True)
def resume_root(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "RESUME_ROOT", tmp_path / "resume")


@pytest.fixture
def teacher_dir(params, tiny_corpus, tmp_path):
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    teacher = api.build_model(params, "token_moe", vocab, languages)
    meta = {"name": "token_moe", "train": {"steps": TEACHER_STEPS}, "warmstart_steps": TEACHER_WARMSTART}
    return save_checkpoint(teacher, tmp_path / "teacher", meta=meta)


def test_teacher_translations_replace_the_targets_of_every_pair(teacher_dir, tiny_corpus, tmp_path):
    greedy = DecodeConfig(beam_size=1, max_len_b=4)
    stats = translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "distill", greedy)
    original = load_split(tiny_corpus, "train")
    distilled = load_split(tmp_path / "distill", "train")
    assert sorted(distilled) == sorted(original)
    assert json.loads((tmp_path / "distill" / "meta.json").read_text()) == stats
    assert stats["wall_seconds"] > 0  # the report's wall-time table reads it
    for direction, pairs in original.items():
        # the targets' quality is recorded: their BLEU against the references they replace
        bleu = sacrebleu.corpus_bleu([p.target for p in distilled[direction]], [[p.target for p in pairs]])
        assert stats["directions"][direction]["bleu_vs_reference"] == pytest.approx(bleu.score, abs=0.01)
        assert [p.id for p in distilled[direction]] == [p.id for p in pairs]
        assert [p.source for p in distilled[direction]] == [p.source for p in pairs]
        d = stats["directions"][direction]
        assert d["pairs"] == len(pairs) and d["teacher"] + d["empty_kept_reference"] == len(pairs)
    # the targets are what the teacher says for those sources (or the reference where it says nothing)
    teacher = load_checkpoint(teacher_dir)
    vocab = api.load_vocab(tiny_corpus)
    pairs = original["en-de"][:6]
    said = translate(teacher, vocab, [p.source for p in pairs], "en", "de", greedy)
    for pair, out, got in zip(pairs, said, distilled["en-de"][:6]):
        assert got.target == (" ".join(out.split()) or pair.target)


def test_recorded_target_bleu_measures_the_targets_written(teacher_dir, tiny_corpus, tmp_path,
                                                           monkeypatch):
    import pipeline.decode

    original = load_split(tiny_corpus, "train")
    refs = {(d, p.source): p.target for d, pairs in original.items() for p in pairs}
    # a teacher that says the reference for half of the sentences, nothing for a quarter (the reference
    # is kept there) and something wrong for the rest
    said = lambda model, vocab, sources, src, tgt, cfg: [
        refs[f"{src}-{tgt}", s] if i % 2 == 0 else "" if i % 4 == 1 else "zzz qqq"
        for i, s in enumerate(sources)]
    monkeypatch.setattr(pipeline.decode, "translate", said)
    stats = translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "d", DecodeConfig())
    for direction, pairs in original.items():
        expected = [p.target if i % 4 != 3 else "zzz qqq" for i, p in enumerate(pairs)]
        score = sacrebleu.corpus_bleu(expected, [[p.target for p in pairs]]).score
        assert 0 < score < 100
        assert stats["directions"][direction]["bleu_vs_reference"] == pytest.approx(score, abs=0.01)
    per_direction = [d["bleu_vs_reference"] for d in stats["directions"].values()]
    assert stats["bleu_vs_reference_avg"] == pytest.approx(sum(per_direction) / len(per_direction), abs=0.01)
    assert stats["bleu_signature"].startswith("nrefs:1")


def test_without_sequence_level_the_references_are_kept(teacher_dir, tiny_corpus, tmp_path):
    translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1),
                               sequence_level=False)
    original = load_split(tiny_corpus, "train")
    assert load_split(tmp_path / "d", "train") == original
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert "bleu_vs_reference_avg" not in meta  # the references themselves: nothing to score
    for direction, pairs in original.items():  # the teacher wrote none of the targets
        assert meta["directions"][direction] == {"pairs": len(pairs), "teacher": 0, "empty_kept_reference": 0}


def test_student_starts_from_the_teacher_and_trains(params, teacher_dir, tiny_corpus, tmp_path):
    translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1,
                                                                                     max_len_b=4))
    metrics = train_student(params, teacher_dir, tiny_corpus, tmp_path / "d", tmp_path / "student",
                            tmp_path / "r")
    student = load_checkpoint(tmp_path / "student")
    assert metrics["steps"] == 5
    assert student.cfg.encoder_routing == "none" and student.cfg.decoder_routing == "none"
    assert (tmp_path / "r" / "metrics.json").exists()


def test_the_teacher_gives_its_targets_in_eval_mode_through_training_and_validation(
        params, tiny_corpus, tmp_path, monkeypatch):
    """With dropout in the teacher, a teacher left in train mode would give word-level KD noisy targets;
    Lightning puts modules back in train mode after each validation, so check every step."""
    from pipeline.train.module import TranslationModule

    params.model.dropout = params.model.attention_dropout = 0.3
    params.distill.max_steps, params.train.val_every = 6, 2  # validations between training steps
    assert params.distill.word_level.enabled and not params.distill.sequence_level
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    meta = {"name": "token_moe", "train": {"steps": TEACHER_STEPS}, "warmstart_steps": TEACHER_WARMSTART}
    teacher_dir = save_checkpoint(api.build_model(params, "token_moe", vocab, languages),
                                  tmp_path / "teacher", meta=meta)
    translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1),
                               sequence_level=False)
    seen = []
    original = TranslationModule.training_step

    def recording_step(self, batch, batch_idx):
        seen.append((self.model.training, [m.training for m in self.teacher.modules()]))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(TranslationModule, "training_step", recording_step)
    train_student(params, teacher_dir, tiny_corpus, tmp_path / "d", tmp_path / "s", tmp_path / "r")
    assert len(seen) == 6
    assert all(student for student, _ in seen)  # the student itself trains with its dropout
    assert not any(any(modes) for _, modes in seen)


@pytest.mark.parametrize("schedule, offset", [("continue", TEACHER_WARMSTART + TEACHER_STEPS),
                                              ("restart", 0)])
def test_student_takes_up_the_teachers_lr_schedule(params, teacher_dir, tiny_corpus, tmp_path,
                                                   schedule, offset):
    translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1,
                                                                                     max_len_b=4))
    params.distill.lr_schedule, params.distill.max_steps = schedule, 10
    train_student(params, teacher_dir, tiny_corpus, tmp_path / "d", tmp_path / "s", tmp_path / "r")
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["schedule_offset"] == offset
    with (tmp_path / "r" / "train_curve.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["lr"]]
    assert rows, "no learning rate was logged"
    for row in rows:  # the rate logged at `step` (the next step's; steps count from the teacher's schedule)
        assert int(row["step"]) >= offset
        expected = params.train.lr * inverse_sqrt_schedule(int(row["step"]),
                                                          params.train.warmup_steps)
        assert float(row["lr"]) == pytest.approx(expected, rel=1e-6)


def test_teacher_without_training_record_cannot_be_continued(params, tiny_corpus, tmp_path):
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    folder = save_checkpoint(api.build_model(params, "token_moe", vocab, languages), tmp_path / "t")
    translate_training_sources(folder, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1,
                                                                                max_len_b=4))
    with pytest.raises(PipelineError, match=r"meta\.json.*distill\.lr_schedule: restart"):
        train_student(params, folder, tiny_corpus, tmp_path / "d", tmp_path / "s", tmp_path / "r")
    assert not (tmp_path / "s").exists()
    params.distill.lr_schedule = "restart"  # the way out the message names
    assert train_student(params, folder, tiny_corpus, tmp_path / "d", tmp_path / "s",
                         tmp_path / "r")["steps"] == params.distill.max_steps


def test_missing_teacher_checkpoint_is_a_clear_error(tiny_corpus, tmp_path):
    with pytest.raises(PipelineError, match="teacher|not found|missing"):
        translate_training_sources(tmp_path / "nope", tiny_corpus, tmp_path / "d", DecodeConfig())
    assert not (tmp_path / "d").exists()


def test_teacher_with_another_vocabulary_is_rejected(params, tiny_corpus, tmp_path):
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)

    class OtherVocab:
        size, pad_id, bos_id, eos_id = vocab.size + 7, vocab.pad_id, vocab.bos_id, vocab.eos_id

    teacher = api.build_model(params, "token_moe", OtherVocab, languages)
    folder = save_checkpoint(teacher, tmp_path / "teacher")
    with pytest.raises(PipelineError, match="vocabulary size"):
        translate_training_sources(folder, tiny_corpus, tmp_path / "d", DecodeConfig())
    with pytest.raises(PipelineError, match="vocabulary size"):
        train_student(params, folder, tiny_corpus, tmp_path / "d", tmp_path / "s", tmp_path / "r")
    assert not (tmp_path / "d").exists() and not (tmp_path / "s").exists()


def test_the_kept_weights_step_is_where_the_schedule_continues(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    meta = {"train": {"steps": 20, "kept_checkpoint": "best_val_loss", "best_checkpoint_step": 12},
            "warmstart_steps": 30}
    (folder / "meta.json").write_text(json.dumps(meta))
    assert schedule_steps(folder) == 42  # the best weights were taken at step 12, not at the last step
    meta["train"]["kept_checkpoint"] = "last"
    (folder / "meta.json").write_text(json.dumps(meta))
    assert schedule_steps(folder) == 50


@pytest.fixture
def dense_dir(params, tiny_corpus, tmp_path):
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    params = copy.deepcopy(params)
    params.train.seed = 7  # weights unlike a fresh model's under train.seed 1
    dense = api.build_model(params, "dense", vocab, languages)
    meta = {"name": "dense", "train": {"steps": TEACHER_STEPS}, "warmstart_steps": TEACHER_WARMSTART}
    return save_checkpoint(dense, tmp_path / "dense", meta=meta)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("schedule, offset", [("continue", TEACHER_WARMSTART + TEACHER_STEPS),
                                              ("restart", 0)])
def test_control_trains_the_dense_baseline_as_long_as_the_student(params, dense_dir, tiny_corpus, tmp_path,
                                                                 schedule, offset):
    params.distill.lr_schedule, params.distill.max_steps = schedule, 10
    metrics = train_control(params, dense_dir, tiny_corpus, tmp_path / "c", tmp_path / "r")
    assert metrics["steps"] == 10 and metrics["model"] == "dense_long"
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["schedule_offset"] == offset and meta["control"]["base"] == str(dense_dir)
    with (tmp_path / "r" / "train_curve.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["lr"]]
    assert rows, "no learning rate was logged"
    for row in rows:  # the student's schedule: the baseline's, `offset` steps on (the curve counts them)
        assert int(row["step"]) >= offset
        expected = params.train.lr * inverse_sqrt_schedule(int(row["step"]),
                                                          params.train.warmup_steps)
        assert float(row["lr"]) == pytest.approx(expected, rel=1e-6)
    trained, base = load_checkpoint(tmp_path / "c"), load_checkpoint(dense_dir)
    assert not trained.moe_layers()
    assert any(not (trained.state_dict()[k] == v).all() for k, v in base.state_dict().items())


@pytest.mark.parametrize("student_init", ["teacher", "fresh"])
def test_control_starts_where_the_student_starts(params, dense_dir, tiny_corpus, tmp_path, student_init):
    """With lr 0 nothing moves, so the control's weights are its starting point: the dense baseline for
    a student started from the teacher, fresh weights (train.seed) for a fresh student."""
    params.train.lr, params.distill.student_init = 0.0, student_init
    train_control(params, dense_dir, tiny_corpus, tmp_path / "c", tmp_path / "r")
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    start = (_weights(load_checkpoint(dense_dir)) if student_init == "teacher"
             else _weights(api.build_model(params, "dense", vocab, languages)))
    got = _weights(load_checkpoint(tmp_path / "c"))
    assert set(got) == set(start) and all(torch.equal(got[k], start[k]) for k in start)
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["schedule_offset"] == (TEACHER_WARMSTART + TEACHER_STEPS if student_init == "teacher" else 0)


def test_control_needs_a_dense_base(params, teacher_dir, tiny_corpus, tmp_path):
    with pytest.raises(PipelineError, match="has MoE layers"):
        train_control(params, teacher_dir, tiny_corpus, tmp_path / "c", tmp_path / "r")
    assert not (tmp_path / "c").exists()


def test_control_base_must_match_params(params, tiny_corpus, tmp_path):
    """Same weight shapes, another dropout: loading would work, but it is not the model params describe."""
    other = copy.deepcopy(params)
    other.model.dropout = 0.3
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    folder = save_checkpoint(api.build_model(other, "dense", vocab, languages), tmp_path / "dense",
                             meta={"train": {"steps": 5}})
    with pytest.raises(PipelineError, match=r"dense/config\.json: dropout differ from params"):
        train_control(params, folder, tiny_corpus, tmp_path / "c", tmp_path / "r")
    assert not (tmp_path / "c").exists()


def test_control_stage_names_a_missing_base(tiny_corpus, tmp_path, capsys, monkeypatch):
    from stages.control import main

    root = Path(__file__).resolve().parents[1]
    params_file = tmp_path / "params.yaml"
    params_file.write_text((root / "params.yaml").read_text().replace("profile: default", "profile: smoke"))
    shutil.copytree(root / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    code = main(["--params", str(params_file), "--base", str(tmp_path / "nope"), "--corpus", str(tiny_corpus),
                 "--out", str(tmp_path / "c"), "--reports", str(tmp_path / "r")])
    assert code != 0
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_control_is_the_students_recipe_without_the_teacher(params, dense_dir, tiny_corpus, tmp_path):
    """A student whose 'teacher' is the dense baseline and that learns nothing from it (both KD kinds off,
    on the references) is the control: same start, schedule, seed and batches, so the same weights."""
    params.distill.max_steps = 6
    params.distill.sequence_level, params.distill.word_level.enabled = False, False
    translate_training_sources(dense_dir, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1),
                               sequence_level=False)
    train_student(params, dense_dir, tiny_corpus, tmp_path / "d", tmp_path / "s", tmp_path / "rs")
    train_control(params, dense_dir, tiny_corpus, tmp_path / "c", tmp_path / "rc")
    student, control = _weights(load_checkpoint(tmp_path / "s")), _weights(load_checkpoint(tmp_path / "c"))
    assert set(student) == set(control) and all(torch.equal(student[k], control[k]) for k in student)
    meta = [json.loads((tmp_path / x / "meta.json").read_text()) for x in ("s", "c")]
    assert meta[0]["schedule_offset"] == meta[1]["schedule_offset"] == TEACHER_WARMSTART + TEACHER_STEPS
    assert not all(torch.equal(student[k], v) for k, v in _weights(load_checkpoint(dense_dir)).items())
