"""Bad data.* values in params are rejected with the key's name (pipeline.config is the one reader)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.config import ConfigError, load_params, params_from_dict, train_size

REPO = Path(__file__).resolve().parents[2]
BASE = OmegaConf.to_container(OmegaConf.load(REPO / "params.yaml"))


def with_data(**data) -> dict:
    tree = copy.deepcopy(BASE)
    tree.pop("profile", None)
    tree["data"].update(data)
    return tree


def test_the_repository_params_are_valid():
    params = params_from_dict(with_data())
    assert train_size(params.data, "de") == BASE["data"]["train_sizes"]["de"]


@pytest.mark.parametrize("data, key", [
    ({"languages": ["de", "xx"]}, "data.languages: unknown language code 'xx'"),
    ({"languages": ["de", "de"], "train_sizes": {}, "high_resource": []}, "data.languages: has duplicates"),
    ({"languages": ["en", "de"], "train_sizes": {}, "high_resource": []}, "data.languages: must not contain the pivot"),
    ({"train_sizes": {"de": -5}}, "data.train_sizes.de: must be > 0, got -5"),
    ({"train_sizes": {"nl": 100}}, "data.train_sizes.nl: is not one of data.languages"),
    ({"high_resource": ["nl"]}, "data.high_resource: 'nl' is not one of data.languages"),
    ({"valid_size": 0}, "data.valid_size: must be > 0"),
    ({"test_size": -1}, "data.test_size: must be > 0"),
    ({"temperature": 0}, "data.temperature: must be > 0"),
    ({"vocab_size": 50}, "data.vocab_size: must be >= 100"),
    ({"source": "wmt"}, "data.source: must be bible or tsv"),
    ({"source": "tsv"}, "data.tsv_dir: required when data.source is tsv"),
    ({"min_chars": 500}, "data.max_chars"),
    ({"spm_character_coverage": 1.5}, "data.spm_character_coverage"),
])
def test_bad_data_values_name_their_key(data, key):
    with pytest.raises(ConfigError, match=key.replace("(", r"\(").replace(")", r"\)")):
        params_from_dict(with_data(**data), source="params.yaml")


def test_wrong_types_and_unknown_keys_name_their_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data.valid_size"):
        params_from_dict(with_data(valid_size="many"))
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(with_data(spm_vocab=8000))), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"params.yaml: data.spm_vocab: unknown key"):
        load_params(path)


def test_smoke_profile_data():
    data = load_params(REPO / "params.yaml", profile="smoke").data
    assert data.languages == ["de", "fr"] and data.train_sizes == {"de": 300, "fr": 150}
    assert data.vocab_size == 300
