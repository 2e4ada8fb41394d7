"""`make smoke`: run the whole pipeline on the smoke profile in a scratch copy of the repository.

The workspace is left untouched. The copy goes to $SMOKE_DIR (a new temporary folder by default); its
params.yaml gets `profile: smoke`. The raw download (data/raw) is linked from the workspace when it is
there, so the smoke run does not fetch the 73 MB wheel again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DVC = (sys.executable, "-m", "dvc")


def repo_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and (root / line).is_file()]


def make_copy(dest: Path, profile: str = "smoke", link_raw: bool = True) -> Path:
    """A git + DVC repository at `dest` holding the project's files, set to `profile`."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in repo_files(ROOT):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    params = dest / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("profile: default", f"profile: {profile}", 1))
    raw = ROOT / "data" / "raw"
    if link_raw and raw.is_dir():
        (dest / "data").mkdir(exist_ok=True)
        shutil.copytree(raw, dest / "data" / "raw", copy_function=os.link, dirs_exist_ok=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    run = lambda *cmd: subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)  # noqa: E731
    if not (dest / ".git").exists():
        run("git", "init", "-q")
        run("git", "config", "user.email", "smoke@localhost")
        run("git", "config", "user.name", "smoke")
    if not (dest / ".dvc").exists():
        run(*DVC, "init", "-q")
    run(*DVC, "config", "core.analytics", "false")
    # a remote of its own, so pushing from the scratch copy never touches the workspace's remote
    run(*DVC, "remote", "add", "-f", "-d", "local", str(dest / ".dvc-remote"))
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "smoke copy", "--allow-empty")
    return dest


def main() -> int:
    dest = Path(os.environ.get("SMOKE_DIR") or tempfile.mkdtemp(prefix="taskmoe-smoke-"))
    print(f"smoke copy: {dest}", flush=True)
    make_copy(dest)
    started = time.time()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    code = subprocess.run([*DVC, "repro"], cwd=dest, env=env).returncode
    print(f"\nsmoke run {'passed' if code == 0 else 'FAILED'} in {time.time() - started:.0f} s; "
          f"copy kept at {dest} (report: {dest / 'reports' / 'report.md'})")
    return code


if __name__ == "__main__":
    sys.exit(main())
