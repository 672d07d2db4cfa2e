"""ELMo: two proper one-direction LSTM LMs sharing embedding and softmax, padding-safe, and its scalar mix."""

import jax
import jax.numpy as jnp
import numpy as np

from bertjax import elmo, heads
from bertjax.model import BertConfig

CONFIG = BertConfig(vocab_size=40, hidden_size=16, num_layers=2, num_heads=1, intermediate_size=16,
                    hidden_dropout=0.0)


def _model():
    model = elmo.ElmoLM(CONFIG)
    ids = jnp.asarray(np.random.default_rng(0).integers(5, 40, (2, 10)))
    params = model.init(jax.random.key(0), ids, jnp.ones_like(ids))
    return model, params, ids


def test_each_direction_is_a_language_model():
    model, params, ids = _model()
    changed = ids.at[:, 5].set((ids[:, 5] + 1) % 40)
    before, after = (model.apply(params, x, jnp.ones_like(x)) for x in (ids, changed))
    # Forward logits at t (predicting t+1) see tokens <= t; backward logits at t (predicting t-1) tokens >= t.
    np.testing.assert_allclose(after.next_logits[:, :5], before.next_logits[:, :5], atol=1e-6)
    np.testing.assert_allclose(after.previous_logits[:, 6:], before.previous_logits[:, 6:], atol=1e-6)
    assert np.abs(after.next_logits[:, 5:] - before.next_logits[:, 5:]).max() > 1e-4
    assert np.abs(after.previous_logits[:, :6] - before.previous_logits[:, :6]).max() > 1e-4


def test_right_padding_does_not_change_real_positions():
    model, params, ids = _model()
    padded = jnp.concatenate([ids, jnp.full((2, 4), 7)], axis=1)
    mask = jnp.concatenate([jnp.ones_like(ids), jnp.zeros((2, 4), ids.dtype)], axis=1)
    whole, short = model.apply(params, padded, mask), model.apply(params, ids, jnp.ones_like(ids))
    np.testing.assert_allclose(whole.previous_logits[:, :10], short.previous_logits, atol=1e-5)
    np.testing.assert_allclose(whole.next_logits[:, :10], short.next_logits, atol=1e-5)


def test_embedding_and_softmax_are_shared_and_the_size_is_elmos():
    model, params, _ = _model()
    params = params["params"]
    assert sorted(params) == ["backward_0", "backward_1", "embed", "forward_0", "forward_1", "output_bias"]
    size = lambda tree: sum(leaf.size for leaf in jax.tree.leaves(tree))  # noqa: E731
    d, v = CONFIG.hidden_size, CONFIG.vocab_size
    lstm = 4 * (d * d + d * d + d)  # four gates: input and recurrent kernels, one bias
    assert size(params) == v * d + v + 4 * lstm
    output = model.apply({"params": params}, *([jnp.ones((1, 3), jnp.int32)] * 2))
    assert len(output.hidden_states) == 3 and output.hidden_states[0].shape == (1, 3, 2 * d)
    # The token layer is the embedding, twice.
    np.testing.assert_allclose(output.hidden_states[0][..., :d], output.hidden_states[0][..., d:])


def test_scalar_mix_is_a_softmax_weighted_sum_times_gamma():
    layers = [jnp.full((2, 3, 4), value) for value in (1.0, 2.0, 6.0)]
    mix = heads.ScalarMix()
    params = mix.init(jax.random.key(0), layers)
    np.testing.assert_allclose(mix.apply(params, layers), jnp.full((2, 3, 4), 3.0))  # starts as the mean
    params = {"params": {"scores": jnp.log(jnp.array([1.0, 1.0, 2.0])), "gamma": jnp.array(0.5)}}
    np.testing.assert_allclose(mix.apply(params, layers), jnp.full((2, 3, 4), 0.5 * (1 + 2 + 12) / 4), rtol=1e-6)
