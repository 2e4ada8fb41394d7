"""The scripts and benchmarks import the library lazily, inside functions, so a module that moves breaks
them only when they run (the regime study once imported `pipeline.compare` after it had moved to
`pipeline.stats`). Every `from pipeline... import name` they contain, at any depth, must resolve."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("benchmarks/*.py")])


def pipeline_imports(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "pipeline":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "pipeline"]
    return out


def test_the_scripts_are_found_and_import_the_library():
    assert {"regime_study.py", "train_step.py"} <= {p.name for p in FILES}
    assert any(pipeline_imports(p) for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_library_import_of_a_script_resolves(path):
    missing = []
    for module, names in pipeline_imports(path):
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{module} ({exc})")
            continue
        missing += [f"{module}.{n}" for n in names if not hasattr(mod, n)
                    and importlib.util.find_spec(f"{module}.{n}") is None]
    assert not missing, f"{path.relative_to(ROOT)} imports what the library no longer has: {', '.join(missing)}"
