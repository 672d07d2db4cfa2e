"""Tokenize a corpus into ArrayRecord shards of documents, split into train and validation.

    python tools/prepare_data.py --tokenizer runs/demo/tokenizer.model --output_dir runs/demo/data
    python tools/prepare_data.py --corpus 'text:wiki/*.txt' --tokenizer wiki.model --output_dir data/wiki \\
        --num_workers 16
"""

import time

from absl import flags

from bertjax import cli
from bertjax.data import corpus, shards

_CORPUS = flags.DEFINE_string("corpus", "builtin", corpus.open_corpus.__doc__.split("\n\n", 1)[1].strip())
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "SentencePiece .model, or WordPiece: an HF tokenizer folder, "
                                 "vocab.txt or tokenizer.json.", required=True)
_LOWERCASE = flags.DEFINE_bool("lowercase", None, "Lower-case text before WordPiece (--nolowercase: keep case); "
                               "unset: the tokenizer's own setting. Training must use the same (data.lowercase).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory to create.", required=True)
_DOCUMENTS_PER_SHARD = flags.DEFINE_integer(
    "documents_per_shard", 10_000, "Documents per shard file; bounds the writer's memory (about 90 bytes each).")
_VALIDATION_FRACTION = flags.DEFINE_float("validation_fraction", 0.02, "Share of documents held out.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 2, "Tokenizing worker processes.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output_dir if it exists.")


def main(argv):
    del argv
    start = time.perf_counter()
    characters = 0

    def counted(documents):
        nonlocal characters
        for document in documents:
            characters += sum(len(sentence) + 1 for sentence in document)
            yield document

    metadata = shards.prepare(
        counted(corpus.open_corpus(_CORPUS.value)), _TOKENIZER.value, _OUTPUT_DIR.value,
        documents_per_shard=_DOCUMENTS_PER_SHARD.value, validation_fraction=_VALIDATION_FRACTION.value,
        num_workers=_NUM_WORKERS.value, overwrite=_OVERWRITE.value, source=_CORPUS.value,
        lowercase=_LOWERCASE.value)
    seconds = time.perf_counter() - start
    peak_mb = cli.peak_memory_mb()
    print(f"wrote {_OUTPUT_DIR.value} from {_CORPUS.value} in {seconds:.1f}s "
          f"({characters / 1e6 / seconds:.2f} MB of text/s, peak memory of one process {peak_mb:.0f} MB)")
    for split, info in metadata["splits"].items():
        print(f"  {split:<10} {info['documents']:>9,} documents {info['sentences']:>10,} sentences "
              f"{info['tokens']:>12,} tokens in {len(info['shards'])} shard(s)")


if __name__ == "__main__":
    cli.run(main)
