"""A forward (GPT-style) language model the size of BERT-tiny (2 layers, hidden 128), trained on the built-in
corpus, on the demo's shards (--config.data.prepared_dir=runs/demo/data): next-token prediction over packed
contiguous text, causal attention, the output layer tied to the word embeddings. `bertjax generate` samples
from the result."""

from bertjax.configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.task = "causal_lm"
    config.model.variant = "tiny"
    config.model.vocab_size = 2048  # the demo tokenizer's, as in bert_tiny.py
    config.model.max_position_embeddings = 128
    config.model.type_vocab_size = 1  # one segment: a language model has no sentence pairs
    config.train.num_steps = 2500
    config.train.global_batch_size = 32  # 32 rows x 128 tokens, all real: 4,096 predictions per step
    config.train.eval_batch_size = 64
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.optim.learning_rate = 2e-3
    config.optim.warmup_steps = 100
    return common.apply_arg(config, arg)
