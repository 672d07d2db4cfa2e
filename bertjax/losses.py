"""Losses and metrics computed inside the step: pure `jnp`, weighted, no Python control flow on values.

Each metric is returned as a (sum, weight) pair so that batches, accumulation steps and hosts can be
added up before dividing; `pretraining_loss` also returns the means it optimises.
"""

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from bertjax.heads import PretrainingOutput


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array):
    """Sum of weighted per-item cross entropies, and the sum of weights. Computed in float32."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    weights = weights.astype(jnp.float32)
    return jnp.sum(losses * weights), jnp.sum(weights)


def weighted_correct(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted count of items whose arg-max prediction equals the label."""
    correct = jnp.argmax(logits, axis=-1) == labels
    return jnp.sum(correct * weights.astype(jnp.float32))


def _safe_mean(total: jax.Array, weight: jax.Array) -> jax.Array:
    return total / jnp.maximum(weight, 1e-8)  # an all-padding batch gives 0, not NaN


def _sentence_weights(batch: Mapping[str, jax.Array]) -> jax.Array:
    labels = batch["sentence_label"]
    return batch.get("sentence_weights", jnp.ones(labels.shape, jnp.float32))


def pretraining_normalizers(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The weights a whole batch's mean losses divide by. Passing a full batch's normalizers to the loss of
    each of its micro-batches makes the accumulated gradient equal to the full batch's."""
    normalizers = {"mlm": jnp.sum(batch["masked_weights"].astype(jnp.float32))}
    if "sentence_label" in batch:
        normalizers["sentence"] = jnp.sum(_sentence_weights(batch).astype(jnp.float32))
    return normalizers


def pretraining_loss(output: PretrainingOutput, batch: Mapping[str, jax.Array],
                     normalizers: Mapping[str, jax.Array] | None = None):
    """BERT's loss: mean masked-LM cross entropy plus, when the batch has a `sentence_label`, the mean
    sentence-task (NSP or SOP) cross entropy.

    Batch keys: `masked_ids` (B, P) targets at `masked_positions`, `masked_weights` (B, P) 1 for real
    predictions and 0 for padding slots; optional `sentence_label` (B,) with `sentence_weights` (B,)
    (0 for padding examples of an evaluation batch; all ones when absent).
    `normalizers` (default: this batch's, see `pretraining_normalizers`) are what the sums divide by.
    Returns (total loss, metrics): metrics hold `*_sum` and `*_weight` entries to be aggregated.
    """
    if normalizers is None:
        normalizers = pretraining_normalizers(batch)
    mlm_loss_sum, mlm_weight = weighted_cross_entropy(
        output.mlm_logits, batch["masked_ids"], batch["masked_weights"])
    metrics = {
        "mlm_loss_sum": mlm_loss_sum,
        "mlm_correct_sum": weighted_correct(output.mlm_logits, batch["masked_ids"], batch["masked_weights"]),
        "mlm_weight": mlm_weight,
    }
    total = _safe_mean(mlm_loss_sum, normalizers["mlm"])
    if "sentence_label" in batch:
        labels, weights = batch["sentence_label"], _sentence_weights(batch)
        sentence_loss_sum, sentence_weight = weighted_cross_entropy(output.sentence_logits, labels, weights)
        metrics.update(
            sentence_loss_sum=sentence_loss_sum,
            sentence_correct_sum=weighted_correct(output.sentence_logits, labels, weights),
            sentence_weight=sentence_weight)
        total = total + _safe_mean(sentence_loss_sum, normalizers["sentence"])
    return total, metrics


def summarize(metric_sums: Mapping[str, jax.Array]) -> dict[str, float]:
    """Aggregated `*_sum` / `*_weight` entries -> means: loss, accuracy, and MLM perplexity."""
    summary = {}
    for task in ("mlm", "sentence"):
        if f"{task}_weight" not in metric_sums:
            continue
        weight = float(metric_sums[f"{task}_weight"])
        summary[f"{task}_loss"] = float(metric_sums[f"{task}_loss_sum"]) / max(weight, 1e-8)
        summary[f"{task}_accuracy"] = float(metric_sums[f"{task}_correct_sum"]) / max(weight, 1e-8)
    if "mlm_loss" in summary:
        summary["mlm_perplexity"] = math.exp(min(summary["mlm_loss"], 700.0))
    return summary


def classification_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array, normalizer: jax.Array, *,
                        regression: bool = False):
    """Sequence classification: mean cross entropy of (B, C) logits against (B,) class indices; or, with
    `regression` (one output, STS-B), mean squared error against (B,) scores. Rows of weight 0 (padding)
    count for nothing; the sums divide by `normalizer` (the whole batch's weight, for exact accumulation).
    Returns (loss, metric sums)."""
    weights = weights.astype(jnp.float32)
    if regression:
        errors = (logits[:, 0].astype(jnp.float32) - labels.astype(jnp.float32)) ** 2
        loss_sum = jnp.sum(errors * weights)
        metrics = {"squared_error_sum": loss_sum}
    else:
        loss_sum, _ = weighted_cross_entropy(logits, labels, weights)
        metrics = {"correct_sum": weighted_correct(logits, labels, weights)}
    return _safe_mean(loss_sum, normalizer), {**metrics, "example_loss_sum": loss_sum, "example_weight": jnp.sum(weights)}


def summarize_classification(metric_sums: Mapping[str, jax.Array]) -> dict[str, float]:
    weight = max(float(metric_sums["example_weight"]), 1e-8)
    summary = {"example_loss": float(metric_sums["example_loss_sum"]) / weight}
    if "correct_sum" in metric_sums:
        summary["accuracy"] = float(metric_sums["correct_sum"]) / weight
    return summary
