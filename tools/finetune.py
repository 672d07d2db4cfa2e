"""`bertjax finetune`, run from a checkout: `python tools/finetune.py --help` (the code: bertjax/commands/finetune.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("finetune", sys.argv[1:])
