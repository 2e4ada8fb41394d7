"""DVC stage `compare`: paired bootstrap of every evaluated system; fraction of gains preserved."""

from __future__ import annotations

import logging
import sys

from pipeline.cli import parser, stage_main
from pipeline.config import load_params
from pipeline.io import write_json

log = logging.getLogger(__name__)


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser("Compare the evaluated systems with paired bootstrap resampling; write compare.json.")
    p.add_argument("--evaluations", required=True, help="folder of <model>/hyps (reports/evaluate)")
    p.add_argument("--corpus", required=True, help="the prepared corpus folder (data/corpus)")
    p.add_argument("--out", required=True, help="the JSON to write (reports/compare.json)")
    p.add_argument("--seeds", default=None, help="the seeds stage's reports folder (reports/seeds), optional")
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.roles import Roles
    from pipeline.stats.compare import run_compare

    roles = Roles.from_params(params)
    result = run_compare(args.evaluations, args.corpus, params.evaluate.models, params.compare, roles,
                         high_resource=params.data.high_resource, seeds_dir=args.seeds,
                         main_seed=params.train.seed)
    write_json(args.out, result)
    for name in (roles.teacher, roles.task_moe):
        gain = result["vs_baseline"].get(name, {}).get("groups", {}).get("avg")
        if gain:
            log.info("%s - %s: %+.2f BLEU [%+.2f, %+.2f]", name, roles.baseline, gain["diff"], gain["low"],
                     gain["high"])


if __name__ == "__main__":
    sys.exit(main())
