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
import math
from collections.abc import Mapping
from typing import NamedTuple

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
from grain.experimental import ConcatThenSplitIterDataset

from bertjax.data import pipeline, shards, tokenizer
from bertjax.heads import BertForCausalLM
from bertjax.losses import weighted_correct, weighted_cross_entropy
from bertjax.model import BertConfig

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


def stack_rows(rows: list[dict[str, np.ndarray]], batch_size: int, max_seq_length: int) -> dict[str, np.ndarray]:
    """Rows -> a (batch_size, max_seq_length) batch; missing rows (a short last batch) are all padding."""
    batch = {name: np.zeros((batch_size, max_seq_length), np.int32)
             for name in ("input_ids", "attention_mask", "position_ids")}
    for index, row in enumerate(rows):
        for name in batch:
            batch[name][index] = row[name]
    return batch


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
    rows_per_batch = batch_size if train else batch_size * process_count
    dataset = rows.batch(rows_per_batch, drop_remainder=train, batch_fn=functools.partial(
        stack_rows, batch_size=rows_per_batch, max_seq_length=data.max_seq_length))
    if rows_per_batch != batch_size:
        dataset = dataset.map(functools.partial(pipeline.process_rows, start=process_index * batch_size,
                                                count=batch_size))
    if data.num_workers > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=data.num_workers))
    return dataset


# --- targets and loss -------------------------------------------------------------------------------------------
def next_token_targets(input_ids: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, L) -> the token each position predicts going forward (t+1), and weights: 1 where t+1 is in the
    same document, else 0 (the last token of a document or row, padding)."""
    targets = jnp.roll(input_ids, -1, axis=1)
    following = jnp.roll(attention_mask, -1, axis=1)
    weights = (attention_mask > 0) & (following == attention_mask)
    return targets, weights.at[:, -1].set(False).astype(jnp.float32)


def previous_token_targets(input_ids: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, L) -> the token each position predicts going backward (t-1), and its weights."""
    targets, weights = next_token_targets(input_ids[:, ::-1], attention_mask[:, ::-1])
    return targets[:, ::-1], weights[:, ::-1]


def reverse_rows(input_ids: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each row read right to left: ids, document ids, and positions restarting per (reversed) document."""
    input_ids, attention_mask = input_ids[:, ::-1], attention_mask[:, ::-1]
    index = jnp.arange(input_ids.shape[1])
    starts = jnp.concatenate([jnp.ones_like(attention_mask[:, :1], bool),
                              attention_mask[:, 1:] != attention_mask[:, :-1]], axis=1)
    first = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)  # B, L: where each position's document starts
    return input_ids, attention_mask, index - first


class LMOutput(NamedTuple):
    next_logits: jax.Array  # B, L, V: position t scores token t+1
    previous_logits: jax.Array | None  # B, L, V: position t scores token t-1 (two-direction models)
    hidden_states: tuple[jax.Array, ...]  # per layer (B, L, D), the input embeddings first


def lm_normalizers(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The weights a whole batch's mean losses divide by (as `losses.pretraining_normalizers`)."""
    _, weights = next_token_targets(batch["input_ids"], batch["attention_mask"])
    _, backward = previous_token_targets(batch["input_ids"], batch["attention_mask"])
    return {"lm": jnp.sum(weights), "backward_lm": jnp.sum(backward)}


def lm_loss(output: LMOutput, batch: Mapping[str, jax.Array], normalizers: Mapping[str, jax.Array] | None = None):
    """Mean next-token cross entropy, plus the mean previous-token one for two-direction models (ELMo
    maximises both log likelihoods jointly). Returns (loss, metric sums)."""
    normalizers = lm_normalizers(batch) if normalizers is None else normalizers
    metrics, total = {}, 0.0
    directions = [("lm", output.next_logits, next_token_targets)]
    if output.previous_logits is not None:
        directions.append(("backward_lm", output.previous_logits, previous_token_targets))
    for name, logits, targets_of in directions:
        targets, weights = targets_of(batch["input_ids"], batch["attention_mask"])
        loss_sum, weight = weighted_cross_entropy(logits, targets, weights)
        metrics.update({f"{name}_loss_sum": loss_sum, f"{name}_correct_sum": weighted_correct(logits, targets, weights),
                        f"{name}_weight": weight})
        total = total + loss_sum / jnp.maximum(normalizers[name], 1e-8)
    return total, metrics


def summarize(metric_sums: Mapping[str, jax.Array]) -> dict[str, float]:
    """Aggregated sums -> loss, accuracy and perplexity per direction."""
    summary = {}
    for name in ("lm", "backward_lm"):
        if f"{name}_weight" in metric_sums:
            weight = max(float(metric_sums[f"{name}_weight"]), 1e-8)
            summary[f"{name}_loss"] = float(metric_sums[f"{name}_loss_sum"]) / weight
            summary[f"{name}_accuracy"] = float(metric_sums[f"{name}_correct_sum"]) / weight
            summary[f"{name}_perplexity"] = math.exp(min(summary[f"{name}_loss"], 700.0))
    return summary


# --- models -----------------------------------------------------------------------------------------------------
class TransformerLM(BertForCausalLM):
    """`BertForCausalLM` (the same parameters) called as every objective's model is: (ids, document ids,
    positions) -> `LMOutput`."""

    def __call__(self, input_ids, attention_mask, position_ids, *, deterministic: bool = True) -> LMOutput:
        output = super().__call__(input_ids, None, attention_mask, position_ids, deterministic=deterministic)
        return LMOutput(output.logits, None, output.encoder.hidden_states)


class ForwardBackwardLM(nn.Module):
    """Bidirectionality from two one-directional models: a causal transformer LM reading left to right
    (`forward`) and another reading each row right to left (`backward`), trained side by side. Their
    features at each position and layer are concatenated (B, L, 2D), as ELMo concatenates its LSTMs'."""

    config: BertConfig

    def setup(self):
        self.forward = BertForCausalLM(self.config)
        self.backward = BertForCausalLM(self.config)

    def __call__(self, input_ids, attention_mask, position_ids, *, deterministic: bool = True) -> LMOutput:
        ahead = self.forward(input_ids, None, attention_mask, position_ids, deterministic=deterministic)
        reversed_ids, reversed_mask, reversed_positions = reverse_rows(input_ids, attention_mask)
        behind = self.backward(reversed_ids, None, reversed_mask, reversed_positions, deterministic=deterministic)
        hidden_states = tuple(jnp.concatenate([forward, backward[:, ::-1]], axis=-1)
                              for forward, backward in zip(ahead.encoder.hidden_states, behind.encoder.hidden_states))
        return LMOutput(ahead.logits, behind.logits[:, ::-1], hidden_states)


def make_model(objective: str, model_config: BertConfig) -> nn.Module:
    """The module an objective trains, called as (input_ids, attention_mask, position_ids, deterministic=)
    -> `LMOutput`. The objective decides `model.causal`."""
    from bertjax import elmo  # noqa: PLC0415 (elmo imports LMOutput from here)

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
class LanguageModelTask:
    """A language-model objective (one of `OBJECTIVES`) for the one train loop, as `PretrainingTask` is."""

    def __init__(self, config, objective: str | None = None):
        objective = objective or config.task
        if objective not in OBJECTIVES:
            raise ValueError(f"task={objective!r} is not a language-model objective; choose one of {OBJECTIVES}.")
        self.name = objective
        self.model_config = BertConfig.from_config(config.model)
        self.model = make_model(objective, self.model_config)
        self.data = config.data
        for key in ("tokenizer", "prepared_dir"):
            if not config.data[key]:
                raise ValueError(f"config.data.{key} is not set; pass --config.data.{key}=... "
                                 "(tools/train_tokenizer.py and tools/prepare_data.py make them).")
        if objective != "elmo" and config.data.max_seq_length > self.model_config.max_position_embeddings:
            raise ValueError(f"data.max_seq_length={config.data.max_seq_length} exceeds the model's "
                             f"max_position_embeddings={self.model_config.max_position_embeddings}.")
        self.tokenizer = tokenizer.load_tokenizer(config.data.tokenizer)
        shards.check_compatible(config.data.prepared_dir, self.tokenizer, self.model_config.vocab_size)
        self.identity = {"task": self.name, "tokenizer_fingerprint": self.tokenizer.fingerprint}

    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        return lm_dataset(self.data, self.tokenizer, split, batch_size=batch_size, seed=seed, train=train,
                          process_index=process_index, process_count=process_count)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        return stack_rows([], batch_size, self.data.max_seq_length)

    @staticmethod
    def real_tokens(batch) -> int:
        return int(np.count_nonzero(batch["attention_mask"]))

    def init_params(self, rng: jax.Array, batch, boxed: bool = False):
        """Parameters; `boxed` keeps their logical axis names (for shardings)."""
        params = self.model.init(rng, batch["input_ids"], batch["attention_mask"], batch["position_ids"])["params"]
        return params if boxed else nn.meta.unbox(params)

    def apply(self, params, batch, rng: jax.Array | None = None) -> LMOutput:
        """The model's output on a batch; dropout is on when `rng` is given."""
        return self.model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                                batch["position_ids"], deterministic=rng is None,
                                rngs={"dropout": rng} if rng is not None else {})

    def loss(self, params, batch, rng: jax.Array | None, normalizers=None):
        """(loss, metric sums); dropout is on when `rng` is given."""
        return lm_loss(self.apply(params, batch, rng), batch, normalizers)

    normalizers = staticmethod(lm_normalizers)
    summarize = staticmethod(summarize)
