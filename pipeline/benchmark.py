"""Serving throughput (paper Sec 5): peak decoded tokens/s over a sweep of batch sizes, per deployable model.

For each model, the network that serves the benchmark direction (the whole model, or the task's extracted
sub-network) decodes the first min(max_sentences, max_batches x batch size) test sources of that direction
in length-sorted batches of each size; a batch size's figure is the median over `repeats` runs. Tokens are the generated target tokens (eos
excluded, padding not). Resident parameters are those that must be in memory to serve that one direction.
Peak memory is the accelerator's peak allocation on GPU; on CPU no per-model figure is reported (the
process' peak RSS only grows across models), only the weights' size. MoE layers dispatch dropless and
grouped at inference (`pipeline.model.moe.Experts`): no padded expert work is charged to any model.

The JSON written (`reports/benchmark.json`) has this shape, which the report reads:
{"direction", "device", "beam_size", "sentences", "models": {name: {"peak_tokens_per_second",
 "peak_sentences_per_second", "best_batch_size", "resident_params", "params_total", "weights_mb",
 "sweep": [{"batch_size", "tokens_per_second", "sentences_per_second", "peak_memory_mb", "seconds"}]}},
 "reference": the teacher (distill.teacher, the model the paper's serving ratio is against),
 "ratios_vs_reference": {name: ratio of peak tokens/s, None if the reference decoded nothing}}
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.config import BenchmarkConfig, DecodeConfig

log = logging.getLogger(__name__)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None  # a process-wide RSS peak would not tell one model from the one before it


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def decode_all(model, batches, src_lang_id: int, tgt_lang_id: int, beam_size: int,
               decode_cfg: DecodeConfig, length_penalty: float) -> int:
    """Decode every batch; return the number of generated tokens."""
    from pipeline.decode import beam_search, greedy_search

    generated = 0
    for src in batches:
        b = src.shape[0]
        src_lang = torch.full((b,), src_lang_id, dtype=torch.long, device=src.device)
        tgt_lang = torch.full((b,), tgt_lang_id, dtype=torch.long, device=src.device)
        max_len = int(decode_cfg.max_len_a * src.shape[1] + decode_cfg.max_len_b)
        if beam_size == 1:
            outs = greedy_search(model, src, src_lang, tgt_lang, max_len)
        else:
            outs = beam_search(model, src, src_lang, tgt_lang, beam_size, length_penalty, max_len)
        generated += sum(len(o) for o in outs)
    return generated


def _batches(ids: list[list[int]], batch_size: int, pad_id: int, device) -> list[torch.Tensor]:
    out = []
    for i in range(0, len(ids), batch_size):
        chunk = ids[i : i + batch_size]
        width = max(len(x) for x in chunk)
        src = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        for j, x in enumerate(chunk):
            src[j, : len(x)] = torch.tensor(x)
        out.append(src.to(device))
    return out


def benchmark_model(model, vocab, sources: list[str], src_lang: str, tgt_lang: str,
                    cfg: BenchmarkConfig, decode_cfg: DecodeConfig, device: torch.device) -> dict:
    """Sweep batch sizes for one network; stop early when a size would exceed the memory budget."""
    languages = list(model.cfg.languages)
    encoded = [vocab.encode_source(s, tgt_lang) for s in sources]
    model = model.to(device).eval()
    sweep = []
    for batch_size in sorted(set(min(b, len(encoded)) for b in cfg.batch_sizes)):
        ids = sorted(encoded[: batch_size * cfg.max_batches], key=len)  # length-sorted, as a server
        batches = _batches(ids, batch_size, vocab.pad_id, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            decode_all(model, batches[:1], languages.index(src_lang), languages.index(tgt_lang),
                       cfg.beam_size, decode_cfg, decode_cfg.length_penalty)  # warm-up
            times, tokens = [], 0
            for _ in range(cfg.repeats):
                _sync(device)
                start = time.perf_counter()
                tokens = decode_all(model, batches, languages.index(src_lang),
                                    languages.index(tgt_lang), cfg.beam_size, decode_cfg,
                                    decode_cfg.length_penalty)
                _sync(device)
                times.append(time.perf_counter() - start)
        except torch.cuda.OutOfMemoryError:
            log.warning("batch size %d ran out of memory; sweep stopped", batch_size)
            break
        seconds = statistics.median(times)
        peak = _peak_memory_mb(device)
        sweep.append({"batch_size": batch_size, "tokens_per_second": tokens / seconds,
                      "sentences_per_second": len(ids) / seconds, "peak_memory_mb": peak,
                      "seconds": seconds})
        if peak is not None and peak > cfg.memory_budget_mb:
            log.warning("batch size %d used %.0f MB > memory_budget_mb; sweep stopped", batch_size, peak)
            break
    best = max(sweep, key=lambda r: r["tokens_per_second"])
    return {"peak_tokens_per_second": best["tokens_per_second"],
            "peak_sentences_per_second": best["sentences_per_second"],
            "best_batch_size": best["batch_size"], "sweep": sweep}


def run_benchmark(models_dir: Path, names: list[str], corpus_dir: Path, cfg: BenchmarkConfig,
                  decode_cfg: DecodeConfig, reference: str = "token_moe") -> dict:
    """Benchmark every deployable model in `names` on `cfg.direction`'s test sources; ratios of peak
    throughput against `reference` (the teacher: `pipeline.roles.Roles.teacher`)."""
    from pipeline.data.corpus import read_pairs
    from pipeline.extract import load_deployable
    from pipeline.train.api import load_vocab

    started = time.perf_counter()
    device = _device()
    vocab = load_vocab(corpus_dir)
    src_lang, tgt_lang = cfg.direction.split("-")
    pairs = read_pairs(Path(corpus_dir) / "test" / f"{cfg.direction}.tsv")[: cfg.max_sentences]
    sources = [p.source for p in pairs]
    result = {"direction": cfg.direction, "device": _device_name(device), "beam_size": cfg.beam_size,
              "sentences": len(sources), "models": {}}
    for name in tqdm(names, desc="benchmark", unit="model"):
        deployable = load_deployable(Path(models_dir) / name)
        model = deployable.model_for(src_lang, tgt_lang)
        figures = benchmark_model(model, vocab, sources, src_lang, tgt_lang, cfg, decode_cfg, device)
        figures["resident_params"] = sum(p.numel() for p in model.parameters())
        figures["weights_mb"] = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        figures["params_total"] = _total_params(deployable)
        result["models"][name] = figures
        model.to("cpu")
    result["reference"] = reference
    ref = (result["models"].get(reference) or {}).get("peak_tokens_per_second")
    if ref is not None:  # None where the reference decoded no tokens at all (an untrained model)
        result["ratios_vs_reference"] = {
            name: m["peak_tokens_per_second"] / ref if ref > 0 else None
            for name, m in result["models"].items()}
    result["wall_seconds"] = time.perf_counter() - started
    return result


def _total_params(deployable) -> int:
    """Parameters of the whole model (for task_moe_sub: of the task-MoE it was extracted from)."""
    return int(deployable.full_parameters)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
