"""Extract BERT features: run a checkpoint's encoder over texts and write per-token and per-sequence features.

    bertjax extract_features --checkpoint runs/demo/pretrain --input text:sentences.txt \\
        --output_dir features/ --layers sum_last_four --pooling mean

--input is text:FILES (one example per line) or tfds:NAME:SPLIT:FIELD[:DATA_DIR]. --layers is embeddings,
first (the first Transformer layer), last, second_to_last, sum_last_four, concat_last_four, mean_all, or layer
indices (0 = embeddings, -1 = last; "-1,-2,-3,-4" concatenates those). The output holds safetensors shards
(per-token features of the text tokens, pooled features, token ids and offsets) and index.json;
bertjax.features.read_features reads them.
Memory holds one shard (--tokens_per_shard) and one batch, whatever the length of the input.
"""

import pathlib
import time

from absl import flags

from bertjax import cli

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A run directory (any head; its encoder is used).")
_INPUT = flags.DEFINE_string("input", None, "text:FILES or tfds:NAME:SPLIT:FIELD[:DATA_DIR].")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The directory to write shards and index.json into.")
_LAYERS = flags.DEFINE_string("layers", "last", "A combination (the list above) or layer indices such as -1,-2.")
_POOLING = flags.DEFINE_string("pooling", "cls", "The sequence feature: cls (the [CLS] position) or mean (the mean "
                               "over real tokens).")
_MAX_SEQ_LENGTH = flags.DEFINE_integer("max_seq_length", None, "Row length (default: the run's data.max_seq_length).",
                                       lower_bound=3)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Rows per forward pass.", lower_bound=1)
_TOKENS_PER_SHARD = flags.DEFINE_integer("tokens_per_shard", 262_144, "Tokens per output shard.", lower_bound=1)
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "float16"], "The stored features' dtype.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "The run's tokenizer, where its config.json path has moved.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output directory.")
flags.mark_flags_as_required(["checkpoint", "input", "output_dir"])


def main(argv):
    del argv
    from bertjax import features, files, interop, runs
    from bertjax.model import BertModel

    layers = features.parse_layers(_LAYERS.value)
    if _POOLING.value not in features.POOLINGS:
        raise ValueError(f"--pooling={_POOLING.value!r}: choose one of {', '.join(features.POOLINGS)}.")
    output = pathlib.Path(_OUTPUT_DIR.value)
    if output.exists() and not _OVERWRITE.value:
        raise FileExistsError(f"{output} exists; choose another --output_dir or pass --overwrite.")
    run, model_config, params = runs.load_run(_CHECKPOINT.value)
    tokenizer = interop.run_tokenizer(run, _TOKENIZER.value)
    max_seq_length = _MAX_SEQ_LENGTH.value or run.config.get("data", {}).get("max_seq_length", 128)
    if max_seq_length > model_config.max_position_embeddings:
        raise ValueError(f"--max_seq_length={max_seq_length} exceeds the model's max_position_embeddings="
                         f"{model_config.max_position_embeddings}.")
    description = {"checkpoint": str(run.step_dir), "step": run.record.get("step"), "input": _INPUT.value,
                   "layers": layers, "pooling": _POOLING.value, "max_seq_length": max_seq_length,
                   "tokenizer_fingerprint": tokenizer.fingerprint}
    start = time.perf_counter()
    with files.replacing_directory(output) as partial:  # renamed into place once complete
        writer = features.FeatureWriter(partial, description, _TOKENS_PER_SHARD.value, _DTYPE.value)
        count = features.extract(BertModel(model_config), params["bert"], features.read_texts(_INPUT.value),
                                 tokenizer, writer, layers=layers, pooling=_POOLING.value,
                                 max_seq_length=max_seq_length, batch_size=_BATCH_SIZE.value)
        index = writer.close()
    tokens = sum(shard["tokens"] for shard in index["shards"])
    print(f"{output}: {count:,} examples, {tokens:,} tokens in {len(index['shards'])} shard(s), "
          f"{time.perf_counter() - start:.1f}s; peak host memory {cli.peak_memory_mb():,.0f} MB")

