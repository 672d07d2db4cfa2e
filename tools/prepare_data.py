"""`bertjax prepare_data`, run from a checkout: `python tools/prepare_data.py --help` (the code: bertjax/commands/prepare_data.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("prepare_data", sys.argv[1:])
