"""What every `tools/` program shares: absl's `app.run`, with bad flags, config files, config overrides and
bad input (missing files, malformed data, mismatched settings) reported as one message that names the flag,
file or key, instead of a traceback. `--traceback` shows the traceback of such an error as well."""

import sys
from collections.abc import Callable

from absl import app, flags


def _message(error: BaseException) -> str:
    # config_flags wraps a KeyError in an AttributeError; KeyError's str() adds quotes: unwrap both.
    while isinstance(error, KeyError | AttributeError) and error.args:
        error = error.args[0] if isinstance(error.args[0], BaseException) else error.args[0]
        if isinstance(error, str):
            return error
    message = str(error)
    if "Traceback" in message:  # config_flags quotes the config file's traceback: keep its verdict
        lines = [line for line in message.splitlines() if line.strip()]
        message = f"{lines[0]} {lines[-1]}"
    return message


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        remaining = flags.FLAGS(argv)
        for name in flags.FLAGS:  # a config file that failed to load raises on first use: use it now
            getattr(flags.FLAGS[name].value, "keys", None)
        return remaining
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as error:
        print(f"{argv[0]}: error: {_message(error)}\nRun with --help for the flags.", file=sys.stderr)
        sys.exit(2)


_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the full traceback of an input or config error.")

# The errors bertjax raises for input a user can fix; anything else keeps its traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, KeyError, ValueError)


def run(main: Callable[[list[str]], None]) -> None:
    def guarded(argv):
        try:
            return main(argv)
        except USER_ERRORS as error:
            if _TRACEBACK.value:
                raise
            print(f"{argv[0]}: error: {_message(error)}", file=sys.stderr)
            sys.exit(1)

    app.run(guarded, flags_parser=_parse_flags)
