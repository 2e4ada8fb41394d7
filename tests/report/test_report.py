"""report: renders from fixture inputs, says "not available" for missing ones, fails without compare.json.

The first screen is tested as data in test_verdicts.py and as a whole in test_golden.py; these tests check
what each section shows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.stats.compare import compare_systems
from pipeline.config import CompareConfig
from pipeline.errors import PipelineError
from pipeline.evaluate import direction_groups, score_direction
from pipeline.report.markdown import json_tables
from pipeline.report.verdicts import format_p
from pipeline.roles import Roles
from pipeline.report.document import write_report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "report"
DIRECTIONS = ["en-de", "en-it", "de-en", "it-en"]


def synthetic_compare(shares: dict[str, float], n: int = 40, roles: Roles = Roles()) -> tuple[dict, dict, dict]:
    """Systems that copy the reference on a nested share of sentences (BLEU = 100 * share)."""
    rng = np.random.default_rng(0)
    refs = {d: [" ".join(f"{d[:2]}{i}w{j}" for j in range(6)) for i in range(n)] for d in DIRECTIONS}
    hard = {d: rng.random(n) for d in DIRECTIONS}
    hyps = {s: {d: [r if hard[d][i] < q else f"x{i} y z" for i, r in enumerate(refs[d])]
                for d in DIRECTIONS} for s, q in shares.items()}
    result = compare_systems(hyps, refs, direction_groups(DIRECTIONS, "en", ["de"]),
                             CompareConfig(bootstrap_resamples=100), roles)
    result["setup"].update(pivot="en", high_resource=["de"], wall_seconds=1.0)
    return result, hyps, refs


def write_inputs(root: Path, shares: dict[str, float], with_fixtures: bool = True, roles: Roles = Roles()) -> Path:
    if with_fixtures:
        shutil.copytree(FIXTURES, root, dirs_exist_ok=True)
    result, hyps, refs = synthetic_compare(shares, roles=roles)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    (root / "reports" / "compare.json").write_text(json.dumps(result))
    if with_fixtures:
        for system, by_direction in hyps.items():
            metrics = {"directions": {d: score_direction(h, refs[d], d[-2:])
                                      for d, h in by_direction.items()}, "wall_seconds": 3.0}
            (root / "reports" / "evaluate" / system).mkdir(parents=True)
            (root / "reports" / "evaluate" / system / "metrics.json").write_text(json.dumps(metrics))
    return root


def render(root: Path, **kwargs) -> str:
    return write_report(root / "reports", root / "models", root / "corpus", root / "reports" / "report.md",
                        root / "reports" / "plots", commit="abc123", lock_path=root / "dvc.lock", **kwargs)


SHARES = {"dense": 0.3, "token_moe": 0.6, "task_moe": 0.7, "task_moe_sub": 0.7, "student": 0.4}


def section(text: str, heading: str) -> str:
    """The body of the section whose heading starts with `heading` (up to the next section of its level)."""
    level = heading.split(" ")[0]
    body = text.split(heading, 1)[1]
    return body.split(f"\n{level} ", 1)[0]


def test_full_report_opens_with_the_verdicts_and_has_every_section(tmp_path):
    root = write_inputs(tmp_path, SHARES)
    text = render(root, params={"compare": {"seed": 12345}})
    assert (root / "reports" / "report.md").read_text() == text
    # the first screen: title, then the verdict table and the answer
    head = text.split("\n## ")[1]
    assert head.startswith("Answer\n\n| question | paper | this run [95% CI] | interval covers | verdict |")
    assert "| Does the teacher (token_moe) beat dense? (BLEU) | +2.3 (Table 2; +2.6 in Table 1) | +" in head
    assert "paired bootstrap over test sentences only" not in head.split("\n\n**")[0]  # in the note below
    assert "it covers the sampling of the test set, not training variance" in head
    for heading in ("## BLEU per model", "### Per direction: BLEU / chrF", "## Gains over dense",
                    "### Fractions per direction", "## The paper's numbers beside ours", "## Serving cost",
                    "## Extraction check", "## Training", "## Distillation", "## Figures", "## Provenance"):
        assert heading in text
    # what the student learned from (models/student/meta.json keeps data/distill/meta.json)
    gains = section(text, "## Gains over dense")
    assert "The distilled student scores 42.0 BLEU, +7.63 against dense (95% CI [+4.76, +11.88])." in gains
    assert ("The student trained 500 steps more after its teacher's 1,500, which dense did not, so its "
            "difference to dense mixes distillation with longer training, and is no evidence for "
            "distillation by itself; over its own last 500 steps dense's greedy validation BLEU (the "
            "learning-curve subset) moved +3.33.") in gains or "Against its equal-steps control" not in gains
    assert "| en-de | 120 | 120 | 0 | 6.25 |" in text and "| **average** |  |  |  | 9.38 |" in text
    assert "(`nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1`)" in text
    assert "| distill_data (the teacher translates) | 12 |" in text
    assert ("Method: sequence-level (the teacher's translations as targets; the paper's method); the "
            "student starts from the teacher's non-expert weights (former MoE layers: expert_mean); its lr "
            "schedule continues from the teacher's step 1,500, and trains 500 steps.") in text
    assert "| task_moe | task-level MoE (its sub-networks are extracted) | token/target |" in text
    paper = section(text, "## The paper's numbers beside ours")
    frac = json.loads((root / "reports" / "compare.json").read_text())["fractions"]["student_vs_task_moe"]
    avg = frac["groups"]["avg"]
    assert (f"| student fraction, task-MoE denominator (the paper prints 32.25%) | n/a | 32.26% | "
            f"{100 * avg['value']:.0f}% [{100 * avg['low']:.0f}%, {100 * avg['high']:.0f}%]") in paper
    assert "0123456789abcdef0123456789abcdef.dir" in text and "`abc123`" in text
    assert "seed: 12345" in text and "nrefs:1|case:mixed" in text
    assert "max_abs_diff" in text  # extract.json tasks as a table
    # serving: memory from the sweep, the ratio to the teacher, the model's BLEU
    assert "| token_moe | pytorch | 450 | 15.0 | 4 | 3.10M | 3.10M | n/a | 360 | 1.00x | 60.88 |" in text
    # the learning-curve study (fixture: pipeline.stats.curves.learning_curves on synthetic translations)
    curves = section(text, "## Learning curves")
    assert "Steps up to 500 are the shared dense warm start" in curves
    assert "| 1,500 | 23.33 [15.83, 31.27] |" in curves and "| +10.83 [+5.83, +17.10] * |" in curves
    assert ("token_moe − dense at step 1,500 is +5.00 BLEU (95% CI [-9.17, +17.54]); its interval is above 0 "
            "at no validation step up to 1,500.") in curves
    assert "task_moe − dense at step 1,500 is +10.83 BLEU" in curves and "first excludes 0 at step 750" in curves
    pngs = sorted(p.name for p in (root / "reports" / "plots").iterdir())
    assert pngs == ["expert_usage_task_moe.png", "expert_usage_token_moe.png", "learning_curves.png",
                    "quality_vs_cost.png", "throughput_vs_batch.png", "training_curves.png"]
    assert "![Quality vs serving cost](plots/quality_vs_cost.png)" in text
    assert all((root / "reports" / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    # provenance: the CPU, torch's capability and every installed package
    provenance = section(text, "## Provenance")
    assert "torch CPU capability" in provenance and "pytest==" in provenance


def test_a_teacher_chosen_by_params_is_named_as_such_in_every_section(tmp_path):
    """distill.teacher: task_moe (compare.json's roles): the verdicts, the serving ratio and the curves all
    name task_moe the teacher; token_moe is nowhere called one."""
    root = write_inputs(tmp_path, {**SHARES, "task_moe": 0.65}, roles=Roles(teacher="task_moe"))
    bench = json.loads((root / "reports" / "benchmark.json").read_text())
    bench["models"]["task_moe"] = {**bench["models"]["token_moe"], "peak_tokens_per_second": 600.0}
    bench["reference"] = "task_moe"
    (root / "reports" / "benchmark.json").write_text(json.dumps(bench))
    text = render(root)
    answer = section(text, "## Answer")
    assert "| Does the teacher (task_moe) beat dense? (BLEU) |" in answer
    assert "How fast do the sub-networks serve, against task_moe?" in answer
    assert "tokens/s vs task_moe" in section(text, "## Serving cost")
    assert "| student fraction" in text and "teacher (token_moe)" not in text
    assert "| token_moe | token-level" not in text  # token_moe plays no role: its name stands alone
    roles_row = [line for line in section(text, "## BLEU per model").splitlines() if line.startswith("| task_moe |")]
    assert "the distillation teacher" in roles_row[0]


def test_report_renders_with_only_compare_json(tmp_path):
    root = write_inputs(tmp_path, {"dense": 0.3, "token_moe": 0.6}, with_fixtures=False)
    text = render(root)
    assert "| How fast do the sub-networks serve, against token_moe? |" in text and "not measured" in text
    assert "## Serving cost\n\nnot available" in text and "## Training\n\nnot available" in text
    assert "not available (no dvc.lock)" in text
    assert "Fractions of gains preserved: not available" in text
    assert "## Learning curves\n\nnot available (reports/curves.json missing)" in text
    assert list((root / "reports" / "plots").iterdir()) == []


def test_undefined_fractions_are_explained(tmp_path):
    root = write_inputs(tmp_path, {"dense": 0.5, "token_moe": 0.53, "task_moe": 0.7, "student": 0.5},
                        with_fixtures=False)
    text = render(root)
    answer = section(text, "## Answer")
    row = next(line for line in answer.splitlines() if line.startswith("| Share of the teacher's gain"))
    assert row.endswith("| n/a | test sentences, one run | undefined |")
    assert "- Share of the teacher's gain that distillation keeps: token_moe's gain over dense is not significant" \
        in answer
    gains = section(text, "## Gains over dense")
    assert "- student_vs_teacher: token_moe's gain over dense is not significant" in gains
    # every direction undefined for every fraction: one line, not a table of "undefined"
    per_direction = section(text, "### Fractions per direction")
    if "| direction |" not in per_direction:
        assert "Undefined in every direction and for every fraction" in per_direction


def test_missing_compare_json_fails_clearly(tmp_path, capsys, repo_root):
    with pytest.raises(PipelineError, match="compare.json: file not found"):
        render(tmp_path)
    from stages.report import main

    status = main(["--params", str(repo_root / "params.yaml"), "--reports", str(tmp_path / "reports"),
                   "--models-dir", str(tmp_path / "models"), "--corpus", str(tmp_path / "corpus"),
                   "--out", str(tmp_path / "report.md"), "--plots", str(tmp_path / "plots")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "compare.json" in err
    assert not (tmp_path / "report.md").exists()


def test_json_tables_turn_records_into_rows():
    text = json_tables({"passed": True, "tasks": {"de": {"diff": 1e-6}, "fr": {"diff": 2e-6}}})
    assert "| passed | True |" in text and "| de | 1e-06 |" in text
    assert json_tables(None) == "not available"


def test_no_budget_when_the_validation_line_reaches_a_zero_width_test_interval(tmp_path):
    root = write_inputs(tmp_path, {"dense": 0.5, "token_moe": 0.5, "task_moe": 0.7, "student": 0.5,
                                   "task_moe_sub": 0.7})
    text = render(root)
    row = next(line for line in section(text, "## Answer").splitlines() if line.startswith("| Does the teacher"))
    assert "+0.00 [+0.00, +0.00]" in row and "not shown: the interval includes 0" in row
    # the fixture's validation line (+8 BLEU per 1000 steps, intercept -7.75) meets a zero-width test
    # interval before its last step: no budget to extrapolate
    assert "test interval's half-width" not in text


def test_budget_from_the_validation_line_and_the_test_interval(tmp_path):
    from pipeline.report.inputs import Inputs
    from pipeline.report.sections import _test_budget_words

    study = json.loads((FIXTURES / "reports" / "curves.json").read_text())
    inputs = Inputs(compare={"systems": {}}, study=study,
                    train={"token_moe": {"wall_seconds": 1800.0, "steps": 1000}})
    words = _test_budget_words(inputs, {"low": -10.0, "high": 10.0})  # half-width 10 BLEU
    # step = (10 + 7.75) / 0.008 = 2,219; 1.8 s per step -> 1.1 h
    assert "half-width (10.00 BLEU) at about step 2,219 (~1.1 h of training per model" in words
    study["extrapolation"]["token_moe"]["significant"]["slope_per_1000_steps"] = -1.0
    # never significant on validation: the learning-curve sentence already says the gain does not grow
    assert study["first_significant_step"]["token_moe"] is None
    assert _test_budget_words(inputs, {"low": -1.0, "high": 1.0}) == ""
    study["first_significant_step"]["token_moe"] = 750  # significant once, yet not on the test set
    assert "does not grow after the warm start" in _test_budget_words(inputs, {"low": -1.0, "high": 1.0})


def test_the_curves_say_once_that_the_validation_gain_does_not_grow(tmp_path):
    root = write_inputs(tmp_path, {"dense": 0.5, "token_moe": 0.5, "task_moe": 0.7, "student": 0.5,
                                   "task_moe_sub": 0.7})
    study = json.loads((root / "reports" / "curves.json").read_text())
    study["extrapolation"]["token_moe"]["significant"].update(slope_per_1000_steps=-1.0,
                                                              step_reaching_target=None)
    (root / "reports" / "curves.json").write_text(json.dumps(study))
    curves = section(render(root), "## Learning curves")
    assert curves.count("does not grow") == 1 and "no budget at which it would be significant" in curves


def test_wall_time_table_covers_every_costly_stage_and_sums_them(tmp_path):
    root = write_inputs(tmp_path, SHARES)
    extract = json.loads((root / "reports" / "extract.json").read_text())
    (root / "reports" / "extract.json").write_text(json.dumps({**extract, "wall_seconds": 4.0}))
    student = root / "models" / "student"
    student.mkdir(parents=True, exist_ok=True)
    (student / "meta.json").write_text(json.dumps({"distill_data": {"wall_seconds": 100.0}}))
    table = render(root).split("### Wall time per stage (seconds)")[1].split("###")[0]
    rows = dict(line.strip("|").split("|")[:2] for line in table.strip().splitlines()[2:])
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["distill_data (the teacher translates)"] == "100"
    assert rows["extract"] == "4" and rows["benchmark"] == "12"  # 12.5 rounds to even
    # three trainings of 30.5 s, five evaluations of 3 s, compare 1, curves 2: everything recorded is summed
    assert rows["total of the stages above"] == f"{3 * 30.5 + 100 + 4 + 5 * 3 + 1 + 2 + 12.5:.0f}"


def test_wall_time_table_says_n_a_where_a_stage_recorded_no_time(tmp_path):
    root = write_inputs(tmp_path, SHARES, with_fixtures=False)
    table = render(root).split("### Wall time per stage (seconds)")[1].split("###")[0]
    assert "| distill_data (the teacher translates) | n/a |" in table and "| benchmark | n/a |" in table
    assert "| total of the stages above | 1 |" in table  # only compare recorded its time


def test_word_level_student_on_the_references_is_described_as_such(tmp_path):
    root = write_inputs(tmp_path, SHARES)
    path = root / "models" / "student" / "meta.json"
    meta = json.loads(path.read_text())
    meta["distill"].update(sequence_level=False,
                           word_level={"enabled": True, "weight": 0.5, "temperature": 2.0})
    meta["distill_data"] = {"teacher": "models/token_moe", "sequence_level": False, "directions": {
        "en-de": {"pairs": 120, "teacher": 120, "empty_kept_reference": 0}}}
    path.write_text(json.dumps(meta))
    text = render(root)
    assert "It was distilled at the word level, on the references" in section(text, "## Gains over dense")
    assert "BLEU against the references they replaced" not in text  # no translations to score
    assert ("Method: word-level (loss = 0.5 x cross-entropy + 0.5 x KL to the teacher's token "
            "distributions, temperature 2)") in text
    assert "The student trained on the references" in text
    assert "| distill_data (references copied) |" in text


@pytest.mark.parametrize("change, says", [
    # both kinds of KD: the translations and the token distributions
    ({"word_level": {"enabled": True, "weight": 0.5, "temperature": 1.0}},
     "translations of the training sources and its token distributions; those translations score 9.38"),
    # a restarted schedule still trains after the teacher: its last step comes from the teacher's record
    # (token_moe trained 20 steps after curves.json's 500-step warm start)
    ({"lr_schedule": "restart", "max_steps": None},
     "The student trained 500 steps more after its teacher's 520, which dense did not"),
])
def test_student_sentences_follow_its_recipe(tmp_path, change, says):
    root = write_inputs(tmp_path, SHARES)
    path = root / "models" / "student" / "meta.json"
    meta = json.loads(path.read_text())
    meta["distill"].update(change)
    if change.get("lr_schedule") == "restart":
        meta["schedule_offset"] = 0
    path.write_text(json.dumps(meta))
    text = render(root)
    assert says in section(text, "## Gains over dense")
    # the steps it trained, from its metrics.json, whatever distill.max_steps says
    assert "and trains 500 steps." in text


def test_a_fresh_student_is_not_said_to_train_after_its_teacher(tmp_path):
    root = write_inputs(tmp_path, SHARES)
    path = root / "models" / "student" / "meta.json"
    meta = json.loads(path.read_text())
    meta["distill"]["student_init"], meta["schedule_offset"] = "fresh", 0
    path.write_text(json.dumps(meta))
    text = render(root)
    assert "steps more after its teacher" not in text
    assert "the student starts from fresh weights; its lr schedule starts at step 0" in text


@pytest.mark.parametrize("control_share, verdict", [
    (0.5, "training dense as long without the teacher does significantly better than the student."),
    (0.4, "the student is not distinguishable from dense trained as long."),
    (0.3, "what the student takes from the teacher adds a significant gain over training dense as long."),
])
def test_student_is_judged_against_its_equal_steps_control(tmp_path, control_share, verdict):
    root = write_inputs(tmp_path, {**SHARES, "dense_long": control_share})
    text = render(root)
    answer = section(text, "## Gains over dense")
    compare = json.loads((root / "reports" / "compare.json").read_text())
    avg = compare["vs_control"]["student"]["groups"]["avg"]
    bleu = compare["systems"]["dense_long"]["groups"]["avg"]["bleu"]
    assert ("The student trained 500 steps more after its teacher's 1,500, which dense did not, so its "
            "difference to dense mixes distillation with longer training. Its equal-steps control, "
            "dense_long (the dense baseline trained the student's steps too, on the same lr schedule and the "
            f"references, without the teacher), scores {bleu:.1f} BLEU, and the student is "
            f"{avg['diff']:+.2f} against it (95% CI [{avg['low']:+.2f}, {avg['high']:+.2f}], "
            f"p {format_p(avg['p_value'], compare['setup']['p_value_floor'])}): {verdict}") in answer
    assert "no evidence for distillation by itself" not in answer  # the control settles it
    assert f"| student − dense_long | {avg['diff']:+.2f} [{avg['low']:+.2f}, {avg['high']:+.2f}] |" in answer
    assert "Against its equal-steps control, dense_long (the dense baseline trained the student's steps" in text


def _write_control_meta(root, base, offset):
    (root / "models" / "dense_long").mkdir(parents=True, exist_ok=True)
    meta = {"control": {"of": "student", "base": base, "student_init": "teacher" if base else "fresh",
                        "lr_schedule": "continue", "max_steps": 500}, "schedule_offset": offset}
    (root / "models" / "dense_long" / "meta.json").write_text(json.dumps(meta))


def test_a_fresh_students_control_is_a_fresh_dense_model(tmp_path):
    root = write_inputs(tmp_path, {**SHARES, "dense_long": 0.4})
    path = root / "models" / "student" / "meta.json"
    meta = json.loads(path.read_text())
    meta["distill"]["student_init"], meta["schedule_offset"] = "fresh", 0
    path.write_text(json.dumps(meta))
    _write_control_meta(root, None, 0)
    text = render(root)
    answer = section(text, "## Gains over dense")
    assert "steps more after its teacher" not in answer
    what = "(a fresh dense model trained as many steps as the student on the references, without the teacher"
    assert f"Its equal-steps control, dense_long {what}), scores" in answer
    assert f"Against its equal-steps control, dense_long {what}; stage control)" in text  # the gains section


def test_control_on_another_schedule_step_is_named(tmp_path):
    """keep_checkpoint best_val_loss: each continues from its own base's kept step, which can differ."""
    root = write_inputs(tmp_path, {**SHARES, "dense_long": 0.4})
    _write_control_meta(root, "models/dense", 1_250)
    answer = section(render(root), "## Gains over dense")
    assert "its lr schedule from step 1,250 and the student's from 1,500)" in answer
    assert "on the same lr schedule" not in answer


def _seed_compare(root, shares_by_seed: dict[int, dict[str, float]]) -> dict:
    """compare.json with `across_seeds`: the main seed's systems (seed 1) and the others' MoEs."""
    rng = np.random.default_rng(0)
    n = 40
    refs = {d: [" ".join(f"{d[:2]}{i}w{j}" for j in range(6)) for i in range(n)] for d in DIRECTIONS}
    hard = {d: rng.random(n) for d in DIRECTIONS}
    make = lambda shares: {s: {d: [r if hard[d][i] < q else f"x{i} y z" for i, r in enumerate(refs[d])]  # noqa
                               for d in DIRECTIONS} for s, q in shares.items()}
    main = make(shares_by_seed.pop(1))
    result = compare_systems(main, refs, direction_groups(DIRECTIONS, "en", ["de"]),
                             CompareConfig(bootstrap_resamples=100),
                             seed_hyps={s: make(shares) for s, shares in shares_by_seed.items()}, main_seed=1)
    result["setup"].update(pivot="en", high_resource=["de"], wall_seconds=1.0)
    (root / "reports" / "compare.json").write_text(json.dumps(result))
    (root / "reports" / "seeds").mkdir(parents=True, exist_ok=True)
    times = {"dense": {"bleu": 1.0, "train_seconds": 100.0, "evaluate_seconds": 10.0},
             "token_moe": {"bleu": 1.0, "train_seconds": 200.0, "evaluate_seconds": 20.0},
             "warmstart_seconds": 300.0}
    (root / "reports" / "seeds" / "index.json").write_text(json.dumps(
        {"main_seed": 1, "extra": sorted(shares_by_seed), "models": ["dense", "token_moe"],
         "seeds": {str(s): times for s in shares_by_seed}}))
    return result


def test_one_seed_says_what_the_intervals_do_not_cover(tmp_path):
    root = write_inputs(tmp_path, SHARES)
    text = render(root)
    seeds_section = section(text, "## Across training seeds")
    assert "One training seed (train.seed)." in seeds_section and "seeds.extra=[2,3]" in seeds_section
    assert "- Over " not in seeds_section  # no seed sentence without seeds
    assert not (root / "reports" / "plots" / "seed_gains.png").exists()
    # with the seeds stage's empty index: which seed, and which models more seeds would retrain
    (root / "reports" / "seeds").mkdir()
    (root / "reports" / "seeds" / "index.json").write_text(json.dumps(
        {"main_seed": 1, "extra": [], "models": ["dense", "token_moe", "student"], "seeds": {}}))
    seeds_section = section(render(root), "## Across training seeds")
    assert "One training seed (train.seed 1)." in seeds_section
    assert "retrains the warm start and seeds.models (dense, token_moe, student) with more seeds" in seeds_section


@pytest.mark.parametrize("seed2, seed3, verdict", [
    (0.55, 0.6, "the gain holds across seeds"),
    (0.3, 0.35, "across seeds it is not distinguishable from 0"),
])
def test_more_seeds_are_tabled_plotted_and_judged(tmp_path, seed2, seed3, verdict):
    """SHARES has token_moe 0.6 over dense 0.3: seed 1 gains ~+30; seeds 2 and 3 as parametrized."""
    root = write_inputs(tmp_path, SHARES)
    result = _seed_compare(root, {1: SHARES, 2: {"dense": 0.3, "token_moe": seed2, "task_moe": 0.7},
                                  3: {"dense": 0.35, "token_moe": seed3, "task_moe": 0.75}})
    text = render(root)
    teacher = result["across_seeds"]["gains"]["token_moe"]
    per = ", ".join(f"{d:+.2f}" for d in teacher["per_seed"])
    sentence = (f"Over 3 training seeds (1, 2, 3) token_moe's gain over dense is {per} (a significant gain "
                f"in {teacher['significant_in']} of 3); mean {teacher['mean']:+.2f}, 95% t-interval over seeds "
                f"[{teacher['seed_low']:+.2f}, {teacher['seed_high']:+.2f}], seed-to-seed SD "
                f"{teacher['seed_sd']:.2f}; over test sentences [{teacher['sentence_low']:+.2f}, "
                f"{teacher['sentence_high']:+.2f}]: {verdict}.")
    seeds_section = section(text, "## Across training seeds")
    assert sentence in seeds_section
    rows = [line for line in seeds_section.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| seed | dense BLEU | token_moe BLEU | token_moe − dense [CI] | task_moe BLEU")
    assert rows[1].startswith("| 1 (main run) |") and rows[2].startswith("| 2 |") and rows[3].startswith("| 3 |")
    one = result["vs_baseline"]["token_moe"]["groups"]["avg"]
    assert f"{one['diff']:+.2f} [{one['low']:+.2f}, {one['high']:+.2f}]" in rows[1]
    cells = [cell.strip() for cell in rows[-1].strip("|").split("|")]
    assert cells[3] == f"[{teacher['seed_low']:+.2f}, {teacher['seed_high']:+.2f}] ({teacher['seed_sd']:.2f})"
    assert cells[0] == "95% t-interval over seeds (SD)"
    assert (root / "reports" / "plots" / "seed_gains.png").stat().st_size > 1000
    assert "| seeds (2 extra: train and evaluate) | 1,260 |" in text  # 2 x (300 + 110 + 220)


@pytest.mark.parametrize("seeds, words", [
    # three seeds that agree (SD 0) on a gain the test set cannot tell from 0: no claim
    ({1: {"dense": 0.3, "token_moe": 0.32}, 2: {"dense": 0.3, "token_moe": 0.32},
      3: {"dense": 0.3, "token_moe": 0.32}}, ["across seeds it is not distinguishable from 0"]),
    # two seeds, both significant and close: one degree of freedom says little, whatever the interval
    ({1: {"dense": 0.3, "token_moe": 0.6}, 2: {"dense": 0.3, "token_moe": 0.6}},
     ["(a significant gain in 2 of 2)",
      "two seeds are too few to judge the spread over seeds (the t-interval has one degree of freedom)"]),
    # significant losses are counted as such
    ({1: {"dense": 0.6, "token_moe": 0.3}, 2: {"dense": 0.6, "token_moe": 0.31},
      3: {"dense": 0.6, "token_moe": 0.3}}, ["(a significant gain in 0 of 3, a significant loss in 3)",
                                              ": a loss across seeds"]),
])
def test_the_seed_verdict_needs_both_intervals(tmp_path, seeds, words):
    root = write_inputs(tmp_path, SHARES)
    result = _seed_compare(root, seeds)
    seeds_section = section(render(root), "## Across training seeds")
    sentence = next(line for line in seeds_section.splitlines() if line.startswith("- Over ") and "token_moe" in line)
    assert all(w in sentence for w in words), sentence
    if "0.32" in str(seeds):
        gain = result["across_seeds"]["gains"]["token_moe"]
        assert gain["seed_sd"] == 0 and gain["seed_low"] > 0 and gain["sentence_low"] <= 0


def test_the_students_control_is_judged_across_seeds(tmp_path):
    """Each seed's student loses to its own dense_long although it beats its own dense: the answer and the
    seeds section say so, and the table and plot carry the difference."""
    root = write_inputs(tmp_path, SHARES)
    shares = {"dense": 0.3, "token_moe": 0.35, "student": 0.4, "dense_long": 0.6}
    result = _seed_compare(root, {1: shares, 2: {**shares, "dense_long": 0.62}, 3: {**shares, "student": 0.42}})
    text = render(root)
    control = result["across_seeds"]["vs_control"]["student"]
    assert control["significant_loss_in"] == 3 and control["seed_high"] < 0
    seeds_section = section(text, "## Across training seeds")
    per = ", ".join(f"{d:+.2f}" for d in control["per_seed"])
    assert f"Over 3 training seeds (1, 2, 3) student against dense_long is {per} (a significant gain in 0 of 3, " \
           "a significant loss in 3)" in seeds_section
    assert ": student is behind dense_long across seeds." in seeds_section
    answer = section(text, "## Answer")
    assert "rest on 3 training seeds (1, 2, 3)" in answer
    rows = [line for line in seeds_section.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[-1] == "student − dense_long [CI]" and "student − dense [CI]" in header
    main = result["vs_control"]["student"]["groups"]["avg"]
    assert rows[1].rstrip(" |").endswith(f"{main['diff']:+.2f} [{main['low']:+.2f}, {main['high']:+.2f}] *")
    assert "and student against its own seed's dense_long" in seeds_section
    assert "- Over 3 training seeds (1, 2, 3) student against dense_long is" in seeds_section
    assert (root / "reports" / "plots" / "seed_gains.png").stat().st_size > 1000


def test_the_seed_plot_draws_every_difference_per_seed_and_their_mean(tmp_path, monkeypatch):
    from pipeline.report import plots

    root = write_inputs(tmp_path, SHARES)
    shares = {"dense": 0.3, "token_moe": 0.35, "student": 0.4, "dense_long": 0.6}
    seeds = _seed_compare(root, {1: shares, 2: {**shares, "dense_long": 0.62}})["across_seeds"]
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig) is not None)
    assert plots.seed_gains(seeds, tmp_path / "seed_gains.png")
    ax = drawn["fig"].axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["token_moe − dense", "student − dense", "dense_long − dense", "student − dense_long"]
    control = seeds["vs_control"]["student"]
    points = [line for line in ax.get_lines() if line.get_marker() in ("o", "s")]  # not the caps
    assert len(points) == 4
    assert list(points[-1].get_ydata()) == pytest.approx([*control["per_seed"], control["mean"]])


def test_validation_loss_lead_in_the_answer_the_curves_section_and_a_figure(tmp_path):
    """curves.json with the loss study (pipeline.loss_curves on synthetic sentence losses): token_moe's
    lead grows after the 500-step warm start; the report gives it in nats, in dense steps, the
    extrapolated budget at dense's BLEU-per-nat, and the rate the test gain implies."""
    from pipeline.stats.loss_curves import loss_curves

    root = write_inputs(tmp_path, SHARES)
    study = json.loads((root / "reports" / "curves.json").read_text())
    steps = study["setup"]["steps"]  # 250 ... 1500, warm start 500
    rng = np.random.default_rng(0)
    tokens = {d: rng.integers(5, 30, size=50).astype(float) for d in ("en-de", "de-en")}

    def sentences(per_token):
        return {d: (t * per_token, t) for d, t in tokens.items()}

    dense = {s: 5.0 - s / 1000 for s in steps}  # falls 0.25 per 250 steps
    lead = {s: max(0.0, (s - 500) / 10000) for s in steps}  # +0.1 per 1000 steps after the warm start
    losses = {"dense": {s: sentences(dense[s]) for s in steps},
              "token_moe": {s: sentences(dense[s] - lead[s]) for s in steps}}
    study["loss"] = loss_curves(losses, steps, 500, CompareConfig(bootstrap_resamples=50), study["bleu"])
    (root / "reports" / "curves.json").write_text(json.dumps(study))
    text = render(root)
    answer = section(text, "## Learning curves")
    assert ("On the validation loss (all 100 validation sentences; nats per target token), token_moe "
            "leads dense by 0.100 at step 1,500 (lead 95% CI [+0.100, +0.100]), a significant lead at every "
            "validation step from 750 on: about 100 steps of dense's own training at its current rate, a "
            "1.10x speed-up in steps.") in answer
    assert "The lead grows by +0.100 per 1000 steps." in answer
    per_nat = study["loss"]["extrapolation"]["token_moe"]["bleu_per_nat"]  # from the fixture's BLEU
    assert f"({per_nat:.1f} greedy validation BLEU per nat)" in answer
    assert "an extrapolation, not a measurement" in answer
    assert "### Validation loss: the lead in nats and in dense steps" in text
    assert "| 1,500 | 3.500 | 3.400 | +0.100 [+0.100, +0.100] * | 100 |" in text
    assert "loss_lead.png" in sorted(p.name for p in (root / "reports" / "plots").iterdir())


def test_a_significant_but_small_teacher_gain_is_called_too_small_to_divide_by(tmp_path):
    root = write_inputs(tmp_path, SHARES)
    compare = json.loads((root / "reports" / "compare.json").read_text())
    compare["vs_baseline"]["token_moe"]["groups"]["avg"].update(diff=0.15, low=0.04, high=0.25,
                                                               significant=True)
    compare["setup"]["min_reference_gain"] = 0.5
    (root / "reports" / "compare.json").write_text(json.dumps(compare))
    row = next(line for line in section(render(root), "## Answer").splitlines()
               if line.startswith("| Does the teacher"))
    assert "| +0.15 [+0.04, +0.25] | test sentences, one run | yes, but under the 0.5 BLEU a fraction needs |" in row


def test_the_serving_table_shows_engine_rows_with_their_bleu_against_pytorch(tmp_path):
    """A CTranslate2 row sits in the serving table with its own BLEU, and the note under it says which
    sentences that BLEU covers and how it compares with PyTorch's on them; skipped models say why."""
    root = write_inputs(tmp_path, SHARES)
    bench = json.loads((root / "reports" / "benchmark.json").read_text())
    row = {**bench["models"]["dense"], "engine": "ctranslate2", "base_model": "dense", "quantization": "int8",
           "peak_tokens_per_second": 1800.0, "weights_mb": 0.5, "bleu": 7.25, "bleu_sentences": 40,
           "threads": 1, "bleu_decode": {"beam_size": 4, "max_sentences": 10}, "bleu_pytorch": 7.5,
           "bleu_change_vs_pytorch": -0.25, "bleu_change_vs_float32": -0.125,
           "greedy_vs_pytorch": {"direction": "en-de", "sentences": 8, "mismatches": 3, "first_mismatch": None}}
    bench["models"] = {"dense": bench["models"]["dense"], "dense+ct2-int8": row,
                       **{n: m for n, m in bench["models"].items() if n != "dense"}}
    bench["ctranslate2"] = {"version": "4.8.5", "device": "cpu", "threads": 2,
                            "skipped": {"token_moe": "token-routed experts have no dense form"}}
    (root / "reports" / "benchmark.json").write_text(json.dumps(bench))
    serving = section(render(root), "## Serving cost")
    table_row = [line for line in serving.splitlines() if line.startswith("| dense+ct2-int8 |")]
    dense_bleu = json.loads((root / "reports" / "compare.json").read_text())["systems"]["dense"]["groups"]["avg"]["bleu"]
    # on the whole test set's footing: dense's test BLEU plus the change measured on the same sentences
    assert len(table_row) == 1 and "| ctranslate2 |" in table_row[0]
    assert table_row[0].endswith(f"| {dense_bleu - 0.25:.2f} † |")
    assert "the first 10 test sentences of each direction (40 in all)" in serving
    assert "at most the PyTorch rows' 2 threads" in serving
    assert ("dense+ct2-int8 (1 thread): 3 of 8 greedy translations differ from PyTorch's, BLEU 7.25 against "
            "PyTorch's 7.50 on the same sentences (-0.25), -0.12 against float32") in serving
    assert "- no CTranslate2 row for token_moe: token-routed experts have no dense form" in serving


def test_an_engine_row_stands_on_its_models_test_bleu_only_with_a_measured_change():
    from pipeline.report.inputs import engine_bleu

    bleu = {"dense": {"bleu": 9.7}}
    assert engine_bleu({"base_model": "dense", "bleu": 10.95, "bleu_change_vs_pytorch": 0.05}, bleu) == pytest.approx(9.75)
    assert engine_bleu({"base_model": "dense", "bleu": 10.95, "bleu_change_vs_pytorch": None}, bleu) is None
    assert engine_bleu({"base_model": "student", "bleu_change_vs_pytorch": 0.05}, bleu) is None
