"""The report's first screen as data: each verdict from compare.json-shaped inputs (pipeline.report.verdicts)."""

from __future__ import annotations

import pytest

from pipeline.report.inputs import Inputs
from pipeline.report.verdicts import answer, compute, format_p, headline_metrics
from pipeline.roles import Roles


def diff(value, low, high, p=0.001):
    return {"diff": value, "low": low, "high": high, "p_value": p, "significant": low > 0 or high < 0}


def frac(value, low, high, status="ok", reason=None, confounded=None):
    return {"value": value, "low": low, "high": high, "status": status, "reason": reason,
            "confounded": confounded}


def scoped(avg):
    return {"groups": {"avg": avg}, "directions": {}}


def make(teacher=(1.2, 0.9, 1.5), task=(1.6, 1.3, 1.9), student=(0.4, 0.2, 0.6), control=None,
         fractions=None, roles=Roles(), seeds=None, evaluations=None, extract=None, benchmark=None):
    bleu = {roles.baseline: 10.0, roles.teacher: 10 + teacher[0], roles.task_moe: 10 + task[0],
            roles.sub: 10 + task[0], roles.student: 10 + student[0]}
    if control is not None:
        bleu[roles.control] = 10 + student[0] - control[0]
    compare = {
        "setup": {"roles": roles.as_dict(), "confidence": 0.95, "min_reference_gain": 0.5,
                  "max_fraction_ci_points": 100, "p_value_floor": 1 / 1001},
        "systems": {m: scoped({"bleu": b, "low": b - 0.2, "high": b + 0.2}) for m, b in bleu.items()},
        "vs_baseline": {roles.teacher: scoped(diff(*teacher)), roles.task_moe: scoped(diff(*task)),
                        roles.sub: scoped(diff(*task)), roles.student: scoped(diff(*student))},
        "vs_control": ({roles.student: {"control": roles.control, **scoped(diff(*control))}}
                       if control is not None else {}),
        "fractions": {f"{roles.student}_vs_{label}": scoped(f) for label, f in (fractions or {
            "task_moe": frac(0.25, 0.12, 0.38), "teacher": frac(0.33, 0.17, 0.5)}).items()},
    }
    if seeds:
        compare["across_seeds"] = seeds
    return Inputs(compare=compare, evaluations=evaluations or {}, extract=extract, benchmark=benchmark)


def by_key(inputs):
    return {v.key: v for v in compute(inputs)}


def test_gains_are_judged_by_their_intervals():
    v = by_key(make(teacher=(1.2, 0.9, 1.5), task=(0.1, -0.1, 0.3)))
    assert v["teacher_gain"].holds and v["teacher_gain"].verdict == "yes"
    assert v["teacher_gain"].cell() == "+1.20 [+0.90, +1.50]"
    assert v["task_moe_gain"].holds is False and v["task_moe_gain"].verdict.startswith("not shown")
    assert "test sentences only" in v["teacher_gain"].covers
    v = by_key(make(teacher=(-0.6, -0.9, -0.3)))
    assert v["teacher_gain"].verdict == "no: dense is better" and v["teacher_gain"].holds is False
    # significant but under compare.min_reference_gain: a gain, too small to divide by
    v = by_key(make(teacher=(0.15, 0.04, 0.25)))
    assert v["teacher_gain"].holds and "under the 0.5 BLEU a fraction needs" in v["teacher_gain"].verdict


def test_fractions_keep_compares_status_and_meet_the_paper():
    v = by_key(make())
    assert v["fraction_vs_task_moe"].verdict == "consistent with the paper's 32%"  # 32.25% in [12%, 38%]
    assert v["fraction_vs_task_moe"].cell() == "25% [12%, 38%]"
    assert v["fraction_vs_teacher"].verdict == "consistent with the paper's 43%"
    fractions = {"task_moe": frac(0.9, 0.7, 1.1), "teacher": frac(0.05, -0.1, 0.2)}
    v = by_key(make(fractions=fractions))
    assert v["fraction_vs_task_moe"].verdict == "keeps more than the paper's 32%"
    assert v["fraction_vs_teacher"].verdict == "keeps less than the paper's 43%"
    fractions = {"task_moe": frac(None, None, None, "undefined", "task_moe's gain over dense is not significant"),
                 "teacher": frac(6.05, 3.62, 18.9, "not_informative", "token_moe's gain ... below")}
    v = by_key(make(fractions=fractions))
    assert v["fraction_vs_task_moe"].verdict == "undefined" and v["fraction_vs_task_moe"].value is None
    assert "not significant" in v["fraction_vs_task_moe"].why
    assert v["fraction_vs_teacher"].verdict == "not informative" and v["fraction_vs_teacher"].holds is None


def test_a_confounded_student_fraction_says_so():
    fractions = {"task_moe": frac(0.25, 0.12, 0.38, confounded="dense_long ... beats student"),
                 "teacher": frac(0.33, 0.17, 0.5, confounded="dense_long ... beats student")}
    v = by_key(make(control=(-0.21, -0.33, -0.08), fractions=fractions))
    assert v["fraction_vs_task_moe"].verdict.endswith("; confounded by extra training")
    assert "beats student" in v["fraction_vs_task_moe"].why
    control = v["student_vs_control"]
    assert control.holds is False and control.verdict.startswith("no: dense_long is better")
    assert control.cell() == "-0.21 [-0.33, -0.08]"


def test_with_extra_seeds_the_gains_rest_on_the_interval_over_seeds():
    seeds = {"seeds": [1, 2, 3], "gains": {
        "token_moe": {"mean": 1.1, "seed_low": 0.6, "seed_high": 1.6, "sentence_low": 0.9, "sentence_high": 1.3},
        "task_moe": {"mean": 0.3, "seed_low": -0.4, "seed_high": 1.0, "sentence_low": 0.1, "sentence_high": 0.5}},
        "vs_control": {"student": {"mean": -0.2, "seed_low": -0.3, "seed_high": -0.1,
                                   "sentence_low": -0.3, "sentence_high": -0.1}}}
    v = by_key(make(control=(-0.21, -0.33, -0.08), seeds=seeds))
    assert v["teacher_gain"].verdict == "yes, across 3 seeds" and v["teacher_gain"].value == 1.1
    assert (v["teacher_gain"].low, v["teacher_gain"].high) == (0.6, 1.6)
    assert v["teacher_gain"].covers == "95% t-interval over 3 training seeds"
    # significant in the main run, but retraining moves it across 0
    assert v["task_moe_gain"].holds is False and "not distinguishable from 0" in v["task_moe_gain"].verdict
    assert v["student_vs_control"].covers == "95% t-interval over 3 training seeds"
    assert v["fraction_vs_task_moe"].covers.endswith("one training run")  # fractions: the main seed's


def test_with_extra_seeds_the_fractions_rest_on_every_seeds_share():
    """compare's fractions over seeds replace the main seed's: the student kept 66%, 9% and 25% of the
    task-MoE's gain on three seeds (the default run's seeds), which one run's 59%-74% does not cover."""
    over = {"seeds": [1, 2, 3], "gains": {}, "vs_control": {}, "fractions": {
        "student_vs_task_moe": {"mean": 0.33, "seed_low": -0.40, "seed_high": 1.06, "per_seed": [0.66, 0.09, 0.25],
                                "status": "not_informative", "reason": "its 95% t-interval over 3 seeds is 146 "
                                "percentage points wide, more than compare.max_fraction_ci_points (100)"},
        "student_vs_teacher": {"mean": None, "seed_low": None, "seed_high": None, "per_seed": None,
                               "status": "undefined", "reason": "token_moe does not beat dense significantly in seed 2, 3"}}}
    fractions = {"task_moe": frac(0.66, 0.59, 0.74), "teacher": frac(2.59, 2.11, 3.57, "not_informative", "wide")}
    inputs = make(fractions=fractions, seeds=over, extract={"max_abs_logit_diff": 1e-6, "tolerance": 1e-4})
    v = by_key(inputs)
    task = v["fraction_vs_task_moe"]
    assert (task.value, task.low, task.high) == (0.33, -0.40, 1.06) and task.verdict == "not informative"
    assert task.covers == "95% t-interval over 3 training seeds" and "146 percentage points" in task.why
    assert task.cell() == "33% [-40%, 106%]"
    teacher = v["fraction_vs_teacher"]
    assert teacher.verdict == "undefined" and teacher.value is None and "seed 2, 3" in teacher.why
    text = answer(compute(inputs), inputs)
    assert text.startswith("This run cannot say how much of the gain distillation keeps") and "66%" not in text
    # a seed-less fraction entry (compare.json written before fractions over seeds): the main seed's
    del over["fractions"]
    assert by_key(make(fractions=fractions, seeds=over))["fraction_vs_task_moe"].cell() == "66% [59%, 74%]"


def test_the_answer_says_the_control_wins_only_when_it_does():
    """A control "not distinguishable" from the student (its verdict starts "not") is no win for the
    control; a win over seeds names the interval it rests on, not the fraction's."""
    extract = {"max_abs_logit_diff": 1e-6, "tolerance": 1e-4}
    inputs = make(control=(-0.1, -0.3, 0.1), extract=extract)
    assert by_key(inputs)["student_vs_control"].verdict == "not distinguishable from training as long"
    assert "beats the student" not in answer(compute(inputs), inputs)
    seeds = {"seeds": [1, 2, 3], "gains": {}, "vs_control": {"student": {
        "mean": -1.12, "seed_low": -2.35, "seed_high": 0.11, "sentence_low": -1.23, "sentence_high": -1.01}}}
    inputs = make(control=(-0.57, -0.74, -0.39), seeds=seeds, extract=extract)
    assert "beats the student" not in answer(compute(inputs), inputs)  # significant in one run, not over seeds
    seeds["vs_control"]["student"].update(seed_high=-0.2)
    text = answer(compute(inputs), inputs)
    assert ("dense_long, trained as long without the teacher, beats the student (-1.12 [-2.35, -0.20] BLEU, "
            "95% t-interval over 3 training seeds)") in text
    assert text.endswith("(95% paired bootstrap over test sentences only; one training run).")


def test_a_model_with_degenerate_translations_has_no_result():
    evaluations = {"student": {"hypotheses": {"degenerate": "10,000 of 10,000 test translations are empty"}}}
    inputs = make(control=(0.1, -0.1, 0.3), evaluations=evaluations)
    v = by_key(inputs)
    for key in ("fraction_vs_task_moe", "fraction_vs_teacher", "student_vs_control"):
        assert v[key].verdict == "no result" and v[key].value is None and "are empty" in v[key].why
        assert v[key].cell() == "no result"
    assert v["teacher_gain"].verdict == "yes"  # the teacher's own result stands
    assert answer(compute(inputs), inputs).startswith("No answer: 10,000 of 10,000 test translations are empty")


def test_roles_name_the_teacher():
    roles = Roles(teacher="task_moe")
    v = by_key(make(roles=roles))
    assert v["teacher_gain"].question == "Does the teacher (task_moe) beat dense? (BLEU)"
    assert v["sub_speedup"].question == "How fast do the sub-networks serve, against task_moe?"


def test_sub_network_equivalence_and_speed_need_their_evidence():
    v = by_key(make())
    assert v["sub_equals_task_moe"].verdict == "not checked" and v["sub_speedup"].verdict == "not measured"
    extract = {"max_abs_logit_diff": 6.7e-6, "tolerance": 1e-4, "verify_sentences": 16}
    speeds = {"dense": 1180, "token_moe": 1000, "task_moe_sub": 1100, "student": 1070, "dense_long": 1090}
    benchmark = {"device": "cpu", "models": {m: {"peak_tokens_per_second": s} for m, s in speeds.items()}}
    v = by_key(make(extract=extract, benchmark=benchmark))
    assert v["sub_equals_task_moe"].holds and v["sub_equals_task_moe"].verdict.startswith("yes: max |Δ logit| 6.7e-06")
    assert "same test BLEU" in v["sub_equals_task_moe"].verdict
    speed = v["sub_speedup"]  # 1.10x, while identical architectures spread 1.07x-1.18x: noise
    assert speed.value == pytest.approx(1.10) and speed.low == pytest.approx(0.11)
    assert speed.holds is False and speed.verdict == "no speed-up beyond the benchmark's noise"
    benchmark["models"]["task_moe_sub"]["peak_tokens_per_second"] = 1870
    assert by_key(make(extract=extract, benchmark=benchmark))["sub_speedup"].holds is True


def test_the_answer_says_what_this_run_can_and_cannot_conclude():
    inputs = make(extract={"max_abs_logit_diff": 1e-6, "tolerance": 1e-4})
    text = answer(compute(inputs), inputs)
    assert text.startswith("Distillation keeps 25% [12%, 38%] of the task-MoE's gain")
    assert "sub-networks keep all of its gain (they are exact)" in text
    fractions = {"task_moe": frac(None, None, None, "undefined", "task_moe's gain is not significant"),
                 "teacher": frac(6.05, 3.62, 18.9, "not_informative", "below compare.min_reference_gain")}
    inputs = make(fractions=fractions, extract={"max_abs_logit_diff": 1e-6, "tolerance": 1e-4})
    text = answer(compute(inputs), inputs)
    assert text.startswith("This run cannot say how much of the gain distillation keeps")
    assert ("keeps: its share of the task-MoE's gain is undefined, and its share of the teacher's gain is "
            "not informative (the reasons are listed below)") in text
    assert "not significant" not in text and len(text) < 300  # one sentence; the reasons follow it as a list
    assert text.count(";") == 0 and text.count(".") == 2  # two plain sentences, no nested clauses


def test_the_answer_says_once_what_both_shares_share():
    """Both shares not informative and confounded (the default run at moe_every 1): said once, with "and"
    where the verdicts have a semicolon, not twice in a list whose items are themselves split by ";"."""
    fractions = {key: frac(2.1, 1.7, 2.7, "not_informative", "below compare.min_reference_gain",
                           confounded="dense_long ... beats student") for key in ("task_moe", "teacher")}
    inputs = make(control=(-0.23, -0.35, -0.10), fractions=fractions,
                  extract={"max_abs_logit_diff": 1e-6, "tolerance": 1e-4})
    text = answer(compute(inputs), inputs)
    assert ("cannot say how much of the gain distillation keeps: both its shares, of the task-MoE's gain and "
            "of the teacher's, are not informative and confounded by extra training (the reasons") in text
    assert text.count("not informative") == 1 and ";" not in text


def test_headline_metrics_are_few_and_come_from_the_verdicts():
    inputs = make(control=(-0.21, -0.33, -0.08))
    inputs.train = {"dense": {"val_loss": 3.58}, "token_moe": {"val_loss": 3.55}, "student": {"val_loss": 3.6}}
    metrics = headline_metrics(compute(inputs), inputs)
    flat = {f"{k}.{kk}" if isinstance(v, dict) else k: None for k, v in metrics.items()
            for kk in (v if isinstance(v, dict) else [None])}
    assert len(flat) <= 32
    assert metrics["teacher_gain"] == 1.2 and (metrics["teacher_gain_lo"], metrics["teacher_gain_hi"]) == (0.9, 1.5)
    assert metrics["kept_of_task_moe"] == 25.0 and metrics["kept_of_task_moe_lo"] == 12.0  # percent
    assert metrics["student_vs_control"] == -0.21 and metrics["seeds"] == 1
    assert metrics["val_loss"] == {"dense": 3.58, "token_moe": 3.55}  # the compared trainings only
    assert metrics["sub_speedup"] is None  # not measured: null, not 0


@pytest.mark.parametrize("p, floor, text", [(0.000999, 1 / 1001, "< 0.001"), (0.0099, 1 / 101, "< 0.01"),
                                            (0.004, 1 / 1001, "= 0.004"), (0.5, 1 / 1001, "= 0.500")])
def test_p_values_at_the_bootstrap_floor_print_as_a_bound(p, floor, text):
    assert format_p(p, floor) == text
