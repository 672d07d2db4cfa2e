"""Train a SentencePiece tokenizer with BERT's special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4).

    python tools/train_tokenizer.py --output runs/demo/tokenizer.model                  # the built-in corpus
    python tools/train_tokenizer.py --corpus 'text:wiki/*.txt' --vocab_size 32000 --output wiki.model
"""

import itertools
import pathlib
import time

from absl import flags

from bertjax import cli, files
from bertjax.data import corpus, tokenizer

__doc__ += "\nCorpora (--corpus):\n" + corpus.CORPORA + "\n"
_CORPUS = flags.DEFINE_string("corpus", "builtin", "The corpus: one of the forms listed above.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the .model file.", required=True)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 8192, "Vocabulary size, special tokens included.")
_MODEL_TYPE = flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe"], "SentencePiece algorithm.")
_MAX_SENTENCES = flags.DEFINE_integer("max_sentences", 2_000_000, "Sentences sampled for training, at most.")


def main(argv):
    del argv
    output = pathlib.Path(_OUTPUT.value)
    if output.suffix != ".model":
        raise SystemExit(f"--output {output}: name the file *.model.")
    start = time.perf_counter()
    sentences = itertools.chain.from_iterable(corpus.open_corpus(_CORPUS.value))
    trained = tokenizer.train_sentencepiece(sentences, _VOCAB_SIZE.value, _MODEL_TYPE.value,
                                            input_sentence_size=_MAX_SENTENCES.value)
    output.parent.mkdir(parents=True, exist_ok=True)
    with files.replacing(output) as partial:  # never a half-written model under the final name
        trained.save(partial)
    sample = "Return the number of items in a container."
    print(f"wrote {output}: {trained.vocab_size:,} pieces ({_MODEL_TYPE.value}) from {_CORPUS.value} "
          f"in {time.perf_counter() - start:.1f}s")
    print(f"  {sample!r} -> {[trained.decode([i]) for i in trained.encode(sample)]}")


if __name__ == "__main__":
    cli.run(main)
