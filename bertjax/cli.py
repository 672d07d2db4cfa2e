"""The `bertjax` command, and what every one of its subcommands shares.

    bertjax pretrain --config bert_tiny --workdir runs/tiny --config.data.prepared_dir=data/tiny
    bertjax config show bert_tiny            # every key, its value, type and meaning

One subcommand per job, each a module of `bertjax.commands` that defines its absl flags and a `main(argv)`;
`tools/NAME.py` runs the same as `bertjax NAME`. A subcommand's module imports only absl at the top, so
`--help` answers at once; JAX and the rest are imported when the job runs.

What the subcommands share: `--help` (exit 0), `--config NAME|PATH[:arg]` with `--config.KEY=VALUE` overrides
(`bertjax.configs`), bad flags, configs and input reported as one line that names the flag, file or key
(`--traceback` shows the traceback too), and exit 75 (`faults.PREEMPTED_EXIT_CODE`) for a run stopped by a
signal after writing its checkpoint.
"""

import importlib
import logging as std_logging
import os
import pathlib
import re
import resource
import signal
import sys
import threading
from collections.abc import Callable

from absl import app, flags, logging

# name: what it does. The modules are imported only when their subcommand runs.
COMMANDS = {
    "train_tokenizer": "train a SentencePiece or WordPiece tokenizer with BERT's special tokens",
    "prepare_data": "tokenize a corpus into shards for pretraining",
    "show_batch": "print pretraining examples as the model sees them",
    "pretrain": "pretrain a model (masked LM + sentence task, or a language model)",
    "finetune": "fine-tune on GLUE, SQuAD, NER, SWAG or your own labelled files",
    "predict": "predictions of a fine-tuned model on raw text",
    "extract_features": "hidden states of chosen layers, ELMo-style",
    "export": "write a checkpoint as an HF folder, or as bertjax's parameter file",
    "convert_hf": "convert an HF BERT folder (or cached Hub id) into a bertjax run",
    "generate": "sample text from a causal language model",
    "benchmark": "time the compiled pretraining step: throughput, FLOPs, MFU",
    "model_info": "parameter counts, initial loss and step time of a config's model",
    "prepare_glue": "prepare GLUE's files as TFDS datasets",
    "reproduce": "the experiments behind BERT's objectives, on the built-in corpus",
    "config": "list the shipped configs, or show a config's keys with values, types and meanings",
}

# The errors bertjax raises for input a user can fix; anything else keeps its traceback. `faults.TrainingFault`
# (a fault the loop detected and explains) counts too.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, KeyError, ValueError)
_HELP = ("-h", "-help", "--help", "-?", "--helpshort", "--helpfull")
# Flags renamed when the tools took one vocabulary (README, "One vocabulary of flags"): what to write instead.
RENAMED = {"hf_dir": "--checkpoint (convert_hf reads it) or --output_dir (export writes it)",
           "params_dir": "--output_dir with --format params", "output": "--output_dir",
           "seq_length": "--max_seq_length", "data_dir": "--output_dir (prepare_glue)",
           "finetune_seq_length": "--finetune_max_seq_length", "workdir": "--checkpoint (generate)"}

invocation: list[str] = []  # the running subcommand as typed: ["bertjax NAME", *its arguments]

_PREEMPTED_EXIT_CODE = 75  # faults.PREEMPTED_EXIT_CODE (sysexits.h's EX_TEMPFAIL); faults imports JAX
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the full traceback of an input or config error.")


class ConfigHolder:
    """`--config`: its `.value` is the loaded config, with the `--config.KEY=VALUE` overrides applied."""

    def __init__(self, name: str, training: bool):
        self.name, self.training = name, training
        self.overrides: list[str] = []
        self._value = None

    @property
    def value(self):
        if self._value is None:
            raise RuntimeError(f"--{self.name} is read before the flags are parsed.")
        return self._value

    def load(self) -> None:
        from bertjax import configs

        spec = flags.FLAGS[self.name].value
        if spec is None:
            return  # absl reports a required flag left out
        config = configs.load(spec, self.overrides)
        log_format = flags.FLAGS["log_format"].value if self.training else None
        if log_format:
            config.train.log_format = log_format
        self._value = config


_CONFIGS: list[ConfigHolder] = []


def DEFINE_config(name: str = "config", *, training: bool = False, required: bool = True) -> ConfigHolder:  # noqa: N802
    """`--NAME`: a shipped config by name or a config file by path, `[:arg]`, with `--NAME.KEY=VALUE`
    overrides. `training`: also `--log_format`, a shorthand for `train.log_format`."""
    from bertjax import configs

    module = _absl_module(sys._getframe(1).f_globals["__name__"])  # its --help lists the flags it defines
    flags.DEFINE_string(name, None, f"A config: a shipped one by name ({', '.join(configs.names())}) or a file by "
                        f"path, with an optional :arg for its get_config(arg). Override a key with --{name}.KEY=VALUE; "
                        f"`bertjax config show NAME` lists the keys.", required=required, module_name=module)
    if training:
        flags.DEFINE_enum("log_format", None, ["auto", "bar", "plain"],
                          "Sets train.log_format: a progress bar on a terminal and plain lines otherwise (auto), "
                          "or always one of them.", module_name=module)
    holder = ConfigHolder(name, training)
    _CONFIGS.append(holder)
    return holder


def _absl_module(name: str) -> str:
    return sys.argv[0] if name == "__main__" else name  # absl files a script's flags under its path


def _take_overrides(argv: list[str]) -> list[str]:
    """Remove `--config.KEY=VALUE`, `--config.KEY VALUE`, `--config.KEY` (true) and `--noconfig.KEY` (false)
    from argv, into each config holder's overrides; return the rest for absl."""
    rest, index = [], 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest.extend(argv[index:])
            break
        holder, match = next(((holder, match) for holder in _CONFIGS
                              if (match := re.match(rf"^--?(no)?{re.escape(holder.name)}\.(.*)$", arg))),
                             (None, None))
        if holder is None:
            rest.append(arg)
        else:
            negated, body = match.groups()
            if negated:
                holder.overrides.append(f"{body}=false")
            elif "=" in body:
                holder.overrides.append(body)
            elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                index += 1
                holder.overrides.append(f"{body}={argv[index]}")
            else:  # a bare --config.data.packing turns a boolean on
                holder.overrides.append(f"{body}=true")
        index += 1
    return rest


def _message(error: BaseException) -> str:
    """The whole message of an error; a KeyError of the project's says what is missing and keeps its words
    (str() would add quotes), a bare one (a dict's missing key) is named as such."""
    if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str):
        key = error.args[0]
        if " " in key:
            return key
        return f"the key {key!r} is missing from the input (run with --traceback to see where it was read)"
    return str(error)


def _help(argv: list[str], module_name: str, doc: str | None) -> str:
    """The subcommand's docstring and its flags; --helpfull adds absl's own."""
    lines = [f"usage: {argv[0]} [flags]", "", (doc or "").strip(), "", "flags:",
             flags.FLAGS.module_help(module_name) or "  (none)", "", "shared flags:", flags.FLAGS.module_help(__name__)]
    if "--helpfull" in argv:
        lines += ["", "all flags:", flags.FLAGS.get_help()]
    return "\n".join(lines)


def _parser(module_name: str, doc: str | None):
    def parse(argv: list[str]) -> list[str]:
        if any(arg in _HELP for arg in argv[1:argv.index("--") if "--" in argv else None]):
            print(_help(argv, module_name, doc))
            sys.exit(0)
        try:
            remaining = flags.FLAGS(_take_overrides(argv))
            for holder in _CONFIGS:
                if holder.overrides and flags.FLAGS[holder.name].value is None:
                    raise flags.Error(f"--{holder.name}.{holder.overrides[0]} is given without --{holder.name}.")
                holder.load()
            return remaining
        except (flags.Error, *USER_ERRORS, TypeError, OSError) as error:
            if flags.FLAGS.is_parsed() and _TRACEBACK.value:
                raise
            message = _message(error)
            unknown = isinstance(error, flags.UnrecognizedFlagError)
            renamed = RENAMED.get(getattr(error, "flagname", None)) if unknown else None
            if renamed:  # absl's nearest-name guess would mislead here
                message = f"{message.split('. Did you mean')[0]}: it is now {renamed}."
            print(f"{argv[0]}: error: {message}\nRun with --help for the flags.", file=sys.stderr)
            sys.exit(2)
    return parse


class _LibraryLinesOnly(std_logging.Filter):
    """orbax logs the failure of its background writers with whole tracebacks (some 300 lines for a full
    disk; asyncio logs those of its tasks), and a damaged file with its TensorStore spec (40 lines), before
    bertjax reports the same fault in one line that says what to do. Their records keep their first line;
    asyncio's "exception was never retrieved" of the failed write's tasks, logged at exit, are dropped."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.name == "asyncio" and "exception was never retrieved" in str(record.msg):
            return False
        library = record.name == "asyncio" or "/orbax/" in record.pathname.replace("\\", "/")  # orbax's tasks
        if record.levelno >= std_logging.WARNING and library:
            lines = record.getMessage().splitlines() or [""]
            cut = len(lines) > 1 or record.exc_info is not None
            record.msg, record.args = lines[0] + (" [...]" if cut else ""), None
            record.exc_info = record.exc_text = None
        return True


def _drop_library_unraisables(default_hook: Callable) -> Callable:
    """A `sys.unraisablehook` that drops what orbax's asynchronous reads and writes leave behind when one fails,
    a fault bertjax reports in one line itself: TensorStore's callbacks into the asyncio loop of a failed write
    (a full disk), which come after orbax closed the loop, each a bare `RuntimeError: Event loop is closed`
    traceback (some 100 of them); and the errors of orbax's other read coroutines of a damaged checkpoint,
    never awaited once the first failed, each a traceback quoting TensorStore's spec (some 40 lines). Every
    other unraisable error goes to `default_hook`."""

    def hook(unraisable) -> None:
        error = unraisable.exc_value
        closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
        code = getattr(unraisable.object, "cr_code", None)
        orbax_coroutine = code is not None and "/orbax/" in code.co_filename.replace("\\", "/")
        if not (closed_loop or orbax_coroutine):
            default_hook(unraisable)

    return hook


def _user_error(error: BaseException) -> bool:
    faults = sys.modules.get("bertjax.faults")  # not imported: the error cannot be one of its faults
    return isinstance(error, USER_ERRORS) or (faults is not None and isinstance(error, faults.TrainingFault))


def _exit_on_early_sigterm(name: str) -> None:
    """A training command stopped by SIGTERM before its train loop installs its own handler (while it imports,
    reads its data or compiles) has nothing to save: it exits at once with the status that says "run the same
    command again" (faults.PREEMPTED_EXIT_CODE), not killed by the signal. The loop's handler replaces this one
    while it runs (and checkpoints before it stops); after it, a stop leaves only whole files (bertjax.files
    writes atomically) and a rerun of the finished run does the rest."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return

    def handler(signum, frame):
        print(f"{name}: SIGTERM before training began: nothing to save. Run the same command again.", file=sys.stderr)
        sys.stderr.flush()
        os._exit(_PREEMPTED_EXIT_CODE)  # an exception raised here can land in a library's callback and be lost

    signal.signal(signal.SIGTERM, handler)


def run(main: Callable[[list[str]], None], argv: list[str] | None = None, *, module_name: str = "__main__",
        doc: str | None = None) -> None:
    """Parse the flags of `argv` and run `main`, with bertjax's help, errors and exit codes."""
    argv = list(sys.argv if argv is None else argv)
    invocation[:] = argv
    if any(holder.training for holder in _CONFIGS):
        _exit_on_early_sigterm(argv[0])

    def guarded(remaining):
        if not flags.FLAGS["verbosity"].present:  # library INFO logs would break up the progress bar
            logging.set_verbosity(logging.WARNING)
        if not _TRACEBACK.value:
            logging.get_absl_handler().addFilter(_LibraryLinesOnly())
            sys.unraisablehook = _drop_library_unraisables(sys.unraisablehook)
        try:
            return main(remaining)
        except Exception as error:
            faults = sys.modules.get("bertjax.faults")
            if faults is not None and isinstance(error, faults.Preempted):  # a checkpoint is written: rerun
                print(f"{argv[0]}: {error}", file=sys.stderr)
                sys.exit(faults.PREEMPTED_EXIT_CODE)
            if not _user_error(error) or _TRACEBACK.value:
                raise
            print(f"{argv[0]}: error: {_message(error)}", file=sys.stderr)
            sys.exit(1)

    app.run(guarded, argv=argv, flags_parser=_parser(_absl_module(module_name), doc))


def run_command(name: str, args: list[str]) -> None:
    """Run subcommand `name` with its arguments (`bertjax NAME ARGS...`, `python tools/NAME.py ARGS...`)."""
    module = importlib.import_module(f"bertjax.commands.{name}")
    run(module.main, [f"bertjax {name}", *args], module_name=module.__name__, doc=module.__doc__)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {what}" for name, what in COMMANDS.items())
    return (f"usage: bertjax COMMAND [flags]   (bertjax COMMAND --help: its flags)\n\n"
            f"Pretrain and fine-tune BERT-style encoders in JAX.\n\ncommands:\n{rows}\n")


def main(argv: list[str] | None = None) -> None:
    """The `bertjax` console script."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in _HELP:
        print(_usage(), file=sys.stdout if len(argv) >= 2 else sys.stderr)
        sys.exit(0 if len(argv) >= 2 else 2)
    if argv[1] == "--version":
        from importlib import metadata
        print(f"bertjax {metadata.version('bertjax')}")
        sys.exit(0)
    name = argv[1].replace("-", "_")
    if name not in COMMANDS:
        import difflib
        close = difflib.get_close_matches(name, list(COMMANDS), n=2)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        print(f"bertjax: unknown command {argv[1]!r}.{hint} `bertjax --help` lists them.", file=sys.stderr)
        sys.exit(2)
    run_command(name, argv[2:])


def peak_memory_mb() -> float:
    """Peak resident memory of this process and the largest of its finished children, in MB. Linux's
    VmHWM, unlike ru_maxrss, does not carry over the memory of the parent that started this program."""
    try:
        status = pathlib.Path("/proc/self/status").read_text()
        own = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
