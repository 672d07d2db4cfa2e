"""What every `tools/` program shares: absl's `app.run`, with bad flags, config files, config overrides and
bad input (missing files, malformed data, mismatched settings) reported as one message that names the flag,
file or key, instead of a traceback. `--traceback` shows the traceback of such an error as well. A run stopped
by a signal (after writing its checkpoint) exits with `faults.PREEMPTED_EXIT_CODE` (75)."""

import pathlib
import resource
import sys
from collections.abc import Callable

from absl import app, flags, logging

from bertjax import faults


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

# The errors bertjax raises for input a user can fix, and faults it detected and explains; anything else keeps
# its traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, KeyError, ValueError, faults.TrainingFault)


def run(main: Callable[[list[str]], None]) -> None:
    def guarded(argv):
        if not flags.FLAGS["verbosity"].present:  # library INFO logs would break up the progress bar
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except faults.Preempted as stop:  # a checkpoint is written: the same command resumes
            print(f"{argv[0]}: {stop}", file=sys.stderr)
            sys.exit(faults.PREEMPTED_EXIT_CODE)
        except USER_ERRORS as error:
            if _TRACEBACK.value:
                raise
            print(f"{argv[0]}: error: {_message(error)}", file=sys.stderr)
            sys.exit(1)

    app.run(guarded, flags_parser=_parse_flags)


def peak_memory_mb() -> float:
    """Peak resident memory of this process and the largest of its finished children, in MB. Linux's
    VmHWM, unlike ru_maxrss, does not carry over the memory of the parent that started this program."""
    try:
        status = pathlib.Path("/proc/self/status").read_text()
        own = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
