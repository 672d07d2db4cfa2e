"""The modern encoder recipe (modern_base's) at BERT-tiny's size and budget, on the demo's data: 3 layers of
hidden 128 with GeGLU, about as many parameters as bert_tiny, for comparing the two recipes
(benchmarks/time_to_accuracy.py). The data is --config.data.prepared_dir (`make demo` makes runs/demo/data)."""

from bertjax.configs import bert_tiny, common, modern_base


def get_config(arg: str | None = None):
    config = modern_base.recipe(common.get_config())
    config.model.variant = "tiny"
    # Three layers (global, local, local) with a GeGLU of inner width 192 hold about bert_tiny's parameters:
    # no position table, no segment table, no biases. The window is half a row.
    config.model.update(num_layers=3, intermediate_size=192, vocab_size=2048, max_position_embeddings=128,
                        local_attention_window=64)
    tiny = bert_tiny.get_config()
    config.data.max_seq_length = tiny.data.max_seq_length
    config.data.max_predictions_per_seq = round(config.data.mask_rate * config.data.max_seq_length)
    config.data.eval_mask_rate = 0.15  # held-out loss at BERT's rate, comparable with bert_tiny's
    for key in ("num_steps", "global_batch_size", "eval_batch_size", "log_every", "eval_every", "checkpoint_every"):
        config.train[key] = tiny.train[key]
    config.optim.update(learning_rate=tiny.optim.learning_rate, warmup_steps=tiny.optim.warmup_steps)
    return common.apply_arg(config, arg)
