"""benchmarks/serve_parallel.py: the figures it derives (from made-up rank records), one real run of it on
2 ranks with the smoke profile's model size (what it decodes and exchanges, not how fast), its user errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "serve_parallel.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("serve_parallel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def _run(system, b, repeat, rank, seconds, tokens, a2a=0.0, cpu=None):
    return {"system": system, "batch_size": b, "repeat": repeat, "rank": rank, "seconds": seconds,
            "cpu_seconds": cpu if cpu is not None else seconds, "tokens": tokens, "sentences": b,
            "latencies": [seconds / 2, seconds / 2], "all_to_all_seconds": a2a, "all_to_all_calls": 3,
            "sync_seconds": 0.0}


def test_summary_takes_the_slowest_rank_and_ratios_within_each_repeat(bench):
    memory = {"weights_mb": 10.0, "process_baseline_mb": 200.0, "loaded_mb": 11.0, "decode_peak_mb": 5.0}
    ranks = []
    for rank in range(2):
        runs = []
        for repeat, slow in enumerate((1.0, 2.0)):  # the second repeat ran twice as slow for everyone
            for b in (1, 4):
                runs.append(_run("token_moe", b, repeat, rank, slow * (2.0 if rank else 1.0), 100, a2a=0.5 * slow))
                runs.append(_run("task_moe_sub", b, repeat, rank, slow * 1.0, 100))
                runs.append(_run("dense", b, repeat, rank, slow * 0.5, 100 * (1 + rank)))
        ranks.append({"runs": runs, "memory": {n: memory for n in bench.SYSTEMS}})
    out = bench.summarise(ranks)
    token = out["systems"]["token_moe"]
    assert token["peak_tokens_per_second"]["per_repeat"] == [200 / 2.0, 200 / 4.0]  # both ranks' tokens / slowest
    assert token["all_to_all_share"]["at_batch1"] == pytest.approx((0.5 + 0.5 + 1.0 + 1.0) / (1 + 2 + 2 + 4))
    assert out["systems"]["dense"]["peak_tokens_per_second"]["per_repeat"] == [300 / 0.5, 300 / 1.0]
    ratio = out["ratios_vs_token_moe"]["task_moe_sub"]["peak_tokens_per_second"]
    assert ratio["per_repeat"] == [2.0, 2.0] and ratio["median"] == 2.0  # the slow repeat cancels out
    # batch-1 latency: the median over every rank's sentences (token_moe: 0.5 s and 1 s ones; sub: 0.5 s)
    assert out["ratios_vs_token_moe"]["task_moe_sub"]["batch1_speedup"]["per_repeat"] == [
        pytest.approx(0.75 / 0.5), pytest.approx(1.5 / 1.0)]
    assert token["memory_per_rank_mb"] == [215.0, 215.0]


def test_two_ranks_serve_the_same_sources_and_only_the_token_moe_exchanges(tiny_corpus, tmp_path):
    out = tmp_path / "serve.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--corpus", str(tiny_corpus), "--params", str(ROOT / "params.yaml"),
         "--profile", "smoke", "--experts", "0", "--directions", "en-de", "en-fr", "--batch-sizes", "1", "2",
         "--max-batches", "2", "--repeats", "2", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    setup = result["setup"]
    assert setup["ranks"] == 2 and setup["model"]["num_experts"] == 4
    assert setup["tasks_per_rank"] == {"0": ["en-de"], "1": ["en-fr"]}
    assert set(result["systems"]) == {"token_moe", "task_moe_sub", "dense"}
    sweeps = {name: {s["batch_size"]: s for s in f["sweep"]} for name, f in result["systems"].items()}
    for b in (1, 2):
        # the same number of sentences (every rank's), in every system and repeat
        assert {sweeps[n][b]["sentences"] for n in sweeps} == {2 * b * 2}
        assert len(sweeps["token_moe"][b]["tokens"]) == 2
        # the token-MoE exchanged at every MoE layer call; the others never communicate
        assert min(sweeps["token_moe"][b]["all_to_all_calls_per_rank"]) > 0
        assert sweeps["token_moe"][b]["all_to_all_share"] > 0
        for name in ("task_moe_sub", "dense"):
            assert sweeps[name][b]["all_to_all_calls_per_rank"] == [0, 0]
            assert sweeps[name][b]["all_to_all_share"] == 0
    token, sub = result["systems"]["token_moe"], result["systems"]["task_moe_sub"]
    # each rank holds half of the experts: fewer weights than the unsharded model (its count is known)
    assert token["weights_mb_per_rank"][0] == token["weights_mb_per_rank"][1] > 0
    assert all(m > 0 for f in result["systems"].values() for m in f["memory_per_rank_mb"])
    ratio = result["ratios_vs_token_moe"]["task_moe_sub"]["peak_tokens_per_second"]
    assert ratio["per_repeat"] == [s / t for s, t in zip(sub["peak_tokens_per_second"]["per_repeat"],
                                                       token["peak_tokens_per_second"]["per_repeat"])]
    assert result["paper"]["task_moe_sub_vs_token_moe_throughput"]["32 experts"] == 1.87
    assert "task_moe_sub / token_moe" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--directions", "en-de", "en-fr", "en-es"], "cannot be shared evenly by 2 ranks"),
    (["--batch-sizes", "0"], "must be >= 1"),
    (["--corpus", "/nonexistent"], "spm.model: not found"),
])
def test_user_errors_are_one_line(bench, tiny_corpus, args, message):
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError, match=message) as err:
        bench.parse_args(["--corpus", str(tiny_corpus), *args])
    assert "\n" not in str(err.value)
