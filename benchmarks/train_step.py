"""Where one training step's time goes, and how close it comes to this CPU's fp32 peak.

Builds each model of params.yaml (plus `--set` overrides, e.g. `model.moe_every=1`) on the prepared
corpus, runs real training steps (forward, backward, AdamW, the trainer's gradient clipping) on the
batch stream the trainer would see, and prints per model:

- the median seconds per step and tokens per second (source + target tokens, as the trainer counts);
- the matmul FLOPs per step as torch's profiler counts them (forward and backward), the GFLOP/s they
  run at, and that as a share of the CPU's fp32 peak (cores x clock x FLOPs per cycle: 64 with two
  AVX-512 FMA units, 32 with AVX2; `--peak-gflops` to give your own);
- the share of step time per kind of work (matmuls, attention, softmax and loss, MoE dispatch, optimizer,
  the rest), from torch's profiler over a few steps.

    python benchmarks/train_step.py                                  # dense, token_moe, task_moe
    python benchmarks/train_step.py --models token_moe --set model.moe_every=1 model.num_experts=32
    PIPELINE_KEEP_FREED_MEMORY=0 python benchmarks/train_step.py       # glibc's default allocator settings

Needs `data/corpus/` from a run (`dvc repro prepare`). Speed figures are medians over `--steps` steps
after `--warmup`; compare them within one run, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_params, params_from_dict, to_dict  # noqa: E402
from pipeline.machine import keep_freed_memory  # noqa: E402

# profiler op name -> kind of work (first match wins)
KINDS = [
    ("attention", re.compile(r"scaled_dot_product|_flash_attention|attention|baddbmm|\bbmm\b")),
    ("matmul", re.compile(r"aten::(mm|addmm|matmul|linear|_addmm_activation)$")),
    ("softmax/loss", re.compile(r"softmax|cross_entropy|nll_loss|log_softmax")),
    ("moe dispatch", re.compile(r"argsort|sort|bincount|index_select|index_add|nonzero|split|"
                                r"topk|gather|scatter|unbind|cat$")),
    ("optimizer", re.compile(r"Optimizer|adam|_foreach|clip_grad|norm")),
    ("layernorm", re.compile(r"layer_norm")),
    ("embedding", re.compile(r"embedding")),
]


def fp32_peak_gflops(threads: int) -> tuple[float, str]:
    """cores x GHz x FLOPs/cycle from /proc/cpuinfo (2 FMA units: 64 with AVX-512, 32 with AVX2)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", info)
    name = model.group(1).strip() if model else "unknown CPU"
    ghz = re.search(r"@\s*([\d.]+)GHz", name)
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", info)
    clock = float(ghz.group(1)) if ghz else (float(mhz.group(1)) / 1000 if mhz else 2.0)
    flags = re.search(r"flags\s*:\s*(.*)", info)
    per_cycle = 64 if flags and "avx512f" in flags.group(1) else 32
    return threads * clock * per_cycle, f"{name}: {threads} threads x {clock:.2f} GHz x {per_cycle} FLOP/cycle"


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default=str(ROOT / "params.yaml"))
    p.add_argument("--corpus", default=str(ROOT / "data" / "corpus"))
    p.add_argument("--models", nargs="+", default=None, help="keys of params.models (default: all)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides in dotted form, parsed as YAML values (model.moe_every=1)")
    p.add_argument("--steps", type=int, default=12, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--profile-steps", type=int, default=3, help="steps under torch's profiler")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--peak-gflops", type=float, default=None)
    p.add_argument("--loss", choices=["fused", "pytorch", "both"], default="fused",
                   help="the training loss's cross-entropy: the pipeline's (fused), F.cross_entropy, or each "
                        "in turn on the same batches (the speed-up of the fused one, measured in one run)")
    args = p.parse_args()
    for name, value in (("--steps", args.steps), ("--profile-steps", args.profile_steps)):
        if value < 1:
            sys.exit(f"error: {name} must be >= 1, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as training does (pipeline/train/run.py); PIPELINE_KEEP_FREED_MEMORY=0 measures without it
    corpus = Path(args.corpus)
    if not (corpus / "spm.model").exists():
        sys.exit(f"error: {corpus}: no prepared corpus (run `dvc repro prepare`)")

    import yaml
    from omegaconf import OmegaConf

    from pipeline.data.sampling import temperature_probs
    from pipeline.train.api import build_model, corpus_languages, load_vocab
    from pipeline.train.batching import MixedBatchStream
    from pipeline.train.examples import load_examples
    from pipeline.train.module import TranslationModule

    params = load_params(args.params)
    if args.set:
        tree = OmegaConf.create(to_dict(params))
        for item in args.set:
            key, _, value = item.partition("=")
            if not _:
                sys.exit(f"error: --set {item!r}: expected KEY=VALUE")
            OmegaConf.update(tree, key, yaml.safe_load(value), merge=True)
        params = params_from_dict(OmegaConf.to_container(tree), source="--set")
    vocab = load_vocab(corpus)
    languages = corpus_languages(corpus)
    train = load_examples(corpus, "train", vocab, languages, params.model.max_positions)
    probs = temperature_probs({d: len(x) for d, x in train.items()}, params.data.temperature)
    cfg = params.train
    threads = torch.get_num_threads()
    peak, peak_how = (args.peak_gflops, "given") if args.peak_gflops else fp32_peak_gflops(threads)
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {threads} threads; "
          f"fp32 peak {peak:.0f} GFLOP/s ({peak_how}); freed memory kept for reuse: {'yes' if kept else 'no'}")
    print(f"batch_tokens {cfg.batch_tokens}, d_model {params.model.d_model}, layers "
          f"{params.model.encoder_layers}+{params.model.decoder_layers}, moe_every {params.model.moe_every}, "
          f"experts {params.model.num_experts}, top-{params.model.top_k}, vocab {vocab.size}")

    runs = [(name, loss) for name in (args.models or list(params.models))
            for loss in (("fused", "pytorch") if args.loss == "both" else (args.loss,))]
    for name, loss in runs:
        _use_loss(loss)
        model = build_model(params, name, vocab, languages)
        module = TranslationModule(model, cfg, vocab.pad_id, params.model.expert_lr_scale)
        optimizer = module.configure_optimizers()["optimizer"]
        stream = iter(MixedBatchStream(train, probs, cfg.batch_tokens, cfg.max_sentences, vocab.pad_id,
                                       vocab.bos_id, seed=cfg.seed))
        model.train()

        def step() -> int:
            batch = next(stream)
            optimizer.zero_grad(set_to_none=True)
            loss = module._shared_step(batch, "train")
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            return int((batch.src != vocab.pad_id).sum() + (batch.tgt_out != vocab.pad_id).sum())

        module.log = lambda *a, **k: None  # no trainer attached
        for _ in range(args.warmup):
            step()
        times, tokens = [], []
        for _ in range(args.steps):
            start = time.perf_counter()
            tokens.append(step())
            times.append(time.perf_counter() - start)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
            started = time.perf_counter()
            prof_tokens = sum(step() for _ in range(args.profile_steps))
            prof_wall = time.perf_counter() - started
        by_kind: dict[str, float] = defaultdict(float)
        flops = 0.0
        for event in prof.key_averages():
            by_kind[kind_of(event.key)] += event.self_cpu_time_total
            flops += event.flops or 0
        total = sum(by_kind.values()) or 1.0
        median = statistics.median(times)
        tok_s = sum(tokens) / sum(times)
        flops_per_token = flops / max(prof_tokens, 1)
        achieved = flops_per_token * tok_s / 1e9
        counts = model.parameter_count().as_dict()
        print(f"\n{name} ({loss} cross-entropy): {counts.get('total', 0) / 1e6:.2f}M parameters; median {median:.3f} s/step "
              f"(min {min(times):.3f}, max {max(times):.3f}), {tok_s:,.0f} tokens/s")
        print(f"  matmul FLOPs {flops_per_token / 1e6:.1f} MFLOP/token -> {achieved:.1f} GFLOP/s, "
              f"{100 * achieved / peak:.1f}% of fp32 peak")
        print("  self CPU time by kind (profiled steps, "
              f"{prof_wall / args.profile_steps:.3f} s/step under the profiler):")
        for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
            print(f"    {kind:<14} {100 * us / total:5.1f}%")
        top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
        print("  top ops: " + ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.1f}%" for e in top))


def _use_loss(kind: str) -> None:
    """Point the training step's cross-entropy at the fused implementation or at F.cross_entropy."""
    import torch.nn.functional as F

    from pipeline.train import losses, module

    def pytorch(logits, target, pad_id, label_smoothing=0.0):
        loss = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=pad_id,
                               label_smoothing=label_smoothing, reduction="sum")
        return loss, (target != pad_id).sum()

    module.token_cross_entropy = losses.token_cross_entropy if kind == "fused" else pytorch


if __name__ == "__main__":
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    main()
