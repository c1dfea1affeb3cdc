"""``python -m pruning``: the command line (see pruning/cli.py)."""
import sys

from pruning.cli import main

sys.exit(main())
