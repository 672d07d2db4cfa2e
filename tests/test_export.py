"""Export and import: transformers loads what bertjax exports and computes the same outputs; HF -> bertjax -> HF
gives back the source tensors; tokenizers encode as HF's do; bad checkpoints fail naming every tensor."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from bertjax import checkpoint, convert, interop, runs
from bertjax.data import tokenizer as tokenizers
from bertjax.model import BertConfig, BertModel
from bertjax.configs import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
LENGTHS = (10, 6, 3)
MIXED_TEXT = ("Café naïve façade — Ünïcödé résumé!? (state-of-the-art) e-mail: x@y.z, 3.14159; "
              "東京 ☃ 😀 ŀ supercalifragilisticexpialidocious antidisestablishmentarianism\tTabs  and   spaces "
              "[MASK] ##ing \u00a0nbsp zero\u200bwidth")


def _vocab_file(folder: pathlib.Path) -> pathlib.Path:
    """A BERT-layout WordPiece vocabulary: specials, characters, continuation pieces and some words."""
    pieces = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    characters = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,:;!?()'\"-@#_[]éüç東"))
    pieces += characters + ["##" + c for c in characters if c.isalnum()]
    pieces += ["cafe", "cafe", "state", "of", "the", "art", "mail", "super", "##cal", "##ifr", "anti", "##dis",
               "tabs", "and", "spaces", "##ing", "zero", "width", "Café", "Tabs"]
    seen, unique = set(), []
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            unique.append(piece)
    path = folder / "vocab.txt"
    path.write_text("\n".join(unique) + "\n", encoding="utf-8")
    return path


def _batch(vocab_size):
    rng = np.random.default_rng(1)
    length = max(LENGTHS)
    input_ids = rng.integers(1, vocab_size, size=(len(LENGTHS), length))
    mask = (np.arange(length)[None, :] < np.array(LENGTHS)[:, None]).astype(np.int64)
    segment_ids = ((np.arange(length)[None, :] >= np.array(LENGTHS)[:, None] // 2) * mask).astype(np.int64)
    return input_ids * mask, segment_ids, mask


# --- bertjax -> HF ---------------------------------------------------------------------------------------------

def random_params(abstract, seed=0):
    """Parameters of `abstract`'s shapes, every one random (numpy: nothing to compile)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: (0.2 * rng.normal(size=leaf.shape)).astype(np.float32), abstract)


def _bertjax_run(folder, head, vocab_path, num_labels=None, labels=None, lowercase=None, **model_overrides):
    """A run directory with random parameters (LayerNorms and biases too) for `head`; its tokenizer `vocab_path`
    read with `lowercase` (data.lowercase)."""
    tokenizer = tokenizers.load_tokenizer(vocab_path, lowercase)
    model_config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=2, num_heads=4,
                              intermediate_size=37, max_position_embeddings=24, **model_overrides)
    params = random_params(convert.abstract_params(model_config, head, num_labels))
    config = common.get_config()
    config.model.variant = None
    for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                 "max_position_embeddings", *model_overrides):
        config.model[name] = getattr(model_config, name)
    config.data.tokenizer, config.data.lowercase = str(vocab_path), lowercase
    recorded = {"question_answering": "span", "token_classification": "tokens"}.get(head, head)  # as SQuAD, NER
    record = {"step": 7, "task": head, "tokenizer_fingerprint": tokenizer.fingerprint, "head": recorded}
    if num_labels:
        record |= {"num_labels": num_labels, "labels": labels}
    runs.save_params(folder, params, config.to_dict(), record, step=7)
    return model_config, params


_HF_CLASSES = {"pretraining": transformers.BertForPreTraining, "encoder": transformers.BertModel,
               "sequence_classification": transformers.BertForSequenceClassification,
               "question_answering": transformers.BertForQuestionAnswering,
               "token_classification": transformers.BertForTokenClassification}


@pytest.mark.parametrize("head,num_labels", [("pretraining", None), ("encoder", None),
                                             ("sequence_classification", 3), ("question_answering", None),
                                             ("token_classification", 5)])
def test_exported_folder_loads_in_transformers_with_the_same_outputs(tmp_path, head, num_labels):
    vocab = _vocab_file(tmp_path)
    labels = [f"tag{i}" for i in range(num_labels)] if num_labels else None
    model_config, params = _bertjax_run(tmp_path / "run", head, vocab, num_labels, labels)
    summary = interop.export_hf(tmp_path / "run", tmp_path / "hf")
    assert summary["architecture"] == convert.HEADS[head][0] and summary["step"] == 7

    hf_model, info = _HF_CLASSES[head].from_pretrained(tmp_path / "hf", output_loading_info=True,
                                                       attn_implementation="eager")
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info
    if labels:
        assert [hf_model.config.id2label[i] for i in range(num_labels)] == labels

    input_ids, segment_ids, mask = _batch(model_config.vocab_size)
    with torch.no_grad():
        theirs = hf_model.eval()(torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                                 token_type_ids=torch.tensor(segment_ids))
    model = convert.head_model(model_config, head, num_labels)
    variables = {"params": params["bert"] if head == "encoder" else params}
    ours = jax.jit(model.apply)(variables, jnp.asarray(input_ids), jnp.asarray(segment_ids), jnp.asarray(mask))
    real = mask.astype(bool)

    def close(our, their, per_token=True):
        our, their = np.asarray(our), their.numpy()
        if per_token:
            our, their = our[real], their[real]
        np.testing.assert_allclose(our, their, atol=1e-5, rtol=1e-5)

    if head == "pretraining":
        close(ours.mlm_logits, theirs.prediction_logits)
        close(ours.sentence_logits, theirs.seq_relationship_logits, per_token=False)
    elif head == "encoder":
        close(ours.last_hidden_state, theirs.last_hidden_state)
        close(ours.pooled_output, theirs.pooler_output, per_token=False)
    elif head == "question_answering":
        close(ours.logits[..., 0], theirs.start_logits)
        close(ours.logits[..., 1], theirs.end_logits)
    else:
        close(ours.logits, theirs.logits, per_token=head == "token_classification")


def test_scanned_layers_export_like_unrolled_ones(tmp_path):
    vocab = _vocab_file(tmp_path)
    _bertjax_run(tmp_path / "run", "pretraining", vocab, scan_layers=True)
    interop.export_hf(tmp_path / "run", tmp_path / "hf")
    _, info = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    config, params, _ = convert.load_hf_bert(tmp_path / "hf")
    run_params = runs.load_run(tmp_path / "run")[2]
    np.testing.assert_array_equal(params["bert"]["encoder"]["layer_1"]["intermediate"]["kernel"],
                                  run_params["bert"]["encoder"]["layers"]["layer"]["intermediate"]["kernel"][1])


def test_plain_parameter_file_loads_with_bertjax_model_alone(tmp_path):
    vocab = _vocab_file(tmp_path)
    model_config, params = _bertjax_run(tmp_path / "run", "sequence_classification", vocab, 2, ["no", "yes"])
    interop.export_params(tmp_path / "run", tmp_path / "plain")
    description = json.loads((tmp_path / "plain" / "bertjax_config.json").read_text())
    assert description["head"] == "sequence_classification" and description["labels"] == ["no", "yes"]
    # What evaluation code does: import bertjax.model and safetensors, nothing else of bertjax.
    script = f"""
import json, pathlib, sys
import jax
import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file
from bertjax.model import BertConfig, BertModel
folder = pathlib.Path({str(tmp_path / 'plain')!r})
config = BertConfig(**json.loads((folder / "bertjax_config.json").read_text())["model"])
params = traverse_util.unflatten_dict(load_file(folder / "params.safetensors"), sep="/")
ids = np.arange(1, 9)[None] % config.vocab_size
out = jax.jit(BertModel(config).apply)({{"params": params["bert"]}}, ids)
assert not [name for name in sys.modules if name.startswith("bertjax.") and name != "bertjax.model"]
np.save({str(tmp_path / 'pooled.npy')!r}, np.asarray(out.pooled_output))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ids = np.arange(1, 9)[None] % model_config.vocab_size
    expected = jax.jit(BertModel(model_config).apply)({"params": params["bert"]}, ids)
    np.testing.assert_array_equal(np.load(tmp_path / "pooled.npy"), expected.pooled_output)


def test_checkpoint_that_does_not_fit_its_head_names_every_parameter(tmp_path):
    vocab = _vocab_file(tmp_path)
    _bertjax_run(tmp_path / "run", "question_answering", vocab)
    record_path = next((tmp_path / "run" / "checkpoints").glob("*/record/metadata"))
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "head": "token_classification", "num_labels": 3}))
    with pytest.raises(ValueError) as error:
        interop.export_hf(tmp_path / "run", tmp_path / "hf")
    message = str(error.value)
    for name in ("missing in the checkpoint: classifier/kernel", "missing in the checkpoint: classifier/bias",
                 "not in the model: qa_outputs/kernel", "not in the model: qa_outputs/bias"):
        assert name in message
    assert not (tmp_path / "hf").exists()


def test_heads_the_checkpoint_lacks_and_models_hf_cannot_hold_are_refused(tmp_path):
    vocab = _vocab_file(tmp_path)
    _bertjax_run(tmp_path / "run", "encoder", vocab)
    with pytest.raises(convert.ConversionError, match=r"needs the parameters \['mlm_head', 'sentence_head'\]"):
        interop.export_hf(tmp_path / "run", tmp_path / "hf", head="pretraining")
    _bertjax_run(tmp_path / "pre_ln", "encoder", vocab, pre_layer_norm=True)
    with pytest.raises(convert.ConversionError, match="pre_layer_norm"):
        interop.export_hf(tmp_path / "pre_ln", tmp_path / "hf")


# --- HF -> bertjax -> HF -------------------------------------------------------------------------------------

def _hf_folder(folder, cls, bin_format=False, **config_overrides):
    torch.manual_seed(0)
    vocab = _vocab_file(folder)
    config = transformers.BertConfig(vocab_size=len(vocab.read_text().split()), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37, max_position_embeddings=24,
                                     **config_overrides)
    model = cls(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)
    if bin_format:
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return model


@pytest.mark.parametrize("cls,head,config_overrides", [
    (transformers.BertForPreTraining, "pretraining", {}),
    (transformers.BertModel, "encoder", {}),
    (transformers.BertForSequenceClassification, "sequence_classification",
     {"id2label": {0: "negative", 1: "neutral", 2: "positive"}}),
    (transformers.BertForQuestionAnswering, "question_answering", {}),
    (transformers.BertForTokenClassification, "token_classification", {"num_labels": 4}),
])
def test_hf_to_bertjax_to_hf_gives_back_the_source_tensors(tmp_path, cls, head, config_overrides):
    (tmp_path / "source").mkdir()
    _hf_folder(tmp_path / "source", cls, **config_overrides)
    record = interop.import_hf(tmp_path / "source", tmp_path / "run")
    assert record["head"] == head
    if head in ("question_answering", "token_classification"):
        assert record["zero_filled"] == ["bert/pooler"]
    interop.export_hf(tmp_path / "run", tmp_path / "back")
    source = load_file(tmp_path / "source" / "model.safetensors")
    back = load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(back) == sorted(source)
    for name, tensor in source.items():
        np.testing.assert_array_equal(back[name], tensor, err_msg=name)
    source_config = json.loads((tmp_path / "source" / "config.json").read_text())
    back_config = json.loads((tmp_path / "back" / "config.json").read_text())
    for key in ("architectures", "hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"):
        assert back_config[key] == source_config[key], key
    if "classifier" in convert.HEADS[head][1]:
        assert back_config["id2label"] == source_config["id2label"]


def test_converted_checkpoint_serves_continued_pretraining_and_fine_tuning(tmp_path):
    (tmp_path / "source").mkdir()
    hf_model = _hf_folder(tmp_path / "source", transformers.BertForPreTraining, bin_format=True)
    interop.import_hf(tmp_path / "source", tmp_path / "run")
    run_config = json.loads((tmp_path / "run" / "config.json").read_text())
    model_config = BertConfig.from_config(run_config["model"])
    assert tokenizers.load_tokenizer(run_config["data"]["tokenizer"]).vocab_size == model_config.vocab_size
    assert model_config == convert.config_from_hf(hf_model.config.to_dict())
    # config.py beside it: what `--config DIR/config.py` gives a training tool.
    spec = importlib.util.spec_from_file_location("converted_config", tmp_path / "run" / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("train.num_steps=3")
    assert BertConfig.from_config(config.model) == model_config and config.train.num_steps == 3
    assert config.train.init_checkpoint == str(tmp_path / "run")
    assert config.data.tokenizer == run_config["data"]["tokenizer"]
    # init_checkpoint reads the parameters a pretraining model and a fine-tuning encoder need.
    pretraining = runs.load_params(tmp_path / "run", convert.abstract_params(model_config, "pretraining"))
    encoder = runs.load_params(tmp_path / "run", convert.abstract_params(model_config, "encoder"))
    np.testing.assert_array_equal(encoder["bert"]["pooler"]["kernel"],
                                  hf_model.bert.pooler.dense.weight.detach().numpy().T)
    np.testing.assert_array_equal(pretraining["mlm_head"]["output_bias"],
                                  hf_model.cls.predictions.bias.detach().numpy())
    with pytest.raises(ValueError, match="lacks parameters the model needs: classifier/bias, classifier/kernel"):
        runs.load_params(tmp_path / "run", convert.abstract_params(model_config, "sequence_classification", 2))


def test_import_refuses_checkpoints_it_cannot_carry_whole(tmp_path):
    (tmp_path / "source").mkdir()
    _hf_folder(tmp_path / "source", transformers.BertForSequenceClassification)
    tensors = load_file(tmp_path / "source" / "model.safetensors")
    tensors["cls.seq_relationship.weight"] = np.zeros((2, 32), np.float32)
    tensors["cls.seq_relationship.bias"] = np.zeros(2, np.float32)
    save_file(tensors, tmp_path / "source" / "model.safetensors")
    with pytest.raises(convert.ConversionError, match=r"\['sentence_head'\] beside the sequence_classification"):
        interop.import_hf(tmp_path / "source", tmp_path / "run")
    record = interop.import_hf(tmp_path / "source", tmp_path / "run", head="encoder")  # an explicit choice
    assert record["head"] == "encoder"
    with pytest.raises(convert.ConversionError, match=r"needs \['mlm_head'\], which the checkpoint lacks"):
        interop.import_hf(tmp_path / "source", tmp_path / "other", head="pretraining")
    with pytest.raises(FileExistsError, match="--overwrite"):
        interop.import_hf(tmp_path / "source", tmp_path / "run", head="encoder")

    (tmp_path / "evil").mkdir()
    _hf_folder(tmp_path / "evil", transformers.BertModel, bin_format=True)
    torch.save({"weights": object()}, tmp_path / "evil" / "pytorch_model.bin")  # a pickle, not tensors
    with pytest.raises(convert.ConversionError, match="not a plain PyTorch state dict"):
        interop.import_hf(tmp_path / "evil", tmp_path / "evil_run")


# --- tokenizers ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_encodes_mixed_text_as_transformers(tmp_path, lowercase):
    vocab = _vocab_file(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase}))
    ours = tokenizers.wordpiece_from_hf_folder(tmp_path, tmp_path / "tokenizer.json")
    texts = [MIXED_TEXT, MIXED_TEXT.upper(), "", "x" * 150, "éé##"]
    for reference in (transformers.BertTokenizer(str(vocab), do_lower_case=lowercase),
                      transformers.BertTokenizerFast(str(vocab), do_lower_case=lowercase)):
        for text, ids in zip(texts, ours.encode_batch(texts)):
            assert ids == reference.encode(text, add_special_tokens=False), (type(reference).__name__, text)
    ids = ours.encode(MIXED_TEXT)
    assert ours.unk_id in ids and len(set(ids)) > 10  # the text exercises unknown pieces and many known ones


def test_exported_tokenizers_load_in_transformers(tmp_path, builtin_documents):
    vocab = _vocab_file(tmp_path)
    wordpiece = tokenizers.load_tokenizer(vocab)
    (tmp_path / "wp").mkdir()
    tokenizers.save_hf_tokenizer(wordpiece, tmp_path / "wp")
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "wp")
    assert hf(MIXED_TEXT, add_special_tokens=False)["input_ids"] == wordpiece.encode(MIXED_TEXT)

    sentences = [sentence for document in builtin_documents[:400] for sentence in document]
    sp_tokenizer = tokenizers.train_sentencepiece(iter(sentences), vocab_size=800)
    (tmp_path / "sp").mkdir()
    tokenizers.save_hf_tokenizer(sp_tokenizer, tmp_path / "sp")
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "sp")
    pair = hf("first part", "second")
    assert pair["input_ids"][0] == sp_tokenizer.cls_id and pair["input_ids"][-1] == sp_tokenizer.sep_id
    assert pair["token_type_ids"][-1] == 1 and pair["token_type_ids"][0] == 0
    theirs = hf(sentences, add_special_tokens=False)["input_ids"]
    same = sum(a == b for a, b in zip(sp_tokenizer.encode_batch(sentences), theirs))
    # SentencePiece and HF's Unigram may break ties between equal-scoring splits differently.
    assert same >= 0.995 * len(sentences), (same, len(sentences))


# --- the tools -------------------------------------------------------------------------------------------------

def _tool(name, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's bertjax, whatever is installed
    return subprocess.run([sys.executable, f"tools/{name}.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def test_convert_and_export_tools(tmp_path):
    (tmp_path / "source").mkdir()
    _hf_folder(tmp_path / "source", transformers.BertForSequenceClassification, num_labels=2)
    result = _tool("convert_hf", f"--checkpoint={tmp_path / 'source'}", f"--output_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    assert "head sequence_classification" in result.stdout
    result = _tool("export", f"--checkpoint={tmp_path / 'run'}", f"--output_dir={tmp_path / 'hf'}")
    assert result.returncode == 0, result.stderr
    assert "BertForSequenceClassification" in result.stdout and (tmp_path / "hf" / "model.safetensors").is_file()
    result = _tool("export", f"--checkpoint={tmp_path / 'run'}", f"--output_dir={tmp_path / 'plain'}",
                   "--format=params")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plain" / "params.safetensors").is_file()
    result = _tool("export", f"--checkpoint={tmp_path / 'nothing'}", f"--output_dir={tmp_path / 'x'}")
    assert result.returncode == 1 and "not found" in result.stderr and "Traceback" not in result.stderr


def test_a_runs_best_parameters_export_with_the_runs_head(tmp_path):
    vocab = _vocab_file(tmp_path)
    _, params = _bertjax_run(tmp_path / "run", "sequence_classification", vocab, 2, ["no", "yes"])
    best = checkpoint.BestCheckpoint(tmp_path / "run", "accuracy")  # what fine-tuning keeps; its record has no head
    best.offer(5, jax.tree.map(lambda value: value + 1, params), {"accuracy": 0.75})
    best.close()
    summary = interop.export_hf(tmp_path / "run" / "best", tmp_path / "hf")
    assert summary["architecture"] == "BertForSequenceClassification" and summary["step"] == 5
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["id2label"] == {"0": "no", "1": "yes"}
    exported = load_file(tmp_path / "hf" / "model.safetensors")
    np.testing.assert_array_equal(exported["classifier.bias"], params["classifier"]["bias"] + 1)


def test_a_runs_casing_travels_with_its_tokenizer(tmp_path):
    from bertjax import finetune

    vocab = _vocab_file(tmp_path)  # upper-case pieces ("Café"): read cased unless told otherwise
    assert not tokenizers.load_tokenizer(vocab).lowercase
    _bertjax_run(tmp_path / "run", "encoder", vocab, lowercase=True)
    # The export reads the tokenizer as the run did (else its fingerprint would not match the run's).
    interop.export_hf(tmp_path / "run", tmp_path / "hf")
    exported = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    reference = transformers.BertTokenizer(str(vocab), do_lower_case=True)
    assert exported(MIXED_TEXT)["input_ids"] == reference(MIXED_TEXT)["input_ids"]
    assert exported(MIXED_TEXT)["input_ids"] != transformers.BertTokenizer(str(vocab), do_lower_case=False)(
        MIXED_TEXT)["input_ids"]
    # Fine-tuning from the run takes its tokenizer with its casing.
    config = common.get_config()
    config.train.init_checkpoint = str(tmp_path / "run")
    finetune.resolve_from_checkpoint(config)
    assert (config.data.tokenizer, config.data.lowercase) == (str(vocab), True)
