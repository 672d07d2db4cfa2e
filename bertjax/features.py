"""Features from a BERT encoder: layer selections and combinations, and sequence pooling.

`combine_layers` is the pure core that feature-based taggers and `tools/extract_features.py` share: from
the encoder's `hidden_states` (the embeddings output, then every layer's output) it picks or combines
layers as in the BERT paper's feature-based NER study (first, last, second-to-last, sum or concatenation of
the last four, mean of all, or an explicit list of layers).

Shape letters: B batch, L length, D hidden, N layers.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Named combinations; `hidden_states[0]` is the embeddings output, `hidden_states[i]` layer i's output.
COMBINATIONS = ("first", "last", "second_to_last", "sum_last_four", "concat_last_four", "mean_all")
POOLINGS = ("cls", "mean")


def combine_layers(hidden_states: Sequence[jax.Array], how: str | Sequence[int]) -> jax.Array:
    """(N + 1) x (B, L, D) hidden states -> (B, L, D') features.

    `how` is one of `COMBINATIONS` or a list of layer indices into `hidden_states` (0 = embeddings, negative
    counts from the end), whose outputs are concatenated in that order. "first" is the embeddings output
    (the paper's "first layer" is layer 1: ask for `[1]`); "mean_all" averages the transformer layers and
    leaves out the embeddings. "*_last_four" counts the embeddings output as a hidden state in a model of three
    layers. D' is D, except 4D for "concat_last_four" and len(how) x D for a list.
    """
    count = len(hidden_states)
    if isinstance(how, str):
        if how not in COMBINATIONS:
            raise ValueError(f"Layer combination {how!r} is not one of {COMBINATIONS} (or a list of layer indices).")
        if how.endswith("_last_four") and count < 4:
            raise ValueError(f"Layer combination {how!r} needs four hidden states; this model has {count} "
                             f"(embeddings + {count - 1} layers). Name the layers instead, e.g. -1,-2.")
        if how == "first":
            return hidden_states[0]
        if how == "last":
            return hidden_states[-1]
        if how == "second_to_last":
            return hidden_states[-2]
        if how == "sum_last_four":
            return sum(hidden_states[-4:][1:], hidden_states[-4])
        if how == "concat_last_four":
            return jnp.concatenate(hidden_states[-4:], axis=-1)  # B, L, 4D
        return jnp.mean(jnp.stack(hidden_states[1:]), axis=0)  # mean_all
    indices = list(how)
    if not indices:
        raise ValueError("An explicit layer list is empty; name at least one layer index.")
    bad = [index for index in indices if not -count <= int(index) < count]
    if bad:
        raise ValueError(f"Layer indices {bad} are out of range: the model has hidden states 0 (embeddings) to "
                         f"{count - 1} (its last layer).")
    return jnp.concatenate([hidden_states[int(index)] for index in indices], axis=-1)


def parse_layers(text: str) -> str | list[int]:
    """A command-line layer choice: a combination name, or comma-separated layer indices ("-1,-2,4")."""
    text = text.strip()
    if text in COMBINATIONS:
        return text
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"Layer choice {text!r}: expected one of {COMBINATIONS} or comma-separated layer "
                         "indices such as -1,-2.") from None


def pool(features: jax.Array, attention_mask: jax.Array, how: str) -> jax.Array:
    """(B, L, D') features -> (B, D'): the first ([CLS]) position, or the mean over real (mask > 0) tokens."""
    if how == "cls":
        return features[:, 0]
    if how == "mean":
        weights = (attention_mask > 0).astype(features.dtype)[:, :, None]  # B, L, 1
        return jnp.sum(features * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)
    raise ValueError(f"Pooling {how!r} is not one of {POOLINGS}.")
