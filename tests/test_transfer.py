"""Downstream use of every objective's model: a pretraining checkpoint's parameters fit the classifier, mean
pooling ignores padding, the fine-tuned classifier learns, and the scalar-mix classifier finds the layer that
carries the signal."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from bertjax import heads
from bertjax.heads import BertForPretraining
from bertjax.model import BertConfig
from bertjax.tasks import causal_lm, transfer

CONFIG = BertConfig(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    max_position_embeddings=16, type_vocab_size=1, hidden_dropout=0.0, attention_dropout=0.0)


def _batch(lengths=(8, 5), length=8, seed=0):
    ids = np.random.default_rng(seed).integers(3, 40, (len(lengths), length)).astype(np.int32)
    mask = (np.arange(length)[None] < np.array(lengths)[:, None]).astype(np.int32)
    return jnp.asarray(ids * mask), jnp.asarray(mask)


def _classifier(objective, num_labels=3):
    model = heads.PooledClassifier(transfer.backbone(objective, CONFIG), num_labels, dropout_rate=0.0)
    ids, mask = _batch()
    return model, nn.meta.unbox(model.init(jax.random.key(0), ids, mask)["params"])


@pytest.mark.parametrize("objective", transfer.OBJECTIVES)
def test_a_pretraining_checkpoint_fits_the_classifier(objective):
    """Every parameter but the new classifier has the name and shape the pretraining model gives it, so
    `train.init_checkpoint` loads it (runs.load_partial_params with fresh=("classifier",))."""
    ids, mask = _batch()
    classifier = heads.PooledClassifier(transfer.backbone(objective, CONFIG), 3)
    params = jax.eval_shape(classifier.init, jax.random.key(0), ids, mask)["params"]
    if objective == "pretraining":
        pretrained = jax.eval_shape(BertForPretraining(CONFIG).init, jax.random.key(1), ids, None, mask)
    else:
        pretrained = jax.eval_shape(causal_lm.make_model(objective, CONFIG).init, jax.random.key(1), ids, mask,
                                    jnp.broadcast_to(jnp.arange(8), ids.shape))
    stored = {name: leaf.shape for name, leaf in traverse_util.flatten_dict(nn.meta.unbox(pretrained["params"])).items()}
    wanted = traverse_util.flatten_dict(nn.meta.unbox(params))
    assert {name for name in wanted if name not in stored} == {("classifier", "kernel"), ("classifier", "bias")}
    assert all(stored[name] == leaf.shape for name, leaf in wanted.items() if name[0] != "classifier")


@pytest.mark.parametrize("objective", ["pretraining", "causal_lm", "forward_backward", "elmo"])
def test_mean_pooling_ignores_padding(objective):
    model, params = _classifier(objective)
    apply = model.apply  # eagerly: three shapes would be three compilations
    ids, mask = _batch(lengths=(8, 5), length=8)
    logits = apply({"params": params}, ids, mask)
    # More padding, and other ids under it, change nothing; nor does the row's neighbour.
    padded_ids = jnp.concatenate([ids, jnp.full((2, 4), 7)], axis=1).at[1, 5:8].set(9)
    padded_mask = jnp.concatenate([mask, jnp.zeros((2, 4), mask.dtype)], axis=1)
    np.testing.assert_allclose(apply({"params": params}, padded_ids, padded_mask), logits, atol=1e-5)
    np.testing.assert_allclose(apply({"params": params}, ids[1:, :5], mask[1:, :5]), logits[1:], atol=1e-5)


def test_frozen_layer_states_per_token_and_pooled():
    model, params = _classifier("forward_backward")
    ids, mask = (np.asarray(array) for array in _batch(lengths=(8, 5), length=8))
    states = transfer.layer_states(model.backbone, params, ids, mask, pooled=False, batch_size=1)
    pooled = transfer.layer_states(model.backbone, params, ids, mask, pooled=True)
    assert states.shape == (CONFIG.num_layers + 1, 2, 8, 2 * CONFIG.hidden_size)  # both directions side by side
    assert pooled.shape == (CONFIG.num_layers + 1, 2, 2 * CONFIG.hidden_size)
    np.testing.assert_allclose(pooled[:, 1], states[:, 1, :5].mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled[:, 0], states[:, 0].mean(axis=1), rtol=1e-5, atol=1e-6)
    # The top layer is what the classifier pools (its logits are the classifier applied to it).
    logits = model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))
    classifier = params["classifier"]
    normalized = (pooled[-1] - pooled[-1].mean(-1, keepdims=True)) / pooled[-1].std(-1, keepdims=True)
    np.testing.assert_allclose(logits, normalized @ classifier["kernel"] + classifier["bias"], rtol=1e-3, atol=1e-4)


def test_standardize_per_token_states_counts_real_tokens_only():
    rng = np.random.default_rng(0)
    states = rng.normal(3.0, 0.01, size=(2, 4, 5, 3)).astype(np.float32)  # S, N, L, D: small and off-centre
    mask = np.ones((4, 5), np.int32)
    mask[:, 3:] = 0
    states[:, mask == 0] = 1e6  # padding, which must not count
    statistics = transfer.standardize(states, mask)
    real = states[:, mask > 0]  # S, real tokens, D
    np.testing.assert_allclose(real.mean(axis=1), 0.0, atol=1e-3)
    np.testing.assert_allclose(real.std(axis=1), 1.0, rtol=1e-3)
    # Other states (a dev set) take the training statistics, not their own.
    other = np.full((2, 1, 5, 3), 3.0, np.float32)
    transfer.standardize(other, statistics=statistics)
    np.testing.assert_allclose(other, (3.0 - statistics[0]) / statistics[1] * np.ones_like(other), rtol=1e-5)


@pytest.mark.parametrize("objective", ["pretraining", "causal_lm", "forward_backward", "elmo"])
def test_the_classifier_learns_a_tiny_batch(objective):
    model, params = _classifier(objective, num_labels=4)
    ids, mask = _batch(lengths=(8, 6, 7, 3), seed=1)
    labels = jnp.array([0, 1, 2, 3])
    optimizer = optax.adam(1e-2)

    def loss(params):
        logits = model.apply({"params": params}, ids, mask)
        assert logits.shape == (4, 4) and logits.dtype == jnp.float32
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    state, losses = optimizer.init(params), []
    for _ in range(30):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert losses[-1] < 0.2 * losses[0]


def test_the_scalar_mix_classifier_weights_the_informative_layer():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    layers = rng.normal(size=(3, 600, 8)).astype(np.float32)  # S, N, D: noise ...
    layers[1, :, :3] += 3.0 * np.eye(3)[labels]  # ... but layer 1 tells the class
    predict, weights, _ = transfer.fit_mix_classifier(layers[:, :500], labels[:500], 3)
    assert np.mean(predict(layers[:, 500:]) == labels[500:]) > 0.9
    assert weights.argmax() == 1 and weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("objective,left_only", [("causal_lm", True), ("pretraining", False)])
def test_a_tagger_on_a_causal_backbone_sees_only_the_left_context(objective, left_only):
    """The right-context task's premise: a left-to-right model's tag at a position cannot change with the
    tokens after it; a bidirectional model's does."""
    model = heads.PooledTagger(transfer.backbone(objective, CONFIG), 3, dropout_rate=0.0)
    ids, mask = _batch(lengths=(8, 8))
    params = nn.meta.unbox(model.init(jax.random.key(0), ids, mask)["params"])
    changed = ids.at[:, 5:].set((ids[:, 5:] + 7) % 37 + 3)  # only the tokens from position 5 on
    before, after = (model.apply({"params": params}, rows, mask).logits for rows in (ids, changed))
    assert before.shape == (2, 8, 3)
    left_unchanged = np.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert left_unchanged == left_only
    assert not np.allclose(before[:, 5:], after[:, 5:], atol=1e-6)
