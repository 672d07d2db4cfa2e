"""The subcommands of `bertjax` (`bertjax.cli.COMMANDS`), one module each: its docstring is its `--help`, its
absl flags are defined at import, and its `main(argv)` imports what the job needs (JAX, the model) when it
runs, so that `--help` and a mistyped flag answer without that cost."""
