"""Figures for export and feature extraction.

    python benchmarks/interop_figures.py [--vocab_sizes 2048,8192] [--lines 20000]

1. Tokenizer export: a SentencePiece unigram model trained on the built-in corpus, written as an HF
   `tokenizer.json` and loaded by `transformers.AutoTokenizer`: the share of the corpus's sentences that
   encode to the same ids both ways (needs transformers).
2. Feature extraction memory: tools/extract_features.py on a BERT-tiny run over k x --lines lines of text
   (k = 1, 4); the peak host memory, which must not grow with k, and the output's size.
"""

import argparse
import itertools
import pathlib
import re
import subprocess
import sys
import tempfile

import jax
import flax.linen as nn
import jax.numpy as jnp

from bertjax import runs
from bertjax.data import corpus, tokenizer
from bertjax.heads import BertForPretraining
from bertjax.model import BertConfig
from bertjax.configs import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tokenizer_parity(vocab_size: int, folder: pathlib.Path) -> tuple[int, int]:
    import transformers

    documents = list(corpus.read_builtin())
    sentences = [sentence for document in documents for sentence in document]
    sp = tokenizer.train_sentencepiece(iter(sentences), vocab_size=vocab_size)
    out = folder / f"hf{vocab_size}"
    out.mkdir()
    tokenizer.save_hf_tokenizer(sp, out)
    hf = transformers.AutoTokenizer.from_pretrained(out)
    theirs = hf(sentences, add_special_tokens=False)["input_ids"]
    same = sum(a == b for a, b in zip(sp.encode_batch(sentences), theirs))
    return same, len(sentences)


def extraction_memory(lines: int, folder: pathlib.Path) -> list[tuple[int, float, float]]:
    documents = list(corpus.read_builtin())
    sentences = [sentence for document in documents for sentence in document]
    sp = tokenizer.train_sentencepiece(iter(sentences), vocab_size=2048)
    sp.save(folder / "tok.model")
    model_config = BertConfig.from_variant("tiny", vocab_size=2048, max_position_embeddings=128)
    variables = BertForPretraining(model_config).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
    params = nn.meta.unbox(variables["params"])
    config = common.get_config()
    config.model.variant = "tiny"
    config.model.vocab_size = 2048
    config.model.max_position_embeddings = 128
    config.data.tokenizer = str(folder / "tok.model")
    runs.save_params(folder / "run", params, config.to_dict(),
                           {"step": 0, "head": "pretraining", "tokenizer_fingerprint": sp.fingerprint})
    results = []
    for scale in (1, 4):
        text = folder / f"input{scale}.txt"
        text.write_text("\n".join(itertools.islice(itertools.cycle(sentences), lines * scale)) + "\n")
        output = subprocess.run(
            [sys.executable, "tools/extract_features.py", f"--checkpoint={folder / 'run'}", f"--input=text:{text}",
             f"--output_dir={folder / f'features{scale}'}", "--layers=-1,-2,-3", "--pooling=mean",
             "--max_seq_length=128", "--tokens_per_shard=65536"],
            cwd=ROOT, capture_output=True, text=True)
        if output.returncode:
            raise SystemExit(output.stderr)
        output = output.stdout
        peak = float(re.search(r"peak host memory ([\d,]+) MB", output).group(1).replace(",", ""))
        size = sum(path.stat().st_size for path in (folder / f"features{scale}").iterdir()) / 1e6
        print(f"  {lines * scale:,} lines: {output.strip()}")
        results.append((lines * scale, peak, size))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab_sizes", default="2048,8192")
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = pathlib.Path(temporary)
        for vocab_size in map(int, args.vocab_sizes.split(",")):
            same, total = tokenizer_parity(vocab_size, folder)
            print(f"SentencePiece unigram {vocab_size} pieces -> HF tokenizer.json: {same:,} of {total:,} built-in "
                  f"corpus sentences encode identically ({same / total:.2%})")
        print("feature extraction (BERT-tiny, layers -1,-2,-3 concatenated = 384 floats per token):")
        for lines, peak, size in extraction_memory(args.lines, folder):
            print(f"  {lines:,} lines -> {size:,.0f} MB of features, peak host memory {peak:,.0f} MB")


if __name__ == "__main__":
    main()
