"""Where a result came from: the hardware a stage ran on, and the DVC hashes of data and checkpoints."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


def hardware() -> dict:
    """Platform, CPU model and torch's CPU capability (the SIMD kernels it runs: results are bit-identical
    only on the same capability and thread count), CPU count, threads, Python and torch versions, and the
    CUDA device if there is one."""
    import torch

    from pipeline.machine import cpu_model

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": None}
    if torch.cuda.is_available():
        info["cuda"] = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return info


def packages() -> dict[str, str]:
    """Every installed distribution and its version (what `pip freeze` would list)."""
    from importlib.metadata import distributions

    found = {}
    for dist in distributions():
        name = dist.metadata.get("Name")
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


def read_lock(path: str | Path = "dvc.lock") -> Optional[dict]:
    """dvc.lock as a dict, or None when it is missing or unreadable (the report says so)."""
    path = Path(path)
    if not path.exists():
        return None
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None


def lock_hashes(lock: Optional[dict]) -> list[list[str]]:
    """[stage, path, md5] of every output recorded in dvc.lock (`foreach` stages are `train@dense`)."""
    rows = []
    for stage, entry in ((lock or {}).get("stages") or {}).items():
        for out in entry.get("outs") or []:
            rows.append([stage, out.get("path", "?"), out.get("md5") or out.get("etag") or "n/a"])
    return rows


# What the pipeline itself writes into git-tracked files: a run changes them before they are committed,
# so they do not make the code version "dirty".
PIPELINE_OUTPUTS = ("reports", "dvc.lock")


def code_commit(cwd: str | Path | None = None, outputs: tuple[str, ...] = PIPELINE_OUTPUTS) -> str:
    """The git commit of the code, with `+dirty` when a tracked file outside `outputs` differs from it
    (a changed module or params.yaml; not the reports and dvc.lock the run is writing)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      *(f":(exclude){path}" for path in outputs))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if changed else "")
