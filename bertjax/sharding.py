"""Device meshes and shardings: the one module that touches JAX's mesh API.

A mesh has three axes: `data` (replicas), `fsdp` (replicas whose parameters and optimizer state are split
among them) and `tensor` (layers split across devices). The batch is split over `data` x `fsdp`. Which
parameter axis lies on which mesh axis is a rule preset, chosen by name in the config:

    dp        everything replicated; the batch split over all devices
    fsdp      parameters and optimizer state split along their hidden (`embed`) axis over `fsdp`
    fsdp_tp   as fsdp, and attention heads, feed-forward and vocabulary split over `tensor`

Parameters carry logical axis names (see `bertjax.model`); activations at block boundaries are
constrained with the `activation_*` names.
"""

import contextlib
import signal
import threading

import jax
import numpy as np
import optax
from flax import linen as nn
from jax.sharding import NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")

_ACTIVATIONS = (("activation_batch", BATCH), ("activation_length", None), ("activation_embed", None),
                ("layers", None))  # the stacked-layers axis of scanned parameters

RULES = {
    "dp": (("batch", BATCH), ("vocab", None), ("embed", None), ("mlp", None), ("heads", None),
           ("head_dim", None)) + _ACTIVATIONS,
    "fsdp": (("batch", BATCH), ("vocab", None), ("embed", "fsdp"), ("mlp", None), ("heads", None),
             ("head_dim", None)) + _ACTIVATIONS,
    "fsdp_tp": (("batch", BATCH), ("vocab", "tensor"), ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
                ("head_dim", None)) + _ACTIVATIONS,
}


def rules(preset: str):
    if preset not in RULES:
        raise ValueError(f"mesh.rules={preset!r}: choose one of {sorted(RULES)}.")
    return RULES[preset]


def make_mesh(mesh_config, devices=None) -> jax.sharding.Mesh:
    """A (data, fsdp, tensor) mesh over all devices; one size may be -1 for "the rest"."""
    devices = jax.devices() if devices is None else devices
    sizes = [mesh_config.data, mesh_config.fsdp, mesh_config.tensor]
    if sizes.count(-1) > 1 or any(size == 0 or size < -1 for size in sizes):
        raise ValueError(f"mesh sizes data={sizes[0]}, fsdp={sizes[1]}, tensor={sizes[2]}: use positive sizes, "
                         "at most one of them -1 (the rest of the devices).")
    known = int(np.prod([size for size in sizes if size != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide by the mesh's fixed sizes ({known}).")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"A mesh of data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} needs "
                         f"{int(np.prod(sizes))} devices; there are {len(devices)}.")
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices)


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh) -> NamedSharding:
    """Leading (batch) axis over data x fsdp, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH))


def param_shardings(boxed_abstract_params, mesh, preset: str):
    """Logical axis names of (boxed) parameters -> their NamedShardings under a rule preset."""
    return nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed_abstract_params), mesh, rules(preset))


def state_shardings(abstract_state, params_sharding, optimizer, mesh):
    """Shardings of a train state: parameters as given; optimizer moments like their parameters; the rest
    (step, counters, keys) replicated."""
    opt_sharding = optax.tree_map_params(
        optimizer, lambda _, sharding: sharding, abstract_state.opt_state, params_sharding,
        transform_non_params=lambda _: replicated(mesh))
    return abstract_state.replace(step=replicated(mesh), params=params_sharding, opt_state=opt_sharding,
                                  dropout_key=replicated(mesh))


def global_batch(local_batch: dict, mesh) -> dict:
    """This process's rows -> global arrays split over data x fsdp (every process passes its own rows)."""
    return jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch)  # one call: half the time


def with_shardings(abstract_tree, shardings):
    """Abstract arrays carrying their target shardings (what orbax restores onto)."""
    return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
                        abstract_tree, shardings)


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
    """Join JAX's multi-controller runtime: the same program on every host, each with its own devices.
    On TPU pods and SLURM clusters the arguments are detected; elsewhere pass all three."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes need it; others ignore it
    # SIGTERM is the preemption notice JAX's coordination service listens for: the command line's handler for
    # a stop before training (bertjax.cli) gives way to it.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)


@contextlib.contextmanager
def activate(mesh, preset: str):
    """The mesh and the preset's logical-axis rules, active while steps are traced and run."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules(preset)):
        yield


def check_batch_divides(global_batch_size: int, accumulation_steps: int, mesh, name: str) -> None:
    """A micro-batch must split evenly over the mesh's batch axes (data x fsdp)."""
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    micro = global_batch_size // accumulation_steps
    if micro % ways:
        raise ValueError(f"{name}={global_batch_size} gives micro-batches of {micro}, which do not split over "
                         f"data x fsdp = {ways} devices; choose a multiple of {ways * accumulation_steps}.")
