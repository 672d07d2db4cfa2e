"""`bertjax predict`, run from a checkout: `python tools/predict.py --help` (the code: bertjax/commands/predict.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("predict", sys.argv[1:])
