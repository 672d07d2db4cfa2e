"""HuggingFace ModernBERT <-> bertjax parameters, both ways, for the masked LM, the bare encoder and the
fine-tuning heads transformers has for it (`ModernBertFor...`).

A ModernBERT is a bertjax `BertConfig` with the modern switches on (`modern_switches`): rotary positions, no
segments, pre-LayerNorm with an embedding and a final LayerNorm and no attention norm in the first layer, a GLU
feed-forward layer, global attention every k-th layer and a local window elsewhere. HF fuses query, key and
value into one `Wqkv` (rows: the query's heads, then the key's, then the value's) and the GLU's input and gate
into one `Wi` (the activated half first); bertjax keeps them apart, shaped for head and mlp sharding. The
task models' prediction head (dense, activation, LayerNorm) is bertjax's `bert/head` (`pooler=
"prediction_head"`); the masked LM's own head is `mlm_head`, its decoder tied to the word embeddings.
"""

import dataclasses
from typing import Any

import numpy as np
from flax import traverse_util

from bertjax.model import BertConfig, stack_layers, unstack_layers

# HF's task models -> (bertjax head, the parameter groups beside `bert` it has).
ARCHITECTURES = {
    "ModernBertForMaskedLM": ("pretraining", ("mlm_head",)),
    "ModernBertModel": ("encoder", ()),
    "ModernBertForSequenceClassification": ("sequence_classification", ("classifier",)),
    "ModernBertForTokenClassification": ("token_classification", ("classifier",)),
    "ModernBertForQuestionAnswering": ("question_answering", ("qa_outputs",)),
    "ModernBertForMultipleChoice": ("multiple_choice", ("classifier",)),
}
ARCHITECTURE_OF_HEAD = {head: architecture for architecture, (head, _) in ARCHITECTURES.items()}

_ACTIVATIONS = {"gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "silu": "silu",
                "relu": "relu"}
_TO_HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "silu": "silu", "relu": "relu"}

# What a ModernBERT is, as bertjax switches (besides sizes, biases, bases and the window).
_MODERN = dict(position_embedding="rotary", type_vocab_size=0, pre_layer_norm=True, first_layer_attention_norm=False,
               gated_mlp=True, causal=False)


class ModernBertConversionError(ValueError):
    """A config or checkpoint that does not convert between bertjax and HF ModernBERT; the message lists why."""


def is_modernbert(config: BertConfig) -> bool:
    """Whether `config` has ModernBERT's shape (rotary positions are the mark; `check_modernbert` the rest)."""
    return config.position_embedding == "rotary"


def check_modernbert(config: BertConfig, head: str) -> None:
    """Refuse, naming every field, a config HF's ModernBERT cannot hold."""
    problems = [f"{name}={getattr(config, name)!r} (ModernBERT: {value!r})" for name, value in _MODERN.items()
                if getattr(config, name) != value]
    if config.hidden_act not in _TO_HF_ACTIVATIONS:
        problems.append(f"hidden_act={config.hidden_act!r} (one of {sorted(_TO_HF_ACTIVATIONS)})")
    if head not in ("pretraining", "encoder") and config.pooler != "prediction_head":
        problems.append(f"pooler={config.pooler!r} (ModernBERT's task models: 'prediction_head')")
    if problems:
        raise ModernBertConversionError("HF ModernBERT cannot hold this model: " + "; ".join(problems) + ".")


def config_from_hf(hf_config: dict[str, Any], source: str = "config.json") -> BertConfig:
    """An HF `ModernBertConfig` dict -> a bertjax `BertConfig`."""
    get = hf_config.get
    problems = []
    activation = get("hidden_activation", "gelu")
    if activation not in _ACTIVATIONS:
        problems.append(f"hidden_activation={activation!r} is not one of {sorted(_ACTIVATIONS)}")
    if get("classifier_activation", activation) != activation:
        problems.append(f"classifier_activation={get('classifier_activation')!r} differs from hidden_activation="
                        f"{activation!r}; bertjax's heads use the encoder's activation")
    biases = {key: get(key, False) for key in ("attention_bias", "mlp_bias", "classifier_bias")}
    if len(set(biases.values())) > 1:
        problems.append(f"{biases} differ; bertjax has one dense_bias for all of them")
    num_layers = get("num_hidden_layers", 22)
    every = get("global_attn_every_n_layers", 3)
    layer_types = get("layer_types") or ["full_attention" if i % every == 0 else "sliding_attention"
                                         for i in range(num_layers)]
    every = next((k for k in range(1, num_layers + 1) if layer_types == [
        "full_attention" if i % k == 0 else "sliding_attention" for i in range(num_layers)]), None)
    if every is None:
        problems.append(f"layer_types {layer_types} is not global attention every k-th layer from the first")
    rope = get("rope_parameters") or {}
    thetas = {kind: (rope.get(kind) or {}).get("rope_theta", get(legacy, default))
              for kind, legacy, default in (("full_attention", "global_rope_theta", 160000.0),
                                            ("sliding_attention", "local_rope_theta", 10000.0))}
    for kind in ("full_attention", "sliding_attention"):
        if (rope.get(kind) or {}).get("rope_type", "default") != "default":
            problems.append(f"rope_parameters.{kind}.rope_type={rope[kind]['rope_type']!r}: only default RoPE converts")
    if get("classifier_pooling", "cls") not in ("cls", "mean"):
        problems.append(f"classifier_pooling={get('classifier_pooling')!r} is not cls or mean")
    if problems:
        raise ModernBertConversionError(f"{source}: " + "; ".join(problems) + ".")
    try:
        return BertConfig(
            vocab_size=hf_config["vocab_size"], hidden_size=hf_config["hidden_size"], num_layers=num_layers,
            num_heads=hf_config["num_attention_heads"], intermediate_size=hf_config["intermediate_size"],
            hidden_act=_ACTIVATIONS[activation], hidden_dropout=get("mlp_dropout", 0.0),
            attention_dropout=get("attention_dropout", 0.0), max_position_embeddings=get("max_position_embeddings", 8192),
            layer_norm_eps=get("norm_eps", 1e-5), initializer_range=get("initializer_range", 0.02),
            rope_theta=thetas["full_attention"], local_rope_theta=thetas["sliding_attention"],
            dense_bias=biases["attention_bias"], norm_bias=get("norm_bias", False), global_attention_every=every,
            local_attention_window=get("local_attention", 128), pooler="prediction_head",
            pooling=get("classifier_pooling", "cls"), **_MODERN)
    except KeyError as missing:
        raise ModernBertConversionError(f"{source}: required key {missing} is missing.") from None


def config_to_hf(config: BertConfig, head: str, labels: list[str] | None = None, num_labels: int | None = None,
                 special_ids: dict[str, int] | None = None, problem_type: str | None = None) -> dict[str, Any]:
    """A bertjax `BertConfig` -> HF's ModernBERT config.json for `head`'s architecture. `special_ids` gives
    pad/cls/sep (and bos/eos) token ids of the tokenizer; bos and eos default to cls and sep, as in ModernBERT's
    own configs (left unset, transformers' defaults would name ids of ModernBERT's 50,368-token vocabulary)."""
    check_modernbert(config, head)
    special_ids = special_ids or {}
    aliases = {"bos": "cls", "eos": "sep"}
    special_ids = {**{alias: special_ids[name] for alias, name in aliases.items() if name in special_ids}, **special_ids}
    hf_config = {
        "architectures": [ARCHITECTURE_OF_HEAD[head]], "model_type": "modernbert", "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "intermediate_size": config.intermediate_size,
        "hidden_activation": _TO_HF_ACTIVATIONS[config.hidden_act],
        "classifier_activation": _TO_HF_ACTIVATIONS[config.hidden_act],
        "max_position_embeddings": config.max_position_embeddings, "norm_eps": config.layer_norm_eps,
        "norm_bias": config.norm_bias, "attention_bias": config.dense_bias, "mlp_bias": config.dense_bias,
        "classifier_bias": config.dense_bias, "decoder_bias": True, "initializer_range": config.initializer_range,
        "layer_types": ["full_attention" if config.is_global_layer(i) else "sliding_attention"
                        for i in range(config.num_layers)],
        "local_attention": config.local_attention_window,
        "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": config.rope_theta},
                            "sliding_attention": {"rope_type": "default", "rope_theta": config.local_rope_theta}},
        "embedding_dropout": config.hidden_dropout, "mlp_dropout": config.hidden_dropout,
        "attention_dropout": config.attention_dropout, "classifier_dropout": config.hidden_dropout,
        "classifier_pooling": config.pooling, "tie_word_embeddings": True, "dtype": "float32",
        **{f"{name}_token_id": special_ids[name] for name in ("pad", "cls", "sep", "bos", "eos") if name in special_ids},
    }
    if head in ("sequence_classification", "token_classification"):
        labels = labels or [f"LABEL_{index}" for index in range(num_labels)]
        hf_config["id2label"] = {str(index): label for index, label in enumerate(labels)}
        hf_config["label2id"] = {label: index for index, label in enumerate(labels)}
        if head == "sequence_classification" and (problem_type or len(labels) == 1):
            hf_config["problem_type"] = problem_type or "regression"
    return hf_config


def _linear(parameters: dict, bias: bool) -> dict[str, np.ndarray]:
    """A bertjax dense layer (kernel (in, out)) -> torch Linear tensors (weight (out, in))."""
    kernel = np.asarray(parameters["kernel"], np.float32)
    tensors = {"weight": np.ascontiguousarray(kernel.reshape(kernel.shape[0], -1).T)}
    if bias:
        tensors["bias"] = np.asarray(parameters["bias"], np.float32).reshape(-1)
    return tensors


def _norm(parameters: dict, bias: bool) -> dict[str, np.ndarray]:
    tensors = {"weight": np.asarray(parameters["scale"], np.float32)}
    if bias:
        tensors["bias"] = np.asarray(parameters["bias"], np.float32)
    return tensors


def _prefixed(prefix: str, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}.{name}": value for name, value in tensors.items()}


def hf_tensors(params: dict, config: BertConfig, head: str) -> dict[str, np.ndarray]:
    """bertjax parameters -> the tensors of HF's ModernBERT model for `head`, with HF's names and layouts
    (exactly the model's tensors; the decoder matrix is tied to the word embeddings and not written)."""
    check_modernbert(config, head)
    _, parts = ARCHITECTURES[ARCHITECTURE_OF_HEAD[head]]
    lacking = [part for part in ("bert", *parts) if part not in params]
    if head not in ("pretraining", "encoder") and "head" not in params.get("bert", {}):
        lacking.append("bert/head")
    if lacking:
        raise ModernBertConversionError(f"Exporting as {ARCHITECTURE_OF_HEAD[head]} needs the parameters {lacking}, "
                                        f"which this checkpoint lacks.")
    bert = params["bert"]
    if config.scan_layers:
        bert = unstack_layers(bert, config.num_layers, config.first_layer_attention_norm)
    bias, norm_bias = config.dense_bias, config.norm_bias
    prefix = "" if head == "encoder" else "model."
    tensors = {f"{prefix}embeddings.tok_embeddings.weight": np.asarray(bert["embeddings"]["word_embeddings"]["embedding"],
                                                                       np.float32)}
    tensors |= _prefixed(f"{prefix}embeddings.norm", _norm(bert["embeddings"]["layer_norm"], norm_bias))
    for index in range(config.num_layers):
        layer, name = bert["encoder"][f"layer_{index}"], f"{prefix}layers.{index}"
        attention = layer["attention"]
        qkv = [_linear(attention[part], bias) for part in ("query", "key", "value")]
        tensors[f"{name}.attn.Wqkv.weight"] = np.concatenate([part["weight"] for part in qkv])
        if bias:
            tensors[f"{name}.attn.Wqkv.bias"] = np.concatenate([part["bias"] for part in qkv])
        output = attention["output"]
        tensors |= _prefixed(f"{name}.attn.Wo", _linear(
            {**output, "kernel": np.asarray(output["kernel"]).reshape(-1, config.hidden_size)}, bias))
        if "attention_layer_norm" in layer:
            tensors |= _prefixed(f"{name}.attn_norm", _norm(layer["attention_layer_norm"], norm_bias))
        tensors |= _prefixed(f"{name}.mlp_norm", _norm(layer["output_layer_norm"], norm_bias))
        tensors |= _prefixed(f"{name}.mlp.Wi", _linear(layer["intermediate"], bias))
        tensors |= _prefixed(f"{name}.mlp.Wo", _linear(layer["output"], bias))
    tensors |= _prefixed(f"{prefix}final_norm", _norm(bert["final_layer_norm"], norm_bias))
    if head == "pretraining":
        tensors |= _prefixed("head.dense", _linear(params["mlm_head"]["transform"], bias))
        tensors |= _prefixed("head.norm", _norm(params["mlm_head"]["transform_layer_norm"], norm_bias))
        tensors["decoder.bias"] = np.asarray(params["mlm_head"]["output_bias"], np.float32)
    elif head != "encoder":
        tensors |= _prefixed("head.dense", _linear(bert["head"], bias))
        tensors |= _prefixed("head.norm", _norm(bert["head_layer_norm"], norm_bias))
        tensors |= _prefixed("classifier", _linear(params[parts[0]], True))
    return {name: np.ascontiguousarray(value) for name, value in tensors.items()}


def params_from_hf(tensors: dict[str, np.ndarray], config: BertConfig, head: str, source: str = "checkpoint",
                   decoder_bias: bool = True, num_labels: int = 2) -> tuple[dict, list[str]]:
    """HF ModernBERT tensors of `head`'s model -> (bertjax parameters of `head`'s bertjax model, the parameter
    groups HF's model lacks and bertjax's has, filled with zeros: the pretraining model's sentence head, the
    unused prediction head). Every missing, unexpected or mis-shaped tensor is named; a decoder matrix must
    equal the word embeddings; `decoder_bias=False` (config.json) gives a zero output bias."""
    check_modernbert(config, head)
    unrolled = dataclasses.replace(config, scan_layers=False)
    # The expected tensors are those this module writes for the same shapes: one table for both directions.
    zeros = _zero_params(unrolled, head, num_labels)
    expected = hf_tensors(zeros, unrolled, head)
    if head != "encoder" and not any(name.startswith("model.") for name in tensors):
        tensors = {f"model.{name}": value for name, value in tensors.items()}  # a bare ModernBertModel's names
    if head == "encoder" and all(name.startswith("model.") or not name.startswith(("embeddings.", "layers.",
                                                                                    "final_norm."))
                                 for name in tensors):
        tensors = {name.removeprefix("model."): value for name, value in tensors.items()}
    problems = []
    decoder = tensors.get("decoder.weight")
    embeddings = tensors.get(f"{'' if head == 'encoder' else 'model.'}embeddings.tok_embeddings.weight")
    if decoder is not None and embeddings is not None and not np.array_equal(decoder, embeddings):
        problems.append("decoder.weight differs from the word embeddings: bertjax ties them; untied weights do not "
                        "convert")
    if head == "pretraining" and not decoder_bias:
        tensors = {**tensors, "decoder.bias": np.zeros(config.vocab_size, np.float32)}  # decoder_bias=False
    for name, want in expected.items():
        if name not in tensors:
            problems.append(f"missing tensor: {name}")
        elif tuple(tensors[name].shape) != want.shape:
            problems.append(f"{name}: expected shape {want.shape}, found {tuple(tensors[name].shape)}")
    problems += [f"unexpected tensor: {name}" for name in sorted(set(tensors) - set(expected) - {"decoder.weight"})]
    if problems:
        raise ModernBertConversionError(
            f"{source} does not fit a ModernBERT with {config.num_layers} layers, hidden size {config.hidden_size} "
            f"and vocab {config.vocab_size}:\n  " + "\n  ".join(problems)
            + "\nCheck that config.json belongs to these weights.")
    params = _params_from_tensors({name: np.asarray(tensors[name], np.float32) for name in expected}, unrolled, head)
    converted, zero_filled = traverse_util.flatten_dict(params), []
    for path, value in traverse_util.flatten_dict(zeros).items():
        if path not in converted:
            converted[path] = value
            group = "/".join(path[:2] if path[0] == "bert" else path[:1])
            zero_filled += [group] if group not in zero_filled else []
    params = traverse_util.unflatten_dict(converted)
    if config.scan_layers:
        params["bert"] = stack_layers(params["bert"], config.num_layers)
    return params, zero_filled


def _zero_params(config: BertConfig, head: str, num_labels: int = 2) -> dict:
    """Zero parameters of bertjax's shapes for `head` (the shape source of `params_from_hf`)."""
    from bertjax import convert  # the model of each head lives there

    abstract = convert.abstract_params(config, head, num_labels)
    return traverse_util.unflatten_dict({path: np.zeros(leaf.shape, np.float32)
                                         for path, leaf in traverse_util.flatten_dict(abstract).items()})


def _params_from_tensors(tensors: dict[str, np.ndarray], config: BertConfig, head: str) -> dict:
    """The inverse of `hf_tensors` for an unrolled config, from tensors already checked complete."""
    bias, norm_bias = config.dense_bias, config.norm_bias
    prefix = "" if head == "encoder" else "model."
    heads, head_dim = config.num_heads, config.head_dim

    def linear(name, with_bias=bias):
        parameters = {"kernel": tensors[f"{name}.weight"].T}
        if with_bias:
            parameters["bias"] = tensors[f"{name}.bias"]
        return parameters

    def norm(name):
        parameters = {"scale": tensors[f"{name}.weight"]}
        if norm_bias:
            parameters["bias"] = tensors[f"{name}.bias"]
        return parameters

    bert = {"embeddings": {"word_embeddings": {"embedding": tensors[f"{prefix}embeddings.tok_embeddings.weight"]},
                           "layer_norm": norm(f"{prefix}embeddings.norm")},
            "encoder": {}, "final_layer_norm": norm(f"{prefix}final_norm")}
    size = config.hidden_size
    for index in range(config.num_layers):
        name = f"{prefix}layers.{index}"
        weight = tensors[f"{name}.attn.Wqkv.weight"]  # 3 D, D
        attention = {}
        for slot, part in enumerate(("query", "key", "value")):
            attention[part] = {"kernel": weight[slot * size:(slot + 1) * size].T.reshape(size, heads, head_dim)}
            if bias:
                attention[part]["bias"] = tensors[f"{name}.attn.Wqkv.bias"][slot * size:(slot + 1) * size].reshape(
                    heads, head_dim)
        attention["output"] = {"kernel": tensors[f"{name}.attn.Wo.weight"].T.reshape(heads, head_dim, size)}
        if bias:
            attention["output"]["bias"] = tensors[f"{name}.attn.Wo.bias"]
        layer = {"attention": attention, "output_layer_norm": norm(f"{name}.mlp_norm"),
                 "intermediate": linear(f"{name}.mlp.Wi"), "output": linear(f"{name}.mlp.Wo")}
        if f"{name}.attn_norm.weight" in tensors:
            layer["attention_layer_norm"] = norm(f"{name}.attn_norm")
        bert["encoder"][f"layer_{index}"] = layer
    params = {"bert": bert}
    if head == "pretraining":
        params["mlm_head"] = {"transform": linear("head.dense"), "transform_layer_norm": norm("head.norm"),
                              "output_bias": tensors["decoder.bias"]}
    elif head != "encoder":
        bert["head"], bert["head_layer_norm"] = linear("head.dense"), norm("head.norm")
        part = ARCHITECTURES[ARCHITECTURE_OF_HEAD[head]][1][0]
        params[part] = linear("classifier", with_bias=True)
    return params
