"""`bertjax pretrain`, run from a checkout: `python tools/pretrain.py --help` (the code: bertjax/commands/pretrain.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("pretrain", sys.argv[1:])
