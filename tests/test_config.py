"""params.yaml validation: every kind of bad value names its key; profiles merge without editing."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import directions, load_params, params_from_dict
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_default_params_load_and_validate():
    p = load_params(ROOT / "params.yaml")
    assert p.profile == "default"
    assert set(p.models) >= {"dense", "token_moe", "task_moe"}
    assert p.models["task_moe"].decoder_routing == "target"
    assert directions(p.data)[0] == f"{p.data.pivot}-{p.data.languages[0]}"
    assert len(directions(p.data)) == 2 * len(p.data.languages)


def test_smoke_profile_overrides_without_editing_params():
    before = (ROOT / "params.yaml").read_text()
    p = load_params(ROOT / "params.yaml", profile="smoke")
    assert (ROOT / "params.yaml").read_text() == before
    assert p.profile == "smoke"
    assert p.model.d_model < load_params(ROOT / "params.yaml").model.d_model
    # a profile's train_sizes replace the default mapping (other languages), not extend it
    assert set(p.data.train_sizes) <= set(p.data.languages)


def test_the_default_profile_file_is_empty():
    """Stages depend on profiles/<profile>.yaml; the config reads no file for `default`, so a key there
    would rerun every stage and change nothing."""
    assert yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text()) is None


def test_gpu_profile_is_larger_on_every_axis_and_uses_public_domain_editions_only():
    from pipeline.data.bible import resolve_editions

    default, gpu = load_params(ROOT / "params.yaml"), load_params(ROOT / "params.yaml", profile="gpu")
    assert set(gpu.data.languages) > set(default.data.languages)  # more languages, the default's kept
    assert gpu.model.d_model > default.model.d_model and gpu.model.num_experts > default.model.num_experts
    assert gpu.train.batch_tokens > default.train.batch_tokens and gpu.train.accelerator == "gpu"
    assert set(gpu.data.train_sizes) == set(gpu.data.languages)  # no language falls back to the default size
    editions = resolve_editions(gpu.data.languages + [gpu.data.pivot], gpu.data.editions)
    assert [lang for lang, e in editions.items() if not e.public_domain] == []


@pytest.mark.parametrize("tree, key", [
    ({"train": {"max_steps": -5}}, "train.max_steps"),
    ({"model": {"top_k": 9, "num_experts": 8}}, "model.top_k"),
    ({"model": {"attention_dropout": 1.0}}, "model.attention_dropout"),
    ({"data": {"languages": ["de", "xx"]}}, "data.languages"),
    ({"data": {"train_sizes": {"de": 0}}}, "data.train_sizes.de"),
    ({"models": {"m": {"encoder_routing": "tokn"}}}, "models.m.encoder_routing"),
    ({"model": {"d_model": 130, "num_heads": 4}}, "model.num_heads"),
    ({"distill": {"teacher": "nope"}}, "distill.teacher"),
    ({"distill": {"lr_schedule": "resume"}}, "distill.lr_schedule"),
    ({"benchmark": {"direction": "en-xx"}}, "benchmark.direction"),
    ({"benchmark": {"bleu_sentences": 0}}, "benchmark.bleu_sentences"),
    ({"compare": {"confidence": 1.5}}, "compare.confidence"),
    ({"seeds": {"extra": [1]}}, "seeds.extra"),  # train.seed: the main run
    ({"seeds": {"extra": [2, 2]}}, "seeds.extra"),
    ({"seeds": {"extra": [-1]}}, "seeds.extra"),
    ({"seeds": {"models": ["token_moe"]}}, "seeds.models"),  # no dense: no baseline for the gains
    ({"seeds": {"models": ["dense", "nope"]}}, "seeds.models"),
    ({"seeds": {"models": ["dense", "student"]}}, "seeds.models"),  # no teacher for the seed's student
    ({"seeds": {"extra": [2]}, "evaluate": {"models": ["dense", "token_moe"]}}, "seeds.models"),  # task_moe
])
def test_impossible_values_name_the_key(tree, key):
    base = {"models": {"dense": {}, "token_moe": {"encoder_routing": "token"},
                       "task_moe": {"decoder_routing": "target"}}}
    for section, value in tree.items():
        base[section] = {**base.get(section, {}), **value}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        params_from_dict(base)


def test_seeds_may_retrain_the_student_and_its_control():
    base = {"models": {"dense": {}, "token_moe": {"encoder_routing": "token"},
                       "task_moe": {"decoder_routing": "target"}}}
    p = params_from_dict({**base, "seeds": {"extra": [2], "models": ["dense", "dense_long"]}})
    assert p.seeds.models == ["dense", "dense_long"]  # the control needs only its seed's dense
    p = params_from_dict({**base, "evaluate": {"models": ["dense", "token_moe", "student"]},
                          "seeds": {"extra": [2], "models": ["dense", "token_moe", "student"]}})
    assert p.seeds.models[-1] == "student"
    with pytest.raises(ConfigError, match="seeds.models.*'token_moe' \\(distill.teacher\\)"):
        params_from_dict({**base, "seeds": {"models": ["dense", "student"]}})


def test_unknown_key_and_wrong_type_name_the_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"max_stepz": 3}}))
    with pytest.raises(ConfigError, match="max_stepz"):
        load_params(path)
    path.write_text(yaml.safe_dump({"train": {"max_steps": "many"}}))
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_params(path)


def test_unknown_profile_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: nosuch\n")
    with pytest.raises(ConfigError, match="nosuch"):
        load_params(path)


def test_stage_prints_one_line_error_and_exits_nonzero(tmp_path):
    bad = tmp_path / "params.yaml"
    text = re.sub(r"(?m)^  max_steps: \d+", "  max_steps: -1", (ROOT / "params.yaml").read_text())
    assert "max_steps: -1" in text
    bad.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "stages.train", "--params", str(bad), "--model",
                           "dense", "--corpus", str(tmp_path), "--out", str(tmp_path / "m"),
                           "--reports", str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "train.max_steps" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_every_param_dvc_yaml_declares_is_in_the_resolved_settings():
    """DVC refuses a stage whose declared param is missing from its params file: every stage's sections of
    reports/params.yaml (the config stage's record: all settings, defaults included) must exist."""
    from pipeline.config import resolve

    record, _ = resolve(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            assert isinstance(entry, dict) and len(entry) == 1, f"stage {name}: params must name their file"
            (path, keys), = entry.items()
            if path == "params.yaml":  # the config stage reads the whole of it
                assert name == "config" and keys is None, f"stage {name} depends on params.yaml directly"
                continue
            assert path == "reports/params.yaml", f"stage {name}: params from {path}"
            for key in keys or []:
                key = key.replace("${key}", next(iter(raw["models"])))
                node = record
                for part in key.split("."):
                    assert isinstance(node, dict) and part in node, f"stage {name}: {key} not in {path}"
                    node = node[part]


# --------------------------------------------------------------------------------------------------
# params.yaml and the active profile: which file a bad value is in, which keys the profile shadows


def _pair(tmp_path, params: str, profile: str):
    (tmp_path / "profiles").mkdir(exist_ok=True)
    (tmp_path / "profiles" / "mine.yaml").write_text(profile)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in (yaml.safe_load(params) or {}).items():  # one level deep, as the tests need
        base[section] = {**base.get(section, {}), **values} if isinstance(values, dict) else values
    base["profile"] = "mine"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
    return tmp_path / "params.yaml"


def test_a_bad_value_in_params_yaml_is_caught_even_where_the_profile_overrides_it(tmp_path):
    path = _pair(tmp_path, "train: {max_steps: -5}", "train: {max_steps: 20}")
    with pytest.raises(ConfigError, match=r"params\.yaml: train\.max_steps: must be > 0, got -5"):
        load_params(path)


def test_a_bad_value_in_the_profile_names_the_profile(tmp_path):
    path = _pair(tmp_path, "", "model: {top_k: 99}")
    with pytest.raises(ConfigError, match=r"profiles/mine\.yaml: model\.top_k"):
        load_params(path)
    path = _pair(tmp_path, "", "train: {max_stepz: 3}")
    with pytest.raises(ConfigError, match=r"profiles/mine\.yaml: .*max_stepz"):
        load_params(path)


@pytest.mark.parametrize("key, value", [("models", "{dense: {}}"), ("distill", "{teacher: task_moe}"),
                                        ("evaluate", "{models: [dense]}"), ("extract", "{source: token_moe}")])
def test_a_profile_may_not_set_what_dvc_yaml_is_templated_from(tmp_path, key, value):
    path = _pair(tmp_path, "", f"{key}: {value}")
    with pytest.raises(ConfigError, match=r"profiles/mine\.yaml: .*a profile may not set it"):
        load_params(path)


def test_shadowed_keys_are_listed_with_both_values(tmp_path):
    from pipeline.config import shadowed

    path = _pair(tmp_path, "train: {max_steps: 30}", "train: {max_steps: 20, batch_tokens: 1024}")
    found = shadowed(path)
    assert found["train.max_steps"] == {"params": 30, "profile": 20}
    assert found["train.batch_tokens"]["profile"] == 1024  # params.yaml sets it too (4096)
    assert "model.d_model" not in found  # the profile leaves it alone
    assert load_params(path).train.max_steps == 20  # the profile's value is the one that runs


def test_an_edit_of_a_shadowed_key_is_refused_and_other_edits_pass(tmp_path):
    """`dvc exp run -S train.max_steps=30` under a profile that sets it would change nothing."""
    from pipeline.config import resolve

    path = _pair(tmp_path, "train: {max_steps: 25}", "train: {max_steps: 20}")
    first, warnings = resolve(path)
    assert first["train"]["max_steps"] == 20 and first["_resolved"]["profile"] == "mine"
    assert any("train.max_steps=20 (params.yaml: 25)" in w for w in warnings)
    again, _ = resolve(path, previous=first)  # nothing changed: fine
    assert again == first
    _pair(tmp_path, "train: {max_steps: 30}", "train: {max_steps: 20}")
    with pytest.raises(ConfigError, match=r"params\.yaml: train\.max_steps: changed to 30, but profile mine "
                                          r"sets 20 .*profiles/mine\.yaml.*the change has no effect"):
        resolve(path, previous=first)
    _pair(tmp_path, "train: {max_steps: 25, lr: 0.001}", "train: {max_steps: 20}")
    record, _ = resolve(path, previous=first)  # an edit the profile does not shadow takes effect
    assert record["train"]["lr"] == 0.001


def test_the_config_stage_writes_the_record_and_refuses_before_anything_else(tmp_path, capsys):
    from stages.config import main

    path = _pair(tmp_path, "train: {max_steps: 25}", "train: {max_steps: 20}")
    out = tmp_path / "reports" / "params.yaml"
    assert main(["--params", str(path), "--out", str(out)]) == 0
    record = yaml.safe_load(out.read_text())
    assert record["train"]["max_steps"] == 20 and record["model"]["d_model"] == 128
    assert "warning: profile mine overrides" in capsys.readouterr().err
    before = out.read_text()
    _pair(tmp_path, "train: {max_steps: 30}", "train: {max_steps: 20}")
    assert main(["--params", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.max_steps: changed to 30" in err
    assert out.read_text() == before  # the last good record stays
