"""TSV files of the prepared corpus and the second source (the user's folder), with their errors."""

from __future__ import annotations

import pytest

from pipeline.data.corpus import Pair, load_split, normalize_text, read_pairs, read_tsv_source, write_pairs
from pipeline.errors import PipelineError


def test_write_then_read_pairs(tmp_path):
    pairs = [Pair("1.1.1", "In the beginning", "Im Anfang"), Pair("1.1.2", "a", "b")]
    write_pairs(tmp_path / "en-de.tsv", pairs)
    assert read_pairs(tmp_path / "en-de.tsv") == pairs
    (tmp_path / "train").mkdir()
    write_pairs(tmp_path / "train" / "en-de.tsv", pairs)
    assert load_split(tmp_path, "train") == {"en-de": pairs}


def test_read_pairs_names_the_line(tmp_path):
    path = tmp_path / "en-de.tsv"
    path.write_text("1\ta\tb\n2\tonly two\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{path}:2: expected 3 tab-separated fields"):
        read_pairs(path)


def test_non_utf8_text_names_the_file_and_line(tmp_path):
    path = tmp_path / "en-de.tsv"
    path.write_bytes("1\ta\tb\n".encode() + b"2\tcaf\xe9\tb\n")
    with pytest.raises(PipelineError, match=rf"{path}:2: not valid UTF-8"):
        read_pairs(path)


def test_normalize_text():
    assert normalize_text("  a\t\tb\nc\u00ad d\x7f ") == "a b c d"
    assert normalize_text("e\u0301") == "é"


def test_tsv_source_reads_both_layouts(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 5, "valid": 3, "test": 3})
    data = read_tsv_source(root, "en", ["de", "fr"])
    origin, de = data["train"]["de"]
    assert origin.endswith("en-de.tsv") and de[0].id == "train-0" and len(de) == 5
    origin, fr = data["test"]["fr"]
    assert origin.endswith("fr-en.{fr,en}") and [p.id for p in fr] == ["1", "2", "3"]
    english = (root / "test" / "fr-en.en").read_text("utf-8").splitlines()
    assert [p.source for p in fr] == english  # pivot side first whatever the file's orientation


def test_tsv_two_columns_get_line_numbers(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 2, "valid": 2, "test": 2}, langs=("fr",))
    for split in ("train", "valid", "test"):
        (root / split / "de-en.tsv").write_text("Hallo Welt\tHello world\nGuten Tag\tGood day\n", "utf-8")
    pairs = read_tsv_source(root, "en", ["de"])["valid"]["de"][1]
    assert pairs == [Pair("1", "Hello world", "Hallo Welt"), Pair("2", "Good day", "Guten Tag")]


def test_parallel_files_with_different_line_counts_are_rejected(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 4, "valid": 2, "test": 2})
    with open(root / "valid" / "fr-en.fr", "a", encoding="utf-8") as handle:
        handle.write("Une ligne de trop.\n")
    with pytest.raises(PipelineError, match=r"fr-en.fr has 3 lines but .*fr-en.en has 2"):
        read_tsv_source(root, "en", ["de", "fr"])


def test_missing_language_and_missing_split_are_named(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 2, "valid": 2, "test": 2})
    with pytest.raises(PipelineError, match=r"no parallel data for language 'it'"):
        read_tsv_source(root, "en", ["de", "it"])
    (root / "test" / "en-de.tsv").unlink()
    with pytest.raises(PipelineError, match=r"test: no parallel data for language 'de'"):
        read_tsv_source(root, "en", ["de"])
    with pytest.raises(PipelineError, match=r"data.tsv_dir: .*nowhere: no such folder"):
        read_tsv_source(tmp_path / "nowhere", "en", ["de"])


def test_tsv_malformed_line_and_duplicate_ids(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 2, "valid": 2, "test": 2}, langs=("de",))
    path = root / "train" / "en-de.tsv"
    path.write_text("1\ta\tb\n1\tc\td\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{path}:2: duplicate id '1'"):
        read_tsv_source(root, "en", ["de"])
    path.write_text("1\ta\tb\n2\tc\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{path}:2: expected 3 tab-separated fields"):
        read_tsv_source(root, "en", ["de"])
