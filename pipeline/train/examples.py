"""From the prepared corpus (TSV text) to token-id `Example`s the trainer batches."""

from __future__ import annotations

from pathlib import Path

from pipeline.train.batching import Example


def encode_pairs(pairs, vocab, src_lang: str, tgt_lang: str, languages: list[str],
                 max_len: int) -> list[Example]:
    """Tokenize `Pair`s of one direction; sequences longer than `max_len` are truncated (eos kept)."""
    s_id, t_id = languages.index(src_lang), languages.index(tgt_lang)
    out = []
    for pair in pairs:
        src = _clip(vocab.encode_source(pair.source, tgt_lang), max_len, vocab.eos_id)
        tgt = _clip(vocab.encode_target(pair.target), max_len, vocab.eos_id)
        out.append(Example(src, tgt, s_id, t_id))
    return out


def _clip(ids: list[int], max_len: int, eos_id: int) -> list[int]:
    return ids if len(ids) <= max_len else ids[: max_len - 1] + [eos_id]


def load_examples(corpus_dir: str | Path, split: str, vocab, languages: list[str], max_len: int,
                  pairs_by_direction=None) -> dict[str, list[Example]]:
    """{direction: examples} for a split of the prepared corpus (or for given `pairs_by_direction`)."""
    from pipeline.data.corpus import load_split

    pairs_by_direction = pairs_by_direction or load_split(corpus_dir, split)
    out = {}
    for direction, pairs in sorted(pairs_by_direction.items()):
        src_lang, tgt_lang = direction.split("-")
        out[direction] = encode_pairs(pairs, vocab, src_lang, tgt_lang, languages, max_len)
    return out
