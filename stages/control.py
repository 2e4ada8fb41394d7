"""Stage control: the student's equal-steps control, dense_long (the dense baseline trained the student's
extra steps on the references, without the teacher)."""

import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params, model_spec


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--base", type=Path, required=True, help="the dense baseline's checkpoint folder")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args(argv)
    params = load_params(args.params)
    model_spec(params, "dense")  # the control is a dense model: models.dense must exist

    from pipeline.distill import train_control
    from pipeline.roles import CONTROL

    metrics = train_control(params, args.base, args.corpus, args.out, args.reports)
    print(f"{CONTROL}: val_loss {metrics.get('val_loss', float('nan')):.3f}, "
          f"val_bleu {metrics.get('val_bleu_kept_checkpoint', float('nan')):.2f}")


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
