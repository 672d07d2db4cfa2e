"""`python -m bertjax` is the `bertjax` command."""

from bertjax import cli

cli.main()
