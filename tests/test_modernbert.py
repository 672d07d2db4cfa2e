"""The modern-encoder switches against transformers' ModernBERT with the same weights (layer by layer, every
head it has), against hand computations where it has no equivalent, and the interop both ways: bertjax ->
HF folders that `AutoModelForMaskedLM` loads whole, HF -> bertjax -> HF bit for bit."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from bertjax import convert, convert_modernbert, interop, runs
from bertjax.configs import common
from bertjax.data import tokenizer as tokenizers
from bertjax.heads import BertForPretraining
from bertjax.model import BertConfig, BertModel, apply_rotary, attention_allowed, rotary_angles, stack_layers

from test_export import _vocab_file, random_params

LENGTH, WINDOW = 20, 8  # rows longer than the local window, so that global and local layers differ
_HF_CLASSES = {"pretraining": transformers.ModernBertForMaskedLM, "encoder": transformers.ModernBertModel,
               "sequence_classification": transformers.ModernBertForSequenceClassification,
               "token_classification": transformers.ModernBertForTokenClassification,
               "question_answering": transformers.ModernBertForQuestionAnswering,
               "multiple_choice": transformers.ModernBertForMultipleChoice}


def _hf_model(head="pretraining", biases=False, pooling="cls", vocab_size=90, num_labels=3):
    """A small HF ModernBERT of `head`'s class (4 layers: global, local, local, global), every weight random
    (LayerNorms included)."""
    torch.manual_seed(0)
    config = transformers.ModernBertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=40,
        local_attention=WINDOW, global_attn_every_n_layers=3, global_rope_theta=160000.0, local_rope_theta=10000.0,
        attention_bias=biases, mlp_bias=biases, classifier_bias=biases, norm_bias=biases, max_position_embeddings=64,
        classifier_pooling=pooling, num_labels=num_labels, pad_token_id=0, cls_token_id=3, sep_token_id=4,
        bos_token_id=None, eos_token_id=None)
    model = _HF_CLASSES[head](config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return model.eval()


def _tensors(model):
    return {name: value.numpy() for name, value in model.state_dict().items()}


def _batch(vocab_size, rows=3):
    rng = np.random.default_rng(1)
    ids = rng.integers(5, vocab_size, size=(rows, LENGTH))
    mask = (np.arange(LENGTH)[None, :] < np.array([LENGTH, 13, 6][:rows])[:, None]).astype(np.int64)
    return ids * mask, mask


def _run_hf(model, ids, mask, **kwargs):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **kwargs)


def _close(ours, theirs, mask=None, atol=1e-5):
    ours, theirs = np.asarray(ours), theirs.numpy() if hasattr(theirs, "numpy") else np.asarray(theirs)
    if mask is not None:
        ours, theirs = ours[mask.astype(bool)], theirs[mask.astype(bool)]
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("biases", [False, True], ids=["no_biases", "biases"])
def test_masked_lm_matches_transformers_layer_by_layer(biases):
    hf = _hf_model("pretraining", biases)
    config = convert_modernbert.config_from_hf(hf.config.to_dict())
    assert (config.dense_bias, config.norm_bias, config.global_attention_every) == (biases, biases, 3)
    params, zero_filled = convert_modernbert.params_from_hf(_tensors(hf), config, "pretraining")
    assert zero_filled == ["bert/head", "bert/head_layer_norm", "sentence_head"]  # bertjax's, unused by the MLM
    ids, mask = _batch(config.vocab_size)
    theirs = _run_hf(hf, ids, mask, output_hidden_states=True)
    ours = BertForPretraining(config).apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    # HF's hidden states: the embeddings, then each layer's residual stream, the last one after the final norm.
    for index, (our, their) in enumerate(zip(ours.encoder.hidden_states[:-1], theirs.hidden_states[:-1])):
        _close(our, their, mask)
    _close(ours.encoder.last_hidden_state, theirs.hidden_states[-1], mask)
    _close(ours.mlm_logits, theirs.logits, mask)
    # The rows are longer than the window: the same weights with every layer global compute something else.
    all_global = dataclasses.replace(config, global_attention_every=1)
    wide = BertForPretraining(all_global).apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert np.abs(np.asarray(wide.mlm_logits) - theirs.logits.numpy())[mask.astype(bool)].max() > 1e-2


@pytest.mark.parametrize("head,pooling", [("sequence_classification", "cls"), ("sequence_classification", "mean"),
                                          ("token_classification", "cls"), ("question_answering", "cls"),
                                          ("multiple_choice", "cls"), ("encoder", "cls")])
def test_every_head_matches_transformers(head, pooling):
    hf = _hf_model(head, biases=True, pooling=pooling, num_labels=2 if head == "question_answering" else 3)
    config = convert_modernbert.config_from_hf(hf.config.to_dict())
    num_labels = {"multiple_choice": 1, "question_answering": 2}.get(head, 3)
    params, _ = convert_modernbert.params_from_hf(_tensors(hf), config, head, num_labels=num_labels)
    ids, mask = _batch(config.vocab_size)
    model = convert.head_model(config, head, num_labels)
    variables = {"params": params["bert"] if head == "encoder" else params}
    if head == "multiple_choice":  # two examples of three choices... here one example of three
        ours = model.apply(variables, jnp.asarray(ids[None]), attention_mask=jnp.asarray(mask[None]))
        _close(ours.logits, _run_hf(hf, ids[None], mask[None]).logits)
        return
    ours = model.apply(variables, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    theirs = _run_hf(hf, ids, mask)
    if head == "encoder":
        _close(ours.last_hidden_state, theirs.last_hidden_state, mask)
    elif head == "question_answering":
        _close(ours.logits[..., 0], theirs.start_logits, mask)
        _close(ours.logits[..., 1], theirs.end_logits, mask)
    else:
        _close(ours.logits, theirs.logits, mask if head == "token_classification" else None)


def test_scanned_layers_with_alternating_attention_equal_unrolled_ones():
    hf = _hf_model("pretraining", biases=True)
    config = convert_modernbert.config_from_hf(hf.config.to_dict())
    params, _ = convert_modernbert.params_from_hf(_tensors(hf), config, "pretraining")
    scanned = dataclasses.replace(config, scan_layers=True)
    scanned_params, _ = convert_modernbert.params_from_hf(_tensors(hf), scanned, "pretraining")
    assert jax.tree.structure(scanned_params["bert"]) == jax.tree.structure(stack_layers(params["bert"], 4))
    ids, mask = _batch(config.vocab_size)
    unrolled = BertForPretraining(config).apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    stacked = BertForPretraining(scanned).apply({"params": scanned_params}, jnp.asarray(ids),
                                                attention_mask=jnp.asarray(mask))
    _close(stacked.mlm_logits, unrolled.mlm_logits, mask)
    # Scanned parameters export as HF's unrolled ones, the first layer's unused attention norm left out.
    assert convert_modernbert.hf_tensors(scanned_params, scanned, "pretraining").keys() == \
        convert_modernbert.hf_tensors(params, config, "pretraining").keys()


def test_rotary_positions_and_local_windows_by_hand():
    rng = np.random.default_rng(0)
    query, key = rng.normal(size=(2, 1, 6, 1, 8)).astype(np.float32)  # B=1, L=6, H=1, K=8
    positions = jnp.arange(6)[None]
    cos, sin = rotary_angles(positions, 8, 10000.0)
    rotated = np.asarray(apply_rotary(jnp.asarray(query), cos, sin))
    # Pair (i, i + 4) at position p turns by p / 10000^(2i/8): a plain 2-D rotation, by hand.
    for p in range(6):
        for i in range(4):
            angle = p / 10000 ** (2 * i / 8)
            x, y = query[0, p, 0, i], query[0, p, 0, i + 4]
            np.testing.assert_allclose(rotated[0, p, 0, [i, i + 4]],
                                       [x * np.cos(angle) - y * np.sin(angle), y * np.cos(angle) + x * np.sin(angle)],
                                       atol=1e-5)
    # Scores depend on relative positions only: shifting every position by 5 changes none.
    shifted_cos, shifted_sin = rotary_angles(positions + 5, 8, 10000.0)
    scores = np.einsum("blhk,bshk->bls", rotated, np.asarray(apply_rotary(jnp.asarray(key), cos, sin)))
    shifted = np.einsum("blhk,bshk->bls", np.asarray(apply_rotary(jnp.asarray(query), shifted_cos, shifted_sin)),
                        np.asarray(apply_rotary(jnp.asarray(key), shifted_cos, shifted_sin)))
    np.testing.assert_allclose(shifted, scores, atol=1e-4)
    # A local window of 4 lets a query see keys at most 2 positions away, within its own example only.
    mask = jnp.array([[1, 1, 1, 1, 1, 2, 2, 0]])
    allowed = np.asarray(attention_allowed(mask, causal=False, window=4))[0, 0]
    expected = np.array([[abs(q - k) <= 2 and mask[0, q] == mask[0, k] and mask[0, k] > 0 for k in range(8)]
                         for q in range(8)])
    np.testing.assert_array_equal(allowed, expected)


def test_gated_feed_forward_by_hand():
    """SwiGLU (transformers' ModernBERT has GeGLU only): x + silu(LN(x) W_in) * (LN(x) W_gate) W_out, by numpy,
    with the attention's output zeroed so that the block is its feed-forward half alone."""
    config = BertConfig(vocab_size=20, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=6,
                        hidden_act="silu", gated_mlp=True, pre_layer_norm=True, dense_bias=False, norm_bias=False,
                        position_embedding="rotary", type_vocab_size=0, hidden_dropout=0.0, attention_dropout=0.0)
    model = BertModel(config)
    params = random_params(jax.eval_shape(lambda: nn.meta.unbox(
        model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"])))
    layer = params["encoder"]["layer_0"]
    assert layer["intermediate"]["kernel"].shape == (8, 12) and "bias" not in layer["intermediate"]
    assert "bias" not in layer["output_layer_norm"] and "bias" not in layer["attention"]["query"]
    assert set(params["embeddings"]) == {"word_embeddings", "layer_norm"}  # no position or segment table
    layer["attention"]["output"]["kernel"][:] = 0
    output = model.apply({"params": params}, jnp.array([[1, 2, 3, 4]]))
    before, after = np.asarray(output.hidden_states[0]), np.asarray(output.hidden_states[1])
    normed = (before - before.mean(-1, keepdims=True)) / np.sqrt(before.var(-1, keepdims=True) + config.layer_norm_eps)
    inner = normed * layer["output_layer_norm"]["scale"] @ layer["intermediate"]["kernel"]
    value, gate = inner[..., :6], inner[..., 6:]
    expected = before + (value / (1 + np.exp(-value)) * gate) @ layer["output"]["kernel"]
    np.testing.assert_allclose(after, expected, atol=1e-5)


# --- interop: bertjax -> HF, HF -> bertjax -> HF ---------------------------------------------------------------

def _modern_run(folder, head, vocab_path, num_labels=None, **overrides):
    tokenizer = tokenizers.load_tokenizer(vocab_path)
    model_config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=4, num_heads=4,
                              intermediate_size=40, max_position_embeddings=64, position_embedding="rotary",
                              type_vocab_size=0, pre_layer_norm=True, first_layer_attention_norm=False,
                              gated_mlp=True, dense_bias=False, norm_bias=False, global_attention_every=3,
                              local_attention_window=WINDOW, rope_theta=160000.0, layer_norm_eps=1e-5,
                              pooler="prediction_head", **overrides)
    params = random_params(convert.abstract_params(model_config, head, num_labels))
    config = common.get_config()
    config.model.variant = None
    for field in dataclasses.fields(BertConfig):
        config.model[field.name] = getattr(model_config, field.name)
    config.data.tokenizer = str(vocab_path)
    recorded = {"question_answering": "span", "token_classification": "tokens"}.get(head, head)
    record = {"step": 3, "task": head, "tokenizer_fingerprint": tokenizer.fingerprint, "head": recorded}
    if num_labels:
        record |= {"num_labels": num_labels, "labels": [f"L{i}" for i in range(num_labels)]}
    runs.save_params(folder, params, config.to_dict(), record, step=3)
    return model_config, params


@pytest.mark.parametrize("head,num_labels", [("pretraining", None), ("sequence_classification", 3),
                                             ("token_classification", 4), ("question_answering", None)])
def test_exported_modernbert_loads_whole_and_computes_what_bertjax_computes(tmp_path, head, num_labels):
    vocab = _vocab_file(tmp_path)
    model_config, params = _modern_run(tmp_path / "run", head, vocab, num_labels)
    summary = interop.export_hf(tmp_path / "run", tmp_path / "hf")
    assert summary["architecture"] == convert_modernbert.ARCHITECTURE_OF_HEAD[head]
    auto = transformers.AutoModelForMaskedLM if head == "pretraining" else _HF_CLASSES[head]
    hf, info = auto.from_pretrained(tmp_path / "hf", output_loading_info=True, attn_implementation="eager")
    assert type(hf) is _HF_CLASSES[head]
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask = _batch(model_config.vocab_size)
    theirs = _run_hf(hf.eval(), ids, mask)
    model = convert.head_model(model_config, head, num_labels)
    ours = model.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    if head == "pretraining":
        _close(ours.mlm_logits, theirs.logits, mask)
    elif head == "question_answering":
        _close(ours.logits[..., 0], theirs.start_logits, mask)
    else:
        _close(ours.logits, theirs.logits, mask if head == "token_classification" else None)
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())  # no id outside the vocabulary
    assert all(hf_config[f"{name}_token_id"] < model_config.vocab_size for name in ("pad", "cls", "sep", "bos", "eos"))
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert "token_type_ids" not in hf_tokenizer("the state of the art")


@pytest.mark.parametrize("head", ["pretraining", "sequence_classification", "question_answering"])
def test_hf_modernbert_to_bertjax_to_hf_gives_back_the_source_tensors(tmp_path, head):
    source = tmp_path / "source"
    source.mkdir()
    vocab = _vocab_file(source)
    hf = _hf_model(head, biases=head == "sequence_classification", vocab_size=len(vocab.read_text().split()),
                   num_labels=2 if head == "question_answering" else 3)
    hf.save_pretrained(source)
    tokenizers.WordPieceTokenizer(vocab)._tokenizer.save(str(source / "tokenizer.json"))
    record = interop.import_hf(source, tmp_path / "run")
    assert record["head"] == head
    interop.export_hf(tmp_path / "run", tmp_path / "back")
    original, back = load_file(source / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(back) == sorted(original)
    for name, tensor in original.items():
        np.testing.assert_array_equal(back[name], tensor, err_msg=name)
    source_config = json.loads((source / "config.json").read_text())
    back_config = json.loads((tmp_path / "back" / "config.json").read_text())
    for key in ("architectures", "layer_types", "local_attention", "rope_parameters", "norm_bias", "mlp_bias",
                "hidden_activation", "intermediate_size", "classifier_pooling"):
        assert back_config[key] == source_config[key], key


def test_bert_exporter_refuses_what_bert_cannot_hold(tmp_path):
    vocab = _vocab_file(tmp_path)
    model_config, params = _modern_run(tmp_path / "run", "pretraining", vocab)
    bertlike = dataclasses.replace(model_config, position_embedding="learned")
    with pytest.raises(convert.ConversionError, match="gated_mlp=True.*ModernBERT"):
        convert.hf_tensors(params, bertlike, "pretraining")
    with pytest.raises(convert_modernbert.ModernBertConversionError, match=r"pre_layer_norm=False"):
        convert_modernbert.hf_tensors(params, dataclasses.replace(model_config, pre_layer_norm=False), "pretraining")
    tanh = dataclasses.replace(model_config, pooler="tanh")
    with pytest.raises(convert_modernbert.ModernBertConversionError, match="prediction_head"):
        convert_modernbert.config_to_hf(tanh, "sequence_classification", num_labels=2)


def test_fine_tuning_from_a_modernbert_masked_lm_starts_its_classification_head_fresh(tmp_path):
    """An HF ModernBERT masked LM has no classification head (ModernBERT's pooler is `bert/head` here): read
    directly or through an import (which stores it as zeros), fine-tuning takes the encoder and starts the head
    fresh, as transformers does; the model config comes from the HF folder's config.json."""
    vocab = _vocab_file(tmp_path)
    model_config, params = _modern_run(tmp_path / "run", "pretraining", vocab)
    interop.export_hf(tmp_path / "run", tmp_path / "hf")
    interop.import_hf(tmp_path / "hf", tmp_path / "imported")
    abstract = convert.abstract_params(model_config, "sequence_classification", 3)
    fresh = random_params(abstract, seed=1)
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert convert.config_from_hf(hf_config) == model_config
    for source in (tmp_path / "hf", tmp_path / "imported"):
        loaded, report = runs.load_partial_params(source, abstract, ("classifier",), fresh)
        for part in ("head", "head_layer_norm"):
            for name in loaded["bert"][part]:
                np.testing.assert_array_equal(loaded["bert"][part][name], fresh["bert"][part][name])
        np.testing.assert_array_equal(loaded["bert"]["encoder"]["layer_1"]["intermediate"]["kernel"],
                                      params["bert"]["encoder"]["layer_1"]["intermediate"]["kernel"])
        assert "new: bert/head/kernel, bert/head_layer_norm/scale, classifier" in report
