"""compare: sufficient statistics, the paired bootstrap, and the fraction of gains preserved."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import CompareConfig
from pipeline.errors import PipelineError
from pipeline.evaluate import bleu_metric, write_lines
from pipeline.roles import Roles
from pipeline.stats.bootstrap import (Bootstrap, bleu_from_stats, bootstrap_bleu, counts_from_indices,
                                      paired_p_values, sentence_stats)
from pipeline.stats.compare import compare_systems, load_hypotheses

HYPS = ["The cat sat on a mat.", "Hello, world", "It rained the whole day.", "", "a b c d e f"]
REFS = ["The cat sat on the mat.", "Hello world!", "It rained all day.", "Short.", "a b c d e f"]
CFG = CompareConfig(bootstrap_resamples=200, seed=7, min_reference_gain=0.5, max_fraction_ci_points=100)


def avg(result: dict, section: str, name: str) -> dict:
    return result[section][name]["groups"]["avg"]
ZH_HYPS, ZH_REFS = ["我们今天去公园。", "他喜欢读书。"], ["我们今天去公园散步。", "他喜欢读书和写作。"]


@pytest.mark.parametrize("lang,hyps,refs", [("de", HYPS, REFS), ("zh", ZH_HYPS, ZH_REFS)])
def test_summed_sentence_statistics_give_sacrebleu_corpus_score(lang, hyps, refs):
    metric = bleu_metric(lang)
    stats = sentence_stats(metric, hyps, refs)
    assert stats.shape == (len(hyps), 10)
    assert bleu_from_stats(metric, stats.sum(axis=0)) == bleu_metric(lang).corpus_score(hyps, [refs]).score
    # a resample that is the sample itself gives the corpus score too
    ones = np.ones((1, len(hyps)), dtype=np.int64)
    assert bootstrap_bleu(metric, stats, ones)[0] == bleu_metric(lang).corpus_score(hyps, [refs]).score


def test_resample_counts_match_indices():
    indices = np.array([[0, 0, 2], [1, 2, 2]])
    assert counts_from_indices(indices, 3).tolist() == [[2, 0, 1], [0, 1, 2]]


def test_p_value_matches_sacrebleu_paired_bootstrap(make_synthetic):
    from sacrebleu.significance import _paired_bs_test

    hyps, refs, _ = make_synthetic({"base": 0.4, "sys": 0.5}, directions=("en-de",), n=60)
    base, system, ref = hyps["base"]["en-de"], hyps["sys"]["en-de"], refs["en-de"]
    metric = bleu_metric("de")
    base_stats = sentence_stats(metric, base, ref)
    _, result = _paired_bs_test({"BLEU": (base_stats.tolist(), metric.corpus_score(base, [ref]))},
                                "sys", system, [ref], {"BLEU": metric}, n_samples=300, seed=3)
    indices = np.random.default_rng(3).choice(len(ref), size=(300, len(ref)), replace=True)
    counts = counts_from_indices(indices, len(ref))
    sys_stats = sentence_stats(metric, system, ref)
    diff = bleu_from_stats(metric, sys_stats.sum(0)) - bleu_from_stats(metric, base_stats.sum(0))
    diff_bs = bootstrap_bleu(metric, sys_stats, counts) - bootstrap_bleu(metric, base_stats, counts)
    p_value, p_not_better = paired_p_values(diff_bs, diff)
    assert p_value == pytest.approx(result["BLEU"].p_value, abs=2 / 301)  # float32 ties in sacrebleu
    assert 0 <= p_not_better <= 1


def test_bootstrap_is_reproducible_for_a_seed(make_synthetic):
    hyps, refs, groups = make_synthetic({"dense": 0.4, "token_moe": 0.6, "student": 0.5})
    first = compare_systems(hyps, refs, groups, CFG)
    assert compare_systems(hyps, refs, groups, CFG) == first
    other = compare_systems(hyps, refs, groups, CompareConfig(bootstrap_resamples=200, seed=8))
    assert avg(other, "vs_baseline", "token_moe")["low"] != avg(first, "vs_baseline", "token_moe")["low"]


def test_the_same_indices_serve_every_system(make_synthetic):
    hyps, refs, _ = make_synthetic({"dense": 0.4, "token_moe": 0.7})
    hyps["copy"] = {d: list(lines) for d, lines in hyps["dense"].items()}
    bs = Bootstrap(hyps, refs, resamples=200, seed=1)
    for direction in refs:
        assert np.array_equal(bs.resampled["copy"][direction], bs.resampled["dense"][direction])
        assert not np.array_equal(bs.resampled["token_moe"][direction], bs.resampled["dense"][direction])
    result = compare_systems(hyps, refs, {"avg": list(refs)}, CFG)
    same = result["vs_baseline"]["copy"]["groups"]["avg"]
    assert (same["diff"], same["low"], same["high"], same["p_value"]) == (0, 0, 0, 1)
    assert not same["significant"]


def test_fraction_is_0_for_dense_and_1_for_the_reference(make_synthetic):
    hyps, refs, groups = make_synthetic({"dense": 0.3, "token_moe": 0.7})
    hyps["student"] = hyps["dense"]
    hyps["task_moe_sub"] = hyps["token_moe"]
    result = compare_systems(hyps, refs, groups, CFG)
    student = avg(result, "fractions", "student_vs_teacher")
    assert (student["value"], student["low"], student["high"], student["status"]) == (0, 0, 0, "ok")
    sub = avg(result, "fractions", "task_moe_sub_vs_teacher")
    assert (sub["value"], sub["low"], sub["high"]) == pytest.approx((1, 1, 1))
    assert "student_vs_task_moe" not in result["fractions"]  # no task_moe evaluated
    assert avg(result, "vs_baseline", "token_moe")["diff"] == pytest.approx(40, abs=8)


def test_fraction_interval_covers_the_truth(make_synthetic):
    """Population BLEU is 100 q, so the true fraction is (0.55 - 0.4) / (0.7 - 0.4) = 0.5."""
    covered, widths = 0, []
    for seed in range(20):
        hyps, refs, groups = make_synthetic({"dense": 0.4, "token_moe": 0.7, "student": 0.55},
                                            n=150, seed=seed)
        frac = compare_systems(hyps, refs, groups, CompareConfig(bootstrap_resamples=200,
                                                                 seed=seed))["fractions"]
        avg = frac["student_vs_teacher"]["groups"]["avg"]
        covered += avg["low"] <= 0.5 <= avg["high"]
        widths.append(avg["high"] - avg["low"])
    assert covered >= 16  # nominal 95%: 19 of 20 expected
    assert 0.05 < np.mean(widths) < 0.6


def test_fraction_undefined_when_the_reference_gain_is_not_significant(make_synthetic):
    hyps, refs, groups = make_synthetic({"dense": 0.5, "token_moe": 0.51, "task_moe": 0.3,
                                         "student": 0.5})
    result = compare_systems(hyps, refs, groups, CFG)
    teacher = avg(result, "fractions", "student_vs_teacher")
    assert teacher["value"] is None and teacher["status"] == "undefined" and "not significant" in teacher["reason"]
    assert teacher["reference_gain_low"] <= 0 <= teacher["reference_gain_high"]
    task = avg(result, "fractions", "student_vs_task_moe")
    assert task["value"] is None and task["status"] == "undefined" and "does not beat" in task["reason"]


def test_a_small_significant_reference_gain_gives_an_uninformative_fraction(make_synthetic):
    """token_moe 2 BLEU over dense (significant with 600 sentences a direction): below a minimum of 5 the
    fraction is computed but not informative; with a minimum of 1 it is an ordinary fraction."""
    hyps, refs, groups = make_synthetic({"dense": 0.40, "token_moe": 0.42, "student": 0.41}, n=600)
    strict = CompareConfig(bootstrap_resamples=200, seed=7, min_reference_gain=5, max_fraction_ci_points=1000)
    frac = avg(compare_systems(hyps, refs, groups, strict), "fractions", "student_vs_teacher")
    assert frac["reference_gain_low"] > 0 and frac["value"] == pytest.approx(0.5, abs=0.05)
    assert frac["status"] == "not_informative" and "compare.min_reference_gain (5)" in frac["reason"]
    loose = CompareConfig(bootstrap_resamples=200, seed=7, min_reference_gain=1, max_fraction_ci_points=1000)
    assert avg(compare_systems(hyps, refs, groups, loose), "fractions", "student_vs_teacher")["status"] == "ok"


def test_a_wide_fraction_interval_is_not_informative(make_synthetic):
    hyps, refs, groups = make_synthetic({"dense": 0.4, "token_moe": 0.5, "student": 0.45}, n=100)
    result = compare_systems(hyps, refs, groups, CompareConfig(bootstrap_resamples=200, seed=7,
                                                               min_reference_gain=0, max_fraction_ci_points=10))
    frac = avg(result, "fractions", "student_vs_teacher")
    assert (frac["high"] - frac["low"]) * 100 > 10
    assert frac["status"] == "not_informative" and "percentage points wide" in frac["reason"]


def test_the_student_fraction_is_confounded_when_its_control_beats_it(make_synthetic):
    hyps, refs, groups = make_synthetic({"dense": 0.3, "token_moe": 0.7, "student": 0.45,
                                         "dense_long": 0.6}, n=300)
    result = compare_systems(hyps, refs, groups, CFG)
    frac = avg(result, "fractions", "student_vs_teacher")
    assert frac["status"] == "ok" and "dense_long, trained as long without the teacher, beats student" \
        in frac["confounded"]
    hyps["dense_long"] = hyps["dense"]  # a control below the student: nothing confounds
    frac = avg(compare_systems(hyps, refs, groups, CFG), "fractions", "student_vs_teacher")
    assert frac["confounded"] is None


def test_roles_choose_the_teacher(make_synthetic):
    """With distill.teacher: task_moe the teacher's fraction divides by task_moe's gain."""
    hyps, refs, groups = make_synthetic({"dense": 0.3, "token_moe": 0.5, "task_moe": 0.7, "student": 0.5})
    result = compare_systems(hyps, refs, groups, CFG, Roles(teacher="task_moe"))
    assert result["setup"]["roles"]["teacher"] == "task_moe"
    teacher = avg(result, "fractions", "student_vs_teacher")
    assert teacher["value"] == pytest.approx(0.5, abs=0.05)  # (0.5 - 0.3) / (0.7 - 0.3)
    assert result["fractions"]["student_vs_teacher"]["reference"] == "task_moe"


def test_student_is_set_against_its_equal_steps_control(make_synthetic):
    """Population BLEU is 100 q: the student (0.45) is 15 BLEU below dense_long (0.6), 15 above dense."""
    hyps, refs, groups = make_synthetic({"dense": 0.3, "token_moe": 0.7, "student": 0.45,
                                         "dense_long": 0.6}, n=300)
    result = compare_systems(hyps, refs, groups, CFG)
    control = result["vs_control"]["student"]
    assert control["control"] == "dense_long" and result["setup"]["controls"] == {"student": "dense_long"}
    mean = control["groups"]["avg"]
    systems = result["systems"]
    assert mean["diff"] == pytest.approx(systems["student"]["groups"]["avg"]["bleu"]
                                         - systems["dense_long"]["groups"]["avg"]["bleu"])
    assert mean["diff"] == pytest.approx(-15, abs=5) and mean["high"] < 0 and mean["significant"]
    for direction, d in control["directions"].items():  # per direction, the same subtraction
        assert d["diff"] == pytest.approx(systems["student"]["directions"][direction]["bleu"]
                                          - systems["dense_long"]["directions"][direction]["bleu"])
    # the student's gain over dense is still measured against dense, not against the control
    assert result["vs_baseline"]["student"]["groups"]["avg"]["diff"] > 0
    # without the control evaluated there is nothing to compare against
    del hyps["dense_long"]
    result = compare_systems(hyps, refs, groups, CFG)
    assert result["vs_control"] == {}


def test_missing_system_folder_is_named(tmp_path):
    (tmp_path / "dense" / "hyps").mkdir(parents=True)
    write_lines(tmp_path / "dense" / "hyps" / "en-de.txt", ["a"])
    assert load_hypotheses(tmp_path, ["dense"], ["en-de"]) == {"dense": {"en-de": ["a"]}}
    with pytest.raises(PipelineError, match="student/hyps.*evaluate@student"):
        load_hypotheses(tmp_path, ["dense", "student"], ["en-de"])


def test_stage_writes_compare_json(evaluated):
    import json

    from stages.compare import main

    args = ["--params", str(evaluated / "params.yaml"), "--evaluations", str(evaluated / "evaluate"),
            "--corpus", str(evaluated / "corpus"), "--out", str(evaluated / "compare.json")]
    assert main(args) == 0
    result = json.loads((evaluated / "compare.json").read_text())
    assert avg(result, "fractions", "student_vs_teacher")["value"] == pytest.approx(1 / 3, abs=0.15)
    assert avg(result, "vs_control", "student")["diff"] == pytest.approx(-10, abs=8)  # 0.4 vs dense_long 0.5
    assert result["setup"]["roles"]["teacher"] == "token_moe"
    assert set(result["fractions"]) == {"student_vs_teacher", "student_vs_task_moe",
                                        "task_moe_sub_vs_teacher", "task_moe_sub_vs_task_moe"}
    assert set(result["systems"]["dense"]["groups"]) == {"avg", "xx_to_pivot", "pivot_to_xx",
                                                         "high", "low"}
    assert result["setup"]["groups"]["high"] == ["en-de", "de-en"]
    assert result["paper"]["table2"]["fraction_student_vs_task_moe"] == pytest.approx(0.3226, abs=1e-4)


def test_stage_names_a_missing_system(evaluated, capsys):
    import shutil

    from stages.compare import main

    shutil.rmtree(evaluated / "evaluate" / "student")
    args = ["--params", str(evaluated / "params.yaml"), "--evaluations", str(evaluated / "evaluate"),
            "--corpus", str(evaluated / "corpus"), "--out", str(evaluated / "compare.json")]
    assert main(args) == 2
    assert "evaluate/student/hyps" in capsys.readouterr().err
    assert not (evaluated / "compare.json").exists()


def test_references_are_cut_to_the_hypotheses_and_counts_must_agree(tmp_path):
    from pipeline.stats.compare import align

    refs = {"en-de": ["r1", "r2", "r3"]}
    assert align({"dense": {"en-de": ["h1", "h2"]}, "student": {"en-de": ["a", "b"]}}, refs,
                 tmp_path) == {"en-de": ["r1", "r2"]}  # evaluate.max_sentences keeps the first N
    with pytest.raises(PipelineError, match="student/hyps/en-de.txt: 1 lines, expected 2"):
        align({"dense": {"en-de": ["h1", "h2"]}, "student": {"en-de": ["a"]}}, refs, tmp_path)
