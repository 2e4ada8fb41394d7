"""Distillation: the teacher's translations become the student's data; bad teachers are rejected clearly."""

import copy
import json

import pytest

from pipeline.config import DecodeConfig
from pipeline.data.corpus import load_split
from pipeline.decode import translate
from pipeline.distill import train_student, translate_training_sources
from pipeline.errors import PipelineError
from pipeline.model.checkpoint import load_checkpoint, save_checkpoint
from pipeline.train import api


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
    return save_checkpoint(teacher, tmp_path / "teacher")


def test_teacher_translations_replace_the_targets_of_every_pair(teacher_dir, tiny_corpus, tmp_path):
    greedy = DecodeConfig(beam_size=1, max_len_b=4)
    stats = translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "distill", greedy)
    original = load_split(tiny_corpus, "train")
    distilled = load_split(tmp_path / "distill", "train")
    assert sorted(distilled) == sorted(original)
    assert json.loads((tmp_path / "distill" / "meta.json").read_text()) == stats
    assert stats["wall_seconds"] > 0  # the report's wall-time table reads it
    for direction, pairs in original.items():
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


def test_without_sequence_level_the_references_are_kept(teacher_dir, tiny_corpus, tmp_path):
    translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1),
                               sequence_level=False)
    original = load_split(tiny_corpus, "train")
    assert load_split(tmp_path / "d", "train") == original


def test_student_starts_from_the_teacher_and_trains(params, teacher_dir, tiny_corpus, tmp_path):
    translate_training_sources(teacher_dir, tiny_corpus, tmp_path / "d", DecodeConfig(beam_size=1,
                                                                                     max_len_b=4))
    metrics = train_student(params, teacher_dir, tiny_corpus, tmp_path / "d", tmp_path / "student",
                            tmp_path / "r")
    student = load_checkpoint(tmp_path / "student")
    assert metrics["steps"] == 5
    assert student.cfg.encoder_routing == "none" and student.cfg.decoder_routing == "none"
    assert (tmp_path / "r" / "metrics.json").exists()


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
