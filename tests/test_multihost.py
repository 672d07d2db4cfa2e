"""A real two-process run on one machine (JAX's multi-controller runtime over CPU collectives) equals one
process feeding the whole batch; a preemption notice to one process stops both at the same step."""

import json
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "multihost_worker.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(num_processes, devices, prepared_dir, tokenizer, workdir):
    port = _free_port()
    processes = [subprocess.Popen([sys.executable, str(WORKER), str(index), str(num_processes), str(port),
                                   str(devices), str(prepared_dir), str(tokenizer), str(workdir)],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for index in range(num_processes)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=300)[0])
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    return json.loads((workdir / "result.json").read_text())


@pytest.mark.slow
def test_two_processes_match_one(prepared_dir, sp_tokenizer_path, tmp_path):
    two = _run(2, 4, prepared_dir, sp_tokenizer_path, tmp_path / "two")
    one = _run(1, 8, prepared_dir, sp_tokenizer_path, tmp_path / "one")
    assert (two["process_count"], two["devices"]) == (2, 8) and (one["process_count"], one["devices"]) == (1, 8)
    assert len(two["losses"]) == 4 and two["losses"][-1] < two["losses"][0]
    for multi, single in zip(two["losses"], one["losses"]):
        assert abs(multi - single) <= 1e-5 * abs(single)
    # The whole loop ran on two processes: evaluation covered the split, checkpoints were written.
    assert two["eval"]["mlm_accuracy"] >= 0 and (tmp_path / "two" / "run" / "checkpoints" / "2").is_dir()
    assert set(two["eval"]) == set(one["eval"])


def _start_pretraining(port, prepared_dir, tokenizer, workdir, step_seconds=0.0):
    return [subprocess.Popen([sys.executable, str(ROOT / "tests" / "multihost_preemption_worker.py"), str(index),
                              str(port), str(prepared_dir), str(tokenizer), str(workdir), str(step_seconds)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for index in range(2)]


def _wait(processes, timeout=300):
    try:
        outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
    return [process.returncode for process in processes], outputs


def _train_steps(workdir):
    path = workdir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {record["step"]: {k: v for k, v in record.items() if k in ("loss", "grad_norm", "mlm_accuracy")}
            for record in map(json.loads, (line for line in lines if line.endswith("}")))
            if record["split"] == "train"}


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes_exactly(prepared_dir, sp_tokenizer_path,
                                                                          tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    codes, outputs = _wait(_start_pretraining(_free_port(), prepared_dir, sp_tokenizer_path, whole))
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]

    processes = _start_pretraining(_free_port(), prepared_dir, sp_tokenizer_path, stopped, step_seconds=0.5)
    deadline = time.monotonic() + 240
    while max(_train_steps(stopped), default=0) < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "no step 2"
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGTERM)  # JAX's coordination service tells the other process
    codes, outputs = _wait(processes)
    assert codes == [75, 75], outputs[0][-3000:] + outputs[1][-3000:]
    steps = {json.loads((stopped / f"stopped-{index}.json").read_text())["step"] for index in range(2)}
    assert len(steps) == 1, steps  # the same step on both
    [step] = steps
    assert 2 <= step < 8
    assert sorted(int(p.name) for p in (stopped / "checkpoints").iterdir()) == [step]  # one checkpoint

    codes, outputs = _wait(_start_pretraining(_free_port(), prepared_dir, sp_tokenizer_path, stopped))
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    # The final train state, bit for bit: the records' digests of every array's bits (this process cannot
    # read arrays saved from two processes' devices).
    ours, theirs = (json.loads((run / "checkpoints" / "8" / "record" / "metadata").read_text())
                    for run in (stopped, whole))
    assert ours["state_digest"] == theirs["state_digest"] and ours["iterator_digests"] == theirs["iterator_digests"]
    assert _train_steps(stopped) == _train_steps(whole)
    assert json.loads((stopped / "result-0.json").read_text()) == json.loads((whole / "result-0.json").read_text())
