"""One process of a two-process pretraining run for test_multihost.py's preemption test (not a test itself).

    python tests/multihost_preemption_worker.py PROCESS_ID PORT PREPARED_DIR TOKENIZER WORKDIR [STEP_SECONDS]

Runs the whole train loop; each step waits STEP_SECONDS first (so that a test can signal the run in the
middle), and a run stopped by a preemption notice writes WORKDIR/stopped-PROCESS_ID.json with its step and
exits 75, as the command line does.
"""

import json
import os
import pathlib
import sys
import time

process_id, port = map(int, sys.argv[1:3])
prepared_dir, tokenizer_path, workdir = sys.argv[3:6]
step_seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

from bertjax import faults, sharding, train  # noqa: E402
from bertjax.configs import common  # noqa: E402
from bertjax.tasks.pretraining import PretrainingTask  # noqa: E402

sharding.initialize_distributed(f"127.0.0.1:{port}", 2, process_id)


class SlowTask(PretrainingTask):
    def real_tokens(self, batch):  # read once per training step, before the step is dispatched
        time.sleep(step_seconds)
        return super().real_tokens(batch)


config = common.get_config()
config.model.update(variant="tiny", vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                    max_position_embeddings=64)
config.data.update(tokenizer=tokenizer_path, prepared_dir=prepared_dir, max_seq_length=64, max_predictions_per_seq=10)
config.optim.update(learning_rate=1e-3, warmup_steps=1)
config.mesh.update(data=2, fsdp=-1, tensor=1, rules="fsdp")
config.train.update(num_steps=8, global_batch_size=16, eval_batch_size=16, log_every=1, eval_every=0,
                    checkpoint_every=100, keep_checkpoints=3)
try:
    metrics = train.train_and_evaluate(config, workdir, SlowTask(config))
except faults.Preempted as stopped:
    (pathlib.Path(workdir) / f"stopped-{process_id}.json").write_text(json.dumps({"step": stopped.step}))
    sys.exit(faults.PREEMPTED_EXIT_CODE)
(pathlib.Path(workdir) / f"result-{process_id}.json").write_text(json.dumps(metrics))
