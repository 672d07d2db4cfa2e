"""Build a model from a config and report its size, then time one training-shaped step on random data.

    python tools/model_info.py --config configs/bert_base.py
    python tools/model_info.py --config configs/bert_tiny.py --config.model.num_layers=4 --seq_length=64
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_flags

from bertjax import cli, losses
from bertjax.heads import BertForPretraining
from bertjax.model import BertConfig

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/bert_tiny.py[:key=value,...]",
                                          lock_config=True)
flags.mark_flags_as_required(["config"])
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Sequences in the timed batch.")
_SEQ_LENGTH = flags.DEFINE_integer("seq_length", 128, "Tokens per sequence in the timed batch.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps after compilation (the median is reported).")


def count_parameters(params) -> dict[str, int]:
    """Parameter counts by top-level module and, inside `bert`, by its parts."""
    counts = {}
    for name, subtree in params.items():
        parts = subtree.items() if name == "bert" else [(None, subtree)]
        for part, leaves in parts:
            key = f"{name}/{part}" if part else name
            counts[key] = sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(leaves))
    return counts


def main(argv):
    del argv
    config = BertConfig.from_config(_CONFIG.value.model)
    print(f"model: {config}")
    model = BertForPretraining(config)
    batch_size, length = _BATCH_SIZE.value, _SEQ_LENGTH.value
    predictions = max(1, round(0.15 * length))  # BERT's max_predictions_per_seq: 20 at 128
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": jnp.asarray(rng.integers(5, config.vocab_size, (batch_size, length)), jnp.int32),
        "segment_ids": jnp.asarray(np.arange(length)[None, :] >= length // 2, jnp.int32).repeat(batch_size, 0),
        "attention_mask": jnp.ones((batch_size, length), jnp.int32),
        "masked_positions": jnp.asarray(rng.integers(1, length, (batch_size, predictions)), jnp.int32),
        "masked_ids": jnp.asarray(rng.integers(5, config.vocab_size, (batch_size, predictions)), jnp.int32),
        "masked_weights": jnp.ones((batch_size, predictions), jnp.float32),
        "sentence_label": jnp.asarray(rng.integers(0, 2, batch_size), jnp.int32),
    }
    params = jax.jit(lambda key: nn.meta.unbox(model.init(
        key, batch["input_ids"], masked_positions=batch["masked_positions"])["params"]))(jax.random.key(0))

    counts = count_parameters(params)
    width = max(map(len, counts))
    for name, count in counts.items():
        print(f"  {name:<{width}}  {count:>13,}")
    embeddings = counts["bert/embeddings"]
    total = sum(counts.values())
    print(f"  {'total':<{width}}  {total:>13,}   (non-embedding: {total - embeddings:,})")

    def loss_fn(params, batch, key):
        output = model.apply({"params": params}, batch["input_ids"], batch["segment_ids"],
                             batch["attention_mask"], masked_positions=batch["masked_positions"],
                             deterministic=False, rngs={"dropout": key})
        return losses.pretraining_loss(output, batch)

    grad_step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    start = time.perf_counter()
    (loss, _), grads = jax.block_until_ready(grad_step(params, batch, jax.random.key(1)))
    compile_seconds = time.perf_counter() - start
    times = []
    for step in range(_STEPS.value):
        start = time.perf_counter()
        jax.block_until_ready(grad_step(params, batch, jax.random.key(2 + step)))
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    print(f"loss at initialisation: {float(loss):.3f} (ln V + ln 2 = {np.log(config.vocab_size) + np.log(2):.3f})")
    print(f"forward+backward, batch {batch_size} x {length} on {jax.devices()[0].platform}: first call "
          f"{compile_seconds:.2f}s (with compilation), then median {median * 1e3:.1f} ms = "
          f"{batch_size * length / median:,.0f} tokens/s")


if __name__ == "__main__":
    cli.run(main)
