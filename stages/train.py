"""Stage train@<name>: train one model spec of params.models on the prepared corpus."""

import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import load_params, model_spec


def _main(argv=None):
    p = parser(__doc__)
    p.add_argument("--model", required=True, help="a key of params.models")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--reports", type=Path, required=True, help="metrics and curves folder")
    p.add_argument("--warmstart", type=Path, default=None, help="output of the warmstart stage")
    args = p.parse_args(argv)
    params = load_params(args.params)
    model_spec(params, args.model)  # an unknown name fails before any work

    from pipeline.train.api import train_model

    metrics = train_model(params, args.model, args.corpus, args.out, args.reports, args.warmstart)
    print(f"{args.model}: val_loss {metrics.get('val_loss', float('nan')):.3f}, "
          f"val_bleu {metrics.get('val_bleu_kept_checkpoint', float('nan')):.2f}, "
          f"{metrics['tokens_per_second']:.0f} tokens/s, {metrics['wall_seconds']:.0f} s")


main = stage_main(_main)

if __name__ == "__main__":
    sys.exit(main())
