"""Prediction throughput of `bertjax.predictor` on raw text: examples per second for a BERT-tiny classifier
and tagger (random weights: the speed does not depend on them), over the built-in corpus's docstrings.

    python benchmarks/predict_throughput.py [--examples 2000] [--batch_sizes 32,128] [--max_seq_length 128]

Each measurement runs the whole path the tool runs (tokenizing, length buckets, the forward pass, turning
logits into labels, probabilities or tags) after one warm-up pass over the same texts, so compiling is not
counted. The peer: the same classifier written as an HF folder (weights, config, tokenizer) and run by
transformers' `pipeline("text-classification")` (PyTorch on the CPU) at the same batch size and length, over
the same texts, after the same warm-up (`--no_hf` skips it). Run it on a quiet machine: the figures are
wall-clock rates.
"""

import argparse
import itertools
import json
import pathlib
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import save_file

from bertjax import convert, predictor as predictors
from bertjax.data import corpus, tokenizer
from bertjax.model import BertConfig


def make_predictor(head: str, tok, labels: list[str], max_seq_length: int, batch_size: int):
    config = BertConfig.from_variant("tiny", vocab_size=tok.vocab_size, max_position_embeddings=max_seq_length)
    model = convert.head_model(config, head, len(labels))
    params = nn.meta.unbox(model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"])
    kind = "single_label_classification" if head == "sequence_classification" else None
    return predictors.Predictor(config, head, params, tok, labels=labels, problem_type=kind,
                                max_seq_length=max_seq_length, batch_size=batch_size)


def rate(predictor, texts: list[str]) -> float:
    rows = [{"text": text} for text in texts]
    for _ in predictor.stream(rows):  # warm-up: every length bucket compiled
        pass
    start = time.perf_counter()
    count = sum(1 for _ in predictor.stream(rows))
    return count / (time.perf_counter() - start)


def hf_rate(predictor, texts: list[str], batch_size: int) -> float:
    """The same classifier through transformers' text-classification pipeline."""
    import transformers

    with tempfile.TemporaryDirectory() as folder:
        config = convert.config_to_hf(predictor.model_config, predictor.head, predictor.labels,
                                      problem_type=predictor.problem_type)
        pathlib.Path(folder, "config.json").write_text(json.dumps(config))
        tensors = convert.hf_tensors(jax.tree.map(np.asarray, predictor.params), predictor.model_config,
                                     predictor.head)
        save_file({name: np.ascontiguousarray(value) for name, value in tensors.items()}, f"{folder}/model.safetensors")
        tokenizer.save_hf_tokenizer(predictor.tokenizer, folder, max_length=predictor.max_seq_length)
        pipe = transformers.pipeline("text-classification", model=folder, tokenizer=folder, device="cpu",
                                     top_k=None)
        options = {"batch_size": batch_size, "truncation": True, "max_length": predictor.max_seq_length}
        pipe(texts, **options)  # warm-up
        start = time.perf_counter()
        count = len(pipe(texts, **options))
        return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--batch_sizes", default="32,128")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--no_hf", action="store_true", help="Skip the transformers pipeline peer.")
    args = parser.parse_args()
    documents = list(corpus.read_builtin())
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/builtin.model"
        tokenizer.train_sentencepiece(itertools.chain.from_iterable(documents), vocab_size=4000).save(path)
        tok = tokenizer.load_tokenizer(path)
    texts = [" ".join(document) for document in itertools.islice(documents, args.examples)]
    print(f"{len(texts)} docstrings, max_seq_length {args.max_seq_length}, BERT-tiny, "
          f"{jax.devices()[0].platform} ({jax.device_count()} device(s), the first used)")
    for head, labels in (("sequence_classification", [f"class_{i}" for i in range(10)]),
                         ("token_classification", ["O", "B-X", "I-X"])):
        for batch_size in map(int, args.batch_sizes.split(",")):
            predictor = make_predictor(head, tok, labels, args.max_seq_length, batch_size)
            ours = rate(predictor, texts)
            line = (f"{head:24s} batch {batch_size:4d}: {ours:8,.0f} examples/s "
                    f"({len(predictor.compiled_shapes)} shapes compiled)")
            if head == "sequence_classification" and not args.no_hf:
                theirs = hf_rate(predictor, texts, batch_size)
                line += f"; transformers pipeline {theirs:8,.0f} examples/s: ratio {ours / theirs:.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
