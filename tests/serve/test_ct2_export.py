"""The CTranslate2 export: exact in float32 (every direction), int8 measured, MoE models refused."""

from __future__ import annotations

import json

import ctranslate2
import pytest
import torch

from pipeline.data.corpus import read_pairs
from pipeline.decode import beam_search, greedy_search, pad_batch
from pipeline.extract import load_deployable
from pipeline.serve import ct2
from pipeline.serve.cli import main


def sources_for(corpus, src_lang: str) -> list[str]:
    """The test sources in `src_lang` (from the first test file out of it)."""
    path = sorted((corpus / "test").glob(f"{src_lang}-*.tsv"))[0]
    return [p.source for p in read_pairs(path)]


def project_and_export_ids(served, name, export_dir, direction, beam_size=1):
    """(PyTorch ids, CTranslate2 ids, limits) for every test source of `direction`, one padded batch."""
    src_lang, tgt_lang = direction.split("-")
    vocab = served.vocab
    model = load_deployable(served.models / name).model_for(src_lang, tgt_lang)
    rows = [vocab.encode_source(s, tgt_lang) for s in sources_for(served.corpus, src_lang)]
    limits = ct2.length_limits([len(r) for r in rows], 1.2, 10, model.cfg.max_positions)
    src = pad_batch(rows, vocab.pad_id)
    langs = [torch.full((len(rows),), model.cfg.languages.index(x)) for x in (src_lang, tgt_lang)]
    if beam_size == 1:
        expected = greedy_search(model, src, *langs, limits)
    else:
        expected = beam_search(model, src, *langs, beam_size, 0.6, limits)
    export = ct2.ExportedModels(export_dir, threads=1)
    actual = ct2.decode_ids(export.translator_for(src_lang, tgt_lang), vocab.tokens, rows, limits, beam_size,
                            0.6, vocab.pad_id, vocab.bos_id)
    return expected, actual, limits


@pytest.mark.parametrize("name,stop", [("dense", "eos"), ("dense_untrained", "limit"), ("task_moe_sub", "eos")])
def test_float32_greedy_is_the_project_greedy_in_every_direction(served, exports, name, stop):
    export_dir = exports(name)
    routes = json.loads((export_dir / ct2.EXPORT_FILE).read_text())["routes"]
    assert sorted(routes) == ["de-en", "de-fr", "en-de", "en-fr", "fr-de", "fr-en"]
    stops = set()
    for direction in routes:
        expected, actual, limits = project_and_export_ids(served, name, export_dir, direction)
        mismatches = [i for i, (a, b) in enumerate(zip(expected, actual)) if a != b]
        assert not mismatches, f"{name} {direction}: sentence {mismatches[0]}: {expected[mismatches[0]]} " \
                               f"vs {actual[mismatches[0]]}"
        stops |= {"limit" if len(h) == n else "eos" for h, n in zip(expected, limits)}
    assert stop in stops  # the stopping rule this model exercises was reached


@pytest.mark.parametrize("boosted", ["pad_bos", "eos"])
def test_special_tokens_follow_the_project_rules(served, tmp_path, boosted):
    """A model whose strongest first logit is often pad or bos (never generated) or eos (an empty
    translation is allowed): both engines decode the same."""
    from pipeline.model import load_checkpoint, save_checkpoint

    vocab = served.vocab
    model = load_checkpoint(served.models / "dense")
    with torch.no_grad():
        if boosted == "eos":
            model.embed.weight[vocab.eos_id] *= 40
        else:
            model.embed.weight[vocab.bos_id] *= 40
            model.embed.weight[vocab.pad_id] = model.embed.weight[vocab.bos_id] * 1.1
    save_checkpoint(model, tmp_path / "model")
    rows = [vocab.encode_source(s, "de") for s in sources_for(served.corpus, "en")]
    src, n = pad_batch(rows, vocab.pad_id), len(rows)
    langs = (torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long))
    limits = ct2.length_limits([len(r) for r in rows], 1.2, 10, model.cfg.max_positions)
    expected = greedy_search(model, src, *langs, limits)
    if boosted == "eos":
        assert [] in expected  # eos first: an empty translation
    else:
        with torch.no_grad():  # unsuppressed, the first step would pick pad or bos for some sentence
            cache = model.start_decoding(model.encode(src, *langs), *langs)
            first = model.decode_step(torch.full((n, 1), vocab.bos_id), cache).logits[:, -1].argmax(-1)
        assert {vocab.pad_id, vocab.bos_id} & set(first.tolist())
    ct2.export_ctranslate2(tmp_path / "model", tmp_path / "export", vocab)
    actual = ct2.decode_ids(ct2.ExportedModels(tmp_path / "export", threads=1).translator_for("en", "de"),
                            vocab.tokens, rows, limits, 1, 0.6, vocab.pad_id, vocab.bos_id)
    assert actual == expected


@pytest.mark.parametrize("name", ["dense", "task_moe_sub"])
def test_float32_token_log_probs_match_teacher_forced(served, exports, name):
    """Finer than equal translations: the reference tokens' log-probabilities (CTranslate2 score_batch)
    agree to 1e-5, which a wrong LayerNorm eps (1e-6 instead of 1e-5: ~2e-5 off) already breaks."""
    vocab, export = served.vocab, ct2.ExportedModels(exports(name), threads=1)
    deployable = load_deployable(served.models / name)
    worst = 0.0
    for path in sorted((served.corpus / "test").glob("*.tsv")):
        src_lang, tgt_lang = path.stem.split("-")
        pairs = read_pairs(path)
        src = [vocab.encode_source(p.source, tgt_lang) for p in pairs]
        tgt = [vocab.encode_target(p.target) for p in pairs]
        model = deployable.model_for(src_lang, tgt_lang)
        n = len(pairs)
        with torch.no_grad():
            logits = model(pad_batch(src, vocab.pad_id), pad_batch([[vocab.bos_id, *t[:-1]] for t in tgt], 0),
                           torch.full((n,), model.cfg.languages.index(src_lang)),
                           torch.full((n,), model.cfg.languages.index(tgt_lang))).logits
        expected = logits.log_softmax(-1)
        tokens = vocab.tokens
        scored = export.translator_for(src_lang, tgt_lang).score_batch(
            [[tokens[i] for i in s] for s in src], [[tokens[i] for i in t[:-1]] for t in tgt])
        for b, result in enumerate(scored):
            assert len(result.log_probs) == len(tgt[b])  # the pieces and the eos
            for j, value in enumerate(result.log_probs):
                worst = max(worst, abs(value - expected[b, j, tgt[b][j]].item()))
    assert worst < 1e-5


def test_subnetwork_export_routes_each_direction_and_loads_standalone(served, exports):
    export_dir = exports("task_moe_sub")
    index = json.loads((export_dir / ct2.EXPORT_FILE).read_text())
    deployable = load_deployable(served.models / "task_moe_sub")
    assert index["kind"] == "subnetworks" and index["quantization"] == "float32"
    assert index["routes"] == {d: deployable.task_for(*d.split("-")) for d in index["routes"]}
    assert sorted(index["models"]) == ["de", "en", "fr"]  # target routing: one model per target language
    assert (export_dir / "spm.model").read_bytes() == (served.corpus / "spm.model").read_bytes()
    for key, entry in index["models"].items():
        assert entry["directions"] == sorted(d for d, k in index["routes"].items() if k == key)
        # a plain CTranslate2 model folder: tokens in, tokens out, no project code needed
        translator = ctranslate2.Translator(str(export_dir / entry["folder"]), intra_threads=1)
        out = translator.translate_batch([[f"<2{key}>", "▁Me", "</s>"]], beam_size=1, max_decoding_length=5)
        assert len(out[0].hypotheses[0]) <= 5


def test_text_check_finds_no_difference_in_float32(served, exports):
    check = ct2.check_export(served.models / "task_moe_sub", exports("task_moe_sub"), served.corpus,
                             served.vocab, threads=1)
    assert sorted(check["directions"]) == ["de-en", "en-de", "en-fr", "fr-en"]
    assert check["sentences"] == 80 and check["mismatches"] == 0
    assert check["bleu_change"] == 0.0 and check["bleu_export"] == check["bleu_pytorch"]


def test_beam_search_respects_each_sentence_limit(served, exports):
    """CTranslate2's beam search is its own (not claimed equal to the project's), but the length rule holds."""
    expected, actual, limits = project_and_export_ids(served, "dense_untrained", exports("dense_untrained"),
                                                      "en-de", beam_size=3)
    assert len(actual) == len(expected) and all(0 < len(h) <= n for h, n in zip(actual, limits))
    assert served.vocab.eos_id not in {t for h in actual for t in h}


def test_int8_export_translates_and_its_bleu_change_is_measured(served, exports):
    int8, float32 = exports("dense", "int8"), exports("dense", "float32")
    index = json.loads((int8 / ct2.EXPORT_FILE).read_text())
    assert index["quantization"] == "int8" and index["compute_type"] == "int8_float32"
    assert index["models"]["model"]["weights_bytes"] < 0.8 * json.loads(
        (float32 / ct2.EXPORT_FILE).read_text())["models"]["model"]["weights_bytes"]
    check = ct2.check_export(served.models / "dense", int8, served.corpus, served.vocab, threads=1)
    assert check["quantization"] == "int8" and 0 <= check["mismatches"] <= check["sentences"] == 80
    assert check["bleu_change"] == pytest.approx(check["bleu_export"] - check["bleu_pytorch"])
    assert all(d["bleu_export"] >= 0 for d in check["directions"].values())


@pytest.mark.parametrize("name,reason", [
    ("token_moe", "MoE layers in its encoder (token-routed), decoder (token-routed)"),
    ("task_moe_tt", "has not been extracted"),
    ("task_moe", "MoE layers in its encoder (token-routed), decoder (target-routed)"),
    ("task_moe_sub_token", "keeps the MoE layers of its encoder (token-routed)"),
])
def test_models_without_an_exact_dense_form_are_refused(served, tmp_path, name, reason):
    with pytest.raises(ct2.ExportRefused, match="cannot export .* to CTranslate2 exactly") as caught:
        ct2.export_ctranslate2(served.models / name, tmp_path / "out", served.vocab)
    assert reason in str(caught.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_export_command_writes_an_export_and_refuses_a_token_moe(served, tmp_path, capsys):
    vocab = str(served.corpus / "spm.model")
    assert main(["export", "--format", "ctranslate2", "--model", str(served.models / "dense"), "--out",
                 str(tmp_path / "dense"), "--vocab", vocab, "--check", str(served.corpus),
                 "--check-sentences", "4", "--threads", "1"]) == 0
    index = json.loads((tmp_path / "dense" / ct2.EXPORT_FILE).read_text())
    assert index["check"]["mismatches"] == 0 and index["check"]["sentences"] == 16
    assert "0 of 16 differ over 4 directions" in capsys.readouterr().out

    assert main(["export", "--format", "ctranslate2", "--model", str(served.models / "token_moe"), "--out",
                 str(tmp_path / "moe"), "--vocab", vocab]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot export") and "token-routed" in err[0]
    assert not (tmp_path / "moe").exists()


def test_export_rejects_a_vocabulary_of_another_corpus(served, tmp_path, capsys):
    class Other:
        path, size, pad_id, bos_id, eos_id, languages = "other/spm.model", 100, 0, 2, 3, ["en"]

    with pytest.raises(ct2.PipelineError, match="has 100 pieces but .* expects"):
        ct2.export_ctranslate2(served.models / "dense", tmp_path / "out", Other())
    assert not (tmp_path / "out").exists()
