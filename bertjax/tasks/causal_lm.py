"""Language-model objectives on the prepared shards: the forward (GPT-style) LM, and the ablations behind
BERT's masking.

Every objective reads the same data: each document becomes `[CLS] sentence tokens... [SEP]`, documents are
concatenated in shuffled order and cut into rows of `max_seq_length` tokens (grain's concat-then-split
packer), so no row holds padding except the last one of an evaluation split. The packer numbers the
documents in a row (1, 2, ...) and restarts positions per document; those numbers are the model's
`attention_mask`, so a document never attends to its neighbour. A document longer than a row continues in
the next row from position 0.

    objective              model                                           predicts
    causal_lm              causal encoder + tied LM head (BertForCausalLM)  token t+1 from tokens <= t
    shifted_lm_unmasked    the same with bidirectional attention            token t+1 from the whole row:
                                                                            it can copy its next input
    forward_backward       two separate causal encoders, the second         t+1 (forward) and t-1 (backward)
                           reading each row reversed
    elmo                   a two-direction LSTM LM (`bertjax.elmo`)          t+1 (forward) and t-1 (backward)

Batch keys: input_ids, attention_mask (document ids, 0 on padding), position_ids (B, L).
Shape letters: B batch, L length, D hidden, V vocab.
"""

import dataclasses
import functools

import flax.linen as nn
import grain
import jax
import numpy as np
from grain.experimental import ConcatThenSplitIterDataset

from bertjax import elmo, losses
from bertjax.data import batching, shards, tokenizer
from bertjax.heads import ForwardBackwardLM, TransformerLM
from bertjax.model import BertConfig
from bertjax.tasks.base import TaskBase

OBJECTIVES = ("causal_lm", "shifted_lm_unmasked", "forward_backward", "elmo")


# --- data -------------------------------------------------------------------------------------------------------
class _DocumentTokens(grain.transforms.Map):
    """A document index -> `[CLS] its tokens [SEP]` as one int32 sequence."""

    def __init__(self, source: shards.DocumentSource, cls_id: int, sep_id: int):
        self._source, self._cls_id, self._sep_id = source, cls_id, sep_id

    def map(self, document_index: int) -> dict[str, np.ndarray]:
        pieces = [[self._cls_id], *self._source[document_index], [self._sep_id]]
        return {"input_ids": np.concatenate(pieces).astype(np.int32)}


def _as_row(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"input_ids": packed["input_ids"], "attention_mask": packed["input_ids_segment_ids"],
            "position_ids": packed["input_ids_positions"]}


def batch_fields(max_seq_length: int) -> dict[str, batching.Field]:
    """Rows of `max_seq_length` tokens; missing rows (a short last batch) are all padding."""
    return {name: batching.Field((max_seq_length,)) for name in ("input_ids", "attention_mask", "position_ids")}


def lm_dataset(data, tok: tokenizer.Tokenizer, split: str, *, batch_size: int, seed: int, train: bool = True,
               process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
    """Batches of contiguous text from `data.prepared_dir` (this process's `batch_size` rows).

    `train=True` shuffles the documents anew each epoch and repeats forever, each process reading its own
    documents; `train=False` reads the split once in order (every process all of it, keeping its own rows of
    each global batch) and pads the last batch with empty rows. The iterator's state is JSON (resumable).
    """
    shards.check_compatible(data.prepared_dir, tok)
    source = shards.DocumentSource(shards.split_paths(data.prepared_dir, split))
    indices = grain.MapDataset.range(len(source))
    if train:
        indices = indices[process_index::process_count]
        if len(indices) == 0:
            raise ValueError(f"Split {split!r} has {len(source)} documents: too few for {process_count} processes.")
        indices = indices.shuffle(seed).repeat(None)
    documents = indices.map(_DocumentTokens(source, tok.cls_id, tok.sep_id))
    rows = ConcatThenSplitIterDataset(documents.to_iter_dataset(grain.ReadOptions(num_threads=0)),
                                      length_struct={"input_ids": data.max_seq_length}).map(_as_row)
    rows_per_batch = batching.rows_per_read(batch_size, train=train, process_count=process_count)
    dataset = rows.batch(rows_per_batch, drop_remainder=train, batch_fn=functools.partial(
        batching.collate, fields=batch_fields(data.max_seq_length), batch_size=rows_per_batch))
    dataset = batching.keep_process_rows(dataset, batch_size, train=train, process_index=process_index,
                                         process_count=process_count)
    if data.num_workers > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.num_workers))
    return dataset


def make_model(objective: str, model_config: BertConfig) -> nn.Module:
    """The module an objective trains, called as (input_ids, attention_mask, position_ids, deterministic=)
    -> `LMOutput`. The objective decides `model.causal`."""
    if objective == "causal_lm":
        return TransformerLM(dataclasses.replace(model_config, causal=True))
    if objective == "shifted_lm_unmasked":
        return TransformerLM(dataclasses.replace(model_config, causal=False))
    if objective == "forward_backward":
        return ForwardBackwardLM(dataclasses.replace(model_config, causal=True))
    if objective == "elmo":
        return elmo.ElmoLM(model_config)
    raise ValueError(f"task={objective!r} is not a language-model objective; choose one of {OBJECTIVES}.")


# --- the task ---------------------------------------------------------------------------------------------------
class LanguageModelTask(TaskBase):
    """A language-model objective (one of `OBJECTIVES`) for the one train loop, as `PretrainingTask` is. Its
    model (`make_model`) returns an `LMOutput`."""

    model_inputs = ("input_ids", "attention_mask", "position_ids")

    def __init__(self, config, objective: str | None = None):
        objective = objective or config.task
        if objective not in OBJECTIVES:
            raise ValueError(f"task={objective!r} is not a language-model objective; choose one of {OBJECTIVES}.")
        self.name = objective
        self.data = config.data
        self.require(config.data, ("prepared_dir",), "data", "(`bertjax prepare_data` makes it).")
        # Recorded in the run's config.json: export, generate and features find the tokenizer there.
        config.data.tokenizer = shards.resolve_tokenizer(config.data)
        self.tokenizer = tokenizer.load_tokenizer(config.data.tokenizer, config.data.lowercase)
        self.follow_tokenizer(config.model, self.tokenizer, config.data.tokenizer)  # before the model is built
        self.model_config = BertConfig.from_config(config.model)
        self.model = make_model(objective, self.model_config)
        if objective != "elmo":  # an LSTM has no position embeddings
            self.check_sequence_length(config.data.max_seq_length, self.model_config)
        shards.check_compatible(config.data.prepared_dir, self.tokenizer, self.model_config.vocab_size)
        for split in ("train", "validation"):  # both must hold documents: found now, not at the final evaluation
            shards.split_paths(config.data.prepared_dir, split)
        self.identity = {"task": self.name, "tokenizer_fingerprint": self.tokenizer.fingerprint}

    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        return lm_dataset(self.data, self.tokenizer, split, batch_size=batch_size, seed=seed, train=train,
                          process_index=process_index, process_count=process_count)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        return batching.empty_batch(batch_fields(self.data.max_seq_length), batch_size)

    def loss(self, params, batch, rng: jax.Array | None, normalizers=None):
        """(loss, metric sums); dropout is on when `rng` is given."""
        return losses.lm_loss(self.apply(params, batch, rng), batch, normalizers)

    normalizers = staticmethod(losses.lm_normalizers)
    summarize = staticmethod(losses.summarize_lm)
