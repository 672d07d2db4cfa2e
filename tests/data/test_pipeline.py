"""The grain pipeline: reproducible, resumable, sharded per process, whole evaluation, packed rows sealed."""

import json

import numpy as np
import pytest

from bertjax.data import pipeline, shards, tokenizer
from bertjax.configs import common


def _data(prepared_dir, sp_tokenizer_path, **overrides):
    data = common.get_config().data
    data.tokenizer, data.prepared_dir = str(sp_tokenizer_path), str(prepared_dir)
    data.max_seq_length = 64
    data.max_predictions_per_seq = 10
    for key, value in overrides.items():
        data[key] = value
    return data


def _batches(iterator, count):
    return [next(iterator) for _ in range(count)]


def _assert_same(batches, others):
    for batch, other in zip(batches, others, strict=True):
        assert batch.keys() == other.keys()
        for name in batch:
            np.testing.assert_array_equal(batch[name], other[name])


@pytest.mark.parametrize("packing", [False, True])
def test_batches_have_fixed_shapes_and_valid_content(prepared_dir, sp_tokenizer_path, sp_tokenizer, packing):
    data = _data(prepared_dir, sp_tokenizer_path, packing=packing)
    batch = next(iter(pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=0)))
    slots = min(40, int(0.15 * 64) + 4) if packing else 10
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["segment_ids"].shape == (8, 64)
    assert batch["masked_positions"].shape == batch["masked_weights"].shape == (8, slots)
    real = batch["attention_mask"] > 0
    assert (batch["input_ids"][~real] == 0).all()
    rows = np.arange(8)[:, None]
    predicted = batch["masked_weights"] > 0
    assert real[rows, batch["masked_positions"]][predicted].all()  # predictions only at real tokens
    assert not np.isin(batch["masked_ids"][predicted], [0, 2, 3, 4]).all()
    assert (batch["input_ids"] == sp_tokenizer.mask_id).sum() > 0
    assert set(np.unique(batch["sentence_label"])) <= {0, 1}


def test_packed_rows_never_attend_across_examples(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    data = _data(prepared_dir, sp_tokenizer_path, packing=True, max_seq_length=128, short_seq_prob=0.5)
    iterator = iter(pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=1))
    packed_rows = 0
    for batch in _batches(iterator, 6):
        for row in range(8):
            ids, mask, positions = batch["input_ids"][row], batch["attention_mask"][row], batch["position_ids"][row]
            examples = [example for example in np.unique(mask) if example > 0]
            packed_rows += len(examples) > 1
            starts = []
            for example in examples:
                members = np.flatnonzero(mask == example)
                assert np.array_equal(members, np.arange(members[0], members[-1] + 1))  # one contiguous block
                assert ids[members[0]] == sp_tokenizer.cls_id and ids[members[-1]] == sp_tokenizer.sep_id
                np.testing.assert_array_equal(positions[members], np.arange(len(members)))
                starts.append(members[0])
            count = int(batch["sentence_weights"][row].sum())
            assert count == len(examples)
            np.testing.assert_array_equal(batch["cls_positions"][row][:count], starts)
    assert packed_rows > 10  # packing actually happened


def test_same_seed_same_batches_other_seed_other_batches(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    data = _data(prepared_dir, sp_tokenizer_path)

    def first(seed):
        return _batches(iter(pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=seed)), 3)

    _assert_same(first(5), first(5))
    assert not np.array_equal(first(5)[0]["input_ids"], first(6)[0]["input_ids"])


def test_each_epoch_masks_anew(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    data = _data(prepared_dir, sp_tokenizer_path)
    source = shards.DocumentSource(shards.split_paths(prepared_dir, "train"))
    builder = pipeline._DocumentExamples(source, sp_tokenizer, data, seed=0, epoch_length=len(source),
                                         mask_rate=data.mask_rate)
    for document in range(20):
        again = builder.examples(document, epoch=0)
        for first, second in zip(builder.examples(document, epoch=0), again):
            np.testing.assert_array_equal(first["input_ids"], second["input_ids"])
    changed = sum(
        not np.array_equal(a["masked_positions"], b["masked_positions"])
        for document in range(20)
        for a, b in zip(builder.examples(document, epoch=0), builder.examples(document, epoch=1)))
    assert changed >= 15
    # Through the pipeline: epoch e of document d is `global index // epoch length`.
    assert builder.flat_map((len(source) + 3, 3))[0]["input_ids"].tolist() == \
        builder.examples(3, epoch=1)[0]["input_ids"].tolist()


@pytest.mark.parametrize("packing", [False, True])
def test_resume_gives_the_identical_next_batch(prepared_dir, sp_tokenizer_path, sp_tokenizer, packing):
    data = _data(prepared_dir, sp_tokenizer_path, packing=packing)
    dataset = pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=3)
    iterator = iter(dataset)
    _batches(iterator, 7)
    state = json.loads(json.dumps(iterator.get_state()))  # what a checkpoint stores
    expected = _batches(iterator, 4)
    resumed = iter(pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=3))
    resumed.set_state(state)
    _assert_same(_batches(resumed, 4), expected)


def test_evaluation_covers_the_split_once_and_pads(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    data = _data(prepared_dir, sp_tokenizer_path)
    batches = list(pipeline.pretraining_dataset(data, sp_tokenizer, "validation", batch_size=16, seed=0, train=False))
    source = shards.DocumentSource(shards.split_paths(prepared_dir, "validation"))
    builder = pipeline._DocumentExamples(source, sp_tokenizer, data, seed=0, epoch_length=len(source),
                                         mask_rate=data.mask_rate)
    expected = sum(len(builder.examples(document, 0)) for document in range(len(source)))
    assert sum(batch["sentence_weights"].sum() for batch in batches) == expected
    assert all(batch["input_ids"].shape == (16, 64) for batch in batches)
    last = batches[-1]
    padding = last["sentence_weights"] == 0
    assert padding.any() and (last["attention_mask"][padding] == 0).all() and (last["masked_weights"][padding] == 0).all()
    # Evaluation is the same every time.
    _assert_same(batches, list(pipeline.pretraining_dataset(data, sp_tokenizer, "validation", batch_size=16,
                                                              seed=9, train=False)))


def test_training_processes_read_disjoint_documents_covering_the_split(prepared_dir, sp_tokenizer_path,
                                                                      sp_tokenizer, monkeypatch):
    data = _data(prepared_dir, sp_tokenizer_path)
    epoch = len(shards.DocumentSource(shards.split_paths(prepared_dir, "train")))
    seen = {0: [], 1: []}
    examples = pipeline._DocumentExamples.examples

    for index in (0, 1):
        def recording(self, document_index, epoch, index=index):
            seen[index].append(document_index)
            return examples(self, document_index, epoch)

        monkeypatch.setattr(pipeline._DocumentExamples, "examples", recording)
        iterator = iter(pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=0,
                                                    process_index=index, process_count=2))
        while len(seen[index]) < (epoch + 1 - index) // 2:
            next(iterator)
    first, second = set(seen[0][:(epoch + 1) // 2]), set(seen[1][:epoch // 2])
    assert not first & second and first | second == set(range(epoch))


def test_evaluation_rows_split_across_processes(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    data = _data(prepared_dir, sp_tokenizer_path)

    def batches(index, count):
        return list(pipeline.pretraining_dataset(data, sp_tokenizer, "validation", batch_size=16 // count, seed=0,
                                                 train=False, process_index=index, process_count=count))

    first, second, whole = batches(0, 2), batches(1, 2), batches(0, 1)
    assert len(first) == len(second) == len(whole)  # every process runs the same number of steps
    for half, other, full in zip(first, second, whole):
        for name in full:
            np.testing.assert_array_equal(np.concatenate([half[name], other[name]]), full[name])


def test_another_tokenizers_shards_are_refused(prepared_dir, sp_tokenizer_path, builtin_documents, tmp_path):
    other = tokenizer.train_sentencepiece((s for d in builtin_documents[:500] for s in d), vocab_size=600)
    data = _data(prepared_dir, sp_tokenizer_path)
    with pytest.raises(ValueError, match="prepared with another tokenizer"):
        pipeline.pretraining_dataset(data, other, "train", batch_size=8, seed=0)
    with pytest.raises(ValueError, match="set config.model.vocab_size >= 4000"):
        shards.check_compatible(prepared_dir, tokenizer.load_tokenizer(sp_tokenizer_path), model_vocab_size=3000)
    with pytest.raises(FileNotFoundError, match="bertjax prepare_data"):
        pipeline.pretraining_dataset(_data(tmp_path, sp_tokenizer_path), other, "train", batch_size=8, seed=0)


def test_worker_processes_give_batches(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    from absl import flags
    flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags
    data = _data(prepared_dir, sp_tokenizer_path, num_workers=2)
    iterator = iter(pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=0))
    try:
        batches = _batches(iterator, 3)
    finally:
        iterator.close()
    assert all(batch["input_ids"].shape == (8, 64) for batch in batches)


@pytest.mark.parametrize("packing", [False, True])
def test_empty_batch_has_the_pipelines_shapes(prepared_dir, sp_tokenizer_path, sp_tokenizer, packing):
    data = _data(prepared_dir, sp_tokenizer_path, packing=packing)
    batch = next(iter(pipeline.pretraining_dataset(data, sp_tokenizer, "train", batch_size=8, seed=0)))
    empty = pipeline.empty_batch(data, 8)
    assert {name: (value.shape, value.dtype) for name, value in empty.items()} == \
        {name: (value.shape, value.dtype) for name, value in batch.items()}
    assert not any(value.any() for value in empty.values())  # all padding: nothing attends, nothing weighs


def test_evaluation_can_mask_at_another_rate_than_training(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    """The modern recipe trains at 30% and is compared with BERT's at 15% held-out masking: `eval_mask_rate`."""
    data = _data(prepared_dir, sp_tokenizer_path, packing=True, max_seq_length=128, max_predictions_per_seq=80,
                 mask_rate=0.3, eval_mask_rate=0.15)

    def share(split, train):
        batches = pipeline.pretraining_dataset(data, sp_tokenizer, split, batch_size=16, seed=0, train=train)
        batch = next(iter(batches))
        real = (batch["attention_mask"] > 0) & ~np.isin(batch["input_ids"], [sp_tokenizer.cls_id, sp_tokenizer.sep_id])
        return batch["masked_weights"].sum() / real.sum(), batch["masked_positions"].shape

    (train_share, train_shape), (eval_share, eval_shape) = share("train", True), share("validation", False)
    assert train_shape == eval_shape == (16, min(4 * 80, int(0.3 * 128) + 4))  # one shape: one compiled step
    assert train_share == pytest.approx(0.3, abs=0.03) and eval_share == pytest.approx(0.15, abs=0.03)
