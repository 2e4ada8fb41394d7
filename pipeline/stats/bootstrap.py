"""Paired bootstrap over test sentences (Koehn 2004) and the interval helpers every analysis shares.

- Per direction, the resample indices are drawn once (seeded by `compare.seed` and the direction's name)
  and reused for every system, so each resample compares all systems on the same sentences; the
  validation-loss curves (`pipeline.stats.loss_curves`) reuse the same indices.
- Corpus BLEU of a resample is computed from summed per-sentence sufficient statistics with sacrebleu's
  own formula, so the full sample reproduces `BLEU.corpus_score` exactly.
- Intervals are percentile intervals of the resampled values. The p-value of a difference is sacrebleu's
  paired-bs statistic (two-sided), with ties counted as extreme; its floor is 1 / (resamples + 1).
- Over training seeds, a Student's t interval (`t_quantile`) of the per-seed differences.
"""

from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np

from pipeline.evaluate import bleu_metric




def sentence_stats(metric, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-sentence BLEU sufficient statistics, (N, 2 + 2 * max_order): hyp len, ref len,
    matches per n-gram order, totals per order (sacrebleu's layout)."""
    return np.asarray(metric._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.int64)


def bleu_from_stats(metric, summed: np.ndarray) -> float:
    """Corpus BLEU from summed statistics, by sacrebleu's own formula."""
    return metric._compute_score_from_stats([int(x) for x in summed]).score


def resample_indices(n: int, resamples: int, seed: int, direction: str) -> np.ndarray:
    """(R, n) sentence indices drawn with replacement; the same for every system of `direction`."""
    rng = np.random.default_rng([seed, zlib.crc32(direction.encode("utf-8"))])
    return rng.integers(0, n, size=(resamples, n))


def counts_from_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """(R, n) how often each sentence occurs in each resample, so resampled sums are a matmul."""
    resamples = indices.shape[0]
    flat = (indices + np.arange(resamples)[:, None] * n).ravel()
    return np.bincount(flat, minlength=resamples * n).reshape(resamples, n)


def bootstrap_bleu(metric, stats: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Corpus BLEU of each resample: (R,)."""
    sums = counts @ stats  # (R, n) @ (n, K) -> (R, K)
    return np.array([bleu_from_stats(metric, row) for row in sums])


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of the finite values."""
    values = values[np.isfinite(values)]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def paired_p_values(diff_resampled: np.ndarray, diff: float) -> tuple[float, float]:
    """(two-sided p as sacrebleu's paired-bs, Koehn's one-sided share of resamples with diff <= 0)."""
    magnitude = np.abs(diff_resampled)
    centred = magnitude - magnitude.mean()
    # `>=` where sacrebleu has `>`: ties count as extreme, so a system against itself gets p = 1
    p_two_sided = (np.sum(centred >= abs(diff)) + 1) / (len(diff_resampled) + 1)
    return float(p_two_sided), float(np.mean(diff_resampled <= 0))


class Bootstrap:
    """Actual and resampled BLEU of every system on every direction."""

    def __init__(self, hyps: dict[str, dict[str, list[str]]], refs: dict[str, list[str]],
                 resamples: int, seed: int):
        self.directions = list(refs)
        self.actual: dict[str, dict[str, float]] = {system: {} for system in hyps}
        self.resampled: dict[str, dict[str, np.ndarray]] = {system: {} for system in hyps}
        self.signatures: dict[str, str] = {}
        for direction, references in refs.items():
            metric = bleu_metric(direction.split("-")[1])
            n = len(references)
            counts = counts_from_indices(resample_indices(n, resamples, seed, direction), n)
            for system, by_direction in hyps.items():
                stats = sentence_stats(metric, by_direction[direction], references)
                self.actual[system][direction] = bleu_from_stats(metric, stats.sum(axis=0))
                self.resampled[system][direction] = bootstrap_bleu(metric, stats, counts)
            self.signatures[direction] = metric.get_signature().format()

    def score(self, system: str, members: Sequence[str]) -> tuple[float, np.ndarray]:
        """Mean BLEU over `members` directions: the point estimate and its (R,) resamples."""
        point = float(np.mean([self.actual[system][d] for d in members]))
        return point, np.mean([self.resampled[system][d] for d in members], axis=0)




def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student-t critical value t: P(|T| <= t) = confidence for `df` degrees of freedom.

    P(|T| <= t) by the exact finite series for integer df (Abramowitz & Stegun 26.7.3-4), then bisection.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")

    def inside(t: float) -> float:
        theta = math.atan(t / math.sqrt(df))
        c2, total, term = math.cos(theta) ** 2, 1.0, 1.0
        if df % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
            for k in range(1, (df - 1) // 2):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
            tail = math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0
            return 2 / math.pi * (theta + tail)
        for k in range(1, df // 2):  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total

    low, high = 0.0, 1.0
    while inside(high) < confidence:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if inside(mid) < confidence else (low, mid)
    return high
