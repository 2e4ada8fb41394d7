"""Parallel text on disk: the `Pair` type, the prepared corpus's TSV files, and the user's own corpus.

Prepared corpus (what `prepare` writes, what the model stages read): `<corpus>/{train,valid,test}/<src>-<tgt>.tsv`,
one pair per line, `id<TAB>source<TAB>target`, cleaned and untokenized.

Second source, `data.source: tsv` with `data.tsv_dir: <folder>` (WMT, OPUS, your own data):

    <folder>/train/   <folder>/valid/   <folder>/test/      (all three are needed; splits are yours)

and in each split folder, for every language `xx` of `data.languages`, ONE of these for the pair of the
pivot and `xx` (either orientation, `en-xx` or `xx-en`; the pairs serve both directions):

    en-xx.tsv               one pair per line: `source<TAB>target`, or `id<TAB>source<TAB>target`
                            (the first line decides; without ids a pair's id is its line number)
    en-xx.en + en-xx.xx     Moses/OPUS-style line-aligned plain text, one sentence per line, the same
                            number of lines in both (ids are line numbers)

All files are UTF-8. Where a file names `en-xx`, its first column (or the `.en` file) is English. The
text goes through the same normalisation, length filter, de-duplication, sampling and SentencePiece
training as the bible. `valid` and `test` keep `data.valid_size` / `data.test_size` pairs (the first ones
by a salted hash of the id); `train` a sample of `data.train_sizes` pairs; train pairs that also occur in
valid or test are dropped.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Iterable, NamedTuple

from pipeline.errors import PipelineError

SPLITS = ("train", "valid", "test")


class Pair(NamedTuple):
    id: str
    source: str
    target: str


# --------------------------------------------------------------------------------------------------
# the prepared corpus


def read_pairs(path: str | Path) -> list[Pair]:
    """Read one `<src>-<tgt>.tsv` of a prepared corpus; a malformed line is an error naming it."""
    path = Path(path)
    pairs = []
    for number, line in _read_lines(path):
        fields = line.split("\t")
        if len(fields) != 3:
            raise PipelineError(f"{path}:{number}: expected 3 tab-separated fields (id, source, target), "
                                f"got {len(fields)}")
        pairs.append(Pair(*fields))
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[Pair]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for pair in pairs:
            handle.write(f"{pair.id}\t{pair.source}\t{pair.target}\n")


def load_split(corpus_dir: str | Path, split: str) -> dict[str, list[Pair]]:
    """All directions of one split: `{direction: pairs}`, in the order of `meta.json` when present."""
    folder = Path(corpus_dir) / split
    if not folder.is_dir():
        raise PipelineError(f"{folder}: no such split folder (run the prepare stage)")
    meta = Path(corpus_dir) / "meta.json"
    if meta.exists():
        from pipeline.io import read_json

        names = read_json(meta).get("directions") or []
    else:
        names = sorted(p.stem for p in folder.glob("*.tsv"))
    return {name: read_pairs(folder / f"{name}.tsv") for name in names}


def _read_lines(path: Path) -> Iterable[tuple[int, str]]:
    """(line number, line without its newline), with errors naming the file and line."""
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PipelineError(f"{path}:{number}: not valid UTF-8 (byte {exc.start + 1})") from None
            yield number, line.rstrip("\r\n")


# --------------------------------------------------------------------------------------------------
# normalisation every source shares (docs/design.md §5)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u200e\u200f\ufeff]")
_SPACE = re.compile(r"\s+")
SOFT_HYPHEN = "\u00ad"


def normalize_text(text: str) -> str:
    """NFC, no control or zero-width characters, no soft hyphens, single spaces (so no tabs or newlines)."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text.replace(SOFT_HYPHEN, ""))
    return _SPACE.sub(" ", text).strip()


# --------------------------------------------------------------------------------------------------
# the second source: a folder of the user's parallel files


def read_tsv_source(tsv_dir: str | Path, pivot: str,
                    languages: list[str]) -> dict[str, dict[str, tuple[str, list[Pair]]]]:
    """`{split: {lang: (file name(s), [Pair(id, pivot text, lang text)])}}`, the layout of the module docstring.

    The text is as in the files (not yet normalised); a missing split or language, a line-count mismatch,
    a malformed line or non-UTF-8 text is an error naming the file (and line).
    """
    root = Path(tsv_dir)
    if not root.is_dir():
        raise PipelineError(f"data.tsv_dir: {root}: no such folder")
    out: dict[str, dict[str, tuple[str, list[Pair]]]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise PipelineError(f"data.tsv_dir: {folder}: missing split folder (need train, valid, test)")
        out[split] = {lang: _read_language(folder, pivot, lang) for lang in languages}
    return out


def _read_language(folder: Path, pivot: str, lang: str) -> tuple[str, list[Pair]]:
    found = []
    for first, second in ((pivot, lang), (lang, pivot)):
        stem = f"{first}-{second}"
        if (folder / f"{stem}.tsv").is_file():
            found.append(("tsv", stem, first))
        if (folder / f"{stem}.{first}").is_file() or (folder / f"{stem}.{second}").is_file():
            found.append(("plain", stem, first))
    if not found:
        raise PipelineError(f"{folder}: no parallel data for language {lang!r} (expected {pivot}-{lang}.tsv, "
                            f"{lang}-{pivot}.tsv or {pivot}-{lang}.{pivot} + {pivot}-{lang}.{lang})")
    if len(found) > 1:
        names = ", ".join(f"{stem}.{'tsv' if kind == 'tsv' else '*'}" for kind, stem, _ in found)
        raise PipelineError(f"{folder}: more than one file for language {lang!r} ({names}); keep one")
    kind, stem, first = found[0]
    if kind == "tsv":
        origin, pairs = str(folder / f"{stem}.tsv"), _read_tsv(folder / f"{stem}.tsv")
    else:
        origin, pairs = str(folder / f"{stem}.{{{stem.replace('-', ',')}}}"), _read_plain(folder, stem)
    if first != pivot:  # the file is xx-en: put the pivot first
        pairs = [Pair(p.id, p.target, p.source) for p in pairs]
    return origin, pairs


def _read_tsv(path: Path) -> list[Pair]:
    pairs, width, seen = [], None, set()
    for number, line in _read_lines(path):
        fields = line.split("\t")
        width = width or len(fields)
        if len(fields) != width or width not in (2, 3):
            raise PipelineError(f"{path}:{number}: expected {width if width in (2, 3) else '2 or 3'} "
                                f"tab-separated fields (source, target or id, source, target), got {len(fields)}")
        pair = Pair(*fields) if width == 3 else Pair(str(number), *fields)
        if pair.id in seen:
            raise PipelineError(f"{path}:{number}: duplicate id {pair.id!r}")
        seen.add(pair.id)
        pairs.append(pair)
    return pairs


def _read_plain(folder: Path, stem: str) -> list[Pair]:
    first, second = stem.split("-")
    paths = [folder / f"{stem}.{first}", folder / f"{stem}.{second}"]
    for path, other in ((paths[0], paths[1]), (paths[1], paths[0])):
        if not path.is_file():
            raise PipelineError(f"{path}: file not found (its parallel file {other.name} exists)")
    left = [line for _, line in _read_lines(paths[0])]
    right = [line for _, line in _read_lines(paths[1])]
    if len(left) != len(right):
        raise PipelineError(f"{paths[0]} has {len(left)} lines but {paths[1]} has {len(right)}: "
                            "parallel files must have the same number of lines")
    return [Pair(str(i), a, b) for i, (a, b) in enumerate(zip(left, right), start=1)]
