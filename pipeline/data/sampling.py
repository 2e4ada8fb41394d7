"""Temperature sampling over directions (docs/design.md §2, §5; Arivazhagan et al. 2019, as in the paper).

A direction d with n_d training pairs is drawn with probability p_d ∝ n_d^(1/T): T=1 samples in
proportion to the data, T→∞ uniformly, T=5 (the paper's) upsamples low-resource directions. The trainer
mixes batches with these probabilities; the SentencePiece text is drawn with them too, so the shared
vocabulary does not belong to the high-resource languages alone.
"""

from __future__ import annotations

import random
from typing import Sequence

from pipeline.data.corpus import Pair


def temperature_probs(sizes: dict[str, int], temperature: float) -> dict[str, float]:
    """`{direction: p}` with p ∝ size^(1/T), in the order of `sizes`; directions of size 0 get 0."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not sizes or any(n < 0 for n in sizes.values()) or sum(sizes.values()) == 0:
        raise ValueError(f"need non-negative sizes with a positive total, got {sizes}")
    weights = {d: (n ** (1.0 / temperature) if n > 0 else 0.0) for d, n in sizes.items()}
    total = sum(weights.values())
    return {d: w / total for d, w in weights.items()}


def sample_spm_sentences(train: dict[str, Sequence[Pair]], temperature: float, max_sentences: int,
                         seed: int) -> list[str]:
    """Sentences (both sides of each drawn pair) for SentencePiece training.

    The budget is min(max_sentences, the number of training sentences counting each direction's pairs
    once per side); each direction gets p_d of it, drawn without replacement until its pairs run out,
    then again from a fresh shuffle (the upsampling the temperature asks for).
    """
    probs = temperature_probs({d: len(p) for d, p in train.items()}, temperature)
    budget_pairs = min(max_sentences, sum(2 * len(p) for p in train.values())) // 2
    rng = random.Random(seed)
    sentences: list[str] = []
    for direction, pairs in train.items():
        want = round(probs[direction] * budget_pairs)
        drawn: list[Pair] = []
        while len(drawn) < want and pairs:
            order = list(pairs)
            rng.shuffle(order)
            drawn.extend(order[: want - len(drawn)])
        for pair in drawn:
            sentences.extend((pair.source, pair.target))
    return sentences
