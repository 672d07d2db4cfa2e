"""Checkpoints: the one wrapper over orbax's `CheckpointManager`.

A checkpoint holds the train state (parameters, optimizer state, step, dropout key), the data iterator's
state and a small JSON record, under `WORKDIR/checkpoints/STEP/`. orbax writes each checkpoint into a
temporary directory (`STEP.orbax-checkpoint-tmp-*`) and renames it when complete, so a run killed mid-save
leaves the previous one intact; the next run deletes such leftovers. Saves are asynchronous: training goes
on while the files are written.

The record carries a digest of the state's bits (`state_digest`), of each process's data-iterator position
(`iterator_digests`) and of itself (`record_digest`), so a checkpoint whose files were damaged or edited after
the rename is caught on restore, as is one that orbax cannot read at all: the run then warns, moves it to
`WORKDIR/corrupt_checkpoints/` and resumes from the newest good one.

Resume precedence (`restore_or_init`): the work directory's latest good checkpoint (everything: exact
resume), else `init_checkpoint` (parameters only: continued pretraining or fine-tuning), else fresh
initialisation. Finding a run and loading parameters alone (init_checkpoint, export) is `bertjax.runs`'s.
"""

import hashlib
import json
import pathlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from bertjax import runs
from bertjax.faults import CheckpointWriteError


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


def iterator_digest(data_iterator) -> str:
    """SHA-256 of this process's data-iterator position (its `get_state`, as canonical JSON)."""
    state = data_iterator.get_state()
    if isinstance(state, bytes):
        state = json.loads(state.decode())
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def iterator_digests(data_iterator) -> list[str]:
    """Every process's `iterator_digest`, in process order (a collective: every process calls it)."""
    own = iterator_digest(data_iterator)
    if jax.process_count() == 1:
        return [own]
    gathered = multihost_utils.process_allgather(np.frombuffer(bytes.fromhex(own), np.uint8))
    return [bytes(row).hex() for row in np.asarray(gathered)]


def record_digest(record: dict) -> str:
    """SHA-256 of a checkpoint's JSON record (as canonical JSON) without its own `record_digest`: every value
    a resumed run reads from it (the step, the identity it is checked against, the other digests)."""
    fields = {key: value for key, value in record.items() if key != "record_digest"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


class FrozenPosition:
    """A data iterator's position at one moment, saved as the iterator itself would be: the loop takes one
    before each batch, so that a checkpoint written while the pipeline is stalled in the middle of a batch
    (see `faults.PreemptionGuard`) resumes from the batch it was waiting for."""

    def __init__(self, data_iterator):
        state = data_iterator.get_state()
        self._state = state if isinstance(state, bytes) else json.dumps(state).encode()

    def get_state(self) -> bytes:
        return self._state


def _reason(error: BaseException) -> str:
    """An error of orbax or TensorStore in one line: its type and first line, less the TensorStore spec that
    TensorStore appends (some 40 lines, or 2 kB on one line)."""
    text = re.split(r" See full TensorStore details:| \[tensorstore_spec=", str(error), maxsplit=1)[0]
    first = (text.strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}"


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
        self._keep = keep

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def reached_preemption(self, step: int) -> bool:
        """True on every process at the same step once any received a preemption notice (multi-process)."""
        return self._manager.reached_preemption(step)

    def save(self, step: int, state: Any, data_iterator, record: dict) -> None:
        """Start writing a checkpoint of `step` in the background (the caller decides when one is due). A
        failure of this or the previous background write raises `CheckpointWriteError`."""
        record = {**record, "state_digest": state_digest(state), "iterator_digests": iterator_digests(data_iterator)}
        record["record_digest"] = record_digest(record)
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
            f"Writing checkpoint {step} in {self.directory} failed ({_reason(error)}); {kept}. Free "
            "disk space or fix the directory, then run the same command to resume.") from error

    def close(self) -> None:
        """Finish and close; then delete the oldest checkpoints beyond `keep`. orbax deletes them after each
        save, so a run killed between a commit and that deletion, or resumed only to find itself finished,
        would otherwise keep one more (and not before: a damaged newest one needs the older as fallback)."""
        try:
            self._manager.wait_until_finished()
            self._manager.reload()
            for step in sorted(self._manager.all_steps())[:-self._keep]:
                self._manager.delete(step)
        except Exception as error:  # noqa: BLE001 - a failed write was reported already; closing must not mask it
            logging.warning("Deleting old checkpoints: %s", error)
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
        expected = restored.record.get("record_digest")
        if expected is not None and record_digest(restored.record) != expected:
            raise ValueError(f"the record's digest {record_digest(restored.record)[:12]} differs from the one it "
                             f"holds ({expected[:12]}): its record file was changed after it was written")
        expected = restored.record.get("state_digest")
        if expected is not None and state_digest(restored.state) != expected:
            raise ValueError(f"the restored state's digest {state_digest(restored.state)} differs from the "
                             f"recorded {expected}: its files were changed after they were written")
        recorded = restored.record.get("iterator_digests")
        if recorded is not None and len(recorded) == jax.process_count():
            expected, found = recorded[jax.process_index()], iterator_digest(data_iterator)
            if found != expected:
                raise ValueError(f"the restored data-iterator position differs from the one recorded with it "
                                 f"(digest {found[:12]}, recorded {expected[:12]}): its data_iterator files were "
                                 "changed after they were written")
        return restored.state, restored.record

    def _check_shapes(self, step: int, abstract_params: Any) -> None:
        metadata = self._manager.item_metadata(step).state
        problems = runs.check_shapes(runs.param_shapes(metadata.tree["params"]),
                                     runs.param_shapes(abstract_params)).lines()
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
                damaged.append((step, _reason(error)))
                continue
            for bad_step, reason in damaged:  # one line each, said once a good one is found
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
        """Keep `params` if `metrics[metric]` beats the best so far (written in the background). The best
        step offered again (a finished run rerun with other evaluation settings evaluates its last step once
        more) is the same parameters: its record takes the new metrics, higher or lower."""
        if self.metric not in metrics:
            raise KeyError(f"The task's selection metric {self.metric!r} is not among its metrics "
                           f"{sorted(metrics)}.")
        value = float(metrics[self.metric])
        same_step = self.record is not None and self.record["step"] == step
        if self.record is not None and not same_step and not value > self.record["value"]:
            return False
        self.record = {"step": step, "metric": self.metric, "value": value, "metrics": metrics}
        if same_step:  # orbax refuses to write a step twice: the one on record goes first
            self._manager.wait_until_finished()
            if step in self._manager.all_steps():
                self._manager.delete(step)
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params}),
                                                         record=ocp.args.JsonSave(self.record)), force=True)
        return True

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


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
        params, report = runs.load_partial_params(init_checkpoint, abstract_state.params, fresh, state.params)
        state = with_params(state, params)
        how = f"initialised from {report}; optimizer and data start fresh"
    elif init_checkpoint:
        params = runs.load_params(init_checkpoint, abstract_state.params)
        state = with_params(init_state(), params)
        how = f"initialised from the parameters of {init_checkpoint}; optimizer and data start fresh"
    else:
        state = init_state()
        how = "initialised fresh"
    logging.info("Train state %s.", how)
    return state, how

