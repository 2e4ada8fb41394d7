"""Stage distill: train the dense student from the teacher (sequence- and/or word-level KD)."""

import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint folder")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--distill-data", type=Path, required=True, help="output of distill_data")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.distill import train_student

    metrics = train_student(params, args.teacher, args.corpus, args.distill_data, args.out,
                            args.reports)
    print(f"student: val_loss {metrics.get('val_loss', float('nan')):.3f}, "
          f"val_bleu {metrics.get('val_bleu_kept_checkpoint', float('nan')):.2f}")


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
