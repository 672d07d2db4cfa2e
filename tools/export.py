"""`bertjax export`, run from a checkout: `python tools/export.py --help` (the code: bertjax/commands/export.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("export", sys.argv[1:])
