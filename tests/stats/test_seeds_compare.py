"""compare across training seeds: each seed's gains over its own dense and their summary over seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pipeline.stats.compare import compare_systems, t_quantile
from pipeline.config import CompareConfig
from pipeline.errors import PipelineError
from pipeline.evaluate import write_lines

CFG = CompareConfig(bootstrap_resamples=300, seed=7)


@pytest.mark.parametrize("confidence, df, table", [
    (0.95, 1, 12.706), (0.95, 2, 4.303), (0.95, 3, 3.182), (0.95, 4, 2.776), (0.95, 9, 2.262),
    (0.95, 30, 2.042), (0.99, 1, 63.657), (0.99, 6, 3.707), (0.90, 7, 1.895)])
def test_t_quantile_matches_the_table(confidence, df, table):
    assert t_quantile(confidence, df) == pytest.approx(table, abs=1e-3)


def test_t_quantile_approaches_the_normal_and_needs_a_degree_of_freedom():
    assert t_quantile(0.95, 2000) == pytest.approx(1.96, abs=2e-3)
    with pytest.raises(ValueError):
        t_quantile(0.95, 0)


def seeded(make_synthetic, shares_by_seed: dict[int, dict[str, float]]):
    """Main-seed hyps (seed 1) and {seed: hyps} for the others, on the same sentences."""
    out = {}
    for seed, shares in shares_by_seed.items():
        hyps, refs, groups = make_synthetic(shares, n=300)
        out[seed] = hyps
    return out.pop(1), out, refs, groups


def test_each_seed_is_set_against_its_own_dense(make_synthetic):
    """Population BLEU is 100 q: token_moe gains +20, +5 and -5 over dense on seeds 1, 2, 3."""
    main, extra, refs, groups = seeded(make_synthetic, {
        1: {"dense": 0.3, "token_moe": 0.5, "task_moe": 0.55},
        2: {"dense": 0.4, "token_moe": 0.45, "task_moe": 0.6},
        3: {"dense": 0.35, "token_moe": 0.3, "task_moe": 0.5}})
    result = compare_systems(main, refs, groups, CFG, seed_hyps=extra, main_seed=1)
    seeds = result["across_seeds"]
    assert seeds["seeds"] == [1, 2, 3] and seeds["models"] == ["dense", "token_moe", "task_moe"]
    # the main seed's numbers are the main comparison's
    assert seeds["per_seed"]["1"]["gains"]["token_moe"] == result["vs_baseline"]["token_moe"]["groups"]["avg"]
    teacher = seeds["gains"]["token_moe"]
    assert teacher["per_seed"] == pytest.approx([20, 5, -5], abs=4)
    for seed, diff in zip(seeds["seeds"], teacher["per_seed"]):
        bleu = seeds["per_seed"][str(seed)]["bleu"]
        assert diff == pytest.approx(bleu["token_moe"] - bleu["dense"])  # against its own seed's dense
    assert teacher["mean"] == pytest.approx(np.mean(teacher["per_seed"]))
    assert teacher["positive_in"] == 2 and teacher["significant_in"] == 2 and teacher["significant_loss_in"] == 1
    assert teacher["seed_sd"] == pytest.approx(np.std(teacher["per_seed"], ddof=1))
    half = t_quantile(0.95, 2) * teacher["seed_sd"] / math.sqrt(3)
    assert (teacher["seed_low"], teacher["seed_high"]) == pytest.approx((teacher["mean"] - half,
                                                                         teacher["mean"] + half))
    # retraining moves this gain by far more than the test set's sampling: the t-interval is the wider
    assert teacher["seed_low"] < 0 < teacher["sentence_low"] < teacher["mean"] < teacher["sentence_high"]
    assert seeds["baseline_sd"] == pytest.approx(np.std([30, 40, 35], ddof=1), abs=3)
    assert seeds["seeds"] == [1, 2, 3]
    # the main comparison is untouched by the extra seeds
    alone = compare_systems(main, refs, groups, CFG)
    assert alone["vs_baseline"] == result["vs_baseline"] and "across_seeds" not in alone


def test_each_seeds_student_is_set_against_its_own_control(make_synthetic):
    """The student beats its seed's dense_long by -10, +5 and -15 BLEU; across the three dense baselines
    (30, 45, 40) the student's gain over dense is +10, +20, +5: the control, not dense, is what says
    whether the teacher helped."""
    shares = {1: {"dense": 0.3, "token_moe": 0.5, "student": 0.4, "dense_long": 0.5},
              2: {"dense": 0.45, "token_moe": 0.5, "student": 0.65, "dense_long": 0.6},
              3: {"dense": 0.4, "token_moe": 0.5, "student": 0.45, "dense_long": 0.6}}
    main, extra, refs, groups = seeded(make_synthetic, shares)
    result = compare_systems(main, refs, groups, CFG, seed_hyps=extra, main_seed=1)
    seeds = result["across_seeds"]
    control = seeds["vs_control"]["student"]
    assert control["control"] == "dense_long"
    assert control["per_seed"] == pytest.approx([-10, 5, -15], abs=4)
    for seed, diff in zip(seeds["seeds"], control["per_seed"]):
        bleu = seeds["per_seed"][str(seed)]["bleu"]
        assert diff == pytest.approx(bleu["student"] - bleu["dense_long"])  # its own seed's control
    assert seeds["per_seed"]["1"]["vs_control"]["student"] == result["vs_control"]["student"]["groups"]["avg"]
    assert seeds["gains"]["student"]["per_seed"] == pytest.approx([10, 20, 5], abs=4)
    assert control["significant_in"] == 1 and control["significant_loss_in"] == 2
    assert control["seed_sd"] == pytest.approx(np.std(control["per_seed"], ddof=1))
    assert control["seed_low"] < control["mean"] < control["seed_high"]
    # seeds without the control: no vs_control
    trimmed = {s: {m: h for m, h in hyps.items() if m != "dense_long"} for s, hyps in extra.items()}
    alone = compare_systems({m: h for m, h in main.items() if m != "dense_long"}, refs, groups, CFG,
                            seed_hyps=trimmed, main_seed=1)
    assert alone["across_seeds"]["vs_control"] == {}


def test_identical_seeds_have_no_spread(make_synthetic):
    """A seed that reproduced the main run exactly: the same gain, SD 0, and the same sentence interval
    (every seed is scored on the same resampled sentences)."""
    main, _, refs, groups = seeded(make_synthetic, {1: {"dense": 0.3, "token_moe": 0.5}})
    result = compare_systems(main, refs, groups, CFG, seed_hyps={2: main}, main_seed=1)
    gain = result["across_seeds"]["gains"]["token_moe"]
    one = result["vs_baseline"]["token_moe"]["groups"]["avg"]
    assert gain["per_seed"] == [one["diff"], one["diff"]] and gain["seed_sd"] == 0
    assert gain["seed_low"] == gain["seed_high"] == pytest.approx(one["diff"])
    assert (gain["sentence_low"], gain["sentence_high"]) == pytest.approx((one["low"], one["high"]))


def test_a_seed_without_a_model_or_repeating_the_main_seed_is_refused(make_synthetic):
    main, extra, refs, groups = seeded(make_synthetic, {1: {"dense": 0.3, "token_moe": 0.5},
                                                        2: {"dense": 0.3}})
    with pytest.raises(PipelineError, match="seed 2 lacks token_moe"):
        compare_systems(main, refs, groups, CFG, seed_hyps={**extra, 3: main}, main_seed=1)
    with pytest.raises(PipelineError, match="seed 1 is the main run's train.seed"):
        compare_systems(main, refs, groups, CFG, seed_hyps={1: main}, main_seed=1)
    with pytest.raises(PipelineError, match="seeds.models: token_moe not evaluated for the main seed"):
        compare_systems({"dense": main["dense"]}, refs, groups, CFG, seed_hyps={2: main}, main_seed=1)
    with pytest.raises(PipelineError, match="train.seed"):
        compare_systems(main, refs, groups, CFG, seed_hyps={2: main})


def write_seed(evaluated, seed: int, shares: dict[str, float], make_synthetic, main_seed: int = 1,
               lines: int | None = None):
    directions = ("en-de", "en-it", "de-en", "it-en")
    hyps, _, _ = make_synthetic(shares, directions=directions, n=40)
    root = evaluated / "seeds"
    for model, by_direction in hyps.items():
        folder = root / f"seed{seed}" / "evaluate" / model / "hyps"
        folder.mkdir(parents=True, exist_ok=True)
        for direction, text in by_direction.items():
            write_lines(folder / f"{direction}.txt", text[:lines])
    (root / "index.json").write_text(json.dumps({"main_seed": main_seed, "extra": [seed],
                                                 "models": list(shares)}))
    return root


def run_stage(evaluated, seeds_dir):
    from stages.compare import main

    return main(["--params", str(evaluated / "params.yaml"), "--evaluations", str(evaluated / "evaluate"),
                 "--corpus", str(evaluated / "corpus"), "--out", str(evaluated / "compare.json"),
                 "--seeds", str(seeds_dir)])


def test_stage_reads_the_seeds_stage_output(evaluated, make_synthetic):
    seeds_dir = write_seed(evaluated, 2, {"dense": 0.35, "token_moe": 0.45, "task_moe": 0.6}, make_synthetic)
    assert run_stage(evaluated, seeds_dir) == 0
    result = json.loads((evaluated / "compare.json").read_text())
    gains = result["across_seeds"]["gains"]
    assert result["across_seeds"]["seeds"] == [1, 2] and set(gains) == {"token_moe", "task_moe"}
    assert gains["token_moe"]["per_seed"] == pytest.approx([30, 10], abs=10)  # 0.6 - 0.3, 0.45 - 0.35


def test_stage_without_extra_seeds_compares_the_main_run_only(evaluated):
    (evaluated / "seeds").mkdir()
    (evaluated / "seeds" / "index.json").write_text(json.dumps({"main_seed": 1, "extra": [],
                                                                "models": ["dense"]}))
    assert run_stage(evaluated, evaluated / "seeds") == 0
    result = json.loads((evaluated / "compare.json").read_text())
    assert "across_seeds" not in result


@pytest.mark.parametrize("case, message", [
    ("other main seed", "index.json: made with train.seed 5, params say 1"),
    ("short file", "seed2/evaluate/dense/hyps/en-de.txt: 39 lines, expected 40"),
])
def test_stage_names_a_stale_seeds_output(evaluated, make_synthetic, capsys, case, message):
    seeds_dir = write_seed(evaluated, 2, {"dense": 0.35, "token_moe": 0.45, "task_moe": 0.6}, make_synthetic,
                           main_seed=5 if case == "other main seed" else 1,
                           lines=39 if case == "short file" else None)
    assert run_stage(evaluated, seeds_dir) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err
    assert not (evaluated / "compare.json").exists()


def test_each_fraction_over_seeds_divides_each_seeds_own_gains(make_synthetic):
    """Population BLEU is 100 q. The student's share of the task-MoE's gain is 10/30, 6/30 and 10/20 on
    seeds 1, 2, 3; the teacher gains nothing on seed 2, so its share is undefined there and over seeds."""
    shares = {1: {"dense": 0.3, "token_moe": 0.5, "task_moe": 0.6, "student": 0.4, "dense_long": 0.45},
              2: {"dense": 0.3, "token_moe": 0.3, "task_moe": 0.6, "student": 0.36, "dense_long": 0.4},
              3: {"dense": 0.3, "token_moe": 0.5, "task_moe": 0.5, "student": 0.4, "dense_long": 0.45}}
    main, extra, refs, groups = seeded(make_synthetic, shares)
    result = compare_systems(main, refs, groups, CFG, seed_hyps=extra, main_seed=1)
    seeds = result["across_seeds"]
    task = seeds["fractions"]["student_vs_task_moe"]
    assert task["reference"] == "task_moe" and task["approach"] == "student"
    gains = seeds["gains"]
    assert task["reference_gains"] == gains["task_moe"]["per_seed"]  # each seed against its own dense
    assert task["approach_gains"] == gains["student"]["per_seed"]
    assert task["per_seed"] == pytest.approx([a / r for a, r in zip(gains["student"]["per_seed"],
                                                                     gains["task_moe"]["per_seed"])])
    assert task["per_seed"] == pytest.approx([1 / 3, 0.2, 0.5], abs=0.08)
    half = t_quantile(0.95, 2) * np.std(task["per_seed"], ddof=1) / math.sqrt(3)
    assert task["mean"] == pytest.approx(np.mean(task["per_seed"]))
    assert (task["seed_low"], task["seed_high"]) == pytest.approx((task["mean"] - half, task["mean"] + half))
    assert task["status"] == "ok" and task["reason"] is None
    # the main seed's own fraction is the one-run comparison's, untouched
    assert result["fractions"]["student_vs_task_moe"]["groups"]["avg"]["value"] == pytest.approx(task["per_seed"][0])
    teacher = seeds["fractions"]["student_vs_teacher"]
    assert teacher["status"] == "undefined" and teacher["mean"] is None and teacher["per_seed"] is None
    assert "token_moe does not beat dense significantly in seed 2 " in teacher["reason"]
    # the one-run rules apply over seeds: a reference gain under the minimum in any seed, or a t-interval
    # wider than allowed, leaves the value but reads not informative
    strict = CompareConfig(bootstrap_resamples=300, seed=7, min_reference_gain=25)
    task = compare_systems(main, refs, groups, strict, seed_hyps=extra, main_seed=1)["across_seeds"]["fractions"]
    assert task["student_vs_task_moe"]["status"] == "not_informative"
    assert task["student_vs_task_moe"]["reason"].endswith("in seed 3")
    narrow = CompareConfig(bootstrap_resamples=300, seed=7, max_fraction_ci_points=2 * 100 * half - 1)
    task = compare_systems(main, refs, groups, narrow, seed_hyps=extra, main_seed=1)["across_seeds"]["fractions"]
    assert task["student_vs_task_moe"]["status"] == "not_informative"
    assert "t-interval over 3 seeds is" in task["student_vs_task_moe"]["reason"]
