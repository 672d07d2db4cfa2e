"""Rows as fixed-shape batches: training batches are endless, per-process, reshuffled and seeded; an
evaluation pass gives every row exactly once over all processes."""

import itertools

import numpy as np
import pytest

from bertjax.data import batching

ARRAYS = {"input_ids": np.arange(30, dtype=np.int32).reshape(10, 3), "label": np.arange(10, dtype=np.int32)}


def take(iterable, count):
    return list(itertools.islice(iter(iterable), count))


def test_training_batches_are_this_process_rows_reshuffled_each_epoch():
    batches = take(batching.array_batches(ARRAYS, batch_size=5, seed=3, train=True, process_index=1, process_count=2), 4)
    assert all(batch["input_ids"].shape == (5, 3) and batch["example_weight"].tolist() == [1.0] * 5
               for batch in batches)
    epochs = [sorted(batch["label"].tolist()) for batch in batches]
    assert all(epoch == [1, 3, 5, 7, 9] for epoch in epochs)  # process 1 of 2: the odd rows, each epoch
    orders = {tuple(batch["label"].tolist()) for batch in batches}
    assert len(orders) > 1  # reshuffled
    np.testing.assert_array_equal(batches[0]["input_ids"], ARRAYS["input_ids"][batches[0]["example_index"]])
    again = take(batching.array_batches(ARRAYS, batch_size=5, seed=3, train=True, process_index=1, process_count=2), 4)
    assert [b["label"].tolist() for b in again] == [b["label"].tolist() for b in batches]
    other = take(batching.array_batches(ARRAYS, batch_size=5, seed=4, train=True, process_index=1, process_count=2), 4)
    assert [b["label"].tolist() for b in other] != [b["label"].tolist() for b in batches]


def test_evaluation_pass_covers_every_row_once_and_pads():
    seen = []
    for process in range(3):
        batches = list(batching.array_batches(ARRAYS, batch_size=2, seed=0, train=False, process_index=process,
                                        process_count=3))
        assert len(batches) == 2  # ceil(10 / 6) global batches on every process
        for batch in batches:
            real = batch["example_weight"] > 0
            assert np.all(batch["example_index"][~real] == -1) and np.all(batch["input_ids"][~real] == 0)
            np.testing.assert_array_equal(batch["label"][real], batch["example_index"][real])
            seen.extend(batch["example_index"][real].tolist())
    assert sorted(seen) == list(range(10))


def test_too_few_training_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than its batch of 8"):
        batching.array_batches(ARRAYS, batch_size=8, seed=0, train=True, process_index=0, process_count=2)
