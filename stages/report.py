"""DVC stage `report`: reports/report.md, reports/plots/ and the headline metrics (reports/metrics.json)."""

from __future__ import annotations

import logging
import sys

from pipeline.cli import parser, stage_main
from pipeline.config import load_params, to_dict

log = logging.getLogger(__name__)


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser("Write the Markdown report and its figures.")
    p.add_argument("--reports", required=True, help="the reports folder (reports)")
    p.add_argument("--models-dir", required=True, help="the models folder (models)")
    p.add_argument("--corpus", required=True, help="the prepared corpus folder (data/corpus)")
    p.add_argument("--out", required=True, help="the Markdown file to write (reports/report.md)")
    p.add_argument("--plots", required=True, help="the figures folder (reports/plots)")
    p.add_argument("--lock", default="dvc.lock", help="dvc.lock, for data and checkpoint hashes")
    p.add_argument("--metrics", default=None, help="the headline numbers to write (reports/metrics.json)")
    args = p.parse_args(argv)
    params = load_params(args.params)

    from pipeline.report.document import write_report
    from pipeline.report.provenance import code_commit

    write_report(args.reports, args.models_dir, args.corpus, args.out, args.plots,
                 commit=code_commit(), params=to_dict(params), lock_path=args.lock,
                 metrics_path=args.metrics)
    log.info("wrote %s and %s/", args.out, args.plots)


if __name__ == "__main__":
    sys.exit(main())
