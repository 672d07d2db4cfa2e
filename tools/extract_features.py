"""`bertjax extract_features`, run from a checkout: `python tools/extract_features.py --help` (the code: bertjax/commands/extract_features.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("extract_features", sys.argv[1:])
