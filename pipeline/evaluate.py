"""Evaluate one deployable model: translate every test direction, score it with SacreBLEU.

The paper (Kudugunta et al. 2021, Table 1) reports SacreBLEU corpus BLEU per direction and its averages
over all directions, xx→en, en→xx, high- and low-resource directions. `evaluate_model` produces those
numbers for one model, plus chrF, and saves the hypotheses so `pipeline.stats.compare` can bootstrap them.

Scoring choices (all visible in the signatures written next to the scores):
- BLEU: sacrebleu defaults (mixed case, exp smoothing, 4-grams) with tokenizer `13a`, except for a
  target language whose words are not space-separated: `zh` -> `zh`; `ja` -> `ja-mecab` and `ko` ->
  `ko-mecab` when their MeCab packages are installed (`pip install sacrebleu[ja]` / `[ko]`), else
  `char` (character-level BLEU, which needs no extra package; numbers are then not comparable with
  published MeCab-tokenized ones, and the signature says so).
- chrF: sacrebleu's chrF2 defaults (6 character n-gram orders, no word n-grams, beta 2).
- `max_sentences` keeps the first N pairs of each test file, so hypotheses stay aligned with the TSV.

Outputs in `out_dir`: `hyps/<src>-<tgt>.txt` (one hypothesis per line, line i = line i of
`test/<src>-<tgt>.tsv`) and `metrics.json`:
    {"model", "bleu", "chrf",                       # averages over all directions (DVC headline)
     "groups": {group: {"bleu", "chrf", "directions": [...]}},   # GROUPS below; null if empty
     "directions": {"en-de": {"bleu", "chrf", "sentences", "tokenizer", "bleu_signature",
                              "chrf_signature", "bleu_detail": {"precisions", "bp", "sys_len",
                              "ref_len"}, "seconds"}},
     "pivot", "high_resource", "decode": {...}, "max_sentences", "device",
     "wall_seconds", "sentences", "sentences_per_second",
     "hypotheses": {"total", "empty", "most_repeated_line", "most_repeated_count",
                    "degenerate": why these translations are no result, or null}}

Degenerate translations (more than half of them empty, or one line making up more than half of them)
are recorded and warned about, not hidden: an untrained or broken model scores BLEU 0 or near it, and
a comparison against it would look like a result. The report says "no result" for such a model.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

from pipeline.config import EvaluateConfig, to_dict
from pipeline.errors import PipelineError
from pipeline.io import atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

# The averages the paper reports; "avg" is the mean over every direction.
GROUPS = ("avg", "xx_to_pivot", "pivot_to_xx", "high", "low")

_SPECIAL_TOKENIZERS = {"zh": ("zh",), "ja": ("ja-mecab", "char"), "ko": ("ko-mecab", "char")}


# --------------------------------------------------------------------------------------------------
# scoring


@functools.lru_cache(maxsize=None)
def tokenizer_for(tgt_lang: str) -> str:
    """The sacrebleu tokenizer used for BLEU into `tgt_lang` (see the module docstring)."""
    from sacrebleu.metrics.bleu import _get_tokenizer

    for name in _SPECIAL_TOKENIZERS.get(tgt_lang, ("13a",)):
        try:
            _get_tokenizer(name)()  # MeCab tokenizers raise here when their package is missing
            return name
        except (ImportError, RuntimeError, AssertionError):
            log.warning("sacrebleu tokenizer %r unavailable for %s; trying the next", name, tgt_lang)
    raise PipelineError(f"no sacrebleu tokenizer available for target language {tgt_lang!r}")


def bleu_metric(tgt_lang: str):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenizer_for(tgt_lang))


def score_direction(hyps: Sequence[str], refs: Sequence[str], tgt_lang: str) -> dict:
    """Corpus BLEU and chrF of `hyps` against one reference each, with sacrebleu signatures."""
    from sacrebleu.metrics import CHRF

    if len(hyps) != len(refs):
        raise PipelineError(f"{len(hyps)} hypotheses for {len(refs)} references")
    bleu, chrf = bleu_metric(tgt_lang), CHRF()
    b = bleu.corpus_score(list(hyps), [list(refs)])
    c = chrf.corpus_score(list(hyps), [list(refs)])
    return {
        "bleu": b.score,
        "chrf": c.score,
        "sentences": len(hyps),
        "tokenizer": tokenizer_for(tgt_lang),
        "bleu_signature": bleu.get_signature().format(),
        "chrf_signature": chrf.get_signature().format(),
        "bleu_detail": {"precisions": b.precisions, "bp": b.bp, "sys_len": b.sys_len,
                        "ref_len": b.ref_len},
    }


def direction_groups(directions: Sequence[str], pivot: str, high_resource: Sequence[str]
                     ) -> dict[str, list[str]]:
    """Directions of each of GROUPS. High-resource: the direction's non-pivot language is high."""

    def other(direction: str) -> str:
        src, tgt = direction.split("-")
        return tgt if src == pivot else src

    return {
        "avg": list(directions),
        "xx_to_pivot": [d for d in directions if d.split("-")[1] == pivot],
        "pivot_to_xx": [d for d in directions if d.split("-")[0] == pivot],
        "high": [d for d in directions if other(d) in high_resource],
        "low": [d for d in directions if other(d) not in high_resource],
    }


def aggregate(per_direction: dict[str, dict], groups: dict[str, list[str]]) -> dict:
    """Unweighted means of per-direction BLEU and chrF over each group (as the paper averages)."""
    out = {}
    for name, members in groups.items():
        if not members:
            out[name] = None
            continue
        out[name] = {
            "bleu": sum(per_direction[d]["bleu"] for d in members) / len(members),
            "chrf": sum(per_direction[d]["chrf"] for d in members) / len(members),
            "directions": list(members),
        }
    return out


# --------------------------------------------------------------------------------------------------
# hypothesis files


DEGENERATE_SHARE = 0.5  # more than this share of empty translations, or of one repeated line


def hypotheses_health(hyps: Sequence[str]) -> dict:
    """How many translations are empty, the most repeated one, and why they are degenerate (or None)."""
    from collections import Counter

    total = len(hyps)
    empty = sum(1 for h in hyps if not h.strip())
    line, repeated = (Counter(h for h in hyps if h.strip()).most_common(1) or [("", 0)])[0]
    why = None
    if total and empty / total > DEGENERATE_SHARE:
        why = f"{empty:,} of {total:,} test translations are empty"
    elif total and repeated / total > DEGENERATE_SHARE:
        why = f"{repeated:,} of {total:,} test translations are the same line ({line[:40]!r})"
    return {"total": total, "empty": empty, "most_repeated_line": line, "most_repeated_count": repeated,
            "degenerate": why}


def write_lines(path: Path, lines: Sequence[str]) -> None:
    # A newline inside a hypothesis would shift every later line against the references.
    clean = [line.replace("\r", " ").replace("\n", " ") for line in lines]
    path.write_text("".join(line + "\n" for line in clean), encoding="utf-8")


def read_lines(path: Path) -> list[str]:
    """Lines of a hypothesis file (split on '\\n' only, unlike str.splitlines)."""
    if not path.exists():
        raise PipelineError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


# --------------------------------------------------------------------------------------------------
# the stage's work


def read_corpus_meta(corpus_dir: Path) -> dict:
    meta = read_json(Path(corpus_dir) / "meta.json")
    for key in ("directions", "pivot"):
        if key not in meta:
            raise PipelineError(f"{Path(corpus_dir) / 'meta.json'}: missing key {key!r}")
    return meta


def _check_inputs(model_dir: Path, corpus_dir: Path) -> dict:
    if not model_dir.is_dir():
        raise PipelineError(f"{model_dir}: model folder not found (run the stage that makes it)")
    for name in ("meta.json", "spm.model"):
        if not (corpus_dir / name).exists():
            raise PipelineError(f"{corpus_dir / name}: file not found (run `dvc repro prepare`)")
    meta = read_corpus_meta(corpus_dir)
    for direction in meta["directions"]:
        path = corpus_dir / "test" / f"{direction}.tsv"
        if not path.exists():
            raise PipelineError(f"{path}: test file not found")
    return meta


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate_model(name: str, model_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path,
                   cfg: EvaluateConfig, high_resource: Optional[Sequence[str]] = None) -> dict:
    """Translate every test direction with `cfg.decode`, score it, write hyps/ and metrics.json.

    `high_resource` is used only when the corpus's meta.json does not say which languages are high.
    """
    model_dir, corpus_dir = Path(model_dir), Path(corpus_dir)
    meta = _check_inputs(model_dir, corpus_dir)

    import torch
    from tqdm import tqdm

    from pipeline.data.corpus import load_split
    from pipeline.data.vocab import Vocab
    from pipeline.decode import translate
    from pipeline.extract import load_deployable

    high = meta.get("high_resource", list(high_resource or []))
    directions, pivot = meta["directions"], meta["pivot"]
    test = load_split(corpus_dir, "test")
    vocab = Vocab(corpus_dir / "spm.model")
    device = _device()
    deployable = load_deployable(model_dir, device=device)

    start = time.perf_counter()
    per_direction, total, everything = {}, 0, []
    with atomic_dir(out_dir) as tmp:
        (tmp / "hyps").mkdir()
        for direction in tqdm(directions, desc=f"evaluate {name}", unit="direction"):
            src, tgt = direction.split("-")
            if direction not in test:
                raise PipelineError(f"{corpus_dir / 'test'}: no test pairs for {direction}")
            pairs = test[direction][: cfg.max_sentences]  # None keeps them all
            if not pairs:
                raise PipelineError(f"{corpus_dir / 'test' / (direction + '.tsv')}: no pairs")
            t0 = time.perf_counter()
            model = deployable.model_for(src, tgt).to(device).eval()
            with torch.inference_mode():
                hyps = translate(model, vocab, [p.source for p in pairs], src, tgt, cfg.decode,
                                 device=device)
            write_lines(tmp / "hyps" / f"{direction}.txt", hyps)
            everything += hyps
            per_direction[direction] = score_direction(hyps, [p.target for p in pairs], tgt)
            per_direction[direction]["seconds"] = time.perf_counter() - t0
            total += len(pairs)
        wall = time.perf_counter() - start
        groups = aggregate(per_direction, direction_groups(directions, pivot, high))
        metrics = {
            "model": name,
            "bleu": groups["avg"]["bleu"],
            "chrf": groups["avg"]["chrf"],
            "groups": groups,
            "directions": per_direction,
            "pivot": pivot,
            "high_resource": list(high),
            "decode": to_dict(cfg.decode),
            "max_sentences": cfg.max_sentences,
            "device": str(device),
            "wall_seconds": wall,
            "sentences": total,
            "sentences_per_second": total / wall if wall > 0 else None,
            "hypotheses": hypotheses_health(everything),
        }
        write_json(tmp / "metrics.json", metrics)
    log.info("%s: average BLEU %.2f over %d directions (%.0f s)", name, metrics["bleu"],
             len(directions), wall)
    if metrics["hypotheses"]["degenerate"]:
        log.warning("warning: %s: %s: no result (the report says so)", name, metrics["hypotheses"]["degenerate"])
    return metrics
