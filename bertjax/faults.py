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

import contextlib
import math
import os
import pathlib
import shutil
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from typing import NoReturn

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
    (KeyboardInterrupt), for a user who will not wait. While the loop of a command (`bertjax pretrain`, not a
    library caller, whose process it must not end) waits (for a batch, or until its first step: restoring,
    compiling) a step may be minutes away, so a watcher thread, woken by the signal even while
    the main thread is inside compiled code, stops the run itself: it writes the checkpoint the loop's
    `waiting` names (when a step has run since the last one), waits for the write and exits with
    `PREEMPTED_EXIT_CODE`; with nothing to save it exits at once. Several processes: the handlers are left
    alone (JAX's preemption notifier owns SIGTERM) and `requested` asks orbax's preemption sync point, which
    is True on every process at the same step.
    """

    def __init__(self, checkpointer):
        self._checkpointer = checkpointer
        self._previous = {}
        self.signal_name: str | None = None
        # What a signal does while the loop waits: None while it runs a step (the flag is read after it), else
        # a function that writes what there is to save and returns the checkpoint's step (None: nothing).
        self._while_waiting: Callable[[], int | None] | None = None
        self._lock = threading.Lock()  # held by the watcher while it saves: the loop must not run on meanwhile
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_wakeup_fd = -1

    def __enter__(self):
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            if _from_command_line():  # a library caller (a notebook's interrupt) keeps its process: no watcher
                self._start_watcher()
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _start_watcher(self) -> None:
        self._while_waiting = _nothing_to_save  # until the loop's first batch: state restored or fresh
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._wakeup = reader, writer
        self._previous_wakeup_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(reader,), name="bertjax preemption watcher", daemon=True).start()

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            for end in self._wakeup:  # the watcher's read returns empty and it ends
                end.close()
            self._wakeup = None
        self._while_waiting = None

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signal_name == "SIGINT":
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        if self._while_waiting is None:  # else the watcher stops the run now and says so
            logging.warning("%s received: stopping after this step, with a checkpoint.", self.signal_name)

    @property
    def watching(self) -> bool:
        """Whether a signal while the loop waits stops the run then (one process, the main thread)."""
        return self._wakeup is not None

    @contextlib.contextmanager
    def waiting(self, save: Callable[[], int | None]):
        """The loop waits for its next batch: a signal meanwhile calls `save` (from the watcher thread: the
        checkpoint of the last step, if not written yet; it returns its step) and exits. On leaving, the loop
        waits for a save in progress, which ends the process."""
        self._while_waiting = save if self.watching else None
        try:
            yield
        finally:
            with self._lock:
                self._while_waiting = None

    def _watch(self, reader: socket.socket) -> None:
        stops = {signal.SIGTERM, signal.SIGINT}
        while True:
            try:
                received = reader.recv(64)
            except OSError:  # closed on exit
                return
            if not received:
                return
            signums = [signum for signum in received if signum in stops]
            if not signums:
                continue
            with self._lock:
                save = self._while_waiting
                if save is None:
                    continue  # in a step: the loop reads the flag after it
                name = signal.Signals(signums[0]).name
                try:
                    step = save()
                except Exception as error:  # noqa: BLE001 - a failed write says what is intact; then stop
                    _exit_now(f"error: {error}", 1)
                if step is None:
                    _exit_now(f"{name} before training began: nothing to save. Run the same command again.",
                              PREEMPTED_EXIT_CODE)
                _exit_now(str(Preempted(step, self._checkpointer.directory / str(step), name)), PREEMPTED_EXIT_CODE)

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1:
            if self._checkpointer.reached_preemption(step):
                self.signal_name = self.signal_name or "preemption notice"
                return True
            return False
        return self.signal_name is not None


def _nothing_to_save() -> None:
    return None


def _from_command_line() -> bool:
    cli = sys.modules.get("bertjax.cli")
    return cli is not None and bool(cli.invocation)


def _exit_now(message: str, status: int) -> NoReturn:
    """Print `message` as the command line prints its errors, then end the process at once: the main thread
    may be inside a library's wait or in compiled code, where an exception would not reach the command line."""
    cli = sys.modules.get("bertjax.cli")  # not imported when the loop runs from a library caller
    program = cli.invocation[0] if cli is not None and cli.invocation else pathlib.Path(sys.argv[0]).name
    print(f"{program}: {message}", file=sys.stderr)
    sys.stderr.flush()
    os._exit(status)


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

