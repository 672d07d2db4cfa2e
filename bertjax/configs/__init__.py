"""The configs: shipped ones found by name (`bert_tiny`), the user's by path (`my/config.py`), either with an
`:arg` for its `get_config(arg)`; command-line overrides (`--config.optim.learning_rate=1e-3`) applied by
`common.set_value`, typed like the key, with the nearest keys suggested for a misspelt one.

    config = configs.load("glue:task=sst2", ["train.num_steps=100"])

Every key is defined in `common.py` with a one-line comment; `describe(config)` lists keys, values, types and
those comments (`bertjax config show NAME`). JAX is imported only when a config is loaded, not by this module.
"""

import importlib
import importlib.util
import inspect
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
_NOT_CONFIGS = ("__init__", "common")


def names() -> list[str]:
    """The shipped configs, by name."""
    return sorted(path.stem for path in HERE.glob("*.py") if path.stem not in _NOT_CONFIGS)


def first_line(name: str) -> str:
    """The first line of a shipped config's docstring, read without importing it."""
    text = (HERE / f"{name}.py").read_text(encoding="utf-8")
    body = text.split('"""', 2)[1] if text.startswith('"""') else ""
    line = body.strip().split("\n\n")[0].replace("\n", " ").split(". ")[0].rstrip(".")
    return line if len(line) <= 100 else line[:99].rsplit(" ", 1)[0] + " ..."


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or "\\" in name


def _module(name: str):
    """The module of a shipped config (by name) or of a config file (by path)."""
    if not _is_path(name):
        if name not in names():
            import difflib
            close = difflib.get_close_matches(name, names(), n=3, cutoff=0.75)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise FileNotFoundError(f"--config {name}: no shipped config of that name; {hint}the shipped ones are "
                                    f"{', '.join(names())}; a config file is named by its path (my_config.py).")
        return importlib.import_module(f"bertjax.configs.{name}")
    path = pathlib.Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--config {name}: no such file (a path is read from the current directory "
                                f"{pathlib.Path.cwd()}; a shipped config is named without .py: {', '.join(names())}).")
    spec = importlib.util.spec_from_file_location(f"bertjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise ValueError(f"--config {name}: the file defines no get_config(arg=None) function.")
    return module


def load(spec: str, overrides: list[str] | tuple[str, ...] = ()):
    """The config `spec` names (`NAME[:ARG]` or `PATH[:ARG]`), then each `dotted.key=value` of `overrides`
    applied in order. The result is locked (a key not in `common.py` fails) and validated (a value outside
    its `common.LIMITS` fails)."""
    from bertjax.configs import common

    name, _, arg = spec.partition(":")
    module = _module(name)
    takes_arg = bool(inspect.signature(module.get_config).parameters)
    if arg and not takes_arg:
        raise ValueError(f"--config {spec}: {name}'s get_config() takes no argument, but ':{arg}' was given.")
    config = module.get_config(arg or None) if takes_arg else module.get_config()
    for item in overrides:
        dotted, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"--config.{item}: give a value, --config.{dotted}=VALUE.")
        common.set_value(config, dotted, value)
    config.lock()
    common.validate(config)  # a value that cannot work is named now, before any data is read
    return config


def describe(config) -> list[tuple[str, object, str, str]]:
    """(dotted key, value, type name, comment) for every key of `config`, in `common.py`'s order."""
    from bertjax.configs import common

    comments = common.key_comments()
    rows = []
    for dotted, value, kind in common.flat_keys(config):
        rows.append((dotted, value, kind.__name__ if kind is not None else "any", comments.get(dotted, "")))
    return rows
