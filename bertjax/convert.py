"""HuggingFace BERT <-> bertjax parameters, both ways, for the pretraining model, the bare encoder and the
fine-tuning heads.

The mapping is a table from bertjax module paths to HF module names; leaves map `kernel`/`embedding`/
`scale` to `weight`. Torch `Linear` weights are (out, in): a kernel is the transpose, reshaped to the
bertjax shape ((D, H, K) for query/key/value, (H, K, D) for the attention output).

Reading needs only `safetensors` (no torch; `pytorch_model.bin` needs torch and is read as tensors only).
The expected tensors come from the bertjax model itself
(`jax.eval_shape`), so a file that does not fit the config fails with every missing, unexpected or
mis-shaped tensor named.
"""

import dataclasses
import json
import math
import pathlib
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file

from bertjax import convert_modernbert
from bertjax.heads import (BertForMultipleChoice, BertForPretraining, BertForQuestionAnswering,
                           BertForSequenceClassification, BertForTokenClassification)
from bertjax.model import BertConfig, BertModel, stack_layers, unstack_layers

# (bertjax module path, HF module name, number of leading kernel axes that are inputs).
_MODULE_TABLE = [
    (r"bert/embeddings/(word|position|token_type)_embeddings", r"bert.embeddings.\1_embeddings", 1),
    (r"bert/embeddings/layer_norm", "bert.embeddings.LayerNorm", 1),
    (r"bert/encoder/layer_(\d+)/attention/(query|key|value)", r"bert.encoder.layer.\1.attention.self.\2", 1),
    (r"bert/encoder/layer_(\d+)/attention/output", r"bert.encoder.layer.\1.attention.output.dense", 2),
    (r"bert/encoder/layer_(\d+)/attention_layer_norm", r"bert.encoder.layer.\1.attention.output.LayerNorm", 1),
    (r"bert/encoder/layer_(\d+)/intermediate", r"bert.encoder.layer.\1.intermediate.dense", 1),
    (r"bert/encoder/layer_(\d+)/output", r"bert.encoder.layer.\1.output.dense", 1),
    (r"bert/encoder/layer_(\d+)/output_layer_norm", r"bert.encoder.layer.\1.output.LayerNorm", 1),
    (r"bert/pooler", "bert.pooler.dense", 1),
    (r"mlm_head/transform", "cls.predictions.transform.dense", 1),
    (r"mlm_head/transform_layer_norm", "cls.predictions.transform.LayerNorm", 1),
    (r"mlm_head", "cls.predictions", 1),  # the output bias; the decoder matrix is the word embeddings
    (r"sentence_head", "cls.seq_relationship", 1),
    (r"classifier", "classifier", 1),
    (r"qa_outputs", "qa_outputs", 1),
]
_LEAF_TABLE = {"kernel": "weight", "embedding": "weight", "scale": "weight", "bias": "bias",
               "output_bias": "bias"}

# Parts a checkpoint may lack as a whole (HF's BertModel has no cls.*; span and token models have no pooler).
_OPTIONAL_PARTS = ("bert/pooler", "mlm_head", "sentence_head", "classifier", "qa_outputs")


class Head(NamedTuple):
    """A row of `HEADS`: how a bertjax head appears in HF's files and in bertjax's checkpoint records."""

    architecture: str  # HF's model class
    parts: tuple[str, ...]  # the top-level parameter groups beside the encoder (`bert`)
    with_pooler: bool  # whether HF's model has the pooler
    recorded_as: str  # the name a fine-tuning task's checkpoint record gives the head (SQuAD's, NER's own)
    fixed_outputs: int | None = None  # the classifier's size where the head fixes it (one score per choice),
    # not config.json's labels; None: as many outputs as labels


HEADS = {
    "pretraining": Head("BertForPreTraining", ("mlm_head", "sentence_head"), True, "pretraining"),
    "encoder": Head("BertModel", (), True, "encoder"),
    "sequence_classification": Head("BertForSequenceClassification", ("classifier",), True,
                                    "sequence_classification"),
    "question_answering": Head("BertForQuestionAnswering", ("qa_outputs",), False, "span"),
    "token_classification": Head("BertForTokenClassification", ("classifier",), False, "tokens"),
    "multiple_choice": Head("BertForMultipleChoice", ("classifier",), True, "multiple_choice", fixed_outputs=1),
}
_HEAD_OF_ARCHITECTURE = {head.architecture: name for name, head in HEADS.items()}
_HEAD_OF_ARCHITECTURE["BertForMaskedLM"] = "pretraining"  # Google's checkpoints hold both heads under this name
_HEAD_OF_ARCHITECTURE |= {name: head for name, (head, _) in convert_modernbert.ARCHITECTURES.items()}
_HEAD_OF_RECORD = {head.recorded_as: name for name, head in HEADS.items()}

# HF keys that are not parameters, or are tied to one that is (checked equal, then skipped).
_BUFFER_KEYS = re.compile(r"bert\.embeddings\.(position_ids|token_type_ids)")
_TIED_KEYS = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
              "cls.predictions.decoder.bias": "cls.predictions.bias"}

_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
_TO_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


class ConversionError(ValueError):
    """A checkpoint that does not match what bertjax expects; the message lists every problem."""


def head_of_record(record: dict) -> str:
    """The `HEADS` name of the head a checkpoint record names: a task's own name for it ("span", "tokens"),
    or a `HEADS` name (converted runs); a record without one is a pretraining run's. Other names (a head
    without an HF counterpart) come back as they are."""
    recorded = record.get("head", "pretraining")
    return _HEAD_OF_RECORD.get(recorded, recorded)


def hf_name(path: tuple[str, ...]) -> tuple[str, int]:
    """A bertjax parameter path -> (HF tensor name, number of kernel input axes)."""
    module, leaf = "/".join(path[:-1]), path[-1]
    for pattern, replacement, input_axes in _MODULE_TABLE:
        if re.fullmatch(pattern, module):
            return f"{re.sub(pattern, replacement, module)}.{_LEAF_TABLE[leaf]}", input_axes
    raise KeyError(f"No HF name for bertjax parameter {'/'.join(path)}.")


def config_from_hf(hf_config: dict[str, Any], source: str = "config.json") -> BertConfig:
    """An HF `BertConfig` (or `ModernBertConfig`) dict -> a bertjax `BertConfig`."""
    if hf_config.get("model_type") == "modernbert":
        return convert_modernbert.config_from_hf(hf_config, source)
    if hf_config.get("model_type", "bert") != "bert":
        raise ConversionError(f"{source}: model_type is {hf_config['model_type']!r}; only 'bert' and "
                              "'modernbert' convert.")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{source}: position_embedding_type={hf_config['position_embedding_type']!r}; "
                              "bertjax has learned absolute positions only.")
    if hf_config.get("is_decoder") or hf_config.get("add_cross_attention"):
        raise ConversionError(f"{source}: a decoder with cross-attention does not convert to bertjax.")
    activation = hf_config.get("hidden_act", "gelu")
    if activation not in _HF_ACTIVATIONS:
        raise ConversionError(f"{source}: hidden_act={activation!r} is not one of {sorted(_HF_ACTIVATIONS)}.")
    try:
        return BertConfig(
            vocab_size=hf_config["vocab_size"], hidden_size=hf_config["hidden_size"],
            num_layers=hf_config["num_hidden_layers"], num_heads=hf_config["num_attention_heads"],
            intermediate_size=hf_config["intermediate_size"], hidden_act=_HF_ACTIVATIONS[activation],
            hidden_dropout=hf_config.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf_config.get("attention_probs_dropout_prob", 0.1),
            max_position_embeddings=hf_config.get("max_position_embeddings", 512),
            type_vocab_size=hf_config.get("type_vocab_size", 2),
            layer_norm_eps=hf_config.get("layer_norm_eps", 1e-12),
            initializer_range=hf_config.get("initializer_range", 0.02))
    except KeyError as missing:
        raise ConversionError(f"{source}: required key {missing} is missing.") from None


def _normalise_keys(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Give every key the layout of HF's task models: `bert.` prefix, `weight`/`bias` (not gamma/beta)."""
    normalised = {}
    for key, value in tensors.items():
        if not key.startswith(("bert.", "cls.", "classifier.", "qa_outputs.")):
            key = "bert." + key  # a bare BertModel checkpoint
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        normalised[key] = value
    return normalised


def _from_hf_tensor(value: np.ndarray, shape: tuple[int, ...], leaf: str) -> np.ndarray:
    if leaf == "kernel":  # torch (out, in) -> (in..., out...)
        return value.T.reshape(shape)
    return value.reshape(shape)


def _to_hf_tensor(value: np.ndarray, leaf: str, input_axes: int) -> np.ndarray:
    shape = _hf_shape(value.shape, leaf, input_axes)
    if leaf == "kernel":  # (in..., out...) -> torch (out, in)
        return np.ascontiguousarray(value.reshape(shape[::-1]).T)
    return np.ascontiguousarray(value.reshape(shape))


def _hf_shape(shape: tuple[int, ...], leaf: str, input_axes: int) -> tuple[int, ...]:
    if leaf == "kernel":
        return (int(np.prod(shape[input_axes:])), int(np.prod(shape[:input_axes])))
    if leaf == "bias":
        return (int(np.prod(shape)),)
    return tuple(shape)


def head_model(config: BertConfig, head: str, num_labels: int | None = None) -> nn.Module:
    """The bertjax model of a head (`HEADS`); "encoder" is `BertModel`, whose parameters sit under `bert`."""
    models = {"pretraining": lambda: BertForPretraining(config), "encoder": lambda: BertModel(config),
              "question_answering": lambda: BertForQuestionAnswering(config),
              "sequence_classification": lambda: BertForSequenceClassification(config, num_labels),
              "token_classification": lambda: BertForTokenClassification(config, num_labels),
              "multiple_choice": lambda: BertForMultipleChoice(config)}
    if head not in models:
        raise ValueError(f"Unknown head {head!r}; choose one of {sorted(models)}.")
    if head in ("sequence_classification", "token_classification") and not num_labels:
        raise ValueError(f"Head {head!r} needs num_labels (the classifier's output size).")
    return models[head]()


def abstract_params(config: BertConfig, head: str, num_labels: int | None = None) -> dict:
    """The shapes and dtypes of a head's parameters, `{"bert": ..., <head parts>}`, without computing them."""
    model = head_model(config, head, num_labels)
    kwargs = {"masked_positions": jnp.zeros((1, 1), jnp.int32)} if head == "pretraining" else {}
    input_shape = (1, 1, 1) if head == "multiple_choice" else (1, 1)  # B, N, L: one choice per example
    params = jax.eval_shape(lambda: nn.meta.unbox(
        model.init(jax.random.key(0), jnp.zeros(input_shape, jnp.int32), **kwargs)["params"]))
    return {"bert": params} if head == "encoder" else params


def _expected_hf_parameters(config: BertConfig, num_labels: int) -> dict[tuple[str, ...], Any]:
    """Every parameter any head may have, flattened: the pretraining model's plus both task heads'."""
    expected = traverse_util.flatten_dict(abstract_params(config, "pretraining"))
    for head in ("sequence_classification", "question_answering"):
        for path, struct in traverse_util.flatten_dict(abstract_params(config, head, num_labels)).items():
            expected.setdefault(path, struct)
    return expected


def params_from_hf(tensors: dict[str, np.ndarray], config: BertConfig, source: str = "checkpoint",
                   num_labels: int | None = None) -> tuple[dict, list[str]]:
    """HF tensors -> ({'bert': ..., and 'mlm_head', 'sentence_head', 'classifier', 'qa_outputs' as present},
    parts absent).

    The encoder (embeddings and layers) must be complete; the pooler and each head are taken when present
    (and then complete) and listed as absent otherwise. `num_labels` (from config.json's labels) is checked
    against the classifier's rows. Every missing, unexpected or mis-shaped tensor is named.
    """
    if config.pre_layer_norm:
        raise ConversionError("HF BERT is post-LayerNorm; set pre_layer_norm=False to convert.")
    if config.scan_layers:  # convert unrolled, then stack the layers
        params, absent = params_from_hf(tensors, dataclasses.replace(config, scan_layers=False), source, num_labels)
        return {**params, "bert": stack_layers(params["bert"], config.num_layers)}, absent
    tensors = _normalise_keys(tensors)
    if num_labels is None and "classifier.weight" in tensors:
        num_labels = int(tensors["classifier.weight"].shape[0])
    expected = _expected_hf_parameters(config, num_labels or 2)

    def part_of(path):
        joined = "/".join(path)
        return next((part for part in _OPTIONAL_PARTS if joined.startswith(part)), None)

    present_parts = {part_of(path) for path in expected
                     if part_of(path) and hf_name(path)[0] in tensors}
    absent_parts = [part for part in _OPTIONAL_PARTS if part not in present_parts]

    params, missing, misshaped, consumed = {}, [], [], set()
    for path, struct in expected.items():
        if part_of(path) in absent_parts:
            continue
        name, input_axes = hf_name(path)
        if name not in tensors:
            missing.append(name)
            continue
        consumed.add(name)
        value, want = tensors[name], _hf_shape(struct.shape, path[-1], input_axes)
        if tuple(value.shape) != want:
            misshaped.append(f"{name}: expected shape {want}, found {tuple(value.shape)}")
            continue
        params[path] = _from_hf_tensor(np.asarray(value), struct.shape, path[-1]).astype(config.param_dtype)

    for tied, target in _TIED_KEYS.items():
        if tied in tensors and target in tensors and not np.array_equal(tensors[tied], tensors[target]):
            misshaped.append(f"{tied} differs from {target}: bertjax ties them; untied weights do not convert")
    unexpected = sorted(key for key in tensors
                        if key not in consumed and key not in _TIED_KEYS and not _BUFFER_KEYS.fullmatch(key))

    problems = ([f"missing tensor: {name}" for name in missing] + misshaped
                + [f"unexpected tensor: {name}" for name in unexpected])
    if problems:
        raise ConversionError(
            f"{source} does not fit a BERT with {config.num_layers} layers, hidden size {config.hidden_size} and "
            f"vocab {config.vocab_size}:\n  " + "\n  ".join(problems)
            + "\nCheck that config.json belongs to these weights and that the model is a BERT.")
    return traverse_util.unflatten_dict(params), absent_parts


# safetensors dtype names -> bytes per element.
_SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
                       "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit


def check_safetensors_header(path: str | pathlib.Path) -> dict[str, Any]:
    """The header of a `.safetensors` file, checked before any tensor is read: its length fits the file, every
    dtype is known, and each tensor's byte range matches its shape and dtype and lies inside the file. A
    safetensors file is data only (JSON header + raw bytes): nothing in it is executed."""
    path = pathlib.Path(path)
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        header_length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if header_length is None or header_length > min(size - 8, _MAX_HEADER_BYTES):
            raise ConversionError(f"{path}: not a safetensors file (its {size:,} bytes cannot hold the header of "
                                  f"{header_length} bytes it announces); download or export it again.")
        try:
            header = json.loads(file.read(header_length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConversionError(f"{path}: the safetensors header is not JSON ({error}).") from None
    data_bytes = size - 8 - header_length
    problems = []
    for name, entry in header.items() if isinstance(header, dict) else ():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], [int(n) for n in entry["shape"]], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            problems.append(f"{name}: malformed entry {entry!r}")
            continue
        if dtype not in _SAFETENSORS_DTYPES:
            problems.append(f"{name}: unknown dtype {dtype!r}")
        elif min(shape, default=0) < 0 or end - begin != math.prod(shape) * _SAFETENSORS_DTYPES[dtype]:
            problems.append(f"{name}: shape {shape} of {dtype} takes {math.prod(shape) * _SAFETENSORS_DTYPES[dtype]:,} "
                            f"bytes, its offsets give {end - begin:,}")
        elif not 0 <= begin <= end <= data_bytes:
            problems.append(f"{name}: bytes {begin:,}-{end:,} lie outside the file's {data_bytes:,} data bytes "
                            "(a truncated download?)")
    if not isinstance(header, dict) or problems:
        raise ConversionError(f"{path}: a malformed safetensors header:\n  " + "\n  ".join(problems or ["not a table"])
                              + "\nDownload or export the file again.")
    return header


def read_hf_tensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """`model.safetensors` (no torch needed) or `pytorch_model.bin` (torch, tensors only: no pickled code runs)."""
    if path.suffix == ".safetensors":
        check_safetensors_header(path)
        return load_file(path)
    try:
        import torch  # only for .bin checkpoints
    except ImportError:
        raise ConversionError(f"{path}: reading a PyTorch .bin checkpoint needs torch (pip install torch), or save "
                              "the model as model.safetensors.") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError and others for files that are not tensors alone
        raise ConversionError(f"{path}: not a plain PyTorch state dict ({type(error).__name__}: {error}).") from None
    return {name: tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
            for name, tensor in state.items()}


def head_of_hf_config(hf_config: dict[str, Any], params: dict, source: str = "config.json") -> str:
    """The bertjax head of an HF checkpoint: from `architectures`, else from the parameters present."""
    architectures = hf_config.get("architectures") or []
    for architecture in architectures:
        if architecture in _HEAD_OF_ARCHITECTURE:
            head = _HEAD_OF_ARCHITECTURE[architecture]
            lacking = [part for part in HEADS[head].parts if part not in params]
            if lacking:
                raise ConversionError(f"{source}: architectures says {architecture}, but the weights lack "
                                      f"{lacking} (of the {head} head); choose the head to keep (encoder keeps "
                                      "the encoder alone).")
            return head
    if architectures:
        raise ConversionError(f"{source}: architectures {architectures} has none of {sorted(_HEAD_OF_ARCHITECTURE)}.")
    if "classifier" in params:
        raise ConversionError(f"{source}: a classifier without `architectures` is ambiguous (sequence or token "
                              "classification, or multiple choice); add \"architectures\": "
                              "[\"BertForSequenceClassification\"], [\"BertForTokenClassification\"] or "
                              "[\"BertForMultipleChoice\"].")
    return "question_answering" if "qa_outputs" in params else "pretraining" if "mlm_head" in params else "encoder"


def hf_labels(hf_config: dict[str, Any]) -> list[str] | None:
    """Label names in id order from config.json's `id2label`, or None when absent."""
    id2label = hf_config.get("id2label")
    if not id2label:
        return None
    return [id2label[key] for key in sorted(id2label, key=int)]


def hf_weights(folder: str | pathlib.Path) -> pathlib.Path | None:
    """An HF folder's weights: `model.safetensors`, else `pytorch_model.bin`; None when it has neither."""
    folder = pathlib.Path(folder)
    return next((folder / name for name in ("model.safetensors", "pytorch_model.bin") if (folder / name).is_file()),
                None)


def is_hf_folder(folder: str | pathlib.Path) -> bool:
    """Whether `folder` holds an HF BERT checkpoint: config.json and the weights (`hf_weights`)."""
    return (pathlib.Path(folder) / "config.json").is_file() and hf_weights(folder) is not None


def load_hf_bert(folder: str | pathlib.Path) -> tuple[BertConfig, dict, list[str]]:
    """An HF BERT folder (`config.json` + `model.safetensors` or `pytorch_model.bin`) -> (config, params,
    absent parts)."""
    config, params, absent, _ = load_hf_folder(folder)
    return config, params, absent


def load_hf_folder(folder: str | pathlib.Path) -> tuple[BertConfig, dict, list[str], dict[str, Any]]:
    """`load_hf_bert`, plus config.json's contents."""
    folder = pathlib.Path(folder)
    config_path = folder / "config.json"
    weights_path = hf_weights(folder)
    if not config_path.is_file() or weights_path is None:
        missing = config_path if not config_path.is_file() else folder / "model.safetensors"
        raise ConversionError(f"{missing} not found: an HF BERT folder needs config.json and model.safetensors "
                              "(or pytorch_model.bin).")
    try:
        hf_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"{config_path} is not valid JSON: {error}") from None
    if hf_config.get("model_type") == "modernbert":
        return _load_modernbert(hf_config, str(config_path), weights_path)
    config = config_from_hf(hf_config, str(config_path))
    labels = hf_labels(hf_config)
    tensors = read_hf_tensors(weights_path)
    # The classifier's size: the head's own where it fixes one (multiple choice, whose config.json carries
    # transformers' two default labels all the same), else the number of labels.
    fixed = [HEADS[_HEAD_OF_ARCHITECTURE[name]].fixed_outputs for name in hf_config.get("architectures") or []
             if name in _HEAD_OF_ARCHITECTURE and HEADS[_HEAD_OF_ARCHITECTURE[name]].fixed_outputs]
    num_labels = None
    if "classifier.weight" in _normalise_keys(tensors):
        num_labels = fixed[0] if fixed else len(labels) if labels else None
    params, absent = params_from_hf(tensors, config, str(weights_path), num_labels=num_labels)
    return config, params, absent, hf_config


def _load_modernbert(hf_config: dict[str, Any], config_source: str, weights_path: pathlib.Path):
    """`load_hf_folder` for an HF ModernBERT folder: the parameters of the head `architectures` names, the
    bertjax parts HF's model lacks filled with zeros (those are returned as absent)."""
    config = convert_modernbert.config_from_hf(hf_config, config_source)
    architectures = [name for name in hf_config.get("architectures") or ["ModernBertModel"]
                     if name in convert_modernbert.ARCHITECTURES]
    if not architectures:
        raise ConversionError(f"{config_source}: architectures {hf_config.get('architectures')} has none of "
                              f"{sorted(convert_modernbert.ARCHITECTURES)}.")
    head = convert_modernbert.ARCHITECTURES[architectures[0]][0]
    tensors = read_hf_tensors(weights_path)
    num_labels = {"multiple_choice": 1, "question_answering": 2}.get(head)
    if num_labels is None and "classifier.weight" in tensors:
        num_labels = int(tensors["classifier.weight"].shape[0])
    params, zero_filled = convert_modernbert.params_from_hf(
        tensors, config, head, str(weights_path), decoder_bias=hf_config.get("decoder_bias", True),
        num_labels=num_labels or 2)
    return config, params, zero_filled, hf_config


def _bert_cannot_hold(config: BertConfig) -> list[str]:
    """The switches of `config` that HF BERT has no place for."""
    bert = BertConfig()
    fields = ("pre_layer_norm", "causal", "position_embedding", "gated_mlp", "dense_bias", "norm_bias",
              "global_attention_every", "pooler")
    problems = [f"{name}={getattr(config, name)!r}" for name in fields if getattr(config, name) != getattr(bert, name)]
    if config.type_vocab_size == 0:
        problems.append("type_vocab_size=0")
    return problems


# --- bertjax -> HF -------------------------------------------------------------------------------------------

def hf_tensors(params: dict, config: BertConfig, head: str) -> dict[str, np.ndarray]:
    """bertjax parameters -> the tensors of HF's model for `head` (`HEADS`), with HF's names and layouts.

    Exactly the tensors HF's model has are written: the encoder, the pooler where HF's model has one, and
    the head's parts; parts of `params` that the head does not use (say, the MLM head when exporting the
    encoder alone) are left out. A part the head needs and `params` lacks fails, naming it.
    """
    if head not in HEADS:
        raise ConversionError(f"Unknown head {head!r}; choose one of {sorted(HEADS)}.")
    if convert_modernbert.is_modernbert(config):
        return convert_modernbert.hf_tensors(params, config, head)
    cannot_hold = _bert_cannot_hold(config)
    if cannot_hold:
        raise ConversionError(f"HF BERT (a post-LayerNorm bidirectional encoder with learned positions) cannot hold "
                              f"{', '.join(cannot_hold)}; a model with rotary positions exports as HF ModernBERT.")
    if head not in HEADS:
        raise ConversionError(f"Unknown head {head!r}; choose one of {sorted(HEADS)}.")
    parts, with_pooler = HEADS[head].parts, HEADS[head].with_pooler
    lacking = [part for part in ("bert", *parts) if part not in params]
    if lacking:
        raise ConversionError(f"Exporting as {HEADS[head].architecture} needs the parameters {lacking}, which this "
                              f"checkpoint lacks (it has {sorted(params)}).")
    bert = params["bert"]
    if config.scan_layers:
        bert = unstack_layers(bert, config.num_layers)
    if not with_pooler:
        bert = {name: value for name, value in bert.items() if name != "pooler"}
    tensors = {}
    for path, value in traverse_util.flatten_dict({"bert": bert, **{part: params[part] for part in parts}}).items():
        name, input_axes = hf_name(path)
        if head == "encoder":
            name = name.removeprefix("bert.")
        tensors[name] = _to_hf_tensor(np.asarray(value, np.float32), path[-1], input_axes)
    return tensors


def config_to_hf(config: BertConfig, head: str, labels: list[str] | None = None, num_labels: int | None = None,
                 pad_token_id: int = 0, problem_type: str | None = None,
                 special_ids: dict[str, int] | None = None) -> dict[str, Any]:
    """A bertjax `BertConfig` -> HF's config.json for `head`'s architecture (ModernBERT's for a rotary model,
    with the tokenizer's `special_ids`: pad, cls, sep). `problem_type` (HF's name: single_label_classification,
    regression, multi_label_classification) is written for sequence classification; unset, a one-output
    classifier is taken for a regressor."""
    if convert_modernbert.is_modernbert(config):
        return convert_modernbert.config_to_hf(config, head, labels, num_labels,
                                               {"pad": pad_token_id, **(special_ids or {})}, problem_type)
    hf_config = {
        "architectures": [HEADS[head].architecture], "model_type": "bert", "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "intermediate_size": config.intermediate_size,
        "hidden_act": _TO_HF_ACTIVATIONS[config.hidden_act], "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_position_embeddings, "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps, "initializer_range": config.initializer_range,
        "position_embedding_type": "absolute", "pad_token_id": pad_token_id, "classifier_dropout": None,
        "tie_word_embeddings": True, "dtype": "float32",
    }
    if head in ("sequence_classification", "token_classification"):
        labels = labels or [f"LABEL_{index}" for index in range(num_labels)]
        hf_config["id2label"] = {str(index): label for index, label in enumerate(labels)}
        hf_config["label2id"] = {label: index for index, label in enumerate(labels)}
        if head == "sequence_classification" and (problem_type or len(labels) == 1):
            hf_config["problem_type"] = problem_type or "regression"
    return hf_config
