"""Build a model from a config and report its size, then time the pretraining train step (forward, backward
and optimizer update) on a synthetic batch (`bertjax.benchmark`).

    bertjax model_info --config bert_base
    bertjax model_info --config bert_tiny --config.model.num_layers=4 --max_seq_length=64
"""

from absl import flags

from bertjax import cli

_CONFIG = cli.DEFINE_config()
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Sequences in the timed batch.", lower_bound=1)
_SEQ_LENGTH = flags.DEFINE_integer("max_seq_length", 128, "Tokens per sequence in the timed batch.", lower_bound=3)
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after compilation (the median is reported).", lower_bound=1)


def count_parameters(params) -> dict[str, int]:
    """Parameter counts by top-level module and, inside `bert`, by its parts."""
    import jax
    import numpy as np

    counts = {}
    for name, subtree in params.items():
        parts = subtree.items() if name == "bert" else [(None, subtree)]
        for part, leaves in parts:
            key = f"{name}/{part}" if part else name
            counts[key] = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(leaves))
    return counts


def main(argv):
    del argv
    import jax
    import numpy as np

    from bertjax import benchmark, train

    config = _CONFIG.value
    task = benchmark.synthetic_task(config)
    model = task.model_config
    print(f"model: {model}")
    batch_size, length = _BATCH_SIZE.value, _SEQ_LENGTH.value
    predictions = max(1, round(0.15 * length))  # BERT's max_predictions_per_seq: 20 at 128
    batch = benchmark.synthetic_batch(model, batch_size, length, predictions)
    params = jax.jit(task.init_params)(jax.random.key(0), batch)

    counts = count_parameters(params)
    width = max(map(len, counts))
    for name, count in counts.items():
        print(f"  {name:<{width}}  {count:>13,}")
    embeddings = counts["bert/embeddings"]
    total = sum(counts.values())
    print(f"  {'total':<{width}}  {total:>13,}   (non-embedding: {total - embeddings:,})")

    initial = task.summarize(train.compile_evaluation(task)(params, batch))
    loss = initial["mlm_loss"] + initial["sentence_loss"]
    print(f"loss at initialisation: {loss:.3f} (ln V + ln 2 = {np.log(model.vocab_size) + np.log(2):.3f})")
    timing = benchmark.time_train_steps(task, config.optim, batch, steps=_STEPS.value, warmup=1,
                                        donate=config.train.donate_state)
    tokens = batch_size * length  # every position is computed, padding or not
    print(f"train step (forward, backward, optimizer update), batch {batch_size} x {length} on "
          f"{jax.devices()[0].platform}: compilation {timing.compile_seconds:.2f}s, then median "
          f"{timing.median * 1e3:.1f} ms = {tokens / timing.median:,.0f} tokens/s")

