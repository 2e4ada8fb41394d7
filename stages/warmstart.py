"""Stage warmstart: the shared dense warm start for sparse upcycling (a marker only when steps = 0)."""

import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.train.api import train_warmstart

    metrics = train_warmstart(params, args.corpus, args.out, args.reports)
    print(f"warm start: {metrics['steps']} dense steps -> {args.out}")


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
