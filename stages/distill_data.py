"""Stage distill_data: the teacher translates the training sources (sequence-level KD data)."""

import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint folder")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.distill import translate_training_sources

    stats = translate_training_sources(args.teacher, args.corpus, args.out, params.distill.decode,
                                       params.distill.sequence_level)
    pairs = sum(d["pairs"] for d in stats["directions"].values())
    empty = sum(d["empty_kept_reference"] for d in stats["directions"].values())
    print(f"distillation data: {pairs} pairs in {len(stats['directions'])} directions -> {args.out} "
          f"({empty} empty teacher outputs replaced by the reference)")


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
