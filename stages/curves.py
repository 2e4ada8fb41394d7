"""DVC stage `curves`: the learning-curve study (BLEU of dense, token-MoE, task-MoE at every validation)."""

from __future__ import annotations

import logging
import sys

from pipeline.cli import parser, stage_main
from pipeline.config import load_params
from pipeline.io import write_json

log = logging.getLogger(__name__)


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser("Score every model's validation translations at every step; write curves.json.")
    p.add_argument("--train-reports", required=True, help="folder of <model>/val_hyps (reports/train)")
    p.add_argument("--corpus", required=True, help="the prepared corpus folder (data/corpus)")
    p.add_argument("--out", required=True, help="the JSON to write (reports/curves.json)")
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.roles import Roles
    from pipeline.stats.curves import learning_curves

    roles = Roles.from_params(params)
    result = learning_curves(args.train_reports, args.corpus, list(roles.trained), params.compare,
                             roles=roles)
    write_json(args.out, result)
    for model, gains in result["gain_vs_dense"].items():
        last = gains[-1]
        log.info("%s - dense at step %d: %+.2f BLEU [%+.2f, %+.2f]; first significant step: %s", model,
                 last["step"], last["diff"], last["low"], last["high"],
                 result["first_significant_step"][model])
    for model, leads in ((result.get("loss") or {}).get("lead_vs_dense") or {}).items():
        last = leads[-1]
        log.info("%s: validation-loss lead over dense (dense - model) %+.4f nats/token at step %d "
                 "[%+.4f, %+.4f]", model, last["diff"], last["step"], last["low"], last["high"])


if __name__ == "__main__":
    sys.exit(main())
