"""Train a tokenizer with BERT's special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4): a SentencePiece
model (unigram or BPE; one .model file), or BERT's own WordPiece (an HF tokenizer folder: vocab.txt,
tokenizer.json, tokenizer_config.json; uncased unless --cased).

    python tools/train_tokenizer.py --output runs/demo/tokenizer.model                  # the built-in corpus
    python tools/train_tokenizer.py --corpus 'text:wiki/*.txt' --vocab_size 32000 --output wiki.model
    python tools/train_tokenizer.py --model_type wordpiece --vocab_size 30522 --output runs/wordpiece
"""

import itertools
import pathlib
import time

from absl import flags

from bertjax import cli, files
from bertjax.data import corpus, tokenizer

__doc__ += "\nCorpora (--corpus):\n" + corpus.CORPORA + "\n"
_CORPUS = flags.DEFINE_string("corpus", "builtin", "The corpus: one of the forms listed above.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write: a .model file (SentencePiece), or a folder "
                              "(wordpiece).", required=True)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 8192, "Vocabulary size, special tokens included.")
_MODEL_TYPE = flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe", "wordpiece"],
                                "unigram or bpe: SentencePiece; wordpiece: BERT's WordPiece (HF tokenizers).")
_CASED = flags.DEFINE_bool("cased", False, "wordpiece: keep the case of text (and its accents); default: "
                           "lower-case and strip accents, as BERT's uncased models do.")
_MAX_SENTENCES = flags.DEFINE_integer("max_sentences", 2_000_000, "Sentences sampled for training, at most "
                                      "(wordpiece: the first ones).")
# What --model_type wordpiece writes; a folder holding anything else is not replaced.
_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"}


def _train_sentencepiece(output: pathlib.Path):
    if output.suffix != ".model":
        raise SystemExit(f"--output {output}: name the file *.model (or pass --model_type wordpiece for a folder).")
    if flags.FLAGS["cased"].present:
        raise SystemExit("--cased is for --model_type wordpiece; a SentencePiece model keeps the case of text.")
    sentences = itertools.chain.from_iterable(corpus.open_corpus(_CORPUS.value))
    trained = tokenizer.train_sentencepiece(sentences, _VOCAB_SIZE.value, _MODEL_TYPE.value,
                                            input_sentence_size=_MAX_SENTENCES.value)
    output.parent.mkdir(parents=True, exist_ok=True)
    with files.replacing(output) as partial:  # never a half-written model under the final name
        trained.save(partial)
    return trained, _MODEL_TYPE.value


def _train_wordpiece(output: pathlib.Path):
    if output.suffix == ".model":
        raise SystemExit(f"--output {output}: --model_type wordpiece writes a folder; name one without .model.")
    if output.exists() and (not output.is_dir() or {path.name for path in output.iterdir()} - _TOKENIZER_FILES):
        raise SystemExit(f"--output {output} exists and is not a tokenizer folder: choose another name.")
    sentences = itertools.chain.from_iterable(corpus.open_corpus(_CORPUS.value))
    trained = tokenizer.train_wordpiece(sentences, _VOCAB_SIZE.value, lowercase=not _CASED.value,
                                        max_sentences=_MAX_SENTENCES.value)
    with files.replacing_directory(output) as partial:  # the folder appears complete, or not at all
        written = tokenizer.save_hf_tokenizer(trained, partial)
    note = "" if trained.vocab_size == _VOCAB_SIZE.value else f" (the corpus gave fewer than {_VOCAB_SIZE.value:,})"
    return trained, f"wordpiece, {'lower-cased' if trained.lowercase else 'cased'}{note}; {', '.join(written)}"


def main(argv):
    del argv
    output = pathlib.Path(_OUTPUT.value)
    start = time.perf_counter()
    train = _train_wordpiece if _MODEL_TYPE.value == "wordpiece" else _train_sentencepiece
    trained, description = train(output)
    sample = "Return the number of items in a container."
    print(f"wrote {output}: {trained.vocab_size:,} pieces ({description}) from {_CORPUS.value} "
          f"in {time.perf_counter() - start:.1f}s")
    print(f"  {sample!r} -> {[trained.decode([i]) for i in trained.encode(sample)]}")
    print(f"  use it with --config.data.tokenizer={output} (and tools/prepare_data.py --tokenizer {output})")


if __name__ == "__main__":
    cli.run(main)
