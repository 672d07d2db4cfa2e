"""BERT-base pretraining (12 layers, hidden 768, 12 heads): the paper's model, uncased WordPiece vocab."""

from configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.model.variant = "base"
    config.model.vocab_size = 30522
    return common.apply_arg(config, arg)
