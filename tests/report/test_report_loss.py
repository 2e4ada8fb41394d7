"""The validation-loss words: a lead, a model behind dense, and the budget at the test set's rate."""

from pipeline.report.loss import lead_words, loss_table


def _study(diffs, significant, steps_ahead, extrapolation=None):
    leads = [{"step": s, "diff": d, "low": d - 0.01, "high": d + 0.01, "significant": sig,
              "steps_ahead": a} for s, d, sig, a in zip((100, 200, 300), diffs, significant, steps_ahead)]
    first = next((g["step"] for g in leads if g["significant"] and g["diff"] > 0 and g["step"] > 100), None)
    loss = {"setup": {"sentences_per_direction": {"en-de": 50, "de-en": 50}, "confidence": 0.95},
            "loss": {"dense": [{"step": s, "loss": 4.0 - s / 1000} for s in (100, 200, 300)],
                     "token_moe": [{"step": g["step"], "loss": 4.0 - g["step"] / 1000 - g["diff"]}
                                   for g in leads]},
            "lead_vs_dense": {"token_moe": leads}, "first_significant_step": {"token_moe": first},
            "extrapolation": {"token_moe": extrapolation}}
    return {"setup": {"warmstart_steps": 100}, "loss": loss}


def test_a_model_behind_dense_is_said_to_be_behind_without_steps_ahead():
    study = _study([0.0, -0.02, -0.03], [False, True, True], [None, -20.0, -30.0])
    words = lead_words(study, "token_moe")
    assert "token_moe is behind dense by 0.030 at step 300" in words and "significantly behind" in words
    assert "steps of dense's own training" not in words
    assert "| 300 | 3.700 | 3.730 | -0.030 [-0.040, -0.020] * | behind |" in loss_table(study)


def test_budget_at_dense_rate_and_at_the_rate_the_test_gain_implies():
    line = {"lead_per_1000_steps": 0.1, "intercept": 0.0, "bleu_per_nat": 10.0, "target_gain": 1.5,
            "target_lead": 0.15, "step_reaching_target": 1500.0}
    study = _study([0.01, 0.02, 0.03], [False, True, True], [None, 20.0, 30.0], line)
    words = lead_words(study, "token_moe", seconds_per_step=0.5, test_gain=0.06)
    assert "a significant lead at every validation step from 200 on: about 30 steps of dense's own" in words
    assert "a 1.15x speed-up in steps" in words  # (200 + 30) / 200
    assert "at about step 1,500 (~0.2 h more training per model at this run's speed)" in words
    # 0.06 BLEU for 0.03 nats = 2 per nat: 1.5 BLEU needs 0.75 nats, at 0.1 per 1000 steps step 7,500
    assert "(2.0 per nat, itself uncertain); at that rate the target would take until about step 7,500" in words


def test_a_lead_is_dated_from_where_it_last_became_significant_not_from_its_first_blip():
    study = _study([0.01, 0.0, 0.03], [True, False, True], [10.0, 0.0, 30.0])
    study["loss"]["first_significant_step"]["token_moe"] = 100  # a blip before the lead that holds
    words = lead_words(study, "token_moe")
    assert "a significant lead at every validation step from 300 on" in words
    assert "from 100" not in words
    study = _study([0.01, 0.02, 0.005], [False, True, False], [None, 20.0, 5.0])
    words = lead_words(study, "token_moe")  # significant once, not at the last step
    assert "leads dense by 0.005 at step 300" in words
    assert "not a significant lead at this step (one first at step 200)" in words
