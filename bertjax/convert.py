"""HuggingFace BERT <-> bertjax parameters.

The mapping is a table from bertjax module paths to HF module names; leaves map `kernel`/`embedding`/
`scale` to `weight`. Torch `Linear` weights are (out, in): a kernel is the transpose, reshaped to the
bertjax shape ((D, H, K) for query/key/value, (H, K, D) for the attention output).

Reading needs only `safetensors` (no torch). The expected tensors come from the bertjax model itself
(`jax.eval_shape`), so a file that does not fit the config fails with every missing, unexpected or
mis-shaped tensor named.
"""

import dataclasses
import json
import math
import pathlib
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file

from bertjax.heads import BertForPretraining
from bertjax.model import BertConfig, stack_layers

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
]
_LEAF_TABLE = {"kernel": "weight", "embedding": "weight", "scale": "weight", "bias": "bias",
               "output_bias": "bias"}

# Parts a checkpoint may lack as a whole (HF's BertModel has no cls.*; some are saved without pooler).
_OPTIONAL_PARTS = ("bert/pooler", "mlm_head", "sentence_head")

# HF keys that are not parameters, or are tied to one that is (checked equal, then skipped).
_BUFFER_KEYS = re.compile(r"bert\.embeddings\.(position_ids|token_type_ids)")
_TIED_KEYS = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
              "cls.predictions.decoder.bias": "cls.predictions.bias"}

_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


class ConversionError(ValueError):
    """A checkpoint that does not match what bertjax expects; the message lists every problem."""


def hf_name(path: tuple[str, ...]) -> tuple[str, int]:
    """A bertjax parameter path -> (HF tensor name, number of kernel input axes)."""
    module, leaf = "/".join(path[:-1]), path[-1]
    for pattern, replacement, input_axes in _MODULE_TABLE:
        if re.fullmatch(pattern, module):
            return f"{re.sub(pattern, replacement, module)}.{_LEAF_TABLE[leaf]}", input_axes
    raise KeyError(f"No HF name for bertjax parameter {'/'.join(path)}.")


def config_from_hf(hf_config: dict[str, Any], source: str = "config.json") -> BertConfig:
    """An HF `BertConfig` dict -> a bertjax `BertConfig`."""
    if hf_config.get("model_type", "bert") != "bert":
        raise ConversionError(f"{source}: model_type is {hf_config['model_type']!r}; only 'bert' converts.")
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
    """Give every key the `BertForPreTraining` layout: `bert.` prefix, `weight`/`bias` (not gamma/beta)."""
    normalised = {}
    for key, value in tensors.items():
        if not key.startswith(("bert.", "cls.")):
            key = "bert." + key  # a bare BertModel checkpoint
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
        normalised[key] = value
    return normalised


def _from_hf_tensor(value: np.ndarray, shape: tuple[int, ...], leaf: str) -> np.ndarray:
    if leaf == "kernel":  # torch (out, in) -> (in..., out...)
        return value.T.reshape(shape)
    return value.reshape(shape)


def _hf_shape(shape: tuple[int, ...], leaf: str, input_axes: int) -> tuple[int, ...]:
    if leaf == "kernel":
        return (int(np.prod(shape[input_axes:])), int(np.prod(shape[:input_axes])))
    if leaf == "bias":
        return (int(np.prod(shape)),)
    return tuple(shape)


def params_from_hf(tensors: dict[str, np.ndarray], config: BertConfig,
                   source: str = "checkpoint") -> tuple[dict, list[str]]:
    """HF tensors -> ({'bert': ..., 'mlm_head': ..., 'sentence_head': ...} as present, parts absent).

    The encoder (embeddings and layers) must be complete; the pooler and each pretraining head are
    taken when present and listed as absent otherwise.
    """
    if config.pre_layer_norm:
        raise ConversionError("HF BERT is post-LayerNorm; set pre_layer_norm=False to convert.")
    if config.scan_layers:  # convert unrolled, then stack the layers
        params, absent = params_from_hf(tensors, dataclasses.replace(config, scan_layers=False), source)
        return {**params, "bert": stack_layers(params["bert"], config.num_layers)}, absent
    tensors = _normalise_keys(tensors)
    abstract = jax.eval_shape(
        lambda: nn.meta.unbox(BertForPretraining(config).init(
            jax.random.key(0), jnp.zeros((1, 1), jnp.int32), masked_positions=jnp.zeros((1, 1), jnp.int32))))
    expected = traverse_util.flatten_dict(abstract["params"])

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
        params[path] = _from_hf_tensor(value, struct.shape, path[-1]).astype(config.param_dtype)

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


def load_hf_bert(folder: str | pathlib.Path) -> tuple[BertConfig, dict, list[str]]:
    """An HF BERT folder (`config.json` + `model.safetensors`) -> (config, params, absent parts)."""
    folder = pathlib.Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ConversionError(f"{path} not found: an HF BERT folder needs config.json and model.safetensors "
                                  "(save with `save_pretrained(..., safe_serialization=True)`).")
    try:
        hf_config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ConversionError(f"{config_path} is not valid JSON: {error}") from None
    config = config_from_hf(hf_config, str(config_path))
    check_safetensors_header(weights_path)
    params, absent = params_from_hf(load_file(weights_path), config, str(weights_path))
    return config, params, absent
