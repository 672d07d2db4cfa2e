"""`bertjax generate`, run from a checkout: `python tools/generate.py --help` (the code: bertjax/commands/generate.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("generate", sys.argv[1:])
