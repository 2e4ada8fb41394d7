"""DVC stage `evaluate@<model>`: translate the test split with one model and score it (SacreBLEU)."""

from __future__ import annotations

import sys

from pipeline.cli import parser, stage_main
from pipeline.config import load_params


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser("Translate every test direction with one model; write hyps/ and metrics.json.")
    p.add_argument("--model", required=True, help="the model's name (as in evaluate.models)")
    p.add_argument("--model-dir", required=True, help="its checkpoint folder, e.g. models/dense")
    p.add_argument("--corpus", required=True, help="the prepared corpus folder (data/corpus)")
    p.add_argument("--out", required=True, help="output folder, e.g. reports/evaluate/dense")
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.evaluate import evaluate_model

    evaluate_model(args.model, args.model_dir, args.corpus, args.out, params.evaluate,
                   high_resource=params.data.high_resource)


if __name__ == "__main__":
    sys.exit(main())
