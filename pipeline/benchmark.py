"""Serving throughput (paper Sec 5): peak decoded tokens/s over a sweep of batch sizes, per deployable model.

For each model, the network that serves the benchmark direction (the whole model, or the task's extracted
sub-network) decodes the first min(max_sentences, max_batches x batch size) test sources of that direction
in length-sorted batches of each size; a batch size's figure is the median over `repeats` runs. Tokens are the generated target tokens (eos
excluded, padding not). Resident parameters are those that must be in memory to serve that one direction.
Peak memory is the accelerator's peak allocation on GPU; on CPU no per-model figure is reported (the
process' peak RSS only grows across models), only the weights' size. MoE layers dispatch dropless and
grouped at inference (`pipeline.model.moe.Experts`): no padded expert work is charged to any model.

CTranslate2 rows (`benchmark.ctranslate2`: the quantizations, float32 and int8 by default): every model
that has an exact dense form (dense, student, dense_long, and task_moe_sub when its sub-networks are fully
dense; `pipeline.serve.ct2.refusal` says why another is skipped) is exported to a temporary folder and
swept the same way: the same sentences, length-sorted batches, batch sizes, repeats, beam size, length
limit (max_len_a * padded source length + max_len_b, capped by max_positions) and thread budget: on CPU
the sweep runs at 1 and at torch's thread count of `intra_threads` and keeps the faster (`thread_counts`;
small models lose to thread synchronisation), recording both peaks. Beside its speed, each such row has its BLEU on the test set
(every direction, the first `benchmark.bleu_sentences` pairs each, `evaluate.decode`'s beam and length
penalty as CTranslate2 applies them), the PyTorch model's BLEU on the same pairs (from the evaluate stage's
hypotheses, when given) and the change between them, and its greedy translations of the benchmark sources
compared with the PyTorch model's (float32: the exactness check, mismatches expected 0; int8: how many
translations quantization changes); an int8 row also has its BLEU change against the float32 row.

The JSON written (`reports/benchmark.json`) has this shape, which the report reads:
{"direction", "device", "beam_size", "sentences",
 "models": {name: {"engine": "pytorch" | "ctranslate2", "base_model": the models/ folder it serves,
   "peak_tokens_per_second", "peak_sentences_per_second", "best_batch_size", "resident_params",
   "params_total", "weights_mb",
   "sweep": [{"batch_size", "tokens_per_second", "sentences_per_second", "peak_memory_mb", "seconds"}],
   # CTranslate2 rows only, named "<base_model>+ct2-<quantization>", each after its base model's row:
   "quantization": "float32" | "int8", "compute_type", "device", "threads" (the intra-op threads of the
   peak, which also translate for BLEU), "peak_tokens_per_second_by_threads": {threads: peak},
   "weights_mb" (the size of the model.bin serving `direction`),
   "bleu": mean over directions, "bleu_directions": {direction: bleu}, "bleu_sentences",
   "bleu_signature", "bleu_decode": {"beam_size", "length_penalty", "max_len_a", "max_len_b",
   "max_sentences", "length_normalisation"},
   "bleu_pytorch" (the PyTorch model's mean BLEU on the same pairs, from its evaluate hypotheses; None
   without them), "bleu_change_vs_pytorch" (bleu - bleu_pytorch, or None),
   "greedy_vs_pytorch": {"direction", "sentences", "mismatches", "first_mismatch"},
   "bleu_change_vs_float32" (int8 rows, when a float32 row exists)}},
 "ctranslate2": {"version", "quantizations", "device", "threads", "skipped": {name: reason}} (absent
   when benchmark.ctranslate2 is []),
 "reference": the teacher (distill.teacher, the model the paper's serving ratio is against),
 "ratios_vs_reference": {name: ratio of peak tokens/s, None if the reference decoded nothing}}
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

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
                  decode_cfg: DecodeConfig, reference: str = "token_moe",
                  evaluations: Optional[Path] = None) -> dict:
    """Benchmark every deployable model in `names` on `cfg.direction`'s test sources (PyTorch rows, and
    CTranslate2 rows for the quantizations of `cfg.ctranslate2`, whose BLEU covers `cfg.bleu_sentences`
    test pairs per direction); ratios of peak throughput against `reference` (the teacher:
    `pipeline.roles.Roles.teacher`). `evaluations`: the evaluate stage's folder (`<name>/hyps/<d>.txt`),
    for the PyTorch BLEU on the CTranslate2 rows' pairs."""
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
        result["models"][name] = {"engine": "pytorch", "base_model": name, **figures}
        model.to("cpu")
    if getattr(cfg, "ctranslate2", None):
        rows, result["ctranslate2"] = ctranslate2_rows(models_dir, names, corpus_dir, vocab, sources, cfg,
                                                       decode_cfg, device, evaluations)
        ordered = {}
        for name, row in result["models"].items():  # each engine's rows after its model's
            ordered[name] = row
            ordered.update({key: r for key, r in rows.items() if r["base_model"] == name})
        result["models"] = ordered
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


# --------------------------------------------------------------------------------------------------
# CTranslate2 rows


def _sweep(decode_batches, encoded: list[list[int]], cfg: BenchmarkConfig) -> dict:
    """The batch-size sweep of `benchmark_model` for any engine: `decode_batches(batches) -> tokens`."""
    sweep = []
    for batch_size in sorted(set(min(b, len(encoded)) for b in cfg.batch_sizes)):
        ids = sorted(encoded[: batch_size * cfg.max_batches], key=len)  # as benchmark_model
        batches = [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]
        decode_batches(batches[:1])  # warm-up
        times, tokens = [], 0
        for _ in range(cfg.repeats):
            start = time.perf_counter()
            tokens = decode_batches(batches)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        sweep.append({"batch_size": batch_size, "tokens_per_second": tokens / seconds,
                      "sentences_per_second": len(ids) / seconds, "peak_memory_mb": None,
                      "seconds": seconds})
    best = max(sweep, key=lambda r: r["tokens_per_second"])
    return {"peak_tokens_per_second": best["tokens_per_second"],
            "peak_sentences_per_second": best["sentences_per_second"],
            "best_batch_size": best["batch_size"], "sweep": sweep}


def benchmark_ctranslate2(export, vocab, sources: list[str], src_lang: str, tgt_lang: str,
                          cfg: BenchmarkConfig, decode_cfg: DecodeConfig) -> dict:
    """`benchmark_model` for an export (`pipeline.serve.ct2.ExportedModels`): the same batches and limits.

    The sources are turned into pieces before the clock starts, as the PyTorch sweep pads its id
    tensors before it; a hypothesis' tokens are its pieces (eos excluded)."""
    from pipeline.serve.ct2 import decode_options, decode_pieces

    translator = export.translator_for(src_lang, tgt_lang)
    max_positions = int(export.entry(src_lang, tgt_lang)["max_positions"])
    tokens = vocab.tokens
    options = decode_options(tokens, vocab.pad_id, vocab.bos_id)
    encoded = [[tokens[i] for i in vocab.encode_source(s, tgt_lang)] for s in sources]

    def decode_batches(batches) -> int:
        generated = 0
        for rows in batches:
            width = max(len(r) for r in rows)
            limit = max(1, min(int(decode_cfg.max_len_a * width + decode_cfg.max_len_b), max_positions))
            hyps = decode_pieces(translator, rows, [limit] * len(rows), cfg.beam_size,
                                 decode_cfg.length_penalty, options)
            generated += sum(len(h) for h in hyps)
        return generated

    return _sweep(decode_batches, encoded, cfg)


def thread_counts(budget: int) -> list[int]:
    """CTranslate2 intra-op thread counts a CPU row tries within the PyTorch rows' thread budget: 1 and the
    budget. (On the 2-core machine, a d_model-128 model decoded 3.4x slower with 2 intra-op threads than
    with 1; PyTorch was faster with 2.) On GPU (budget 0) the engine's default."""
    return sorted({1, budget}) if budget > 0 else [0]


def ctranslate2_rows(models_dir: Path, names: list[str], corpus_dir: Path, vocab, sources: list[str],
                     cfg: BenchmarkConfig, decode_cfg: DecodeConfig, device,
                     evaluations: Optional[Path] = None) -> tuple[dict, dict]:
    """({"<name>+ct2-<quantization>": row}, the run's "ctranslate2" record) for every model of `names`
    that exports exactly; the others are listed under "skipped" with the reason."""
    import ctranslate2
    import torch

    from pipeline.data.corpus import read_pairs
    from pipeline.extract import load_deployable
    from pipeline.serve.ct2 import (
        COMPUTE_TYPES, QUANTIZATIONS, ExportedModels, ExportRefused, compare_with_pytorch, corpus_test_pairs,
        export_bleu, export_ctranslate2,
    )

    src_lang, tgt_lang = cfg.direction.split("-")
    ct2_device = "cuda" if device.type == "cuda" and ctranslate2.get_cuda_device_count() > 0 else "cpu"
    threads = torch.get_num_threads() if ct2_device == "cpu" else 0
    record = {"version": ctranslate2.__version__, "quantizations": list(cfg.ctranslate2),
              "device": ct2_device, "threads": threads, "skipped": {}}
    bench_pairs = {cfg.direction: read_pairs(Path(corpus_dir) / "test" / f"{cfg.direction}.tsv")
                   [: len(sources)]}
    bleu_pairs = corpus_test_pairs(corpus_dir, max_sentences=cfg.bleu_sentences)
    rows = {}
    quantizations = sorted(cfg.ctranslate2, key=QUANTIZATIONS.index)  # float32 first
    progress = tqdm(total=len(names) * len(quantizations), desc="benchmark ctranslate2", unit="row")
    with tempfile.TemporaryDirectory(prefix="benchmark-ct2-") as tmp, progress:
        for name in names:
            folder = Path(models_dir) / name
            floats = None
            for i, quantization in enumerate(quantizations):
                out = Path(tmp) / f"{name}-{quantization}"
                try:
                    export_ctranslate2(folder, out, vocab, quantization)
                except ExportRefused as exc:
                    record["skipped"][name] = str(exc)
                    log.info("ctranslate2: %s skipped: %s", name, exc)
                    progress.update(len(quantizations) - i)
                    break
                by_threads = {}  # intra-op threads -> (export, figures); the best serves the row
                for count in thread_counts(threads):
                    export = ExportedModels(out, device=ct2_device, threads=count)
                    by_threads[count] = export, benchmark_ctranslate2(export, vocab, sources, src_lang, tgt_lang,
                                                                      cfg, decode_cfg)
                best = max(by_threads, key=lambda c: by_threads[c][1]["peak_tokens_per_second"])
                export, figures = by_threads[best]
                deployable = load_deployable(folder)
                model = deployable.model_for(src_lang, tgt_lang)
                pairs = {d: p for d, p in bleu_pairs.items() if d in export.index["routes"]}
                bleu = export_bleu(export, pairs, decode_cfg)
                reference_bleu = pytorch_bleu(evaluations, name, pairs) if evaluations else None
                greedy = compare_with_pytorch(folder, export, bench_pairs, vocab, decode_cfg)  # greedy
                row = {"engine": "ctranslate2", "base_model": name, "quantization": quantization,
                       "compute_type": COMPUTE_TYPES[quantization], "device": ct2_device, "threads": best,
                       "peak_tokens_per_second_by_threads": {
                           str(c): f["peak_tokens_per_second"] for c, (_, f) in by_threads.items()},
                       **figures,
                       "resident_params": sum(p.numel() for p in model.parameters()),
                       "params_total": _total_params(deployable),
                       "weights_mb": export.weights_bytes(src_lang, tgt_lang) / 2**20,
                       "bleu": bleu["bleu"], "bleu_directions": bleu["directions"],
                       "bleu_sentences": bleu["sentences"],
                       "bleu_signature": next(iter(bleu["signatures"].values()), None),
                       "bleu_decode": {"beam_size": decode_cfg.beam_size,
                                       "length_penalty": decode_cfg.length_penalty,
                                       "max_len_a": decode_cfg.max_len_a, "max_len_b": decode_cfg.max_len_b,
                                       "max_sentences": cfg.bleu_sentences,
                                       "length_normalisation": "CTranslate2: score / length ** length_penalty"
                                       if decode_cfg.beam_size > 1 else None},
                       "bleu_pytorch": reference_bleu,
                       "bleu_change_vs_pytorch": (bleu["bleu"] - reference_bleu
                                                  if None not in (bleu["bleu"], reference_bleu) else None),
                       "greedy_vs_pytorch": {"direction": cfg.direction, **{
                           k: greedy["directions"][cfg.direction][k]
                           for k in ("sentences", "mismatches", "first_mismatch")}}}
                if quantization == "float32":
                    floats = row
                elif floats is not None and row["bleu"] is not None and floats["bleu"] is not None:
                    row["bleu_change_vs_float32"] = row["bleu"] - floats["bleu"]
                rows[f"{name}+ct2-{quantization}"] = row
                progress.update(1)
                log.info("ctranslate2 %s %s: %.0f tokens/s peak, BLEU %.2f, %d of %d greedy translations "
                         "differ from PyTorch's", name, quantization, row["peak_tokens_per_second"],
                         row["bleu"] or 0.0, row["greedy_vs_pytorch"]["mismatches"],
                         row["greedy_vs_pytorch"]["sentences"])
    return rows, record


def pytorch_bleu(evaluations: Path, name: str, pairs: dict[str, list]) -> Optional[float]:
    """The PyTorch model's mean BLEU over `pairs`' directions on the same first lines, scored from the
    evaluate stage's hypotheses (`<evaluations>/<name>/hyps/<direction>.txt`); None when a direction's
    file is missing or shorter than its pairs."""
    from pipeline.evaluate import read_lines, score_direction

    scores = []
    for direction, rows in pairs.items():
        path = Path(evaluations) / name / "hyps" / f"{direction}.txt"
        if not path.is_file():
            return None
        hyps = read_lines(path)
        if len(hyps) < len(rows):
            return None
        scores.append(score_direction(hyps[: len(rows)], [p.target for p in rows], direction.split("-")[1])["bleu"])
    return sum(scores) / len(scores) if scores else None
