"""The report's first screen as data: one `Verdict` per question, the one-sentence answer, the headline
metrics.

Every verdict is computed from compare.json (and extract.json, benchmark.json, the evaluations), states
its number with its interval and what that interval covers, and compares it with the paper. The prose of
`pipeline.report.sections` is rendered from these objects; tests check the objects (tests/report).

Rules (docs/design.md §3, §6):
- a gain is "yes" when its interval excludes 0 above it; with extra training seeds it rests on the
  t-interval over seeds and needs the sentence interval of the mean above 0 too;
- a fraction keeps compare's status: `ok`, `not_informative` (reference gain under
  `compare.min_reference_gain`, or interval wider than `compare.max_fraction_ci_points`) or `undefined`;
  with extra training seeds it rests on compare's fraction over seeds (mean of every seed's share, the
  t-interval over seeds, the same status rules applied to every seed);
  the student's is flagged "confounded by extra training" when its equal-steps control beats it;
- a model whose test translations are degenerate (mostly empty, or one line repeated) gives "no result"
  in every row it enters;
- the serving speed-up counts only beyond the spread between models of the same architecture in the same
  benchmark run (dense, the student and its control differ only in their weights): the largest
  difference seen between identical work is the benchmark's noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from pipeline.report.inputs import Inputs
from pipeline.stats.compare import PAPER

NO_RESULT = "no result"  # the model's translations are degenerate
NOT_MEASURED = "not measured"  # the model, or the file, is missing


@dataclass(frozen=True)
class Verdict:
    key: str  # stable identifier: teacher_gain, task_moe_gain, fraction_vs_task_moe, ...
    question: str
    paper: str  # the paper's figure, in words
    value: Optional[float]  # this run's point estimate (None: no result)
    low: Optional[float]
    high: Optional[float]
    unit: str  # "BLEU" (a difference), "%" (a fraction, stored as a ratio), "x" (a speed ratio), "logit"
    verdict: str  # the short answer
    holds: Optional[bool]  # True / False; None where there is no result or nothing to decide
    covers: str  # what the interval covers
    why: Optional[str] = None  # the reason behind an undefined / uninformative / flagged result

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def covers_short(self) -> str:
        """What the interval covers, in the table's few words."""
        if "t-interval over" in self.covers:
            return f"{self.covers.split('over ')[1]} (t)"
        if "test sentences only" in self.covers:
            return "test sentences, one run"
        if self.unit == "x":
            return "same-architecture spread"
        if self.unit == "logit":
            return "every task" if self.value is not None else "n/a"
        return self.covers

    def cell(self) -> str:
        """The number with its interval, as the verdict table prints it."""
        if self.value is None:
            return NO_RESULT if self.verdict.startswith(NO_RESULT) else "n/a"
        if self.unit == "%":
            text = f"{100 * self.value:.0f}%"
            return text + (f" [{100 * self.low:.0f}%, {100 * self.high:.0f}%]" if self.low is not None else "")
        if self.unit == "x":
            return f"{self.value:.2f}x" + (f" (same-architecture spread {self.low:.2f})"
                                           if self.low is not None else "")
        if self.unit == "logit":
            return f"max abs logit diff {self.value:.1e}"
        return f"{self.value:+.2f}" + (f" [{self.low:+.2f}, {self.high:+.2f}]" if self.low is not None else "")


def _paper_gain(model: str) -> str:
    t1, t2 = PAPER["table1"]["bleu"], PAPER["table2"]["bleu"]
    return f"{t2[model] - t2['dense']:+.1f} (Table 2; {t1[model] - t1['dense']:+.1f} in Table 1)"


def _covers(inputs: Inputs, seeds: bool) -> str:
    conf = f"{inputs.confidence:.0%}"
    if seeds:
        n = len(inputs.compare["across_seeds"]["seeds"])
        return f"{conf} t-interval over {n} training seeds"
    return f"{conf} paired bootstrap over test sentences only; one training run"


def gain_verdict(inputs: Inputs, name: str, key: str, question: str, paper: str) -> Verdict:
    """Does `name` beat the baseline? On the across-seed interval when there are extra seeds."""
    roles, c = inputs.roles, inputs.compare
    broken = inputs.degenerate(name) or inputs.degenerate(roles.baseline)
    gain = inputs.avg("vs_baseline", name)
    if broken:
        return Verdict(key, question, paper, None, None, None, "BLEU", NO_RESULT, None, _covers(inputs, False), broken)
    if gain is None:
        return Verdict(key, question, paper, None, None, None, "BLEU", NOT_MEASURED, None, "n/a",
                       f"{name} was not evaluated")
    over = ((c.get("across_seeds") or {}).get("gains") or {}).get(name)
    min_gain = inputs.setup.get("min_reference_gain", 0.0)
    if over:
        value, low, high = over["mean"], over["seed_low"], over["seed_high"]
        n = len(c["across_seeds"]["seeds"])
        if low > 0 and over["sentence_low"] > 0:
            verdict, holds = f"yes, across {n} seeds", True
        elif high < 0 and over["sentence_high"] < 0:
            verdict, holds = f"no: {roles.baseline} is better across {n} seeds", False
        else:
            verdict, holds = f"not shown: across {n} seeds the gain is not distinguishable from 0", False
        return Verdict(key, question, paper, value, low, high, "BLEU", verdict, holds, _covers(inputs, True))
    value, low, high = gain["diff"], gain["low"], gain["high"]
    if gain["significant"] and value > 0:
        verdict, holds = "yes", True
        if value < min_gain:
            verdict = f"yes, but under the {min_gain:g} BLEU a fraction needs"
    elif gain["significant"]:
        verdict, holds = f"no: {roles.baseline} is better", False
    else:
        verdict, holds = "not shown: the interval includes 0", False
    return Verdict(key, question, paper, value, low, high, "BLEU", verdict, holds, _covers(inputs, False),
                   f"p {format_p(gain['p_value'], inputs.setup.get('p_value_floor'))}")


def fraction_verdict(inputs: Inputs, reference_label: str, key: str, question: str) -> Verdict:
    roles = inputs.roles
    paper_value = PAPER["table2"][f"fraction_student_vs_{reference_label}"]
    paper = ("32.25% (the paper's headline)" if reference_label == "task_moe" else
             f"{100 * paper_value:.1f}% (from the paper's Table 2)")
    frac = inputs.avg("fractions", f"{roles.student}_vs_{reference_label}")
    reference = roles.references[reference_label]
    over = ((inputs.compare.get("across_seeds") or {}).get("fractions") or {}).get(
        f"{roles.student}_vs_{reference_label}")
    covers = _covers(inputs, bool(over))
    broken = next((inputs.degenerate(m) for m in (roles.student, reference, roles.baseline)
                   if inputs.degenerate(m)), None)
    if broken:
        return Verdict(key, question, paper, None, None, None, "%", NO_RESULT, None, covers, broken)
    if frac is None:
        return Verdict(key, question, paper, None, None, None, "%", NOT_MEASURED, None, "n/a",
                       f"{roles.student} or {reference} was not evaluated")
    status = frac.get("status") or ("ok" if frac.get("value") is not None else "undefined")
    why = frac.get("reason") or frac.get("undefined")
    value, low, high = frac.get("value"), frac.get("low"), frac.get("high")
    if over:  # extra seeds: each seed's share from its own models, Student's t over them
        status, why = over["status"], over["reason"]
        value, low, high = over["mean"], over["seed_low"], over["seed_high"]
    if status == "undefined":
        return Verdict(key, question, paper, None, None, None, "%", "undefined", None, covers, why)
    if status == "not_informative":
        verdict, holds = "not informative", None
    elif low <= paper_value <= high:
        verdict, holds = f"consistent with the paper's {100 * paper_value:.0f}%", True
    else:
        side = "more" if low > paper_value else "less"
        verdict, holds = f"keeps {side} than the paper's {100 * paper_value:.0f}%", False
    if frac.get("confounded"):
        verdict += "; confounded by extra training"
        why = "; ".join(w for w in (why, frac["confounded"]) if w)
    return Verdict(key, question, paper, value, low, high, "%", verdict, holds, covers, why)


def control_verdict(inputs: Inputs) -> Verdict:
    roles, c = inputs.roles, inputs.compare
    question = f"Does distillation beat training dense as long ({roles.student} − {roles.control})?"
    paper = "not measured (the paper has no equal-steps control)"
    broken = inputs.degenerate(roles.student) or inputs.degenerate(roles.control)
    diff = inputs.avg("vs_control", roles.student)
    if broken:
        return Verdict("student_vs_control", question, paper, None, None, None, "BLEU", NO_RESULT, None,
                       _covers(inputs, False), broken)
    if diff is None:
        return Verdict("student_vs_control", question, paper, None, None, None, "BLEU", NOT_MEASURED, None,
                       "n/a", f"{roles.student} or {roles.control} was not evaluated")
    over = ((c.get("across_seeds") or {}).get("vs_control") or {}).get(roles.student)
    if over:
        value, low, high, covers = over["mean"], over["seed_low"], over["seed_high"], _covers(inputs, True)
        ahead = low > 0 and over["sentence_low"] > 0
        behind = high < 0 and over["sentence_high"] < 0
    else:
        value, low, high, covers = diff["diff"], diff["low"], diff["high"], _covers(inputs, False)
        ahead, behind = diff["significant"] and value > 0, diff["significant"] and value < 0
    if ahead:
        verdict, holds = "yes: the teacher adds to training as long", True
    elif behind:
        verdict, holds = control_better(roles), False
    else:
        verdict, holds = "not distinguishable from training as long", False
    return Verdict("student_vs_control", question, paper, value, low, high, "BLEU", verdict, holds, covers)


def control_better(roles) -> str:
    """The control verdict when the student's control beats it (the answer sentence then says so)."""
    return f"no: {roles.control} is better; the student's gain comes from extra steps"


def equivalence_verdict(inputs: Inputs) -> Verdict:
    roles = inputs.roles
    question = f"Do the extracted sub-networks compute what {roles.task_moe} computes?"
    paper = "yes, by construction (identical BLEU)"
    ex = inputs.extract
    if not ex or ex.get("max_abs_logit_diff") is None:
        return Verdict("sub_equals_task_moe", question, paper, None, None, None, "logit", "not checked", None,
                       "n/a", "reports/extract.json missing")
    diff, tol = ex["max_abs_logit_diff"], ex.get("tolerance")
    bleu = {m: (inputs.avg("systems", m) or {}).get("bleu") for m in (roles.sub, roles.task_moe)}
    same = None not in bleu.values() and abs(bleu[roles.sub] - bleu[roles.task_moe]) < 1e-9
    holds = tol is not None and diff <= tol
    verdict = ("yes: " if holds else "no: ") + f"max |Δ logit| {diff:.1e} (tolerance {tol:g})"
    if None not in bleu.values():
        verdict += "; same test BLEU" if same else f"; test BLEU differs by {bleu[roles.sub] - bleu[roles.task_moe]:+.2f}"
    covers = f"{ex.get('verify_sentences', '?')} validation sentences per task, every task"
    return Verdict("sub_equals_task_moe", question, paper, diff, None, None, "logit", verdict, holds, covers)


def speed_verdict(inputs: Inputs) -> Verdict:
    roles = inputs.roles
    question = f"How fast do the sub-networks serve, against {roles.teacher}?"
    paper = "1.87x (32 experts; 2.6x with 128), across devices"
    models = (inputs.benchmark or {}).get("models") or {}
    ref = (models.get(roles.teacher) or {}).get("peak_tokens_per_second")
    sub = (models.get(roles.sub) or {}).get("peak_tokens_per_second")
    if not ref or not sub:
        return Verdict("sub_speedup", question, paper, None, None, None, "x", NOT_MEASURED, None, "n/a",
                       "reports/benchmark.json lacks the teacher or the sub-networks")
    ratio = sub / ref
    same = [models[m]["peak_tokens_per_second"] / ref for m in (roles.baseline, roles.student, roles.control)
            if (models.get(m) or {}).get("peak_tokens_per_second")]
    # the largest difference between models doing identical work: the benchmark's noise, taken whole
    spread = max(same) - min(same) if len(same) >= 2 else None
    device = (inputs.benchmark or {}).get("device", "?")
    covers = f"one benchmark run ({device}); no interval: the spread is between same-architecture models"
    if spread is None:
        verdict, holds = f"{ratio:.2f}x (no same-architecture models to size the noise)", None
    elif ratio - 1 > spread:
        verdict, holds = "faster, beyond the benchmark's noise", True
    else:
        verdict, holds = "no speed-up beyond the benchmark's noise", False
    return Verdict("sub_speedup", question, paper, ratio, spread, spread, "x", verdict, holds, covers)


def compute(inputs: Inputs) -> list[Verdict]:
    roles = inputs.roles
    return [
        gain_verdict(inputs, roles.teacher, "teacher_gain", f"Does the teacher ({roles.teacher}) beat "
                     f"{roles.baseline}? (BLEU)", _paper_gain("token_moe")),
        gain_verdict(inputs, roles.task_moe, "task_moe_gain", f"Does the task-MoE ({roles.task_moe}) beat "
                     f"{roles.baseline}? (BLEU)", _paper_gain("task_moe")),
        fraction_verdict(inputs, "task_moe", "fraction_vs_task_moe",
                         "Share of the task-MoE's gain that distillation keeps"),
        fraction_verdict(inputs, "teacher", "fraction_vs_teacher",
                         "Share of the teacher's gain that distillation keeps"),
        control_verdict(inputs),
        equivalence_verdict(inputs),
        speed_verdict(inputs),
    ]


def shares_state(fractions: list[Verdict]) -> str:
    """What the two shares are, in words: "both shares ... are not informative and confounded by extra
    training", or each share's state when they differ. A verdict's own "; " reads as "and" here."""
    state = [f.verdict.replace("; ", " and ") for f in fractions]
    if len(set(state)) == 1:
        return f"both its shares, of the task-MoE's gain and of the teacher's, are {state[0]}"
    label = lambda f: "the task-MoE's" if f.key.endswith("task_moe") else "the teacher's"  # noqa: E731
    return ", and ".join(f"its share of {label(f)} gain is {s}" for f, s in zip(fractions, state))


def answer(verdicts: list[Verdict], inputs: Inputs) -> str:
    """The one sentence under the table."""
    v = {x.key: x for x in verdicts}
    roles = inputs.roles
    fractions = [v["fraction_vs_task_moe"], v["fraction_vs_teacher"]]
    exact = v["sub_equals_task_moe"].holds
    sub = ("the task-MoE's sub-networks keep all of its gain (they are exact)" if exact
           else "the sub-networks' equivalence is not established")
    broken = next((x.why for x in verdicts if x.verdict.startswith(NO_RESULT)), None)
    if broken:
        return f"No answer: {broken}, so this run has no result to compare."
    usable = [f for f in fractions if f.value is not None and f.holds is not None]
    if not usable:
        return (f"This run cannot say how much of the gain distillation keeps: {shares_state(fractions)} "
                f"(the reasons are listed below). Only this holds: {sub}.")
    best = usable[0]
    text = (f"Distillation keeps {best.cell()} of the {'task-MoE' if best.key.endswith('task_moe') else 'teacher'}'s "
            f"gain ({best.verdict}), while {sub}")
    control = v["student_vs_control"]
    if control.verdict == control_better(roles):
        covered = "" if control.covers == best.covers else f", {control.covers}"
        text += (f"; and {roles.control}, trained as long without the teacher, beats the student "
                 f"({control.cell()} BLEU{covered})")
    return text + f" ({best.covers})."


METRIC_NAMES = {"teacher_gain": "teacher_gain", "task_moe_gain": "task_moe_gain",
                "fraction_vs_task_moe": "kept_of_task_moe", "fraction_vs_teacher": "kept_of_teacher",
                "student_vs_control": "student_vs_control", "sub_speedup": "sub_speedup",
                "sub_equals_task_moe": "sub_logit_diff"}


def headline_metrics(verdicts: list[Verdict], inputs: Inputs) -> dict:
    """The numbers `dvc metrics show` and `dvc exp show` list (reports/metrics.json): BLEU per model, each
    verdict's value (fractions in percent) with its interval (`_lo`, `_hi`; null without one), the
    validation loss of the trained models, and how many training seeds the verdicts rest on."""
    out: dict = {"bleu": {m: round(s["groups"]["avg"]["bleu"], 2) for m, s in inputs.compare["systems"].items()}}
    for x in verdicts:
        name = METRIC_NAMES[x.key]
        scale, digits = (100, 1) if x.unit == "%" else (1, 3) if x.unit in ("BLEU", "x") else (1, 8)
        out[name] = None if x.value is None else round(scale * x.value, digits)
        if x.unit in ("BLEU", "%"):
            for suffix, bound in (("_lo", x.low), ("_hi", x.high)):
                out[name + suffix] = None if bound is None else round(scale * bound, digits)
    out["val_loss"] = {m: round(t["val_loss"], 4) for m, t in inputs.train.items()
                       if m in inputs.roles.trained and isinstance(t.get("val_loss"), (int, float))}
    out["seeds"] = len((inputs.compare.get("across_seeds") or {}).get("seeds") or [0])
    return out


def format_p(p: Optional[float], floor: Optional[float]) -> str:
    """A bootstrap p-value; at the bootstrap's floor (1 / (resamples + 1)) it prints as an upper bound."""
    if p is None:
        return "= n/a"
    if floor is not None and p <= floor * (1 + 1e-9):
        bound = next(b for b in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 1.0) if b >= floor)
        return f"< {bound:g}"
    return f"= {p:.3f}" if p >= 0.001 else f"= {p:.1e}"
