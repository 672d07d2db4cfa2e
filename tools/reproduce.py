"""`bertjax reproduce`, run from a checkout: `python tools/reproduce.py --help` (the code: bertjax/commands/reproduce.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("reproduce", sys.argv[1:])
