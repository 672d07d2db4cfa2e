"""BERT-large pretraining (24 layers, hidden 1024, 16 heads). The vocabulary is data.tokenizer's (model.vocab_size
unset follows it); without one, BERT's uncased WordPiece size, 30,522."""

from bertjax.configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.model.variant = "large"
    return common.apply_arg(config, arg)
