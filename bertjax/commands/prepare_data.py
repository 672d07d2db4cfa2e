"""Tokenize a corpus into ArrayRecord shards of documents, split into train and validation.

    bertjax prepare_data --tokenizer runs/demo/tokenizer --output_dir runs/demo/data
    bertjax prepare_data --corpus 'text:wiki/*.txt' --tokenizer tokenizers/wiki --output_dir data/wiki \\
        --num_workers 16
    bertjax prepare_data --corpus 'jsonl:train-*.jsonl.gz' --validation_corpus jsonl:dev.jsonl.gz \\
        --tokenizer tokenizers/wiki --output_dir data/web

Documents go to the validation split by a hash of their text (--validation_fraction), or all of
--validation_corpus do. A validation split left empty is refused, since pretraining evaluates on it.
"""

import time

from absl import flags

from bertjax import cli
from bertjax.data import corpus

__doc__ += "\nCorpora (--corpus):\n" + corpus.CORPORA + "\n"
_CORPUS = flags.DEFINE_string("corpus", "builtin", "The corpus: one of the forms listed above.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "A folder of bertjax train_tokenizer, a SentencePiece .model, or "
                                 "WordPiece: an HF tokenizer folder, vocab.txt or tokenizer.json. A copy goes "
                                 "into --output_dir, where pretraining finds it.", required=True)
_LOWERCASE = flags.DEFINE_bool("lowercase", None, "Lower-case text before WordPiece (--nolowercase: keep case); "
                               "unset: the tokenizer's own setting. Training must use the same (data.lowercase).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory to create.", required=True)
_DOCUMENTS_PER_SHARD = flags.DEFINE_integer(
    "documents_per_shard", 10_000, "Documents per shard file; bounds the writer's memory (about 90 bytes each).",
    lower_bound=1)
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.02, "Share of --corpus's documents held out for validation; 0 by default when "
    "--validation_corpus is given.", lower_bound=0, upper_bound=1)
_VALIDATION_CORPUS = flags.DEFINE_string(
    "validation_corpus", None, "A corpus (a form of --corpus) whose documents all go to the validation split.")
_ALLOW_EMPTY_VALIDATION = flags.DEFINE_bool(
    "allow_empty_validation", False, "Write the shards even when the validation split is empty (with a warning); "
    "pretraining refuses them, as it evaluates on that split.")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 2, "Tokenizing worker processes.", lower_bound=1)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output_dir if it exists.")


def main(argv):
    del argv
    from bertjax.data import shards

    start = time.perf_counter()
    characters = 0

    def counted(documents):
        nonlocal characters
        for document in documents:
            characters += len(document) + 1 if isinstance(document, str) else sum(map(len, document)) + len(document)
            yield document

    fraction = _VALIDATION_FRACTION.value
    if _VALIDATION_CORPUS.value and not flags.FLAGS["validation_fraction"].present:
        fraction = 0.0
    # Both corpora are found and checked before any work; texts are split into sentences by the workers.
    documents = corpus.open_corpus(_CORPUS.value, split=False)
    validation = corpus.open_corpus(_VALIDATION_CORPUS.value, split=False) if _VALIDATION_CORPUS.value else None
    metadata = shards.prepare(
        counted(documents), _TOKENIZER.value, _OUTPUT_DIR.value,
        documents_per_shard=_DOCUMENTS_PER_SHARD.value, validation_fraction=fraction,
        validation_documents=counted(validation) if validation else None,
        allow_empty_validation=_ALLOW_EMPTY_VALIDATION.value, num_workers=_NUM_WORKERS.value,
        overwrite=_OVERWRITE.value, source=_CORPUS.value, validation_source=_VALIDATION_CORPUS.value or "",
        lowercase=_LOWERCASE.value)
    seconds = time.perf_counter() - start
    peak_mb = cli.peak_memory_mb()
    print(f"wrote {_OUTPUT_DIR.value} from {_CORPUS.value} in {seconds:.1f}s "
          f"({characters / 1e6 / seconds:.2f} MB of text/s, peak memory of one process {peak_mb:.0f} MB)")
    for split, info in metadata["splits"].items():
        print(f"  {split:<10} {info['documents']:>9,} documents {info['sentences']:>10,} sentences "
              f"{info['tokens']:>12,} tokens in {len(info['shards'])} shard(s)")

