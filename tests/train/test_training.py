"""Training end to end on a tiny learnable corpus: the loss falls, resume continues, warm start, outputs."""

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.data.corpus import load_split
from pipeline.model.checkpoint import load_checkpoint
from pipeline.train import api
from pipeline.train.run import PUBLISHED_CURVES, fit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def params(smoke_params):
    p = copy.deepcopy(smoke_params)
    p.model.dropout = 0.0  # the resumed and the uninterrupted run must see the same computation
    p.model.attention_dropout = 0.0
    p.train.val_every = 10
    p.train.val_bleu_sentences = 0
    p.train.logger = "csv"
    return p


@pytest.fixture(autouse=True)
def resume_root(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "RESUME_ROOT", tmp_path / "resume")


def job_for(params, name, corpus, tmp_path, tag):
    vocab = api.load_vocab(corpus)
    languages = api.corpus_languages(corpus)
    model = api.build_model(params, name, vocab, languages)
    return api.make_job(params, name, model, corpus, tmp_path / tag / "model", tmp_path / tag / "reports",
                        vocab, languages)


def test_training_lowers_validation_loss_and_writes_outputs(params, tiny_corpus, tmp_path):
    params.train.max_steps = 40
    metrics = api.train_model(params, "task_moe", tiny_corpus, tmp_path / "m", tmp_path / "r")
    curves = [line.split(",") for line in (tmp_path / "r" / "val_curve.csv").read_text().splitlines()[1:]]
    val = [float(row[1]) for row in curves]
    assert len(val) == 4 and val == sorted(val, reverse=True) and val[-1] < val[0] - 0.25
    train = (tmp_path / "r" / "train_curve.csv").read_text().splitlines()
    assert train[0] == "step,train_loss,lr" and len(train) > 4 and all(row.split(",")[1] for row in train[1:])
    assert metrics["steps"] == 40 and metrics["tokens_per_second"] > 0
    assert metrics["params_experts"] > 0 and metrics["params_active_per_token"] < metrics["params_total"]
    reloaded = load_checkpoint(tmp_path / "m")
    assert reloaded.cfg.decoder_routing == "target"
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    usage = meta["expert_usage"]
    assert any(layer.startswith("decoder") for layer in usage)
    for by_lang in usage.values():
        for fractions in by_lang.values():
            assert sum(fractions) == pytest.approx(1.0)
    decoder = next(v for k, v in usage.items() if k.startswith("decoder"))
    for fractions in decoder.values():  # task routing: one target language uses exactly top_k experts
        assert sum(f > 0 for f in fractions) == params.model.top_k


def test_resumed_run_continues_from_the_saved_step(params, tiny_corpus, tmp_path, monkeypatch):
    params.train.max_steps = 20
    straight = fit(job_for(params, "dense", tiny_corpus, tmp_path, "straight"))

    params.train.max_steps = 10  # "interrupted" at step 10 ...
    monkeypatch.setattr(api, "RESUME_ROOT", tmp_path / "resume2")
    first = job_for(params, "dense", tiny_corpus, tmp_path, "interrupted")
    fit(first)
    params.train.max_steps = 20  # ... then run again: continues instead of starting over
    second = job_for(params, "dense", tiny_corpus, tmp_path, "interrupted")
    resumed = fit(second)
    assert resumed["resumed_from_step"] == 10 and resumed["steps"] == 20
    assert resumed["best_val_loss"] == pytest.approx(straight["best_val_loss"], rel=1e-4)


def test_changed_settings_start_over(params, tiny_corpus, tmp_path):
    params.train.max_steps = 10
    fit(job_for(params, "dense", tiny_corpus, tmp_path, "a"))
    params.train.lr = params.train.lr / 2
    again = fit(job_for(params, "dense", tiny_corpus, tmp_path, "a"))
    assert again["resumed_from_step"] == 0


def test_warm_start_upcycles_and_continues_the_schedule(params, tiny_corpus, tmp_path):
    params.train.warmstart_steps = 10
    params.train.max_steps = 10
    api.train_warmstart(params, tiny_corpus, tmp_path / "warm", tmp_path / "warm_r")
    dense = load_checkpoint(tmp_path / "warm")
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    moe = api.build_model(params, "token_moe", vocab, languages)
    assert api.warm_start(moe, tmp_path / "warm") == 10
    batch = (torch.tensor([[5, 6, 7, 3]]), torch.tensor([[2, 8, 9]]), torch.tensor([0]), torch.tensor([1]))
    moe.eval()
    # every expert is a copy of the dense FFN and the gate weights sum to 1: same function
    assert torch.allclose(moe(*batch).logits, dense(*batch).logits, atol=1e-5)


def test_no_warm_start_leaves_only_a_marker_in_the_model_folder(params, tiny_corpus, tmp_path):
    params.train.warmstart_steps = 0
    api.train_warmstart(params, tiny_corpus, tmp_path / "warm", tmp_path / "warm_r")
    assert sorted(p.name for p in (tmp_path / "warm").iterdir()) == ["warmstart.json"]
    index = json.loads((tmp_path / "warm_r" / "val_hyps" / "index.json").read_text())
    assert index["steps"] == [] and index["warmstart_steps"] == 0  # an empty curve, still a DVC output
    vocab, languages = api.load_vocab(tiny_corpus), api.corpus_languages(tiny_corpus)
    assert api.warm_start(api.build_model(params, "dense", vocab, languages), tmp_path / "warm") == 0


def test_no_warm_start_still_writes_every_output_dvc_yaml_declares(params, tiny_corpus, tmp_path):
    """With 0 steps the warmstart stage must leave each of its DVC outputs (dvc repro fails on a missing
    one): the curve files too, header only, so the DVC plots have no warm-start points."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["warmstart"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    params.train.warmstart_steps = 0
    api.train_warmstart(params, tiny_corpus, tmp_path / "models/warmstart", tmp_path / "reports/train/warmstart")
    assert outs and [o for o in outs if not (tmp_path / o).exists()] == []
    for name, fields in PUBLISHED_CURVES.items():
        assert (tmp_path / "reports/train/warmstart" / name).read_text().splitlines() == [",".join(fields)]


def test_changed_inputs_start_over(params, tiny_corpus, tmp_path):
    params.train.max_steps = 10
    teacher = tmp_path / "teacher.bin"
    teacher.write_bytes(b"one")

    def job():
        j = job_for(params, "dense", tiny_corpus, tmp_path, "a")
        return api.make_job(params, "dense", j.model, tiny_corpus, j.out_dir, j.reports_dir, j.vocab,
                            j.languages, inputs=[teacher])

    fit(job())
    params.train.max_steps = 12
    assert fit(job())["resumed_from_step"] == 10  # same inputs: continues
    teacher.write_bytes(b"two")
    assert fit(job())["resumed_from_step"] == 0  # another teacher: starts over


@pytest.mark.parametrize("keep", ["last", "best_val_loss"])
def test_kept_weights_follow_keep_checkpoint(params, tiny_corpus, tmp_path, keep):
    params.train.max_steps = 20
    params.train.keep_checkpoint = keep
    job = job_for(params, "dense", tiny_corpus, tmp_path, keep)
    fit(job)
    name = "last.ckpt" if keep == "last" else "best.ckpt"
    saved = torch.load(job.resume_dir / name, map_location="cpu", weights_only=False)
    for key, value in job.model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][f"model.{key}"]), key
    last = torch.load(job.resume_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 20  # refreshed at every validation, whatever the loss did


def test_last_checkpoint_is_refreshed_when_the_loss_rises(params, tiny_corpus, tmp_path):
    params.train.max_steps = 20
    params.train.lr = 3.0  # diverges: the validation loss does not fall steadily
    params.train.val_every = 5
    params.train.warmup_steps = 0
    job = job_for(params, "dense", tiny_corpus, tmp_path, "diverge")
    metrics = fit(job)
    best = torch.load(job.resume_dir / "best.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(job.resume_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 20 and metrics["steps"] == 20
    assert best["global_step"] == metrics["best_checkpoint_step"]


def test_validation_translations_feed_the_learning_curves(params, tiny_corpus, tmp_path):
    """Warm start 10 steps, then dense and token_moe 20 more: every validation's translations are
    published under the step they were made at, and the curve study scores them."""
    from pipeline.stats.curves import learning_curves

    params.train.val_bleu_sentences = 4
    params.train.warmstart_steps = 10
    params.train.max_steps = 20
    reports = tmp_path / "reports"
    api.train_warmstart(params, tiny_corpus, tmp_path / "warm", reports / "warmstart")
    for name in ("dense", "token_moe"):
        api.train_model(params, name, tiny_corpus, tmp_path / name, reports / name, tmp_path / "warm")
    index = json.loads((reports / "token_moe" / "val_hyps" / "index.json").read_text())
    assert index["steps"] == [20, 30] and index["warmstart_steps"] == 10
    directions = json.loads((tiny_corpus / "meta.json").read_text())["directions"]
    for step in index["steps"]:
        for direction in directions:
            assert len((reports / "token_moe" / "val_hyps" / f"{step:07d}" / f"{direction}.txt")
                       .read_text(encoding="utf-8").splitlines()) == 4
    # every validation sentence's loss beside them, in corpus order: the pooled mean is val_loss
    valid = load_split(tiny_corpus, "valid")
    curve = [line.split(",") for line in (reports / "token_moe" / "val_curve.csv").read_text().splitlines()[1:]]
    val_loss = {int(row[0]): float(row[1]) for row in curve}
    vocab = api.load_vocab(tiny_corpus)
    for step in index["steps"]:
        losses = json.loads((reports / "token_moe" / "val_hyps" / f"{step:07d}" / "losses.json")
                            .read_text())["directions"]
        assert sorted(losses) == sorted(directions)
        for direction, pairs in valid.items():
            assert losses[direction]["tokens"] == [len(vocab.encode_target(p.target)) for p in pairs]
        nll = sum(sum(v["nll"]) for v in losses.values())
        tokens = sum(sum(v["tokens"]) for v in losses.values())
        assert nll / tokens == pytest.approx(val_loss[step], abs=1e-4)  # the curve counts the warm start too
    study = learning_curves(reports, tiny_corpus, ["dense", "token_moe"], params.compare)
    assert study["setup"]["steps"] == [10, 20, 30]
    # step 10 is the shared warm start: the same translations, no difference
    assert study["gain_vs_dense"]["token_moe"][0]["diff"] == 0
    assert [p["step"] for p in study["bleu"]["dense"]] == [10, 20, 30]
    lead = study["loss"]["lead_vs_dense"]["token_moe"]
    assert [g["step"] for g in lead] == [10, 20, 30] and lead[0]["diff"] == 0
    dense_loss = {p["step"]: p["loss"] for p in study["loss"]["loss"]["dense"]}
    assert dense_loss[30] < dense_loss[10]  # the loss falls as dense trains


def test_resume_drops_validation_translations_past_the_checkpoint(params, tiny_corpus, tmp_path, monkeypatch):
    """Translations saved after the resumed checkpoint (or left half-written) must not reach the curve."""
    params.train.val_bleu_sentences = 2
    params.train.max_steps = 10
    fit(job_for(params, "dense", tiny_corpus, tmp_path, "r"))  # "interrupted" after step 10
    hyps = api.RESUME_ROOT / "dense" / "val_hyps"
    (hyps / "0000030").mkdir()  # from a run that got further before the interruption
    (hyps / ".0000020.tmp-abc").mkdir()  # a folder cut short while being written
    params.train.max_steps = 20
    job = job_for(params, "dense", tiny_corpus, tmp_path, "r")
    assert fit(job)["resumed_from_step"] == 10
    index = json.loads((job.reports_dir / "val_hyps" / "index.json").read_text())
    assert index["steps"] == [10, 20]
    assert sorted(p.name for p in hyps.iterdir()) == ["0000010", "0000020"]


def test_validation_does_not_change_the_training_trajectory(params, tiny_corpus, tmp_path):
    """Validating (loss and greedy translations) more or less often leaves the trained weights as they are,
    with dropout on: the learning curves observe training without perturbing it."""
    params.model.dropout = params.model.attention_dropout = 0.3
    params.train.max_steps = 12
    params.train.val_bleu_sentences = 2
    weights = {}
    for val_every in (3, 12):
        params.train.val_every = val_every
        job = job_for(params, "dense", tiny_corpus, tmp_path, f"every{val_every}")
        fit(job)
        weights[val_every] = {k: v.clone() for k, v in job.model.state_dict().items()}
    assert weights[3].keys() == weights[12].keys()
    assert all(torch.equal(weights[3][k], weights[12][k]) for k in weights[3])


@pytest.mark.parametrize("max_steps", [10, 14])  # 14: the last validation in fit (step 10) is not the last step
def test_rerunning_a_finished_run_republishes_its_weights_and_metrics(params, tiny_corpus, tmp_path, max_steps):
    """`dvc repro -f` of a finished training: the same weights and metrics, no zero-step run with NaN, and
    no step trained again (the seeds stage retrained a finished student's last 125 of 500 steps)."""
    params.train.max_steps = max_steps
    first = api.train_model(params, "dense", tiny_corpus, tmp_path / "m", tmp_path / "r")
    weights = (tmp_path / "m" / "model.safetensors").read_bytes()
    for path in (tmp_path / "m", tmp_path / "r"):  # DVC removes a stage's outputs before it reruns it
        import shutil

        shutil.rmtree(path)
    again = api.train_model(params, "dense", tiny_corpus, tmp_path / "m", tmp_path / "r")
    assert again == first and again["tokens_per_second"] > 0 and again["val_loss"] == again["val_loss"]
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == weights
    assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == first
    assert again["resumed_from_step"] == 0  # the first run's own record: nothing was resumed or retrained
    assert (tmp_path / "r" / "val_curve.csv").read_text().count("\n") == (2 if max_steps == 10 else 3)


def test_a_run_at_its_last_step_without_its_record_starts_over(params, tiny_corpus, tmp_path):
    params.train.max_steps = 10
    job = job_for(params, "dense", tiny_corpus, tmp_path, "a")
    fit(job)
    (job.resume_dir / "final.json").unlink()  # killed after the last step, before the record was written
    metrics = fit(job_for(params, "dense", tiny_corpus, tmp_path, "a"))
    assert metrics["steps"] == 10 and metrics["resumed_from_step"] == 0 and metrics["tokens_per_second"] > 0
