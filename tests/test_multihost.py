"""A real two-process run on one machine (JAX's multi-controller runtime over CPU collectives) equals one
process feeding the whole batch."""

import json
import pathlib
import socket
import subprocess
import sys

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
