"""The seeds stage: the main recipe retrained with other train.seed values, evaluated like the main models."""

import copy
import json
import shutil

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.model.checkpoint import load_checkpoint
from pipeline.seeds import load_seed_hypotheses, train_seeds, with_seed
from pipeline.train import api

from tests.conftest import ROOT


@pytest.fixture
def params(smoke_params):
    p = copy.deepcopy(smoke_params)
    p.train.val_bleu_sentences = 0
    p.train.logger = "csv"
    p.train.warmstart_steps, p.train.max_steps = 4, 4
    p.seeds.models = ["dense", "token_moe"]
    p.evaluate.max_sentences = 3
    p.evaluate.decode.max_len_b = 3
    return p


@pytest.fixture(autouse=True)
def resume_root(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "RESUME_ROOT", tmp_path / "resume")


def weights(model_dir):
    return load_checkpoint(model_dir).state_dict()


def test_each_seed_is_the_main_recipe_with_only_the_seed_changed(params, tiny_corpus, tmp_path):
    params.seeds.extra = [2, 3]
    index = train_seeds(params, tiny_corpus, tmp_path / "models", tmp_path / "reports")
    assert index["main_seed"] == 1 and index["extra"] == [2, 3] and set(index["seeds"]) == {"2", "3"}
    assert json.loads((tmp_path / "reports" / "index.json").read_text()) == index
    # seed 2 is what the warmstart and train stages make with train.seed: 2
    p2 = with_seed(params, 2)
    api.train_warmstart(p2, tiny_corpus, tmp_path / "direct" / "warmstart", tmp_path / "direct_r" / "warmstart")
    api.train_model(p2, "dense", tiny_corpus, tmp_path / "direct" / "dense", tmp_path / "direct_r" / "dense",
                    warmstart_dir=tmp_path / "direct" / "warmstart")
    seed2, direct = weights(tmp_path / "models" / "seed2" / "dense"), weights(tmp_path / "direct" / "dense")
    assert all(torch.equal(seed2[k], direct[k]) for k in direct)
    # and the seed is applied: seed 3's warm start and models differ from seed 2's
    seed3 = weights(tmp_path / "models" / "seed3" / "dense")
    assert any(not torch.equal(seed2[k], seed3[k]) for k in seed2)
    for seed in (2, 3):  # every model's own warm start: the MoE is upcycled from its seed's dense start
        meta = json.loads((tmp_path / "models" / f"seed{seed}" / "token_moe" / "meta.json").read_text())
        assert meta["params"]["train"]["seed"] == seed and meta["warmstart_steps"] == 4
    # the test translations, as the compare stage reads them, one line per test pair kept
    loaded, hyps = load_seed_hypotheses(tmp_path / "reports", ["en-de", "de-en"])
    assert loaded == index and sorted(hyps) == [2, 3] and sorted(hyps[2]) == ["dense", "token_moe"]
    assert all(len(lines) == 3 for by_model in hyps.values() for m in by_model.values()
               for lines in m.values())
    metrics = json.loads((tmp_path / "reports" / "seed2" / "evaluate" / "dense" / "metrics.json").read_text())
    assert metrics["bleu"] == index["seeds"]["2"]["dense"]["bleu"]


def test_a_seeds_student_and_control_come_from_its_own_teacher_and_dense(params, tiny_corpus, tmp_path):
    """The student learns from its seed's teacher and dense_long continues its seed's dense, exactly as
    the distill_data, distill and control stages do for the main run with train.seed: 2."""
    from pipeline.distill import train_control, train_student, translate_training_sources

    params.seeds.extra = [2]
    params.seeds.models = ["dense_long", "student", "dense", "token_moe"]  # trained in dependency order
    params.distill.max_steps = 3
    index = train_seeds(params, tiny_corpus, tmp_path / "models", tmp_path / "reports")
    seed2 = tmp_path / "models" / "seed2"
    assert list(index["seeds"]["2"])[:4] == ["dense", "token_moe", "student", "dense_long"]
    p2 = with_seed(params, 2)
    translate_training_sources(seed2 / "token_moe", tiny_corpus, tmp_path / "direct" / "distill",
                               p2.distill.decode, p2.distill.sequence_level)
    train_student(p2, seed2 / "token_moe", tiny_corpus, tmp_path / "direct" / "distill",
                  tmp_path / "direct" / "student", tmp_path / "direct_r" / "student")
    train_control(p2, seed2 / "dense", tiny_corpus, tmp_path / "direct" / "dense_long",
                  tmp_path / "direct_r" / "dense_long")
    for name in ("student", "dense_long"):
        ours, direct = weights(seed2 / name), weights(tmp_path / "direct" / name)
        assert all(torch.equal(ours[k], direct[k]) for k in direct), name
        meta = json.loads((seed2 / name / "meta.json").read_text())
        assert meta["schedule_offset"] == 8 and meta["train"]["steps"] == 3  # after the 4 + 4 steps
        assert meta["params"]["train"]["seed"] == 2
    # the run records name the models they came from where those end up, not in the stage's temporary folder
    student = json.loads((seed2 / "student" / "meta.json").read_text())
    assert student["teacher"] == student["distill_data"]["teacher"] == str(seed2 / "token_moe")
    assert json.loads((seed2 / "distill_data" / "meta.json").read_text())["teacher"] == str(seed2 / "token_moe")
    assert json.loads((seed2 / "dense_long" / "meta.json").read_text())["control"]["base"] == str(seed2 / "dense")
    # each resumes from its own folder, not the main run's student or dense_long
    assert (api.RESUME_ROOT / "seed2" / "student").is_dir() and (api.RESUME_ROOT / "seed2" / "dense_long").is_dir()
    _, hyps = load_seed_hypotheses(tmp_path / "reports", ["en-de"])
    assert sorted(hyps[2]) == ["dense", "dense_long", "student", "token_moe"]


def test_no_extra_seed_writes_the_same_empty_index_every_time(params, tiny_corpus, tmp_path):
    params.seeds.extra = []
    index = train_seeds(params, tiny_corpus, tmp_path / "models", tmp_path / "reports")
    assert index["seeds"] == {} and (tmp_path / "models" / "README").exists()
    assert load_seed_hypotheses(tmp_path / "reports", ["en-de"]) == (index, {})
    first = (tmp_path / "reports" / "index.json").read_bytes()
    train_seeds(params, tiny_corpus, tmp_path / "models", tmp_path / "reports")
    assert (tmp_path / "reports" / "index.json").read_bytes() == first  # compare and report need not rerun


def test_a_rerun_resumes_every_finished_model(params, tiny_corpus, tmp_path):
    """DVC deletes the outputs before it reruns the stage (one more seed, an interruption): the seed's
    warm start is retrained from its finished run, and the models after it resume too, although the
    warm start's run record (meta.json: timings) differs."""
    params.seeds.extra = [2]
    params.seeds.models += ["student", "dense_long"]
    params.distill.max_steps = 2
    train_seeds(params, tiny_corpus, tmp_path / "models", tmp_path / "reports")
    before = weights(tmp_path / "models" / "seed2" / "token_moe")
    names = ("warmstart", "dense", "token_moe", "student", "dense_long")
    records = {n: json.loads((tmp_path / "models" / "seed2" / n / "meta.json").read_text())["train"] for n in names}
    for name in ("models", "reports"):
        shutil.rmtree(tmp_path / name)
    train_seeds(params, tiny_corpus, tmp_path / "models", tmp_path / "reports")
    for name in names:  # every finished run republished as it was: nothing retrained
        meta = json.loads((tmp_path / "models" / "seed2" / name / "meta.json").read_text())
        assert meta["train"] == records[name] and meta["train"]["resumed_from_step"] == 0, name
        assert meta["train"]["steps"] == (2 if name in ("student", "dense_long") else 4), name
    after = weights(tmp_path / "models" / "seed2" / "token_moe")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_failing_seed_leaves_no_outputs(params, tiny_corpus, tmp_path, monkeypatch):
    import pipeline.evaluate

    params.seeds.extra = [2]
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "index.json").write_text("{}")  # a previous run's outputs are kept on failure

    def broken(*args, **kwargs):
        raise PipelineError("decoding failed")

    monkeypatch.setattr(pipeline.evaluate, "evaluate_model", broken)
    with pytest.raises(PipelineError, match="decoding failed"):
        train_seeds(params, tiny_corpus, tmp_path / "models", tmp_path / "reports")
    assert not (tmp_path / "models").exists()
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["index.json"]


def test_stage_names_a_missing_corpus_file(tmp_path, capsys):
    from stages.seeds import main

    (tmp_path / "corpus").mkdir()
    status = main(["--params", str(ROOT / "params.yaml"), "--corpus", str(tmp_path / "corpus"),
                   "--out", str(tmp_path / "models"), "--reports", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and "corpus/meta.json" in err
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()


def test_missing_seed_translations_are_named(tmp_path):
    (tmp_path / "index.json").write_text(json.dumps({"main_seed": 1, "extra": [2], "models": ["dense"]}))
    with pytest.raises(PipelineError, match="seed2/evaluate/dense/hyps.*seed 2"):
        load_seed_hypotheses(tmp_path, ["en-de"])
