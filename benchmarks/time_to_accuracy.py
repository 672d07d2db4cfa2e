"""Time to accuracy, MLPerf-style: the BERT recipe (`bert_tiny`) against the modern recipe (`modern_tiny`, about
the same parameter count) on the same prepared corpus and machine, then each fine-tuned on the `stdlib` task.

    python benchmarks/time_to_accuracy.py [--prepared_dir runs/demo/data] [--eval_every 100] [--seeds 0,1,2]
        [--bert_arg model.pre_layer_norm=true] [--modern_arg data.mask_rate=0.15]

1. Data: --prepared_dir (`make demo`'s runs/demo/data), else the built-in corpus with a 2,048-piece tokenizer,
   prepared in a temporary directory.
2. Each recipe trains for its config's own number of updates (--steps to change it) with the real train step
   and input pipeline, on one CPU device. The clock runs while training (input pipeline included) and stops
   for evaluations: every --eval_every updates, the held-out masked-LM loss on the same probe for both
   recipes: the validation split as single segments (no sentence pairs: the modern recipe has no sentence
   task and BERT's pairs hold random second sentences), masked at BERT's 15% with --probe_seeds mask draws.
3. The target is the BERT recipe's final held-out loss. For each recipe: the wall time, updates and model
   FLOPs (bertjax.flops, real tokens) of the first evaluation at or below it, and its loss at half and at all
   of the BERT recipe's training time (linear between evaluations); for reference, each final model's loss on
   its own recipe's held-out rows (BERT's: sentence pairs), at 15% too.
4. Each final model fine-tuned on `stdlib` (config glue_demo) once per --seeds: dev accuracy, mean ± sd.

The table it prints is docs/performance.md's. Run it on a quiet machine: two jobs on two cores distort it.
"""

import argparse
import copy
import json
import pathlib
import statistics
import tempfile
import time

import jax
import numpy as np

from bertjax import benchmark, finetune, runs, train
from bertjax.configs import bert_tiny, common, glue_demo, modern_tiny
from bertjax.optim import make_optimizer
from bertjax.tasks.pretraining import PretrainingTask

PROBE_MASK_RATE = 0.15  # BERT's
RECIPES = {"BERT (bert_tiny)": bert_tiny, "modern (modern_tiny)": modern_tiny}


def probe_task(config) -> PretrainingTask:
    """The held-out probe, the same for every recipe: the recipe's model, the validation split as single
    segments masked at 15%."""
    probe = copy.deepcopy(config)
    probe.unlock()
    probe.data.update(sentence_task="none", mask_rate=PROBE_MASK_RATE, eval_mask_rate=None, whole_word_masking=False,
                      max_predictions_per_seq=round(PROBE_MASK_RATE * probe.data.max_seq_length))
    return PretrainingTask(probe)


def held_out(probe: PretrainingTask, evaluate, params, seeds: int, batch_size: int) -> dict[str, float]:
    totals = None
    for seed in range(seeds):
        for batch in probe.dataset("validation", batch_size=batch_size, seed=seed, train=False):
            sums = jax.device_get(evaluate(params, batch))
            totals = sums if totals is None else {name: totals[name] + sums[name] for name in sums}
    return probe.summarize(totals)


def pretrain(name: str, config, eval_every: int, probe_seeds: int, workdir: pathlib.Path) -> list[dict]:
    """Train `config`'s recipe; the curve: one row per evaluation (step, training seconds, model FLOPs, loss)."""
    task, probe = PretrainingTask(config), probe_task(config)
    steps = config.train.num_steps
    optimizer = make_optimizer(config.optim, steps, task.model_config.num_layers)
    example = task.example_batch(config.train.global_batch_size)
    state = jax.jit(lambda: train.init_train_state(task, optimizer, config.seed, example))()
    step_fn, _ = train.compile_steps(task, optimizer, 1, donate=True)
    compiled = step_fn.lower(state, example).compile()
    evaluate = train.compile_evaluation(probe)
    iterator = iter(task.dataset("train", batch_size=config.train.global_batch_size, seed=config.seed, train=True))
    curve = [{"step": 0, "seconds": 0.0, "flops": 0.0, **held_out(probe, evaluate, state.params, probe_seeds,
                                                                    config.train.eval_batch_size)}]
    seconds = model_flops = 0.0
    start = time.perf_counter()
    for step in range(1, steps + 1):
        batch = next(iterator)
        model_flops += task.model_flops(batch)
        state, _ = compiled(state, batch)
        if step % eval_every == 0 or step == steps:
            jax.block_until_ready(state)
            seconds += time.perf_counter() - start
            metrics = held_out(probe, evaluate, state.params, probe_seeds, config.train.eval_batch_size)
            curve.append({"step": step, "seconds": seconds, "flops": model_flops, **metrics})
            print(f"{name}: step {step}, {seconds:.0f} s, held-out mlm_loss {metrics['mlm_loss']:.4f}, "
                  f"accuracy {metrics['mlm_accuracy']:.4f}", flush=True)
            start = time.perf_counter()
    # For reference: the final loss on the recipe's own held-out rows (BERT's: sentence pairs, half of them with
    # a random second sentence), masked at 15% too.
    curve[-1]["own_mlm_loss"] = held_out(task, train.compile_evaluation(task), state.params, probe_seeds,
                                         config.train.eval_batch_size)["mlm_loss"]
    runs.save_params(workdir, jax.device_get(state.params), config.to_dict(),
                     {"step": steps, "head": "pretraining", **task.identity}, step=steps)
    return curve


def first_reaching(curve: list[dict], target: float) -> dict | None:
    return next((row for row in curve if row["mlm_loss"] <= target + 1e-9), None)


def loss_at(curve: list[dict], seconds: float) -> float | None:
    """The held-out loss at `seconds` of training, linear between evaluations; None past the curve's end."""
    times, losses = [row["seconds"] for row in curve], [row["mlm_loss"] for row in curve]
    return float(np.interp(seconds, times, losses)) if seconds <= times[-1] + 1e-9 else None


def fine_tune(run: pathlib.Path, workdir: pathlib.Path, seeds: list[str]) -> list[float]:
    config = glue_demo.get_config()
    config.unlock()
    config.train.init_checkpoint = str(run)
    config.train.log_format = "plain"
    finetune.run_seeds(config, workdir, seeds)
    summary = json.loads((workdir / "summary.json").read_text())
    return summary["metrics"]["accuracy"]["values"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared_dir", help="prepared shards with their tokenizer (default: made here)")
    parser.add_argument("--steps", type=int, help="updates of each recipe (default: each config's own)")
    parser.add_argument("--eval_every", type=int, default=100)
    parser.add_argument("--probe_seeds", type=int, default=4, help="mask draws of the held-out probe")
    parser.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds; empty: no fine-tuning")
    parser.add_argument("--workdir", help="where runs are written (default: a temporary directory)")
    parser.add_argument("--bert_arg", help="the :arg of the BERT recipe's config, for ablations "
                        "(model.pre_layer_norm=true)")
    parser.add_argument("--modern_arg", help="the :arg of the modern recipe's config")
    args = parser.parse_args()
    work = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="bertjax-tta-"))
    prepared = pathlib.Path(args.prepared_dir) if args.prepared_dir else benchmark.builtin_prepared_data(work)
    curves, configs = {}, {}
    for index, ((name, module), arg) in enumerate(zip(RECIPES.items(), (args.bert_arg, args.modern_arg))):
        config = module.get_config(arg)
        config.unlock()
        config.data.prepared_dir = str(prepared)
        if args.steps:
            config.train.num_steps = args.steps
        common.validate(config)
        configs[name] = config
        curves[name] = pretrain(name, config, args.eval_every, args.probe_seeds, work / f"pretrain{index}")

    bert_curve = curves["BERT (bert_tiny)"]
    target, bert_seconds = bert_curve[-1]["mlm_loss"], bert_curve[-1]["seconds"]
    seeds = [seed for seed in args.seeds.split(",") if seed]
    accuracies = {name: fine_tune(work / f"pretrain{index}", work / f"finetune{index}", seeds) if seeds else []
                  for index, name in enumerate(curves)}
    print(f"\n{jax.devices()[0].device_kind}; target: the BERT recipe's final held-out MLM loss {target:.4f} "
          f"(validation split as single segments, 15% masked, {args.probe_seeds} mask draws); "
          f"evaluation every {args.eval_every} updates\n")
    print("| recipe | parameters | updates | training time | to the target: time | updates | model FLOPs "
          f"| loss at {bert_seconds / 2:.0f} s | loss at {bert_seconds:.0f} s | final loss | final accuracy "
          "| own held-out rows' loss | stdlib dev accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, curve in curves.items():
        task = PretrainingTask(configs[name])
        shapes = jax.eval_shape(task.init_params, jax.random.key(0), task.example_batch(1))
        parameters = sum(leaf.size for leaf in jax.tree.leaves(shapes))
        reached = first_reaching(curve, target)
        to_target = (f"{reached['seconds']:.0f} s ({reached['seconds'] / bert_seconds:.0%}) | {reached['step']} | "
                     f"{reached['flops']:.3g}" if reached else "not reached | - | -")
        at = [loss_at(curve, bert_seconds * share) for share in (0.5, 1.0)]
        values = accuracies[name]
        accuracy = (f"{statistics.mean(values):.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")
                    + f" ({len(values)} seeds)") if values else "-"
        print(f"| {name} | {parameters:,} | {curve[-1]['step']} | {curve[-1]['seconds']:.0f} s | {to_target} | "
              + " | ".join(f"{value:.4f}" if value is not None else "(ended)" for value in at)
              + f" | {curve[-1]['mlm_loss']:.4f} | {curve[-1]['mlm_accuracy']:.4f} | {curve[-1]['own_mlm_loss']:.4f} "
              f"| {accuracy} |")
    (work / "curves.json").write_text(json.dumps(curves, indent=1))
    print(f"\ncurves: {work / 'curves.json'}")


if __name__ == "__main__":
    main()
