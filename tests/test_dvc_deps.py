"""dvc.yaml cannot drift from the code: every module a stage imports is one of that stage's deps.

A stage's command runs `python -m stages.<name>`; the modules it can import (at module level or inside a
function, transitively, with the packages above them) are found with `ast`. Each of them must be a dep
of the stage, itself or through a folder above it. Otherwise an edit of that module would not rerun the
stage, and the committed results would no longer come from the committed code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OURS = ("pipeline", "stages")


def module_file(name: str) -> Path | None:
    """The file of module `name` inside the repository, or None for a module from elsewhere."""
    if name.split(".")[0] not in OURS:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported(path: Path) -> set[str]:
    """Modules `path` imports anywhere in its body (`from a.b import c` may import the module a.b.c)."""
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def closure(module: str) -> set[Path]:
    """Files of every repository module that importing `module` can load, parent packages included."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            path = module_file(".".join(parts[:i]))
            if path is not None and path not in seen:
                seen.add(path)
                todo += sorted(imported(path))
    return seen


def stage_modules() -> dict[str, tuple[str, list[str]]]:
    """{stage: (module its command runs, its deps)} from dvc.yaml (foreach bodies once)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        match = re.search(r"python -m (stages\.\w+)", body["cmd"])
        assert match, f"stage {name}: command does not run a module of stages/: {body['cmd']!r}"
        out[name] = (match.group(1), [d for d in body.get("deps", []) if isinstance(d, str)])
    return out


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_the_walk_sees_imports_inside_functions_and_parent_packages(tmp_path):
    files = closure("stages.report")
    rels = {p.relative_to(ROOT).as_posix() for p in files}
    assert "pipeline/report/document.py" in rels  # imported inside main()
    assert "pipeline/__init__.py" in rels and "pipeline/report/__init__.py" in rels
    assert "pipeline/errors.py" in rels  # through pipeline.cli


@pytest.mark.parametrize("stage", sorted(stage_modules()))
def test_every_imported_module_is_a_dep_of_its_stage(stage):
    module, deps = stage_modules()[stage]
    missing = sorted(p.relative_to(ROOT).as_posix() for p in closure(module) if not covered(p, deps))
    assert not missing, f"stage {stage}: imports {', '.join(missing)} but dvc.yaml does not list them as deps"
