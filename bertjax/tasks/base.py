"""The task contract: what the one train loop (`bertjax.train`) may call on a task, member by member, and the
small base every task shares.

A task is a job's data, model, loss and evaluation; the loop owns the train state, the compiled steps,
checkpoints and reporting. Two kinds exist:

    Task             pretraining and the language-model objectives: evaluation adds up metric sums over the
                     validation split's batches (`loss` then `summarize`)
    PredictiveTask   fine-tuning (GLUE, SQuAD, tagging, ...): evaluation predicts every example of each split
                     once and scores the whole split (`predict` then `evaluate`), since metrics such as F1,
                     Matthews correlation or exact match do not add up over batches; the best evaluation's
                     parameters are kept

Batches are dicts of numpy arrays of fixed shapes (`bertjax.data.batching`); predictive tasks' batches carry
`example_index` and `example_weight` (0 for rows that pad the last evaluation batch).
"""

import pathlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax
import numpy as np
from absl import logging

from bertjax.model import BertConfig

Batch = Mapping[str, Any]  # name -> (B, ...) array: numpy on the host, jax.Array inside the step


@runtime_checkable
class Task(Protocol):
    """What the train loop calls on every task."""

    name: str  # shown in the run's first line and its logs
    model_config: BertConfig  # the encoder's settings (its layer count sets layer-wise learning-rate decay)
    identity: dict  # recorded in every checkpoint; resuming a run with other values is refused
    fresh_parameters: tuple[str, ...]  # top-level modules that start new when loading `init_checkpoint`

    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1) -> Iterable[Batch]:
        """This process's batches of `batch_size` rows. `train=True`: endless and shuffled (seeded), each
        process reading its own examples; a checkpointable grain iterator. `train=False`: the split once, in
        order, every process seeing the same number of batches."""

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """An all-padding batch of exactly the dataset's shapes and dtypes, to initialise and compile with."""

    def real_tokens(self, batch: Batch) -> int:
        """The batch's real (not padding) tokens: what tokens/s and MFU count."""

    def model_flops(self, batch: Batch) -> float | None:
        """Model FLOPs of one training step on `batch` (real tokens only), or None: the loop then counts
        XLA's FLOPs of the compiled step."""

    def init_params(self, rng: jax.Array, batch: Batch, boxed: bool = False) -> Any:
        """Fresh parameters; `boxed` keeps their logical axis names (for shardings)."""

    def loss(self, params: Any, batch: Batch, rng: jax.Array | None,
             normalizers: Mapping[str, jax.Array] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(scalar loss, metric sums) of one batch; dropout is on when `rng` is given. Means divide by
        `normalizers` (default: this batch's), so accumulated micro-batches give the whole batch's gradient."""

    def normalizers(self, batch: Batch) -> dict[str, jax.Array]:
        """What a whole batch's mean losses divide by (summed weights)."""

    def summarize(self, sums: Mapping[str, Any]) -> dict[str, float]:
        """Metric sums added up over steps or batches -> the reported means."""


@runtime_checkable
class PredictiveTask(Task, Protocol):
    """A fine-tuning task: evaluated from whole-split predictions."""

    metric: str  # the metric that selects the best checkpoint (higher is better)
    eval_splits: tuple[str, ...]  # scored at every evaluation (MNLI: matched and mismatched)
    test_splits: tuple[str, ...]  # written by `--predict`
    labelled_test_splits: tuple[str, ...]  # test splits with gold labels, scored too by `--evaluate_only`

    def num_train_examples(self) -> int:
        """Training rows, to turn `finetune.num_epochs` into steps."""

    def read(self, split: str) -> None:
        """Open and check one split's file now (labels, tags, columns, encoding, not empty), keeping what it
        read for the run: fine-tuning reads every split it will use before training starts."""

    def predict(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
        """Per-row outputs of one batch, without dropout (jitted by the loop)."""

    def evaluate(self, predictions: dict[str, np.ndarray], split: str) -> dict[str, float]:
        """A whole split's metrics from its predictions, ordered by example index."""

    def write_predictions(self, predictions: dict[str, np.ndarray], split: str,
                          directory: str | pathlib.Path) -> list[pathlib.Path]:
        """A split's prediction files in the task's official format; returns the paths written."""


def is_predictive(task: Task) -> bool:
    return isinstance(task, PredictiveTask)


class TaskBase:
    """What every task shares: its defaults for the contract's optional parts, the model called on the batch
    keys `model_inputs` (positionally, in that order), and the checks of settings each task makes against
    its model. A subclass sets `model` (a Flax module) and `model_config`."""

    fresh_parameters: tuple[str, ...] = ()
    labelled_test_splits: tuple[str, ...] = ()  # predictive tasks: none unless their test files have labels
    model_inputs: tuple[str, ...] = ("input_ids", "segment_ids", "attention_mask")

    def init_params(self, rng: jax.Array, batch: Batch, boxed: bool = False) -> Any:
        params = self.model.init(rng, *(batch[name] for name in self.model_inputs))["params"]
        return params if boxed else nn.meta.unbox(params)

    def apply(self, params: Any, batch: Batch, rng: jax.Array | None = None) -> Any:
        """The model's output on a batch; dropout is on when `rng` is given."""
        return self.model.apply({"params": params}, *(batch[name] for name in self.model_inputs),
                                deterministic=rng is None, rngs={"dropout": rng} if rng is not None else {})

    @staticmethod
    def real_tokens(batch: Batch) -> int:
        return int(np.count_nonzero(batch["attention_mask"]))

    def model_flops(self, batch: Batch) -> float | None:
        del batch
        return None

    @staticmethod
    def check_sequence_length(max_seq_length: int, model_config: BertConfig) -> None:
        """A model with learned positions holds no more than `max_position_embeddings` tokens a row."""
        if max_seq_length > model_config.max_position_embeddings:
            raise ValueError(f"data.max_seq_length={max_seq_length} exceeds the model's "
                             f"max_position_embeddings={model_config.max_position_embeddings}.")

    @staticmethod
    def require(group, keys: Iterable[str], group_name: str, hint: str) -> None:
        """Each of `keys` set in the config group, else an error naming the key and `hint` (what makes it)."""
        for key in keys:
            if not group[key]:
                raise ValueError(f"config.{group_name}.{key} is not set; pass --config.{group_name}.{key}=... "
                                 f"{hint}")

    @staticmethod
    def follow_tokenizer(model_group, tok, tokenizer_path: str) -> None:
        """`model.vocab_size` unset: set to the tokenizer's, in the config itself, so that the run's config.json
        records it. Set: at least the tokenizer's (else an error naming both); larger is allowed (a vocabulary
        padded to a multiple of 128 for speed, say) and said once, as a warning."""
        if model_group.vocab_size is None:
            model_group.vocab_size = tok.vocab_size
        elif model_group.vocab_size < tok.vocab_size:
            raise ValueError(f"config.model.vocab_size={model_group.vocab_size} is smaller than the "
                             f"{tok.vocab_size} ids of the tokenizer {tokenizer_path}; leave it unset to follow "
                             f"the tokenizer, or set it to at least {tok.vocab_size}.")
        elif model_group.vocab_size > tok.vocab_size:
            logging.warning("config.model.vocab_size=%d is larger than the %d ids of the tokenizer %s: the tokenizer "
                            "never produces %d of the model's ids.", model_group.vocab_size, tok.vocab_size,
                            tokenizer_path, model_group.vocab_size - tok.vocab_size)

    @staticmethod
    def check_tokenizer_fits(tok, model_config: BertConfig) -> None:
        if tok.vocab_size > model_config.vocab_size:
            raise ValueError(f"The tokenizer has {tok.vocab_size} ids, the model's vocab_size is "
                             f"{model_config.vocab_size}; use the tokenizer the checkpoint was trained with.")


def label_subset(examples: list, count: int, seed: int, name: str, labels: list | None = None) -> list:
    """`finetune.train_examples`: `count` of a training split's `examples` drawn at random by `seed` (a
    learning curve's point; each seed draws its own), kept in their order; all of them when `count` is 0.
    With each example's class in `labels`, the draw is stratified, as few-shot evaluations draw: every class
    gets `count // classes` examples (the remainder going to classes drawn at random), a class with fewer
    gives all it has and the rest come from the others."""
    if count == 0:
        return examples
    if count > len(examples):
        raise ValueError(f"finetune.train_examples={count}: {name}'s training split has only {len(examples):,} "
                         "examples; choose fewer, or 0 for all.")
    rng = np.random.default_rng(seed)
    if labels is None:
        keep = rng.choice(len(examples), count, replace=False)
    else:
        classes = sorted(set(labels), key=str)
        members = [rng.permutation([index for index, label in enumerate(labels) if label == found])
                   for found in classes]
        quota = np.full(len(classes), count // len(classes))
        quota[rng.choice(len(classes), count % len(classes), replace=False)] += 1
        keep = [index for group, share in zip(members, quota) for index in group[:share]]
        rest = rng.permutation([index for group, share in zip(members, quota) for index in group[share:]])
        keep = [*keep, *rest[:count - len(keep)]]  # the shares small classes could not fill
    return [examples[index] for index in np.sort(np.asarray(keep, np.int64))]
