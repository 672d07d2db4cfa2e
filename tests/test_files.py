"""Atomic writes: a failure mid-write leaves the previous file (or folder) as it was, and no `.partial`."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from bertjax import files


class _Interrupted(Exception):
    pass


def test_writes_replace_the_file_whole(tmp_path):
    path = tmp_path / "results.json"
    files.write_json(path, {"accuracy": 0.5, "path": tmp_path})
    assert path.read_text() == json.dumps({"accuracy": 0.5, "path": str(tmp_path)}, indent=2) + "\n"
    files.write_text(path, "second\n")
    files.write_bytes(tmp_path / "raw", b"\x00\x01")
    assert path.read_text() == "second\n" and (tmp_path / "raw").read_bytes() == b"\x00\x01"
    assert sorted(child.name for child in tmp_path.iterdir()) == ["raw", "results.json"]


def test_a_failure_mid_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"old")
    with pytest.raises(_Interrupted):
        with files.replacing(path) as partial:
            partial.write_bytes(b"half of the ne")  # a writer that takes a path, killed part way
            raise _Interrupted
    assert path.read_bytes() == b"old"
    assert [child.name for child in tmp_path.iterdir()] == ["model.bin"]


def test_the_temporary_path_keeps_the_suffix_when_asked(tmp_path):
    with files.replacing(tmp_path / "plot.png", keep_suffix=True) as partial:
        assert partial.name == "plot.partial.png"
        partial.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_a_folder_is_replaced_only_once_complete(tmp_path):
    output = tmp_path / "export"
    with files.replacing_directory(output) as partial:
        (partial / "a.txt").write_text("first")
    assert [child.name for child in output.iterdir()] == ["a.txt"]
    with pytest.raises(_Interrupted):
        with files.replacing_directory(output) as partial:
            (partial / "b.txt").write_text("second")
            raise _Interrupted
    assert [child.name for child in output.iterdir()] == ["a.txt"]
    with files.replacing_directory(output) as partial:
        (partial / "b.txt").write_text("second")
    assert [child.name for child in output.iterdir()] == ["b.txt"]
    assert [child.name for child in tmp_path.iterdir()] == ["export"]


def test_json_is_valid_json_and_files_get_ordinary_permissions(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"loss": float("nan"), "norms": [1.0, float("inf"), float("-inf")]})
    assert json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON")) == {
        "loss": None, "norms": [1.0, None, None]}
    umask = os.umask(0)
    os.umask(umask)
    with files.replacing_directory(tmp_path / "export") as partial:
        save_file({"a": np.zeros(2, np.float32)}, partial / "model.safetensors")  # safetensors makes it 0600
    with files.replacing(tmp_path / "params.safetensors") as partial:
        save_file({"a": np.zeros(2, np.float32)}, partial)
    for written in (tmp_path / "export" / "model.safetensors", tmp_path / "params.safetensors"):
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask
