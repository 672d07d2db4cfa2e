"""`bertjax train_tokenizer`, run from a checkout: `python tools/train_tokenizer.py --help` (the code: bertjax/commands/train_tokenizer.py)."""

import sys

from bertjax import cli

if __name__ == "__main__":
    cli.run_command("train_tokenizer", sys.argv[1:])
