"""`taskmoe translate`: any model folder in, one translation per line out; clear one-line errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipeline.config import DecodeConfig
from pipeline.decode import translate
from pipeline.extract import load_deployable
from pipeline.serve import cli

ROOT = Path(__file__).resolve().parents[2]
LINES = ["Beka bebemo kima kaka bakaka bato.", "", "Me temobe bomome moka kika temamo kato.", "Kaka to."]


def project_translations(served, name, lines, src="en", tgt="de", **decode):
    model = load_deployable(served.models / name).model_for(src, tgt)
    cfg = DecodeConfig(**decode)
    kept = [line for line in lines if line]
    out = iter(translate(model, served.vocab, kept, src, tgt, cfg))
    return [next(out) if line else "" for line in lines]


def run_main(args, stdin: bytes = b"", monkeypatch=None):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    return cli.main(["translate", *args])


def test_round_trip_through_the_command(served):
    """The sub-network folder picks the sub-network of en-de; output lines match the library's, blank kept."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pipeline.serve", "translate", "--model",
                           str(served.models / "task_moe_sub"), "--from", "en", "--to", "de", "--vocab",
                           str(served.corpus / "spm.model"), "--greedy", "--threads", "1"],
                          input="\n".join(LINES) + "\n", capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:-1] == project_translations(served, "task_moe_sub", LINES, beam_size=1)
    assert proc.stdout.endswith("\n") and proc.stderr == ""


def test_beam_search_batch_budget_and_files(served, tmp_path, monkeypatch):
    (tmp_path / "in.txt").write_text("\n".join(LINES) + "\n", encoding="utf-8")
    args = ["--model", str(served.models / "dense"), "--from", "en", "--to", "fr", "--vocab",
            str(served.corpus / "spm.model"), "--beam-size", "3", "--batch-tokens", "20", "-i",
            str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.txt")]
    assert run_main(args, monkeypatch=monkeypatch) == 0
    expected = project_translations(served, "dense", LINES, "en", "fr", beam_size=3, batch_tokens=20)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:-1] == expected


def test_an_export_folder_translates_like_the_model_it_came_from(served, exports, capsys, monkeypatch):
    stdin = ("\n".join(LINES) + "\n").encode()
    args = ["--model", str(exports("task_moe_sub")), "--from", "fr", "--to", "en", "--greedy", "--threads", "1"]
    assert run_main(args, stdin, monkeypatch) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == project_translations(served, "task_moe_sub", LINES,
                                                                            "fr", "en", beam_size=1)


def test_progress_on_long_inputs_only(served, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_FROM", 3)
    base = ["--model", str(served.models / "dense"), "--from", "en", "--to", "de", "--vocab",
            str(served.corpus / "spm.model"), "--greedy"]
    stdin = ("\n".join(LINES) + "\n").encode()
    assert run_main(base, stdin, monkeypatch) == 0
    assert "3/3" in capsys.readouterr().err
    assert run_main([*base, "--quiet"], stdin, monkeypatch) == 0
    assert capsys.readouterr().err == ""
    assert run_main(base, b"Kaka to.\n", monkeypatch) == 0  # under PROGRESS_FROM sentences
    assert capsys.readouterr().err == ""


def _truncated_weights(folder: Path) -> Path:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return folder


def _broken_config(folder: Path) -> Path:
    (folder / "config.json").write_text("{ not json", encoding="utf-8")
    return folder


def _broken_export(folder: Path) -> Path:
    (folder / "model.bin").write_bytes(b"\0" * 64)
    return folder


@pytest.mark.parametrize("case,stdin,expected", [
    ("unknown_language", b"Kaka to.\n", "error: unknown language 'xx' (--to): {model} translates between en, de, fr"),
    ("missing_folder", b"Kaka to.\n", "error: {model}: model folder not found"),
    ("not_a_model", b"Kaka to.\n", "error: {model}: not a model folder (no config.json, manifest.json or export.json)"),
    ("truncated_weights", b"Kaka to.\n", "error: {model}/model.safetensors: cannot read the weights, the file is "
                                         "truncated or corrupt"),
    ("broken_config", b"Kaka to.\n", "error: {model}/config.json: not valid JSON"),
    ("broken_export", b"Kaka to.\n", "error: {model}: cannot load the CTranslate2 model"),
    ("empty_input", b"", "error: <stdin>: no text to translate (the input is empty)"),
    ("blank_input", b"\n  \n", "error: <stdin>: no text to translate (the input is empty)"),
    ("bad_utf8", b"Kaka to.\n\xff\xfe\n", "error: <stdin>: line 2 is not valid UTF-8"),
])
def test_user_errors_are_one_line_and_exit_2(served, exports, tmp_path, capsys, monkeypatch, case, stdin,
                                              expected):
    import shutil

    model = served.models / "dense"
    if case == "missing_folder":
        model = tmp_path / "nowhere"
    elif case == "not_a_model":
        model = tmp_path / "empty"
        model.mkdir()
    elif case in ("truncated_weights", "broken_config"):
        model = tmp_path / "copy"
        shutil.copytree(served.models / "dense", model)
        (_truncated_weights if case == "truncated_weights" else _broken_config)(model)
    elif case == "broken_export":
        model = tmp_path / "export"
        shutil.copytree(exports("dense"), model)
        _broken_export(model)
    args = ["--model", str(model), "--from", "en", "--to", "xx" if case == "unknown_language" else "de",
            "--vocab", str(served.corpus / "spm.model")]
    assert run_main(args, stdin, monkeypatch) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected.format(model=model)), captured.err
    assert captured.out == ""


def test_the_console_script_is_declared(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())
    module, _, attr = project["project"]["scripts"]["taskmoe"].partition(":")
    assert module == "pipeline.serve.cli" and getattr(cli, attr) is cli.main
    assert "pipeline.serve" in project["tool"]["setuptools"]["packages"]
    assert any(d.startswith("ctranslate2") for d in project["project"]["dependencies"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA device")
def test_asking_for_a_missing_gpu_is_a_user_error(served, capsys, monkeypatch):
    args = ["--model", str(served.models / "dense"), "--from", "en", "--to", "de", "--vocab",
            str(served.corpus / "spm.model"), "--device", "cuda"]
    assert run_main(args, b"Kaka to.\n", monkeypatch) == 2
    assert capsys.readouterr().err == "error: --device cuda: no CUDA device available to pytorch\n"
