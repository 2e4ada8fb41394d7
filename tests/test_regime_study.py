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


def test_the_frontier_keeps_the_best_gain_at_each_budget(study):
    """Rows come cheapest first; a gain is on the frontier only when no cheaper variant has a larger one,
    and a warm start shared by the three models counts once in the budget."""
    def variant(name, steps, warm, token, task):
        rows = {m: {**_row(), "steps": steps, "warmstart_steps": warm, "seconds_per_step": 0.6} for m in
                ("dense", *study.MOES)}
        rows["token_moe"]["gain_vs_dense"] = {"diff": token, "low": token - 0.1, "high": token + 0.1}
        rows["task_moe"]["gain_vs_dense"] = {"diff": task, "low": task - 0.1, "high": task + 0.1}
        return {"name": name, "what": "", "models": rows}

    upcycled = variant("upcycled", 1000, 1500, 0.4, 0.4)  # (1500 + 3 x 1000) x 0.6 s = 45 min
    scratch = variant("scratch", 2500, 0, 0.1, 1.5)  # 3 x 2500 x 0.6 s = 75 min
    short = variant("short", 1500, 0, 0.0, 1.2)  # 45 min too, listed after upcycled (stable order)
    assert study.training_minutes(upcycled["models"]) == pytest.approx(45)
    assert study.training_minutes(scratch["models"]) == pytest.approx(75)
    lines = study.frontier([scratch, upcycled, short]).strip().splitlines()[2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [c[0] for c in cells] == ["upcycled", "short", "scratch"]
    assert [c[3] for c in cells] == ["yes", "no", "no"]  # the teacher's best stays the cheapest one's
    assert [c[5] for c in cells] == ["yes", "yes", "yes"]
    assert cells[2][1] == "75 (dense, token, task)"


def test_a_study_pins_its_base_settings_and_a_run_must_match_them(study, base, tmp_path):
    """`base:` applies under every variant's `set:`; a `from_run` workspace whose recorded settings differ
    from the variant's, or that lacks an output, is refused with the file it read."""
    from omegaconf import OmegaConf

    from pipeline.errors import PipelineError

    pinned = study.variant_params(base, {"data.test_size": 1000, "train.warmstart_steps": 1500}, "test")
    assert pinned.data.test_size == 1000 and pinned.train.warmstart_steps == 1500
    run = study.RunStudy(tmp_path)
    with pytest.raises(PipelineError, match="reports/params.yaml: missing"):
        run.check_settings(pinned)
    (tmp_path / "reports").mkdir()
    OmegaConf.save(OmegaConf.create(base), tmp_path / "reports" / "params.yaml")
    with pytest.raises(PipelineError, match="params.yaml: data: the run's settings differ"):
        run.check_settings(pinned)
    run.check_settings(study.variant_params(base, {"train.val_every": 10}, "test"))  # observation only
    with pytest.raises(PipelineError, match="models/dense: missing from the run"):
        run.model(pinned, "dense")
