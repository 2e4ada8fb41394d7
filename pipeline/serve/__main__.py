"""`python -m pipeline.serve ...`: the `taskmoe` command without the console script."""

import sys

from pipeline.serve.cli import main

sys.exit(main())
