"""The pretraining input pipeline on grain: prepared documents -> sentence pairs -> masked examples ->
(packed) fixed-shape batches, sharded per JAX process and resumable to the very next batch.

    document indices ─ slice for this process ─ shuffle (anew each epoch) ─ repeat
      ─ flat map: document -> pairs -> [CLS] A [SEP] B [SEP] -> masked          (seeded by seed, document, epoch)
      ─ optional packing ─ fixed shapes ─ batch ─ optional worker processes

Every step is a grain dataset, so `iterator.get_state()` / `set_state()` (JSON) restore the exact position.
A resumed run must use the same `num_workers`: the number of workers changes the order of elements.
Evaluation datasets read their split once, in order, with epoch-0 masks (the same every evaluation), and
pad the last batch with examples of weight zero, so every example counts exactly once.

Batch keys: input_ids, segment_ids, attention_mask (B, L); masked_positions, masked_ids, masked_weights
(B, P); sentence_label, sentence_weights (B,) unless sentence_task is "none". Packed rows also carry
position_ids (B, L), and per packed example cls_positions, sentence_label, sentence_weights (B, E).
"""

import functools

import grain
import numpy as np

from bertjax.data import batching, packing, shards
from bertjax.data.masking import MaskingTables, mask_example
from bertjax.data.pairs import SENTENCE_TASKS, document_pairs, randint
from bertjax.data.tokenizer import Tokenizer


# Documents in a row that give no example (or a whole epoch of them, if fewer) before the pipeline gives up.
STARVING_DOCUMENTS = 10_000


class _DocumentExamples(grain.experimental.FlatMapTransform):
    """(global index, document index) -> that document's masked examples for the epoch, token-aligned."""

    max_fan_out = 1024  # only bounds a MapDataset flat map; this one runs on an IterDataset

    def __init__(self, source: shards.DocumentSource, tokenizer: Tokenizer, data, seed: int, epoch_length: int,
                 mask_rate: float):
        self._source = source
        self._tables = MaskingTables.from_tokenizer(tokenizer)
        self._cls_id, self._sep_id = tokenizer.cls_id, tokenizer.sep_id
        self._data = {key: data[key] for key in ("max_seq_length", "max_predictions_per_seq",
                                                  "whole_word_masking", "sentence_task", "short_seq_prob")}
        self._data["mask_rate"] = mask_rate
        self._seed, self._epoch_length = seed, epoch_length
        self._barren = 0  # documents in a row that gave no example

    def flat_map(self, element: tuple[int, int]) -> list[dict[str, np.ndarray]]:
        global_index, document_index = element
        epoch = global_index // self._epoch_length
        examples = self.examples(document_index, epoch)
        self._barren = 0 if examples else self._barren + 1
        if self._barren >= min(self._epoch_length, STARVING_DOCUMENTS):  # else the loop would wait forever
            data = self._data
            raise ValueError(
                f"{self._barren} documents in a row gave no training example with data.max_seq_length="
                f"{data['max_seq_length']} and data.sentence_task={data['sentence_task']!r}: the rows leave no room "
                "for the documents' sentences. Raise data.max_seq_length (BERT: 128), or check that "
                "data.prepared_dir holds documents of more than one sentence.")
        return examples

    def examples(self, document_index: int, epoch: int) -> list[dict[str, np.ndarray]]:
        data = self._data
        rng = np.random.default_rng([self._seed, document_index, epoch])
        single = data["sentence_task"] == "none"

        def random_document(rng):
            other = document_index
            for _ in range(10):  # as BERT: another document, if there is one
                other = randint(rng, 0, len(self._source))
                if other != document_index:
                    break
            return self._source[other]

        pairs = document_pairs(
            self._source[document_index], rng, max_num_tokens=data["max_seq_length"] - (2 if single else 3),
            short_seq_prob=data["short_seq_prob"], sentence_task=data["sentence_task"],
            random_document=random_document)
        examples = []
        for tokens_a, tokens_b, label in pairs:
            pieces = [[self._cls_id], tokens_a, [self._sep_id]]
            if tokens_b is not None:
                pieces += [tokens_b, [self._sep_id]]
            tokens = np.concatenate(pieces).astype(np.int32)
            segment_ids = np.zeros(len(tokens), np.int32)
            segment_ids[len(tokens_a) + 2:] = 1
            masked = mask_example(tokens, rng, self._tables, rate=data["mask_rate"],
                                  max_predictions=data["max_predictions_per_seq"],
                                  whole_word=data["whole_word_masking"])
            examples.append({"input_ids": masked.input_ids, "segment_ids": segment_ids,
                             "masked_positions": masked.positions, "masked_ids": masked.targets,
                             "sentence_label": label})
        return examples


def batch_fields(data, max_predictions: int) -> dict[str, batching.Field]:
    """The keys of an unpacked pretraining batch: rows past the examples (a short last batch) are all zeros:
    no attention, weight 0."""
    length = (data.max_seq_length,)
    fields = {"input_ids": batching.Field(length), "segment_ids": batching.Field(length),
              "attention_mask": batching.Field(length, ones_over="input_ids"),
              "masked_positions": batching.Field((max_predictions,)), "masked_ids": batching.Field((max_predictions,)),
              "masked_weights": batching.Field((max_predictions,), np.float32, ones_over="masked_positions")}
    if data.sentence_task != "none":
        fields.update(sentence_label=batching.Field(()), sentence_weights=batching.Field((), np.float32, real=1.0))
    return fields


def _with_index(index: int, document_index: int) -> tuple[int, int]:
    return index, document_index


def prediction_slots_per_row(data) -> int:
    """Prediction slots per row. A packed row of E examples holding n_i tokens each predicts
    sum_i min(P, max(1, round(rate * n_i))) <= rate * L + E tokens, and at most E * P."""
    if not data.packing:
        return data.max_predictions_per_seq
    examples = data.max_examples_per_row
    rate = max(data.mask_rate, data.get("eval_mask_rate") or 0.0)  # evaluation batches have the same shapes
    return min(examples * data.max_predictions_per_seq, int(rate * data.max_seq_length) + examples)


def empty_batch(data, batch_size: int) -> dict[str, np.ndarray]:
    """An all-padding batch with exactly the shapes and dtypes `pretraining_dataset` yields (packed or not),
    made by the same code, for initialising and compiling before any data is read."""
    sentence_task = data.sentence_task != "none"
    slots = prediction_slots_per_row(data)
    if not data.packing:
        return batching.empty_batch(batch_fields(data, slots), batch_size)
    length = data.max_seq_length
    row = {name: np.zeros(length, np.int32) for name in packing.TOKEN_FEATURES}
    row.update(input_ids_segment_ids=np.zeros(length, np.int32), input_ids_positions=np.zeros(length, np.int32))
    row = packing.from_packed(row, max_predictions=slots, max_examples_per_row=data.max_examples_per_row,
                              sentence_task=sentence_task)
    return batching.stack([row], batch_size)


def pretraining_dataset(data, tokenizer: Tokenizer, split: str, *, batch_size: int, seed: int, train: bool = True,
                        process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
    """Batches of `batch_size` examples (this process's share of the global batch) from `data.prepared_dir`.

    `data` is the config's `data` group. `train=True` shuffles and repeats forever, each process reading its
    own documents; `train=False` reads the split once in order and pads the last batch.
    """
    if data.sentence_task not in SENTENCE_TASKS:
        raise ValueError(f"data.sentence_task={data.sentence_task!r}: choose one of {SENTENCE_TASKS}.")
    shards.check_compatible(data.prepared_dir, tokenizer)
    source = shards.DocumentSource(shards.split_paths(data.prepared_dir, split))
    indices = grain.MapDataset.range(len(source))
    if train:  # each process reads its own documents
        indices = indices[process_index::process_count]
    epoch_length = len(indices)
    if epoch_length == 0:
        raise ValueError(f"Split {split!r} has {len(source)} documents: too few for {process_count} processes.")
    if train:
        indices = indices.shuffle(seed).repeat(None)
    mask_rate = data.mask_rate if train or data.get("eval_mask_rate") is None else data.eval_mask_rate
    examples = _DocumentExamples(source, tokenizer, data, seed if train else 0, epoch_length, mask_rate)
    dataset = indices.map_with_index(_with_index).to_iter_dataset(grain.ReadOptions(num_threads=0))
    dataset = grain.experimental.FlatMapIterDataset(dataset, examples)

    sentence_task = data.sentence_task != "none"
    slots = prediction_slots_per_row(data)
    # Evaluation: every process reads the whole split and keeps its rows of each global batch, so that all
    # processes see the same number of batches.
    rows = batching.rows_per_read(batch_size, train=train, process_count=process_count)
    if data.packing:
        dataset = dataset.map(functools.partial(packing.token_aligned, sentence_task=sentence_task))
        dataset = packing.pack(dataset, max_seq_length=data.max_seq_length,
                               max_examples_per_row=data.max_examples_per_row, num_packing_bins=rows)
        dataset = dataset.map(functools.partial(
            packing.from_packed, max_predictions=slots, max_examples_per_row=data.max_examples_per_row,
            sentence_task=sentence_task))
        dataset = dataset.batch(rows, drop_remainder=train, batch_fn=functools.partial(batching.stack, batch_size=rows))
    else:
        dataset = dataset.batch(rows, drop_remainder=train, batch_fn=functools.partial(
            batching.collate, fields=batch_fields(data, slots), batch_size=rows))
    dataset = batching.keep_process_rows(dataset, batch_size, train=train, process_index=process_index,
                                         process_count=process_count)
    if data.num_workers > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.num_workers))
    return dataset
