"""Fixed-shape batches, the one home of what every task's input shares: rows collated into zero-padded
batches, empty batches to compile with, datasets of indexed rows for training and evaluation, and the split
of an evaluation batch between processes.

    training     this process's rows (every process_count-th), shuffled anew each epoch (seeded), endless,
                 full batches only: a grain dataset whose iterator state resumes to the next batch
    evaluation   the split once, in order; every process reads each global batch of batch_size x
                 process_count rows and keeps its own slice, so all see the same number of batches, and
                 the last one is padded with rows of weight 0 (`example_weight`, `example_index` -1)

A `Field` says how one key of a batch is shaped and filled, so that a task states its batch once and gets
both its collate function and its empty batch from it.
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import grain
import numpy as np


@dataclasses.dataclass(frozen=True)
class Field:
    """One key of a batch: (B, *shape) of `dtype`. A row's value fills the front of its slot (shorter values
    are zero-padded) unless `ones_over` names another key (then 1 over that key's length: an attention mask
    over input_ids) or `real` is set (that value for every real row: a weight). Padding rows hold `padding`."""

    shape: tuple[int, ...]
    dtype: type = np.int32
    ones_over: str | None = None
    real: float | None = None
    padding: float = 0


def example_fields() -> dict[str, Field]:
    """The keys every fine-tuning batch carries: the row's index in its split and its weight."""
    return {"example_index": Field((), np.int32, padding=-1), "example_weight": Field((), np.float32, real=1.0)}


def collate(rows: Sequence[Mapping[str, np.ndarray]], *, fields: Mapping[str, Field],
            batch_size: int) -> dict[str, np.ndarray]:
    """Rows -> one batch of `batch_size` rows with the shapes of `fields`; rows past the given ones are
    padding."""
    batch = {name: np.full((batch_size, *field.shape), field.padding, field.dtype) for name, field in fields.items()}
    from_rows = {name: field for name, field in fields.items() if field.real is None}
    for name, field in fields.items():
        if field.real is not None:
            batch[name][:len(rows)] = field.real
    for index, row in enumerate(rows):
        for name, field in from_rows.items():
            if field.ones_over is not None:
                batch[name][index, :len(row[field.ones_over])] = 1
            elif field.shape:
                value = row[name]
                batch[name][index, :len(value)] = value
            else:
                batch[name][index] = row[name]
    return batch


def empty_batch(fields: Mapping[str, Field], batch_size: int) -> dict[str, np.ndarray]:
    """An all-padding batch of `fields`' shapes: what a task initialises and compiles with."""
    return collate([], fields=fields, batch_size=batch_size)


def stack(rows: Sequence[Mapping[str, np.ndarray]], batch_size: int) -> dict[str, np.ndarray]:
    """Rows that already have their final shapes (packed rows) -> a batch; rows past the given ones are all
    zeros, of weight 0."""
    return {name: np.stack([row[name] for row in rows] + [np.zeros_like(rows[0][name])] * (batch_size - len(rows)))
            for name in rows[0]}


def process_rows(batch: dict[str, np.ndarray], start: int, count: int) -> dict[str, np.ndarray]:
    """This process's `count` rows of a global batch that every process read whole."""
    return {name: value[start:start + count] for name, value in batch.items()}


def rows_per_read(batch_size: int, *, train: bool, process_count: int) -> int:
    """Rows a process batches at once: its own `batch_size` when training, the whole global batch when
    evaluating (see the module docstring)."""
    return batch_size if train else batch_size * process_count


def keep_process_rows(dataset: grain.IterDataset, batch_size: int, *, train: bool, process_index: int,
                      process_count: int) -> grain.IterDataset:
    """An evaluation dataset of global batches -> this process's rows of each (training batches are already
    this process's own)."""
    if rows_per_read(batch_size, train=train, process_count=process_count) == batch_size:
        return dataset
    return dataset.map(functools.partial(process_rows, start=process_index * batch_size, count=batch_size))


def indexed_batches(count: int, row: Callable[[int], dict], fields: Mapping[str, Field], *, batch_size: int,
                    seed: int, train: bool, process_index: int = 0, process_count: int = 1,
                    name: str = "") -> grain.IterDataset:
    """Batches of the rows `row(0) ... row(count - 1)` of a split (see the module docstring for training and
    evaluation); `name` prefixes the error for too few training rows."""
    indices = grain.MapDataset.range(count)
    if train:
        indices = indices[process_index::process_count]
        if len(indices) < batch_size:
            raise ValueError(f"{name + ': ' if name else ''}{len(indices)} training rows for this process, fewer "
                             f"than its batch of {batch_size}; lower train.global_batch_size or add training data.")
        indices = indices.shuffle(seed).repeat(None)
    rows = rows_per_read(batch_size, train=train, process_count=process_count)
    dataset = indices.map(row).to_iter_dataset(grain.ReadOptions(num_threads=0)).batch(
        rows, drop_remainder=train, batch_fn=functools.partial(collate, fields=fields, batch_size=rows))
    return keep_process_rows(dataset, batch_size, train=train, process_index=process_index,
                             process_count=process_count)


class _ArrayRow(grain.transforms.Map):
    """A row index -> that row of equal-length arrays, with its index."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self._arrays = arrays

    def map(self, index: int) -> dict[str, np.ndarray]:
        return {**{name: value[index] for name, value in self._arrays.items()}, "example_index": index}


def array_fields(arrays: Mapping[str, np.ndarray]) -> dict[str, Field]:
    """The fields of rows taken from (N, ...) arrays, with the example index and weight."""
    return {**{name: Field(value.shape[1:], value.dtype.type) for name, value in arrays.items()}, **example_fields()}


def array_batches(arrays: Mapping[str, np.ndarray], *, batch_size: int, seed: int, train: bool,
                  process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
    """Batches of features already built as (N, ...) numpy arrays, one row per window or sentence (SQuAD,
    tagging)."""
    count = len(next(iter(arrays.values())))
    return indexed_batches(count, _ArrayRow(arrays), array_fields(arrays), batch_size=batch_size, seed=seed,
                           train=train, process_index=process_index, process_count=process_count)
