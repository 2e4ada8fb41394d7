"""The benchmark's CTranslate2 rows: beside each exportable model, the same sweep, BLEU, exactness."""

from __future__ import annotations

import pytest

from pipeline import benchmark
from pipeline.config import BenchmarkConfig, DecodeConfig


@pytest.fixture(scope="module")
def evaluations(served, tmp_path_factory):
    """An evaluate folder whose dense "hypotheses" are the references themselves (BLEU 100 on any first
    lines, and less on lines shifted by one), one line more than the benchmark scores; none for
    task_moe_sub."""
    from pipeline.data.corpus import read_pairs
    from pipeline.evaluate import write_lines

    root = tmp_path_factory.mktemp("evaluate")
    (root / "dense" / "hyps").mkdir(parents=True)
    for path in sorted((served.corpus / "test").glob("*.tsv")):
        write_lines(root / "dense" / "hyps" / f"{path.stem}.txt", [p.target for p in read_pairs(path)][:7])
    return root


@pytest.fixture(scope="module")
def result(served, evaluations):
    """The benchmark at a budget of 1 thread (other tests' training may have left torch at more)."""
    import torch

    cfg = BenchmarkConfig(direction="en-de", batch_sizes=[1, 4], max_sentences=8, max_batches=2, repeats=1,
                          bleu_sentences=6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return benchmark.run_benchmark(served.models, ["dense", "token_moe", "task_moe_sub"], served.corpus, cfg,
                                       DecodeConfig(beam_size=2), evaluations=evaluations)
    finally:
        torch.set_num_threads(threads)


def test_rows_sit_beside_their_pytorch_model(result):
    assert list(result["models"]) == ["dense", "dense+ct2-float32", "dense+ct2-int8", "token_moe",
                                      "task_moe_sub", "task_moe_sub+ct2-float32", "task_moe_sub+ct2-int8"]
    assert set(result["ratios_vs_reference"]) == set(result["models"])
    assert "token-routed" in result["ctranslate2"]["skipped"]["token_moe"]
    assert result["ctranslate2"]["quantizations"] == ["float32", "int8"]
    assert result["ctranslate2"]["threads"] == 1  # the PyTorch rows' thread budget: the same for both engines


@pytest.mark.parametrize("name", ["dense", "task_moe_sub"])
def test_same_sweep_same_counts_and_measured_quality(result, name):
    pytorch = result["models"][name]
    floats, int8 = result["models"][f"{name}+ct2-float32"], result["models"][f"{name}+ct2-int8"]
    assert pytorch["engine"] == "pytorch" and floats["engine"] == int8["engine"] == "ctranslate2"
    for row in (floats, int8):
        assert row["base_model"] == name
        assert [s["batch_size"] for s in row["sweep"]] == [s["batch_size"] for s in pytorch["sweep"]] == [1, 4]
        assert row["resident_params"] == pytorch["resident_params"]
        assert row["params_total"] == pytorch["params_total"]
        assert row["peak_tokens_per_second"] > 0 and row["best_batch_size"] in (1, 4)
        assert sorted(row["bleu_directions"]) == ["de-en", "en-de", "en-fr", "fr-en"]
        assert row["bleu"] == pytest.approx(sum(row["bleu_directions"].values()) / 4)
        assert row["bleu_sentences"] == 24 and row["bleu_decode"]["beam_size"] == 2
        assert row["greedy_vs_pytorch"]["direction"] == "en-de" and row["greedy_vs_pytorch"]["sentences"] == 8
        assert row["threads"] == 1 and set(row["peak_tokens_per_second_by_threads"]) == {"1"}
    assert floats["greedy_vs_pytorch"]["mismatches"] == 0  # exact in float32
    for row in (floats, int8):
        if name == "dense":  # scored on the same first 6 lines of each direction as the export
            assert row["bleu_pytorch"] == pytest.approx(100.0)
            assert row["bleu_change_vs_pytorch"] == pytest.approx(row["bleu"] - 100.0)
        else:  # no evaluate hypotheses for it
            assert row["bleu_pytorch"] is None and row["bleu_change_vs_pytorch"] is None
    assert int8["bleu_change_vs_float32"] == pytest.approx(int8["bleu"] - floats["bleu"])
    assert int8["weights_mb"] < floats["weights_mb"]
    assert floats["quantization"] == "float32" and int8["compute_type"] == "int8_float32"


@pytest.mark.parametrize("value", [["int4"], ["float32", "float32"]])
def test_the_quantizations_setting_is_checked(value):
    from pipeline.config import params_from_dict
    from pipeline.errors import ConfigError

    base = {"models": {"dense": {}, "token_moe": {"encoder_routing": "token"},
                       "task_moe": {"decoder_routing": "target"}}, "benchmark": {"ctranslate2": value}}
    with pytest.raises(ConfigError, match=r"benchmark\.ctranslate2"):
        params_from_dict(base)
    assert params_from_dict({**base, "benchmark": {"ctranslate2": []}}).benchmark.ctranslate2 == []


def test_pytorch_bleu_needs_every_direction_with_enough_lines(served, evaluations, tmp_path):
    from pipeline.serve.ct2 import corpus_test_pairs

    pairs = corpus_test_pairs(served.corpus, max_sentences=6)
    assert benchmark.pytorch_bleu(evaluations, "dense", pairs) == pytest.approx(100.0)
    shifted = {d: rows[1:] for d, rows in corpus_test_pairs(served.corpus, max_sentences=7).items()}
    assert benchmark.pytorch_bleu(evaluations, "dense", shifted) < 100.0  # line i is scored against pair i
    assert benchmark.pytorch_bleu(evaluations, "dense", corpus_test_pairs(served.corpus)) is None  # too short
    assert benchmark.pytorch_bleu(evaluations, "student", pairs) is None  # not evaluated


def test_a_cpu_row_keeps_the_faster_thread_count_within_the_budget(served, monkeypatch):
    """With a budget of 2 threads a row is swept at 1 and 2 intra-op threads; its figures are those of
    the faster, which it names, and both peaks are recorded."""
    import torch

    assert benchmark.thread_counts(2) == [1, 2] and benchmark.thread_counts(1) == [1]
    assert benchmark.thread_counts(0) == [0]  # GPU: the engine's default
    cfg = BenchmarkConfig(direction="en-de", batch_sizes=[4], max_sentences=8, max_batches=2, repeats=1,
                          bleu_sentences=2, ctranslate2=["float32"])
    from pipeline.data.corpus import read_pairs

    sources = [p.source for p in read_pairs(served.corpus / "test" / "en-de.tsv")[:8]]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows, record = benchmark.ctranslate2_rows(served.models, ["dense"], served.corpus, served.vocab, sources,
                                                  cfg, DecodeConfig(beam_size=1), torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    row = rows["dense+ct2-float32"]
    peaks = row["peak_tokens_per_second_by_threads"]
    assert record["threads"] == 2 and set(peaks) == {"1", "2"}
    assert row["peak_tokens_per_second"] == max(peaks.values()) == peaks[str(row["threads"])]
    assert row["greedy_vs_pytorch"]["mismatches"] == 0
