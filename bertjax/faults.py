"""What the train loop does when things go wrong: preemption, numerical faults, and start-up checks.

- `PreemptionGuard`: on SIGTERM or SIGINT the loop finishes its step, checkpoints and raises `Preempted`;
  `tools/` programs then exit with `PREEMPTED_EXIT_CODE`. In a multi-process run JAX's coordination service
  receives SIGTERM and orbax's preemption sync point names the step every host stops at.
- `FiniteGuard`: a non-finite loss or gradient norm stops the run (`NonFiniteError`, naming the step, the
  values and the last good checkpoint), or, with `train.max_bad_steps`, the step's update is skipped up to
  that many times.
- `check_workdir`: a work directory that cannot be written is reported before anything is compiled or
  trained (settings that cannot work are `bertjax.configs.common.validate`'s).

See docs/reliability.md for every fault tried and what the program does.
"""

import math
import pathlib
import shutil
import signal
import threading
import uuid

import jax
from absl import logging

# sysexits.h's EX_TEMPFAIL: "temporary failure; the user is invited to retry". Rerun the same command.
PREEMPTED_EXIT_CODE = 75


class TrainingFault(RuntimeError):
    """A run stopped by a fault it detected (not by a bug): the message says what happened and what to do."""


class NonFiniteError(TrainingFault):
    pass


class CheckpointWriteError(TrainingFault):
    pass


class Preempted(Exception):
    """The run stopped on a signal after writing the checkpoint of `step`; the same command resumes it."""

    def __init__(self, step: int, checkpoint_dir: pathlib.Path, signal_name: str):
        self.step, self.checkpoint_dir, self.signal_name = step, checkpoint_dir, signal_name
        super().__init__(f"{signal_name}: stopped after step {step}; checkpoint {checkpoint_dir} written. Run the "
                         "same command again to resume.")


class PreemptionGuard:
    """A context manager that turns SIGTERM and SIGINT into a request to stop after the current step.

    One process: the handlers set a flag that `requested` reads after each step; a second SIGINT stops at once
    (KeyboardInterrupt), for a user who will not wait. Several processes: the handlers are left alone (JAX's
    preemption notifier owns SIGTERM) and `requested` asks orbax's preemption sync point, which is True on
    every process at the same step.
    """

    def __init__(self, checkpointer):
        self._checkpointer = checkpointer
        self._previous = {}
        self.signal_name: str | None = None

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signal_name == "SIGINT":
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        logging.warning("%s received: stopping after this step, with a checkpoint.", self.signal_name)

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1:
            if self._checkpointer.reached_preemption(step):
                self.signal_name = self.signal_name or "preemption notice"
                return True
            return False
        return self.signal_name is not None


class FiniteGuard:
    """Checks every step's loss and gradient norm, one step late so that the check never waits on the device:
    the metric sums of step s are read to the host once step s+1 is queued (`observe`), or at once before a
    checkpoint or a log (`flush`), so a checkpoint never holds the result of a non-finite step. Both return
    the sums they read, as numbers on the host (None when nothing was pending): the train loop adds them up,
    so that each step costs one read of its sums and no other transfer or dispatch.

    `max_bad_steps` = 0 stops at the first non-finite step. Above 0 the step function has kept the previous
    parameters and optimizer state for that step (see `train.train_step`'s `skip_nonfinite`); after more than
    `max_bad_steps` such steps in one process's life, the run stops.
    """

    def __init__(self, checkpointer, max_bad_steps: int):
        self._checkpointer = checkpointer
        self._max_bad_steps = max_bad_steps
        self._pending = None
        self.bad_steps = 0

    def observe(self, step: int, step_sums: dict) -> dict | None:
        read = self.flush()
        self._pending = (step, step_sums)
        return read

    def flush(self) -> dict | None:
        if self._pending is None:
            return None
        step, step_sums = self._pending
        self._pending = None
        values = jax.device_get(step_sums)
        if values["nonfinite_steps"]:
            self._found_nonfinite(step, values)
        return values

    def _found_nonfinite(self, step: int, values: dict) -> None:
        self.bad_steps += 1
        if self._max_bad_steps:  # the step function zeroed a skipped step's sums
            found = f"step {step}: a non-finite loss or gradient norm"
        else:
            found = f"step {step}: loss {float(values['loss_sum'])}, gradient norm {float(values['grad_norm_sum'])}"
        if self.bad_steps <= self._max_bad_steps:
            logging.warning("%s; its update is skipped (%d of train.max_bad_steps=%d).", found, self.bad_steps,
                            self._max_bad_steps)
            return
        latest = self._checkpointer.latest_step()
        last_good = (f"the last good checkpoint is {self._checkpointer.directory / str(latest)} (step {latest})"
                     if latest is not None else "there is no checkpoint yet")
        allowance = (f"more than train.max_bad_steps={self._max_bad_steps} non-finite steps"
                     if self._max_bad_steps else "a non-finite step")
        raise NonFiniteError(
            f"{found}: {allowance}, training stopped; {last_good}. Lower optim.learning_rate or raise "
            "optim.warmup_steps, check the data, or set train.max_bad_steps=N to skip up to N such steps; "
            "then run the same command to resume from that checkpoint.")


def check_workdir(workdir: pathlib.Path) -> None:
    """Fail now, not at the first checkpoint hours later, if `workdir` cannot hold files."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--workdir {workdir} is not a writable directory ({error.strerror or error}); choose "
                         "another, or fix its permissions.") from None


def warn_if_disk_small(directory: pathlib.Path, state_bytes: int, keep: int) -> None:
    """Warn at start-up when the disk cannot hold the checkpoints this run will keep (one more is written
    before the oldest is deleted)."""
    free = shutil.disk_usage(directory).free
    needed = state_bytes * (keep + 1)
    if free < needed:
        logging.warning("%s has %.1f MB free; %d checkpoints of about %.1f MB need %.1f MB. A save that runs out "
                        "of space fails and keeps the previous checkpoint.", directory, free / 1e6, keep + 1,
                        state_bytes / 1e6, needed / 1e6)


def state_bytes(abstract_state) -> int:
    return sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract_state))

