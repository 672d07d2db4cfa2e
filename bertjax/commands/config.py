"""The configs: `list` the shipped ones, or `show` every key of one with its value, type and meaning.

    bertjax config list
    bertjax config show bert_tiny
    bertjax config show glue:task=sst2 optim.learning_rate=3e-5     # with overrides, as --config.KEY=VALUE
    bertjax config show my_config.py

A key is set on any command that takes --config as --config.KEY=VALUE (--config.optim.learning_rate=1e-3); a
misspelt key is refused with the nearest known ones. Model keys left unset (None) take the variant's value,
shown beside it.
"""

from absl import flags

_WIDTH = flags.DEFINE_integer("width", 28, "Width of the value column.", lower_bound=1)


def _shown(dotted: str, value, config, model) -> str:
    """The value; for an unset model key, the value the model will have (`model`: the resolved BertConfig)."""
    if value is None and dotted.startswith("model.") and dotted != "model.variant":
        return f"None ({config.model.variant}: {getattr(model, dotted.split('.', 1)[1])!r})"
    return repr(value)


def show(spec: str, overrides: list[str], width: int) -> str:
    from bertjax import configs

    from bertjax.model import BertConfig

    config = configs.load(spec, overrides)
    model = BertConfig.from_config(config.model)
    rows = configs.describe(config)
    key_width = max(len(row[0]) for row in rows)
    lines = [f"{spec}: {len(rows)} keys; set one with --config.KEY=VALUE"]
    for dotted, value, kind, comment in rows:
        lines.append(f"{dotted:<{key_width}}  {_shown(dotted, value, config, model):<{width}}  {kind:<5}  {comment}".rstrip())
    return "\n".join(lines)


def listing() -> str:
    from bertjax import configs

    names = configs.names()
    width = max(map(len, names))
    return "\n".join(f"{name:<{width}}  {configs.first_line(name)}" for name in names)


def main(argv):
    words = argv[1:]
    if words[:1] == ["list"] and len(words) == 1:
        print(listing())
    elif words[:1] == ["show"] and len(words) >= 2:
        print(show(words[1], words[2:], _WIDTH.value))
    else:
        raise ValueError("usage: bertjax config list | bertjax config show NAME[:arg] [KEY=VALUE ...] "
                         f"(found {' '.join(words) or 'nothing'} after `config`).")
