"""Synthetic systems with known BLEU: each sentence is either the reference or unrelated words.

With every sentence the same length, a system that copies the reference on a share q of sentences
has corpus BLEU exactly 100 q (all n-gram precisions are q, brevity penalty 1), so the fraction of
gains preserved between such systems is known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest

WORDS = 8


def reference(direction: str, i: int) -> str:
    return " ".join(f"{direction[:2]}{i}w{j}" for j in range(WORDS))


def garbage(i: int) -> str:
    return " ".join(f"g{i}x{j}" for j in range(WORDS))


def synthetic(shares: dict[str, float], directions=("en-de", "de-en"), n=200, seed=0):
    """Systems nested like real ones: a sentence right for a weaker system is right for a stronger
    one. Returns (hyps system -> direction -> lines, refs direction -> lines, groups)."""
    rng = np.random.default_rng(seed)
    refs = {d: [reference(d, i) for i in range(n)] for d in directions}
    difficulty = {d: rng.random(n) for d in directions}
    hyps = {s: {d: [refs[d][i] if difficulty[d][i] < q else garbage(i) for i in range(n)]
                for d in directions} for s, q in shares.items()}
    return hyps, refs, {"avg": list(directions)}


@pytest.fixture
def make_synthetic():
    return synthetic


PARAMS = """\
models:
  dense: {encoder_routing: none, decoder_routing: none}
  token_moe: {encoder_routing: token, decoder_routing: token}
  task_moe: {encoder_routing: token, decoder_routing: target}
data: {languages: [de, it], high_resource: [de]}
compare: {bootstrap_resamples: 100}
"""


@pytest.fixture
def evaluated(tmp_path):
    """A params file, a corpus (meta.json + test TSVs) and the six systems' hyps under evaluate/,
    as the compare stage finds them."""
    import json

    from pipeline.evaluate import write_lines

    directions = ("en-de", "en-it", "de-en", "it-en")
    hyps, refs, _ = synthetic({"dense": 0.3, "token_moe": 0.6, "task_moe": 0.7, "student": 0.4,
                               "task_moe_sub": 0.7, "dense_long": 0.5}, directions=directions, n=40)
    corpus = tmp_path / "corpus"
    (corpus / "test").mkdir(parents=True)
    meta = {"languages": ["en", "de", "it"], "directions": list(directions), "pivot": "en",
            "high_resource": ["de"]}
    (corpus / "meta.json").write_text(json.dumps(meta))
    for direction, lines in refs.items():  # verse_id<TAB>source<TAB>target
        rows = "".join(f"1.1.{i}\tsource {i}\t{line}\n" for i, line in enumerate(lines))
        (corpus / "test" / f"{direction}.tsv").write_text(rows, encoding="utf-8")
    for system, by_direction in hyps.items():
        for direction, lines in by_direction.items():
            (tmp_path / "evaluate" / system / "hyps").mkdir(parents=True, exist_ok=True)
            write_lines(tmp_path / "evaluate" / system / "hyps" / f"{direction}.txt", lines)
    (tmp_path / "params.yaml").write_text(PARAMS)
    return tmp_path
