"""Checkpoints: `model.safetensors` (weights) + `config.json` (the `Seq2SeqConfig`) in one folder.

Every later stage rebuilds a model from its folder alone. A missing, truncated or mismatched checkpoint
is a `PipelineError` that names the file and the problem in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import PipelineError
from pipeline.io import read_json, umask_bits
from pipeline.model.config import Seq2SeqConfig
from pipeline.model.transformer import Seq2Seq

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_checkpoint(model: Seq2Seq, folder: str | Path, meta: Optional[dict] = None,
                    meta_name: str = "meta.json") -> Path:
    """Write weights, config (and `meta` as `meta_name`) into `folder`.

    The files are written into a temporary sibling and renamed into place, so an interrupted save
    leaves the previous files (or none), never a half-written one. Other files in `folder` are kept.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        files = {WEIGHTS_FILE: None, CONFIG_FILE: model.cfg.to_dict()}
        if meta is not None:
            files[meta_name] = meta
        for name, obj in files.items():
            if obj is not None:
                (tmp / name).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        for name in files:
            (tmp / name).chmod(0o666 & ~umask_bits())  # safetensors writes 0600; outputs get the usual mode
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_config(folder: str | Path) -> Seq2SeqConfig:
    path = Path(folder) / CONFIG_FILE
    return Seq2SeqConfig.from_dict(read_json(path), source=str(path))


def load_checkpoint(folder: str | Path, device: str | torch.device = "cpu") -> Seq2Seq:
    """Rebuild the model from `folder`, in eval mode, on `device`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PipelineError(f"{folder}: checkpoint folder not found")
    config = load_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise PipelineError(f"{weights}: file not found")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises several types for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PipelineError(f"{weights}: cannot read the weights, the file is truncated or corrupt "
                            f"({reason})") from None
    model = Seq2Seq(config)
    problem = _state_mismatch(model.state_dict(), state)
    if problem:
        raise PipelineError(f"{weights}: does not match {folder / CONFIG_FILE}: {problem}")
    model.load_state_dict(state)
    return model.to(device).eval()


def _state_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """'' when `found` fits `expected` key for key and shape for shape, else what differs."""

    def listed(names: list[str]) -> str:
        more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{n} is {tuple(found[n].shape)} in the file, {tuple(expected[n].shape)} in the config"
              for n in sorted(set(expected) & set(found)) if found[n].shape != expected[n].shape]
    parts = []
    if missing:
        parts.append(f"missing weights {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected weights {listed(unexpected)}")
    if shapes:
        parts.append(f"wrong shapes: {listed(shapes)}")
    return "; ".join(parts)
