"""The one train loop, used by pretraining and fine-tuning alike, and its pure step functions.

A task (`bertjax.tasks.*`, the contract in `bertjax.tasks.base`) supplies the model's parameters, loss, metric
sums and datasets; this module owns the train state, the jitted steps (compiled in `compile_steps` and
`compile_evaluation`, the one jit site), checkpoints, evaluation and reporting. `fit` is the small loop of
models outside the contract (feature-based classifiers over frozen states).
"""

import functools
import pathlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from bertjax import checkpoint, faults, files, flops, reporting, sharding
from bertjax.configs import common
from bertjax.optim import learning_rate_schedule, make_optimizer
from bertjax.tasks.base import PredictiveTask, Task, is_predictive


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # () int32: updates done
    params: Any
    opt_state: Any
    dropout_key: jax.Array  # (2,) uint32; each step's dropout key is folded from it and the step


def init_train_state(task, optimizer: optax.GradientTransformation, seed: int, batch) -> TrainState:
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    params = task.init_params(init_key, batch)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), dropout_key)


def _add(left, right):
    return jax.tree.map(jnp.add, left, right)


# An evaluation's running metric sums stay on the device: one compiled add per batch, not one per metric.
_accumulate = jax.jit(_add, donate_argnums=(0,))


def train_step(state: TrainState, batch, *, task, optimizer: optax.GradientTransformation,
               accumulation_steps: int = 1, skip_nonfinite: bool = False) -> tuple[TrainState, dict]:
    """One update from one global batch, in `accumulation_steps` micro-batches whose summed gradients equal
    the whole batch's (each micro-batch's losses divide by the whole batch's weights). Returns the new
    state and this step's metric sums; `nonfinite_steps` is 1 when the loss or gradient norm is not finite.
    With `skip_nonfinite` such a step keeps the old parameters and optimizer state, and its sums are zero."""
    normalizers = task.normalizers(batch)
    step_key = jax.random.fold_in(state.dropout_key, state.step)
    gradient = jax.value_and_grad(task.loss, has_aux=True)
    if accumulation_steps == 1:
        (loss, sums), grads = gradient(state.params, batch, step_key, normalizers)
    else:
        micro_batches = jax.tree.map(lambda x: x.reshape(accumulation_steps, -1, *x.shape[1:]), batch)

        def accumulate(totals, inputs):
            index, micro_batch = inputs
            return _add(totals, gradient(state.params, micro_batch, jax.random.fold_in(step_key, index),
                                         normalizers)), None

        first = jax.tree.map(lambda x: x[0], micro_batches)
        zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(gradient, state.params, first, step_key, normalizers))
        ((loss, sums), grads), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(accumulation_steps), micro_batches))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    sums = {**sums, "loss_sum": loss, "grad_norm_sum": grad_norm, "steps": jnp.ones(())}
    if skip_nonfinite:
        # Not optax.apply_if_finite: it adds counters to the optimizer state (checkpoints of runs without it
        # would no longer restore), looks at the gradients only, and a skipped step must not count its sums.
        params, opt_state, sums = jax.tree.map(lambda new, old: jnp.where(finite, new, old), (params, opt_state, sums),
                                               (state.params, state.opt_state, jax.tree.map(jnp.zeros_like, sums)))
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return state, {**sums, "nonfinite_steps": 1.0 - finite.astype(jnp.float32)}


def eval_step(params, batch, *, task) -> dict:
    """Metric sums of one evaluation batch (no dropout); padding examples weigh nothing."""
    return task.loss(params, batch, None)[1]


# Outputs of `predict_step` that are batch totals, added up over a split instead of gathered row by row.
_SPLIT_TOTALS = ("loss_sum", "loss_weight")


def predict_step(params, batch, *, task: PredictiveTask) -> dict:
    """A fine-tuning task's per-row outputs (no dropout), with each row's example index and weight, and the
    batch's loss as training weighs it: `loss_sum` = the loss times its normalizer, `loss_weight` the
    normalizer (padding rows weigh nothing), so that a split's loss is the ratio of their totals."""
    loss, _ = task.loss(params, batch, None)
    weight = sum(jnp.asarray(value, jnp.float32) for value in task.normalizers(batch).values())
    return {**task.predict(params, batch), "example_index": batch["example_index"],
            "example_weight": batch["example_weight"], "loss_sum": loss * weight, "loss_weight": weight}


def compile_evaluation(task: Task, params_shardings=None, mesh=None):
    """The jitted evaluation step: metric sums of a batch, or a predictive task's predictions. On a mesh the
    parameters keep `params_shardings`, batches are split over data x fsdp, and the outputs are replicated
    (every process gets all of them)."""
    evaluate = functools.partial(predict_step if is_predictive(task) else eval_step, task=task)
    if mesh is None:
        return jax.jit(evaluate)
    return jax.jit(evaluate, in_shardings=(params_shardings, sharding.batch_sharding(mesh)),
                   out_shardings=sharding.replicated(mesh))


def compile_steps(task: Task, optimizer, accumulation_steps: int, state_shardings=None, mesh=None,
                  donate: bool = True, skip_nonfinite: bool = False):
    """The jitted train and evaluation steps: the train state's buffers are donated to the new state. On a
    mesh, the state keeps `state_shardings`, batches are split over data x fsdp, and metric sums are
    replicated. The evaluation step is `compile_evaluation`'s."""
    train = functools.partial(train_step, task=task, optimizer=optimizer, accumulation_steps=accumulation_steps,
                              skip_nonfinite=skip_nonfinite)
    donated = (0,) if donate else ()
    if mesh is None:
        return jax.jit(train, donate_argnums=donated), compile_evaluation(task)
    batch, whole = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    return (jax.jit(train, in_shardings=(state_shardings, batch), out_shardings=(state_shardings, whole),
                    donate_argnums=donated),
            compile_evaluation(task, state_shardings.params, mesh))


def fit(loss: Callable[..., jax.Array], params, optimizer: optax.GradientTransformation,
        batches: Iterable[tuple]) -> Any:
    """The small loop of models outside the task contract (a feature-based classifier or tagger over a frozen
    encoder's states): one jitted update of `loss(params, *inputs)` per element of `batches`, no dropout,
    no checkpoints. Returns the final parameters."""

    @jax.jit
    def step(params, opt_state, *inputs):
        grads = jax.grad(loss)(params, *inputs)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = optimizer.init(params)
    for inputs in batches:
        params, opt_state = step(params, opt_state, *inputs)
    return params


def itstime(step: int, every: int, total: int, *, last: bool = True) -> bool:
    """Whether a periodic action (log, checkpoint, evaluation) is due after update `step` of `total`: every
    `every` steps (never when `every` is 0), and at the last step too; with `last=False` never at the last
    step (the caller does it after the loop)."""
    if every <= 0:
        return False
    if step == total:
        return last
    return step % every == 0


def count_parameters(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


def _split_batches(task, split: str, batch_size: int):
    return task.dataset(split, batch_size=batch_size, seed=0, train=False, process_index=jax.process_index(),
                        process_count=jax.process_count())


def predict(task, predict_fn, params, mesh, split: str, *, batch_size: int) -> tuple[dict[str, np.ndarray], int]:
    """A predictive task's outputs for every example of `split` exactly once, ordered by example index
    (padding rows of the last batch dropped), and the number of real tokens this process read. The split's
    `loss_sum` and `loss_weight` totals come with the outputs, as floats."""
    parts, totals, tokens = [], dict.fromkeys(_SPLIT_TOTALS, 0.0), 0
    for batch in _split_batches(task, split, batch_size):
        tokens += task.real_tokens(batch)
        outputs = jax.device_get(predict_fn(params, sharding.global_batch(batch, mesh)))
        for name in _SPLIT_TOTALS:
            totals[name] += float(outputs.pop(name))
        keep = outputs.pop("example_weight") > 0
        parts.append({name: value[keep] for name, value in outputs.items()})
    if not parts:
        raise ValueError(f"{task.name}: split {split!r} has no examples.")
    merged = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    index = merged.pop("example_index")
    if len(np.unique(index)) != len(index):
        raise AssertionError(f"{task.name}: split {split!r} yielded an example twice.")
    order = np.argsort(index, kind="stable")
    return {**{name: value[order] for name, value in merged.items()}, **totals}, tokens


def split_loss(predictions: dict) -> float:
    """A split's loss as training weighs it, from `predict`'s totals."""
    return predictions["loss_sum"] / max(predictions["loss_weight"], 1e-8)


def evaluate(task, evaluate_step, params, mesh, *, batch_size: int,
             splits: tuple[str, ...] | None = None) -> tuple[dict[str, float], int]:
    """Metrics over the whole of each evaluation split, and the number of real tokens this process read;
    a predictive task's include `loss`, the split's loss weighted as in training. With several splits
    (MNLI's matched and mismatched) metric names are prefixed with the split's.
    `splits`: a predictive task's splits to score instead of its `eval_splits`."""
    if is_predictive(task):
        splits = task.eval_splits if splits is None else splits
        metrics, tokens = {}, 0
        for split in splits:
            predictions, split_tokens = predict(task, evaluate_step, params, mesh, split, batch_size=batch_size)
            tokens += split_tokens
            prefix = f"{split}/" if len(splits) > 1 else ""
            scores = {"loss": split_loss(predictions), **task.evaluate(predictions, split)}
            metrics.update({prefix + name: value for name, value in scores.items()})
        return metrics, tokens
    totals, tokens = None, 0
    for batch in _split_batches(task, "validation", batch_size):
        tokens += task.real_tokens(batch)
        sums = evaluate_step(params, sharding.global_batch(batch, mesh))
        totals = sums if totals is None else _accumulate(totals, sums)
    return task.summarize(jax.device_get(totals)), tokens


class _Window:
    """What the steps since the last log cost: wall time (less evaluations), time blocked on the input
    pipeline, real tokens and model FLOPs (all processes), and their metric sums, added up on the host as
    the finite check reads each step's (one step late)."""

    def __init__(self):
        self.start, self.input_seconds, self.tokens, self.flops = time.perf_counter(), 0.0, 0, 0.0
        self.excluded_seconds = 0.0
        self.sums = None

    def add_sums(self, step_sums: dict | None) -> None:
        if step_sums is not None:
            self.sums = step_sums if self.sums is None else jax.tree.map(np.add, self.sums, step_sums)

    @property
    def seconds(self) -> float:
        return max(time.perf_counter() - self.start - self.excluded_seconds, 1e-9)

    def add(self, input_seconds: float, tokens: int, flops: float) -> None:
        self.input_seconds += input_seconds
        self.tokens += tokens
        self.flops += flops


def _summary(window: _Window, learning_rate: float, task, peak_flops: float | None) -> dict[str, float]:
    """The logged training figures; `mfu` (model FLOPs over the chips' peak) where the peak is known."""
    sums = window.sums
    steps = max(float(sums["steps"]), 1.0)  # 0 when every step of the window was skipped
    seconds = window.seconds
    figures = {**task.summarize(sums), "loss": float(sums["loss_sum"]) / steps,
               "grad_norm": float(sums["grad_norm_sum"]) / steps, "learning_rate": learning_rate,
               "tokens_per_second": window.tokens / seconds, "steps_per_second": steps / seconds,
               "input_wait_fraction": window.input_seconds / seconds, "nonfinite_steps": float(sums["nonfinite_steps"])}
    if peak_flops:
        figures["mfu"] = window.flops / seconds / peak_flops
    return figures


def _peak_flops(train_config) -> float | None:
    """The peak FLOP/s of all devices together: the configured `train.peak_tflops` per chip, else the data
    sheet's for a known chip; None on a CPU."""
    if train_config.get("peak_tflops"):
        return train_config.peak_tflops * 1e12 * jax.device_count()
    known = flops.known_peak()
    return known[1] * jax.device_count() if known else None


def check_batch_sizes(train, process_count: int) -> int:
    """The per-process batch, after checking that the global batch divides as configured."""
    divisor = process_count * train.accumulation_steps
    if train.global_batch_size % divisor:
        raise ValueError(f"train.global_batch_size={train.global_batch_size} does not divide into "
                         f"{process_count} process(es) x {train.accumulation_steps} accumulation step(s); "
                         f"choose a multiple of {divisor}.")
    if train.eval_batch_size % process_count:
        raise ValueError(f"train.eval_batch_size={train.eval_batch_size} does not divide into {process_count} "
                         "processes.")
    return train.global_batch_size // process_count


def _build_state(config, task, optimizer, example, mesh, iterator, checkpointer):
    """The train state, created or restored already sharded over `mesh`, and how it was obtained."""
    fresh_state = functools.partial(init_train_state, task, optimizer, config.seed, example)
    abstract_state = jax.eval_shape(fresh_state)
    boxed_params = jax.eval_shape(functools.partial(task.init_params, jax.random.PRNGKey(0), example, boxed=True))
    params_sharding = sharding.param_shardings(boxed_params, mesh, config.mesh.rules)
    state_shardings = sharding.state_shardings(abstract_state, params_sharding, optimizer, mesh)

    def with_params(state, params):
        params = jax.device_put(params, params_sharding)
        return state.replace(params=params, opt_state=jax.jit(optimizer.init)(params))

    state, how = checkpoint.restore_or_init(
        checkpointer, sharding.with_shardings(abstract_state, state_shardings),
        jax.jit(fresh_state, out_shardings=state_shardings), iterator, config.train.init_checkpoint,
        with_params=with_params, identity=task.identity, fresh=task.fresh_parameters)
    return state, state_shardings, how


def train_and_evaluate(config, workdir: str | pathlib.Path, task) -> dict[str, float]:
    """Train `task` for `config.train.num_steps` updates in `workdir`, resuming from its latest checkpoint;
    evaluate every `eval_every` steps and at the end. Returns the final evaluation metrics."""
    workdir = pathlib.Path(workdir)
    train_config = config.train
    reporting.check_log_format(train_config.log_format)
    common.validate(config)
    faults.check_workdir(workdir)
    batch_size = check_batch_sizes(train_config, jax.process_count())
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_divides(train_config.global_batch_size, train_config.accumulation_steps, mesh,
                                 "train.global_batch_size")
    sharding.check_batch_divides(train_config.eval_batch_size, 1, mesh, "train.eval_batch_size")
    batch_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    schedule = learning_rate_schedule(config.optim, train_config.num_steps)
    optimizer = make_optimizer(config.optim, train_config.num_steps, task.model_config.num_layers,
                               schedule=schedule)
    iterator = iter(task.dataset("train", batch_size=batch_size, seed=config.seed, train=True,
                                 process_index=jax.process_index(), process_count=jax.process_count()))
    example = task.example_batch(batch_size)
    checkpointer = checkpoint.Checkpointer(workdir, keep=train_config.keep_checkpoints)
    best = checkpoint.BestCheckpoint(workdir, task.metric) if is_predictive(task) else None
    writer, progress = reporting.MetricWriter(workdir), None
    finite_guard = faults.FiniteGuard(checkpointer, train_config.max_bad_steps)
    with sharding.activate(mesh, config.mesh.rules), faults.PreemptionGuard(checkpointer) as preemption:
        state, state_shardings, how = _build_state(config, task, optimizer, example, mesh, iterator, checkpointer)
        start_step = int(state.step)
        if jax.process_index() == 0:  # after the checkpoint is found to fit: a refused run leaves it alone
            files.write_json(workdir / "config.json", config.to_dict())
        faults.warn_if_disk_small(checkpointer.directory, faults.state_bytes(state), train_config.keep_checkpoints)
        train_step_fn, eval_step_fn = compile_steps(task, optimizer, train_config.accumulation_steps,
                                                    state_shardings, mesh, donate=train_config.donate_state,
                                                    skip_nonfinite=train_config.max_bad_steps > 0)
        global_example = {name: jax.ShapeDtypeStruct((train_config.global_batch_size, *value.shape[1:]), value.dtype)
                          for name, value in example.items()}
        compile_start = time.perf_counter()
        compiled = train_step_fn.lower(state, global_example).compile()
        compile_seconds = time.perf_counter() - compile_start
        xla_flops = flops.xla_flops(compiled)
        progress = reporting.Progress(start_step, train_config.num_steps, train_config.log_format)
        progress.write(
            f"{task.name}: {count_parameters(state.params):,} parameters; "
            + (f"{xla_flops / 1e9:,.1f} GFLOPs per device per step (XLA); " if xla_flops else "")
            + f"global batch {train_config.global_batch_size} = {jax.process_count()} process(es) x {batch_size}"
            + (f" in {train_config.accumulation_steps} micro-batches" if train_config.accumulation_steps > 1 else "")
            + f", {train_config.global_batch_size // train_config.accumulation_steps // batch_ways} per device"
            + f"; mesh {dict(mesh.shape)} of {jax.devices()[0].platform} devices, rules {config.mesh.rules}; {how}")

        def run_evaluation(step):
            start = time.perf_counter()
            metrics, tokens = evaluate(task, eval_step_fn, state.params, mesh,
                                       batch_size=train_config.eval_batch_size // jax.process_count())
            writer.write(step, "eval", metrics)
            shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
            progress.write(f"step {step} evaluation ({tokens:,} tokens, {time.perf_counter() - start:.1f}s): {shown}")
            if best is not None and best.offer(step, state.params, metrics):
                progress.write(f"step {step}: best {task.metric} so far; parameters kept in {best.directory}")
            logging.info("Evaluation at step %d: %s", step, metrics)
            return step, metrics

        def read_last_step():  # its metric sums, read and checked now rather than after the next step
            window.add_sums(finite_guard.flush())

        def save_checkpoint(step, data_position=iterator):  # only steps whose sums were checked finite
            read_last_step()
            checkpointer.save(step, state, data_position, {"step": step, **task.identity})  # written meanwhile

        def save_on_stop(step, data_position):  # a signal while the loop waits for the batch after `step`
            if step == start_step:
                return None  # no step since the checkpoint it resumed from (or ever)
            if checkpointer.latest_step() != step:
                save_checkpoint(step, data_position)
            checkpointer.wait()
            return step

        peak = _peak_flops(train_config)

        def step_flops(batch) -> float:  # the task's count of model FLOPs, else XLA's of the compiled step
            counted = task.model_flops(batch)
            return (xla_flops or 0.0) * jax.device_count() if counted is None else counted
        window, last_eval = _Window(), None
        try:
            for step in range(start_step + 1, train_config.num_steps + 1):
                waited = time.perf_counter()
                # A signal while the pipeline stalls writes the last step's checkpoint, with the data position
                # from before this batch, and stops the run (see faults.PreemptionGuard).
                before = checkpoint.FrozenPosition(iterator) if preemption.watching else None
                with preemption.waiting(functools.partial(save_on_stop, step - 1, before)):
                    batch = next(iterator)
                global_batch = sharding.global_batch(batch, mesh)
                # Other processes' batches are about the same size: counted as this one's.
                window.add(time.perf_counter() - waited, task.real_tokens(batch) * jax.process_count(),
                           step_flops(batch) * jax.process_count())
                state, step_sums = compiled(state, global_batch)
                # Nothing of this step is read before the next is dispatched: the sums of the step before.
                window.add_sums(finite_guard.observe(step, step_sums))
                progress.update()
                if step == start_step + 1:  # one wait for the device, to say when training really began
                    jax.block_until_ready(step_sums)
                    age = reporting.process_age()
                    progress.write(f"first step after {age:.1f} s from process start (compile {compile_seconds:.1f} s)"
                                   if age is not None else f"first step done (compile {compile_seconds:.1f} s)")
                if itstime(step, train_config.log_every, train_config.num_steps):
                    read_last_step()
                    metrics = _summary(window, float(schedule(step - 1)), task, peak)
                    writer.write(step, "train", metrics)
                    progress.show({"loss": f"{metrics['loss']:.4f}", "lr": f"{metrics['learning_rate']:.2e}",
                                   "tokens/s": f"{metrics['tokens_per_second']:,.0f}",
                                   **({"mfu": f"{metrics['mfu']:.1%}"} if "mfu" in metrics else {}),
                                   "input_wait": f"{metrics['input_wait_fraction']:.0%}"})
                    window = _Window()
                if itstime(step, train_config.checkpoint_every, train_config.num_steps):
                    save_checkpoint(step)
                if preemption.requested(step):
                    if checkpointer.latest_step() != step:
                        save_checkpoint(step)
                    checkpointer.wait()
                    raise faults.Preempted(step, checkpointer.directory / str(step), preemption.signal_name)
                if itstime(step, train_config.eval_every, train_config.num_steps, last=False):
                    evaluation_start = time.perf_counter()
                    last_eval = run_evaluation(step)
                    window.excluded_seconds += time.perf_counter() - evaluation_start
            final_step = int(state.step)
            finite_guard.flush()
            if checkpointer.latest_step() != final_step:
                save_checkpoint(final_step)
            if last_eval is None or last_eval[0] != final_step:
                last_eval = run_evaluation(final_step)
        finally:
            checkpointer.wait()
            checkpointer.close()
            if best is not None:
                best.close()
            progress.close()
            writer.close()
    return last_eval[1]
