"""`bertjax show_batch`, run from a checkout: `python tools/show_batch.py --help` (the code: bertjax/commands/show_batch.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("show_batch", sys.argv[1:])
