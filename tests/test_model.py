"""Behaviour of the encoder a user relies on: sizes, padding, causality, attention paths, compilation."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bertjax.model import (VARIANTS, BertConfig, BertModel, Dropout, attention_allowed, make_dropout, stack_layers,
                           unstack_layers)

TINY = BertConfig.from_variant("tiny", vocab_size=50, max_position_embeddings=32, hidden_dropout=0.0,
                               attention_dropout=0.0)


def _init(config, length=8):
    return nn.meta.unbox(BertModel(config).init(jax.random.key(0), jnp.ones((1, length), jnp.int32))["params"])


def _count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_parameter_count_equals_hf_bert_model(variant):
    config = BertConfig.from_variant(variant)  # vocab 30,522 as in HF's BertConfig
    abstract = jax.eval_shape(lambda: _init(config))
    hf_config = transformers.BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size)
    with torch.device("meta"):  # shapes only, no memory
        hf_model = transformers.BertModel(hf_config)
    assert _count(abstract) == sum(parameter.numel() for parameter in hf_model.parameters())


def _random_batch(length, lengths, seed=0):
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, TINY.vocab_size, size=(len(lengths), length))
    mask = (np.arange(length)[None, :] < np.array(lengths)[:, None]).astype(np.int32)
    segment_ids = rng.integers(0, 2, size=(len(lengths), length))
    return jnp.asarray(input_ids), jnp.asarray(segment_ids), jnp.asarray(mask)


@pytest.mark.parametrize("attention_impl", ["manual", "xla"])
@pytest.mark.parametrize("pre_layer_norm", [False, True])
def test_padding_does_not_change_real_positions(attention_impl, pre_layer_norm):
    config = dataclasses.replace(TINY, attention_impl=attention_impl, pre_layer_norm=pre_layer_norm)
    params = _init(config)
    input_ids, segment_ids, _ = _random_batch(10, [10, 10])
    unpadded = BertModel(config).apply({"params": params}, input_ids, segment_ids)
    # The same rows padded to 16 with arbitrary ids and segments after the real tokens.
    pad_ids, pad_segments, _ = _random_batch(6, [6, 6], seed=5)
    padded_mask = jnp.concatenate([jnp.ones((2, 10), jnp.int32), jnp.zeros((2, 6), jnp.int32)], axis=1)
    padded = BertModel(config).apply(
        {"params": params}, jnp.concatenate([input_ids, pad_ids], 1),
        jnp.concatenate([segment_ids, pad_segments], 1), padded_mask)
    np.testing.assert_allclose(padded.last_hidden_state[:, :10], unpadded.last_hidden_state, atol=2e-6)
    np.testing.assert_allclose(padded.pooled_output, unpadded.pooled_output, atol=2e-6)
    for padded_layer, unpadded_layer in zip(padded.hidden_states, unpadded.hidden_states):
        np.testing.assert_allclose(padded_layer[:, :10], unpadded_layer, atol=2e-6)


@pytest.mark.parametrize("attention_impl", ["manual", "xla"])
def test_causal_model_cannot_see_the_future(attention_impl):
    config = dataclasses.replace(TINY, causal=True, attention_impl=attention_impl)
    params = _init(config)
    input_ids, segment_ids, mask = _random_batch(12, [12])
    changed_at = 7
    changed_ids = input_ids.at[0, changed_at].set((input_ids[0, changed_at] + 1) % TINY.vocab_size)
    model = BertModel(config)
    before = model.apply({"params": params}, input_ids, segment_ids, mask).last_hidden_state
    after = model.apply({"params": params}, changed_ids, segment_ids, mask).last_hidden_state
    np.testing.assert_array_equal(before[:, :changed_at], after[:, :changed_at])
    assert np.all(np.abs(np.asarray(before - after))[0, changed_at:].max(axis=-1) > 1e-4)
    # The bidirectional model does see it: earlier positions change.
    bidirectional = dataclasses.replace(config, causal=False)
    before = BertModel(bidirectional).apply({"params": params}, input_ids, segment_ids, mask).last_hidden_state
    after = BertModel(bidirectional).apply({"params": params}, changed_ids, segment_ids, mask).last_hidden_state
    assert np.abs(np.asarray(before - after))[0, :changed_at].max() > 1e-4


@pytest.mark.parametrize("causal", [False, True])
def test_manual_and_xla_attention_agree(causal):
    manual = dataclasses.replace(TINY, attention_impl="manual", causal=causal)
    params = _init(manual)
    input_ids, segment_ids, mask = _random_batch(16, [16, 9, 4])
    out_manual = BertModel(manual).apply({"params": params}, input_ids, segment_ids, mask)
    out_xla = BertModel(dataclasses.replace(manual, attention_impl="xla")).apply(
        {"params": params}, input_ids, segment_ids, mask)
    real = np.asarray(mask, bool)
    np.testing.assert_allclose(np.asarray(out_manual.last_hidden_state)[real],
                               np.asarray(out_xla.last_hidden_state)[real], atol=1e-5)


def test_attention_dropout_is_seeded_and_active_in_training():
    config = dataclasses.replace(TINY, attention_dropout=0.3)  # "auto": the manual path while training
    params = _init(config)
    input_ids, segment_ids, mask = _random_batch(10, [10, 6])

    def run(key, impl="auto"):
        return BertModel(dataclasses.replace(config, attention_impl=impl)).apply(
            {"params": params}, input_ids, segment_ids, mask, deterministic=False,
            rngs={"dropout": key}).last_hidden_state

    np.testing.assert_array_equal(run(jax.random.key(1)), run(jax.random.key(1)))
    np.testing.assert_array_equal(run(jax.random.key(1)), run(jax.random.key(1), impl="manual"))
    assert np.abs(np.asarray(run(jax.random.key(1)) - run(jax.random.key(2)))).max() > 1e-3
    evaluation = BertModel(config).apply({"params": params}, input_ids, segment_ids, mask).last_hidden_state
    assert np.abs(np.asarray(run(jax.random.key(1)) - evaluation)).max() > 1e-3


@pytest.mark.parametrize("rate,shape,dtype", [(0.1, (64, 128, 128), "float32"), (0.3, (7, 31, 33), "float32"),
                                              (0.1, (64, 128, 129), "bfloat16")])
def test_dropout_drops_its_rate_and_keeps_the_expected_value(rate, shape, dtype):
    x = jnp.full(shape, 1.5, dtype)
    apply = jax.jit(lambda x, key: Dropout(rate).apply({}, x, False, rngs={"dropout": key}))
    out = np.asarray(apply(x, jax.random.key(0)), np.float64)
    assert apply(x, jax.random.key(0)).dtype == x.dtype and out.shape == shape
    dropped = np.mean(out == 0)
    # Binomial: the dropped fraction is within 4 standard deviations of the rate.
    assert abs(dropped - rate) < 4 * np.sqrt(rate * (1 - rate) / out.size)
    kept = out[out != 0]
    threshold = round((1 - rate) * 2**16)
    np.testing.assert_allclose(kept, 1.5 * 2**16 / threshold, rtol=1e-2 if dtype == "bfloat16" else 1e-6)
    # Even and odd positions (the two halves of one draw) are dropped at the same rate.
    assert abs(np.mean(out[..., 0::2] == 0) - np.mean(out[..., 1::2] == 0)) < 8 * np.sqrt(rate / out.size)
    np.testing.assert_array_equal(apply(x, jax.random.key(0)), apply(x, jax.random.key(0)))
    assert np.any(np.asarray(apply(x, jax.random.key(1))) != np.asarray(apply(x, jax.random.key(0))))
    np.testing.assert_array_equal(Dropout(rate).apply({}, x, True), x)


def test_dropout_at_rate_one_drops_everything():
    x = jnp.ones((4, 5))
    out = Dropout(1.0).apply({}, x, False, rngs={"dropout": jax.random.key(0)})
    np.testing.assert_array_equal(out, np.zeros((4, 5)))


def test_dropout_masks_of_neighbouring_elements_are_independent():
    # Two elements share one 32-bit draw: their masks must still be independent (P(both dropped) = rate^2).
    out = np.asarray(Dropout(0.5).apply({}, jnp.ones((256, 1024)), False, rngs={"dropout": jax.random.key(3)}))
    pairs = (out.reshape(256, 512, 2) == 0)
    both = np.mean(pairs[..., 0] & pairs[..., 1])
    assert abs(both - 0.25) < 4 * np.sqrt(0.25 * 0.75 / pairs[..., 0].size)


@pytest.mark.parametrize("impl", ["bits16", "flax"])
def test_dropout_impl_switch_is_seeded_unbiased_and_off_in_evaluation(impl):
    config = dataclasses.replace(TINY, hidden_dropout=0.2, attention_dropout=0.2, dropout_impl=impl)
    params = _init(config)
    input_ids, segment_ids, mask = _random_batch(10, [10, 6])
    model = BertModel(config)

    def run(key):
        return np.asarray(model.apply({"params": params}, input_ids, segment_ids, mask, deterministic=False,
                                      rngs={"dropout": key}).last_hidden_state)

    np.testing.assert_array_equal(run(jax.random.key(1)), run(jax.random.key(1)))
    evaluation = np.asarray(model.apply({"params": params}, input_ids, segment_ids, mask).last_hidden_state)
    assert np.abs(run(jax.random.key(1)) - evaluation).max() > 1e-3
    # Turning dropout off gives the same outputs whichever implementation is chosen.
    other = dataclasses.replace(config, dropout_impl="flax" if impl == "bits16" else "bits16")
    np.testing.assert_array_equal(BertModel(other).apply({"params": params}, input_ids, segment_ids, mask)
                                  .last_hidden_state, evaluation)
    # The two implementations draw different masks from the same key.
    assert np.abs(np.asarray(BertModel(other).apply(
        {"params": params}, input_ids, segment_ids, mask, deterministic=False,
        rngs={"dropout": jax.random.key(1)}).last_hidden_state) - run(jax.random.key(1))).max() > 1e-3
    # The module each one builds drops its rate and keeps the expected value.
    x = jnp.full((64, 128, 128), 1.5)
    out = np.asarray(make_dropout(config, 0.1).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)}))
    assert abs(np.mean(out == 0) - 0.1) < 4 * np.sqrt(0.1 * 0.9 / out.size)
    assert abs(out.mean() - 1.5) < 4 * 1.5 * np.sqrt(0.1 / 0.9 / out.size)


def test_unknown_dropout_impl_is_refused():
    with pytest.raises(ValueError, match="dropout_impl='numpy' is not one of"):
        BertConfig(dropout_impl="numpy")


def test_packed_examples_do_not_attend_to_each_other():
    ids = jnp.array([[1, 1, 2, 2, 2, 0]])
    allowed = np.asarray(attention_allowed(ids, causal=False))[0, 0]
    expected = np.array([[a == b and b > 0 for b in ids[0]] for a in ids[0]])
    np.testing.assert_array_equal(allowed, expected)
    causal = np.asarray(attention_allowed(ids, causal=True))[0, 0]
    np.testing.assert_array_equal(causal, expected & np.tri(6, dtype=bool))
    # Two examples packed in one row give the same outputs as each alone (positions restart).
    params = _init(TINY)
    rows, _, _ = _random_batch(8, [8, 8])
    first, second = rows[0, :3], rows[1, :5]
    packed = BertModel(TINY).apply(
        {"params": params}, jnp.concatenate([first, second])[None], attention_mask=jnp.array([[1] * 3 + [2] * 5]),
        position_ids=jnp.array([[0, 1, 2, 0, 1, 2, 3, 4]])).last_hidden_state
    alone = BertModel(TINY).apply({"params": params}, second[None]).last_hidden_state
    np.testing.assert_allclose(packed[0, 3:], alone[0], atol=2e-6)


def test_step_compiles_once_for_repeated_shapes():
    params = _init(TINY)
    traces = []

    @jax.jit
    def step(params, input_ids, mask):
        traces.append(1)

        def loss(params):
            return jnp.mean(BertModel(TINY).apply({"params": params}, input_ids, None, mask).pooled_output ** 2)

        return jax.value_and_grad(loss)(params)

    for seed in range(3):
        input_ids, _, mask = _random_batch(8, [8, 5], seed=seed)
        jax.block_until_ready(step(params, input_ids, mask))
    assert len(traces) == 1 and step._cache_size() == 1


def test_remat_policies_give_the_same_gradients():
    input_ids, segment_ids, mask = _random_batch(16, [16, 9])
    params = _init(TINY)

    def gradient(config):
        def loss(params):
            out = BertModel(config).apply({"params": params}, input_ids, segment_ids, mask, deterministic=False,
                                          rngs={"dropout": jax.random.key(3)})
            return jnp.sum(out.last_hidden_state ** 2)
        return jax.jit(jax.grad(loss))(params)

    config = dataclasses.replace(TINY, hidden_dropout=0.1, attention_dropout=0.1)
    reference = gradient(config)
    for policy in ("full", "dots"):
        for ours, theirs in zip(jax.tree.leaves(gradient(dataclasses.replace(config, remat=policy))),
                                jax.tree.leaves(reference)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="remat='some'"):
        BertConfig(remat="some")


def test_scanned_layers_equal_unrolled_layers():
    config = dataclasses.replace(TINY, num_layers=3, hidden_dropout=0.1, attention_dropout=0.1)
    scanned = dataclasses.replace(config, scan_layers=True)
    params = _init(config)
    stacked = stack_layers(params, 3)
    assert jax.tree.map(jnp.shape, _init(scanned)) == jax.tree.map(jnp.shape, stacked)
    jax.tree.map(np.testing.assert_array_equal, unstack_layers(stacked, 3), params)
    input_ids, segment_ids, mask = _random_batch(16, [16, 9])
    unrolled = BertModel(config).apply({"params": params}, input_ids, segment_ids, mask)
    rolled = BertModel(scanned).apply({"params": stacked}, input_ids, segment_ids, mask)
    for ours, theirs in zip(rolled.hidden_states, unrolled.hidden_states, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=2e-6)
    np.testing.assert_allclose(rolled.pooled_output, unrolled.pooled_output, atol=2e-6)
    # Training mode runs (dropout keys split per layer), with remat too.
    for remat in ("none", "full"):
        out = BertModel(dataclasses.replace(scanned, remat=remat)).apply(
            {"params": stacked}, input_ids, segment_ids, mask, deterministic=False, rngs={"dropout": jax.random.key(0)})
        assert np.isfinite(np.asarray(out.last_hidden_state)).all()
    boxed = BertModel(scanned).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    query = boxed["encoder"]["layers"]["layer"]["attention"]["query"]["kernel"]
    assert query.names == ("layers", "embed", "heads", "head_dim")


def test_bfloat16_compute_keeps_float32_parameters():
    config = dataclasses.replace(TINY, dtype="bfloat16")
    params = _init(config)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype("float32")}
    input_ids, segment_ids, mask = _random_batch(8, [8, 6])
    low = BertModel(config).apply({"params": params}, input_ids, segment_ids, mask).last_hidden_state
    high = BertModel(TINY).apply({"params": params}, input_ids, segment_ids, mask).last_hidden_state
    assert np.abs(np.asarray(low, np.float32) - np.asarray(high)).max() < 0.1


def test_every_parameter_has_logical_axes():
    boxed = BertModel(TINY).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    leaves = jax.tree_util.tree_leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(leaf, nn.LogicallyPartitioned) for leaf in leaves)
    query = boxed["encoder"]["layer_0"]["attention"]["query"]["kernel"]
    assert query.names == ("embed", "heads", "head_dim")


def test_invalid_configs_say_what_to_change():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        BertConfig(hidden_size=100, num_heads=12)
    with pytest.raises(ValueError, match="attention_dropout=0 or use attention_impl='manual'"):
        BertConfig(attention_impl="xla", attention_dropout=0.1)
    with pytest.raises(ValueError, match="Unknown model variant 'huge'"):
        BertConfig.from_variant("huge")
    with pytest.raises(ValueError, match=r"Unknown model config key\(s\) \['hiden_size'\]"):
        BertConfig.from_config({"variant": "tiny", "hiden_size": 3})
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=32"):
        BertModel(TINY).init(jax.random.key(0), jnp.ones((1, 33), jnp.int32))
