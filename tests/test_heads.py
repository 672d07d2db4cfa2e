"""The pretraining heads: the MLM decoder is tied to the word embeddings and scores chosen positions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bertjax.heads import BertForPretraining, gather_positions
from bertjax.model import ACTIVATIONS, BertConfig

CONFIG = BertConfig.from_variant("tiny", vocab_size=40, max_position_embeddings=16)


def _init():
    model = BertForPretraining(CONFIG)
    ids = jnp.ones((1, 6), jnp.int32)
    return model, nn.meta.unbox(model.init(jax.random.key(0), ids, masked_positions=jnp.zeros((1, 2), jnp.int32)))


def test_decoder_is_the_word_embedding_matrix():
    model, variables = _init()
    head = variables["params"]["mlm_head"]
    # No vocab-sized matrix of its own: only the output bias is new.
    shapes = [leaf.shape for leaf in jax.tree_util.tree_leaves(head)]
    assert (CONFIG.vocab_size,) in shapes
    assert not any(CONFIG.vocab_size in shape and len(shape) == 2 for shape in shapes)
    ids = jnp.array([[3, 7, 9, 11, 2, 5]])
    output = model.apply(variables, ids)
    # Recompute the logits by hand from the last hidden state and the embedding table.
    transform = head["transform"]
    hidden = ACTIVATIONS["gelu"](output.encoder.last_hidden_state @ transform["kernel"] + transform["bias"])
    mean = hidden.mean(-1, keepdims=True)
    variance = ((hidden - mean) ** 2).mean(-1, keepdims=True)
    norm = head["transform_layer_norm"]
    hidden = (hidden - mean) / jnp.sqrt(variance + CONFIG.layer_norm_eps) * norm["scale"] + norm["bias"]
    table = variables["params"]["bert"]["embeddings"]["word_embeddings"]["embedding"]
    np.testing.assert_allclose(output.mlm_logits, hidden @ table.T + head["output_bias"], atol=2e-5)

    # The decoder trains the embedding table: rows of tokens absent from the input get gradient.
    def mlm_sum(params):
        return model.apply({"params": params}, ids).mlm_logits.sum()

    table_grad = jax.grad(mlm_sum)(variables["params"])["bert"]["embeddings"]["word_embeddings"]["embedding"]
    absent = np.setdiff1d(np.arange(CONFIG.vocab_size), np.asarray(ids))
    assert np.all(np.abs(np.asarray(table_grad)[absent]).sum(-1) > 0)


def test_gather_positions():
    hidden = jnp.arange(2 * 5 * 3).reshape(2, 5, 3)
    positions = jnp.array([[4, 0], [1, 1]])
    np.testing.assert_array_equal(gather_positions(hidden, positions),
                                  np.stack([np.asarray(hidden)[0, [4, 0]], np.asarray(hidden)[1, [1, 1]]]))
