"""The report's words and table for the validation-loss learning curves (`curves.json` key "loss",
made by `pipeline.stats.loss_curves`): each MoE's lead over dense in nats, in dense steps, and the budget the
lead's trend gives for a BLEU gain (an extrapolation, labelled as one)."""

from __future__ import annotations

from typing import Optional

from pipeline.report.markdown import md_table


def _conf(loss: dict) -> str:
    return f"{loss.get('setup', {}).get('confidence', 0.95):.0%}"


def _hours(step: float, last_step: int, seconds_per_step: Optional[float]) -> str:
    if not seconds_per_step:
        return ""
    return (f" (~{(step - last_step) * seconds_per_step / 3600:.1f} h more training per model at this "
            "run's speed)")


def lead_words(study: Optional[dict], name: str, seconds_per_step: Optional[float] = None,
               test_gain: Optional[float] = None) -> Optional[str]:
    """Sentences on `name`'s validation-loss lead over dense: where it stands, since when it is
    significant, how fast it grows, and the extrapolated budget for the target BLEU gain. `test_gain`
    (its test BLEU gain over dense) says how much BLEU the lead has bought so far."""
    loss = (study or {}).get("loss")
    leads = (loss or {}).get("lead_vs_dense", {}).get(name)
    if not leads:
        return None
    sentences = sum((loss["setup"].get("sentences_per_direction") or {}).values())
    last, first = leads[-1], loss.get("first_significant_step", {}).get(name)
    where = "leads dense by" if last["diff"] >= 0 else "is behind dense by"
    text = (f"On the validation loss (all {sentences:,} validation sentences; nats per target token), "
            f"{name} {where} {abs(last['diff']):.3f} at step {last['step']:,} (lead {_conf(loss)} CI "
            f"[{last['low']:+.3f}, {last['high']:+.3f}]), ")
    ahead = [g["significant"] and g["diff"] > 0 for g in leads]
    if ahead[-1]:  # where the unbroken run of significant leads up to the last step began
        start = len(leads) - 1
        while start > 0 and ahead[start - 1]:
            start -= 1
        text += f"a significant lead at every validation step from {leads[start]['step']:,} on"
    elif last["significant"] and last["diff"] < 0:
        text += "significantly behind"
    elif first is not None:
        text += f"not a significant lead at this step (one first at step {first:,})"
    else:
        text += "a significant lead at no step after the warm start"
    warm = (study.get("setup") or {}).get("warmstart_steps") or 0
    if last.get("steps_ahead") is not None and last["step"] > warm and last["diff"] > 0:
        trained = last["step"] - warm
        text += (f": about {last['steps_ahead']:,.0f} steps of dense's own training at its current rate, "
                 f"a {(trained + last['steps_ahead']) / trained:.2f}x speed-up in steps")
    text += "."
    line = (loss.get("extrapolation") or {}).get(name)
    if not line:
        return text
    text += f" The lead grows by {line['lead_per_1000_steps']:+.3f} per 1000 steps."
    step = line.get("step_reaching_target")
    if step is None:
        if line["lead_per_1000_steps"] <= 0:
            text += " It does not grow, so the loss curve gives no budget for a larger gain."
        return text
    text += (f" Extrapolated linearly, it would reach {line['target_lead']:.3f}, the loss dense's own "
             f"curve trades for {line['target_gain']:+.1f} BLEU ({line['bleu_per_nat']:.1f} greedy "
             f"validation BLEU per nat), at about step {step:,.0f}"
             f"{_hours(step, last['step'], seconds_per_step)}: an extrapolation, not a measurement.")
    if test_gain is not None and last["diff"] > 0:
        rate = test_gain / last["diff"]
        slope = line["lead_per_1000_steps"] / 1000
        if 0 < rate < line["bleu_per_nat"] and slope > 0:
            at_rate = (line["target_gain"] / rate - line["intercept"]) / slope
            text += (f" On the test set this lead has bought {test_gain:+.2f} BLEU so far ({rate:.1f} "
                     f"per nat, itself uncertain); at that rate the target would take until about step "
                     f"{at_rate:,.0f}.")
        elif rate <= 0:
            text += (f" On the test set this lead has bought no BLEU so far ({test_gain:+.2f}), so even "
                     "that budget rests on dense's exchange rate holding for the MoE's lead.")
    return text


def loss_table(study: Optional[dict]) -> Optional[str]:
    """Step | each model's loss | each MoE's lead [CI] and steps ahead; None without loss curves."""
    loss = (study or {}).get("loss")
    if not loss or not loss.get("loss"):
        return None
    models, leads = list(loss["loss"]), loss.get("lead_vs_dense", {})
    by_step = {m: {p["step"]: p for p in points} for m, points in loss["loss"].items()}
    lead_by_step = {m: {g["step"]: g for g in points} for m, points in leads.items()}
    header = ["step"] + models
    for m in leads:
        header += [f"{m} lead [CI]", "dense steps ahead"]
    rows = []
    for step in sorted(by_step[models[0]]):
        row = [f"{step:,}"] + [f"{by_step[m][step]['loss']:.3f}" for m in models]
        for m in leads:
            g = lead_by_step[m][step]
            row.append(f"{g['diff']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]{' *' if g['significant'] else ''}")
            ahead = g.get("steps_ahead")
            row.append("" if ahead is None else f"{ahead:,.0f}" if g["diff"] > 0 else "behind")
        rows.append(row)
    sentences = sum((loss["setup"].get("sentences_per_direction") or {}).values())
    intro = (f"### Validation loss: the lead in nats and in dense steps\n\nCross-entropy per target token "
             f"on all {sentences:,} validation sentences (no label smoothing), pooled over directions; "
             f"lead = dense − model ({_conf(loss)} paired bootstrap interval over sentences; * = it "
             "excludes 0); dense steps ahead = the lead divided by how fast dense's loss fell over the "
             "validation interval ending at that step.")
    return intro + "\n\n" + md_table(header, rows)
