"""The demo: BERT-tiny (2 layers, hidden 128) pretrained on the built-in corpus in about ten minutes on a
2-core CPU. The data is --config.data.prepared_dir (`make demo` makes runs/demo/data, with its tokenizer)."""

from bertjax.configs import common


def get_config(arg: str | None = None):
    config = common.get_config()
    config.model.variant = "tiny"
    # A 2,048-piece SentencePiece vocabulary suits a 1.9 MB corpus (425k tokens at 8,192 pieces). Set, though
    # training would follow the tokenizer: the tools that build the model without one (model_info, benchmark)
    # then report the demo's model, not one with the variant's 30,522 ids. With a larger tokenizer, set it to its size.
    config.model.vocab_size = 2048
    config.model.max_position_embeddings = 128
    config.data.packing = True  # docstrings are short: packing raises real tokens per row from ~77 to ~115
    # 2,500 updates of 32 rows: about 9 minutes at ~4.4 steps/s on 2 cores.
    config.train.num_steps = 2500
    config.train.global_batch_size = 32
    config.train.eval_batch_size = 64
    config.train.log_every = 50
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.optim.learning_rate = 2e-3  # a tiny model and a short run take a larger rate than BERT-base's 1e-4
    config.optim.warmup_steps = 100
    return common.apply_arg(config, arg)
