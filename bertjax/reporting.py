"""What a run reports: `metrics.jsonl` and TensorBoard event files in the work directory, and a progress bar.

Only process 0 writes; the others get a writer that does nothing.
"""

import json
import pathlib
import time

import jax
import tqdm
from tensorboardX import SummaryWriter


class MetricWriter:
    def __init__(self, workdir: str | pathlib.Path):
        self._active = jax.process_index() == 0
        if self._active:
            self._jsonl = open(pathlib.Path(workdir) / "metrics.jsonl", "a", buffering=1)
            self._tensorboard = SummaryWriter(str(workdir), flush_secs=30)

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self._active:
            return
        record = {"step": step, "split": split, "time": round(time.time(), 3), **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            self._tensorboard.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self._active:
            self._jsonl.close()
            self._tensorboard.close()


class Progress:
    """A console progress bar: step, ETA, and the last logged loss and tokens/s."""

    def __init__(self, start: int, total: int):
        self._bar = tqdm.tqdm(initial=start, total=total, unit="step", dynamic_ncols=True, smoothing=0.1,
                              disable=jax.process_index() != 0, mininterval=1.0)

    def update(self, steps: int = 1) -> None:
        self._bar.update(steps)

    def show(self, **values) -> None:
        self._bar.set_postfix({name: f"{value:.4g}" if isinstance(value, float) else value
                               for name, value in values.items()}, refresh=False)

    def write(self, message: str) -> None:
        self._bar.write(message)

    def close(self) -> None:
        self._bar.close()
