"""Fakes of the modules evaluate depends on (data, decode, extract), so its logic is tested alone."""

from __future__ import annotations

import json
import sys
import types
from collections import namedtuple
from pathlib import Path

import pytest

Pair = namedtuple("Pair", "id source target")


def write_corpus(root: Path, directions: dict[str, list[tuple[str, str]]], pivot: str = "en",
                 high_resource: list[str] | None = None) -> Path:
    """A prepared-corpus folder: meta.json, spm.model (a placeholder), test/<dir>.tsv."""
    (root / "test").mkdir(parents=True)
    for direction, pairs in directions.items():
        lines = [f"1.1.{i}\t{src}\t{tgt}\n" for i, (src, tgt) in enumerate(pairs)]
        (root / "test" / f"{direction}.tsv").write_text("".join(lines), encoding="utf-8")
    (root / "spm.model").write_bytes(b"fake")
    langs = sorted({lang for d in directions for lang in d.split("-")} - {pivot})
    meta = {"languages": [pivot, *langs], "directions": list(directions), "pivot": pivot,
            "high_resource": high_resource if high_resource is not None else langs[:1]}
    (root / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def fake_load_split(corpus_dir, split):
    out = {}
    for path in sorted((Path(corpus_dir) / split).glob("*.tsv")):
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
        out[path.stem] = [Pair(*row) for row in rows]
    return out


class FakeDeployable:
    """Every direction served by an identity module; `translate` below copies the source."""

    def __init__(self, folder, device="cpu"):
        import torch

        self.module = torch.nn.Identity()
        self.requests = []

    def model_for(self, src_lang, tgt_lang):
        self.requests.append((src_lang, tgt_lang))
        return self.module


def fake_translate(model, vocab, sources, src_lang, tgt_lang, cfg, device=None):
    return list(sources)


@pytest.fixture
def corpus_factory():
    """`write_corpus` as a fixture (test modules here are not a package, so cannot import it)."""
    return write_corpus


@pytest.fixture
def fake_stack(monkeypatch):
    """Install fake pipeline.data.{corpus,vocab}, pipeline.decode and pipeline.extract modules."""
    modules = {
        "pipeline.data.corpus": {"load_split": fake_load_split, "Pair": Pair},
        "pipeline.data.vocab": {"Vocab": lambda path: object()},
        "pipeline.decode": {"translate": fake_translate},
        "pipeline.extract": {"load_deployable": FakeDeployable},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    return modules
