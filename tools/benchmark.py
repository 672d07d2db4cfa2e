"""`bertjax benchmark`, run from a checkout: `python tools/benchmark.py --help` (the code: bertjax/commands/benchmark.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("benchmark", sys.argv[1:])
