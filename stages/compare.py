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

    from pipeline.compare import run_compare

    result = run_compare(args.evaluations, args.corpus, params.evaluate.models, params.compare,
                         high_resource=params.data.high_resource, seeds_dir=args.seeds,
                         main_seed=params.train.seed)
    write_json(args.out, result)
    for key in ("teacher_gain", "fraction_student_vs_teacher", "fraction_student_vs_task_moe"):
        log.info("%s: %s", key, result.get(key))


if __name__ == "__main__":
    sys.exit(main())
