"""BERT-large pretraining (24 layers, hidden 1024, 16 heads)."""

from configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.model.variant = "large"
    config.model.vocab_size = 30522
    return common.apply_arg(config, arg)
