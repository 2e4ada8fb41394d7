"""Splits by a salted hash of the verse id, so a verse lands in the same split in every language (docs/design.md §5).

Were the split drawn per language, a verse's English side could sit in the training data of en-de and in
the test set of en-fr, and the model would have seen the reference. Here the test and valid verses are
the first `test_size` and the next `valid_size` of the verses every language has, ranked by
`sha256(salt:verse_id)`; every other verse is training material in every language that has it.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from pipeline.errors import PipelineError


def hash_rank(key: str, salt: str) -> int:
    """A stable pseudo-random rank of `key` (the same on every machine and Python version)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode("utf-8")).digest()[:8], "big")


def split_ids(common_ids: Iterable[str], test_size: int, valid_size: int, salt: str) -> tuple[set[str], set[str]]:
    """`(test ids, valid ids)`: exact sizes, drawn from the ids every language has."""
    ranked = sorted(common_ids, key=lambda key: (hash_rank(key, salt), key))
    if test_size + valid_size > len(ranked):
        raise PipelineError(f"data.test_size + data.valid_size: {test_size} + {valid_size} verses asked, "
                            f"{len(ranked)} available in every language")
    return set(ranked[:test_size]), set(ranked[test_size:test_size + valid_size])


def take_first_by_hash(ids: Iterable[str], size: int, salt: str, key: str) -> list[str]:
    """The `size` ids that rank first by the salted hash; an error naming `key` when there are fewer."""
    ids = list(ids)
    if size > len(ids):
        raise PipelineError(f"{key}: {size} pairs asked, {len(ids)} available")
    return sorted(ids, key=lambda i: (hash_rank(i, salt), i))[:size]


def sample_train(pool: Iterable[str], size: int, salt: str, lang: str, key: str = "") -> list[str]:
    """A deterministic sample of `size` training ids for one language (salted per language, so the
    languages' samples are independent). Order: as in `pool`. `key` names the setting in errors."""
    pool = list(pool)
    chosen = set(take_first_by_hash(pool, size, f"{salt}:train:{lang}", key or f"data.train_sizes.{lang}"))
    return [i for i in pool if i in chosen]
