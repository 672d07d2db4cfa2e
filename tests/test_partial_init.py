"""Fine-tuning's starting point: the encoder from a pretraining run, new heads fresh, and a report of which."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import traverse_util

from bertjax import checkpoint, convert, runs
from bertjax.heads import BertForPretraining, BertForSequenceClassification
from bertjax.model import BertConfig

CONFIG = BertConfig.from_variant("tiny", vocab_size=60, hidden_size=32, num_heads=2, intermediate_size=64,
                                 max_position_embeddings=16)
IDS = jnp.ones((1, 4), jnp.int32)


def _init(model, seed):
    return nn.meta.unbox(model.init(jax.random.key(seed), IDS)["params"])


def _save(path, params):
    manager = checkpoint.Checkpointer(path, keep=1)
    manager.save(1, {"params": params}, _NoIterator(), {"step": 1})
    manager.wait()
    manager.close()


class _NoIterator:  # grain's checkpoint handler asks the iterator for its state
    def get_state(self):
        return b"{}"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    params = _init(BertForPretraining(CONFIG), 0)
    path = tmp_path_factory.mktemp("pretrained")
    _save(path, params)
    return path, params


def test_encoder_loaded_and_classifier_fresh_with_a_report(pretrained, monkeypatch):
    path, source = pretrained
    monkeypatch.chdir(path.parent)
    path = path.relative_to(path.parent)  # as a user types it
    fresh = _init(BertForSequenceClassification(CONFIG, 3), 1)
    params, report = runs.load_partial_params(path, jax.eval_shape(lambda: fresh), ("classifier",), fresh)
    flat, source_flat, fresh_flat = (traverse_util.flatten_dict(t) for t in (params, source, fresh))
    for name, value in flat.items():
        expected = fresh_flat[name] if name[0] == "classifier" else source_flat[name]
        np.testing.assert_array_equal(value, expected)
    encoder = [name for name in flat if name[0] == "bert"]
    assert report.startswith(f"{len(encoder)} tensors")
    assert "new: classifier/bias, classifier/kernel" in report
    assert "not used: mlm_head, sentence_head" in report


def test_another_tasks_classifier_is_replaced_and_an_encoder_mismatch_is_refused(tmp_path, pretrained):
    three_way = _init(BertForSequenceClassification(CONFIG, 3), 2)
    _save(tmp_path / "mnli", three_way)
    two_way = _init(BertForSequenceClassification(CONFIG, 2), 3)
    params, report = runs.load_partial_params(tmp_path / "mnli", jax.eval_shape(lambda: two_way),
                                                    ("classifier",), two_way)
    np.testing.assert_array_equal(params["classifier"]["kernel"], two_way["classifier"]["kernel"])
    np.testing.assert_array_equal(params["bert"]["pooler"]["kernel"], three_way["bert"]["pooler"]["kernel"])
    assert "new: classifier/bias, classifier/kernel" in report

    wider = BertConfig.from_variant("tiny", vocab_size=60, hidden_size=32, num_heads=2, intermediate_size=128,
                                    max_position_embeddings=16)
    other = _init(BertForSequenceClassification(wider, 2), 4)
    with pytest.raises(ValueError, match=r"bert/encoder/layer_0/intermediate/kernel has shape \(32, 64\), "
                                         r"the model needs \(32, 128\)"):
        runs.load_partial_params(pretrained[0], jax.eval_shape(lambda: other), ("classifier",), other)


def test_an_hf_folder_serves_init_checkpoint_whole_and_for_a_new_head(tmp_path, monkeypatch):
    source = _init(BertForPretraining(CONFIG), 5)
    tensors = convert.hf_tensors(jax.tree.map(np.asarray, source), CONFIG, "pretraining")
    safetensors.numpy.save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(convert.config_to_hf(CONFIG, "pretraining")))
    calls = []
    monkeypatch.setattr(convert, "load_hf_bert", lambda folder, load=convert.load_hf_bert: calls.append(1) or load(
        folder))

    whole = runs.load_params(tmp_path, jax.eval_shape(lambda: source))
    for got, want in zip(jax.tree.leaves(whole), jax.tree.leaves(source)):
        np.testing.assert_array_equal(got, want)
    fresh = _init(BertForSequenceClassification(CONFIG, 3), 6)
    params, report = runs.load_partial_params(tmp_path, jax.eval_shape(lambda: fresh), ("classifier",), fresh)
    np.testing.assert_array_equal(params["classifier"]["kernel"], fresh["classifier"]["kernel"])
    np.testing.assert_array_equal(params["bert"]["pooler"]["kernel"], source["bert"]["pooler"]["kernel"])
    assert f"loaded from {tmp_path}" in report and "not used: mlm_head, sentence_head" in report
    assert len(calls) == 2  # once per load: the folder is converted once, not again for its shapes
