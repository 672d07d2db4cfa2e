"""Sharding over 8 fake CPU devices: the same numbers on any mesh, parameters split as the preset says,
bf16 compute, and checkpoints that move between meshes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import checkpoint, sharding, train
from bertjax.optim import make_optimizer
from bertjax.tasks.pretraining import PretrainingTask
from bertjax.configs import common


def _config(prepared_dir, sp_tokenizer_path, data=1, fsdp=1, tensor=1, rules="dp"):
    config = common.get_config()
    config.model.update(variant="tiny", vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0)
    config.data.update(tokenizer=str(sp_tokenizer_path), prepared_dir=str(prepared_dir), max_seq_length=64,
                       max_predictions_per_seq=10)
    config.mesh.update(data=data, fsdp=fsdp, tensor=tensor, rules=rules)
    return config


@pytest.fixture(scope="module")
def batch_and_params(prepared_dir, sp_tokenizer_path):
    task = PretrainingTask(_config(prepared_dir, sp_tokenizer_path))
    batch = next(iter(task.dataset("train", batch_size=16, seed=0, train=True)))
    params = task.init_params(jax.random.PRNGKey(0), batch)
    return batch, jax.device_get(params)


def _loss_and_grads(config, batch, params, devices):
    task = PretrainingTask(config)
    mesh = sharding.make_mesh(config.mesh, devices)
    with sharding.activate(mesh, config.mesh.rules):
        boxed = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), batch, boxed=True))
        params_sharding = sharding.param_shardings(boxed, mesh, config.mesh.rules)
        placed = jax.device_put(params, params_sharding)
        step = jax.jit(jax.value_and_grad(lambda p, b: task.loss(p, b, None)[0]),
                       in_shardings=(params_sharding, sharding.batch_sharding(mesh)))
        loss, grads = step(placed, sharding.global_batch(batch, mesh))
    return float(loss), jax.device_get(grads), placed


MESHES = [((8, 1, 1), "dp"), ((2, 4, 1), "fsdp"), ((2, 2, 2), "fsdp_tp")]


@pytest.mark.parametrize("shape, rules", MESHES, ids=[rules for _, rules in MESHES])
def test_loss_and_gradients_equal_a_single_device(prepared_dir, sp_tokenizer_path, batch_and_params, shape, rules):
    batch, params = batch_and_params
    single = _config(prepared_dir, sp_tokenizer_path)
    loss_one, grads_one, _ = _loss_and_grads(single, batch, params, jax.devices()[:1])
    meshed = _config(prepared_dir, sp_tokenizer_path, *shape, rules=rules)
    loss_mesh, grads_mesh, placed = _loss_and_grads(meshed, batch, params, jax.devices())
    assert loss_mesh == pytest.approx(loss_one, rel=1e-5)
    for one, mesh in zip(jax.tree.leaves(grads_one), jax.tree.leaves(grads_mesh)):
        np.testing.assert_allclose(mesh, one, rtol=2e-4, atol=1e-6)

    intermediate = placed["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"].sharding.spec
    query = placed["bert"]["encoder"]["layer_0"]["attention"]["query"]["kernel"].sharding.spec
    words = placed["bert"]["embeddings"]["word_embeddings"]["embedding"].sharding.spec
    expected = {"dp": ((None, None), (None, None, None), (None, None)),
                "fsdp": (("fsdp", None), ("fsdp", None, None), (None, "fsdp")),
                "fsdp_tp": (("fsdp", "tensor"), ("fsdp", "tensor", None), ("tensor", "fsdp"))}[rules]
    assert (tuple(intermediate), tuple(query), tuple(words)) == expected
    shard = placed["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"].addressable_shards[0].data.shape
    assert shard == {"dp": (32, 64), "fsdp": (8, 64), "fsdp_tp": (16, 32)}[rules]



@pytest.mark.parametrize("scan", [False, True], ids=["unrolled", "scanned"])
def test_modern_encoder_parameters_shard_and_compute_as_on_one_device(prepared_dir, sp_tokenizer_path, scan):
    """The modern switches (rotary positions, GeGLU, no biases, no segment table, local and global layers, the
    prediction-head pooler) on a 2 x 2 x 2 fsdp_tp mesh: every matrix is split as its logical axes say, and the
    loss and gradients equal one device's."""
    def modern(*mesh, rules="dp"):
        config = _config(prepared_dir, sp_tokenizer_path, *mesh, rules=rules)
        config.model.update(num_layers=3, position_embedding="rotary", gated_mlp=True, dense_bias=False,
                            norm_bias=False, pre_layer_norm=True, first_layer_attention_norm=False,
                            type_vocab_size=0, global_attention_every=3, local_attention_window=16,
                            pooler="prediction_head", scan_layers=scan)
        config.data.sentence_task = "none"
        return config

    task = PretrainingTask(modern())
    batch = next(iter(task.dataset("train", batch_size=16, seed=0, train=True)))
    assert (batch["attention_mask"].sum(axis=1) > 16).any()  # rows longer than the window: local layers differ
    params = jax.device_get(task.init_params(jax.random.PRNGKey(0), batch))
    loss_one, grads_one, _ = _loss_and_grads(modern(), batch, params, jax.devices()[:1])
    loss_mesh, grads_mesh, placed = _loss_and_grads(modern(2, 2, 2, rules="fsdp_tp"), batch, params, jax.devices())
    assert loss_mesh == pytest.approx(loss_one, rel=1e-5)
    for one, mesh in zip(jax.tree.leaves(grads_one), jax.tree.leaves(grads_mesh)):
        np.testing.assert_allclose(mesh, one, rtol=2e-4, atol=1e-6)

    flat = {"/".join(str(getattr(key, "key", key)) for key in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(placed)[0]}
    assert not any("bias" in name for name in flat if "sentence_head" not in name and "mlm_head" not in name)
    assert not any("position_embeddings" in name or "token_type" in name for name in flat)
    layer = "encoder/layers/layer" if scan else "encoder/layer_1"
    gated = flat[f"bert/{layer}/intermediate/kernel"]
    assert gated.shape[-1] == 2 * 64  # inner and gate halves in one kernel
    assert tuple(gated.sharding.spec)[-2:] == ("fsdp", "tensor")
    for name, leaf in flat.items():
        spec = set(leaf.sharding.spec) - {None}
        if name.startswith("bert/encoder") and leaf.ndim >= 2 + scan:  # matrices: split over both parameter axes
            assert spec == {"fsdp", "tensor"}, (name, leaf.sharding.spec)
        elif name != "sentence_head/bias":  # the rest on one of them at least (norm scales: over fsdp)
            assert spec, (name, leaf.sharding.spec)


def test_bfloat16_policy_keeps_float32_parameters(prepared_dir, sp_tokenizer_path, batch_and_params):
    batch, params = batch_and_params
    config = _config(prepared_dir, sp_tokenizer_path)
    config.model.dtype = "bfloat16"
    task = PretrainingTask(config)
    loss_low, sums = task.loss(params, batch, None)
    loss_high = PretrainingTask(_config(prepared_dir, sp_tokenizer_path)).loss(params, batch, None)[0]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert loss_low.dtype == jnp.float32 and all(value.dtype == jnp.float32 for value in sums.values())
    assert float(loss_low) == pytest.approx(float(loss_high), rel=0.01)
    assert float(loss_low) != float(loss_high)  # bf16 matrix products did run


def test_checkpoint_moves_between_meshes(prepared_dir, sp_tokenizer_path, batch_and_params, tmp_path):
    batch, params = batch_and_params
    config = _config(prepared_dir, sp_tokenizer_path, 8, 1, 1, "dp")
    task = PretrainingTask(config)
    config.optim.warmup_steps = 2
    optimizer = make_optimizer(config.optim, 10)
    iterator = iter(task.dataset("train", batch_size=16, seed=0, train=True))

    def state_on(config, devices):
        mesh = sharding.make_mesh(config.mesh, devices)
        abstract = jax.eval_shape(functools.partial(train.init_train_state, task, optimizer, 0, batch))
        boxed = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), batch, boxed=True))
        shardings = sharding.state_shardings(
            abstract, sharding.param_shardings(boxed, mesh, config.mesh.rules), optimizer, mesh)
        return sharding.with_shardings(abstract, shardings)

    saved_target = state_on(config, jax.devices())
    state = jax.jit(functools.partial(train.init_train_state, task, optimizer, 0, batch),
                    out_shardings=jax.tree.map(lambda leaf: leaf.sharding, saved_target))()
    writer = checkpoint.Checkpointer(tmp_path, keep=1)
    writer.save(1, state, iterator, {"step": 1})
    writer.wait()
    writer.close()

    for mesh_config, devices in ((_config(prepared_dir, sp_tokenizer_path, 4, 2, 1, "fsdp"), jax.devices()),
                                 (_config(prepared_dir, sp_tokenizer_path), jax.devices()[:1])):
        target = state_on(mesh_config, devices)
        reader = checkpoint.Checkpointer(tmp_path, keep=1)
        restored, _ = reader.restore(1, target, iter(task.dataset("train", batch_size=16, seed=0, train=True)))
        reader.close()
        for got, want, expected in zip(jax.tree.leaves(restored), jax.tree.leaves(state), jax.tree.leaves(target)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
            assert got.sharding.is_equivalent_to(expected.sharding, got.ndim)


def test_mesh_sizes_are_checked():
    config = common.mesh_config()
    config.update(data=3, fsdp=1, tensor=1)
    with pytest.raises(ValueError, match="needs 3 devices; there are 8"):
        sharding.make_mesh(config)
    config.update(data=-1, fsdp=-1)
    with pytest.raises(ValueError, match="at most one of them -1"):
        sharding.make_mesh(config)
    config.update(data=-1, fsdp=4, tensor=2)
    assert dict(sharding.make_mesh(config).shape) == {"data": 1, "fsdp": 4, "tensor": 2}
    with pytest.raises(ValueError, match="mesh.rules='zero3'"):
        sharding.rules("zero3")
