"""prepare_corpus end to end on a tiny bible.db with the smoke profile, its outputs, and bad inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from pipeline.config import directions, load_params, train_size
from pipeline.data.corpus import load_split, read_pairs
from pipeline.data.prepare import prepare_corpus
from pipeline.data.vocab import Vocab
from pipeline.errors import PipelineError

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train", "valid", "test")


def smoke():
    return load_params(REPO / "params.yaml", profile="smoke").data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_db):
    out = tmp_path_factory.mktemp("prepared")
    stats = prepare_corpus(smoke(), tiny_db.parent, out / "corpus", out / "reports" / "stats.json")
    return out, stats


def files_of(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_exact_sizes(prepared):
    out, stats = prepared
    cfg, corpus = smoke(), out / "corpus"
    assert {"spm.model", "spm.vocab", "meta.json", "DATA_CARD.md"} <= {p.name for p in corpus.iterdir()}
    expected = {"train": {d: train_size(cfg, d.replace("en", "").strip("-")) for d in directions(cfg)},
                "valid": dict.fromkeys(directions(cfg), cfg.valid_size),
                "test": dict.fromkeys(directions(cfg), cfg.test_size)}
    assert expected["train"] == {"en-de": 300, "en-fr": 150, "de-en": 300, "fr-en": 150}  # the smoke profile
    for split in SPLITS:
        assert sorted(p.name for p in (corpus / split).iterdir()) == sorted(f"{d}.tsv" for d in directions(cfg))
        assert {d: len(read_pairs(corpus / split / f"{d}.tsv")) for d in directions(cfg)} == expected[split]
    assert stats["pairs"] == expected
    assert json.loads((out / "reports" / "stats.json").read_text()) == stats


def test_both_directions_hold_the_same_pairs(prepared):
    corpus = prepared[0] / "corpus"
    for split in SPLITS:
        data = load_split(corpus, split)
        assert list(data) == ["en-de", "en-fr", "de-en", "fr-en"]
        for lang in ("de", "fr"):
            assert [(p.id, p.target, p.source) for p in data[f"{lang}-en"]] == \
                [tuple(p) for p in data[f"en-{lang}"]]


def test_no_verse_in_two_splits_and_test_is_multiparallel(prepared):
    corpus = prepared[0] / "corpus"
    ids = {split: {d: {p.id for p in pairs} for d, pairs in load_split(corpus, split).items()} for split in SPLITS}
    assert ids["test"]["en-de"] == ids["test"]["en-fr"] and ids["valid"]["en-de"] == ids["valid"]["en-fr"]
    union = {split: set().union(*ids[split].values()) for split in SPLITS}
    assert not union["train"] & union["test"] and not union["train"] & union["valid"]
    assert not union["valid"] & union["test"]


def test_cleaning_shows_in_the_outputs_and_stats(prepared):
    out, stats = prepared
    pairs = {p.id: p for split in SPLITS for p in load_split(out / "corpus", split)["en-fr"]}
    de = {p.id for split in SPLITS for p in load_split(out / "corpus", split)["en-de"]}
    assert all("(1:31)" not in p.target and "`" not in p.source for p in pairs.values())
    assert "1.3.5" not in de and "1.3.4" not in de  # placeholder, and the verse its text merged into
    removed, changed = stats["cleaning_removed"], stats["cleaning_changed"]
    assert removed["de"]["placeholder"] == 1 and removed["de"]["merged_with_next"] == 1
    assert changed["fr"]["verse_marker"] == 1 and changed["en"]["edition_fix"] == 1
    assert changed["de"]["whitespace"] == 1
    for d in directions(smoke()):
        assert stats["train_tokens"][d]["source"] > stats["pairs"]["train"][d]
    assert sum(stats["sampling_probs"].values()) == pytest.approx(1)
    assert stats["sampling_probs"]["en-de"] > stats["sampling_probs"]["en-fr"]
    assert stats["vocab_size"] == 300


def test_meta_json_and_data_card(prepared):
    corpus = prepared[0] / "corpus"
    meta = json.loads((corpus / "meta.json").read_text())
    assert meta["languages"] == ["en", "de", "fr"] and meta["pivot"] == "en"
    assert meta["directions"] == ["en-de", "en-fr", "de-en", "fr-en"] and meta["high_resource"] == ["de"]
    assert meta["sizes"]["test"]["fr-en"] == 20
    assert meta["editions"]["fr"]["bbName"] == "l" and meta["editions"]["fr"]["public_domain"] is True
    on_disk = files_of(corpus)
    del on_disk["meta.json"]
    assert meta["files"] == on_disk
    assert len(meta["inputs"]["bible.db"]) == 64
    card = (corpus / "DATA_CARD.md").read_text()
    assert "Louis Segond (1910)" in card and "| en-de | 300 | 20 | 20 |" in card and "verse_marker" in card


def test_vocab_contract(prepared):
    vocab = Vocab(prepared[0] / "corpus" / "spm.model")
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id, vocab.size) == (0, 1, 2, 3, 300)
    assert Vocab(prepared[0] / "corpus").size == 300
    tags = {lang: vocab.tag_id(lang) for lang in ("en", "de", "fr")}
    assert len(set(tags.values())) == 3 and vocab.languages == ["en", "de", "fr"]
    text = read_pairs(prepared[0] / "corpus" / "train" / "en-de.tsv")[0].target
    ids = vocab.encode_source(text, "de")
    assert ids[0] == tags["de"] and ids[-1] == vocab.eos_id and vocab.decode(ids) == text
    target = vocab.encode_target(text)
    assert target[-1] == vocab.eos_id and vocab.eos_id not in target[:-1]
    assert vocab.decode([vocab.bos_id, *target, *vocab.encode_target("nicht mehr"), vocab.pad_id]) == text
    with pytest.raises(PipelineError, match=r"no tag <2it>"):
        vocab.tag_id("it")


def test_prepare_is_deterministic(prepared, tiny_db, tmp_path):
    prepare_corpus(smoke(), tiny_db.parent, tmp_path / "corpus", tmp_path / "stats.json")
    assert files_of(tmp_path / "corpus") == files_of(prepared[0] / "corpus")


# --------------------------------------------------------------------------------------------------
# bad input: a clear PipelineError and nothing left behind


def assert_fails_cleanly(cfg, raw: Path, tmp_path: Path, match: str):
    with pytest.raises(PipelineError, match=match):
        prepare_corpus(cfg, raw, tmp_path / "data" / "corpus", tmp_path / "reports" / "prepare" / "stats.json")
    assert not (tmp_path / "data" / "corpus").exists()
    assert not (tmp_path / "reports" / "prepare" / "stats.json").exists()
    assert not list((tmp_path / "data").glob(".corpus*"))  # no temporary folder either


def test_corrupt_database(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "bible.db").write_bytes(b"\x00garbage" * 500)
    assert_fails_cleanly(smoke(), tmp_path / "raw", tmp_path, r"raw/bible.db: sha256 \w+… differs from the "
                         r"pinned hash 9605a855220e…: the file changed after fetch")
    # a database whose recorded hash matches it gets as far as reading it
    from pipeline.data.fetch import sha256_file

    (tmp_path / "raw" / "bible.db.sha256").write_text(sha256_file(tmp_path / "raw" / "bible.db"))
    assert_fails_cleanly(smoke(), tmp_path / "raw", tmp_path, r"raw/bible.db: not a readable SQLite database")


def test_a_database_edited_after_fetch_stops_prepare(tiny_db, tmp_path):
    """One byte changed ("Jubal" to "Xubal" in the real database): the hash fetch recorded no longer
    matches, and prepare builds nothing."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(tiny_db.parent, raw)
    data = bytearray((raw / "bible.db").read_bytes())
    at = data.rindex(b"a")
    data[at] = ord("X")
    (raw / "bible.db").write_bytes(bytes(data))
    assert_fails_cleanly(smoke(), raw, tmp_path, r"raw/bible.db: sha256 \w+… differs from the hash fetch "
                         r"checked \(bible.db.sha256\)")


def test_missing_database(tmp_path):
    assert_fails_cleanly(smoke(), tmp_path / "raw", tmp_path, r"raw/bible.db: file not found \(run the fetch stage\)")


def test_language_the_database_lacks(tiny_db, tmp_path):
    cfg = dataclasses.replace(smoke(), languages=["de", "it"], train_sizes={"de": 300}, high_resource=[])
    assert_fails_cleanly(cfg, tiny_db.parent, tmp_path, r"language 'it': no edition with bbName 'd'")
    cfg = dataclasses.replace(cfg, languages=["de", "nl"])
    assert_fails_cleanly(cfg, tiny_db.parent, tmp_path, r"no edition in language 'nl'")


def test_empty_direction(tiny_verses, tmp_path, make_bible_db):
    verses = {**tiny_verses, "l": {key: "-" for key in tiny_verses["l"]}}
    raw = make_bible_db(tmp_path / "raw" / "bible.db", verses).parent
    assert_fails_cleanly(smoke(), raw, tmp_path, r"no verse pairs left for en-fr after cleaning \(edition 'l'")


def test_vocab_size_too_large(tiny_db, tmp_path):
    cfg = dataclasses.replace(smoke(), vocab_size=20000)
    assert_fails_cleanly(cfg, tiny_db.parent, tmp_path, r"^data.vocab_size: 20000 is too large .* at most \d+$")


def test_train_size_larger_than_the_data(tiny_db, tmp_path):
    cfg = dataclasses.replace(smoke(), train_sizes={"de": 5000, "fr": 150})
    assert_fails_cleanly(cfg, tiny_db.parent, tmp_path, r"^data.train_sizes.de: 5000 pairs asked, \d+ available$")
    cfg = dataclasses.replace(smoke(), test_size=440)
    assert_fails_cleanly(cfg, tiny_db.parent, tmp_path,
                         r"data.test_size \+ data.valid_size: 440 \+ 20 verses asked, \d+ available in every language")


def test_database_with_wrong_columns(tmp_path, make_bible_db):
    raw = make_bible_db(tmp_path / "raw" / "bible.db", {},
                        columns="CREATE TABLE bible (bbName TEXT, vText TEXT)").parent
    assert_fails_cleanly(smoke(), raw, tmp_path, r"table 'bible' lacks column\(s\) bNumber, cNumber, vNumber")


# --------------------------------------------------------------------------------------------------
# the second source


def tsv_config(root: Path):
    return dataclasses.replace(smoke(), source="tsv", tsv_dir=str(root))


def test_tsv_source_makes_the_same_corpus_layout(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 330, "valid": 25, "test": 30})
    stats = prepare_corpus(tsv_config(root), tmp_path / "unused", tmp_path / "corpus", tmp_path / "stats.json")
    assert stats["pairs"]["train"] == {"en-de": 300, "en-fr": 150, "de-en": 300, "fr-en": 150}
    assert stats["pairs"]["test"]["fr-en"] == 20 and stats["pairs"]["valid"]["en-de"] == 20
    test_ids = {p.id for p in read_pairs(tmp_path / "corpus" / "test" / "en-de.tsv")}
    assert test_ids <= {f"test-{i}" for i in range(30)}
    meta = json.loads((tmp_path / "corpus" / "meta.json").read_text())
    assert set(meta["inputs"]) == {f"{s}/{f}" for s in SPLITS for f in ("en-de.tsv", "fr-en.fr", "fr-en.en")}
    assert Vocab(tmp_path / "corpus").languages == ["en", "de", "fr"]


def test_tsv_line_count_mismatch(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 330, "valid": 25, "test": 30})
    with open(root / "train" / "fr-en.en", "a", encoding="utf-8") as handle:
        handle.write("One line too many.\n")
    assert_fails_cleanly(tsv_config(root), tmp_path, tmp_path, r"fr-en.fr has 330 lines but .*fr-en.en has 331")


def test_tsv_non_utf8(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 330, "valid": 25, "test": 30})
    path = root / "valid" / "en-de.tsv"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[6] = b"x7\tcaf\xe9\tKaffee\n"
    path.write_bytes(b"".join(lines))
    assert_fails_cleanly(tsv_config(root), tmp_path, tmp_path, rf"{path}:7: not valid UTF-8")


def test_tsv_empty_direction_and_small_test_set(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 330, "valid": 25, "test": 30})
    (root / "train" / "en-de.tsv").write_text("", encoding="utf-8")
    assert_fails_cleanly(tsv_config(root), tmp_path, tmp_path, r"train/en-de.tsv: no usable pairs for en-de")
    root = write_tsv_corpus(tmp_path / "mine2", {"train": 330, "valid": 25, "test": 10})
    assert_fails_cleanly(tsv_config(root), tmp_path, tmp_path, r"data.test_size \(.*\): 20 pairs asked, 10 available")


def test_tsv_missing_language(tmp_path, write_tsv_corpus):
    root = write_tsv_corpus(tmp_path / "mine", {"train": 330, "valid": 25, "test": 30}, langs=("de",))
    assert_fails_cleanly(tsv_config(root), tmp_path, tmp_path, r"no parallel data for language 'fr'")


def test_vocab_rejects_a_missing_or_corrupt_model(tmp_path):
    with pytest.raises(PipelineError, match=r"spm.model: SentencePiece model not found"):
        Vocab(tmp_path)
    (tmp_path / "spm.model").write_bytes(b"\x08\x01garbage")
    with pytest.raises(PipelineError, match=r"spm.model: not a SentencePiece model"):
        Vocab(tmp_path / "spm.model")
