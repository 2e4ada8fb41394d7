"""The regime study's work keys: a model is trained once per setting it depends on, and reused by every
variant that shares it. A key that moves when it should not retrains work that exists (adding
`train.expert_parallel` to params.yaml once orphaned every trained model); a key that stays when it should
move reuses a model trained with other settings, which would put a wrong row in the study's table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipeline.config import load_params, to_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("regime_study", ROOT / "scripts" / "regime_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base():
    return to_dict(load_params(ROOT / "params.yaml"))


def keys(study, base, overrides):
    s = study.Study(Path("/nonexistent"), Path("/nonexistent"))
    p = study.variant_params(base, overrides, "test")
    return {"warm": s.warm_key(p), **{m: s.model_key(p, m) for m in ("dense", "token_moe", "task_moe")}}


def test_moe_only_settings_share_the_warm_start_and_dense(study, base):
    a = keys(study, base, {"model.moe_every": 1})
    b = keys(study, base, {"model.moe_every": 1, "model.num_experts": 16})
    assert a["warm"] == b["warm"] and a["dense"] == b["dense"]
    assert a["token_moe"] != b["token_moe"] and a["task_moe"] != b["task_moe"]


@pytest.mark.parametrize("key, value", [("train.seed", 2), ("train.lr", 0.001), ("model.d_model", 96),
                                        ("data.vocab_size", 4000), ("train.warmstart_steps", 700)])
def test_settings_that_change_the_weights_change_every_key(study, base, key, value):
    a, b = keys(study, base, {}), keys(study, base, {key: value})
    assert all(a[k] != b[k] for k in a), (key, a, b)


def test_steps_after_the_warm_start_do_not_change_the_warm_start(study, base):
    a = keys(study, base, {"train.warmstart_steps": 1500})
    b = keys(study, base, {"train.warmstart_steps": 1500, "train.max_steps": 2000})
    assert a["warm"] == b["warm"] and a["dense"] != b["dense"]


def test_observation_settings_do_not_retrain(study, base):
    assert keys(study, base, {}) == keys(study, base, {"train.val_every": 100, "train.logger": "csv"})


def test_a_setting_added_later_keeps_the_old_keys_at_its_neutral_value(study, base):
    """Keys made before `train.expert_parallel` existed equal those with it at False, not with it True."""
    assert base["train"]["expert_parallel"] is False
    settings = study.Study(Path("/nonexistent"), Path("/nonexistent")).train_settings(
        study.variant_params(base, {}, "test"))
    assert settings == {k: v for k, v in base["train"].items()
                        if k not in study.OBSERVE_ONLY and k != "expert_parallel"}
    on = keys(study, base, {"train.expert_parallel": True})
    assert on["token_moe"] != keys(study, base, {})["token_moe"]


def test_a_translation_made_with_other_evaluate_settings_is_refused(study, tmp_path):
    """Evaluation folders are keyed by their model only: a greedy or truncated translation left by an
    earlier run must not stand in the table as the beam search the study asks for."""
    from pipeline.errors import PipelineError
    from pipeline.io import write_json

    cfg = load_params(ROOT / "params.yaml").evaluate
    same = {"decode": to_dict(cfg.decode), "max_sentences": cfg.max_sentences, "bleu": 9.0}
    write_json(tmp_path / "metrics.json", same)
    study.check_evaluation(tmp_path, cfg)  # the same settings: reused
    for change in ({"decode": {**same["decode"], "beam_size": 1}}, {"max_sentences": 100}):
        write_json(tmp_path / "metrics.json", {**same, **change})
        with pytest.raises(PipelineError, match="metrics.json: translated with"):
            study.check_evaluation(tmp_path, cfg)


def _row(bleu=9.0, diff=0.5):
    ci = {"diff": diff, "low": diff - 0.1, "high": diff + 0.1}
    return {"steps": 2500, "warmstart_steps": 0, "seconds_per_step": 0.5, "test_bleu": {"bleu": bleu},
            "gain_vs_dense": ci, "loss_lead": ci, "loss_lead_equal_time": ci}


def test_the_table_shows_a_variant_that_ran_only_some_models(study):
    """A variant run with `models: [dense, token_moe]` gets its row, with a dash where task_moe would be;
    a full variant's row has no dash."""
    full = {"name": "full", "what": "all", "models": {m: _row(diff=0.3) for m in ("dense", *study.MOES)}}
    part = {"name": "part", "what": "no task_moe", "models": {m: _row(diff=0.7) for m in ("dense", "token_moe")}}
    lines = study.table([full, part]).strip().splitlines()
    assert len(lines) == 4  # header, rule, two rows
    full_row, part_row = lines[2], lines[3]
    assert "–" not in full_row and full_row.count("+0.30 [+0.20, +0.40]") == 2
    cells = [c.strip() for c in part_row.strip("|").split("|")]
    assert cells[0] == "part" and cells[3] == "0.50 / 0.50 / –"
    assert cells[5] == "+0.70 [+0.60, +0.80]" and cells[6] == "–" and cells[8] == "–"
    assert cells[7] == "+0.700 [+0.600, +0.800]" and cells[9] == "+0.700 [+0.600, +0.800]"


def test_earlier_results_come_beside_under_their_folder_name(study, tmp_path):
    """`--beside`: an earlier study's variants join the table with their folder in the name and their
    figures as written; a file that is not a study's results.json is refused with its path."""
    from pipeline.errors import PipelineError
    from pipeline.io import write_json

    earlier = tmp_path / "regime-2026-01-01" / "results.json"
    earlier.parent.mkdir()
    row = {"name": "reference", "what": "old", "models": {m: _row(diff=0.2) for m in ("dense", *study.MOES)}}
    write_json(earlier, {"variants": [row], "beside": []})
    rows = study.beside_rows([earlier])
    assert [r["name"] for r in rows] == ["reference (regime-2026-01-01)"]
    assert rows[0]["models"] == row["models"]
    table = study.table(rows + [{**row, "name": "new"}])
    assert "| reference (regime-2026-01-01) | old |" in table and "| new | old |" in table
    for i, content in enumerate(({"steps": 3}, {"variants": [{"what": "no name", "models": {}}]},
                                 {"variants": [{"name": "no models"}]})):
        bad = tmp_path / f"other{i}.json"
        write_json(bad, content)
        with pytest.raises(PipelineError, match=f"other{i}.json"):
            study.beside_rows([bad])


def _variant(study, name, steps, warm, token, task, models=("dense", *("token_moe", "task_moe"))):
    rows = {m: {**_row(), "steps": steps, "warmstart_steps": warm, "seconds_per_step": 0.6} for m in models}
    for moe, gain in (("token_moe", token), ("task_moe", task)):
        if moe in rows:
            rows[moe]["gain_vs_dense"] = {"diff": gain, "low": gain - 0.1, "high": gain + 0.1}
    return {"name": name, "what": "", "models": rows}


def _frontier_cells(study, variants) -> dict:
    lines = study.frontier(variants).strip().splitlines()[2:]
    return {c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")] for line in lines)}


def test_the_frontier_keeps_the_best_gain_at_each_budget(study):
    """A gain is "best at this budget" only when it is positive and no variant costing as much or less has a
    larger one, whatever the order the variants come in; a shared warm start counts in every budget."""
    upcycled = _variant(study, "upcycled", 1000, 1500, 0.4, 0.4)  # (1500 + 2 x 1000) x 0.6 s = 35 min
    short = _variant(study, "short", 1250, 0, 0.0, 1.2)  # 2 x 1250 x 0.6 s = 25 min
    tie = _variant(study, "tie", 1750, 0, 0.3, 0.4)  # 35 min, as upcycled
    scratch = _variant(study, "scratch", 2500, 0, 0.1, 1.5)  # 50 min
    assert study.training_minutes(upcycled["models"], "token_moe") == pytest.approx(35)
    for order in ([scratch, upcycled, tie, short], [short, tie, upcycled, scratch]):
        cells = _frontier_cells(study, order)
        assert list(cells) == ["short", "upcycled", "tie", "scratch"] or list(cells) == ["short", "tie", "upcycled", "scratch"]
        assert cells["scratch"][0] == "50"
        # token_moe: short's 0.0 is no gain; upcycled's 0.4 beats tie's 0.3 at the same budget
        assert {n: c[2] for n, c in cells.items()} == {"short": "no", "upcycled": "yes", "tie": "no", "scratch": "no"}
        # task_moe: short's 1.2 is cheapest; the 0.4s at 35 min do not beat it; scratch's 1.5 does
        assert {n: c[5] for n, c in cells.items()} == {"short": "yes", "upcycled": "no", "tie": "no", "scratch": "yes"}


def test_a_variant_that_ran_fewer_models_is_charged_like_a_full_one(study):
    """A [dense, token_moe] variant's token_moe budget is dense + token_moe, as in a full variant: leaving
    task_moe out does not make its teacher look cheaper."""
    full = _variant(study, "full", 1500, 0, 0.5, 2.0)
    part = _variant(study, "part", 1500, 0, 0.6, 0.0, models=("dense", "token_moe"))
    cells = _frontier_cells(study, [full, part])
    assert cells["full"][0] == cells["part"][0] == "30"
    assert cells["part"][3:] == ["–", "–", "–"] and cells["part"][2] == "yes" and cells["full"][2] == "no"


def _workspace(tmp_path, base, models=("dense", "token_moe")):
    """A pipeline workspace as `dvc repro` leaves it: dvc.lock with each stage's settings, and outputs."""
    import yaml

    def pick(key):
        node = base
        for part in key.split("."):
            node = node[part]
        return node

    stages = {"prepare": ["data"]}
    for m in models:
        stages[f"train@{m}"] = ["model", f"models.{m}", "train"]
        stages[f"evaluate@{m}"] = ["evaluate.decode", "evaluate.max_sentences", "data.high_resource"]
    lock = {"schema": "2.0", "stages": {s: {"params": {"reports/params.yaml": {k: pick(k) for k in keys}}}
                                        for s, keys in stages.items()}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    for m in models:
        (tmp_path / "models" / m).mkdir(parents=True)
        (tmp_path / "reports" / "train" / m).mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("key, value", [("data.test_size", 1000), ("model.num_experts", 16),
                                        ("train.max_steps", 999), ("models.token_moe.decoder_routing", "target"),
                                        ("evaluate.decode.beam_size", 1)])
def test_a_run_whose_stages_ran_with_other_settings_is_refused(study, base, tmp_path, key, value):
    """`from_run`: every setting a measured stage ran with (dvc.lock) must be the variant's; the error
    names the lock file, the stage and the key."""
    from pipeline.errors import PipelineError

    run = study.RunStudy(_workspace(tmp_path, base))
    same = study.variant_params(base, {}, "test")
    run.check_settings(same, ["dense", "token_moe"])
    run.check_settings(study.variant_params(base, {"train.val_every": 10}, "test"), ["dense", "token_moe"])
    section = key.split(".")[0] if not key.startswith("models.") else "models.token_moe"
    if key.startswith("evaluate."):
        section = ".".join(key.split(".")[:2])
    with pytest.raises(PipelineError, match=rf"dvc.lock: \w+(@\w+)?: {section}: the run's settings differ"):
        run.check_settings(study.variant_params(base, {key: value}, "test"), ["dense", "token_moe"])


def test_a_run_is_read_where_the_stages_write(study, base, tmp_path):
    """The workspace's folders stand in for the study's own; a missing stage or output is named."""
    from pipeline.errors import PipelineError

    run = study.RunStudy(_workspace(tmp_path, base))
    p = study.variant_params(base, {}, "test")
    assert run.model(p, "dense") == tmp_path / "models" / "dense"
    assert run.reports(run.model(p, "token_moe")) == tmp_path / "reports" / "train" / "token_moe"
    with pytest.raises(PipelineError, match="models/task_moe: missing from the run"):
        run.model(p, "task_moe")
    with pytest.raises(PipelineError, match="dvc.lock: train@task_moe: no settings recorded"):
        run.check_settings(p, ["dense", "task_moe"])
    with pytest.raises(PipelineError, match="metrics.json: missing from the run"):
        run.evaluation(p, "dense")
    (tmp_path / "dvc.lock").unlink()
    with pytest.raises(PipelineError, match="dvc.lock: missing"):
        run.check_settings(p, ["dense"])


def test_a_pinned_base_applies_under_every_variant_and_its_own_set_wins(study, base):
    """`base:` keeps a study's settings when params.yaml's defaults move; a variant's `set:` overrides it;
    a bad key is named with where it was written."""
    from pipeline.errors import PipelineError

    pinned = {"data.test_size": 1000, "train.warmstart_steps": 1500, "train.max_steps": 1000}
    p = study.variant_settings(base, pinned, {"name": "v", "set": {"train.max_steps": 2500}}, "f.yaml")
    assert (p.data.test_size, p.train.warmstart_steps, p.train.max_steps) == (1000, 1500, 2500)
    with pytest.raises(PipelineError, match=r"f.yaml: base: train.nope: no such key"):
        study.variant_settings(base, {"train.nope": 1}, {"name": "v"}, "f.yaml")
    with pytest.raises(PipelineError, match=r"f.yaml: v: set: model.nope: no such key"):
        study.variant_settings(base, {}, {"name": "v", "set": {"model.nope": 1}}, "f.yaml")
