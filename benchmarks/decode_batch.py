"""Beam-search speed of a trained model against the evaluation's batch budget (`evaluate.decode.batch_tokens`).

Translates the first `--sentences` test sentences of each direction with params.yaml's `evaluate.decode`
(beam size, length penalty, length limits) and every budget, `--repeats` times, and prints the median sentences/s, its ratio to the first budget, and how many translations differ from the
first budget's (padding must not change a translation: any difference is a bug). Needs a run's
`data/corpus/` and `models/<name>/` (after `dvc repro` or `dvc pull`).

    python benchmarks/decode_batch.py                                   # dense, en-de and de-en
    python benchmarks/decode_batch.py --models dense token_moe --budgets 6000 24000 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import load_params  # noqa: E402
from pipeline.data.corpus import load_split  # noqa: E402
from pipeline.data.vocab import Vocab  # noqa: E402
from pipeline.decode import translate  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.extract import load_deployable  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--models-dir", type=Path, default=Path("models"))
    ap.add_argument("--models", nargs="+", default=["dense"])
    ap.add_argument("--directions", nargs="+", default=["en-de", "de-en"])
    ap.add_argument("--budgets", nargs="+", type=int, default=[6000, 12000, 24000, 48000])
    ap.add_argument("--sentences", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if not (args.corpus / "spm.model").is_file():
        raise SystemExit(f"error: {args.corpus / 'spm.model'} not found (run `dvc repro` or `dvc pull` first)")
    if args.sentences < 1 or args.repeats < 1 or min(args.budgets) < 1:
        raise SystemExit("error: --sentences, --repeats and --budgets must be >= 1")
    try:
        decode = load_params(args.params).evaluate.decode
    except PipelineError as e:
        raise SystemExit(f"error: {e}")

    test = load_split(args.corpus, "test")
    vocab = Vocab(args.corpus / "spm.model")
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, beam {decode.beam_size}, "
          f"{args.sentences} sentences per direction, median of {args.repeats}")
    for name in args.models:
        try:
            deployable = load_deployable(args.models_dir / name, device=args.device)
        except PipelineError as e:
            raise SystemExit(f"error: {e}")
        for direction in args.directions:
            if direction not in test:
                raise SystemExit(f"error: {args.corpus / 'test'}: no direction {direction}")
            src, tgt = direction.split("-")
            sources = [p.source for p in test[direction][: args.sentences]]
            model = deployable.model_for(src, tgt).to(args.device).eval()
            first_rate, first_hyps = None, None
            for budget in args.budgets:
                cfg = dataclasses.replace(decode, batch_tokens=budget)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    hyps = translate(model, vocab, sources, src, tgt, cfg, device=args.device)
                    times.append(time.perf_counter() - start)
                rate = len(sources) / statistics.median(times)
                if first_hyps is None:
                    first_rate, first_hyps = rate, hyps
                differ = sum(a != b for a, b in zip(hyps, first_hyps))
                print(f"{name:10s} {direction}  batch_tokens {budget:6d}: {rate:6.1f} sent/s  "
                      f"{rate / first_rate:4.2f}x  translations differing from {args.budgets[0]}: {differ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
