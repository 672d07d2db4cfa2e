"""`bertjax convert_hf`, run from a checkout: `python tools/convert_hf.py --help` (the code: bertjax/commands/convert_hf.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("convert_hf", sys.argv[1:])
