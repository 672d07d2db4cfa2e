"""The language-model objectives: packed contiguous text, targets, causality, and runs of the train loop."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import heads, losses, train
from bertjax.data import shards
from bertjax.model import BertConfig
from bertjax.optim import make_optimizer
from bertjax.tasks import causal_lm
from bertjax.configs import common

TINY = BertConfig.from_variant("tiny", vocab_size=60, hidden_size=32, num_heads=2, intermediate_size=64,
                               max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0)


def _config(prepared_dir, sp_tokenizer_path, task="causal_lm", **train_overrides):
    config = common.get_config()
    config.task = task
    config.model.variant = "tiny"
    config.model.update(vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    config.data.update(tokenizer=str(sp_tokenizer_path), prepared_dir=str(prepared_dir), max_seq_length=64)
    config.optim.update(learning_rate=3e-3, warmup_steps=2)
    config.train.update(num_steps=4, global_batch_size=8, eval_batch_size=16, log_every=2, eval_every=0,
                        checkpoint_every=4, keep_checkpoints=1)
    config.train.update(**train_overrides)
    return config


def test_rows_are_the_documents_contiguous_in_order(prepared_dir, sp_tokenizer_path, sp_tokenizer):
    config = _config(prepared_dir, sp_tokenizer_path)
    task = causal_lm.LanguageModelTask(config)
    batches = list(task.dataset("validation", batch_size=4, seed=0, train=False))
    source = shards.DocumentSource(shards.split_paths(prepared_dir, "validation"))
    expected = np.concatenate([np.concatenate([[sp_tokenizer.cls_id], *source[i], [sp_tokenizer.sep_id]])
                               for i in range(len(source))])
    ids = np.concatenate([batch["input_ids"] for batch in batches]).reshape(-1)
    mask = np.concatenate([batch["attention_mask"] for batch in batches]).reshape(-1)
    positions = np.concatenate([batch["position_ids"] for batch in batches])
    np.testing.assert_array_equal(ids[mask > 0], expected)  # every token once, in order, padding only at the end
    assert np.all(mask[np.argmin(mask > 0):] == 0) and (mask == 0).sum() < 4 * 64
    # Positions count from 0 within each document of a row.
    for row_ids, row_positions in zip(np.concatenate([b["input_ids"] for b in batches]), positions):
        starts = np.flatnonzero(row_ids == sp_tokenizer.cls_id)
        assert np.all(row_positions[starts] == 0)
    assert all(batch["input_ids"].shape == (4, 64) for batch in batches)


def test_training_iterator_resumes_at_the_next_batch(prepared_dir, sp_tokenizer_path):
    task = causal_lm.LanguageModelTask(_config(prepared_dir, sp_tokenizer_path))
    iterator = iter(task.dataset("train", batch_size=4, seed=3, train=True))
    for _ in range(3):
        next(iterator)
    state = json.dumps(iterator.get_state())
    expected = [next(iterator) for _ in range(2)]
    resumed = iter(task.dataset("train", batch_size=4, seed=3, train=True))
    resumed.set_state(json.loads(state))
    for want, have in zip(expected, (next(resumed) for _ in range(2))):
        for name in want:
            np.testing.assert_array_equal(have[name], want[name])


def test_targets_and_reversed_rows_by_hand():
    ids = jnp.array([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]])
    mask = jnp.array([[1, 1, 1, 2, 2, 2], [1, 1, 1, 0, 0, 0]])
    targets, weights = losses.next_token_targets(ids, mask)
    np.testing.assert_array_equal(targets[0, :5], [6, 7, 8, 9, 10])
    np.testing.assert_array_equal(weights, [[1, 1, 0, 1, 1, 0], [1, 1, 0, 0, 0, 0]])  # never across documents
    targets, weights = losses.previous_token_targets(ids, mask)
    np.testing.assert_array_equal(targets[0, 1:], [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(weights, [[0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 0, 0]])
    reversed_ids, reversed_mask, positions = heads.reverse_rows(ids, mask)
    np.testing.assert_array_equal(reversed_ids[1], [0, 0, 0, 13, 12, 11])
    np.testing.assert_array_equal(reversed_mask[0], [2, 2, 2, 1, 1, 1])
    np.testing.assert_array_equal(positions, [[0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2]])


def _logits(objective, ids, direction="next_logits"):
    model = causal_lm.make_model(objective, TINY)
    mask = jnp.ones_like(ids)
    positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
    params = model.init(jax.random.key(1), ids, mask, positions)
    return lambda changed: getattr(model.apply(params, changed, mask, positions), direction)


@pytest.mark.parametrize("objective, direction", [("causal_lm", "next_logits"), ("forward_backward", "next_logits"),
                                                  ("forward_backward", "previous_logits")])
def test_each_direction_sees_only_its_own_side(objective, direction):
    ids = jnp.asarray(np.random.default_rng(0).integers(5, 60, (2, 12)))
    changed = ids.at[:, 6].set((ids[:, 6] + 1) % 60)
    logits = _logits(objective, ids, direction)
    before, after = logits(ids), logits(changed)
    unaffected = slice(0, 6) if direction == "next_logits" else slice(7, 12)
    affected = slice(6, 12) if direction == "next_logits" else slice(0, 7)
    np.testing.assert_allclose(after[:, unaffected], before[:, unaffected], atol=1e-5)
    assert np.abs(after[:, affected] - before[:, affected]).max() > 1e-3


def test_unmasked_shifted_lm_sees_the_token_it_predicts():
    ids = jnp.asarray(np.random.default_rng(0).integers(5, 60, (2, 12)))
    logits = _logits("shifted_lm_unmasked", ids)
    # Position 5 predicts token 6; changing token 6 changes position 5's logits: it can copy its answer.
    difference = logits(ids.at[:, 6].set((ids[:, 6] + 1) % 60)) - logits(ids)
    assert np.abs(difference[:, :6]).max() > 1e-5  # a causal model's differ by float rounding, under 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["causal_lm", "elmo"])
def test_objectives_train_in_the_one_loop(objective, prepared_dir, sp_tokenizer_path, tmp_path):
    config = _config(prepared_dir, sp_tokenizer_path, objective, num_steps=6)
    task = causal_lm.LanguageModelTask(config)
    metrics = train.train_and_evaluate(config, tmp_path, task)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [record["lm_loss"] for record in records if record["split"] == "train"]
    assert losses[-1] < losses[0]  # 6 updates at a high rate lower the loss from log(4000) = 8.3
    assert metrics["lm_loss"] < np.log(4000) and 0 <= metrics["lm_accuracy"] <= 1
    assert ("backward_lm_loss" in metrics) == (objective == "elmo")


@pytest.mark.parametrize("objective", ["shifted_lm_unmasked", "forward_backward"])
def test_ablation_steps_lower_their_loss(objective, prepared_dir, sp_tokenizer_path):
    config = _config(prepared_dir, sp_tokenizer_path, objective)
    task = causal_lm.LanguageModelTask(config)
    batch = next(iter(task.dataset("train", batch_size=8, seed=0, train=True)))
    optimizer = make_optimizer(config.optim, 10)
    state = train.init_train_state(task, optimizer, 0, batch)
    step, _ = train.compile_steps(task, optimizer, 1)
    state, sums = step(state, batch)
    first = float(sums["loss_sum"])
    for _ in range(4):
        state, sums = step(state, batch)
    assert float(sums["loss_sum"]) < first
    assert ("backward_lm_loss_sum" in sums) == (objective == "forward_backward")


def test_bad_task_name_and_long_rows_fail_with_the_key(prepared_dir, sp_tokenizer_path):
    with pytest.raises(ValueError, match="task='gpt'"):
        causal_lm.LanguageModelTask(_config(prepared_dir, sp_tokenizer_path, "gpt"))
    config = _config(prepared_dir, sp_tokenizer_path)
    config.data.max_seq_length = 128
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        causal_lm.LanguageModelTask(config)
