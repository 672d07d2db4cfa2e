"""Checkpoints: the one wrapper over orbax's `CheckpointManager`.

A checkpoint holds the train state (parameters, optimizer state, step, dropout key), the data iterator's
state and a small JSON record, under `WORKDIR/checkpoints/STEP/`. orbax writes each checkpoint into a
temporary directory (`STEP.orbax-checkpoint-tmp-*`) and renames it when complete, so a run killed mid-save
leaves the previous one intact; the next run deletes such leftovers. Saves are asynchronous: training goes
on while the files are written.

The record carries a digest of the state's bits (`state_digest`), so a checkpoint whose files were damaged
after the rename is caught on restore, as is one that orbax cannot read at all: the run then warns, moves it
to `WORKDIR/corrupt_checkpoints/` and resumes from the newest good one.

Resume precedence (`restore_or_init`): the work directory's latest good checkpoint (everything: exact
resume), else `init_checkpoint` (parameters only: continued pretraining or fine-tuning), else fresh
initialisation.
"""

import contextlib
import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util
from jax.experimental import multihost_utils

from bertjax import convert
from bertjax.faults import CheckpointWriteError
from bertjax.model import BertConfig


def _leaf_bits(leaf: jax.Array) -> jax.Array:
    """The raw bits of every element as uint32 (floats of 2 or 4 bytes, integers, booleans)."""
    if leaf.dtype == jnp.bool_:
        return leaf.astype(jnp.uint32)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[leaf.dtype.itemsize]
    return jax.lax.bitcast_convert_type(leaf, unsigned).astype(jnp.uint32)


@jax.jit
def _digest(tree) -> jax.Array:
    """A position-weighted sum of every leaf's bits, modulo 2**32: integer arithmetic, so the same on any
    device layout, and any changed bit changes it."""
    total = jnp.zeros((), jnp.uint32)
    for index, leaf in enumerate(jax.tree.leaves(tree)):
        bits = _leaf_bits(jnp.asarray(leaf))
        positions = jnp.arange(bits.size, dtype=jnp.uint32).reshape(bits.shape) * 2 + 1
        total = total * jnp.uint32(1_000_003) + jnp.sum(bits * positions, dtype=jnp.uint32) + jnp.uint32(index)
    return total


def state_digest(state: Any) -> int:
    return int(jax.device_get(_digest(state)))


class _ShapeMismatch(ValueError):
    """A readable checkpoint of another model: a config error, not damage, so no fallback."""


class Checkpointer:
    def __init__(self, workdir: str | pathlib.Path, *, keep: int):
        self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True),
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "data_iterator": grain.checkpoint.CheckpointHandler(),
                           "record": ocp.JsonCheckpointHandler()})
        self._writing: int | None = None

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def reached_preemption(self, step: int) -> bool:
        """True on every process at the same step once any received a preemption notice (multi-process)."""
        return self._manager.reached_preemption(step)

    def save(self, step: int, state: Any, data_iterator, record: dict) -> None:
        """Start writing a checkpoint of `step` in the background (the caller decides when one is due). A
        failure of this or the previous background write raises `CheckpointWriteError`."""
        record = {**record, "state_digest": state_digest(state)}
        try:
            self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data_iterator=grain.checkpoint.CheckpointSave(data_iterator),
                record=ocp.args.JsonSave(record)), force=True)
        except Exception as error:  # noqa: BLE001 - any I/O failure inside orbax, reported with what to do
            self._write_failed(self._writing if self._writing is not None else step, error)
        self._writing = step

    def wait(self) -> None:
        """Block until the background write is done; raise `CheckpointWriteError` if it failed."""
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except Exception as error:  # noqa: BLE001
            self._write_failed(self._writing, error)
        self._writing = None

    def _write_failed(self, step: int | None, error: Exception):
        self._writing = None
        self._manager.reload()
        good = [found for found in self._manager.all_steps() if found != step]
        kept = (f"the previous checkpoint {self.directory / str(max(good))} is intact" if good
                else "no earlier checkpoint exists")
        raise CheckpointWriteError(
            f"Writing checkpoint {step} in {self.directory} failed ({type(error).__name__}: {error}); {kept}. Free "
            "disk space or fix the directory, then run the same command to resume.") from error

    def close(self) -> None:
        try:
            self._manager.close()
        except Exception as error:  # noqa: BLE001 - a failed write was reported already; closing must not mask it
            logging.warning("Closing the checkpoint manager: %s", error)

    def restore(self, step: int, abstract_state: Any, data_iterator) -> tuple[Any, dict]:
        """The state at `step` onto `abstract_state`'s shapes and shardings; sets the iterator's position.
        Raises `_ShapeMismatch` for a checkpoint of another model, anything else for a damaged one."""
        self._check_shapes(step, abstract_state.params)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data_iterator=grain.checkpoint.CheckpointRestore(data_iterator),
            record=ocp.args.JsonRestore()))
        expected = restored.record.get("state_digest")
        if expected is not None and state_digest(restored.state) != expected:
            raise ValueError(f"the restored state's digest {state_digest(restored.state)} differs from the "
                             f"recorded {expected}: its files were changed after they were written")
        return restored.state, restored.record

    def _check_shapes(self, step: int, abstract_params: Any) -> None:
        metadata = self._manager.item_metadata(step).state
        stored = traverse_util.flatten_dict(metadata.tree["params"], sep="/")
        wanted = traverse_util.flatten_dict(abstract_params, sep="/")
        problems = [f"{name}: checkpoint {tuple(stored[name].shape)}, config {tuple(want.shape)}"
                    for name, want in sorted(wanted.items())
                    if name in stored and tuple(stored[name].shape) != tuple(want.shape)]
        problems += [f"{name}: not in the checkpoint" for name in wanted if name not in stored]
        problems += [f"{name}: not in this model" for name in stored if name not in wanted]
        if problems:
            raise _ShapeMismatch(
                f"{self.directory / str(step)} holds a model of other shapes than the config describes ("
                + "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
                + "). Use another --workdir, or the model config of the run that wrote it.")

    def restore_latest(self, abstract_state: Any, data_iterator) -> tuple[Any, dict, int] | None:
        """(state, record, step) of the newest checkpoint that restores intact, or None if there is none.
        Damaged newer ones are reported and moved to `WORKDIR/corrupt_checkpoints/`; if every checkpoint is
        damaged, nothing is moved and the run stops (starting afresh silently would discard the run)."""
        damaged = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state, record = self.restore(step, abstract_state, data_iterator)
            except _ShapeMismatch as error:
                raise ValueError(str(error)) from None
            except Exception as error:  # noqa: BLE001 - any failure to read it back is damage
                logging.warning("Checkpoint %s is damaged: %s: %s", self.directory / str(step),
                                type(error).__name__, error)
                damaged.append((step, f"{type(error).__name__}: {str(error)[:300]}"))
                continue
            for bad_step, reason in damaged:
                moved = self._quarantine(bad_step)
                logging.warning("Checkpoint %d could not be restored (%s); moved to %s. Resuming from step %d.",
                                bad_step, reason, moved, step)
            if damaged:
                self._manager.reload()
            return state, record, step
        if damaged:
            raise ValueError(f"No checkpoint in {self.directory} restores: " + "; ".join(
                f"{step}: {reason}" for step, reason in damaged) + ". Move them away to start afresh, or restore "
                "the directory from a backup.")
        return None

    def _quarantine(self, step: int) -> pathlib.Path:
        target = self.directory.parent / "corrupt_checkpoints" / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            target.parent.mkdir(exist_ok=True)
            (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"bertjax quarantine {step}")
        return target


class BestCheckpoint:
    """The parameters of the evaluation that scored highest on `metric` so far, under `WORKDIR/best/STEP/`
    (readable as an `init_checkpoint`), with its metrics in the record. Survives resumption: the record of
    the best so far is read back at start."""

    def __init__(self, workdir: str | pathlib.Path, metric: str):
        self.directory = pathlib.Path(workdir).absolute() / "best"
        self.metric = metric
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
            item_names=("state", "record"))
        step = self._manager.latest_step()
        self.record = None if step is None else self._manager.restore(
            step, args=ocp.args.Composite(record=ocp.args.JsonRestore())).record

    def offer(self, step: int, params: Any, metrics: dict[str, float]) -> bool:
        """Keep `params` if `metrics[metric]` beats the best so far (written in the background)."""
        if self.metric not in metrics:
            raise KeyError(f"The task's selection metric {self.metric!r} is not among its metrics "
                           f"{sorted(metrics)}.")
        value = float(metrics[self.metric])
        if self.record is not None and not value > self.record["value"]:
            return False
        self.record = {"step": step, "metric": self.metric, "value": value, "metrics": metrics}
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params}),
                                                         record=ocp.args.JsonSave(self.record)), force=True)
        return True

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _latest_step_directory(path: pathlib.Path) -> pathlib.Path:
    """A run directory, its `checkpoints/`, or one step's directory -> the step directory to read."""
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if (path / "state").is_dir():
        return path
    steps = sorted((int(child.name), child) for child in path.iterdir() if child.name.isdigit() and child.is_dir())
    if not steps:
        raise FileNotFoundError(f"init_checkpoint {path}: no checkpoint there (expected a run directory, its "
                                "checkpoints/ directory, a step directory, or an HF BERT folder).")
    return steps[-1][1]


def load_params(path: str | pathlib.Path, abstract_params: Any) -> Any:
    """Parameters from another run's checkpoint (only those `abstract_params` names) or an HF BERT folder
    (`config.json` + `model.safetensors` or `pytorch_model.bin`). Shapes must fit the current model."""
    path = pathlib.Path(path).absolute()  # orbax reads absolute paths only
    if _is_hf_folder(path):
        _, params, absent = convert.load_hf_bert(path)
        missing = sorted(set(abstract_params) - set(params))
        if missing:
            raise ValueError(f"init_checkpoint {path} has no {missing} (absent: {absent}).")
        return jax.tree.map(lambda want, have: _fit(want, have, path), abstract_params,
                            {name: params[name] for name in abstract_params})
    step_dir = _latest_step_directory(path)
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        restored = checkpointer.restore(step_dir / "state", args=ocp.args.PyTreeRestore(
            item={"params": abstract_params}, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args({"params": abstract_params})))
    except ValueError as error:  # orbax: a stored shape that differs from the model's
        raise ValueError(f"init_checkpoint {step_dir}: {error} The checkpoint's model config differs from this "
                         "run's.") from None
    # orbax hands back the target itself where the checkpoint has no such parameter: never train on that.
    absent = ["/".join(str(getattr(key, "key", key)) for key in path)
              for path, leaf in jax.tree_util.tree_flatten_with_path(restored["params"])[0]
              if isinstance(leaf, jax.ShapeDtypeStruct)]
    if absent:
        raise ValueError(f"init_checkpoint {step_dir} lacks parameters the model needs: {', '.join(absent)}.")
    return jax.tree.map(lambda want, have: _fit(want, have, step_dir), abstract_params, restored["params"])


def _is_hf_folder(path: pathlib.Path) -> bool:
    return (path / "config.json").is_file() and any((path / name).is_file()
                                                    for name in ("model.safetensors", "pytorch_model.bin"))


def _fit(want: jax.ShapeDtypeStruct, have, source) -> jax.Array:
    if tuple(want.shape) != tuple(have.shape):
        raise ValueError(f"init_checkpoint {source}: a tensor of shape {tuple(have.shape)} where the model has "
                         f"{tuple(want.shape)}; the checkpoint's model config differs from this run's.")
    return jax.numpy.asarray(have, want.dtype)


def _stored_params(path: pathlib.Path) -> tuple[str, dict[tuple[str, ...], tuple[int, ...]]]:
    """Where an init checkpoint's parameters are, and the shape of each (flat paths), read without the data."""
    if _is_hf_folder(path):
        _, params, _ = convert.load_hf_bert(path)
        return str(path), {name: tuple(value.shape) for name, value in traverse_util.flatten_dict(params).items()}
    step_dir = _latest_step_directory(path)
    with _quiet_orbax():
        metadata = ocp.PyTreeCheckpointer().metadata(step_dir / "state").item_metadata.tree
    flat = traverse_util.flatten_dict(metadata["params"])
    return str(step_dir), {name: tuple(value.shape) for name, value in flat.items()}


def load_partial_params(path: str | pathlib.Path, abstract_params: Any, fresh: Sequence[str],
                        fresh_params: Any) -> tuple[Any, str]:
    """Parameters for fine-tuning: those of `abstract_params` found in the checkpoint at `path` (a bertjax run
    or an HF folder), and `fresh_params`' values for the top-level modules named in `fresh` (new heads) that
    the checkpoint lacks or holds in another shape (another task's classifier). Any other parameter missing or
    mis-shaped is an error naming it. Returns (params, a one-line report of what was loaded and what is new)."""
    path = pathlib.Path(path).absolute()  # orbax reads absolute paths only
    source, stored = _stored_params(path)
    wanted = traverse_util.flatten_dict(abstract_params)
    loaded, new, problems = [], [], []
    for name, leaf in wanted.items():
        shape = stored.get(name)
        if shape == tuple(leaf.shape):
            loaded.append(name)
        elif name[0] in fresh:
            new.append(name)
        else:
            problems.append(f"{'/'.join(name)} {'absent' if shape is None else f'has shape {shape}'}, "
                            f"the model needs {tuple(leaf.shape)}")
    if problems:
        raise ValueError(f"init_checkpoint {source} does not fit this model: " + "; ".join(problems)
                         + ". The checkpoint's model config differs from this run's.")
    subset = traverse_util.unflatten_dict({name: wanted[name] for name in loaded})
    values = traverse_util.flatten_dict(load_params(path, subset))
    fresh_flat = traverse_util.flatten_dict(fresh_params)
    params = traverse_util.unflatten_dict({name: values[name] if name in values else fresh_flat[name]
                                           for name in wanted})
    unused = sorted({name[0] for name in stored} - {name[0] for name in loaded})
    report = (f"{len(loaded)} tensors ({sum(int(np.prod(wanted[n].shape)) for n in loaded):,} values) loaded from "
              f"{source}; new: {', '.join('/'.join(n) for n in new) or 'none'}; not used: "
              f"{', '.join(unused) or 'none'}")
    return params, report


def restore_or_init(checkpointer: Checkpointer, abstract_state: Any, init_state: Callable[[], Any],
                    data_iterator, init_checkpoint: str | None, with_params: Callable[[Any, Any], Any],
                    identity: dict | None = None, fresh: Sequence[str] = ()):
    """(state, how): resume from the work directory's newest good checkpoint, else start from
    `init_checkpoint`'s parameters, else fresh. `with_params(state, params)` puts loaded parameters into a fresh
    state; `fresh` names the top-level modules (new heads) that may be initialised anew when the checkpoint
    lacks them. A checkpoint whose record disagrees with `identity` (say, another tokenizer's fingerprint) is
    refused."""
    restored = checkpointer.restore_latest(abstract_state, data_iterator)
    if restored is not None:
        state, record, step = restored
        for key, value in (identity or {}).items():
            if key in record and record[key] != value:
                raise ValueError(f"{checkpointer.directory / str(step)} was written with {key}={record[key]!r}, this "
                                 f"run has {value!r}; use another --workdir, or the settings of that run.")
        how = f"resumed from {checkpointer.directory / str(step)} (step {step})"
    elif init_checkpoint and fresh:
        state = init_state()
        params, report = load_partial_params(init_checkpoint, abstract_state.params, fresh, state.params)
        state = with_params(state, params)
        how = f"initialised from {report}; optimizer and data start fresh"
    elif init_checkpoint:
        params = load_params(init_checkpoint, abstract_state.params)
        state = with_params(init_state(), params)
        how = f"initialised from the parameters of {init_checkpoint}; optimizer and data start fresh"
    else:
        state = init_state()
        how = "initialised fresh"
    logging.info("Train state %s.", how)
    return state, how


def write_json(path: pathlib.Path, value: dict) -> None:
    """Write JSON atomically: a reader never sees a half-written file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2, default=str) + "\n")
    partial.replace(path)


# --- parameters alone: converted checkpoints, export, feature extraction --------------------------------------

def save_params(workdir: str | pathlib.Path, params: Any, config: dict, record: dict, step: int = 0) -> pathlib.Path:
    """A run directory holding parameters only: `config.json` (a resolved config) and
    `checkpoints/STEP/` with `state` = {"params": ...} and the JSON `record`. `load_params` (init_checkpoint)
    and `open_run` read it. Both writes are atomic: an interrupted save leaves no half-written checkpoint."""
    workdir = pathlib.Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "config.json", config)
    manager = ocp.CheckpointManager(workdir / "checkpoints", options=ocp.CheckpointManagerOptions(create=True),
                                    item_names=("state", "record"))
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params}),
                                               record=ocp.args.JsonSave(record)), force=True)
    manager.wait_until_finished()
    manager.close()
    return workdir / "checkpoints" / str(step)


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What a run directory says about its latest checkpoint, before any tensor is read."""

    config: dict  # the resolved config (config.json)
    record: dict  # step, task, tokenizer fingerprint; fine-tuning runs add head, num_labels, labels
    step_dir: pathlib.Path
    stored_params: dict[tuple[str, ...], tuple[tuple[int, ...], str]]  # flattened path -> (shape, dtype)

    @property
    def head(self) -> str:
        """The run's head as `convert.HEADS` names it (a record without one is a pretraining run's)."""
        head = self.record.get("head", "pretraining")
        return {"span": "question_answering", "tokens": "token_classification"}.get(head, head)  # SQuAD, NER


def open_run(path: str | pathlib.Path) -> SavedRun:
    """A run directory (or its `checkpoints/`, `best/`, or one step's directory) -> its config, record and the
    names and shapes of the stored parameters."""
    path = pathlib.Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint {path} not found.")
    step_dir = _latest_step_directory(path)
    config_path = step_dir.parent.parent / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: a run directory holds the config.json its checkpoints "
                                "were made with.")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from None
    record = _read_record(step_dir)
    if "head" not in record and step_dir.parent.name == "best":  # a run's best parameters: the run says the head
        latest = _latest_step_directory(step_dir.parent.parent / "checkpoints")
        record = {**{key: value for key, value in _read_record(latest).items()
                     if key in ("head", "num_labels", "labels", "tokenizer_fingerprint", "task")}, **record}
    with _quiet_orbax():
        metadata = ocp.PyTreeCheckpointer().metadata(step_dir / "state").item_metadata.tree
    if "params" not in metadata:
        raise ValueError(f"{step_dir / 'state'} holds no parameters (found {sorted(metadata)}).")
    stored = {path: (tuple(leaf.shape), str(leaf.dtype))
              for path, leaf in traverse_util.flatten_dict(metadata["params"]).items()}
    return SavedRun(config, record, step_dir, stored)


def _read_record(step_dir: pathlib.Path) -> dict:
    path = step_dir / "record" / "metadata"
    return json.loads(path.read_text()) if path.is_file() else {}


def restore_params(run: SavedRun, abstract_params: Any) -> Any:
    """Every stored parameter onto `abstract_params`, which must name exactly the stored ones: a parameter the
    model has and the checkpoint lacks, one the checkpoint has and the model lacks, or a shape that differs
    fails, listing each, instead of leaving random weights or dropping trained ones."""
    expected = traverse_util.flatten_dict(abstract_params)
    problems = ([f"missing in the checkpoint: {'/'.join(path)}" for path in expected if path not in run.stored_params]
                + [f"not in the model: {'/'.join(path)}" for path in run.stored_params if path not in expected]
                + [f"{'/'.join(path)}: the model has shape {tuple(want.shape)}, the checkpoint "
                   f"{run.stored_params[path][0]}" for path, want in expected.items()
                   if path in run.stored_params and tuple(want.shape) != run.stored_params[path][0]])
    if problems:
        raise ValueError(f"{run.step_dir} does not fit the model its config.json and record describe "
                         f"(head {run.head!r}):\n  " + "\n  ".join(problems))
    with _quiet_orbax():
        restored = ocp.PyTreeCheckpointer().restore(run.step_dir / "state", args=ocp.args.PyTreeRestore(
            item={"params": abstract_params}, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args({"params": abstract_params})))
    return restored["params"]


@contextlib.contextmanager
def _quiet_orbax():
    """Reading one item of a step directory on its own, orbax warns that the step's metadata file (one level
    up) is not beside it; nothing is wrong."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def load_run(path: str | pathlib.Path) -> tuple[SavedRun, BertConfig, dict]:
    """A run's latest checkpoint -> (what the run says, its model config, all its parameters) as numpy arrays,
    for the model of the run's head (`convert.HEADS`)."""
    run = open_run(path)
    if "model" not in run.config:
        raise ValueError(f"{run.step_dir.parent.parent / 'config.json'} has no `model` group.")
    model_config = BertConfig.from_config(run.config["model"])
    abstract = convert.abstract_params(model_config, run.head, run.record.get("num_labels"))
    return run, model_config, restore_params(run, abstract)
