"""The speed switches change the speed, not the result: each leaves the loss (and the update) of the same batch
unchanged; and the hand-counted model FLOPs agree with XLA's cost analysis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import benchmark, flops, train
from bertjax.optim import make_optimizer
from bertjax.configs import common

LENGTH, PREDICTIONS = 32, 5


def _config(**model):
    config = common.get_config()
    config.model.update(variant="tiny", vocab_size=1000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0, **model)
    return config


def _loss_and_grads(task, params, batch):
    (loss, _), grads = jax.jit(jax.value_and_grad(lambda p, b: task.loss(p, b, None), has_aux=True))(params, batch)
    return float(loss), grads


def _batch(task, rows=4, **kwargs):
    return benchmark.synthetic_batch(task.model_config, rows, LENGTH, PREDICTIONS, real_fraction=0.7, **kwargs)


def _close(left, right, rtol=1e-5, atol=1e-6):
    for a, b in zip(jax.tree.leaves(left), jax.tree.leaves(right), strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_mlm_head_on_masked_positions_only_equals_scoring_every_position():
    masked = benchmark.synthetic_task(_config())
    config = _config()
    config.train.mlm_positions = "all"
    everywhere = benchmark.synthetic_task(config)
    batch = _batch(masked)
    params = masked.init_params(jax.random.PRNGKey(0), batch)
    loss, grads = _loss_and_grads(masked, params, batch)
    loss_all, grads_all = _loss_and_grads(everywhere, params, batch)
    assert loss == pytest.approx(loss_all, rel=1e-6)
    _close(grads, grads_all)


def test_padded_vocabulary_leaves_the_loss_unchanged():
    plain = benchmark.synthetic_task(_config())
    padded = benchmark.synthetic_task(_config(), pad_vocab=True)
    assert padded.model_config.vocab_size == 1024 and padded.real_vocab_size == 1000
    batch = _batch(plain)
    padded_params = padded.init_params(jax.random.PRNGKey(0), batch)
    params = jax.tree_util.tree_map_with_path(  # the same values on the first 1000 ids
        lambda path, leaf: leaf[:1000] if leaf.shape and leaf.shape[0] == 1024 else leaf, padded_params)
    loss, grads = _loss_and_grads(plain, params, batch)
    padded_loss, padded_grads = _loss_and_grads(padded, padded_params, batch)
    assert padded_loss == pytest.approx(loss, rel=1e-6)
    embedding = padded_grads["bert"]["embeddings"]["word_embeddings"]["embedding"]
    np.testing.assert_allclose(embedding[:1000], grads["bert"]["embeddings"]["word_embeddings"]["embedding"],
                               rtol=1e-5, atol=1e-7)
    assert not np.any(embedding[1000:])  # the padding ids are never predicted nor fed


@pytest.mark.parametrize("remat", ["full", "dots"])
def test_rematerialisation_leaves_loss_and_gradients_unchanged(remat):
    plain = benchmark.synthetic_task(_config())
    recomputed = benchmark.synthetic_task(_config(remat=remat))
    batch = _batch(plain)
    params = plain.init_params(jax.random.PRNGKey(0), batch)
    loss, grads = _loss_and_grads(plain, params, batch)
    remat_loss, remat_grads = _loss_and_grads(recomputed, params, batch)
    assert remat_loss == pytest.approx(loss, rel=1e-6)
    _close(grads, remat_grads)


def test_transposed_kernel_backward_gives_the_compilers_gradients():
    assert _config().model.dense_backward is None  # "auto": transposed_kernel on CPU
    # Dropout on: both switches draw the same masks, so only the matrix products differ.
    tasks = []
    for choice in ("xla", "transposed_kernel"):
        config = _config(dense_backward=choice)
        config.model.update(hidden_dropout=0.1, attention_dropout=0.1)
        tasks.append(benchmark.synthetic_task(config))
    batch = _batch(tasks[0])
    params = tasks[0].init_params(jax.random.PRNGKey(0), batch)
    rng = jax.random.PRNGKey(5)
    (loss, grads), (transposed_loss, transposed_grads) = [
        jax.jit(jax.value_and_grad(lambda p, t=task: t.loss(p, batch, rng)[0]))(params) for task in tasks]
    assert float(transposed_loss) == pytest.approx(float(loss), rel=1e-6)
    _close(grads, transposed_grads)
    assert all(np.any(leaf) for leaf in jax.tree.leaves(transposed_grads["bert"]["encoder"]))


def test_bfloat16_compute_stays_close_to_float32():
    plain = benchmark.synthetic_task(_config())
    half = benchmark.synthetic_task(_config(dtype="bfloat16"))
    batch = _batch(plain, rows=8)
    params = plain.init_params(jax.random.PRNGKey(0), batch)
    assert _loss_and_grads(half, params, batch)[0] == pytest.approx(_loss_and_grads(plain, params, batch)[0], rel=2e-2)


def test_donating_the_state_gives_the_same_update():
    task = benchmark.synthetic_task(_config())
    batch = jax.device_put(_batch(task))
    optimizer = make_optimizer(_config().optim, 10**6, 2)
    state = train.init_train_state(task, optimizer, 0, batch)
    results = []
    for donate in (True, False):
        step, _ = train.compile_steps(task, optimizer, 1, donate=donate)
        results.append(step(jax.tree.map(jnp.copy, state), batch))
    _close(results[0], results[1], rtol=0, atol=0)


# The modern switches: rotary positions restart with each packed example, local windows shorter than an example.
MODERN = dict(position_embedding="rotary", gated_mlp=True, dense_bias=False, norm_bias=False, pre_layer_norm=True,
              first_layer_attention_norm=False, type_vocab_size=0, global_attention_every=2, local_attention_window=4,
              pooler="prediction_head")


@pytest.mark.parametrize("model", [{}, MODERN], ids=["bert", "modern"])
def test_a_packed_row_scores_as_its_examples_in_separate_rows(model):
    task = benchmark.synthetic_task(_config(**model))
    rng = np.random.default_rng(1)
    lengths, starts = (10, 12), (0, 10)
    tokens = [rng.integers(5, 1000, n).astype(np.int32) for n in lengths]
    masked = [np.array([2, 5, 7]), np.array([1, 4, 9])]
    packed = {name: np.zeros((1, LENGTH), np.int32) for name in ("input_ids", "segment_ids", "attention_mask",
                                                                   "position_ids")}
    separate = {name: np.zeros((2, LENGTH), np.int32) for name in ("input_ids", "segment_ids", "attention_mask")}
    for index, (ids, start) in enumerate(zip(tokens, starts)):
        span = slice(start, start + len(ids))
        packed["input_ids"][0, span], separate["input_ids"][index, :len(ids)] = ids, ids
        packed["segment_ids"][0, span] = separate["segment_ids"][index, :len(ids)] = np.arange(len(ids)) >= len(ids) // 2
        packed["attention_mask"][0, span], separate["attention_mask"][index, :len(ids)] = index + 1, 1
        packed["position_ids"][0, span] = np.arange(len(ids))
    packed.update(masked_positions=np.concatenate([m + s for m, s in zip(masked, starts)])[None].astype(np.int32),
                  masked_ids=np.concatenate([t[m] for t, m in zip(tokens, masked)])[None],
                  masked_weights=np.ones((1, 6), np.float32), cls_positions=np.array([starts], np.int32),
                  sentence_label=np.array([[0, 1]], np.int32), sentence_weights=np.ones((1, 2), np.float32))
    separate.update(masked_positions=np.stack(masked).astype(np.int32),
                    masked_ids=np.stack([t[m] for t, m in zip(tokens, masked)]),
                    masked_weights=np.ones((2, 3), np.float32), sentence_label=np.array([0, 1], np.int32))
    params = task.init_params(jax.random.PRNGKey(0), separate)
    _, packed_sums = task.loss(params, packed, None)
    _, separate_sums = task.loss(params, separate, None)
    for name in ("mlm_loss_sum", "mlm_weight", "sentence_loss_sum", "sentence_weight"):
        np.testing.assert_allclose(packed_sums[name], separate_sums[name], rtol=1e-5)


@pytest.mark.parametrize("variant,batch,length,model", [
    ("tiny", 8, 128, {}), ("base", 4, 128, {}),
    # GeGLU of 1,152 and no biases (ModernBERT-base's layer); a window as long as the row: XLA:CPU computes
    # every key of a local layer, the analytic count only those in its window
    ("base", 4, 128, {**MODERN, "intermediate_size": 1152, "global_attention_every": 3,
                      "local_attention_window": 256})], ids=["tiny", "base", "modern_base_layers"])
def test_analytic_flops_agree_with_xla_cost_analysis(variant, batch, length, model):
    config = common.get_config()
    config.model.variant = variant
    config.model.update(**model)
    task = benchmark.synthetic_task(config)
    predictions = 20
    example = benchmark.synthetic_batch(task.model_config, batch, length, predictions)
    optimizer = make_optimizer(config.optim, 10**6, task.model_config.num_layers)
    state = jax.eval_shape(lambda: train.init_train_state(task, optimizer, 0, example))
    step, _ = train.compile_steps(task, optimizer, 1)
    xla = flops.xla_flops(step.lower(state, example).compile())
    analytic = flops.analytic_flops(task.model_config, batch, length, predictions)
    assert xla == pytest.approx(analytic, rel=0.10), (xla / 1e9, analytic / 1e9)
