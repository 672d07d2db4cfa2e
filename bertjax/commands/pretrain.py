"""Pretrain a BERT (masked LM + next-sentence or sentence-order prediction), or continue one; or, as the
config's `task` says, a forward (GPT-style) language model or one of the objectives BERT is compared with
(`bertjax.tasks.causal_lm`).

    bertjax pretrain --config bert_tiny --workdir runs/demo/pretrain --config.data.prepared_dir=runs/demo/data
    bertjax pretrain --config gpt_tiny --workdir runs/demo/gpt --config.data.prepared_dir=runs/demo/data
    bertjax pretrain --config bert_base --workdir runs/base --config.data.prepared_dir=data/wiki \\
        --config.train.num_steps=1000000

The data is `data.prepared_dir` (made by `bertjax prepare_data`), read with the tokenizer stored in it.
Running the same command again resumes from the work directory's latest checkpoint. The work directory
gets config.json, checkpoints/, metrics.jsonl and TensorBoard event files. On SIGTERM or Ctrl-C the run
finishes its step, writes a checkpoint and exits with status 75 (a second Ctrl-C stops at once); a
non-finite loss stops it with status 1 (see docs/reliability.md).

Several hosts (a TPU pod slice, a SLURM GPU job): run the same command on every host with --distributed;
elsewhere add --coordinator_address=HOST:PORT --num_processes=N --process_id=I (see docs/scaling.md).
"""

from absl import flags

from bertjax import cli

_CONFIG = cli.DEFINE_config(training=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.", required=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join JAX's multi-process runtime (detected on TPU pods and SLURM clusters).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, where not detected.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes, where not detected.", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, where not detected.", lower_bound=0)
_UNIGRAM_BASELINE = flags.DEFINE_bool(
    "unigram_baseline", False,
    "BERT pretraining: at the end, compare with a context-free guess (reads the training split once).")


def make_task(config):
    """The task the config's `task` key names."""
    from bertjax.tasks import causal_lm
    from bertjax.tasks.pretraining import PretrainingTask

    if config.task == "pretraining":
        return PretrainingTask(config)
    if config.task in causal_lm.OBJECTIVES:
        return causal_lm.LanguageModelTask(config)
    raise ValueError(f"task={config.task!r} is unknown; choose pretraining or one of {causal_lm.OBJECTIVES}.")


def main(argv):
    del argv
    import jax

    from bertjax import sharding, train

    if _DISTRIBUTED.value or _COORDINATOR.value:
        sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    task = make_task(_CONFIG.value)
    metrics = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, task)
    if jax.process_index() != 0:
        return
    print(f"run directory {_WORKDIR.value}: config.json, checkpoints/, metrics.jsonl, TensorBoard events; "
          f"peak host memory {cli.peak_memory_mb():,.0f} MB")
    print("final evaluation: " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
    if _UNIGRAM_BASELINE.value and _CONFIG.value.task == "pretraining":
        baseline = task.unigram_baseline(_CONFIG.value.train.eval_batch_size)
        print(f"held-out MLM accuracy {metrics['mlm_accuracy']:.1%} (loss {metrics['mlm_loss']:.3f}) against the "
              f"unigram baseline's {baseline['mlm_accuracy']:.1%} (loss {baseline['mlm_loss']:.3f})")
