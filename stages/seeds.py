"""Stage seeds: retrain the warm start and seeds.models with each seed of seeds.extra and translate the
test split with them (nothing to do with seeds.extra: [])."""

import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoints folder (models/seeds)")
    p.add_argument("--reports", type=Path, required=True, help="metrics and test translations (reports/seeds)")
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.seeds import train_seeds

    index = train_seeds(params, args.corpus, args.out, args.reports)
    if not index["extra"]:
        print(f"seeds: train.seed {index['main_seed']} only (seeds.extra is empty)")
    for seed, row in index["seeds"].items():
        print(f"seed {seed}: " + ", ".join(f"{m} {row[m]['bleu']:.2f}" for m in index["models"]) + " test BLEU")


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
