"""What a result was computed on: the CPU model and torch's CPU capability, recorded by every training.

Runs are bit-identical on one CPU type, torch build and thread count; across machines they agree in
their figures (within their intervals), not in their bytes. These are the facts that tell them apart.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from pathlib import Path

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform says)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def compute_record() -> dict:
    """{"cpu", "cpu_capability", "threads", "torch"}: what a training's numbers depend on bitwise."""
    import torch

    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    A training step allocates and frees blocks of tens of MB: the (tokens, vocabulary) logits and their
    gradient (3,000 x 8,000 fp32 is 96 MB). glibc serves a block above its mmap threshold (at most 32 MB)
    with a fresh mapping and unmaps it on free, so every step page-faults through those pages again. With
    mmap off and no trimming, a freed block is reused by a later step: at the CPU default the kernel's
    share of a training benchmark's CPU time fell from 13% to 6%, and a dense step took 0.39 s instead of
    0.47 (MoE steps 6-7% less; docs/results/train-step-2026-12-06/). Only where memory comes from
    changes, not what is computed: torch aligns every CPU tensor to 64 bytes either way, and the weights
    come out bit-identical (tests/test_machine.py). The process keeps its peak heap until it exits.
    Training calls this (pipeline/train/run.py). Returns True when both settings took; False, changing
    nothing, off Linux's glibc or with PIPELINE_KEEP_FREED_MEMORY=0. Blocks over 64 MB that other
    threads allocate are still mapped (glibc's per-thread arenas); training allocates them on the main
    thread.
    """
    if os.environ.get("PIPELINE_KEEP_FREED_MEMORY", "1") == "0" or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # trim only a free top chunk over 2 GiB - 1 (in effect never, at these sizes)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
