"""`bertjax model_info`, run from a checkout: `python tools/model_info.py --help` (the code: bertjax/commands/model_info.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("model_info", sys.argv[1:])
