"""The train loop: exact resume, accumulation equal to one large batch, starting points, reports, dispatch ahead."""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import checkpoint, flops, runs, sharding, train
from bertjax.optim import make_optimizer
from bertjax.tasks.pretraining import PretrainingTask
from conftest import tiny_pretraining_config


def _config(prepared_dir, sp_tokenizer_path, **train_overrides):
    return tiny_pretraining_config(prepared_dir, sp_tokenizer_path, **train_overrides)


def _params_at(workdir, step, abstract):
    step_dir = workdir / "checkpoints" / str(step)
    return runs.load_params(step_dir, abstract)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_uninterrupted_run(prepared_dir, sp_tokenizer_path, tmp_path, monkeypatch):
    config = _config(prepared_dir, sp_tokenizer_path)
    task = PretrainingTask(config)
    uninterrupted = train.train_and_evaluate(config, tmp_path / "whole", task)

    # Stop the second run while it fetches the batch of step 4, after the checkpoint of step 3.
    calls = {"count": 0}
    real_tokens = PretrainingTask.real_tokens

    def stop_at_step_four(batch):
        calls["count"] += len(batch["input_ids"]) == 8  # training batches only, not evaluation's
        if calls["count"] == 4:
            raise KeyboardInterrupt
        return real_tokens(batch)

    monkeypatch.setattr(task, "real_tokens", stop_at_step_four)
    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(config, tmp_path / "stopped", task)
    monkeypatch.undo()
    assert sorted(int(p.name) for p in (tmp_path / "stopped" / "checkpoints").iterdir()) == [3]

    resumed = train.train_and_evaluate(config, tmp_path / "stopped", PretrainingTask(config))
    assert resumed == uninterrupted  # the same evaluation, to the last bit
    abstract = jax.eval_shape(lambda: task.init_params(jax.random.PRNGKey(0), task.example_batch(8)))
    for whole, stopped in zip(_leaves(_params_at(tmp_path / "whole", 6, abstract)),
                              _leaves(_params_at(tmp_path / "stopped", 6, abstract))):
        np.testing.assert_array_equal(whole, stopped)
    # The training metrics of steps 5-6 match too.
    def last_train_record(workdir):
        records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        record = [r for r in records if r["split"] == "train"][-1]
        return {k: v for k, v in record.items() if k in ("step", "loss", "mlm_loss", "mlm_accuracy", "grad_norm")}

    assert last_train_record(tmp_path / "whole") == last_train_record(tmp_path / "stopped")


def test_accumulated_micro_batches_equal_one_large_batch(prepared_dir, sp_tokenizer_path):
    config = _config(prepared_dir, sp_tokenizer_path, global_batch_size=32)
    config.model.update(hidden_dropout=0.0, attention_dropout=0.0)
    task = PretrainingTask(config)
    batch = jax.device_put(next(iter(task.dataset("train", batch_size=32, seed=0, train=True))))
    optimizer = make_optimizer(config.optim, 10)
    state = train.init_train_state(task, optimizer, 0, batch)
    results = {}
    for steps in (1, 4):
        step_fn, _ = train.compile_steps(task, optimizer, steps)
        copy = jax.tree.map(jnp.copy, state)  # the step donates its input
        results[steps] = step_fn(copy, batch)
    (one_state, one_sums), (four_state, four_sums) = results[1], results[4]
    for one, four in zip(_leaves(one_state.params), _leaves(four_state.params)):
        np.testing.assert_allclose(four, one, rtol=1e-5, atol=1e-6)
    for name in one_sums:
        np.testing.assert_allclose(four_sums[name], one_sums[name], rtol=1e-5)


def test_init_checkpoint_takes_weights_only(prepared_dir, sp_tokenizer_path, tiny_pretraining_run, tmp_path):
    source_task = PretrainingTask(_config(prepared_dir, sp_tokenizer_path))
    abstract = jax.eval_shape(lambda: source_task.init_params(jax.random.PRNGKey(0), source_task.example_batch(8)))
    trained = _params_at(tiny_pretraining_run, 3, abstract)

    config = _config(prepared_dir, sp_tokenizer_path, num_steps=3, eval_every=0, checkpoint_every=3,
                     init_checkpoint=str(tiny_pretraining_run))
    task = PretrainingTask(config)
    optimizer = make_optimizer(config.optim, 3)
    example = task.example_batch(8)
    fresh = lambda: train.init_train_state(task, optimizer, 0, example)  # noqa: E731
    checkpointer = checkpoint.Checkpointer(tmp_path / "continued", keep=2)
    iterator = iter(task.dataset("train", batch_size=8, seed=0, train=True))
    state, how = checkpoint.restore_or_init(
        checkpointer, jax.eval_shape(fresh), fresh, iterator, config.train.init_checkpoint,
        with_params=lambda state, params: state.replace(params=params, opt_state=optimizer.init(params)))
    checkpointer.close()
    assert "initialised from the parameters of" in how and int(state.step) == 0
    for loaded, expected in zip(_leaves(state.params), _leaves(trained)):
        np.testing.assert_array_equal(loaded, expected)

    # A checkpoint of another model size is refused with a message, not loaded.
    bigger = _config(prepared_dir, sp_tokenizer_path, init_checkpoint=str(tiny_pretraining_run))
    bigger.model.hidden_size = 64
    with pytest.raises(ValueError):
        train.train_and_evaluate(bigger, tmp_path / "bigger", PretrainingTask(bigger))


def test_run_writes_its_reports(prepared_dir, sp_tokenizer_path, tmp_path):
    config = _config(prepared_dir, sp_tokenizer_path, num_steps=4, eval_every=2, checkpoint_every=2,
                     keep_checkpoints=1, peak_tflops=0.01)
    task = PretrainingTask(config)
    metrics = train.train_and_evaluate(config, tmp_path, task)
    assert set(metrics) >= {"mlm_loss", "mlm_accuracy", "mlm_perplexity", "sentence_accuracy"}
    assert json.loads((tmp_path / "config.json").read_text())["train"]["num_steps"] == 4
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4]
    assert [r["step"] for r in records if r["split"] == "eval"] == [2, 4]
    assert all(r["tokens_per_second"] > 0 and "learning_rate" in r for r in records if r["split"] == "train")
    # Live MFU = model FLOPs per step x steps/s over the peak; the FLOPs of a step lie between those of an
    # all-padding batch and a full one.
    example = task.example_batch(8)
    empty_flops = flops.analytic_flops(task.model_config, 8, 64, example["masked_positions"].shape[1], tokens=0)
    full_flops = flops.analytic_flops(task.model_config, 8, 64, example["masked_positions"].shape[1])
    for record in (r for r in records if r["split"] == "train"):
        assert 0 <= record["input_wait_fraction"] < 1
        flops_per_step = record["mfu"] * 0.01e12 * jax.device_count() / record["steps_per_second"]
        assert empty_flops < flops_per_step <= full_flops
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["4"]  # keep_checkpoints=1

    # Resuming this work directory with another tokenizer is refused.
    other = PretrainingTask(config)
    other.identity = {**other.identity, "tokenizer_fingerprint": "0" * 64}
    with pytest.raises(ValueError, match="was written with tokenizer_fingerprint="):
        train.train_and_evaluate(config, tmp_path, other)


def test_a_clamped_warmup_is_reported_once_per_run(prepared_dir, sp_tokenizer_path, tmp_path, caplog):
    config = _config(prepared_dir, sp_tokenizer_path, num_steps=2, checkpoint_every=2)
    config.optim.warmup_steps = 100
    with caplog.at_level("WARNING"):
        train.train_and_evaluate(config, tmp_path, PretrainingTask(config))
    clamped = [r for r in caplog.records if "optim.warmup_steps=100 is more than" in r.getMessage()]
    assert len(clamped) == 1, [r.getMessage() for r in clamped]  # before: twice, optimizer and logged schedule


class _SlowStepTask(PretrainingTask):
    """The pretraining task with train steps made slow on purpose (a chain of matrix products joins the
    loss), and `input_seconds` of host work for each train batch; it records when each batch came."""

    def __init__(self, config, input_seconds: float, asked: list):
        super().__init__(config)
        self._input_seconds, self._asked = input_seconds, asked

    def loss(self, params, batch, rng, normalizers=None):
        loss, sums = super().loss(params, batch, rng, normalizers)
        if rng is None:  # evaluation runs at full speed
            return loss, sums
        work = jnp.full((384, 384), 1e-3, jnp.float32) * batch["input_ids"][0, 0]
        for _ in range(40):
            work = jnp.tanh(work @ work)
        return loss + 1e-30 * work.sum(), sums

    def real_tokens(self, batch):  # the loop counts each train batch's tokens before it dispatches the step
        if len(batch["input_ids"]) == 8:  # train batches, not evaluation's
            self._asked.append(time.perf_counter())
            time.sleep(self._input_seconds)
        return super().real_tokens(batch)


def test_the_loop_prepares_the_next_batch_while_the_device_runs_a_step(prepared_dir, sp_tokenizer_path, tmp_path,
                                                                       monkeypatch):
    # A loop that reads a result of step k (its loss, a metric, the finite check) before it asks for batch
    # k+1 would add the input's time to the device's every step; one that dispatches ahead takes the
    # larger of the two. One device: XLA:CPU runs a one-device program asynchronously, as a GPU does.
    make_mesh = sharding.make_mesh
    monkeypatch.setattr(sharding, "make_mesh", lambda mesh_config: make_mesh(mesh_config, jax.devices()[:1]))
    config = _config(prepared_dir, sp_tokenizer_path, num_steps=10, log_every=100, eval_every=0, checkpoint_every=0)

    def seconds_per_step(input_seconds, name):
        asked = []
        train.train_and_evaluate(config, tmp_path / name, _SlowStepTask(config, input_seconds, asked))
        return float(np.median(np.diff(asked[2:])))  # step 1 waits for the device on purpose

    device = seconds_per_step(0.0, "fast_input")
    both = seconds_per_step(device, "slow_input")  # as long as a step takes: serial would be 2 x device
    assert both < 1.5 * device, (device, both)


def test_bad_batch_sizes_fail_before_training(prepared_dir, sp_tokenizer_path, tmp_path):
    config = _config(prepared_dir, sp_tokenizer_path, global_batch_size=10, accumulation_steps=4)
    with pytest.raises(ValueError, match="choose a multiple of 4"):
        train.train_and_evaluate(config, tmp_path, PretrainingTask(config))
    config = _config(prepared_dir, sp_tokenizer_path)
    config.data.max_seq_length = 128
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings=64"):
        PretrainingTask(config)


def test_pretraining_from_scratch_with_a_trained_wordpiece_tokenizer(wordpiece_dir, corpus_file, tmp_path):
    import transformers

    from bertjax import interop
    from bertjax.data import corpus, shards

    shards.prepare(corpus.read_text_files([corpus_file]), wordpiece_dir, tmp_path / "data", documents_per_shard=100,
                   validation_fraction=0.1, num_workers=1)
    reference = transformers.BertTokenizer(str(wordpiece_dir / "vocab.txt"), do_lower_case=True)
    first = next(iter(corpus.read_text_files([corpus_file])))
    source = shards.DocumentSource(shards.split_paths(tmp_path / "data", "train"))
    documents = [[sentence.tolist() for sentence in source[i]] for i in range(len(source))]
    assert [ids for ids in reference(first, add_special_tokens=False)["input_ids"] if ids] in documents

    config = _config(tmp_path / "data", wordpiece_dir, num_steps=2, eval_every=0, checkpoint_every=2)
    config.model.vocab_size = None  # follows the tokenizer
    metrics = train.train_and_evaluate(config, tmp_path / "run", PretrainingTask(config))
    assert np.isfinite(metrics["mlm_loss"])
    run_config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert run_config["model"]["vocab_size"] == len(reference)

    # The exported HF folder's tokenizer encodes as BERT's tokenizer over the trained vocabulary.
    interop.export_hf(tmp_path / "run", tmp_path / "hf")
    exported = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    texts = [sentence for document in list(corpus.read_text_files([corpus_file]))[:20] for sentence in document]
    assert exported(texts)["input_ids"] == reference(texts)["input_ids"]
