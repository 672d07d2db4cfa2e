"""The demo model: BERT-tiny (2 layers, hidden 128), small enough to pretrain on a laptop CPU."""

from configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.model.variant = "tiny"
    config.model.vocab_size = 8192  # a SentencePiece vocabulary trained on the built-in corpus
    config.model.max_position_embeddings = 128
    # What `make demo` makes from the built-in corpus.
    config.data.tokenizer = "runs/demo/tokenizer.model"
    config.data.prepared_dir = "runs/demo/data"
    return common.apply_arg(config, arg)
