"""The code version in the report: the run's own outputs do not make it dirty; a changed module does."""

import shutil
import subprocess

import pytest

from pipeline.report.provenance import code_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


def test_only_changes_outside_the_pipeline_outputs_make_the_commit_dirty(tmp_path):
    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    (repo / "pipeline").mkdir()
    for path in ("reports/report.md", "dvc.lock", "pipeline/model.py", "params.yaml"):
        (repo / path).write_text("v1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "v1")
    sha = _git(repo, "rev-parse", "HEAD")
    assert code_commit(repo) == sha

    (repo / "reports" / "report.md").write_text("v2\n")  # what `dvc repro` writes before the commit
    (repo / "dvc.lock").write_text("v2\n")
    (repo / "untracked.txt").write_text("x\n")
    assert code_commit(repo) == sha

    (repo / "params.yaml").write_text("v2\n")
    assert code_commit(repo) == sha + "+dirty"
    _git(repo, "checkout", "--", "params.yaml")
    (repo / "pipeline" / "model.py").write_text("v2\n")
    assert code_commit(repo) == sha + "+dirty"


def test_outside_a_git_checkout_the_version_is_unknown(tmp_path):
    assert code_commit(tmp_path) == "unknown"
