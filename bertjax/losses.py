"""Losses and metrics computed inside the step: pure `jnp`, weighted, no Python control flow on values.

Each metric is returned as a (sum, weight) pair so that batches, accumulation steps and hosts can be
added up before dividing; `pretraining_loss` also returns the means it optimises.
"""

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import optax

from bertjax.heads import LMOutput, PretrainingOutput


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


def multi_label_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array, normalizer: jax.Array):
    """Multi-label classification: (B, C) logits against (B, C) 0/1 targets, a sigmoid binary cross entropy per
    label, averaged over the C labels of a row (HF's BCEWithLogitsLoss over a full batch), then over rows
    (weights and `normalizer` as `classification_loss`). `correct_sum` counts rows whose every label is right
    at a threshold of 0.5 (logit 0). Returns (loss, metric sums)."""
    weights = weights.astype(jnp.float32)
    labels = labels.astype(jnp.float32)
    per_row = jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels), axis=-1)  # B
    loss_sum = jnp.sum(per_row * weights)
    exact = jnp.all((logits > 0) == (labels > 0.5), axis=-1)
    return _safe_mean(loss_sum, normalizer), {"correct_sum": jnp.sum(exact * weights), "example_loss_sum": loss_sum,
                                              "example_weight": jnp.sum(weights)}


def summarize_classification(metric_sums: Mapping[str, jax.Array]) -> dict[str, float]:
    weight = max(float(metric_sums["example_weight"]), 1e-8)
    summary = {"example_loss": float(metric_sums["example_loss_sum"]) / weight}
    if "correct_sum" in metric_sums:
        summary["accuracy"] = float(metric_sums["correct_sum"]) / weight
    return summary


def span_loss(logits: jax.Array, batch, normalizers=None):
    """Mean of the start and end cross entropies over positions (padding excluded), weighted by
    `example_weight`; and metric sums (loss, start and end accuracy)."""
    weights = batch["example_weight"].astype(jnp.float32)
    normalizer = jnp.sum(weights) if normalizers is None else normalizers["span"]
    logits = jnp.where(batch["attention_mask"][..., None] > 0, logits, -1e9)  # B, L, 2
    sums = {"span_weight": jnp.sum(weights)}
    total = 0.0
    for index, name in enumerate(("start", "end")):
        labels = batch[f"{name}_position"]
        per_row = optax.softmax_cross_entropy_with_integer_labels(logits[..., index], labels)  # B
        sums[f"{name}_loss_sum"] = jnp.sum(per_row * weights)
        sums[f"{name}_correct_sum"] = jnp.sum((jnp.argmax(logits[..., index], -1) == labels) * weights)
        total = total + sums[f"{name}_loss_sum"]
    return total / 2 / jnp.maximum(normalizer, 1e-8), sums


def token_loss(logits: jax.Array, batch, normalizers=None):
    """Mean cross entropy over labelled positions (first sub-tokens of real examples); metric sums."""
    weights = batch["label_weights"] * batch["example_weight"][:, None].astype(jnp.float32)  # B, L
    normalizer = jnp.sum(weights) if normalizers is None else normalizers["tokens"]
    per_position = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["label_ids"])
    sums = {"tag_loss_sum": jnp.sum(per_position * weights), "tag_weight": jnp.sum(weights),
            "tag_correct_sum": jnp.sum((jnp.argmax(logits, -1) == batch["label_ids"]) * weights)}
    return sums["tag_loss_sum"] / jnp.maximum(normalizer, 1e-8), sums


# --- language models: next-token (and previous-token) prediction -------------------------------------
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


def summarize_lm(metric_sums: Mapping[str, jax.Array]) -> dict[str, float]:
    """Aggregated sums -> loss, accuracy and perplexity per direction."""
    summary = {}
    for name in ("lm", "backward_lm"):
        if f"{name}_weight" in metric_sums:
            weight = max(float(metric_sums[f"{name}_weight"]), 1e-8)
            summary[f"{name}_loss"] = float(metric_sums[f"{name}_loss_sum"]) / weight
            summary[f"{name}_accuracy"] = float(metric_sums[f"{name}_correct_sum"]) / weight
            summary[f"{name}_perplexity"] = math.exp(min(summary[f"{name}_loss"], 700.0))
    return summary
