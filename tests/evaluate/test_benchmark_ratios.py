"""benchmark: the ratios to the reference (the teacher), including a reference that decoded nothing."""

from __future__ import annotations

import types

import pytest
import torch

from pipeline import benchmark
from pipeline.config import BenchmarkConfig, DecodeConfig


@pytest.mark.parametrize("reference,reference_speed,expected", [
    ("token_moe", 400.0, {"dense": 2.0, "token_moe": 1.0, "task_moe": 0.5}),
    ("token_moe", 0.0, {"dense": None, "token_moe": None, "task_moe": None}),
    ("task_moe", 200.0, {"dense": 4.0, "token_moe": 2.0, "task_moe": 1.0}),  # distill.teacher: task_moe
])
def test_ratios_to_the_reference(tmp_path, monkeypatch, reference, reference_speed, expected):
    speeds = {"dense": 800.0, "token_moe": 400.0, "task_moe": 200.0, reference: reference_speed}
    module = torch.nn.Linear(2, 2)

    class Deployable:
        full_parameters = 6

        def __init__(self, name):
            self.name = name

        def model_for(self, src, tgt):
            module.name = self.name
            return module

    monkeypatch.setattr("pipeline.extract.load_deployable", lambda path: Deployable(path.name))
    monkeypatch.setattr("pipeline.train.api.load_vocab", lambda corpus: None)
    monkeypatch.setattr("pipeline.data.corpus.read_pairs",
                        lambda path: [types.SimpleNamespace(source="a b")] * 3)
    monkeypatch.setattr(benchmark, "benchmark_model",
                        lambda model, *args: {"peak_tokens_per_second": speeds[model.name]})
    result = benchmark.run_benchmark(tmp_path / "models", ["dense", "token_moe", "task_moe"], tmp_path,
                                     BenchmarkConfig(ctranslate2=[]), DecodeConfig(), reference=reference)
    assert result["reference"] == reference
    assert result["ratios_vs_reference"] == expected
    assert result["wall_seconds"] > 0  # the report's wall-time table reads it
    assert result["models"]["dense"]["resident_params"] == 6 and result["models"]["dense"]["params_total"] == 6
