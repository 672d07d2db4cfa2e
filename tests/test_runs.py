"""Run directories and the one shape check every way of loading parameters goes through."""

import jax
import numpy as np
import pytest

from bertjax import convert, runs


def test_the_shape_check_names_every_difference():
    stored = {("bert", "kernel"): (4, 8), ("bert", "bias"): (8,), ("mlm_head", "bias"): (10,)}
    wanted = {("bert", "kernel"): (4, 16), ("bert", "bias"): (8,), ("classifier", "kernel"): (8, 2)}
    check = runs.check_shapes(stored, wanted)
    assert check.lines() == ["bert/kernel: checkpoint (4, 8), config (4, 16)",
                             "missing in the checkpoint: classifier/kernel", "not in the model: mlm_head/bias"]
    with pytest.raises(ValueError, match=r"init_checkpoint src does not fit this model: bert/kernel has shape "
                                         r"\(4, 8\), the model needs \(4, 16\); it lacks parameters the model needs: "
                                         r"classifier/kernel\."):
        check.refuse_for_init("src")
    check.excluding(["bert", "classifier"]).refuse_for_init("src")  # new heads; unused parameters are no error
    assert not runs.check_shapes(stored, stored).lines()


def test_param_shapes_reads_arrays_and_abstract_trees():
    params = {"bert": {"kernel": np.zeros((2, 3))}}
    assert runs.param_shapes(params) == runs.param_shapes(jax.eval_shape(lambda: params)) == {("bert", "kernel"): (2, 3)}


def test_a_run_is_found_from_any_of_its_folders(tmp_path):
    run = tmp_path / "run"
    runs.save_params(run, {"bert": {"bias": np.zeros(2, np.float32)}}, {"model": {}}, {"step": 3, "head": "span"},
                     step=3)
    runs.save_params(run, {"bert": {"bias": np.ones(2, np.float32)}}, {"model": {}}, {"step": 5}, step=5)
    for path in (run, run / "checkpoints", run / "checkpoints" / "5"):
        assert runs.step_directory(path) == run / "checkpoints" / "5"
        assert runs.run_directory(path) == run
    assert runs.step_directory(run / "checkpoints" / "3") == run / "checkpoints" / "3"
    assert runs.run_directory(tmp_path) is None and runs.run_directory(tmp_path / "absent") is None
    assert runs.open_run(run / "checkpoints" / "3").head == "question_answering"  # SQuAD's record says "span"
    assert runs.open_run(run).head == "pretraining"  # no head recorded


def test_record_heads_and_hf_names_are_one_table():
    for name, head in convert.HEADS.items():
        assert convert.head_of_record({"head": head.recorded_as}) == name == convert.head_of_record({"head": name})
    assert convert.head_of_record({}) == "pretraining"
