"""Packing several short examples into one row, so that fewer tokens are padding.

grain's first-fit packer concatenates the token-aligned features of examples that fit together and
numbers them (`*_segment_ids`: 1, 2, ... per example, 0 on padding) with positions restarting per example.
Those numbers become the model's `attention_mask` (equal ids attend to each other, nothing else: no
attention across examples) and `position_ids`. Each packed example keeps its own sentence label, read at
its [CLS] position (`cls_positions`).
"""

import grain
import numpy as np
from grain.experimental import FirstFitPackIterDataset

from bertjax.data.masking import prediction_slots

TOKEN_FEATURES = ("input_ids", "segment_ids", "mlm_targets", "mlm_weights", "sentence_labels", "sentence_weights")


def token_aligned(example: dict[str, np.ndarray], sentence_task: bool) -> dict[str, np.ndarray]:
    """An example -> features of its length, which the packer can concatenate: prediction targets and
    weights at their positions, the sentence label and weight at [CLS] (position 0)."""
    length = len(example["input_ids"])
    features = {"input_ids": example["input_ids"], "segment_ids": example["segment_ids"]}
    for name in ("mlm_targets", "mlm_weights", "sentence_labels", "sentence_weights"):
        features[name] = np.zeros(length, np.int32)
    features["mlm_targets"][example["masked_positions"]] = example["masked_ids"]
    features["mlm_weights"][example["masked_positions"]] = 1
    features["sentence_labels"][0] = example["sentence_label"]
    features["sentence_weights"][0] = int(sentence_task)
    return features


def pack(examples: grain.IterDataset, *, max_seq_length: int, max_examples_per_row: int,
         num_packing_bins: int) -> grain.IterDataset:
    return FirstFitPackIterDataset(
        examples, length_struct={name: max_seq_length for name in TOKEN_FEATURES},
        num_packing_bins=num_packing_bins, shuffle_bins=False, max_sequences_per_bin=max_examples_per_row)


def from_packed(row: dict[str, np.ndarray], *, max_predictions: int, max_examples_per_row: int,
                sentence_task: bool) -> dict[str, np.ndarray]:
    """A packed row -> model inputs; `max_predictions` slots for the whole row."""
    inputs = {
        "input_ids": row["input_ids"].astype(np.int32),
        "segment_ids": row["segment_ids"].astype(np.int32),
        "attention_mask": row["input_ids_segment_ids"].astype(np.int32),
        "position_ids": row["input_ids_positions"].astype(np.int32),
        **prediction_slots(row["mlm_weights"], row["mlm_targets"], max_predictions),
    }
    if sentence_task:
        cls_positions = np.flatnonzero(row["sentence_weights"])
        inputs["cls_positions"] = np.zeros(max_examples_per_row, np.int32)
        inputs["cls_positions"][:len(cls_positions)] = cls_positions
        inputs["sentence_label"] = np.zeros(max_examples_per_row, np.int32)
        inputs["sentence_label"][:len(cls_positions)] = row["sentence_labels"][cls_positions]
        inputs["sentence_weights"] = np.zeros(max_examples_per_row, np.float32)
        inputs["sentence_weights"][:len(cls_positions)] = 1.0
    return inputs
