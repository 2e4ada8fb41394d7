"""Sub-network extraction: each task's sub-network computes what the full model computes."""

import json

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.extract import (
    ExtractedModels, SingleModel, extract_subnetworks, fuse_experts, load_deployable, save_subnetworks,
    verify_subnetwork,
)
from pipeline.model import save_checkpoint
from pipeline.model.moe import Experts, FeedForward
from tiny_models import LANGUAGES, random_batch, task_moe, tiny_model

DIRECTIONS = ["en-de", "en-fr", "de-en", "fr-en"]


def _batch_for(direction, batch=3):
    src, tgt, _, _ = random_batch(batch=batch, seed=len(direction) + ord(direction[0]))
    s, t = (LANGUAGES.index(x) for x in direction.split("-"))
    return src, tgt, torch.full((batch,), s), torch.full((batch,), t)


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("routing", [("token", "target"), ("target", "target"), ("pair", "pair")],
                         ids=lambda r: "/".join(r))
def test_subnetworks_equal_the_full_model_on_their_task(routing, top_k):
    model = task_moe(*routing, top_k)
    subnetworks = extract_subnetworks(model, DIRECTIONS)
    expected_keys = {"pair": DIRECTIONS, "target": ["de", "fr", "en"]}[routing[1]]
    assert sorted(subnetworks) == sorted(expected_keys)
    chosen = set()
    for key, (sub, entry) in subnetworks.items():
        assert sub.cfg.decoder_routing == "fused"
        assert sub.cfg.encoder_routing == ("token" if routing[0] == "token" else "fused")
        assert entry["resident_parameters"] < entry["full_parameters"]
        for layer in entry["layers"].values():
            assert len(layer["experts"]) == top_k
            assert sum(layer["weights"]) == pytest.approx(1.0)
            chosen.add(tuple(layer["experts"]))
        for direction in entry["directions"]:
            assert verify_subnetwork(model, sub, *_batch_for(direction)) < 1e-5
    assert len(chosen) > 1  # the tasks did not all use the same experts (the test has teeth)


def test_a_subnetwork_differs_on_other_tasks_and_when_wrongly_fused():
    model = task_moe("token", "target", 2)
    subnetworks = extract_subnetworks(model, DIRECTIONS)
    sub_de = subnetworks["de"][0]
    assert verify_subnetwork(model, sub_de, *_batch_for("en-fr")) > 1e-3  # de's decoder, fr task
    with torch.no_grad():
        sub_de.decoder.layers[1].ffn.w_out.weight[0, 0] += 1e-2
    assert verify_subnetwork(model, sub_de, *_batch_for("en-de")) > 1e-4


def test_token_sentence_and_dense_decoders_cannot_be_extracted():
    for routing in ("token", "sentence", "none"):
        with pytest.raises(PipelineError, match=f"cannot extract: decoder routing is '{routing}'; "
                                                r"extraction needs task routing \(target/pair/source\)"):
            extract_subnetworks(tiny_model("token", routing), DIRECTIONS)
    with pytest.raises(PipelineError, match="no language 'xx'"):
        extract_subnetworks(tiny_model("token", "target"), ["en-xx"])


def test_default_directions_are_all_pairs_of_languages():
    assert sorted(extract_subnetworks(task_moe("token", "pair", 2))) == \
        ["de-en", "de-fr", "en-de", "en-fr", "fr-de", "fr-en"]


def test_mixed_task_kinds_are_keyed_by_direction():
    model = task_moe("source", "target", 2)
    subnetworks = extract_subnetworks(model, DIRECTIONS)
    assert sorted(subnetworks) == sorted(DIRECTIONS)
    for key, (sub, _) in subnetworks.items():
        assert verify_subnetwork(model, sub, *_batch_for(key)) < 1e-5


def test_fuse_experts_formula():
    experts = Experts(4, 8, 16)
    fused = fuse_experts(experts.w_in, experts.b_in, experts.w_out, experts.b_out, [2, 0], [0.7, 0.3])
    ffn = FeedForward(8, 32)
    ffn.load_state_dict(fused)
    x = torch.randn(5, 8)
    expected = sum(w * (torch.relu(x @ experts.w_in[e] + experts.b_in[e]) @ experts.w_out[e]
                        + experts.b_out[e]) for e, w in ((2, 0.7), (0, 0.3)))
    assert torch.allclose(ffn(x).output, expected, atol=1e-6)


def test_saved_subnetworks_serve_each_direction(tmp_path):
    model = task_moe("token", "target", 2)
    subnetworks = extract_subnetworks(model, DIRECTIONS)
    manifest = save_subnetworks(subnetworks, tmp_path / "sub", model)
    assert json.loads((tmp_path / "sub" / "manifest.json").read_text()) == manifest
    assert manifest["routes"] == {"en-de": "de", "en-fr": "fr", "de-en": "en", "fr-en": "en"}
    deployable = load_deployable(tmp_path / "sub")
    assert isinstance(deployable, ExtractedModels) and deployable.languages == LANGUAGES
    for direction in DIRECTIONS:
        served = deployable.model_for(*direction.split("-"))
        assert verify_subnetwork(model, served, *_batch_for(direction)) < 1e-5
        assert deployable.resident_parameters(*direction.split("-")) < deployable.full_parameters
    assert deployable.model_for("en", "de") is deployable.model_for("fr", "de")  # loaded once
    assert deployable.model_for("de", "fr") is deployable.model_for("en", "fr")  # fr's decoder
    with pytest.raises(PipelineError, match="no sub-network serves de-xx"):
        ExtractedModels(tmp_path / "sub").model_for("de", "xx")

    save_checkpoint(model, tmp_path / "full")
    single = load_deployable(tmp_path / "full")
    assert isinstance(single, SingleModel)
    assert single.resident_parameters("en", "de") == single.full_parameters == manifest["full_parameters"]
