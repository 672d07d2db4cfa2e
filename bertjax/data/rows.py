"""Batches of fine-tuning rows: features already built as equal-length numpy arrays (one row per window or
sentence), fed as shuffled endless training batches or as one padded evaluation pass.

Every batch carries `example_index` (B,) int32, the row's index in its split, and `example_weight` (B,)
float32: 1 for real rows, 0 for the rows that pad the last evaluation batch (their index is -1).
"""

import functools

import grain
import numpy as np


def _row(index: int, *, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    row = {name: value[index] for name, value in arrays.items()}
    row["example_index"] = np.int32(index)
    row["example_weight"] = np.float32(1.0)
    return row


def empty_batch(arrays: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """An all-padding batch of the shapes and dtypes `row_batches` yields."""
    batch = {name: np.zeros((batch_size, *value.shape[1:]), value.dtype) for name, value in arrays.items()}
    batch["example_index"] = np.full(batch_size, -1, np.int32)
    batch["example_weight"] = np.zeros(batch_size, np.float32)
    return batch


def row_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
    """`train=True`: endless batches of `batch_size` rows, each process shuffling its own rows (anew each
    epoch, seeded). `train=False`: one pass in order where each global batch of `batch_size x process_count`
    rows is split between the processes and the last one is padded, so every row appears exactly once."""
    count = len(next(iter(arrays.values())))
    if train:
        indices = grain.MapDataset.range(count)[process_index::process_count]
        if len(indices) < batch_size:
            raise ValueError(f"{len(indices)} training rows for this process, fewer than its batch of {batch_size}; "
                             "lower train.global_batch_size or add training data.")
        dataset = indices.shuffle(seed).repeat(None).map(functools.partial(_row, arrays=arrays))
        return dataset.to_iter_dataset(grain.ReadOptions(num_threads=0)).batch(batch_size, drop_remainder=True)
    return _evaluation_batches(arrays, count, batch_size, process_index, process_count)


def _evaluation_batches(arrays, count, batch_size, process_index, process_count):
    global_batch = batch_size * process_count
    for start in range(0, count, global_batch):
        rows = np.arange(start + process_index * batch_size, start + (process_index + 1) * batch_size)
        real = rows < count
        batch = empty_batch(arrays, batch_size)
        for name, value in arrays.items():
            batch[name][real] = value[rows[real]]
        batch["example_index"][real] = rows[real]
        batch["example_weight"][real] = 1.0
        yield batch

