"""DVC stage `config`: check the settings before any other stage runs, and write the resolved record.

It merges params.yaml with its profile, validates both, refuses an edit of params.yaml that the profile
shadows (it would change nothing), warns once about the keys the profile overrides, and writes
`reports/params.yaml`: every setting a stage runs with. The other stages depend on their sections of that
file, so a bad setting stops `dvc repro` here, before any stage's outputs are removed, and a stage reruns
only when its own settings change.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipeline.cli import parser, stage_main
from pipeline.config import resolve
from pipeline.io import atomic_file

log = logging.getLogger(__name__)


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the resolved settings (reports/params.yaml)")
    args = p.parse_args(argv)
    import yaml

    out = Path(args.out)
    previous = None
    if out.exists():
        try:
            previous = yaml.safe_load(out.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            previous = None  # rewritten below
    record, warnings = resolve(args.params, previous=previous if isinstance(previous, dict) else None)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    with atomic_file(out) as handle:
        handle.write(f"# {record['_resolved']['note']}\n")
        yaml.safe_dump(record, handle, sort_keys=False, allow_unicode=True)
    log.info("config: profile %s, settings checked, %s written", record["profile"], out)


if __name__ == "__main__":
    sys.exit(main())
