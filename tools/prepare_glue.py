"""`bertjax prepare_glue`, run from a checkout: `python tools/prepare_glue.py --help` (the code: bertjax/commands/prepare_glue.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("prepare_glue", sys.argv[1:])
