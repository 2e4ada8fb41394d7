"""Serving over N ranks (Kudugunta et al. 2021, Sec 5): sharded token-MoE vs task-MoE sub-networks vs dense.

The paper's serving claim: a task-MoE's extracted sub-network decodes at 1.87x the token-MoE's throughput
with 32 experts (2.6x with 128), because a token-MoE spread over devices spends 27-36% of its step time
exchanging tokens (all-to-all), and a sub-network needs no exchange. This script sets up that situation
over N processes on one machine (gloo on CPU, NCCL on GPUs; the same code) and measures it:

- token_moe: the token-MoE (token routing on both sides), each rank holding E / N experts of every MoE layer
  (pipeline/model/expert_parallel.py) and its share of the sentences (any direction); every MoE layer call
  exchanges tokens with the other ranks, and the ranks decode in lockstep.
- task_moe_sub: the task-MoE's extracted sub-networks (pipeline/extract.py), each rank serving its share
  of the tasks (directions[r::N]): no communication.
- dense: the dense model, one copy per rank, each rank its share of the sentences: no communication.

Every system decodes the same test sources: the first P of each direction's test split (P = max_batches x
batch size x N / directions, at most --sentences), dealt round-robin to the ranks (token_moe, dense) or by
direction (task_moe_sub), length-sorted, greedy (or --beam-size). For each batch size of the sweep and each
repeat, the ranks start together (barrier) and a system's throughput is every rank's generated tokens over
the slowest rank's seconds. Systems and batch sizes are interleaved within each repeat, so a background
load slows all of them alike; the sub-network / token-MoE ratio is taken within each repeat, and its median
and range over the repeats are reported.

Wall-clock throughput is the figure the paper's claim is about. Beside it, `tokens_per_cpu_second` (every
rank's tokens over every rank's CPU seconds, time.process_time) is the work each system does per token,
whatever the scheduler did: on a machine shared with other jobs the wall clock also measures who got a core
when, and a lockstep system waits for its slowest rank at every step.

Also reported: latency at batch 1 (median seconds per sentence over every rank's sentences), the share of
the token-MoE's decoding time spent in the all-to-all exchanges (the ranks' agreement on stopping rides on
the decoder's count exchange, so it is part of it; `sync_share` is the time in separate all-reduces, which
only a decoder without MoE layers needs), and memory per rank:
`weights_mb` (the bytes of the parameters the rank holds: for token_moe the non-expert weights and E / N
experts of each MoE layer; for task_moe_sub its tasks' sub-networks as pipeline.extract loads them, one full
copy each), `decode_peak_mb` (on CPU the peak growth of the resident set above its level before decoding
the largest batch size, from VmHWM reset through /proc/self/clear_refs; on GPU torch's peak allocation above
the weights), `process_baseline_mb` (the resident set of the rank before any model: the torch runtime), and
`memory_per_rank_mb`, their sum: what a rank serving that system alone needs. `loaded_mb` (the resident set's
growth when the system was built) is kept for reference; it includes first-use allocations and is noisy.

Models: the trained checkpoints of --models-dir (token_moe/, task_moe_sub/ with its manifest, dense/) when
given, else randomly initialised models of params.yaml's `model` size (--experts overrides num_experts;
the task-MoE is built token/target and its sub-networks extracted here). Decoding speed hardly depends on
the weights, except through the generated lengths: a random model seldom emits eos, so it decodes to the
length limit (max_len_a x source length + max_len_b), the same for every system.

    python benchmarks/serve_parallel.py --corpus data/corpus --ranks 2            # random init, 32 experts
    python benchmarks/serve_parallel.py --models-dir models --ranks 2
    python benchmarks/serve_parallel.py --backend nccl --device cuda --ranks 8 --batch-sizes 1 32 128 512

JSON written to --out (the report reads it):
{"benchmark": "serve_parallel",
 "setup": {"ranks", "backend", "device", "threads_per_rank", "niced", "models" (what was measured),
           "model": {"d_model", "d_ff", "encoder_layers", "decoder_layers", "num_experts", "top_k",
                     "moe_layers", "vocab_size"},
           "directions", "tasks_per_rank" ({rank: [directions]}), "sentences_per_direction",
           "batch_sizes", "max_batches", "repeats", "beam_size", "decode" ({max_len_a, max_len_b}),
           "torch", "command", "note"},
 "systems": {name: {"description", "communicates" (bool),
     "peak_tokens_per_second": {"median", "min", "max", "per_repeat": [...]},
     "peak_tokens_per_cpu_second": {same},
     "best_batch_size" (of the median sweep),
     "latency_batch1_ms": {"median", "min", "max", "per_repeat"}, "latency_batch1_ms_per_token": float,
     "all_to_all_share": {"at_best_batch_size", "at_batch1"}, "sync_share": {same},
     "memory_per_rank_mb": [per rank], "weights_mb_per_rank": [...], "process_baseline_mb_per_rank",
     "loaded_mb_per_rank", "decode_peak_mb_per_rank" (CPU; on GPU "peak_allocated_mb_per_rank"),
     "sweep": [{"batch_size", "tokens_per_second": {"median", "min", "max", "per_repeat"},
                "tokens_per_cpu_second": {same},
                "sentences", "tokens" (per repeat, all ranks), "all_to_all_share", "sync_share",
                "all_to_all_calls_per_rank"}]}},
 "ratios_vs_token_moe": {name: {"peak_tokens_per_second": {"median", "min", "max", "per_repeat"},
                                "peak_tokens_per_cpu_second": {same}, "batch1_speedup": {same}}},
     (per repeat: name's figure / token_moe's; batch1_speedup: token_moe's batch-1 latency / name's)
 "paper": {"task_moe_sub_vs_token_moe_throughput": {"32 experts": 1.87, "128 experts": 2.6},
           "token_moe_all_to_all_share": [0.27, 0.36]},
 "wall_seconds"}
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.errors import PipelineError  # noqa: E402

SYSTEMS = ("token_moe", "task_moe_sub", "dense")
DESCRIPTIONS = {
    "token_moe": "token-MoE, experts sharded over the ranks, tokens exchanged by all-to-all, lockstep decoding",
    "task_moe_sub": "task-MoE sub-networks (extracted), each rank serving its share of the tasks, "
                    "no communication",
    "dense": "dense model, one copy per rank, each rank its share of the sentences, no communication",
}
PAPER = {"task_moe_sub_vs_token_moe_throughput": {"32 experts": 1.87, "128 experts": 2.6},
         "token_moe_all_to_all_share": [0.27, 0.36]}


# --------------------------------------------------------------------------------------------------
# memory


def _status_kb(key: str) -> Optional[int]:
    try:
        match = re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_mb() -> Optional[float]:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_rss_mb() -> Optional[float]:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else None


def weights_mb(models) -> float:
    return sum(p.numel() * p.element_size() for m in models for p in m.parameters()) / 2**20


# --------------------------------------------------------------------------------------------------
# the systems one rank serves


@dataclasses.dataclass
class Item:
    ids: list[int]
    src_lang: int
    tgt_lang: int
    limit: int


@dataclasses.dataclass
class System:
    name: str
    models: dict  # key -> Seq2Seq: "all" for token_moe/dense, a direction for task_moe_sub
    items: dict  # key -> [Item] this rank decodes with that model
    communicates: bool


def _deal(items_by_direction: dict[str, list[Item]], rank: int, world: int) -> list[Item]:
    """Round-robin over every direction's items (interleaved), so each rank gets a share of each."""
    merged = [item for group in zip(*items_by_direction.values()) for item in group]
    return merged[rank::world]


def build_systems(args, rank: int, world: int, device: torch.device, sources: dict[str, list[list[int]]],
                  vocab, languages: list[str]):
    """This rank's systems, one at a time (so the memory each takes can be measured), then a description
    of the models: yields (name, System) ..., then ("described", dict)."""
    from pipeline.config import ModelSpec, load_params
    from pipeline.extract import ExtractedModels, extract_subnetworks
    from pipeline.model.checkpoint import load_checkpoint
    from pipeline.model.config import Seq2SeqConfig
    from pipeline.model.expert_parallel import shard_experts
    from pipeline.model.transformer import Seq2Seq

    directions = args.directions
    mine = directions[rank::world]
    items = {d: [Item(ids, languages.index(d.split("-")[0]), languages.index(d.split("-")[1]),
                      int(args.max_len_a * len(ids) + args.max_len_b)) for ids in sources[d]]
             for d in directions}
    if args.models_dir:
        folder = Path(args.models_dir)
        described = f"trained checkpoints of {folder}"

        def token_moe():
            return load_checkpoint(folder / "token_moe")

        def dense():
            return load_checkpoint(folder / "dense")

        def subnetworks():
            extracted = ExtractedModels(folder / "task_moe_sub")
            return {d: extracted.model_for(*d.split("-")) for d in mine}
    else:
        params = load_params(args.params, profile=args.profile)
        model_cfg = dataclasses.replace(params.model, dropout=0.0, attention_dropout=0.0,
                                        num_experts=args.experts or params.model.num_experts)
        source = "params.yaml" if not args.profile else f"the {args.profile} profile"
        described = (f"randomly initialised models of {source}'s model size with {model_cfg.num_experts} "
                     f"experts (seed {args.seed}); the task-MoE (token/target) built the same way and its "
                     "sub-networks extracted here")

        def build(enc: str, dec: str, seed: int) -> Seq2Seq:
            torch.manual_seed(seed)
            return Seq2Seq(Seq2SeqConfig.from_vocab(model_cfg, ModelSpec(enc, dec), vocab, languages)).eval()

        def token_moe():
            return build("token", "token", args.seed)

        def dense():
            return build("none", "none", args.seed + 1)

        def subnetworks():
            task = build("token", "target", args.seed + 2)
            subs = {key: sub for key, (sub, _) in extract_subnetworks(task, mine).items()}
            return {d: subs[d.split("-")[1]] for d in mine}  # keyed by target language

    token = shard_experts(token_moe())
    cfg = token.cfg
    model = {"d_model": cfg.d_model, "d_ff": cfg.d_ff, "encoder_layers": cfg.encoder_layers,
             "decoder_layers": cfg.decoder_layers, "num_experts": cfg.num_experts, "top_k": cfg.top_k,
             "moe_layers": {side: sum(1 for n in token.moe_layers() if n.startswith(side))
                            for side in ("encoder", "decoder")}, "vocab_size": cfg.vocab_size}
    yield "token_moe", System("token_moe", {"all": token.to(device).eval()}, {"all": _deal(items, rank, world)},
                              True)
    del token
    yield "task_moe_sub", System("task_moe_sub", {d: m.to(device).eval() for d, m in subnetworks().items()},
                                 {d: items[d] for d in mine}, False)
    yield "dense", System("dense", {"all": dense().to(device).eval()}, {"all": _deal(items, rank, world)}, False)
    yield "described", {"models": described, "model": model}


def _release_memory() -> None:
    gc.collect()
    try:  # hand freed heap pages back, so the resident set shows what is held
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def batches_of(system: System, batch_size: int, per_rank: int, pad_id: int, device) -> list:
    """(model, src, src_lang, tgt_lang, limits) batches of this rank: its first `per_rank` items (split
    evenly over its models), each model's length-sorted and cut into batches."""
    out = []
    keys = list(system.items)
    share = per_rank // len(keys)
    for key in keys:
        chosen = sorted(system.items[key][:share], key=lambda it: len(it.ids))
        for i in range(0, len(chosen), batch_size):
            chunk = chosen[i:i + batch_size]
            src = torch.full((len(chunk), max(len(it.ids) for it in chunk)), pad_id, dtype=torch.long)
            for j, it in enumerate(chunk):
                src[j, :len(it.ids)] = torch.tensor(it.ids)
            out.append((system.models[key], src.to(device),
                        torch.tensor([it.src_lang for it in chunk], device=device),
                        torch.tensor([it.tgt_lang for it in chunk], device=device),
                        [it.limit for it in chunk]))
    return out


def _pad_lockstep(batches: list, model, pad_id: int, device) -> list:
    """A communicating system's ranks must decode as many batches: pad with empty ones."""
    import torch.distributed as dist

    count = torch.tensor([len(batches)], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    empty = (model, torch.full((0, 1), pad_id, dtype=torch.long, device=device),
             torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, dtype=torch.long, device=device), [])
    return batches + [empty] * (int(count.item()) - len(batches))


def decode_batches(batches: list, beam_size: int, device) -> dict:
    from pipeline.decode import beam_search, greedy_search
    from pipeline.model.expert_parallel import COMM

    COMM.reset()
    tokens, sentences, latencies = 0, 0, []
    _sync(device)
    cpu = time.process_time()
    start = time.perf_counter()
    for model, src, sl, tl, limits in batches:
        begin = time.perf_counter()
        if beam_size == 1:
            outs = greedy_search(model, src, sl, tl, limits)
        else:
            outs = beam_search(model, src, sl, tl, beam_size, 0.6, limits)
        _sync(device)
        if limits:
            latencies.append(time.perf_counter() - begin)
        tokens += sum(len(o) for o in outs)
        sentences += len(outs)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "tokens": tokens,
            "sentences": sentences, "latencies": latencies,
            "all_to_all_seconds": COMM.all_to_all_seconds, "all_to_all_calls": COMM.all_to_all_calls,
            "sync_seconds": COMM.sync_seconds}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------
# one rank


def rank_main(rank: int, world: int, args_dict: dict, out_path: str) -> None:
    import torch.distributed as dist

    from pipeline.data.corpus import read_pairs
    from pipeline.data.vocab import Vocab
    from pipeline.io import read_json

    import pipeline.config  # noqa: F401  (everything the systems need, imported before measuring memory)
    import pipeline.decode  # noqa: F401
    import pipeline.extract  # noqa: F401  (imports pipeline.model.checkpoint too)

    args = argparse.Namespace(**args_dict)
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    _release_memory()
    baseline = rss_mb()
    vocab = Vocab(Path(args.corpus) / "spm.model")
    languages = list(read_json(Path(args.corpus) / "meta.json")["languages"])
    sources = {}
    for d in args.directions:
        pairs = read_pairs(Path(args.corpus) / "test" / f"{d}.tsv")[:args.per_direction]
        sources[d] = [vocab.encode_source(p.source, d.split("-")[1]) for p in pairs]
    systems, memory, described = {}, {}, None
    _release_memory()
    before = rss_mb()
    for name, built in build_systems(args, rank, world, device, sources, vocab, languages):
        if name == "described":
            described = built
            break
        _release_memory()
        after = rss_mb()
        systems[name] = built
        memory[name] = {"weights_mb": weights_mb(built.models.values()), "process_baseline_mb": baseline,
                        "loaded_mb": (after - before) if after is not None and before is not None else None}
        before = after

    per_rank = {b: b * args.max_batches for b in args.batch_sizes}
    plans = {}
    for name, system in systems.items():
        for b in args.batch_sizes:
            batches = batches_of(system, b, per_rank[b], vocab.pad_id, device)
            if system.communicates:
                batches = _pad_lockstep(batches, system.models["all"], vocab.pad_id, device)
            plans[name, b] = batches
    # warm-up: one batch of every size for every system
    for (name, b), batches in plans.items():
        dist.barrier()
        decode_batches(batches[:1], args.beam_size, device)
    # memory while decoding the largest batch size, system by system
    largest = max(args.batch_sizes)
    for name in systems:
        dist.barrier()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            start_alloc = torch.cuda.memory_allocated(device)
        resting, can_reset = rss_mb(), reset_peak_rss()
        decode_batches(plans[name, largest][:2], args.beam_size, device)
        if device.type == "cuda":
            memory[name]["peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            memory[name]["decode_peak_mb"] = (torch.cuda.max_memory_allocated(device) - start_alloc) / 2**20
        else:
            peak = peak_rss_mb()
            memory[name]["decode_peak_mb"] = (peak - resting) if (can_reset and peak and resting) else None
    # the measurements: systems and batch sizes interleaved within each repeat
    runs = []
    for repeat in range(args.repeats):
        order = SYSTEMS[repeat % len(SYSTEMS):] + SYSTEMS[:repeat % len(SYSTEMS)]  # no system always first
        for b in args.batch_sizes:
            for name in order:
                dist.barrier()
                result = decode_batches(plans[name, b], args.beam_size, device)
                runs.append({"repeat": repeat, "batch_size": b, "system": name, "rank": rank, **result})
        if rank == 0:
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    gathered = [None] * world
    dist.all_gather_object(gathered, {"runs": runs, "memory": memory, "described": described,
                                      "tasks": args.directions[rank::world]})
    if rank == 0:
        Path(out_path).write_text(json.dumps(gathered))


# --------------------------------------------------------------------------------------------------
# the figures


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "per_repeat": values}


def summarise(per_rank: list[dict]) -> dict:
    """The JSON's "systems" and "ratios_vs_token_moe" from every rank's raw runs."""
    runs = [r for rank in per_rank for r in rank["runs"]]
    repeats = sorted({r["repeat"] for r in runs})
    sizes = sorted({r["batch_size"] for r in runs})

    def cell(system: str, b: int, repeat: int) -> list[dict]:
        return [r for r in runs if r["system"] == system and r["batch_size"] == b and r["repeat"] == repeat]

    def throughput(rows: list[dict]) -> float:
        slowest = max(r["seconds"] for r in rows)
        return sum(r["tokens"] for r in rows) / slowest if slowest > 0 else 0.0

    def share(rows: list[dict], key: str) -> float:
        total = sum(r["seconds"] for r in rows)
        return sum(r[key] for r in rows) / total if total > 0 else 0.0

    systems = {}
    for name in SYSTEMS:
        sweep = []
        for b in sizes:
            per_repeat = [throughput(cell(name, b, k)) for k in repeats]
            rows = [r for k in repeats for r in cell(name, b, k)]
            cpu = [sum(r["tokens"] for r in cell(name, b, k)) / sum(r["cpu_seconds"] for r in cell(name, b, k))
                   for k in repeats]
            sweep.append({"batch_size": b, "tokens_per_second": _spread(per_repeat),
                          "tokens_per_cpu_second": _spread(cpu),
                          "sentences": sum(r["sentences"] for r in cell(name, b, repeats[0])),
                          "tokens": [sum(r["tokens"] for r in cell(name, b, k)) for k in repeats],
                          "all_to_all_share": share(rows, "all_to_all_seconds"),
                          "sync_share": share(rows, "sync_seconds"),
                          "all_to_all_calls_per_rank": [
                              r["all_to_all_calls"] for r in cell(name, b, repeats[0])]})
        best = max(sweep, key=lambda s: s["tokens_per_second"]["median"])
        peaks = [max(throughput(cell(name, b, k)) for b in sizes) for k in repeats]
        latency = [1e3 * statistics.median([t for r in cell(name, 1, k) for t in r["latencies"]])
                   for k in repeats] if 1 in sizes else []
        tokens_b1 = [sum(r["tokens"] for r in cell(name, 1, k)) for k in repeats] if 1 in sizes else []
        sentences_b1 = sum(r["sentences"] for r in cell(name, 1, repeats[0])) if 1 in sizes else 0
        b1 = next((s for s in sweep if s["batch_size"] == 1), None)
        memory = [rank["memory"][name] for rank in per_rank]
        total = [(m["process_baseline_mb"] or 0) + m["weights_mb"] + (m["decode_peak_mb"] or 0) for m in memory]
        systems[name] = {
            "description": DESCRIPTIONS[name], "communicates": name == "token_moe",
            "peak_tokens_per_second": _spread(peaks), "best_batch_size": best["batch_size"],
            "peak_tokens_per_cpu_second": _spread([max(s["tokens_per_cpu_second"]["per_repeat"][i]
                                                       for s in sweep) for i in range(len(repeats))]),
            "latency_batch1_ms": _spread(latency) if latency else None,
            "latency_batch1_ms_per_token": (statistics.median(latency) * sentences_b1
                                            / statistics.median(tokens_b1)) if latency and tokens_b1[0] else None,
            "all_to_all_share": {"at_best_batch_size": best["all_to_all_share"],
                                 "at_batch1": b1["all_to_all_share"] if b1 else None},
            "sync_share": {"at_best_batch_size": best["sync_share"], "at_batch1": b1["sync_share"] if b1 else None},
            "memory_per_rank_mb": total,
            "weights_mb_per_rank": [m["weights_mb"] for m in memory],
            "process_baseline_mb_per_rank": [m["process_baseline_mb"] for m in memory],
            "loaded_mb_per_rank": [m["loaded_mb"] for m in memory],
            "decode_peak_mb_per_rank": [m["decode_peak_mb"] for m in memory],
            "sweep": sweep,
        }
        if any("peak_allocated_mb" in m for m in memory):
            systems[name]["peak_allocated_mb_per_rank"] = [m.get("peak_allocated_mb") for m in memory]
    ratios = {}
    for name in SYSTEMS[1:]:
        ref_peak = systems["token_moe"]["peak_tokens_per_second"]["per_repeat"]
        peak = systems[name]["peak_tokens_per_second"]["per_repeat"]
        entry = {"peak_tokens_per_second": _spread([p / r for p, r in zip(peak, ref_peak) if r > 0])}
        ref_cpu = systems["token_moe"]["peak_tokens_per_cpu_second"]["per_repeat"]
        cpu = systems[name]["peak_tokens_per_cpu_second"]["per_repeat"]
        entry["peak_tokens_per_cpu_second"] = _spread([c / r for c, r in zip(cpu, ref_cpu) if r > 0])
        if systems[name]["latency_batch1_ms"]:
            ref = systems["token_moe"]["latency_batch1_ms"]["per_repeat"]
            mine = systems[name]["latency_batch1_ms"]["per_repeat"]
            entry["batch1_speedup"] = _spread([r / m for r, m in zip(ref, mine) if m > 0])
        ratios[name] = entry
    return {"systems": systems, "ratios_vs_token_moe": ratios}


def print_table(result: dict) -> None:
    s = result["setup"]
    print(f"\n{s['ranks']} ranks ({s['backend']}, {s['device']}), {s['models']}; "
          f"{s['model']['num_experts']} experts; {s['repeats']} repeats; niced: {s['niced']}")
    print(f"{'system':<14}{'peak tok/s':>12}{'range':>18}{'best b':>8}{'b=1 ms/sent':>13}"
          f"{'a2a share':>11}{'sync':>7}{'mem/rank MB':>13}{'weights MB':>12}")
    for name, f in result["systems"].items():
        p = f["peak_tokens_per_second"]
        lat = f["latency_batch1_ms"]["median"] if f["latency_batch1_ms"] else float("nan")
        a2a = f["all_to_all_share"]["at_best_batch_size"]
        span = f"{p['min']:.0f}-{p['max']:.0f}"
        print(f"{name:<14}{p['median']:>12.0f}{span:>18}{f['best_batch_size']:>8}"
              f"{lat:>13.1f}{a2a:>11.1%}{f['sync_share']['at_best_batch_size']:>7.1%}"
              f"{max(f['memory_per_rank_mb']):>13.0f}{max(f['weights_mb_per_rank']):>12.1f}")
    for name, r in result["ratios_vs_token_moe"].items():
        p = r["peak_tokens_per_second"]
        line = f"{name} / token_moe peak tokens/s: {p['median']:.2f} (range {p['min']:.2f}-{p['max']:.2f})"
        if "batch1_speedup" in r:
            q = r["batch1_speedup"]
            line += f"; batch-1 speedup {q['median']:.2f} ({q['min']:.2f}-{q['max']:.2f})"
        c = r["peak_tokens_per_cpu_second"]
        line += f"; per CPU second {c['median']:.2f} ({c['min']:.2f}-{c['max']:.2f})"
        print(line)
    print("paper: task_moe_sub / token_moe 1.87x (32 experts), 2.6x (128); all-to-all 27-36% of step time")


# --------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--profile", default=None, help="a params profile for the random models' size (smoke, gpu)")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="trained token_moe/, task_moe_sub/, dense/ (default: random initialisation)")
    ap.add_argument("--experts", type=int, default=32, help="num_experts of the random models (0: params')")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    ap.add_argument("--directions", nargs="+", default=["en-de", "en-fr", "en-es", "en-it"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--max-batches", type=int, default=4, help="batches per rank at each batch size")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--max-len-a", type=float, default=1.2)
    ap.add_argument("--max-len-b", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("reports/serve_parallel.json"))
    args = ap.parse_args(argv)
    if args.ranks < 1 or args.repeats < 1 or args.max_batches < 1 or min(args.batch_sizes) < 1:
        raise PipelineError("--ranks, --repeats, --max-batches and --batch-sizes must be >= 1")
    if len(args.directions) % args.ranks:
        raise PipelineError(f"--directions: {len(args.directions)} directions cannot be shared evenly by "
                            f"{args.ranks} ranks (each rank serves as many tasks)")
    if len({d.split('-')[1] for d in args.directions}) != len(args.directions):
        raise PipelineError("--directions: one direction per target language (each is its own task)")
    if (args.backend == "nccl") != (args.device == "cuda"):
        raise PipelineError("--backend nccl goes with --device cuda, gloo with cpu")
    if not (args.corpus / "spm.model").is_file():
        raise PipelineError(f"{args.corpus / 'spm.model'}: not found (--corpus: a prepared corpus)")
    # sentences per direction: each rank decodes max_batches x b of them at batch size b
    args.per_direction = max(args.batch_sizes) * args.max_batches * args.ranks // len(args.directions)
    per_rank_tasks = len(args.directions) // args.ranks
    if any(b * args.max_batches % per_rank_tasks for b in args.batch_sizes):
        raise PipelineError(f"--batch-sizes x --max-batches must be multiples of the tasks per rank "
                            f"({per_rank_tasks}): each rank decodes as many sentences of each of its tasks")
    for d in args.directions:
        path = args.corpus / "test" / f"{d}.tsv"
        if not path.is_file():
            raise PipelineError(f"--directions: {path} not found")
        with path.open(encoding="utf-8") as handle:
            have = sum(1 for _ in handle)
        if have < args.per_direction:
            raise PipelineError(f"{path}: {have} sentences, the sweep needs {args.per_direction} per direction "
                                "(lower --max-batches or --batch-sizes)")
    return args


def main(argv=None) -> int:
    from pipeline.model.expert_parallel import run_on_ranks

    args = parse_args(argv)
    started = time.perf_counter()
    raw = args.out.with_suffix(".ranks.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    run_on_ranks(rank_main, args.ranks, payload, str(raw), backend=args.backend, threads=args.threads,
                 timeout_s=1800)
    per_rank = json.loads(raw.read_text())
    raw.unlink()
    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    niced = os.nice(0) > 0
    result = {
        "benchmark": "serve_parallel",
        "setup": {
            "ranks": args.ranks, "backend": args.backend, "device": device, "threads_per_rank": args.threads,
            "niced": niced, "models": per_rank[0]["described"]["models"],
            "model": per_rank[0]["described"]["model"], "directions": args.directions,
            "tasks_per_rank": {str(r): p["tasks"] for r, p in enumerate(per_rank)},
            "sentences_per_direction": args.per_direction, "batch_sizes": sorted(args.batch_sizes),
            "max_batches": args.max_batches, "repeats": args.repeats, "beam_size": args.beam_size,
            "decode": {"max_len_a": args.max_len_a, "max_len_b": args.max_len_b},
            "torch": torch.__version__, "command": " ".join(["python", *sys.argv]),
            "note": ("ran at nice 19 beside another CPU job: absolute figures are low and noisy; the ratios "
                     "within one run are what count" if niced else ""),
        },
        **summarise(per_rank),
        "paper": PAPER,
        "wall_seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {args.out} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
