"""What every stage script shares: argument parsing and the one-line error contract."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import Callable

from pipeline.errors import PipelineError


def stage_main(func: Callable[[argparse.Namespace], None]) -> Callable[[list[str] | None], int]:
    """Wrap a stage's `main(args)`: a `PipelineError` becomes `error: <message>` and exit status 2."""

    @functools.wraps(func)
    def wrapper(argv: list[str] | None = None) -> int:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        # Lightning's package logger prints through a handler of its own: not through ours as well
        logging.getLogger("lightning").propagate = False
        os.environ.setdefault("DVC_NO_ANALYTICS", "1")
        try:
            func(argv)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        return 0

    return wrapper


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    return p
