"""Paired bootstrap comparison of the evaluated systems and the fraction of gains preserved.

Kudugunta et al. 2021 (Sec 4.4, Table 2) say distillation keeps "32.25%" of the MoE's gain:
(26.9 − 25.9) / (29.0 − 25.9), whose denominator is the *task-MoE*'s gain, not the distilled teacher's
(token-MoE, (26.9 − 25.9) / (28.2 − 25.9) = 43.5%). docs/design.md §3 defines, for approach A and
reference R,

    fraction(A, R) = (BLEU_A − BLEU_dense) / (BLEU_R − BLEU_dense)      (average BLEU over directions)

and asks for both references, each with a confidence interval. The roles (which model is the teacher,
the task-MoE, ...) come from `pipeline.roles.Roles`. How the numbers are computed
(`pipeline.stats.bootstrap` has the resampling):
- every difference to dense: the paired bootstrap over test sentences, its percentile interval, and
  sacrebleu's paired-bs p-value (floor: 1 / (resamples + 1)); significant = the interval excludes 0;
- a fraction has a `status`:
  - `undefined` when the reference's gain is ≤ 0 or its interval includes 0 (a ratio over a gain that
    may be zero has no meaning);
  - `not_informative` when the reference's gain is below `compare.min_reference_gain` BLEU or the
    fraction's interval is wider than `compare.max_fraction_ci_points` percentage points (the value and
    interval are kept, but a reader learns nothing about a share from them);
  - `ok` otherwise;
  and the student's fractions are flagged `confounded` when its equal-steps control beats it
  significantly: then its gain over dense comes from training longer, not from the teacher.
- An approach that trained steps dense did not is also set against its equal-steps control
  (`Roles.controls`: the student against dense_long), with the same bootstrap: `vs_control`.
- With more training seeds (the seeds stage, `seeds.extra`), `across_seeds` gives each seed's gains over
  its own dense and its student against its own dense_long (same resampled sentences for every seed) and,
  over seeds, each difference's mean with two intervals: the sentence bootstrap of the mean (the test
  set's uncertainty, models held fixed) and Student's t over the per-seed differences (how much
  retraining moves them; defined from two seeds on, wide with few). Its `fractions` are each fraction
  over seeds (`fractions_over_seeds`): every seed's share from its own gains, and Student's t over them,
  with the status rules above applied to every seed's reference gain and to the t-interval.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pipeline.config import CompareConfig
from pipeline.errors import PipelineError
from pipeline.evaluate import direction_groups, read_corpus_meta, read_lines
from pipeline.roles import Roles
from pipeline.stats.bootstrap import Bootstrap, interval, paired_p_values, t_quantile

BASELINE = Roles().baseline

PAPER = {
    "source": "Kudugunta et al. 2021, arXiv 2110.03742",
    "table1": {
        "what": "WMT, 30 directions, 32 experts, average BLEU",
        "bleu": {"dense": 20.0, "token_moe": 22.6, "task_moe": 23.6, "sentence_moe": 19.9},
        "task_moe_routing": "Token/Target: token routing in the encoder, target-language in the decoder",
    },
    "table2": {
        "what": "distillation, 8 directions, average BLEU",
        "bleu": {"dense": 25.9, "token_moe": 28.2, "task_moe": 29.0, "student": 26.9},
        "fraction_student_vs_task_moe": (26.9 - 25.9) / (29.0 - 25.9),
        "fraction_student_vs_teacher": (26.9 - 25.9) / (28.2 - 25.9),
    },
    "explanation": (
        "The paper's 32.25% is (26.9 - 25.9) / (29.0 - 25.9): the student's gain over dense divided by "
        "the task-MoE's gain, not by the gain of the token-MoE it was distilled from. Against its own "
        "teacher the student keeps (26.9 - 25.9) / (28.2 - 25.9) = 43.5%."),
    "throughput": {"token_moe_tokens_per_second": 1.3e5, "task_moe_tokens_per_second": 2.3e5,
                   "ratio_32_experts": 1.87, "ratio_128_experts": 2.6},
}


# --------------------------------------------------------------------------------------------------
# the quantities reported


def system_score(bs: Bootstrap, system: str, members: Sequence[str], confidence: float) -> dict:
    point, resampled = bs.score(system, members)
    low, high = interval(resampled, confidence)
    return {"bleu": point, "low": low, "high": high}


def difference(bs: Bootstrap, system: str, baseline: str, members: Sequence[str],
               confidence: float) -> dict:
    (a, a_bs), (d, d_bs) = bs.score(system, members), bs.score(baseline, members)
    diff_bs = a_bs - d_bs
    low, high = interval(diff_bs, confidence)
    p_value, p_not_better = paired_p_values(diff_bs, a - d)
    # Significant = the interval excludes 0: the same test that decides whether a fraction is defined,
    # so the report never calls a gain significant and its fraction undefined at once. (The p-value,
    # sacrebleu's test, is reported beside it and can differ near the threshold.)
    return {"diff": a - d, "low": low, "high": high, "p_value": p_value,
            "p_not_better": p_not_better, "significant": bool(low > 0 or high < 0)}


def gain_fraction(bs: Bootstrap, approach: str, reference: str, baseline: str,
                  members: Sequence[str], cfg: CompareConfig) -> dict:
    """(approach − baseline) / (reference − baseline), its interval and `status` (module docstring)."""
    conf = cfg.confidence
    (a, a_bs), (r, r_bs), (d, d_bs) = (bs.score(s, members) for s in (approach, reference, baseline))
    gain_bs = r_bs - d_bs
    gain_low, gain_high = interval(gain_bs, conf)
    out = {"approach_gain": a - d, "reference_gain": r - d, "reference_gain_low": gain_low,
           "reference_gain_high": gain_high, "value": None, "low": None, "high": None,
           "status": "undefined", "reason": None}
    if r - d <= 0:
        out["reason"] = f"{reference} does not beat {baseline} ({r - d:+.2f} BLEU)"
        return out
    if gain_low <= 0:
        out["reason"] = (f"{reference}'s gain over {baseline} is not significant "
                         f"({r - d:+.2f} BLEU, {conf:.0%} CI [{gain_low:+.2f}, {gain_high:+.2f}])")
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction_bs = (a_bs - d_bs) / gain_bs
    low, high = interval(fraction_bs, conf)
    out.update(value=(a - d) / (r - d), low=low, high=high, status="ok")
    if r - d < cfg.min_reference_gain:
        out.update(status="not_informative",
                   reason=f"{reference}'s gain over {baseline}, {r - d:+.2f} BLEU, is below "
                          f"compare.min_reference_gain ({cfg.min_reference_gain:g})")
    elif too_wide(low, high, cfg):
        out.update(status="not_informative", reason=too_wide(low, high, cfg, f"its {conf:.0%} interval"))
    return out


def too_wide(low: float, high: float, cfg: CompareConfig, what: str = "the interval") -> Optional[str]:
    """Why a fraction's interval [low, high] is too wide to read (`compare.max_fraction_ci_points`), or
    None when it is not."""
    points = (high - low) * 100
    if points <= cfg.max_fraction_ci_points:
        return None
    return (f"{what} is {points:.0f} percentage points wide, more than compare.max_fraction_ci_points "
            f"({cfg.max_fraction_ci_points:g})")


def confounded(approach: str, control: Optional[dict], versus: Optional[dict], baseline: str,
               confidence: float) -> Optional[str]:
    """Why `approach`'s gain over the baseline is not its own, when its equal-steps control beats it
    significantly (`versus`: approach minus control); None otherwise."""
    if not versus or not versus["significant"] or versus["diff"] >= 0:
        return None
    return (f"{control['control']}, trained as long without the teacher, beats {approach} by "
            f"{-versus['diff']:.2f} BLEU ({confidence:.0%} CI [{-versus['high']:.2f}, {-versus['low']:.2f}]): "
            f"{approach}'s gain over {baseline} comes from its extra steps, not from the teacher")


def seed_system(model: str, seed: int, main_seed: int) -> str:
    """The bootstrap's name for `model` trained with `seed` (the main run's models keep their names)."""
    return model if seed == main_seed else f"{model}@seed{seed}"


def across_seeds(bs: Bootstrap, main_seed: int, extra: Sequence[int], models: Sequence[str],
                 members: Sequence[str], confidence: float, roles: Roles = Roles()) -> dict:
    """Every seed's BLEU, gains over its own baseline and approaches against their own controls
    (`Roles.controls`: the student against dense_long), and each difference's summary over seeds."""
    baseline = roles.baseline
    seeds = [main_seed, *extra]
    controls = {a: c for a, c in roles.controls.items() if a in models and c in models}
    per_seed = {}
    for seed in seeds:
        name = lambda m, seed=seed: seed_system(m, seed, main_seed)  # noqa: E731
        per_seed[str(seed)] = {
            "bleu": {m: bs.score(name(m), members)[0] for m in models},
            "gains": {m: difference(bs, name(m), name(baseline), members, confidence)
                      for m in models if m != baseline},
            "vs_control": {a: difference(bs, name(a), name(c), members, confidence)
                           for a, c in controls.items()}}

    def summary(kind: str, model: str, reference: str) -> dict:
        per = [per_seed[str(s)][kind][model] for s in seeds]
        diffs = [d["diff"] for d in per]
        resampled = np.mean([bs.score(seed_system(model, s, main_seed), members)[1]
                             - bs.score(seed_system(reference, s, main_seed), members)[1] for s in seeds], axis=0)
        sentence_low, sentence_high = interval(resampled, confidence)
        mean, n = float(np.mean(diffs)), len(diffs)  # n >= 2: the main seed and at least one extra
        sd = float(np.std(diffs, ddof=1))
        half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
        return {"mean": mean, "per_seed": diffs,
                "sentence_low": sentence_low, "sentence_high": sentence_high,
                "seed_sd": sd, "seed_low": mean - half, "seed_high": mean + half,
                "positive_in": sum(d > 0 for d in diffs),
                "significant_in": sum(d["significant"] and d["diff"] > 0 for d in per),
                "significant_loss_in": sum(d["significant"] and d["diff"] < 0 for d in per)}

    gains = {m: summary("gains", m, baseline) for m in models if m != baseline}
    vs_control = {a: {"control": c, **summary("vs_control", a, c)} for a, c in controls.items()}
    dense = [per_seed[str(s)]["bleu"][baseline] for s in seeds]
    return {"main_seed": main_seed, "seeds": seeds, "models": list(models), "per_seed": per_seed,
            "gains": gains, "vs_control": vs_control, "baseline_sd": float(np.std(dense, ddof=1)),
            "interval_over_seeds": "Student's t over the per-seed differences (mean +- t * sd / sqrt(n))",
            "interval_over_sentences": "paired bootstrap of the mean difference, the same sentences for every seed"}


def fractions_over_seeds(across: dict, roles: Roles, cfg: CompareConfig) -> dict:
    """Each fraction of `compare_systems`, seed by seed, from `across` (an `across_seeds` result): every
    seed's (approach − dense) / (reference − dense) from its own models, their mean and Student's t
    interval over seeds. `status` as for one run: `undefined` when the reference's gain is not
    significantly above 0 in some seed, `not_informative` when it is under `compare.min_reference_gain`
    in some seed or the t-interval is wider than `compare.max_fraction_ci_points`, else `ok`. A seed's own
    share has no interval here: the t-interval is the spread retraining gives."""
    seeds, baseline, out = across["seeds"], roles.baseline, {}
    for approach in (a for a in roles.approaches if a in across["gains"]):
        for label, reference in roles.references.items():
            if reference not in across["gains"]:
                continue
            gains = [across["per_seed"][str(s)]["gains"] for s in seeds]
            ref = [g[reference]["diff"] for g in gains]
            entry = {"approach": approach, "reference": reference, "reference_label": label,
                     "reference_gains": ref, "approach_gains": [g[approach]["diff"] for g in gains],
                     "per_seed": None, "mean": None, "seed_low": None, "seed_high": None,
                     "status": "undefined", "reason": None}
            weak = [str(s) for s, g in zip(seeds, gains)
                    if not (g[reference]["significant"] and g[reference]["diff"] > 0)]
            if weak:
                entry["reason"] = (f"{reference} does not beat {baseline} significantly in seed "
                                   f"{', '.join(weak)} ({', '.join(f'{r:+.2f}' for r in ref)} BLEU by seed)")
                out[f"{approach}_vs_{label}"] = entry
                continue
            shares = [a / r for a, r in zip(entry["approach_gains"], ref)]
            mean, sd = float(np.mean(shares)), float(np.std(shares, ddof=1))
            half = t_quantile(cfg.confidence, len(shares) - 1) * sd / math.sqrt(len(shares))
            entry.update(per_seed=shares, mean=mean, seed_low=mean - half, seed_high=mean + half, status="ok")
            small = [str(s) for s, r in zip(seeds, ref) if r < cfg.min_reference_gain]
            if small:
                entry.update(status="not_informative",
                             reason=f"{reference}'s gain over {baseline} is below "
                                    f"compare.min_reference_gain ({cfg.min_reference_gain:g}) in seed "
                                    f"{', '.join(small)}")
            elif too_wide(mean - half, mean + half, cfg):
                entry.update(status="not_informative", reason=too_wide(
                    mean - half, mean + half, cfg, f"its {cfg.confidence:.0%} t-interval over {len(seeds)} seeds"))
            out[f"{approach}_vs_{label}"] = entry
    return out


def seed_differences(across: dict) -> list[tuple[str, str, str]]:
    """(kind, model, reference) for every difference an `across_seeds` result summarises: each model's
    gain over the baseline ("gains"), then each approach against its control ("vs_control", absent from
    compare.json files written before it existed)."""
    base = across["models"][0]  # the baseline comes first
    return ([("gains", m, base) for m in across["gains"]]
            + [("vs_control", a, v["control"]) for a, v in (across.get("vs_control") or {}).items()])


def per_scope(func, groups: dict[str, list[str]], directions: Sequence[str]) -> dict:
    """`func(members)` for every non-empty group and every single direction."""
    return {"groups": {g: func(m) for g, m in groups.items() if m},
            "directions": {d: func([d]) for d in directions}}


def compare_systems(hyps: dict[str, dict[str, list[str]]], refs: dict[str, list[str]],
                    groups: dict[str, list[str]], cfg: CompareConfig, roles: Roles = Roles(),
                    seed_hyps: Optional[dict[int, dict[str, dict[str, list[str]]]]] = None,
                    main_seed: Optional[int] = None) -> dict:
    """The whole comparison from in-memory hypotheses (system -> direction -> lines) and references.

    `seed_hyps` (seed -> model -> direction -> lines: the seeds stage's models) adds `across_seeds`, with
    `main_seed` the seed of `hyps`' models."""
    baseline = roles.baseline
    if baseline not in hyps:
        raise PipelineError(f"evaluate.models: the baseline {baseline!r} must be evaluated")
    seed_hyps = seed_hyps or {}
    seed_models = sorted(dict.fromkeys(m for by_model in seed_hyps.values() for m in by_model),
                         key=lambda m: m != baseline)  # the baseline first, the others as given
    if seed_hyps and main_seed is None:
        raise PipelineError("seeds: the main run's seed (train.seed) is needed to compare extra seeds")
    absent = [m for m in seed_models if m not in hyps]
    if absent:
        raise PipelineError(f"seeds.models: {', '.join(absent)} not evaluated for the main seed "
                            "(add to evaluate.models)")
    for seed, by_model in seed_hyps.items():
        missing = [m for m in seed_models if m not in by_model]
        if missing:
            raise PipelineError(f"seeds: seed {seed} lacks {', '.join(missing)} (rerun `dvc repro seeds`)")
        if seed == main_seed:
            raise PipelineError(f"seeds: seed {seed} is the main run's train.seed, not an extra one")
    bs = Bootstrap({**hyps, **{seed_system(m, s, main_seed): h for s, by_model in seed_hyps.items()
                               for m, h in by_model.items()}},
                   refs, cfg.bootstrap_resamples, cfg.seed)
    conf, directions = cfg.confidence, bs.directions
    systems = {s: per_scope(lambda m, s=s: system_score(bs, s, m, conf), groups, directions)
               for s in hyps}
    versus = {s: per_scope(lambda m, s=s: difference(bs, s, baseline, m, conf), groups, directions)
              for s in hyps if s != baseline}
    controls = {a: {"control": c, **per_scope(lambda m, a=a, c=c: difference(bs, a, c, m, conf),
                                              groups, directions)}
                for a, c in roles.controls.items() if a in hyps and c in hyps}
    fractions = {}
    for approach in (a for a in roles.approaches if a in hyps):
        for label, reference in roles.references.items():
            if reference not in hyps:
                continue
            fraction = {
                "approach": approach, "reference": reference, "reference_label": label,
                "definition": f"(BLEU_{approach} - BLEU_{baseline}) / (BLEU_{reference} - BLEU_{baseline})",
                **per_scope(lambda m, a=approach, r=reference: gain_fraction(bs, a, r, baseline, m, cfg),
                            groups, directions)}
            control = controls.get(approach)
            for kind in ("groups", "directions"):
                for key, value in fraction[kind].items():
                    value["confounded"] = confounded(approach, control, (control or {}).get(kind, {}).get(key),
                                                     baseline, conf)
            fractions[f"{approach}_vs_{label}"] = fraction
    setup = {"baseline": baseline, "roles": roles.as_dict(), "references": roles.references,
             "approaches": list(roles.approaches),
             "controls": {a: c for a, c in roles.controls.items() if a in controls},
             "systems": list(hyps), "directions": directions, "groups": groups,
             "sentences": {d: len(r) for d, r in refs.items()}, "resamples": cfg.bootstrap_resamples,
             "seed": cfg.seed, "confidence": conf, "min_reference_gain": cfg.min_reference_gain,
             "max_fraction_ci_points": cfg.max_fraction_ci_points, "signatures": bs.signatures,
             "interval": "percentile", "p_value": "paired bootstrap, two-sided (sacrebleu paired-bs)",
             "p_value_floor": 1 / (cfg.bootstrap_resamples + 1)}
    result = {"systems": systems, "vs_baseline": versus, "vs_control": controls, "fractions": fractions}
    if seed_hyps:
        result["across_seeds"] = across_seeds(bs, main_seed, sorted(seed_hyps), seed_models, directions,
                                              conf, roles)
        result["across_seeds"]["fractions"] = fractions_over_seeds(result["across_seeds"], roles, cfg)
    return {"setup": setup, **result, "paper": PAPER}


# --------------------------------------------------------------------------------------------------
# files


def load_hypotheses(evaluations_dir: Path, systems: Sequence[str], directions: Sequence[str]
                    ) -> dict[str, dict[str, list[str]]]:
    hyps = {}
    for system in systems:
        folder = Path(evaluations_dir) / system
        if not (folder / "hyps").is_dir():
            raise PipelineError(f"{folder / 'hyps'}: no evaluation of {system!r} "
                                f"(run `dvc repro evaluate@{system}`)")
        hyps[system] = {d: read_lines(folder / "hyps" / f"{d}.txt") for d in directions}
    return hyps


def align(hyps: dict[str, dict[str, list[str]]], refs: dict[str, list[str]],
          evaluations_dir: Path) -> dict[str, list[str]]:
    """References cut to the hypotheses' length (evaluate.max_sentences keeps the first N pairs);
    every system must have the same number of lines per direction."""
    out = {}
    for direction, references in refs.items():
        counts = {s: len(h[direction]) for s, h in hyps.items()}
        n = next(iter(counts.values()))
        for system, count in counts.items():
            if count != n or count > len(references) or count == 0:
                raise PipelineError(
                    f"{Path(evaluations_dir) / system / 'hyps' / (direction + '.txt')}: {count} lines, "
                    f"expected {n} like the other systems (<= {len(references)} test pairs, > 0)")
        out[direction] = references[:n]
    return out


def run_compare(evaluations_dir: str | Path, corpus_dir: str | Path, systems: Sequence[str],
                cfg: CompareConfig, roles: Roles = Roles(), high_resource: Sequence[str] = (),
                seeds_dir: Optional[str | Path] = None, main_seed: Optional[int] = None) -> dict:
    """Read every system's hypotheses and the test references, and compare them (see compare_systems).
    `high_resource` is used only if the corpus's meta.json does not list the high-resource languages.
    `seeds_dir` (the seeds stage's reports folder) adds the extra seeds' models; its index must name
    `main_seed` (train.seed) as the main run's seed."""
    from pipeline.data.corpus import load_split

    start = time.perf_counter()
    meta = read_corpus_meta(Path(corpus_dir))
    directions = meta["directions"]
    hyps = load_hypotheses(Path(evaluations_dir), systems, directions)
    seed_hyps = {}
    if seeds_dir is not None:
        from pipeline.seeds import INDEX, load_seed_hypotheses

        index, seed_hyps = load_seed_hypotheses(seeds_dir, directions)
        if seed_hyps and index["main_seed"] != main_seed:
            raise PipelineError(f"{Path(seeds_dir) / INDEX}: made with train.seed {index['main_seed']}, "
                                f"params say {main_seed} (rerun `dvc repro seeds`)")
    test = load_split(Path(corpus_dir), "test")
    missing = [d for d in directions if d not in test]
    if missing:
        raise PipelineError(f"{Path(corpus_dir) / 'test'}: no test pairs for {', '.join(missing)}")
    refs = align(hyps, {d: [p.target for p in test[d]] for d in directions}, Path(evaluations_dir))
    for seed, by_model in seed_hyps.items():
        for model, by_direction in by_model.items():
            for direction, lines in by_direction.items():
                if len(lines) != len(refs[direction]):
                    from pipeline.seeds import seed_folder

                    raise PipelineError(
                        f"{Path(seeds_dir) / seed_folder(seed) / 'evaluate' / model / 'hyps' / (direction + '.txt')}: "
                        f"{len(lines)} lines, expected {len(refs[direction])} like the main evaluation "
                        "(evaluate.max_sentences changed? rerun `dvc repro seeds`)")
    high = meta.get("high_resource", list(high_resource))
    result = compare_systems(hyps, refs, direction_groups(directions, meta["pivot"], high), cfg, roles,
                             seed_hyps=seed_hyps, main_seed=main_seed)
    result["setup"].update(pivot=meta["pivot"], high_resource=high,
                           wall_seconds=time.perf_counter() - start)
    return result
