"""Bible editions, reading bible.db, and the verse cleaning rules on strings like the real database's."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from pipeline.data import bible
from pipeline.data.bible import CATALOGUE, clean_edition, clean_verse, misaligned_chapters
from pipeline.errors import PipelineError

WEB, ELB, LSG, RV, DIODATI, ALMEIDA, CORN = (CATALOGUE[b] for b in "4elvdau")


def clean(text: str, edition=WEB, verse_id: str = "1.2.3", keep_caps=frozenset()) -> tuple[str, str | None]:
    return clean_verse(verse_id, text, edition, Counter(), keep_caps)


# --------------------------------------------------------------------------------------------------
# editions


def test_default_editions_cover_every_language_of_the_database_and_prefer_public_domain():
    assert {e.lang for e in CATALOGUE.values()} == set(bible.EDITIONS)
    assert len(CATALOGUE) == 31
    assert bible.EDITIONS["en"].bb_name == "4"
    for lang in ("en", "de", "fr", "es", "it"):
        assert bible.EDITIONS[lang].public_domain, lang
    for lang in ("pt", "ro"):  # no public-domain edition of these in the database
        assert not any(e.public_domain for e in CATALOGUE.values() if e.lang == lang)


def test_resolve_editions_names_a_language_the_bible_lacks():
    with pytest.raises(PipelineError, match=r"data.languages: .*no edition in language 'nl'"):
        bible.resolve_editions(["en", "de", "nl"], {})


def test_an_override_must_be_an_edition_of_that_language():
    assert bible.resolve_editions(["de"], {"de": "s"})["de"].name.startswith("Schlachter")
    with pytest.raises(PipelineError, match=r"data.editions.de: bbName 'l' is Louis Segond"):
        bible.resolve_editions(["de"], {"de": "l"})


# --------------------------------------------------------------------------------------------------
# cleaning rules


@pytest.mark.parametrize("text, expected", [
    ("(7:26) L'Éternel dit à Moïse: Va vers Pharaon.", "L'Éternel dit à Moïse: Va vers Pharaon."),
    ("(22.45) E Jeosafá esteve em paz com o rei de Israel.", "E Jeosafá esteve em paz com o rei de Israel."),
    ("(63:19b) Oh! si tu déchirais les cieux,", "Oh! si tu déchirais les cieux,"),
    ("(30-1) Môi-se nói cùng dân Y-sơ-ra-ên.", "Môi-se nói cùng dân Y-sơ-ra-ên."),
    ("na sua força. (5:32) E sossegou a terra quarenta anos.", "na sua força. E sossegou a terra quarenta anos."),
    ("(5:21 Lorsque quelqu'un péchera", "Lorsque quelqu'un péchera"),
])
def test_verse_number_markers_go(text, expected):
    assert clean(text, LSG) == (expected, None)


def test_parentheses_that_are_text_stay():
    text = "and Resen between Nineveh and Calah (the same is the great city)."
    assert clean(text) == (text, None)


@pytest.mark.parametrize("text, rule", [
    ("-", "placeholder"), ("(*)", "placeholder"), ("...", "placeholder"), ("[]", "placeholder"),
    ("Verszeile ohne Text", "placeholder"), ("(aynı)", "placeholder"), ("상동", "placeholder"),
    ("\t\t\t", "empty"), ("", "empty"),
    ("(MISSING) [KJV: Notwithstanding it pleased Silas to abide there still.] From Schlachter: Es gefiel",
     "borrowed"),
    ("(ADDED FROM KJV: The song of songs, which is Solomon's. => Песня Песней Соломона.)", "borrowed"),
])
def test_placeholders_empty_and_borrowed_verses_are_removed(text, rule):
    assert clean(text)[1] == rule


def test_a_verse_whose_successor_is_a_placeholder_goes_too():
    verses = {"1.10.8": "E Cuxe gerou a Ninrode. 9 E este foi poderoso caçador.",
              "1.10.9": "Verszeile ohne Text", "1.10.10": "E o princípio do seu reino foi Babel."}
    kept, removed, _ = clean_edition(verses, ALMEIDA)
    assert list(kept) == ["1.10.10"]
    assert removed == Counter(placeholder=1, merged_with_next=1)


def test_markup_whitespace_and_soft_hyphens():
    assert clean("guilty in one of these [things].\t") == ("guilty in one of these things.", None)
    assert clean("verlaß mich nicht ganz und gar! * * *", ELB) == ("verlaß mich nicht ganz und gar!", None)
    assert clean("Sinabi ng Diyos, ''Magkaroon ng liwanag”") == ('Sinabi ng Diyos, "Magkaroon ng liwanag”', None)
    assert clean("Hei\u00adland kommt\u200b  heute", ELB) == ("Heiland kommt heute", None)


def test_edition_fixes():
    assert clean("God`s Spirit was hovering.")[0] == "God's Spirit was hovering."
    assert clean("y dijo: \u00adCuán terrible es este lugar!", RV)[0] == "y dijo: ¡Cuán terrible es este lugar!"
    text = "Omului i- a zis: ’Fiindcă ai ascultat de glasul nevestei tale: , Să nu mănînci,` blestemat’"
    assert clean(text, CORN)[0] == \
        "Omului i-a zis: \"Fiindcă ai ascultat de glasul nevestei tale: 'Să nu mănînci,' blestemat\""


@pytest.mark.parametrize("edition, text, expected", [
    (LSG, "(3:1) Psaume de David. A l'occasion de sa fuite. (3:2) O Éternel, que mes ennemis sont nombreux!",
     "O Éternel, que mes ennemis sont nombreux!"),
    (ELB, "(Ein Psalm von David, als er vor seinem Sohne Absalom floh.) Jehova! wie viele sind meiner Bedränger!",
     "Jehova! wie viele sind meiner Bedränger!"),
    (RV, "Salmo de David, cuando huía de adelante de Absalom su hijo. \u00adOH Jehová, cuánto se han multiplicado",
     "¡Oh Jehová, cuánto se han multiplicado"),
    (DIODATI, "Salmo di Davide, composto quando egli fuggi’ per cagione d’Absalom, suo figliuolo O SIGNORE, in quanto",
     "O Signore, in quanto"),
    (LSG, "Cantique des degrés. De David. Je suis dans la joie quand on me dit: Allons!",
     "Je suis dans la joie quand on me dit: Allons!"),
    (LSG, "Cantique des degrés, Je lève mes yeux vers toi, Qui sièges dans les cieux.",
     "Je lève mes yeux vers toi, Qui sièges dans les cieux."),
])
def test_psalm_titles_merged_into_verse_one_go(edition, text, expected):
    assert clean(text, edition, verse_id="19.3.1") == (expected, None)


def test_psalm_titles_stay_outside_verse_one_and_outside_psalms():
    text = "Salmo de David, cuando huía de adelante de Absalom su hijo. Y OTRA cosa"
    assert clean(text, RV, verse_id="19.3.2")[0] == text
    assert clean("(Un psalm al lui David.) Doamne!", CORN, verse_id="1.3.1")[0] == "(Un psalm al lui David.) Doamne!"


def test_the_next_psalms_title_at_the_end_of_a_web_verse_goes():
    text = "Salvation belongs to Yahweh. Selah. Psalm 4 For the Chief Musician; on stringed instruments. A Psalm."
    assert clean(text, verse_id="19.3.8")[0] == "Salvation belongs to Yahweh. Selah."
    assert clean("So Job died, being old and full of days. BOOK I Psalm 1", verse_id="18.42.17")[0] == \
        "So Job died, being old and full of days."


def test_psalm_119_acrostic_headers_go():
    assert clean("ALEPH. BIENAVENTURADOS los perfectos de camino;", RV, "19.119.1")[0] == \
        "Bienaventurados los perfectos de camino;"
    assert clean("I will observe your statutes. Don`t utterly forsake me. BEIT", WEB, "19.119.8")[0] == \
        "I will observe your statutes. Don't utterly forsake me."


def test_drop_capitals_are_lowered_but_capitalised_names_of_god_stay():
    assert clean("EN el principio crió Dios los cielos y la tierra.", RV, "1.1.1")[0] == \
        "En el principio crió Dios los cielos y la tierra."
    assert clean("Y JESUS se fué al monte de las Olivas.", RV, "43.8.1")[0] == "Y Jesus se fué al monte de las Olivas."
    assert clean("BEM-AVENTURADOS os retos", ALMEIDA, "19.119.1")[0] == "Bem-aventurados os retos"
    assert clean("SENHOR, como se têm multiplicado", ALMEIDA, "19.3.1", frozenset({"SENHOR"}))[0] == \
        "SENHOR, como se têm multiplicado"
    assert bible.caps_vocabulary(["Louvai ao SENHOR todas as nações"] * 5) == {"SENHOR"}
    assert bible.caps_vocabulary(["Louvai ao SENHOR todas as nações"] * 4) == set()
    assert bible.caps_vocabulary(["and this is the writing: MENE, MENE, TEKEL, UPHARSIN."] * 5) == set()


def test_misaligned_chapter_is_found_from_lengths():
    lengths = [40, 90, 25, 70, 30, 100]
    pivot = {f"{chapter}.{v}": "x" * n for chapter in ("19.13", "19.14") for v, n in enumerate(lengths, start=1)}
    other = {f"19.13.{v + 1}": "y" * n for v, n in enumerate(lengths[:-1], start=1)}  # a title took verse 1
    other.update({f"19.14.{v}": "y" * (n + 3) for v, n in enumerate(lengths, start=1)})
    assert misaligned_chapters(pivot, other) == {"19.13"}
    assert misaligned_chapters(pivot, {k: v + "y" for k, v in pivot.items()}) == set()


# --------------------------------------------------------------------------------------------------
# reading bible.db


def test_read_bible_gives_ids_in_canonical_order(tiny_db):
    texts = bible.read_bible(tiny_db, {"en": "4", "de": "e"})
    ids = list(texts["en"])
    assert ids[:3] == ["1.1.1", "1.1.2", "1.1.3"] and ids[30] == "1.2.1"
    assert set(texts["de"]) == set(ids)


def test_read_bible_rejects_a_missing_edition(tiny_db):
    with pytest.raises(PipelineError, match=r"language 'pl': no edition with bbName 'z'"):
        bible.read_bible(tiny_db, {"en": "4", "pl": "z"})


def test_read_bible_rejects_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "bible.db"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a database" * 100)
    with pytest.raises(PipelineError, match=rf"{path}: not a readable SQLite database"):
        bible.read_bible(path, {"en": "4"})


def test_read_bible_rejects_a_database_without_the_bible_table(tmp_path, make_bible_db):
    path = make_bible_db(tmp_path / "bible.db", {}, columns="CREATE TABLE other (x TEXT)")
    with pytest.raises(PipelineError, match=r"no table 'bible'"):
        bible.read_bible(path, {"en": "4"})


def test_read_bible_rejects_wrong_columns(tmp_path, make_bible_db):
    path = make_bible_db(tmp_path / "bible.db", {},
                         columns="CREATE TABLE bible (bbName TEXT, book INTEGER, cNumber INTEGER, vNumber INTEGER)")
    with pytest.raises(PipelineError, match=r"table 'bible' lacks column\(s\) bNumber, vText"):
        bible.read_bible(path, {"en": "4"})


def test_read_bible_names_a_verse_that_is_not_utf8(tmp_path, make_bible_db):
    path = make_bible_db(tmp_path / "bible.db", {"4": {(1, 1, 1): "In the beginning"}})
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO bible VALUES (9, '4', 1, 1, 2, CAST(X'4e6f20e9' AS TEXT))")
    conn.commit()
    conn.close()
    with pytest.raises(PipelineError, match=r"verse 1.1.2 of edition '4' is not valid UTF-8"):
        bible.read_bible(path, {"en": "4"})


def test_a_psalm_whose_verse_one_is_only_its_title_is_dropped_whole():
    verses = {"19.13.1": "(Dem Vorsänger. Ein Psalm von David.)", "19.13.2": "Bis wann, Jehova?",
              "19.13.3": "Bis wann soll ich Ratschläge hegen?", "19.14.1": "Der Tor spricht in seinem Herzen."}
    kept, removed, _ = clean_edition(verses, ELB)
    assert list(kept) == ["19.14.1"]
    assert removed == Counter(empty=1, misaligned_chapter=2)
