"""What a result was computed on: the CPU model and torch's CPU capability, recorded by every training.

Runs are bit-identical on one CPU type, torch build and thread count; across machines they agree in
their figures (within their intervals), not in their bytes. These are the facts that tell them apart.
"""

from __future__ import annotations

import platform
from pathlib import Path


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
