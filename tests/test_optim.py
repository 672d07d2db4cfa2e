"""Optimizers and schedules: what decays, and the learning rate at chosen steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from bertjax import optim
from bertjax.heads import BertForPretraining
from bertjax.model import BertConfig
from bertjax.configs import common


def _params():
    model = BertForPretraining(BertConfig.from_variant("tiny", vocab_size=50, max_position_embeddings=16))
    import flax.linen as nn
    return nn.meta.unbox(model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])


def _optim(**overrides):
    group = common.optim_config()
    for key, value in overrides.items():
        group[key] = value
    return group


def test_weight_decay_skips_exactly_layer_norms_and_biases():
    params = _params()
    mask = traverse_util.flatten_dict(optim.decay_mask(params))
    decayed = {"/".join(path) for path, value in mask.items() if value}
    skipped = {"/".join(path) for path, value in mask.items() if not value}
    assert all(path.endswith(("/kernel", "/embedding")) for path in decayed)
    assert "bert/embeddings/word_embeddings/embedding" in decayed
    assert "bert/encoder/layer_1/attention/query/kernel" in decayed
    layer_norms = {path for path in mask if "layer_norm" in "/".join(path)}
    assert layer_norms and all("/".join(path) in skipped for path in layer_norms)
    assert all(path.endswith(("/bias", "/scale", "output_bias")) for path in skipped)
    assert "mlm_head/output_bias" in skipped and "bert/embeddings/layer_norm/scale" in skipped
    # Behaviour: with zero gradients only the decayed parameters move.
    optimizer = optim.make_optimizer(_optim(warmup_steps=0, schedule="constant", learning_rate=0.1), 10)
    updates, _ = optimizer.update(jax.tree.map(jnp.zeros_like, params), optimizer.init(params), params)
    moved = traverse_util.flatten_dict(jax.tree.map(lambda u: bool(jnp.any(u != 0)), updates))
    assert {"/".join(path) for path, value in moved.items() if value} == {
        path for path in decayed if np.any(traverse_util.flatten_dict(params)[tuple(path.split("/"))] != 0)}


def test_linear_warmup_then_decay_like_bert():
    schedule = optim.learning_rate_schedule(_optim(learning_rate=1e-3, warmup_steps=10), 110)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(60)) == pytest.approx(5e-4)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-12)


def test_cosine_and_warmup_stable_decay():
    cosine = optim.learning_rate_schedule(_optim(learning_rate=1.0, warmup_steps=0, schedule="cosine"), 100)
    assert float(cosine(50)) == pytest.approx(0.5, abs=1e-6) and float(cosine(100)) == pytest.approx(0.0, abs=1e-6)
    wsd = optim.learning_rate_schedule(
        _optim(learning_rate=1.0, warmup_steps=10, schedule="wsd", decay_fraction=0.2), 100)
    assert [float(wsd(step)) for step in (5, 10, 50, 80)] == pytest.approx([0.5, 1.0, 1.0, 1.0])
    assert float(wsd(90)) == pytest.approx(0.5) and float(wsd(100)) == pytest.approx(0.0, abs=1e-6)


def test_lamb_and_bad_names():
    params = _params()
    lamb = optim.make_optimizer(_optim(name="lamb", warmup_steps=0), 10)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = lamb.update(grads, lamb.init(params), params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    with pytest.raises(ValueError, match="optim.name='sgd'"):
        optim.make_optimizer(_optim(name="sgd"), 10)
    with pytest.raises(ValueError, match="optim.schedule='step'"):
        optim.make_optimizer(_optim(schedule="step"), 10)
    with pytest.raises(ValueError, match="warmup_steps=-1 must be at least 0"):
        optim.make_optimizer(_optim(warmup_steps=-1), 10)


def test_a_warmup_longer_than_the_run_is_clamped_with_a_warning(caplog):
    with caplog.at_level("WARNING"):
        long = optim.learning_rate_schedule(_optim(learning_rate=1e-3, warmup_steps=100), 10)
    exact = optim.learning_rate_schedule(_optim(learning_rate=1e-3, warmup_steps=10), 10)
    assert [float(long(step)) for step in range(11)] == [float(exact(step)) for step in range(11)]
    assert float(long(10)) == pytest.approx(1e-3)  # the peak, reached at the last step
    assert "optim.warmup_steps=100 is more than the 10 training steps (train.num_steps): clamped to 10" in caplog.text


@pytest.mark.parametrize("scan_layers", [False, True])
def test_layer_decay_scales_each_layer_by_its_depth(scan_layers):
    config = BertConfig.from_variant("tiny", vocab_size=50, max_position_embeddings=16, scan_layers=scan_layers)
    import flax.linen as nn
    params = nn.meta.unbox(BertForPretraining(config).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"])
    grads = jax.tree.map(jnp.ones_like, params)
    settings = dict(warmup_steps=0, schedule="constant", learning_rate=0.1, weight_decay=0.0, clip_norm=0.0)
    plain = optim.make_optimizer(_optim(**settings), 10, num_layers=2)
    decayed = optim.make_optimizer(_optim(layer_decay=0.5, **settings), 10, num_layers=2)
    reference, _ = plain.update(grads, plain.init(params), params)
    updates, _ = decayed.update(grads, decayed.init(params), params)
    ratio = traverse_util.flatten_dict(jax.tree.map(lambda u, r: np.asarray(u / r), updates, reference))
    # 2 layers: embeddings 0.5**3, layer 0 0.5**2, layer 1 0.5**1, pooler and heads 1.
    assert np.allclose(ratio[("bert", "embeddings", "word_embeddings", "embedding")], 0.125)
    if scan_layers:
        stacked = ratio[("bert", "encoder", "layers", "layer", "intermediate", "kernel")]
        assert np.allclose(stacked[0], 0.25) and np.allclose(stacked[1], 0.5)
    else:
        assert np.allclose(ratio[("bert", "encoder", "layer_0", "intermediate", "kernel")], 0.25)
        assert np.allclose(ratio[("bert", "encoder", "layer_1", "output_layer_norm", "scale")], 0.5)
    assert np.allclose(ratio[("bert", "pooler", "kernel")], 1.0)
    assert np.allclose(ratio[("sentence_head", "kernel")], 1.0)


def test_warmup_fraction_sets_the_warmup_steps():
    schedule = optim.learning_rate_schedule(_optim(learning_rate=1.0, warmup_fraction=0.1), 200)
    assert float(schedule(10)) == pytest.approx(0.5) and float(schedule(20)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        optim.make_optimizer(_optim(warmup_fraction=1.5), 10)
