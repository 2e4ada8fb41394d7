"""One golden rendering of the whole report from fixed inputs (tests/fixtures/report plus a synthetic
compare.json). Any change to the report's text shows up here as a diff to review; after an intended
change, regenerate it: `UPDATE_GOLDEN=1 python -m pytest tests/report/test_golden.py`."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from test_report import SHARES, render, write_inputs

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "report_golden" / "report.md"


@pytest.fixture
def fixed_machine(monkeypatch):
    """The provenance section's machine facts, fixed so the rendering does not depend on the host."""
    from pipeline.report import sections

    monkeypatch.setattr(sections, "hardware", lambda: {
        "platform": "Linux-x86_64", "python": "3.11.7", "cpu": "Test CPU @ 2.80GHz", "cpu_capability": "AVX512",
        "cpu_count": 2, "torch_threads": 2, "torch": "2.13.0+cpu", "cuda": None})
    monkeypatch.setattr(sections, "packages", lambda: {"torch": "2.13.0+cpu", "sacrebleu": "2.5.1"})


def test_the_report_renders_as_the_golden_file(tmp_path, fixed_machine):
    root = write_inputs(tmp_path, {**SHARES, "dense_long": 0.45})
    text = render(root, params={"compare": {"seed": 12345}})
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "rendered"))
    assert text == expected, f"the report changed (UPDATE_GOLDEN=1 to accept):\n{diff[:6000]}"
