"""The task contract (bertjax.tasks.base), the loop's periodic actions and its small loop for models outside
the contract."""

import logging

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bertjax import train
from bertjax.tasks import causal_lm, glue
from bertjax.tasks.base import PredictiveTask, Task, is_predictive
from bertjax.tasks.pretraining import PretrainingTask
from bertjax.configs import common
from bertjax.configs import glue as glue_config


def _pretraining_config(prepared_dir, sp_tokenizer_path):
    config = common.get_config()
    config.model.update(variant="tiny", vocab_size=4000, max_position_embeddings=64)
    config.data.update(tokenizer=str(sp_tokenizer_path), prepared_dir=str(prepared_dir), max_seq_length=64)
    return config


def test_every_task_meets_the_contract_of_its_kind(prepared_dir, sp_tokenizer_path):
    config = _pretraining_config(prepared_dir, sp_tokenizer_path)
    config.task = "causal_lm"
    summed = [PretrainingTask(config), PretrainingTask(config, data=False), causal_lm.LanguageModelTask(config)]
    finetune = glue_config.get_config("task=stdlib")
    finetune.model.update(variant="tiny", vocab_size=4000)
    finetune.data.tokenizer = str(sp_tokenizer_path)
    predictive = [glue.ClassificationTask(finetune)]
    for task in summed:
        assert isinstance(task, Task) and not is_predictive(task), task.name
    for task in predictive:
        assert isinstance(task, PredictiveTask) and is_predictive(task), task.name
        assert task.fresh_parameters == ("classifier",)
    # What the loop reads of every task, with the shared defaults.
    assert summed[0].fresh_parameters == () and summed[2].model_flops(summed[2].example_batch(2)) is None
    batch = summed[0].example_batch(4)
    assert summed[0].real_tokens(batch) == 0 and summed[0].model_flops(batch) > 0


def test_a_task_without_data_refuses_datasets_but_trains_on_given_batches(prepared_dir, sp_tokenizer_path):
    task = PretrainingTask(_pretraining_config(prepared_dir, sp_tokenizer_path), data=False)
    with pytest.raises(ValueError, match="without data"):
        task.dataset("train", batch_size=2, seed=0, train=True)
    assert task.identity == {"task": "pretraining (no data)"}


def test_sequence_longer_than_the_positions_is_refused(prepared_dir, sp_tokenizer_path):
    config = _pretraining_config(prepared_dir, sp_tokenizer_path)
    config.data.max_seq_length = 65
    with pytest.raises(ValueError, match="data.max_seq_length=65 exceeds the model's max_position_embeddings=64"):
        PretrainingTask(config)


def _make(kind, config):
    config.task = "causal_lm" if kind == "causal_lm" else "pretraining"
    return causal_lm.LanguageModelTask(config) if kind == "causal_lm" else PretrainingTask(config)


@pytest.mark.parametrize("kind", ["pretraining", "causal_lm"])
def test_model_vocab_size_follows_the_tokenizer_unless_set(kind, prepared_dir, sp_tokenizer_path, caplog):
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(sp_tokenizer_path)).get_piece_size()
    config = _pretraining_config(prepared_dir, sp_tokenizer_path)
    config.model.vocab_size = None
    task = _make(kind, config)
    # Written into the config, which the loop saves as the run's config.json once the task is built.
    assert task.model_config.vocab_size == config.model.vocab_size == pieces
    assert config.to_dict()["model"]["vocab_size"] == pieces

    config.model.vocab_size = pieces + 96  # padded for speed: allowed, and said once
    with caplog.at_level(logging.INFO, logger="absl"):
        task = _make(kind, config)
    assert task.model_config.vocab_size == pieces + 96
    said = [record.getMessage() for record in caplog.records if "never produces" in record.getMessage()]
    assert len(said) == 1 and "never produces 96 of the model's ids" in said[0]

    config.model.vocab_size = pieces - 1
    with pytest.raises(ValueError, match=f"vocab_size={pieces - 1} is smaller than the {pieces} ids of the tokenizer"):
        _make(kind, config)


@pytest.mark.parametrize("every,last,due", [
    (3, True, [3, 6, 9, 10]),  # multiples, and the last step
    (3, False, [3, 6, 9]),  # never the last: the caller acts after the loop
    (5, False, [5]),  # the last step is a multiple, still left to the caller
    (0, True, []),  # switched off
])
def test_itstime_decides_each_periodic_action(every, last, due):
    assert [step for step in range(1, 11) if train.itstime(step, every, 10, last=last)] == due


def test_fit_runs_the_updates_a_hand_loop_computes():
    # Gradient descent on (p - 3)^2 at rate 0.1: p_n = 3 + (p_0 - 3) * 0.8^n.
    params = train.fit(lambda p, scale: scale * jnp.sum((p - 3.0) ** 2), jnp.zeros(2), optax.sgd(0.1),
                       [(1.0,)] * 5)
    np.testing.assert_allclose(params, 3.0 - 3.0 * 0.8**5, rtol=1e-6)
