"""What a run reports: `metrics.jsonl` and TensorBoard event files in the work directory, and its progress on
the console: a bar on a terminal, one plain line per logged step otherwise (a SLURM or `nohup` log file).

Only process 0 writes; the others get writers that do nothing. The event files are written here, not by a
TensorBoard library: tensorboardX imports torch when it is installed, about 2 s of every start.
"""

import datetime
import os
import pathlib
import socket
import struct
import sys
import time

import jax
import tqdm

from bertjax import files

LOG_FORMATS = ("auto", "bar", "plain")


def check_log_format(log_format: str) -> None:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"train.log_format={log_format!r}: choose one of {', '.join(LOG_FORMATS)} (auto: a progress "
                         "bar on a terminal, plain lines otherwise).")


# --- TensorBoard event files: TFRecords of Event protocol buffers, encoded by hand ---------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli, reflected
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _record(data: bytes) -> bytes:
    """TFRecord framing: length, its masked CRC32C, the data, its masked CRC32C."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    key = _varint(number << 3 | wire_type)
    return key + (_varint(len(payload)) + payload if wire_type == 2 else payload)


def _event(wall_time: float, step: int = 0, file_version: str | None = None, scalars: dict | None = None) -> bytes:
    """An `Event`: wall_time (1, double), step (2, int64), file_version (3) or summary (5), a `Summary` of
    `Value`s: tag (1), simple_value (2, float)."""
    event = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        event += _field(3, 2, file_version.encode())
    if scalars:
        values = b"".join(_field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
                          for tag, value in scalars.items())
        event += _field(5, 2, values)
    return event


class EventFile:
    """A TensorBoard event file of scalars (`tensorboard --logdir WORKDIR` reads it)."""

    def __init__(self, directory: str | pathlib.Path, flush_seconds: float = 30.0):
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self._file = open(pathlib.Path(directory) / name, "ab")
        self._flush_seconds, self._flushed = flush_seconds, time.monotonic()
        self._file.write(_record(_event(now, file_version="brain.Event:2")))
        self._file.flush()

    def add_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self._file.write(_record(_event(time.time(), step, scalars={tag: float(value)
                                                                  for tag, value in scalars.items()})))
        if time.monotonic() - self._flushed > self._flush_seconds:
            self._file.flush()
            self._flushed = time.monotonic()

    def close(self) -> None:
        self._file.close()


class MetricWriter:
    def __init__(self, workdir: str | pathlib.Path):
        self._active = jax.process_index() == 0
        if self._active:
            self._jsonl = open(pathlib.Path(workdir) / "metrics.jsonl", "a", buffering=1)
            self._events = EventFile(workdir)

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self._active:
            return
        record = {"step": step, "split": split, "time": round(time.time(), 3), **metrics}
        self._jsonl.write(files.json_text(record) + "\n")
        self._events.add_scalars(step, {f"{split}/{name}": value for name, value in metrics.items()})

    def close(self) -> None:
        if self._active:
            self._jsonl.close()
            self._events.close()


# --- the console ----------------------------------------------------------------------------------------------


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc, to 10 ms), else None."""
    try:
        ticks = int(pathlib.Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(pathlib.Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Progress:
    """The step, ETA and the last logged figures: as a tqdm bar on a terminal, or as one plain line per
    `show` (every `log_every` steps) when the output is a file, or as `log_format` says."""

    def __init__(self, start: int, total: int, log_format: str = "auto", stream=None):
        check_log_format(log_format)
        self._stream = stream or sys.stderr
        self._active = jax.process_index() == 0
        self.plain = log_format == "plain" or (log_format == "auto" and not self._stream.isatty())
        self._step, self._total = start, total
        self._since = (start, time.perf_counter())
        self._bar = None if self.plain else tqdm.tqdm(
            initial=start, total=total, unit="step", dynamic_ncols=True, smoothing=0.1, disable=not self._active,
            mininterval=1.0, file=self._stream)

    def update(self, steps: int = 1) -> None:
        self._step += steps
        if self._bar is not None:
            self._bar.update(steps)

    def show(self, values: dict) -> None:
        """The figures of the last logged steps, in the order given."""
        shown = {name: f"{value:.4g}" if isinstance(value, float) else value for name, value in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(shown, refresh=False)
            return
        step, start = self._since
        now = time.perf_counter()
        rate = (self._step - step) / max(now - start, 1e-9)
        eta = datetime.timedelta(seconds=round((self._total - self._step) / rate)) if rate > 0 else "?"
        self._since = (self._step, now)
        self.write(f"step {self._step}/{self._total} " + " ".join(f"{name} {value}" for name, value in shown.items())
                   + f" eta {eta}")

    def write(self, message: str) -> None:
        if not self._active:
            return
        if self._bar is not None:
            self._bar.write(message, file=self._stream)
        else:
            print(message, file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
