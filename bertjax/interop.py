"""Moving models between bertjax run directories and the files other tools read.

- `import_hf`: an HF BERT folder -> a bertjax run directory (config.json, a parameters-only checkpoint, the
  tokenizer) that fine-tuning, feature extraction and continued pretraining take as `init_checkpoint`.
- `export_hf`: a run's checkpoint -> an HF folder (`config.json`, `model.safetensors`, tokenizer files) that
  `transformers` loads as the architecture of the run's head.
- `export_params`: a run's checkpoint -> `params.safetensors` with bertjax's own names and
  `bertjax_config.json`, which code that imports only `bertjax.model` (and safetensors) can load.

Every direction checks names and shapes both ways and fails with the list of offending tensors.
"""

import dataclasses
import pathlib

import numpy as np
from flax import traverse_util
from safetensors.numpy import save_file

from bertjax import convert, files, hub, runs
from bertjax.data import tokenizer as tokenizers
from bertjax.model import BertConfig


def _refuse_existing(output: pathlib.Path, overwrite: bool) -> None:
    """Every folder is written beside `output` and renamed into place at the end (`files.replacing_directory`),
    so an interrupted run never leaves a half-written folder under the final name."""
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; choose another output or pass --overwrite.")


# Written beside a converted run's config.json, so that `--config DIR/config.py` gives every tool its model.
_CONFIG_PY = '''"""The config of a model converted from HF: bertjax/configs/common.py's keys, with the model and tokenizer settings
of config.json beside this file. Use it as --config DIR/config.py[:key=value,...]."""

import json
import pathlib

from bertjax.configs import common


def get_config(arg=None):
    config = common.get_config()
    saved = json.loads((pathlib.Path(__file__).parent / "config.json").read_text())
    config.model.update(saved["model"])
    config.data.tokenizer = saved["data"]["tokenizer"]
    config.data.max_seq_length = saved["data"]["max_seq_length"]
    config.train.init_checkpoint = str(pathlib.Path(__file__).parent)
    return common.apply_arg(config, arg)
'''


def _run_config(model_config: BertConfig, tokenizer_path: pathlib.Path) -> dict:
    """A resolved run config (bertjax/configs/common.py's keys) for a converted model."""
    from bertjax.configs import common

    config = common.get_config()
    config.model.variant = None
    for field in dataclasses.fields(BertConfig):
        config.model[field.name] = getattr(model_config, field.name)
    config.data.tokenizer = str(tokenizer_path)
    config.data.max_seq_length = min(config.data.max_seq_length, model_config.max_position_embeddings)
    return config.to_dict()


def import_hf(hf_dir: str | pathlib.Path, output: str | pathlib.Path, head: str | None = None,
              overwrite: bool = False) -> dict:
    """An HF BERT folder (or the Hub id of one in the local HF cache, `hub.resolve_hf`; the record names both)
    -> a bertjax run directory at `output`. Returns its record.

    Every head the source has is kept. `head` (one of `convert.HEADS`) keeps only that head's parts; without
    it the head comes from config.json's `architectures`, and a tensor the head would leave unused fails.
    HF's span and token models have no pooler, which bertjax's encoder always has: it is stored as zeros
    (those heads never read it) and named in the record's `zero_filled`.
    """
    source_name = str(hf_dir)
    hf_dir, output = hub.resolve_hf(hf_dir), pathlib.Path(output).absolute()
    model_config, params, absent, hf_config = convert.load_hf_folder(hf_dir)
    chosen = head or convert.head_of_hf_config(hf_config, params, str(hf_dir / "config.json"))
    if chosen not in convert.HEADS:
        raise ValueError(f"Unknown head {chosen!r}; choose one of {sorted(convert.HEADS)}.")
    parts = convert.HEADS[chosen].parts
    lacking = [part for part in parts if part not in params]
    if lacking:
        raise convert.ConversionError(f"{hf_dir}: head {chosen!r} needs {lacking}, which the checkpoint lacks; "
                                      "choose another --head (encoder keeps the encoder alone).")
    unused = sorted(set(params) - {"bert", *parts})
    if unused and head is None:
        raise convert.ConversionError(f"{hf_dir}: the weights hold {unused} beside the {chosen} head that "
                                      "config.json names; pass --head to say which to keep.")
    params = {name: params[name] for name in ("bert", *parts)}
    zero_filled = [part for part in absent if hf_config.get("model_type") == "modernbert"
                   and part.split("/")[0] in ("bert", *parts)]  # ModernBERT: the parts HF's model lacks
    if model_config.pooler == "tanh" and "pooler" not in params["bert"]:
        if convert.HEADS[chosen].with_pooler:
            raise convert.ConversionError(f"{hf_dir}: the checkpoint has no pooler, which the {chosen} head "
                                          "uses.")
        size = model_config.hidden_size
        params["bert"]["pooler"] = {"kernel": np.zeros((size, size), np.float32), "bias": np.zeros(size, np.float32)}
        zero_filled.append("bert/pooler")
    labelled = "classifier" in parts and not convert.HEADS[chosen].fixed_outputs  # not multiple choice's scores
    labels = convert.hf_labels(hf_config) if labelled else None
    num_labels = int(params["classifier"]["kernel"].shape[-1]) if labelled else None

    _refuse_existing(output, overwrite)
    with files.replacing_directory(output) as partial:
        tokenizer = tokenizers.wordpiece_from_hf_folder(hf_dir, partial / "tokenizer.json")
        if tokenizer.vocab_size > model_config.vocab_size:
            raise convert.ConversionError(f"{hf_dir}: the tokenizer has {tokenizer.vocab_size} pieces, the "
                                          f"model's embeddings {model_config.vocab_size}.")
        record = {"step": 0, "task": "import_hf", "tokenizer_fingerprint": tokenizer.fingerprint, "head": chosen,
                  "source": str(hf_dir.absolute()), "zero_filled": zero_filled}
        if hf_dir != pathlib.Path(source_name):  # a Hub id, resolved in the local cache: keep the name too
            record["hub_id"] = source_name
        if num_labels:
            record |= {"num_labels": num_labels, "labels": labels or [f"LABEL_{i}" for i in range(num_labels)]}
        runs.save_params(partial, params, _run_config(model_config, output / "tokenizer.json"), record)
        (partial / "config.py").write_text(_CONFIG_PY)
    return record


def _flat_tensors(params: dict) -> dict[str, np.ndarray]:
    return {"/".join(path): np.ascontiguousarray(np.asarray(value))
            for path, value in traverse_util.flatten_dict(params).items()}


def export_hf(run_path: str | pathlib.Path, output: str | pathlib.Path, head: str | None = None,
              tokenizer_path: str | pathlib.Path | None = None, overwrite: bool = False) -> dict:
    """A run's latest checkpoint -> an HF folder for the run's head (or `head`: "encoder" writes `BertModel`).

    The tokenizer is the run's `data.tokenizer`, or `tokenizer_path`; its fingerprint must match the record's.
    Returns a summary: the architecture, the tensor count, the files written.
    """
    output = pathlib.Path(output).absolute()
    run, model_config, params = runs.load_run(run_path)
    chosen = head or run.head
    tensors = convert.hf_tensors(params, model_config, chosen)
    tokenizer = run_tokenizer(run, tokenizer_path)
    hf_config = convert.config_to_hf(model_config, chosen, run.record.get("labels"), run.record.get("num_labels"),
                                     pad_token_id=tokenizer.pad_id, problem_type=run.record.get("problem_type"),
                                     special_ids={"cls": tokenizer.cls_id, "sep": tokenizer.sep_id})
    _refuse_existing(output, overwrite)
    with files.replacing_directory(output) as partial:
        files.write_json(partial / "config.json", hf_config)
        save_file(tensors, partial / "model.safetensors", metadata={"format": "pt"})
        written = ["config.json", "model.safetensors", *tokenizers.save_hf_tokenizer(
            tokenizer, partial, max_length=model_config.max_position_embeddings,
            segments=model_config.type_vocab_size > 0)]
    return {"architecture": hf_config["architectures"][0], "tensors": len(tensors), "files": written,
            "step": run.record.get("step")}


def run_tokenizer(run: runs.SavedRun, tokenizer_path=None) -> tokenizers.Tokenizer:
    """The tokenizer a run was trained with (its config's `data.tokenizer`, or `tokenizer_path` where that
    has moved), checked against the fingerprint its checkpoint recorded."""
    data = run.config.get("data", {})
    path = tokenizer_path or data.get("tokenizer")
    if not path:
        raise ValueError(f"{run.step_dir}: the run's config names no data.tokenizer; pass --tokenizer.")
    tokenizer = tokenizers.load_tokenizer(path, data.get("lowercase"))  # read as the run read it
    expected = run.record.get("tokenizer_fingerprint")
    if expected and tokenizer.fingerprint != expected:
        raise ValueError(f"Tokenizer {path} is not the one {run.step_dir} was trained with (fingerprints differ); "
                         "pass that run's tokenizer with --tokenizer.")
    return tokenizer


def export_params(run_path: str | pathlib.Path, output: str | pathlib.Path, overwrite: bool = False) -> dict:
    """A run's latest checkpoint -> `params.safetensors` (bertjax names, "/"-joined) and `bertjax_config.json`
    (the `BertConfig` fields, the head, its labels). Loading needs `bertjax.model` and safetensors only:

        config = BertConfig(**json.load(open(folder / "bertjax_config.json"))["model"])
        params = flax.traverse_util.unflatten_dict(safetensors.numpy.load_file(folder / "params.safetensors"),
                                                   sep="/")
    """
    output = pathlib.Path(output).absolute()
    run, model_config, params = runs.load_run(run_path)
    description = {"model": dataclasses.asdict(model_config), "head": run.head,
                   **{key: run.record[key] for key in ("num_labels", "labels", "step", "tokenizer_fingerprint")
                      if key in run.record}}
    _refuse_existing(output, overwrite)
    tensors = _flat_tensors(params)
    with files.replacing_directory(output) as partial:
        save_file(tensors, partial / "params.safetensors")
        files.write_json(partial / "bertjax_config.json", description)
    return {"tensors": len(tensors), "files": ["params.safetensors", "bertjax_config.json"], "head": run.head}
