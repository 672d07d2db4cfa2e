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


def pretraining_loss(output: PretrainingOutput, batch: Mapping[str, jax.Array]):
    """BERT's loss: mean masked-LM cross entropy plus, when the batch has a `sentence_label`, the mean
    sentence-task (NSP or SOP) cross entropy.

    Batch keys: `masked_ids` (B, P) targets at `masked_positions`, `masked_weights` (B, P) 1 for real
    predictions and 0 for padding slots; optional `sentence_label` (B,) with `sentence_weights` (B,)
    (0 for padding examples of an evaluation batch; all ones when absent).
    Returns (total loss, metrics): metrics hold `*_sum` and `*_weight` entries to be aggregated.
    """
    mlm_loss_sum, mlm_weight = weighted_cross_entropy(
        output.mlm_logits, batch["masked_ids"], batch["masked_weights"])
    metrics = {
        "mlm_loss_sum": mlm_loss_sum,
        "mlm_correct_sum": weighted_correct(output.mlm_logits, batch["masked_ids"], batch["masked_weights"]),
        "mlm_weight": mlm_weight,
    }
    total = _safe_mean(mlm_loss_sum, mlm_weight)
    if "sentence_label" in batch:
        labels = batch["sentence_label"]
        weights = batch.get("sentence_weights", jnp.ones(labels.shape, jnp.float32))
        sentence_loss_sum, sentence_weight = weighted_cross_entropy(output.sentence_logits, labels, weights)
        metrics.update(
            sentence_loss_sum=sentence_loss_sum,
            sentence_correct_sum=weighted_correct(output.sentence_logits, labels, weights),
            sentence_weight=sentence_weight)
        total = total + _safe_mean(sentence_loss_sum, sentence_weight)
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
