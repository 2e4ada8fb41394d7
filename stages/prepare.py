"""Stage prepare: clean, split and sample the parallel text; train the shared SentencePiece model."""

from __future__ import annotations

import sys

from pipeline.cli import parser, stage_main
from pipeline.config import load_params
from pipeline.data.prepare import prepare_corpus


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--raw", required=True, help="the fetch stage's folder (data/raw)")
    p.add_argument("--out", required=True, help="the prepared corpus folder (data/corpus)")
    p.add_argument("--stats", required=True, help="statistics JSON (reports/prepare/stats.json)")
    args = p.parse_args(argv)
    params = load_params(args.params)
    prepare_corpus(params.data, args.raw, args.out, args.stats)


if __name__ == "__main__":
    sys.exit(main())
