"""HF BERT weights loaded into bertjax give HF's outputs; bad checkpoints fail with every problem named."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from bertjax import convert
from bertjax.heads import BertForPretraining
from bertjax.model import BertModel

LENGTHS = (12, 7, 3)  # one full row, two padded


def _random_hf_model(**overrides):
    """A small `BertForPreTraining` with every parameter random (LayerNorms and biases included)."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=40, type_vocab_size=2, attn_implementation="eager", **overrides)
    model = transformers.BertForPreTraining(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # shared (tied) tensors appear once
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    model = _random_hf_model()
    folder = tmp_path_factory.mktemp("hf_bert")
    model.save_pretrained(folder)
    return folder, model


def _batch():
    rng = np.random.default_rng(1)
    length = max(LENGTHS)
    input_ids = rng.integers(1, 99, size=(len(LENGTHS), length))
    mask = (np.arange(length)[None, :] < np.array(LENGTHS)[:, None]).astype(np.int64)
    segment_ids = ((np.arange(length)[None, :] >= np.array(LENGTHS)[:, None] // 2) * mask).astype(np.int64)
    return input_ids * mask, segment_ids, mask


def _assert_close_at_real_positions(ours, theirs, mask, atol=1e-5):
    ours, theirs = np.asarray(ours), theirs.detach().numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], atol=atol, rtol=1e-5)


def test_pretraining_model_matches_hf(hf_folder):
    folder, hf_model = hf_folder
    config, params, absent = convert.load_hf_bert(folder)
    assert absent == ["classifier", "qa_outputs"]
    assert not config.pre_layer_norm and config.hidden_act == "gelu"
    input_ids, segment_ids, mask = _batch()

    with torch.no_grad():
        theirs = hf_model(torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                          token_type_ids=torch.tensor(segment_ids), output_hidden_states=True)
        pooled = hf_model.bert(torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                               token_type_ids=torch.tensor(segment_ids)).pooler_output
    ours = BertForPretraining(config).apply(
        {"params": params}, jnp.asarray(input_ids), jnp.asarray(segment_ids), jnp.asarray(mask))

    assert len(ours.encoder.hidden_states) == len(theirs.hidden_states) == config.num_layers + 1
    for our_layer, their_layer in zip(ours.encoder.hidden_states, theirs.hidden_states):
        _assert_close_at_real_positions(our_layer, their_layer, mask)
    _assert_close_at_real_positions(ours.encoder.last_hidden_state, theirs.hidden_states[-1], mask)
    _assert_close_at_real_positions(ours.mlm_logits, theirs.prediction_logits, mask)
    np.testing.assert_allclose(ours.encoder.pooled_output, pooled.numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours.sentence_logits, theirs.seq_relationship_logits.numpy(), atol=1e-5, rtol=1e-5)


def test_masked_positions_score_the_same_as_full_logits(hf_folder):
    folder, _ = hf_folder
    config, params, _ = convert.load_hf_bert(folder)
    input_ids, segment_ids, mask = _batch()
    positions = jnp.array([[0, 5, 11], [1, 2, 6], [0, 1, 2]])
    model = BertForPretraining(config)
    full = model.apply({"params": params}, input_ids, segment_ids, mask).mlm_logits
    gathered = model.apply({"params": params}, input_ids, segment_ids, mask, masked_positions=positions).mlm_logits
    np.testing.assert_allclose(gathered, np.take_along_axis(np.asarray(full), positions[:, :, None], 1), atol=1e-6)


def test_bare_bert_model_checkpoint_loads_without_heads(tmp_path):
    hf_model = _random_hf_model()
    hf_model.bert.save_pretrained(tmp_path)  # BertModel keys: no `bert.` prefix, no `cls.`
    config, params, absent = convert.load_hf_bert(tmp_path)
    assert absent == ["mlm_head", "sentence_head", "classifier", "qa_outputs"]
    input_ids, segment_ids, mask = _batch()
    with torch.no_grad():
        theirs = hf_model.bert(torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                               token_type_ids=torch.tensor(segment_ids))
    ours = BertModel(config).apply({"params": params["bert"]}, input_ids, segment_ids, mask)
    _assert_close_at_real_positions(ours.last_hidden_state, theirs.last_hidden_state, mask)
    np.testing.assert_allclose(ours.pooled_output, theirs.pooler_output.numpy(), atol=1e-5, rtol=1e-5)


def test_tanh_gelu_checkpoint_matches_hf(tmp_path):
    hf_model = _random_hf_model(hidden_act="gelu_new")
    hf_model.save_pretrained(tmp_path)
    config, params, _ = convert.load_hf_bert(tmp_path)
    assert config.hidden_act == "gelu_tanh"
    input_ids, segment_ids, mask = _batch()
    with torch.no_grad():
        theirs = hf_model(torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                          token_type_ids=torch.tensor(segment_ids))
    ours = BertForPretraining(config).apply({"params": params}, input_ids, segment_ids, mask)
    _assert_close_at_real_positions(ours.mlm_logits, theirs.prediction_logits, mask)


def _rewrite(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def test_bad_checkpoint_names_every_problem(tmp_path):
    _random_hf_model().save_pretrained(tmp_path)

    def edit(tensors):
        del tensors["bert.encoder.layer.1.intermediate.dense.bias"]
        tensors["bert.encoder.layer.2.output.dense.weight"] = np.zeros((5, 5), np.float32)
        tensors["bert.encoder.layer.7.output.dense.weight"] = np.zeros((5, 5), np.float32)

    _rewrite(tmp_path, edit)
    with pytest.raises(convert.ConversionError) as error:
        convert.load_hf_bert(tmp_path)
    message = str(error.value)
    assert "model.safetensors" in message
    assert "missing tensor: bert.encoder.layer.1.intermediate.dense.bias" in message
    assert "bert.encoder.layer.2.output.dense.weight: expected shape (32, 37), found (5, 5)" in message
    assert "unexpected tensor: bert.encoder.layer.7.output.dense.weight" in message


def test_partial_head_is_reported_missing(tmp_path):
    _random_hf_model().save_pretrained(tmp_path)
    _rewrite(tmp_path, lambda tensors: tensors.pop("cls.predictions.transform.dense.weight"))
    with pytest.raises(convert.ConversionError, match="missing tensor: cls.predictions.transform.dense.weight"):
        convert.load_hf_bert(tmp_path)


def test_config_that_does_not_match_the_weights(tmp_path):
    _random_hf_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_hidden_layers"] = 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(convert.ConversionError, match="unexpected tensor: bert.encoder.layer.2"):
        convert.load_hf_bert(tmp_path)


def test_missing_files_and_unsupported_configs(tmp_path):
    with pytest.raises(convert.ConversionError, match="config.json not found"):
        convert.load_hf_bert(tmp_path)
    with pytest.raises(convert.ConversionError, match="hidden_act='swish'"):
        convert.config_from_hf({"vocab_size": 9, "hidden_size": 8, "num_hidden_layers": 1,
                                "num_attention_heads": 2, "intermediate_size": 8, "hidden_act": "swish"})
    with pytest.raises(convert.ConversionError, match="required key 'hidden_size' is missing"):
        convert.config_from_hf({"vocab_size": 9})


def test_scanned_model_loads_hf_weights(hf_folder):
    import dataclasses
    folder, _ = hf_folder
    config, params, _ = convert.load_hf_bert(folder)
    scanned = dataclasses.replace(config, scan_layers=True)
    stacked, _ = convert.params_from_hf(load_file(folder / "model.safetensors"), scanned)
    assert stacked["bert"]["encoder"]["layers"]["layer"]["intermediate"]["kernel"].shape[0] == config.num_layers
    input_ids, segment_ids, mask = _batch()
    unrolled = BertForPretraining(config).apply({"params": params}, input_ids, segment_ids, mask)
    rolled = BertForPretraining(scanned).apply({"params": stacked}, input_ids, segment_ids, mask)
    np.testing.assert_allclose(rolled.mlm_logits, unrolled.mlm_logits, atol=1e-5)
