"""Every config key, defined once. Experiment configs start from `get_config()` and set values.

The `model` group holds a `variant` (a row of `bertjax.model.VARIANTS`) and one key per `BertConfig`
field, None meaning "the variant's value"; the keys are generated from the dataclass so the two can
never disagree. Configs are locked: a key that is not defined here fails at once, with its name.
"""

import dataclasses

from ml_collections import config_dict

from bertjax.model import BertConfig


def model_config() -> config_dict.ConfigDict:
    model = config_dict.ConfigDict()
    model.variant = "base"
    for field in dataclasses.fields(BertConfig):
        model[field.name] = config_dict.placeholder(type(field.default))
    return model


def get_config() -> config_dict.ConfigDict:
    config = config_dict.ConfigDict()
    config.seed = 0  # parameter initialisation (and, later, data order and dropout)
    config.model = model_config()
    return config


def _parse(value: str, kind: type):
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected true or false, found {value!r}")
        return value.lower() in ("true", "1")
    return kind(value)


def apply_arg(config: config_dict.ConfigDict, arg: str | None) -> config_dict.ConfigDict:
    """Apply the `:arg` of `--config path.py:arg`: comma-separated `dotted.key=value` overrides,
    typed like the key they replace (`configs/bert_base.py:model.dtype=bfloat16,seed=3`)."""
    for item in filter(None, (arg or "").split(",")):
        dotted, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"Config argument {item!r} is not of the form key=value.")
        *parents, leaf = dotted.strip().split(".")
        group = config
        for index, name in enumerate(parents):
            if name not in group or not isinstance(group[name], config_dict.ConfigDict):
                raise KeyError(f"Config argument {item!r}: no config group {'.'.join(parents[:index + 1])!r}.")
            group = group[name]
        if leaf not in group:
            raise KeyError(f"Config argument {item!r}: unknown key {dotted!r}; "
                           f"keys there: {sorted(group.keys())}.")
        try:
            group[leaf] = _parse(value.strip(), group.get_type(leaf))
        except ValueError as error:
            raise ValueError(f"Config argument {item!r}: {error}.") from None
    config.lock()
    return config
