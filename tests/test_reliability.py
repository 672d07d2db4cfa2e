"""Fault injection: kill -9 at random points and mid-save, SIGTERM, damaged checkpoints, NaN losses, a full
disk, bad settings and untrusted files. Runs that are killed are real `tools/pretrain.py` processes (through
tests/fault_driver.py); each must end exactly where an uninterrupted run ends."""

import json
import os
import pathlib
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import torch

from bertjax import checkpoint, cli, convert, faults, runs, train
from bertjax.data import shards, tokenizer
from bertjax.optim import make_optimizer
from bertjax.tasks.pretraining import PretrainingTask
from bertjax.configs import bert_tiny

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One tiny run, as config overrides: the subprocesses get them as flags, the in-process runs set them.
OVERRIDES = {
    "model.vocab_size": 4000, "model.hidden_size": 32, "model.num_heads": 2, "model.intermediate_size": 64,
    "model.max_position_embeddings": 64, "data.max_seq_length": 64, "data.max_predictions_per_seq": 10,
    "optim.warmup_steps": 2, "train.num_steps": 16, "train.global_batch_size": 8, "train.eval_batch_size": 16,
    "train.log_every": 1, "train.eval_every": 0, "train.checkpoint_every": 2, "train.keep_checkpoints": 2,
}
VOLATILE = ("time", "tokens_per_second", "steps_per_second", "input_wait_fraction", "mfu")  # wall-clock figures


def _config(prepared_dir, sp_tokenizer_path, **overrides):
    config = bert_tiny.get_config()
    settings = {**OVERRIDES, "data.tokenizer": str(sp_tokenizer_path), "data.prepared_dir": str(prepared_dir),
                **overrides}
    for dotted, value in settings.items():
        group, key = dotted.split(".")
        config[group][key] = value
    return config


class Payload:
    """Unpickling this runs `touch MARKER`: the marker's existence proves code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --- subprocesses ---------------------------------------------------------------------------------------------

def _start(workdir, prepared_dir, sp_tokenizer_path, *extra):
    settings = {**OVERRIDES, "data.tokenizer": sp_tokenizer_path, "data.prepared_dir": prepared_dir}
    args = [f"--config.{key}={value}" for key, value in settings.items()]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}  # one device: quick

    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fault_driver.py"), "--config=bert_tiny", *args,
         f"--workdir={workdir}", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process, timeout=240):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def _train_records(workdir, skip_lines=0):
    """The last record of every training step (a resumed run logs again the steps after its checkpoint),
    from the `skip_lines`-th line of metrics.jsonl on."""
    path = workdir / "metrics.jsonl"
    lines = path.read_text().splitlines()[skip_lines:] if path.exists() else []
    records = [json.loads(line) for line in lines if line.endswith("}")]  # a line being written is left out
    return {record["step"]: {k: v for k, v in record.items() if k not in VOLATILE}
            for record in records if record["split"] == "train"}


def _lines(workdir):
    path = workdir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait_for(condition, process, timeout=240, what="a condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run exited ({process.returncode}) before {what}:\n{process.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _steps(workdir):
    directory = workdir / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.exists() else []


def _temporaries(workdir):
    return [p.name for p in (workdir / "checkpoints").iterdir() if "orbax-checkpoint-tmp" in p.name]


def _saved_state(step_dir):
    """Every array of a checkpoint's train state, read back as stored."""
    import orbax.checkpoint as ocp
    restored = ocp.PyTreeCheckpointer().restore(step_dir / "state")
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]}


@pytest.fixture(scope="module")
def uninterrupted(prepared_dir, sp_tokenizer_path, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    code, stdout, stderr = _finish(_start(workdir, prepared_dir, sp_tokenizer_path))
    assert code == 0, stderr
    return workdir, stdout


def _assert_same_run(workdir, reference, final_stdout, reference_stdout):
    steps = OVERRIDES["train.num_steps"]
    assert _steps(workdir)[-1] == steps and not _temporaries(workdir)
    ours = _saved_state(workdir / "checkpoints" / str(steps))
    theirs = _saved_state(reference / "checkpoints" / str(steps))
    assert ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)  # bitwise
    assert _train_records(workdir) == _train_records(reference)  # loss, accuracy, grad norm... of every step
    final = [line for line in final_stdout.splitlines() if line.startswith("final evaluation")]
    assert final and final == [line for line in reference_stdout.splitlines() if line.startswith("final evaluation")]


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_exits_75_and_resumes_exactly(uninterrupted, prepared_dir, sp_tokenizer_path,
                                                                  tmp_path):
    process = _start(tmp_path, prepared_dir, sp_tokenizer_path)
    _wait_for(lambda: max(_train_records(tmp_path), default=0) >= 3, process, what="step 3")
    process.send_signal(signal.SIGTERM)
    code, _, stderr = _finish(process)
    assert code == faults.PREEMPTED_EXIT_CODE, stderr
    stopped = max(_train_records(tmp_path))  # the step it was in finished and was logged
    assert 3 <= stopped < OVERRIDES["train.num_steps"]
    assert f"stopped after step {stopped}; checkpoint" in stderr and "Run the same command again" in stderr
    assert _steps(tmp_path)[-1] == stopped and not _temporaries(tmp_path)  # written completely, before exit

    code, stdout, stderr = _finish(_start(tmp_path, prepared_dir, sp_tokenizer_path))
    assert code == 0, stderr
    assert f"resumed from {tmp_path / 'checkpoints' / str(stopped)}" in stdout + stderr
    _assert_same_run(tmp_path, uninterrupted[0], stdout, uninterrupted[1])


@pytest.mark.slow
def test_sigterm_while_the_input_pipeline_stalls_checkpoints_and_exits_at_once(uninterrupted, prepared_dir,
                                                                               sp_tokenizer_path, tmp_path):
    # Before, the handler only set a flag read after a step: a run waiting on a hung pipeline (or compiling)
    # did not stop until a batch came.
    process = _start(tmp_path, prepared_dir, sp_tokenizer_path, "--stall_input")
    _wait_for(lambda: max(_train_records(tmp_path), default=0) >= 3, process, what="step 3")
    (tmp_path / "STALL").touch()
    _wait_for(lambda: (tmp_path / "STALLED").exists(), process, what="the stall")
    time.sleep(0.5)
    stalled_after = max(_train_records(tmp_path))  # the last step that finished: the loop waits for the next
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, _, stderr = _finish(process, timeout=60)
    seconds = time.monotonic() - signalled
    assert code == faults.PREEMPTED_EXIT_CODE, stderr
    assert seconds < 10, seconds
    assert f"SIGTERM: stopped after step {stalled_after}; checkpoint" in stderr and "Traceback" not in stderr, stderr
    assert _steps(tmp_path)[-1] == stalled_after and not _temporaries(tmp_path)
    assert max(_train_records(tmp_path)) == stalled_after  # no step ran after the signal

    # The checkpoint holds the data position before the batch it waited for: the rerun is the same run.
    code, stdout, stderr = _finish(_start(tmp_path, prepared_dir, sp_tokenizer_path))
    assert code == 0, stderr
    assert f"resumed from {tmp_path / 'checkpoints' / str(stalled_after)}" in stdout + stderr
    _assert_same_run(tmp_path, uninterrupted[0], stdout, uninterrupted[1])


@pytest.mark.slow
def test_kill_9_anywhere_then_restart_equals_an_uninterrupted_run(uninterrupted, prepared_dir, sp_tokenizer_path,
                                                                  tmp_path):
    rng = random.Random(11)
    # 1. Killed in the middle of writing checkpoint 6: its files are all in the temporary directory, unrenamed.
    process = _start(tmp_path, prepared_dir, sp_tokenizer_path, "--pause_before_commit=6")
    _wait_for(lambda: (tmp_path / "PAUSED").exists(), process, what="the write of checkpoint 6")
    process.kill()
    process.wait()
    (tmp_path / "PAUSED").unlink()
    assert _steps(tmp_path) == [2, 4]
    leftover = _temporaries(tmp_path)
    assert leftover and leftover[0].startswith("6.") and (tmp_path / "checkpoints" / leftover[0] / "state").is_dir()

    # 2-3. Killed at random steps (and random moments within them), twice. Each restart first deletes the
    # leftovers of an interrupted write and resumes from the newest complete checkpoint.
    for _ in range(2):
        resume, skip = _steps(tmp_path)[-1], _lines(tmp_path)
        target = rng.randint(resume + 1, resume + 4)
        process = _start(tmp_path, prepared_dir, sp_tokenizer_path)
        _wait_for(lambda: max(_train_records(tmp_path, skip), default=0) >= target, process, what=f"step {target}")
        time.sleep(rng.uniform(0, 0.2))
        process.kill()
        process.wait()
        assert min(_train_records(tmp_path, skip)) == resume + 1  # it went on from the newest checkpoint
        assert _steps(tmp_path)[-1] >= resume
        # The newest is complete. (An older one may be half deleted: orbax removes the oldest file by file.)
        assert (tmp_path / "checkpoints" / str(_steps(tmp_path)[-1]) / "commit_success.txt").exists()

    # 4. The same command again runs to the end.
    code, stdout, stderr = _finish(_start(tmp_path, prepared_dir, sp_tokenizer_path))
    assert code == 0, stderr
    _assert_same_run(tmp_path, uninterrupted[0], stdout, uninterrupted[1])


def test_full_disk_fails_the_save_loudly_and_keeps_the_previous_checkpoint(uninterrupted, prepared_dir,
                                                                         sp_tokenizer_path, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], workdir)
    before = _saved_state(workdir / "checkpoints" / "16")
    # Continue to step 20 where no file may exceed 64 kB (a disk that fills up): the logs fit, checkpoint 18's
    # arrays do not.
    process = _start(workdir, prepared_dir, sp_tokenizer_path, "--config.train.num_steps=20",
                     "--limit_file_bytes=65536")
    code, _, stderr = _finish(process)
    assert code == 1, stderr
    # One line that says what failed and what to do (orbax logs the failure of its writer threads as well).
    [message] = [line for line in stderr.splitlines() if line.startswith("bertjax pretrain: error:")]
    assert "error: Writing checkpoint 18 in " in message
    assert "File too large" in message
    assert f"the previous checkpoint {workdir / 'checkpoints' / '16'} is intact" in message
    # orbax's log records of its failed writer threads keep their first line: no orbax traceback is printed.
    assert not re.search(r'File "[^"]*/orbax/', stderr), stderr
    assert "Traceback" not in stderr and "Event loop is closed" not in stderr, stderr
    assert _steps(workdir) == [14, 16]
    after = _saved_state(workdir / "checkpoints" / "16")
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_a_truncated_array_file_is_reported_in_one_line(uninterrupted, prepared_dir, sp_tokenizer_path, tmp_path):
    # TensorStore's error quotes its spec of the array (before: some 40 lines in each of two warnings).
    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted[0], workdir)
    largest = max((p for p in (workdir / "checkpoints" / "16" / "state").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    with open(largest, "r+b") as file:
        file.truncate(1000)
    code, stdout, stderr = _finish(_start(workdir, prepared_dir, sp_tokenizer_path))
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if "checkpoints" in line and "16" in line]
    assert len(warnings) == 1, stderr
    [warning] = warnings
    assert "Checkpoint 16 could not be restored (" in warning and "Resuming from step 14" in warning, stderr
    assert "tensorstore" not in stderr.lower() and "'driver'" not in stderr, stderr
    assert len(stderr.splitlines()) < 10, stderr  # the warning, the start line, 2 steps, the evaluation
    assert f"resumed from {workdir / 'checkpoints' / '14'}" in stdout + stderr


# --- in-process runs ------------------------------------------------------------------------------------------

def _abstract_state(config, task):
    optimizer = make_optimizer(config.optim, config.train.num_steps)
    example = task.example_batch(config.train.global_batch_size)
    return jax.eval_shape(lambda: train.init_train_state(task, optimizer, config.seed, example))


def _poison_training_batches(monkeypatch, batch_size, steps):
    """Give the training batches of `steps` NaN masked-LM weights (as damaged data would): a NaN loss."""
    global_batch, seen = train.sharding.global_batch, {"count": 0}

    def poisoning(batch, mesh):
        if len(batch["input_ids"]) == batch_size:  # training batches, not evaluation's
            seen["count"] += 1
            if seen["count"] in steps:
                batch = {**batch, "masked_weights": np.full_like(batch["masked_weights"], np.nan)}
        return global_batch(batch, mesh)

    monkeypatch.setattr(train.sharding, "global_batch", poisoning)


def test_nan_loss_stops_the_run_and_names_the_last_good_checkpoint(prepared_dir, sp_tokenizer_path, tmp_path,
                                                                    monkeypatch):
    config = _config(prepared_dir, sp_tokenizer_path, **{"train.num_steps": 8})
    task = PretrainingTask(config)
    _poison_training_batches(monkeypatch, 8, {5})
    with pytest.raises(faults.NonFiniteError, match=r"step 5: loss nan, gradient norm nan: a non-finite step, "
                       r"training stopped; the last good checkpoint is \S+/checkpoints/4 \(step 4\)"):
        train.train_and_evaluate(config, tmp_path, task)
    assert _steps(tmp_path) == [2, 4]  # the NaN state was never saved
    checkpointer = checkpoint.Checkpointer(tmp_path, keep=2)
    iterator = iter(task.dataset("train", batch_size=8, seed=0, train=True))
    state, _, step = checkpointer.restore_latest(_abstract_state(config, task), iterator)  # digest checked
    checkpointer.close()
    assert step == 4 and all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))


def test_bounded_bad_steps_are_skipped_without_an_update(prepared_dir, sp_tokenizer_path, tmp_path, monkeypatch):
    config = _config(prepared_dir, sp_tokenizer_path, **{"train.num_steps": 8, "train.checkpoint_every": 1,
                                                         "train.keep_checkpoints": 8, "train.max_bad_steps": 1})
    task = PretrainingTask(config)
    _poison_training_batches(monkeypatch, 8, {3, 5})
    with pytest.raises(faults.NonFiniteError, match="step 5: .*more than train.max_bad_steps=1 non-finite steps"):
        train.train_and_evaluate(config, tmp_path, task)
    params = {step: _saved_state(tmp_path / "checkpoints" / str(step)) for step in (2, 3, 4)}
    weights = [name for name in params[2] if name.startswith("['params']")]
    assert len(weights) > 10
    for name in weights:  # step 3 changed nothing; step 4 trained again
        np.testing.assert_array_equal(params[3][name], params[2][name])
    assert any(not np.array_equal(params[4][name], params[3][name]) for name in weights)
    records = _train_records(tmp_path)
    assert records[3]["nonfinite_steps"] == 1.0 and records[4]["nonfinite_steps"] == 0.0
    assert np.isfinite(records[4]["loss"]) and _steps(tmp_path) == [1, 2, 3, 4]


@pytest.mark.slow
def test_damaged_checkpoints_are_passed_over_with_a_warning_or_stop_the_run(prepared_dir, sp_tokenizer_path, tmp_path,
                                                                           caplog):
    config = _config(prepared_dir, sp_tokenizer_path, **{"train.num_steps": 6, "train.keep_checkpoints": 3})
    expected = train.train_and_evaluate(config, tmp_path, PretrainingTask(config))
    assert _steps(tmp_path) == [2, 4, 6]
    # Checkpoint 6: bytes flipped inside its largest array file. Checkpoint 4: its record replaced by a pickle
    # whose loading would run a command.
    largest = max((p for p in (tmp_path / "checkpoints" / "6" / "state").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    largest.write_bytes(bytes(data))
    marker = tmp_path / "payload-ran"
    (tmp_path / "checkpoints" / "4" / "record" / "metadata").write_bytes(pickle.dumps(Payload(marker)))

    # The run resumes from checkpoint 2 and ends exactly where the undamaged run ended.
    resumed = train.train_and_evaluate(config, tmp_path, PretrainingTask(config))
    assert resumed == expected and not marker.exists()
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "Checkpoint 6 could not be restored" in warnings and "Checkpoint 4 could not be restored" in warnings
    assert "Resuming from step 2" in warnings
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()) == ["4", "6"]

    # A readable checkpoint of another model is a config mistake, not damage: refused, nothing moved.
    bigger = _config(prepared_dir, sp_tokenizer_path, **{"train.num_steps": 6, "model.hidden_size": 64})
    with pytest.raises(ValueError, match=r"checkpoints/6 holds a model of other shapes than the config describes "
                                         r"\(bert/embeddings/layer_norm/bias: checkpoint \(32,\), config \(64,\); "):
        train.train_and_evaluate(bigger, tmp_path, PretrainingTask(bigger))
    assert _steps(tmp_path) == [2, 4, 6] and len(list((tmp_path / "corrupt_checkpoints").iterdir())) == 2

    # Every checkpoint damaged: the run stops, naming each, and moves nothing (it must not start afresh).
    for step in (2, 4, 6):
        shutil.rmtree(tmp_path / "checkpoints" / str(step) / "state")
    task = PretrainingTask(config)
    checkpointer = checkpoint.Checkpointer(tmp_path, keep=3)
    iterator = iter(task.dataset("train", batch_size=8, seed=0, train=True))
    with pytest.raises(ValueError, match="No checkpoint in .* restores: 6: .*; 4: .*; 2: .*Move them away to start "
                                         "afresh"):
        checkpointer.restore_latest(_abstract_state(config, task), iterator)
    checkpointer.close()
    assert _steps(tmp_path) == [2, 4, 6] and len(list((tmp_path / "corrupt_checkpoints").iterdir())) == 2


def test_bad_settings_fail_before_any_work(prepared_dir, sp_tokenizer_path, tmp_path):
    cases = {
        "train.log_every": (0, "train.log_every=0 must be at least 1"),
        "train.max_bad_steps": (-1, "train.max_bad_steps=-1 must be at least 0"),
        "train.keep_checkpoints": (0, "train.keep_checkpoints=0 must be at least 1"),
    }
    for key, (value, message) in cases.items():
        config = _config(prepared_dir, sp_tokenizer_path, **{key: value})
        with pytest.raises(ValueError, match=message):
            train.train_and_evaluate(config, tmp_path / "run", PretrainingTask(config))
    assert not (tmp_path / "run").exists()  # nothing was written

    config = _config(prepared_dir, sp_tokenizer_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="--workdir .*a-file/run is not a writable directory"):
        train.train_and_evaluate(config, blocker / "run", PretrainingTask(config))

    with pytest.raises((AttributeError, KeyError), match="num_step"):  # a mistyped key
        config.train.num_step = 3
    config = _config(prepared_dir, sp_tokenizer_path, **{"model.vocab_size": 1000})
    with pytest.raises(ValueError, match="vocab_size=1000 is smaller than the 4000 ids of the tokenizer"):
        PretrainingTask(config)


# Bad input on the command line: (arguments after `bertjax`, what the one error line must name). Each fails at
# start-up, before any data is read or anything compiled.
BAD_COMMAND_LINES = [
    (["pretrain", "--config.data.mask_rate=1.5"], "data.mask_rate=1.5 must be in (0, 1)"),
    (["pretrain", "--config.data.mask_rate=-0.1"], "data.mask_rate=-0.1 must be in (0, 1)"),
    (["pretrain", "--config.data.max_predictions_per_seq=0"], "data.max_predictions_per_seq=0 must be at least 1"),
    (["pretrain", "--config.model.hidden_dropout=1.5"], "model.hidden_dropout=1.5 must be in [0, 1)"),
    (["pretrain", "--config.model.vocab_size=0"], "model.vocab_size=0 must be at least 1"),
    (["pretrain", "--config.data.num_workers=-1"], "data.num_workers=-1 must be at least 0"),
    (["pretrain", "--config.data.max_seq_length=4"], "data.max_seq_length=4 leaves no room for a sentence pair"),
    (["pretrain", "--config.data.max_predictions_per_seq=40", "--config.data.max_seq_length=32"],
     "data.max_predictions_per_seq=40 is more than the data.max_seq_length=32 tokens"),
    (["prepare_data", "--documents_per_shard=0"], "--documents_per_shard=0"),
    (["prepare_data", "--validation_fraction=-0.5"], "--validation_fraction=-0.5"),
    (["extract_features", "--checkpoint=x", "--input=text:x", "--batch_size=0"], "--batch_size=0"),
]


def test_bad_command_lines_fail_at_once_with_one_line_naming_the_key(tmp_path):
    runs_ = []
    for number, (args, _) in enumerate(BAD_COMMAND_LINES):
        if args[0] == "pretrain":
            args = [*args[:1], "--config=bert_tiny", f"--workdir={tmp_path / 'run'}", *args[1:]]
        else:
            args = [*args, f"--output_dir={tmp_path / str(number)}"]
        runs_.append(subprocess.Popen([sys.executable, "-m", "bertjax", *args], cwd=tmp_path, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for process, (args, named) in zip(runs_, BAD_COMMAND_LINES):
        _, stderr = process.communicate(timeout=120)
        errors = [line for line in stderr.splitlines() if " error: " in line]
        assert process.returncode == 2 and len(errors) == 1 and named in errors[0], (args, stderr)
        assert "Traceback" not in stderr, (args, stderr)
    assert not (tmp_path / "run").exists()


def test_a_starving_pipeline_stops_with_the_setting_that_starves_it(prepared_dir, sp_tokenizer_path, monkeypatch):
    # Documents that give no example (rows too short for their sentences, one-token documents under SOP)
    # made the pipeline search forever, and the run hang at 0 steps: it now stops, naming the settings.
    from bertjax.data import pipeline

    monkeypatch.setattr(pipeline, "document_pairs", lambda *args, **kwargs: [])
    config = _config(prepared_dir, sp_tokenizer_path)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"documents in a row gave no training example with "
                                         r"data.max_seq_length=64 and data.sentence_task='nsp'"):
        next(iter(PretrainingTask(config).dataset("train", batch_size=8, seed=0, train=True)))
    assert time.perf_counter() - start < 30


def test_prepared_data_without_validation_documents_is_refused_before_training(corpus_file, sp_tokenizer_path,
                                                                               tmp_path):
    from bertjax.data import corpus

    shards.prepare(corpus.read_text_files([corpus_file]), sp_tokenizer_path, tmp_path / "data",
                   documents_per_shard=1000, validation_fraction=0.0, allow_empty_validation=True, num_workers=1)
    config = _config(tmp_path / "data", sp_tokenizer_path)
    with pytest.raises(ValueError, match=r"Split 'validation' of \S+data holds no documents"):
        PretrainingTask(config)  # before: found at the final evaluation, after the whole training


def test_an_edited_data_iterator_position_sets_the_checkpoint_aside(prepared_dir, sp_tokenizer_path, tmp_path, caplog):
    # A valid-JSON edit of the iterator's state would resume a different run without a word; the record's
    # digest of each process's position catches it, and the checkpoint is set aside like a damaged one.
    config = _config(prepared_dir, sp_tokenizer_path, **{"train.num_steps": 4})
    task = PretrainingTask(config)
    train.train_and_evaluate(config, tmp_path, task)
    assert _steps(tmp_path) == [2, 4]
    position = tmp_path / "checkpoints" / "4" / "data_iterator" / "process_0-of-1.json"
    state = json.loads(position.read_text())
    innermost = state
    while "next_index" not in innermost:  # the source's position, under each transformation's
        innermost = innermost["parent"]
    innermost["next_index"] += 1
    position.write_text(json.dumps(state))
    checkpointer = checkpoint.Checkpointer(tmp_path, keep=2)
    iterator = iter(task.dataset("train", batch_size=8, seed=0, train=True))
    _, _, step = checkpointer.restore_latest(_abstract_state(config, task), iterator)
    checkpointer.close()
    assert step == 2
    assert [p.name.split("-")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["4"]
    assert "data-iterator position differs from the one recorded" in caplog.text


def test_an_edited_checkpoint_record_sets_the_checkpoint_aside(prepared_dir, sp_tokenizer_path, tmp_path, caplog):
    # The record beside the state is read on resume (its step, the identity a run is checked against, the
    # other digests): a valid-JSON edit of it is damage too, caught by the record's digest of itself.
    config = _config(prepared_dir, sp_tokenizer_path, **{"train.num_steps": 4})
    task = PretrainingTask(config)
    train.train_and_evaluate(config, tmp_path, task)
    path = tmp_path / "checkpoints" / "4" / "record" / "metadata"
    record = json.loads(path.read_text())
    assert record["step"] == 4 and record["record_digest"] == checkpoint.record_digest(record)
    record["step"] = 5
    path.write_text(json.dumps(record))
    checkpointer = checkpoint.Checkpointer(tmp_path, keep=2)
    iterator = iter(task.dataset("train", batch_size=8, seed=0, train=True))
    _, restored, step = checkpointer.restore_latest(_abstract_state(config, task), iterator)
    checkpointer.close()
    assert step == 2 and restored["step"] == 2
    assert [p.name.split("-")[0] for p in (tmp_path / "corrupt_checkpoints").iterdir()] == ["4"]
    assert "its record file was changed after it was written" in caplog.text


def test_a_malformed_shard_record_is_named(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter
    path = tmp_path / "train-00000.array_record"
    writer = ArrayRecordWriter(str(path), "group_size:1")
    writer.write(shards.encode_document([[5, 6, 7], [8]]))
    writer.write(np.array([3, 2, 9], np.int32).tobytes())  # three sentences announced, one length, no tokens
    writer.close()
    source = shards.DocumentSource([str(path)])
    assert [s.tolist() for s in source[0]] == [[5, 6, 7], [8]]
    with pytest.raises(ValueError, match=r"Record 1 of the shards \S+train-00000.array_record: a malformed "
                                         r"document record \(12 bytes"):
        source[1]


# --- untrusted files --------------------------------------------------------------------------------------------

def _hf_folder(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 16, "max_position_embeddings": 16}))
    return folder


def test_a_pickled_pytorch_file_never_runs_its_payload(tmp_path):
    folder = _hf_folder(tmp_path)
    marker = tmp_path / "payload-ran"
    torch.save({"bert.embeddings.word_embeddings.weight": Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises((ValueError, pickle.UnpicklingError)):
        convert.load_hf_bert(folder)
    with pytest.raises(pickle.UnpicklingError):  # the one way a .bin may be read
        torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert not marker.exists()


def test_tokenizer_files_are_parsed_as_data(tmp_path):
    marker = tmp_path / "payload-ran"
    for name in ("evil.model", "evil.json", "vocab.txt"):
        (tmp_path / name).write_bytes(pickle.dumps(Payload(marker)))
        with pytest.raises(ValueError, match=f"{name} is not"):
            tokenizer.load_tokenizer(tmp_path / name)
    assert not marker.exists()


def _safetensors(path, header, data_bytes):
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + bytes(data_bytes))
    return path


@pytest.mark.parametrize("header, data_bytes, message", [
    ({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}, 32, "bytes 0-64 lie outside the file's 32"),
    ({"w": {"dtype": "F32", "shape": [1000000, 1000], "data_offsets": [0, 64]}}, 64, "takes 4,000,000,000 bytes"),
    ({"w": {"dtype": "F99", "shape": [4], "data_offsets": [0, 16]}}, 16, "unknown dtype 'F99'"),
    ({"w": {"dtype": "F32", "shape": [4]}}, 16, "malformed entry"),
])
def test_safetensors_headers_are_checked_before_reading(tmp_path, header, data_bytes, message):
    path = _safetensors(tmp_path / "model.safetensors", header, data_bytes)
    with pytest.raises(convert.ConversionError, match=message):
        convert.check_safetensors_header(path)


def test_a_malformed_safetensors_file_is_refused_by_the_loader(tmp_path):
    folder = _hf_folder(tmp_path)
    # A header length beyond the file: a truncated download, or not safetensors at all.
    (folder / "model.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(convert.ConversionError, match="model.safetensors: not a safetensors file"):
        convert.load_hf_bert(folder)
    _safetensors(folder / "model.safetensors", {"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}, 16)
    with pytest.raises(convert.ConversionError, match="lie outside the file"):
        runs.load_params(folder, {})


def test_sigterm_before_the_loop_exits_75_at_once(tmp_path, prepared_dir, sp_tokenizer_path):
    # Before, a SIGTERM in the first seconds (imports, data, compilation) killed the run: status -15.
    assert cli._PREEMPTED_EXIT_CODE == faults.PREEMPTED_EXIT_CODE
    process = _start(tmp_path / "run", prepared_dir, sp_tokenizer_path)
    time.sleep(1.0)  # still importing JAX
    process.send_signal(signal.SIGTERM)
    code, _, stderr = _finish(process, timeout=60)
    assert code == faults.PREEMPTED_EXIT_CODE, stderr
    assert "SIGTERM before training began: nothing to save. Run the same command again." in stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_keep_checkpoints_holds_when_a_finished_run_is_resumed(prepared_dir, sp_tokenizer_path, tmp_path):
    # A kill between a commit and the deletion of the oldest leaves one more than `keep`; the next run that
    # merely finds itself finished wrote nothing, so orbax's deletion after a save never came.
    config = _config(prepared_dir, sp_tokenizer_path, **{"train.num_steps": 6, "train.keep_checkpoints": 3})
    train.train_and_evaluate(config, tmp_path, PretrainingTask(config))
    assert _steps(tmp_path) == [2, 4, 6]
    config.train.keep_checkpoints = 2
    train.train_and_evaluate(config, tmp_path, PretrainingTask(config))
    assert _steps(tmp_path) == [4, 6]
