"""The pretraining loss against a hand computation, with padding weights."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import losses
from bertjax.heads import PretrainingOutput


def _log_softmax(row):
    row = np.asarray(row, np.float64)
    return row - np.log(np.sum(np.exp(row)))


def test_pretraining_loss_by_hand():
    mlm_logits = np.array([[[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]],
                           [[1.0, 3.0, 0.0], [9.0, -9.0, 9.0]]], np.float32)  # B=2, P=2, V=3
    masked_ids = np.array([[0, 2], [2, 1]])
    masked_weights = np.array([[1, 1], [1, 0]], np.float32)  # the last slot is padding
    sentence_logits = np.array([[0.3, -0.2], [1.5, 2.5], [0.0, 0.0]], np.float32)
    batch = {"masked_ids": jnp.asarray(masked_ids), "masked_weights": jnp.asarray(masked_weights),
             "sentence_label": jnp.array([0, 0, 1]), "sentence_weights": jnp.array([1.0, 1.0, 0.0])}
    output = PretrainingOutput(jnp.asarray(mlm_logits), jnp.asarray(sentence_logits), None)

    total, metrics = losses.pretraining_loss(output, batch)

    mlm_terms = [-_log_softmax(mlm_logits[0, 0])[0], -_log_softmax(mlm_logits[0, 1])[2],
                 -_log_softmax(mlm_logits[1, 0])[2]]
    sentence_terms = [-_log_softmax(sentence_logits[0])[0], -_log_softmax(sentence_logits[1])[0]]
    assert float(metrics["mlm_loss_sum"]) == pytest.approx(sum(mlm_terms), rel=1e-6)
    assert float(metrics["mlm_weight"]) == 3
    assert float(metrics["mlm_correct_sum"]) == 2  # [0,0] -> 0 right, [0,1] -> 2 right, [1,0] -> 1 wrong
    assert float(metrics["sentence_correct_sum"]) == 1
    assert float(total) == pytest.approx(np.mean(mlm_terms) + np.mean(sentence_terms), rel=1e-6)

    summary = losses.summarize(metrics)
    assert summary["mlm_accuracy"] == pytest.approx(2 / 3)
    assert summary["sentence_accuracy"] == pytest.approx(1 / 2)
    assert summary["mlm_perplexity"] == pytest.approx(math.exp(np.mean(mlm_terms)), rel=1e-5)


def test_without_a_sentence_task_only_mlm_counts():
    output = PretrainingOutput(jnp.zeros((1, 2, 4)), jnp.array([[5.0, -5.0]]), None)
    batch = {"masked_ids": jnp.array([[1, 3]]), "masked_weights": jnp.array([[1.0, 1.0]])}
    total, metrics = losses.pretraining_loss(output, batch)
    assert float(total) == pytest.approx(math.log(4), rel=1e-6)
    assert "sentence_weight" not in metrics


def test_all_padding_batch_gives_zero_not_nan():
    output = PretrainingOutput(jnp.zeros((1, 2, 4)), jnp.zeros((1, 2)), None)
    batch = {"masked_ids": jnp.zeros((1, 2), jnp.int32), "masked_weights": jnp.zeros((1, 2)),
             "sentence_label": jnp.zeros((1,), jnp.int32), "sentence_weights": jnp.zeros((1,))}
    total, _ = losses.pretraining_loss(output, batch)
    assert float(total) == 0.0
