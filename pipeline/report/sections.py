"""The report's sections, rendered from `Inputs` and the verdicts (`pipeline.report.verdicts`).

Each function returns one Markdown section. Model names come from the roles compare.json records
(`Inputs.roles`), so with `distill.teacher: task_moe` every section calls task_moe the teacher.
"""

from __future__ import annotations

import logging
from typing import Optional

from pipeline.evaluate import GROUPS
from pipeline.report.inputs import Inputs, engine_bleu
from pipeline.report.loss import lead_words, loss_table
from pipeline.report.markdown import NA, count, json_tables, md_table, num, pct
from pipeline.report.provenance import hardware, lock_hashes, packages
from pipeline.report.verdicts import Verdict, format_p
from pipeline.stats.compare import seed_differences

log = logging.getLogger(__name__)

TRAIN_KEYS = ("params_total", "params_active_per_token", "steps", "tokens_per_second", "wall_seconds",
              "threads", "val_loss", "best_val_loss", "val_bleu", "device")


def group_label(group: str, pivot: str) -> str:
    return {"avg": "average", "xx_to_pivot": f"xx→{pivot}", "pivot_to_xx": f"{pivot}→xx",
            "high": "high-resource", "low": "low-resource"}.get(group, group)


def bleu_ci(score: dict) -> str:
    return f"{score['bleu']:.2f} [{score['low']:.2f}, {score['high']:.2f}]"


def fraction_cell(frac: dict) -> str:
    """A fraction with its interval and status; `not informative` / `undefined` say so."""
    status = frac.get("status") or ("ok" if frac.get("value") is not None else "undefined")
    if status == "undefined":
        return "undefined"
    text = f"{pct(frac['value'], 0)} [{pct(frac['low'], 0)}, {pct(frac['high'], 0)}]"
    if status == "not_informative":
        text += " (not informative)"
    if frac.get("confounded"):
        text += " (confounded by extra training)"
    return text


# --------------------------------------------------------------------------------------------------
# the first screen


def answer_section(inputs: Inputs, verdicts: list[Verdict], sentence: str) -> str:
    """The verdict table, the one-sentence answer, the reasons behind flagged verdicts and what the
    intervals cover."""
    rows = [[v.question, v.paper, v.cell(), v.covers_short, v.verdict] for v in verdicts]
    grouped: dict[str, list[str]] = {}
    for v in verdicts:
        if v.why and not v.key.endswith("_gain") and v.holds is not True:
            grouped.setdefault(v.why, []).append(v.question.rstrip("?"))
    reasons = [f"- {' / '.join(questions)}: {why}" for why, questions in grouped.items()]
    seeds = (inputs.compare.get("across_seeds") or {}).get("seeds")
    if seeds and inputs.compare["across_seeds"].get("fractions"):
        covers = (f"The gains, the fractions and the student-against-control row rest on {len(seeds)} training "
                  f"seeds ({', '.join(map(str, seeds))}): a {inputs.confidence:.0%} Student's t interval over "
                  "the per-seed differences, and for a fraction over every seed's share, each from its own "
                  "seed's models (the section Across training seeds lists them; the main seed's own "
                  "fractions, resampling test sentences, are in the section on gains).")
    elif seeds:
        covers = (f"The gains and the student-against-control row rest on {len(seeds)} training seeds "
                  f"({', '.join(map(str, seeds))}): a {inputs.confidence:.0%} Student's t interval over the "
                  "per-seed differences. The fractions rest on the main seed's models, resampling test "
                  "sentences only.")
    else:
        covers = (f"Every interval is a {inputs.confidence:.0%} paired bootstrap over test sentences: it covers "
                  "the sampling of the test set, not training variance. Retraining the same recipe on "
                  "another machine has moved a gain outside such an interval (+0.04 to +0.21 BLEU); "
                  "`seeds.extra` retrains every model with more seeds and the verdicts then rest on those.")
    min_gain = inputs.setup.get("min_reference_gain")
    width = inputs.setup.get("max_fraction_ci_points")
    rules = ""
    if min_gain is not None and width is not None:
        rules = (f" A fraction is *not informative* when its reference gain is under {min_gain:g} BLEU or its "
                 f"interval spans more than {width:g} percentage points (compare.min_reference_gain, "
                 "compare.max_fraction_ci_points), and *undefined* when the reference gain may be 0.")
    return "\n".join([
        "## Answer\n",
        md_table(["question", "paper", f"this run [{inputs.confidence:.0%} CI]", "interval covers", "verdict"],
                 rows),
        f"\n**{sentence}**\n",
        *reasons + ([""] if reasons else []),
        covers + rules])


def bleu_section(inputs: Inputs) -> str:
    c, pivot = inputs.compare, inputs.pivot
    groups = [g for g in GROUPS if g in next(iter(c["systems"].values()))["groups"]]
    rows = [[name + (" (no result: degenerate translations)" if inputs.degenerate(name) else ""),
             inputs.roles.describe(name), _routing(inputs, name)]
            + [bleu_ci(c["systems"][name]["groups"][g]) for g in groups] for name in inputs.systems]
    conf = f"{c.get('setup', {}).get('confidence', 0.95):.0%}"
    text = [f"## BLEU per model\n\nSacreBLEU corpus BLEU averaged over directions, [{conf} paired "
            "bootstrap interval].\n",
            md_table(["model", "role", "routing (enc/dec)"] + [group_label(g, pivot) for g in groups], rows)]
    directions = c.get("setup", {}).get("directions") or list(
        next(iter(c["systems"].values()))["directions"])
    per_dir = []
    for d in directions:
        cells = []
        for name in inputs.systems:
            chrf = inputs.evaluations.get(name, {}).get("directions", {}).get(d, {}).get("chrf")
            cells.append(f"{num(c['systems'][name]['directions'][d]['bleu'])} / {num(chrf)}")
        per_dir.append([d] + cells)
    text += ["\n### Per direction: BLEU / chrF\n",
             md_table(["direction"] + inputs.systems, per_dir)]
    return "\n".join(text)


def _routing(inputs: Inputs, name: str) -> str:
    cfg = inputs.model_configs.get(name)
    if cfg and "encoder_routing" in cfg:
        return f"{cfg['encoder_routing']}/{cfg.get('decoder_routing', '?')}"
    return NA


def _seed_words(seeds: Optional[dict], kind: str, model: str, subject: str, conf: str,
                verdicts: tuple[str, str] = ("the gain holds across seeds", "a loss across seeds")) -> Optional[str]:
    """One sentence: a difference across training seeds (compare.json `across_seeds`): `kind` "gains"
    (`model` against dense) or "vs_control" (`model` against its equal-steps control).

    The verdict needs both intervals: the t-interval over seeds (does retraining keep the difference?) and
    the sentence bootstrap of the mean (is the mean difference more than this test set's noise?); `verdicts`
    words the two outcomes that clear 0 (ahead, behind)."""
    g = (seeds or {}).get(kind, {}).get(model)
    if not g:
        return None
    n = len(seeds["seeds"])
    per = ", ".join(f"{d:+.2f}" for d in g["per_seed"])
    counts = f"a significant gain in {g['significant_in']} of {n}"
    if g.get("significant_loss_in"):
        counts += f", a significant loss in {g['significant_loss_in']}"
    spread = (f"{conf} t-interval over seeds [{g['seed_low']:+.2f}, {g['seed_high']:+.2f}], seed-to-seed SD "
              f"{g['seed_sd']:.2f}; over test sentences [{g['sentence_low']:+.2f}, {g['sentence_high']:+.2f}]")
    if n < 3:  # two close differences give a narrow t-interval by chance: no verdict over seeds from two
        verdict = "two seeds are too few to judge the spread over seeds (the t-interval has one degree of freedom)"
    elif g["seed_low"] > 0 and g["sentence_low"] > 0:
        verdict = verdicts[0]
    elif g["seed_high"] < 0 and g["sentence_high"] < 0:
        verdict = verdicts[1]
    else:
        verdict = "across seeds it is not distinguishable from 0"
    return (f"Over {n} training seeds ({', '.join(map(str, seeds['seeds']))}) {subject} is "
            f"{per} ({counts}); mean {g['mean']:+.2f}, {spread}: {verdict}.")


def _control_verdicts(approach: str, control: str) -> tuple[str, str]:
    return f"{approach} is ahead of {control} across seeds", f"{approach} is behind {control} across seeds"


def seeds_section(inputs: Inputs) -> str:
    c = inputs.compare
    conf = f"{c.get('setup', {}).get('confidence', 0.95):.0%}"
    seeds = c.get("across_seeds")
    title = "## Across training seeds\n\n"
    if not seeds:
        seed = (inputs.seeds or {}).get("main_seed")
        which = f"train.seed {seed}" if seed is not None else "train.seed"
        models = (inputs.seeds or {}).get("models")
        listed = f" and seeds.models ({', '.join(models)})" if models else " and seeds.models"
        return (title + f"One training seed ({which}). The intervals above resample test sentences with "
                "the trained models held fixed: they do not say how much retraining with another seed "
                "moves a gain. `dvc exp run -S 'seeds.extra=[2,3]'` retrains the warm start" + listed
                + " with more seeds (the seeds stage) and this section then sets their gains side by side.")
    models = seeds["models"]
    columns = seed_differences(seeds)
    rows = []
    for seed in seeds["seeds"]:
        row = seeds["per_seed"][str(seed)]
        cells = [f"{seed}" + (" (main run)" if seed == seeds["main_seed"] else ""),
                 num(row["bleu"][models[0]], 2)]
        for kind, m, _ in columns:
            g = row[kind][m]
            mark = " *" if g["significant"] else ""
            cells += ([num(row["bleu"][m], 2)] if kind == "gains" else []) + [
                f"{g['diff']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]{mark}"]
        rows.append(cells)
    mean_row, t_row = ["mean over seeds", NA], [f"{conf} t-interval over seeds (SD)", num(seeds["baseline_sd"], 2)]
    header = ["seed", f"{models[0]} BLEU"]
    for kind, m, reference in columns:
        g = seeds[kind][m]
        blank = [NA] if kind == "gains" else []
        mean_row += blank + [f"{g['mean']:+.2f} [{g['sentence_low']:+.2f}, {g['sentence_high']:+.2f}]"]
        t_row += blank + [f"[{g['seed_low']:+.2f}, {g['seed_high']:+.2f}] ({g['seed_sd']:.2f})"]
        header += ([f"{m} BLEU"] if kind == "gains" else []) + [f"{m} − {reference} [CI]"]
    controls = "".join(f", and {m} against its own seed's {reference}"
                       for kind, m, reference in columns if kind == "vs_control")
    out = [title + f"The main run and the seeds stage's retrained models (seeds.extra), each model against "
           f"its own seed's {models[0]}{controls}, on the same test sentences and bootstrap resamples; "
           f"* = the {conf} interval excludes 0. The mean's interval resamples sentences (models fixed); the "
           "t-interval is over the per-seed differences (how much retraining moves them; wide with few "
           "seeds). The SD in the dense column is dense's own BLEU across seeds.\n",
           md_table(header, rows + [mean_row, t_row])]
    for kind, m, reference in columns:
        if kind == "gains":
            words = _seed_words(seeds, kind, m, f"{m}'s gain over {reference}", conf)
        else:
            words = _seed_words(seeds, kind, m, f"{m} against {reference}", conf, _control_verdicts(m, reference))
        if words:
            out.append(f"\n- {words}")
    for f in (seeds.get("fractions") or {}).values():
        out.append("\n- " + _seed_fraction_words(f, seeds["seeds"], conf))
    return "\n".join(out)


def _seed_fraction_words(f: dict, seeds: list, conf: str) -> str:
    """One sentence: a fraction over training seeds (compare.json `across_seeds.fractions`)."""
    what = f"{f['approach']}'s share of {f['reference']}'s gain"
    gains = ", ".join(f"{a:+.2f} / {r:+.2f}" for a, r in zip(f["approach_gains"], f["reference_gains"]))
    text = f"Over {len(seeds)} training seeds ({', '.join(map(str, seeds))}) {what} is, seed by seed, {gains} BLEU"
    if f["per_seed"] is not None:
        text += (" = " + ", ".join(f"{100 * x:.0f}%" for x in f["per_seed"])
                 + f"; mean {100 * f['mean']:.0f}%, {conf} t-interval over seeds "
                 f"[{100 * f['seed_low']:.0f}%, {100 * f['seed_high']:.0f}%]")
    status = {"ok": "defined", "not_informative": "not informative", "undefined": "undefined"}[f["status"]]
    return text + f": {status}" + (f" ({f['reason']})." if f.get("reason") else ".")


def gains_section(inputs: Inputs) -> str:
    c, pivot, roles = inputs.compare, inputs.pivot, inputs.roles
    conf = inputs.confidence
    floor = inputs.setup.get("p_value_floor")
    groups = [g for g in GROUPS if g != "avg"]
    rows = []
    for name, v in c["vs_baseline"].items():
        p = v["groups"]["avg"]
        rows.append([name, f"{p['diff']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]",
                     f"p {format_p(p['p_value'], floor)}", "yes" if p["significant"] else "no"]
                    + [f"{v['groups'][g]['diff']:+.2f}" if g in v["groups"] else NA for g in groups])
    out = [f"## Gains over {roles.baseline} and the fraction of gains preserved\n\nDifference to "
           f"{roles.baseline} in average BLEU, paired bootstrap; significant = the {conf:.0%} interval excludes "
           "0 (the p-value is sacrebleu's paired test).\n",
           md_table(["model", "Δ BLEU avg [CI]", "p", "significant"]
                    + [f"Δ {group_label(g, pivot)}" for g in groups], rows)]
    for approach, control in (c.get("vs_control") or {}).items():
        p = control["groups"]["avg"]
        row = ([f"{approach} − {control['control']}"]
               + [f"{v['diff']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]" if v else NA
                  for v in (control["groups"].get(g) for g in GROUPS)]
               + [f"p {format_p(p['p_value'], floor)}", "yes" if p["significant"] else "no"])
        out += [f"\nAgainst its equal-steps control, {control['control']} ({_control_what(inputs)}; stage "
                f"control): this difference is what the teacher adds beyond training as long.\n",
                md_table(["difference"] + [f"Δ {group_label(g, pivot)} [CI]" for g in GROUPS]
                         + ["p (avg)", "significant"], [row])]
    if roles.student in c["systems"]:
        out.append("\n" + " ".join(_student_words(inputs, f"{conf:.0%}")))
    if not c["fractions"]:
        out.append(f"\nFractions of gains preserved: not available ({roles.student} / {roles.sub} or the "
                   "reference systems were not evaluated).")
        return "\n".join(out)
    frac_groups = [g for g in GROUPS if g in next(iter(c["fractions"].values()))["groups"]]
    rows = [[key, f"`{f['definition']}`"] + [fraction_cell(f["groups"][g]) for g in frac_groups]
            for key, f in c["fractions"].items()]
    reasons = sorted({f"{key}: {f['groups']['avg'].get('reason') or f['groups']['avg'].get('undefined')}"
                      for key, f in c["fractions"].items()
                      if f["groups"]["avg"].get("reason") or f["groups"]["avg"].get("undefined")})
    confounded = sorted({f"{key}: {f['groups']['avg']['confounded']}" for key, f in c["fractions"].items()
                         if f["groups"]["avg"].get("confounded")})
    out += ["\nFraction of gains preserved, `(A − dense) / (R − dense)`, with percentile intervals "
            "from the same resamples.\n",
            md_table(["fraction", "definition"] + [group_label(g, pivot) for g in frac_groups], rows)]
    out += [f"\n- {r}" for r in reasons + confounded]
    directions = list(next(iter(c["fractions"].values()))["directions"])
    cells = {key: {d: fraction_cell(f["directions"][d]) for d in directions} for key, f in c["fractions"].items()}
    out.append("\n### Fractions per direction\n")
    if all(cell == "undefined" for by_dir in cells.values() for cell in by_dir.values()):
        out.append(f"Undefined in every direction and for every fraction: no reference gain is significant "
                   f"in any single direction ({len(directions)} directions).")
    else:
        out.append(md_table(["direction"] + list(cells), [[d] + [cells[k][d] for k in cells] for d in directions]))
    return "\n".join(out)


def _student_words(inputs: Inputs, conf: str) -> list[str]:
    """The student's own result, what it learned from, and the steps it trained that dense did not."""
    c, out, roles = inputs.compare, [], inputs.roles
    gain = inputs.avg("vs_baseline", roles.student)
    if gain:
        bleu = num(c["systems"][roles.student]["groups"]["avg"]["bleu"])
        out.append(f"The distilled student scores {bleu} BLEU, {gain['diff']:+.2f} against dense "
                   f"({conf} CI [{gain['low']:+.2f}, {gain['high']:+.2f}]).")
    cfg = inputs.distill or {}
    word = (cfg.get("word_level") or {}).get("enabled")
    targets = (inputs.distill_data or {}).get("bleu_vs_reference_avg")
    if targets is not None:
        out.append(f"It learned from the teacher's translations of the training sources"
                   f"{' and its token distributions' if word else ''}; those translations score "
                   f"{targets:.2f} BLEU against the references they replaced (section Distillation).")
    elif cfg and not cfg.get("sequence_level"):
        out.append("It was distilled at the word level, on the references with the teacher's token "
                   "distributions, not on the teacher's translations as in the paper (section Distillation).")
    longer = _student_steps_words(inputs, controlled=_control_words(inputs, conf))
    return out + [w for w in longer if w]


def _control_what(inputs: Inputs) -> str:
    """What the control is, from its own meta.json where present (else from the student's recipe)."""
    fresh = (inputs.control or {}).get("base", "") is None or \
        (inputs.distill or {}).get("student_init", "teacher") != "teacher"
    if fresh:
        return "a fresh dense model trained as many steps as the student on the references, without the teacher"
    own, student = (inputs.control or {}).get("schedule_offset"), (inputs.distill or {}).get("schedule_offset")
    if own == student or own is None or student is None:
        return ("the dense baseline trained the student's steps too, on the same lr schedule and the references, "
                "without the teacher")
    return (f"the dense baseline trained the student's steps too, on the references without the teacher, its "
            f"lr schedule from step {own:,} and the student's from {student:,}")


def _control_words(inputs: Inputs, conf: str) -> Optional[str]:
    """The student against its equal-steps control (compare.json's vs_control), if it was evaluated."""
    c, roles = inputs.compare, inputs.roles
    control = (c.get("vs_control") or {}).get(roles.student) or {}
    avg = (control.get("groups") or {}).get("avg")
    name = control.get("control", roles.control)
    if not avg or name not in c["systems"]:
        return None
    if not avg["significant"]:
        verdict = "the student is not distinguishable from dense trained as long"
    elif avg["diff"] > 0:
        verdict = "what the student takes from the teacher adds a significant gain over training dense as long"
    else:
        verdict = "training dense as long without the teacher does significantly better than the student"
    return (f"Its equal-steps control, {name} ({_control_what(inputs)}), scores "
            f"{num(c['systems'][name]['groups']['avg']['bleu'])} BLEU, and the student is {avg['diff']:+.2f} "
            f"against it ({conf} CI [{avg['low']:+.2f}, {avg['high']:+.2f}], "
            f"p {format_p(avg['p_value'], inputs.setup.get('p_value_floor'))}): "
            f"{verdict}.")


def _student_steps(inputs: Inputs) -> Optional[int]:
    """Steps the student trained: its metrics.json, else its distill.max_steps."""
    steps = (inputs.train.get(inputs.roles.student) or {}).get("steps") or (inputs.distill or {}).get("max_steps")
    return int(steps) if steps else None


def _teacher_end(inputs: Inputs) -> Optional[int]:
    """The teacher's last step, warm start included: the student's schedule offset, else its record."""
    cfg = inputs.distill or {}
    if cfg.get("schedule_offset"):
        return int(cfg["schedule_offset"])
    steps = (inputs.train.get(cfg.get("teacher") or inputs.roles.teacher) or {}).get("steps")
    warm = ((inputs.study or {}).get("setup") or {}).get("warmstart_steps") or 0
    return int(warm) + int(steps) if steps else None


def _student_steps_words(inputs: Inputs, controlled: Optional[str] = None) -> list[Optional[str]]:
    """A student started from the teacher trains on after it: say so, and what settles it (`controlled`:
    the sentence on the equal-steps control), else how much dense moved in as many of its own steps."""
    cfg = inputs.distill or {}
    steps, end = _student_steps(inputs), _teacher_end(inputs)
    if not cfg or cfg.get("student_init", "teacher") != "teacher" or not steps or not end:
        return [controlled]
    text = f"The student trained {steps:,} steps more after its teacher's {end:,}, which dense did not"
    if controlled:
        return [text + ", so its difference to dense mixes distillation with longer training.", controlled]
    text += (", so its difference to dense mixes distillation with longer training, and is no evidence "
             "for distillation by itself")
    points = {p["step"]: p["bleu"] for p in ((inputs.study or {}).get("bleu") or {}).get(inputs.roles.baseline, [])}
    if end in points and end - steps in points:
        text += (f"; over its own last {steps:,} steps dense's greedy validation BLEU (the learning-curve "
                 f"subset) moved {points[end] - points[end - steps]:+.2f}")
    return [text + "."]


def _test_budget_words(inputs: Inputs, teacher: dict) -> str:
    """Where the validation curve's fitted line would reach the half-width of the test interval."""
    line = ((inputs.study or {}).get("extrapolation", {}).get(inputs.roles.teacher) or {}).get("significant")
    if not line:
        return ""
    half = (teacher["high"] - teacher["low"]) / 2
    slope = line["slope_per_1000_steps"] / 1000
    if slope <= 0:
        if (inputs.study.get("first_significant_step") or {}).get(inputs.roles.teacher) is None:
            return ""  # the learning-curve sentence has said it (_curve_words)
        return (" The validation gain does not grow after the warm start, so the curves give no budget "
                "at which it would.")
    steps = (half - line["intercept"]) / slope
    last = inputs.study["setup"]["steps"][-1]
    if steps <= last:
        return ""
    per_step = inputs.seconds_per_step(inputs.roles.teacher)
    hours = f" (~{steps * per_step / 3600:.1f} h of training per model at this run's speed)" if per_step else ""
    return (f" Extrapolating the validation gain's line, it would reach the test interval's half-width "
            f"({half:.2f} BLEU) at about step {steps:,.0f}{hours}: a rough budget for a significant "
            "gain, not a measurement.")


def _curve_words(inputs: Inputs, name: str) -> Optional[str]:
    """One sentence on `name`'s gain over dense along the learning curve, and the extrapolated budget."""
    study = inputs.study or {}
    gains = study.get("gain_vs_dense", {}).get(name)
    if not gains:
        return None
    setup = study.get("setup", {})
    conf = f"{setup.get('confidence', 0.95):.0%}"
    last, first = gains[-1], study.get("first_significant_step", {}).get(name)
    text = (f"{name} − dense at step {last['step']:,} is {last['diff']:+.2f} BLEU ({conf} CI "
            f"[{last['low']:+.2f}, {last['high']:+.2f}]); ")
    if first is not None:
        text += f"the gain first excludes 0 at step {first:,}."
    else:
        text += f"its interval is above 0 at no validation step up to {last['step']:,}."
    extra = (study.get("extrapolation", {}).get(name) or {})
    sig, target = extra.get("significant"), extra.get("target")
    if first is None and sig:
        if sig.get("step_reaching_target") is None:
            text += (f" After the warm start the gain does not grow ({sig['slope_per_1000_steps']:+.2f} "
                     "BLEU per 1000 steps), so these curves give no budget at which it would be "
                     "significant.")
        else:
            per_step = inputs.seconds_per_step(name)
            steps = sig["step_reaching_target"]
            budget = f"about step {steps:,.0f}"
            if per_step:
                budget += f" (~{steps * per_step / 3600:.1f} h of training per model at this run's speed)"
            text += (f" Extrapolated linearly ({sig['slope_per_1000_steps']:+.2f} BLEU per 1000 steps "
                     f"after the warm start), it would clear its interval's half-width "
                     f"({sig['target_gain']:.2f}) at {budget}")
            if target and target.get("step_reaching_target") is not None \
                    and target["target_gain"] > last["diff"]:
                text += (f" and reach {target['target_gain']:+.1f} BLEU at about step "
                         f"{target['step_reaching_target']:,.0f}")
            text += "; an extrapolation, not a measurement."
    return text


def curves_section(inputs: Inputs) -> str:
    study = inputs.study
    if not study or not study.get("bleu"):
        return "## Learning curves\n\nnot available (reports/curves.json missing)"
    setup = study.get("setup", {})
    conf = f"{setup.get('confidence', 0.95):.0%}"
    models = list(study["bleu"])
    gains = study.get("gain_vs_dense", {})
    by_step = {m: {p["step"]: p for p in points} for m, points in study["bleu"].items()}
    gain_by_step = {m: {p["step"]: p for p in points} for m, points in gains.items()}
    rows = []
    for step in setup.get("steps", []):
        row = [f"{step:,}"] + [bleu_ci(by_step[m][step]) for m in models]
        for m in gains:
            g = gain_by_step[m][step]
            mark = " *" if g["significant"] else ""
            row.append(f"{g['diff']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]{mark}")
        rows.append(row)
    warm = setup.get("warmstart_steps") or 0
    intro = (f"## Learning curves: does the MoE overtake dense, and when?\n\nGreedy BLEU on the first "
             f"{setup.get('sentences_per_direction', '?')} validation pairs of each of "
             f"{len(setup.get('directions', []))} directions at every validation step, averaged over "
             f"directions, [{conf} paired bootstrap interval]; * = the gain's interval excludes 0. "
             f"(reports/curves.json, from reports/train/<model>/val_hyps.)")
    if warm:
        intro += (f" Steps up to {warm:,} are the shared dense warm start: until then the models are "
                  "the same model; after it the MoE models are upcycled copies and dense continues.")
    out = [intro + "\n", md_table(["step"] + models + [f"{m} − dense" for m in gains], rows)]
    for m in gains:
        words = _curve_words(inputs, m)
        if words:
            out.append(f"\n- {words}")
    table = loss_table(study)
    if table:
        out.append("\n" + table)
        for m in (study.get("loss") or {}).get("lead_vs_dense", {}):
            test = inputs.avg("vs_baseline", m)
            words = lead_words(study, m, inputs.seconds_per_step(m), test["diff"] if test else None)
            if words:
                out.append(f"\n- {words}")
    return "\n".join(out)


def paper_section(inputs: Inputs) -> str:
    from pipeline.stats.compare import PAPER

    c, roles = inputs.compare, inputs.roles
    t1, t2 = PAPER["table1"]["bleu"], PAPER["table2"]["bleu"]
    ours = {name: v["groups"]["avg"] for name, v in c["systems"].items()}
    # the paper's names for our roles
    ours_as_paper = {"dense": roles.baseline, "token_moe": roles.teacher, "task_moe": roles.task_moe,
                     "student": roles.student}
    names = list(dict.fromkeys([*t1, *t2]))
    rows = [[n + (f" (ours: {ours_as_paper[n]})" if ours_as_paper.get(n, n) != n else ""), num(t1.get(n)),
             num(t2.get(n)), bleu_ci(ours[ours_as_paper.get(n, n)]) if ours_as_paper.get(n, n) in ours else NA]
            for n in names]
    rows += [[n, NA, NA, bleu_ci(ours[n])] for n in ours if n not in ours_as_paper.values()]
    for label, what in (("task_moe", "task-MoE denominator (the paper prints 32.25%)"),
                        ("teacher", "teacher denominator")):
        frac = inputs.avg("fractions", f"{roles.student}_vs_{label}")
        rows.append([f"student fraction, {what}", NA, pct(PAPER["table2"][f"fraction_student_vs_{label}"], 2),
                     fraction_cell(frac) if frac else "not available"])
    n_dirs = len(inputs.setup.get("directions", []))
    return "\n".join([
        "## The paper's numbers beside ours\n",
        md_table(["system", "paper Table 1 (30 dir.)", "paper Table 2 (8 dir.)",
                  f"this run ({n_dirs} dir.) [{inputs.confidence:.0%} CI]"], rows),
        f"\n{PAPER['explanation']} Our corpus, model size and training budget are far smaller than the "
        "paper's, so absolute BLEU is not comparable; the fractions (ratios of gains) are the quantities to "
        "set side by side, read with their intervals."])


def throughput_section(inputs: Inputs) -> str:
    b, roles = inputs.benchmark, inputs.roles
    if not b or not b.get("models"):
        return "## Serving cost\n\nnot available (reports/benchmark.json missing)"
    reference = b.get("reference", roles.teacher)
    base = b["models"].get(reference, {}).get("peak_tokens_per_second")
    averages = {name: inputs.avg("systems", name) or {} for name, m in b["models"].items()
                if m.get("engine", "pytorch") == "pytorch"}
    bleu = {name: engine_bleu(m, averages) if m.get("engine") == "ctranslate2" else averages[name].get("bleu")
            for name, m in b["models"].items()}
    rows = [[name, m.get("engine", "pytorch"), num(m.get("peak_tokens_per_second"), 0),
             num(m.get("peak_sentences_per_second"), 1),
             str(m.get("best_batch_size", NA)), count(m.get("resident_params")), count(m.get("params_total")),
             num(m.get("weights_mb"), 1), num(_peak_memory(m), 0),
             f"{m['peak_tokens_per_second'] / base:.2f}x" if base and m.get("peak_tokens_per_second") else NA,
             num(bleu.get(name), 2) + (" †" if m.get("engine") == "ctranslate2" and bleu.get(name) is not None else "")]
            for name, m in b["models"].items()]
    return "\n".join([
        f"## Serving cost\n\nDecoding `{b.get('direction', '?')}` on {b.get('device', '?')}, beam "
        f"{b.get('beam_size', '?')}, {b.get('sentences', '?')} sentences; peak over batch sizes; BLEU is the "
        "test average of the same model (CTranslate2 rows, marked †: see the note under the table).\n",
        md_table(["model", "engine", "peak tokens/s", "peak sentences/s", "best batch",
                  "resident params (one task)", "params total", "weights MB", "peak GPU memory MB",
                  f"tokens/s vs {reference}", "BLEU"], rows)] + _engine_notes(b))


def _engine_notes(b: dict) -> list[str]:
    """What the CTranslate2 rows are, their exactness check and the models without one."""
    ct2 = b.get("ctranslate2")
    if not ct2:
        return []
    rows = [(n, m) for n, m in b["models"].items() if m.get("engine") == "ctranslate2"]
    checks = [f"{n} ({_threads(m.get('threads'))}): {m['greedy_vs_pytorch']['mismatches']} of "
              f"{m['greedy_vs_pytorch']['sentences']} greedy "
              "translations differ from PyTorch's"
              + (f", BLEU {m['bleu']:.2f} against PyTorch's {m['bleu_pytorch']:.2f} on the same sentences "
                 f"({m['bleu_change_vs_pytorch']:+.2f})" if m.get("bleu_change_vs_pytorch") is not None
                 else f", BLEU {m['bleu']:.2f}" if m.get("bleu") is not None else "")
              + (f", {m['bleu_change_vs_float32']:+.2f} against float32" if m.get("bleu_change_vs_float32") is not None
                 else "")
              for n, m in rows]
    first = rows[0][1] if rows else {}
    per_direction = (first.get("bleu_decode") or {}).get("max_sentences")
    covered = (f"the first {per_direction} test sentences of each direction ({first.get('bleu_sentences')} in all)"
               if per_direction else "the whole test set")
    out = [f"\nCTranslate2 {ct2.get('version', '?')} rows ({ct2.get('device', '?')}, the same sentences and batch "
           f"sizes, and at most the PyTorch rows' {ct2.get('threads', '?')} threads: each row at the faster of "
           "1 and that many intra-op threads, named below). Their BLEU is CTranslate2's own beam search on "
           f"{covered}, and each is compared with the PyTorch model's BLEU on those sentences; † in the table: "
           "the PyTorch model's test BLEU plus that change, so that every row of the BLEU column stands on "
           "the whole test set: "
           + ("; ".join(checks) or "none") + "."]
    out += [f"- no CTranslate2 row for {n}: {why}" for n, why in (ct2.get("skipped") or {}).items()]
    return out


def _threads(count) -> str:
    return "engine default threads" if count == 0 else f"{count} thread" + ("" if count == 1 else "s")


def _peak_memory(model: dict) -> Optional[float]:
    """Top-level peak_memory_mb, else the largest of the sweep's."""
    if model.get("peak_memory_mb") is not None:
        return model["peak_memory_mb"]
    values = [r["peak_memory_mb"] for r in model.get("sweep") or [] if r.get("peak_memory_mb") is not None]
    return max(values) if values else None


def extraction_section(inputs: Inputs) -> str:
    return "## Extraction check (reports/extract.json)\n\n" + json_tables(inputs.extract)


def hypotheses_section(inputs: Inputs) -> Optional[str]:
    """Models whose test translations are degenerate: they have no result."""
    broken = {m: inputs.degenerate(m) for m in inputs.systems if inputs.degenerate(m)}
    if not broken:
        return None
    return ("## Degenerate translations\n\nThese models' test translations are no result; every verdict "
            "that uses them says so:\n\n" + "\n".join(f"- {m}: {why}" for m, why in broken.items()))


def data_section(inputs: Inputs) -> str:
    meta, setup = inputs.corpus_meta or {}, inputs.compare.get("setup", {})
    lines = ["## Data\n",
             f"- languages: {', '.join(meta.get('languages', [])) or NA}; pivot {inputs.pivot}; "
             f"high-resource: {', '.join(setup.get('high_resource') or meta.get('high_resource', [])) or NA}",
             f"- test sentences per direction: "
             f"{', '.join(f'{d} {n}' for d, n in setup.get('sentences', {}).items()) or NA}"]
    lines += ["\n### Corpus statistics (reports/prepare/stats.json)\n", json_tables(inputs.prepare_stats)]
    return "\n".join(lines)


def training_section(inputs: Inputs) -> str:
    if not inputs.train:
        return "## Training\n\nnot available (no reports/train/*/metrics.json)"
    keys = [k for k in TRAIN_KEYS if any(k in m for m in inputs.train.values())]
    rows = [[name] + [_train_cell(k, m.get(k)) for k in keys] for name, m in inputs.train.items()]
    return "## Training\n\n" + md_table(["model"] + keys, rows)


def _distill_method(cfg: Optional[dict], trained: Optional[int] = None) -> Optional[str]:
    """The distillation recipe in words, from the student's meta.json (`trained`: its steps, if known)."""
    if not cfg:
        return None
    ways = []
    if cfg.get("sequence_level"):
        ways.append("sequence-level (the teacher's translations as targets; the paper's method)")
    word = cfg.get("word_level") or {}
    if word.get("enabled"):
        ways.append(f"word-level (loss = {1 - word.get('weight', 0.5):g} x cross-entropy + "
                    f"{word.get('weight', 0.5):g} x KL to the teacher's token distributions, temperature "
                    f"{word.get('temperature', 1.0):g})")
    init = ("from the teacher's non-expert weights (former MoE layers: "
            f"{cfg.get('ffn_init', '?')})" if cfg.get("student_init", "teacher") == "teacher"
            else "from fresh weights")
    offset = cfg.get("schedule_offset")
    schedule = (f"; its lr schedule continues from the teacher's step {offset:,}" if offset
                else "; its lr schedule starts at step 0")
    steps = (num(trained, 0) if trained else num(cfg["max_steps"], 0) if cfg.get("max_steps")
             else "train.max_steps")
    return (f"Method: {' and '.join(ways) or '?'}; the student starts {init}{schedule}, "
            f"and trains {steps} steps.")


def distillation_section(inputs: Inputs) -> str:
    """How the student was made, and what it learned from: the teacher's translations or the references."""
    title = "## Distillation\n\n"
    method = _distill_method(inputs.distill, _student_steps(inputs))
    if method:
        title += method + "\n\n"
    d = inputs.distill_data
    if not d or not d.get("directions"):
        return title + "Distillation data: not available (no distilled model with a distill_data record)"
    if not d.get("sequence_level", True):
        return title + ("The student trained on the references (data/distill holds them unchanged): the "
                        "teacher did not translate the training sources.")
    beam = (d.get("decode") or {}).get("beam_size", 1)
    signature = f" (`{d['bleu_signature']}`)" if d.get("bleu_signature") else ""
    intro = (f"The teacher ({d.get('teacher', '?')}) translated the source side of every training pair "
             f"({'greedy' if beam == 1 else f'beam {beam}'}); its translations replaced the references as "
             f"the student's targets (data/distill/meta.json), except where it said nothing and the reference "
             f"was kept. BLEU of all the targets written against the references, on the training split"
             f"{signature} (kept references count as exact matches):\n\n")
    rows = [[direction, num(r.get("pairs"), 0), num(r.get("teacher"), 0),
             num(r.get("empty_kept_reference"), 0), num(r.get("bleu_vs_reference"), 2)]
            for direction, r in sorted(d["directions"].items())]
    rows.append(["**average**", "", "", "", num(d.get("bleu_vs_reference_avg"), 2)])
    return title + intro + md_table(["direction", "pairs", "teacher's translation",
                                     "empty (reference kept)", "BLEU vs reference"], rows)


def _train_cell(key: str, value) -> str:
    if isinstance(value, str):
        return value
    if key.startswith("params"):
        return count(value)
    return num(value, 0 if key in ("steps", "tokens_per_second", "wall_seconds") else 3)


def wall_times(inputs: Inputs) -> list[list[str]]:
    """Seconds per stage as each stage recorded it (n/a where its output has no wall_seconds)."""
    seconds = [(f"train {n}", m.get("wall_seconds")) for n, m in inputs.train.items()]
    data = inputs.distill_data or {}
    what = "the teacher translates" if data.get("sequence_level", True) else "references copied"
    seconds.append((f"distill_data ({what})", data.get("wall_seconds")))
    seconds.append(("extract", (inputs.extract or {}).get("wall_seconds")))
    seconds += [(f"evaluate {n}", m.get("wall_seconds")) for n, m in inputs.evaluations.items()]
    seconds.append(("compare", inputs.compare.get("setup", {}).get("wall_seconds")))
    seconds.append(("curves", (inputs.study or {}).get("setup", {}).get("wall_seconds")))
    seconds.append(("benchmark", (inputs.benchmark or {}).get("wall_seconds")))
    if (inputs.seeds or {}).get("seeds"):
        rows = inputs.seeds["seeds"].values()
        seconds.append((f"seeds ({len(rows)} extra: train and evaluate)",
                        sum(v.get("train_seconds", 0) + v.get("evaluate_seconds", 0)
                            for row in rows for v in row.values() if isinstance(v, dict))
                        + sum(row.get("warmstart_seconds", 0) for row in rows)))
    rows = [[stage, num(value, 0)] for stage, value in seconds]
    known = [value for _, value in seconds if isinstance(value, (int, float))]
    rows.append(["total of the stages above", num(sum(known), 0) if known else "n/a"])
    return rows


def provenance_section(inputs: Inputs, commit: str, params: Optional[dict]) -> str:
    import yaml

    setup = inputs.compare.get("setup", {})
    chrf = next((d.get("chrf_signature") for m in inputs.evaluations.values()
                 for d in m.get("directions", {}).values()), None)
    signatures = [[d, sig] for d, sig in setup.get("signatures", {}).items()]
    hashes = lock_hashes(inputs.lock)
    hw = hardware()
    out = ["## Provenance\n", f"- code: git commit `{commit}`",
           f"- bootstrap: {setup.get('resamples', NA)} resamples, seed {setup.get('seed', NA)}, "
           f"{setup.get('interval', 'percentile')} intervals; p-value: {setup.get('p_value', NA)}",
           f"- hardware of this report stage: {hw['cpu']} ({hw['cpu_count']} CPUs, torch CPU capability "
           f"{hw['cpu_capability']}), {hw['platform']}, Python {hw['python']}, torch {hw['torch']}, GPU: "
           f"{hw['cuda'] or 'none'}",
           f"- training hardware: {_training_hardware(inputs)}",
           "- reproducibility: a rerun on the same CPU capability and thread count gives bit-identical "
           "checkpoints; on other hardware the figures should agree within their intervals, not the bytes",
           f"- benchmark device: {(inputs.benchmark or {}).get('device', NA)}",
           f"- chrF signature: `{chrf or NA}`",
           "\n### SacreBLEU signatures (BLEU)\n",
           md_table(["direction", "signature"], signatures) if signatures else NA,
           "\n### Data and checkpoint hashes (dvc.lock)\n",
           md_table(["stage", "output", "md5"], hashes) if hashes else "not available (no dvc.lock)",
           "\n### Wall time per stage (seconds)\n", md_table(["stage", "seconds"], wall_times(inputs)),
           "\n### Parameters\n"]
    if params is None:
        out.append(NA)
    else:
        out.append("```yaml\n" + yaml.safe_dump(params, sort_keys=False).rstrip() + "\n```")
    installed = packages()
    out += ["\n### Installed packages\n", f"<details><summary>{len(installed)} distributions</summary>\n",
            "```\n" + "\n".join(f"{k}=={v}" for k, v in installed.items()) + "\n```\n</details>"]
    return "\n".join(out)


def _training_hardware(inputs: Inputs) -> str:
    """CPU, capability and threads of every training, as each recorded them (metrics.json)."""
    seen: dict[str, list[str]] = {}
    for name, m in inputs.train.items():
        if m.get("cpu") or m.get("threads"):
            key = f"{m.get('cpu', '?')}, capability {m.get('cpu_capability', '?')}, {m.get('threads', '?')} threads"
            seen.setdefault(key, []).append(name)
    if not seen:
        return NA
    return "; ".join(f"{key} ({', '.join(names)})" for key, names in seen.items())


