"""Features from a BERT encoder: layer selections and combinations, sequence pooling, and feature files.

`combine_layers` is the pure core that feature-based taggers and `bertjax extract_features` share: from
the encoder's `hidden_states` (the embeddings output, then every layer's output) it picks or combines
layers as in the BERT paper's feature-based NER study (first, last, second-to-last, sum or concatenation of
the last four, mean of all, or an explicit list of layers).

`extract` runs an encoder over texts and writes feature files batch by batch: safetensors shards of a
bounded number of tokens, each with its examples' per-token features (text tokens only, no [CLS]/[SEP]), one
pooled feature per example, token ids and offsets, and `index.json` naming the shards. A text longer than
one row is cut into consecutive windows, so every token gets a feature; its pooled feature is the first
window's [CLS] ("cls") or the mean over all its windows' real positions ([CLS] and [SEP] included, "mean").

Shape letters: B batch, L length, D hidden, D' combined features, N layers, T tokens.
"""

import functools
import json
import pathlib
import re
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from bertjax import files
from bertjax.data import corpus

# Named combinations; `hidden_states[0]` is the embeddings output, `hidden_states[i]` layer i's output. The
# names mean what the feature-based tagger (`bertjax.heads.FeatureTagger`) means by them.
COMBINATIONS = ("embeddings", "first", "last", "second_to_last", "sum_last_four", "concat_last_four", "mean_all")
POOLINGS = ("cls", "mean")


def combine_layers(hidden_states: Sequence[jax.Array], how: str | Sequence[int]) -> jax.Array:
    """(N + 1) x (B, L, D) hidden states -> (B, L, D') features.

    `how` is one of `COMBINATIONS` or a list of layer indices into `hidden_states` (0 = embeddings, negative
    counts from the end), whose outputs are concatenated in that order. "first" is the first Transformer layer
    (the BERT paper's "first layer"), "embeddings" the embeddings output; "*_last_four" and "mean_all" take
    Transformer layers only. D' is D, except 4D for "concat_last_four" and len(how) x D for a list.
    """
    count = len(hidden_states)
    if isinstance(how, str):
        if how not in COMBINATIONS:
            raise ValueError(f"Layer combination {how!r} is not one of {COMBINATIONS} (or a list of layer indices).")
        needed = {"sum_last_four": 4, "concat_last_four": 4, "second_to_last": 2}.get(how, 1)
        if count - 1 < needed:
            raise ValueError(f"Layer combination {how!r} needs {needed} Transformer layers; this model has "
                             f"{count - 1}. Name the layers instead, e.g. -1,-2.")
        if how == "embeddings":
            return hidden_states[0]
        if how == "first":
            return hidden_states[1]
        if how == "last":
            return hidden_states[-1]
        if how == "second_to_last":
            return hidden_states[-2]
        if how == "sum_last_four":
            return sum(hidden_states[-4:][1:], hidden_states[-4])
        if how == "concat_last_four":
            return jnp.concatenate(hidden_states[-4:], axis=-1)  # B, L, 4D
        return jnp.mean(jnp.stack(hidden_states[1:]), axis=0)  # mean_all
    indices = list(how)
    if not indices:
        raise ValueError("An explicit layer list is empty; name at least one layer index.")
    bad = [index for index in indices if not -count <= int(index) < count]
    if bad:
        raise ValueError(f"Layer indices {bad} are out of range: the model has hidden states 0 (embeddings) to "
                         f"{count - 1} (its last layer).")
    return jnp.concatenate([hidden_states[int(index)] for index in indices], axis=-1)


def parse_layers(text: str) -> str | list[int]:
    """A command-line layer choice: a combination name, or comma-separated layer indices ("-1,-2,4")."""
    text = text.strip()
    if text in COMBINATIONS:
        return text
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"Layer choice {text!r}: expected one of {COMBINATIONS} or comma-separated layer "
                         "indices such as -1,-2.") from None


def pool(features: jax.Array, attention_mask: jax.Array, how: str) -> jax.Array:
    """(B, L, D') features -> (B, D'): the first ([CLS]) position, or the mean over real (mask > 0) tokens."""
    if how == "cls":
        return features[:, 0]
    if how == "mean":
        weights = (attention_mask > 0).astype(features.dtype)[:, :, None]  # B, L, 1
        return jnp.sum(features * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)
    raise ValueError(f"Pooling {how!r} is not one of {POOLINGS}.")


# --- reading texts ---------------------------------------------------------------------------------------------

def read_texts(spec: str) -> Iterator[str]:
    """Examples named on the command line, in order: `text:PATTERN[,PATTERN...]` (one example per line; blank
    lines are empty examples, so example i is line i) or `tfds:NAME:SPLIT:FIELD[:DATA_DIR]` (one per record)."""
    kind, _, rest = spec.partition(":")
    if kind == "text" and rest:
        return _lines(corpus.expand(spec, rest))
    if kind == "tfds":
        parts = re.split(r":(?![^\[]*\])", rest, maxsplit=3)
        if len(parts) in (3, 4):
            return _tfds_texts(*parts)
    raise ValueError(f"Input {spec!r} is not text:FILES or tfds:NAME:SPLIT:FIELD[:DATA_DIR].")


def _lines(paths: Sequence[str]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            try:
                for line in lines:
                    yield line.rstrip("\n")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}: not UTF-8 text ({error}); convert it to UTF-8.") from None


def _tfds_texts(name: str, split: str, field: str, data_dir: str | None = None) -> Iterator[str]:
    import tensorflow_datasets as tfds  # needs no TensorFlow for data_source

    source = tfds.data_source(name, split=split, data_dir=data_dir)
    for index in range(len(source)):
        record = source[index]
        if field not in record:
            raise KeyError(f"TFDS {name}[{split}] record {index} has no field {field!r}; fields: {sorted(record)}.")
        text = record[field]
        yield (text.decode("utf-8") if isinstance(text, bytes) else str(text)).replace("\n", " ")


# --- rows and batches ------------------------------------------------------------------------------------------

def windows(token_ids: Sequence[int], max_seq_length: int) -> list[Sequence[int]]:
    """A text's token ids -> consecutive windows of at most max_seq_length - 2 ([CLS] and [SEP] added later);
    an empty text is one empty window."""
    size = max_seq_length - 2
    if size < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text beside [CLS] and [SEP].")
    return [token_ids[start:start + size] for start in range(0, max(len(token_ids), 1), size)]


def batches(texts: Iterator[str], tokenizer, max_seq_length: int, batch_size: int,
            encode_chunk: int = 256) -> Iterator[tuple[dict[str, np.ndarray], list[tuple[int, int, int]]]]:
    """Rows of [CLS] window [SEP] + padding, batch by batch: (arrays (B, L), per row (example, window,
    windows of that example)). The last batch is padded with empty rows; their entry is (-1, 0, 0)."""
    rows, meta = [], []

    def batch():
        input_ids = np.full((batch_size, max_seq_length), tokenizer.pad_id, np.int32)
        attention_mask = np.zeros((batch_size, max_seq_length), np.int32)
        for row, ids in enumerate(rows):
            input_ids[row, :len(ids)] = ids
            attention_mask[row, :len(ids)] = 1
        entries = meta + [(-1, 0, 0)] * (batch_size - len(rows))
        return {"input_ids": input_ids, "attention_mask": attention_mask}, entries

    example = 0
    while True:
        chunk = [text for _, text in zip(range(encode_chunk), texts)]
        if not chunk:
            break
        for ids in tokenizer.encode_batch(chunk):
            parts = windows(ids, max_seq_length)
            for index, part in enumerate(parts):
                rows.append([tokenizer.cls_id, *part, tokenizer.sep_id])
                meta.append((example, index, len(parts)))
                if len(rows) == batch_size:
                    yield batch()
                    rows, meta = [], []
            example += 1
    if rows:
        yield batch()


@functools.partial(jax.jit, static_argnames=("model", "layers", "pooling"))
def compute_features(model, params, input_ids, attention_mask, *, layers, pooling):
    """(B, L) rows -> ((B, L, D') combined per-token features, (B, D') pooled features)."""
    encoder = model.apply({"params": params}, input_ids, attention_mask=attention_mask)
    combined = combine_layers(encoder.hidden_states, layers)
    return combined, pool(combined, attention_mask, pooling)


# --- feature files ---------------------------------------------------------------------------------------------

class FeatureWriter:
    """Writes examples into safetensors shards of about `tokens_per_shard` tokens; memory holds one shard.

    Each shard holds `token_features` (T, D'), `token_ids` (T,), `token_offsets` (n + 1,) (example i's tokens
    are rows offsets[i]:offsets[i + 1]), `sequence_features` (n, D') and `example_ids` (n,). `close` writes
    `index.json`. Files appear under their final names only once complete.
    """

    def __init__(self, directory: str | pathlib.Path, description: dict, tokens_per_shard: int = 262_144,
                 dtype: str = "float32"):
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.description, self.tokens_per_shard, self.dtype = description, tokens_per_shard, np.dtype(dtype)
        self.shards, self.examples, self.width = [], 0, None
        self._reset()

    def _reset(self):
        self._tokens, self._ids, self._offsets, self._sequences, self._example_ids = [], [], [0], [], []

    def add(self, example_id: int, token_ids: np.ndarray, token_features: np.ndarray,
            sequence_feature: np.ndarray) -> None:
        self.width = sequence_feature.shape[-1]
        self._tokens.append(token_features.astype(self.dtype))
        self._ids.append(np.asarray(token_ids, np.int32))
        self._offsets.append(self._offsets[-1] + len(token_ids))
        self._sequences.append(sequence_feature.astype(self.dtype))
        self._example_ids.append(example_id)
        if self._offsets[-1] >= self.tokens_per_shard:
            self._flush()

    def _flush(self):
        if not self._example_ids:
            return
        width = self._sequences[0].shape[-1]
        name = f"features-{len(self.shards):05d}.safetensors"
        tensors = {"token_features": np.concatenate(self._tokens).reshape(-1, width),
                   "token_ids": np.concatenate(self._ids), "token_offsets": np.asarray(self._offsets, np.int64),
                   "sequence_features": np.stack(self._sequences),
                   "example_ids": np.asarray(self._example_ids, np.int64)}
        with files.replacing(self.directory / name) as partial:
            save_file(tensors, partial)
        self.shards.append({"file": name, "first_example": self._example_ids[0], "examples": len(self._example_ids),
                            "tokens": int(self._offsets[-1])})
        self.examples += len(self._example_ids)
        self._reset()

    def close(self) -> dict:
        self._flush()
        index = {**self.description, "dim": self.width, "dtype": self.dtype.name, "examples": self.examples,
                 "shards": self.shards}
        files.write_json(self.directory / "index.json", index)
        return index


def extract(model, params, texts: Iterator[str], tokenizer, writer: FeatureWriter, *, layers: str | Sequence[int],
            pooling: str, max_seq_length: int, batch_size: int) -> int:
    """Run `model` (a `BertModel`) over `texts` and write each example's features to `writer`, batch by batch.
    Returns the number of examples. One compiled function serves every batch (fixed shapes)."""
    layers = layers if isinstance(layers, str) else tuple(int(index) for index in layers)
    pending, written = None, 0  # pending: the example whose windows are still arriving
    for arrays, entries in batches(texts, tokenizer, max_seq_length, batch_size):
        token_features, pooled = jax.device_get(compute_features(
            model, params, arrays["input_ids"], arrays["attention_mask"], layers=layers, pooling=pooling))
        for row, (example, window, count) in enumerate(entries):
            if example < 0:
                continue
            length = int(arrays["attention_mask"][row].sum())  # [CLS] + text + [SEP]
            if window == 0:
                pending = (example, [], [], np.zeros_like(pooled[row]), 0)
            _, ids, features, pooled_sum, real = pending
            ids.append(arrays["input_ids"][row, 1:length - 1])
            features.append(token_features[row, 1:length - 1])
            if pooling == "mean":  # a length-weighted mean of windows' means: the mean over all their positions
                pending = (example, ids, features, pooled_sum + pooled[row] * length, real + length)
            elif window == 0:
                pending = (example, ids, features, pooled[row], 1)
            if window == count - 1:
                _, ids, features, pooled_sum, real = pending
                writer.add(example, np.concatenate(ids), np.concatenate(features), pooled_sum / real)
                pending, written = None, written + 1
    return written


def read_features(directory: str | pathlib.Path) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(example id, token ids (T,), token features (T, D'), pooled feature (D')) for every example, in order,
    one shard in memory at a time."""
    directory = pathlib.Path(directory)
    index_path = directory / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: not a feature directory written to the end.")
    for shard in json.loads(index_path.read_text())["shards"]:
        tensors = load_file(directory / shard["file"])
        offsets = tensors["token_offsets"]
        for i, example in enumerate(tensors["example_ids"]):
            rows = slice(offsets[i], offsets[i + 1])
            yield (int(example), tensors["token_ids"][rows], tensors["token_features"][rows],
                   tensors["sequence_features"][i])
