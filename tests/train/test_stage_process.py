"""A training stage as a user runs it, in its own process: what it prints, and Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pipeline.config import to_dict

ROOT = Path(__file__).resolve().parents[2]


def test_ctrl_c_exits_130_with_one_line_and_lightning_speaks_once(smoke_params, tiny_corpus, tmp_path):
    params = to_dict(smoke_params)
    params["profile"] = "default"
    params["train"].update(max_steps=100000, val_every=100000, num_threads=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", "--params", str(tmp_path / "params.yaml"),
                             "--model", "dense", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "m"),
                             "--reports", str(tmp_path / "r")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    curves = tmp_path / ".resume" / "dense" / "curves.csv"
    deadline = time.time() + 120
    while not curves.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # training has started once it logs its first curve row
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: interrupted"
    assert not (tmp_path / "m").exists()  # nothing published
    both = out + err
    assert both.count("GPU available") == 1  # Lightning's own lines, printed once
    assert "LeafSpec" not in both
