"""One process of a multi-process run, started by test_multihost.py (not a test itself).

    python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT DEVICES PREPARED_DIR TOKENIZER WORKDIR

Each process takes its rows of the same global batches, trains a few steps on a mesh over every process's
devices, then runs the whole train loop briefly; process 0 writes what it saw to WORKDIR/result.json.
"""

import json
import os
import pathlib
import sys

process_id, num_processes, port, devices = map(int, sys.argv[1:5])
prepared_dir, tokenizer_path, workdir = sys.argv[5:8]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

from bertjax import sharding, train  # noqa: E402
from bertjax.optim import make_optimizer  # noqa: E402
from bertjax.tasks.pretraining import PretrainingTask  # noqa: E402
from bertjax.configs import common  # noqa: E402

GLOBAL_BATCH, STEPS = 16, 4

if num_processes > 1:
    sharding.initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id)

config = common.get_config()
config.model.update(variant="tiny", vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                    max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0)
config.data.update(tokenizer=tokenizer_path, prepared_dir=prepared_dir, max_seq_length=64, max_predictions_per_seq=10)
config.optim.update(learning_rate=1e-3, warmup_steps=1)
config.mesh.update(data=2, fsdp=-1, tensor=1, rules="fsdp")
task = PretrainingTask(config)
optimizer = make_optimizer(config.optim, STEPS)

# The same global batches in every process; each process feeds only its rows.
source = iter(task.dataset("train", batch_size=GLOBAL_BATCH, seed=0, train=True))
global_batches = [next(source) for _ in range(STEPS)]
rows = GLOBAL_BATCH // jax.process_count()
start = jax.process_index() * rows

mesh = sharding.make_mesh(config.mesh)
losses = []
with sharding.activate(mesh, config.mesh.rules):
    example = {name: value[:rows] for name, value in global_batches[0].items()}
    abstract = jax.eval_shape(lambda: train.init_train_state(task, optimizer, 0, example))
    boxed = jax.eval_shape(lambda: task.init_params(jax.random.PRNGKey(0), example, boxed=True))
    shardings = sharding.state_shardings(abstract, sharding.param_shardings(boxed, mesh, "fsdp"), optimizer, mesh)
    state = jax.jit(lambda: train.init_train_state(task, optimizer, 0, example), out_shardings=shardings)()
    step, _ = train.compile_steps(task, optimizer, 1, shardings, mesh)
    for batch in global_batches:
        local = {name: value[start:start + rows] for name, value in batch.items()}
        state, sums = step(state, sharding.global_batch(local, mesh))
        losses.append(float(jax.device_get(sums["loss_sum"])))

# The whole loop, briefly: per-process data, sharded checkpoints, evaluation split by rows.
config.train.update(num_steps=2, global_batch_size=GLOBAL_BATCH, eval_batch_size=16, log_every=1, eval_every=0,
                    checkpoint_every=2)
metrics = train.train_and_evaluate(config, pathlib.Path(workdir) / "run", task)

if jax.process_index() == 0:
    (pathlib.Path(workdir) / "result.json").write_text(json.dumps(
        {"losses": losses, "eval": metrics, "process_count": jax.process_count(), "devices": jax.device_count()}))
