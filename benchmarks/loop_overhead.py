"""The train loop's own cost: steps/s of the real pretraining loop against the bare compiled step, on a model
small enough (BERT-tiny, 8 rows of 32 tokens) that any per-step host work, wait, transfer or Python shows.

    python benchmarks/loop_overhead.py [--prepared_dir DIR] [--steps 400] [--repeats 3]

1. Data: --prepared_dir (e.g. `make demo`'s runs/demo/data), else a 2,048-piece tokenizer trained on the
   built-in corpus and shards of it, in a temporary directory.
2. "bare": the pretraining task's compiled train step run --steps times back to back on one batch already on
   the device, with one wait at the end: what the device can do, with no loop around it.
3. "loop, batches in memory": `train.train_and_evaluate` (what `bertjax pretrain` runs) fed the same batch
   from a grain dataset in memory: the loop's own work per step (batch transfer, finite check one step late,
   metric sums, FLOP and token counts, progress, preemption check).
4. "loop, real pipeline": the same, reading the prepared shards through the real input pipeline
   (pairing, masking, packing in the main process; --num_workers for grain worker processes).

Each loop runs --steps updates with one log window every --steps/4 steps and no evaluation or checkpoint
inside the loop; its steps/s is the median of the windows after the first (which holds step 1's wait for the
device). Each figure is the median of --repeats runs, interleaved. One CPU device (JAX's default on a host).
"""

import argparse
import json
import pathlib
import statistics
import tempfile
import time

import grain
import jax

from bertjax import benchmark, train
from bertjax.configs import bert_tiny
from bertjax.tasks.pretraining import PretrainingTask


def make_config(prepared_dir, args, steps: int):
    config = bert_tiny.get_config()
    config.data.prepared_dir = str(prepared_dir)
    config.data.update(max_seq_length=args.length, max_predictions_per_seq=max(1, round(0.15 * args.length)),
                       num_workers=args.num_workers)
    config.train.update(num_steps=steps, global_batch_size=args.batch_size, log_every=max(1, steps // 4),
                        eval_every=0, checkpoint_every=0, log_format="plain")
    return config


class InMemoryTask(PretrainingTask):
    """The pretraining task whose train split is one batch repeated, from memory (a checkpointable grain
    dataset, as the loop requires)."""

    def __init__(self, config, batch):
        super().__init__(config)
        self._batch = batch

    def dataset(self, split, **kwargs):
        if split != "train":
            return super().dataset(split, **kwargs)
        return grain.MapDataset.source([self._batch]).repeat().to_iter_dataset(grain.ReadOptions(num_threads=0))


def bare_steps_per_second(config, batch, steps: int) -> float:
    batch = jax.device_put(batch)
    step = benchmark.compile_train_step(PretrainingTask(config), config.optim, batch)
    compiled, state = step.compiled, step.state
    for _ in range(5):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state, sums = compiled(state, batch)
    jax.block_until_ready((state, sums))
    return steps / (time.perf_counter() - start)


def loop_steps_per_second(config, task, workdir: pathlib.Path) -> tuple[float, float]:
    train.train_and_evaluate(config, workdir, task)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    windows = [record for record in records if record["split"] == "train"][1:]
    return (statistics.median(record["steps_per_second"] for record in windows),
            statistics.median(record["input_wait_fraction"] for record in windows))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared_dir", help="prepared shards with their tokenizer (default: made here)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bertjax-loop-"))
    prepared = pathlib.Path(args.prepared_dir) if args.prepared_dir else benchmark.builtin_prepared_data(work)
    config = make_config(prepared, args, args.steps)
    batch = next(iter(PretrainingTask(config).dataset("train", batch_size=args.batch_size, seed=0, train=True)))
    figures = {"bare": [], "loop, batches in memory": [], "loop, real pipeline": []}
    waits = []
    for repeat in range(args.repeats):
        figures["bare"].append(bare_steps_per_second(config, batch, args.steps))
        figures["loop, batches in memory"].append(
            loop_steps_per_second(config, InMemoryTask(config, batch), work / f"memory{repeat}")[0])
        rate, wait = loop_steps_per_second(config, PretrainingTask(config), work / f"pipeline{repeat}")
        figures["loop, real pipeline"].append(rate)
        waits.append(wait)
    bare = statistics.median(figures["bare"])
    print(f"\n{jax.devices()[0].device_kind}: BERT-tiny, {args.batch_size} x {args.length}, {args.steps} steps, "
          f"median of {args.repeats} runs (steps/s of each: min-max)")
    for name, rates in figures.items():
        rate = statistics.median(rates)
        print(f"{name:26s} {rate:8.1f} steps/s ({min(rates):.1f}-{max(rates):.1f}); "
              f"{1e3 / rate:6.2f} ms a step; {bare / rate - 1:+.1%} time a step against bare")
    print(f"input wait in the real-pipeline loop: {statistics.median(waits):.1%} of its time")


if __name__ == "__main__":
    main()
