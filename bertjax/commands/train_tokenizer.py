"""Train a tokenizer with BERT's special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4): a SentencePiece
model (unigram or BPE; one .model file), or BERT's own WordPiece (an HF tokenizer folder: vocab.txt,
tokenizer.json, tokenizer_config.json; uncased unless --cased).

    bertjax train_tokenizer --output_dir runs/demo/tokenizer --vocab_size 2048      # the built-in corpus
    bertjax train_tokenizer --corpus 'text:wiki/*.txt' --vocab_size 32000 --output_dir tokenizers/wiki
    bertjax train_tokenizer --model_type wordpiece --vocab_size 30522 --output_dir tokenizers/wordpiece

The folder gets tokenizer.model (SentencePiece) or vocab.txt, tokenizer.json and tokenizer_config.json
(WordPiece); `bertjax prepare_data --tokenizer DIR` reads either.
"""

import itertools
import pathlib
import time

from absl import flags

from bertjax.data import corpus

__doc__ += "\nCorpora (--corpus):\n" + corpus.CORPORA + "\n"
_CORPUS = flags.DEFINE_string("corpus", "builtin", "The corpus: one of the forms listed above.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "The tokenizer folder to write.", required=True)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 8192, "Vocabulary size, special tokens included.", lower_bound=1)
_MODEL_TYPE = flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe", "wordpiece"],
                                "unigram or bpe: SentencePiece; wordpiece: BERT's WordPiece (HF tokenizers).")
_CASED = flags.DEFINE_bool("cased", False, "wordpiece: keep the case of text (and its accents); default: "
                           "lower-case and strip accents, as BERT's uncased models do.")
_MAX_SENTENCES = flags.DEFINE_integer("max_sentences", 2_000_000, "Sentences sampled for training, at most "
                                      "(wordpiece: the first ones).", lower_bound=1)
# What this program writes; a folder holding anything else is not replaced.
_TOKENIZER_FILES = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "vocab.txt"}


def _train_sentencepiece(sentences, partial: pathlib.Path):
    from bertjax.data import tokenizer

    if flags.FLAGS["cased"].present:
        raise ValueError("--cased is for --model_type wordpiece; a SentencePiece model keeps the case of text.")
    trained = tokenizer.train_sentencepiece(sentences, _VOCAB_SIZE.value, _MODEL_TYPE.value,
                                            input_sentence_size=_MAX_SENTENCES.value)
    trained.save(partial / "tokenizer.model")
    return trained, f"{_MODEL_TYPE.value}; tokenizer.model"


def _train_wordpiece(sentences, partial: pathlib.Path):
    from bertjax.data import tokenizer

    trained = tokenizer.train_wordpiece(sentences, _VOCAB_SIZE.value, lowercase=not _CASED.value,
                                        max_sentences=_MAX_SENTENCES.value)
    written = tokenizer.save_hf_tokenizer(trained, partial)
    note = "" if trained.vocab_size == _VOCAB_SIZE.value else f" (the corpus gave fewer than {_VOCAB_SIZE.value:,})"
    return trained, f"wordpiece, {'lower-cased' if trained.lowercase else 'cased'}{note}; {', '.join(written)}"


def main(argv):
    del argv
    from bertjax import files

    output = pathlib.Path(_OUTPUT_DIR.value)
    if output.exists() and (not output.is_dir() or {path.name for path in output.iterdir()} - _TOKENIZER_FILES):
        raise FileExistsError(f"--output_dir {output} exists and is not a tokenizer folder: choose another name.")
    start = time.perf_counter()
    train = _train_wordpiece if _MODEL_TYPE.value == "wordpiece" else _train_sentencepiece
    sentences = itertools.chain.from_iterable(corpus.open_corpus(_CORPUS.value))
    with files.replacing_directory(output) as partial:  # the folder appears complete, or not at all
        trained, description = train(sentences, partial)
    sample = "Return the number of items in a container."
    print(f"wrote {output}: {trained.vocab_size:,} pieces ({description}) from {_CORPUS.value} "
          f"in {time.perf_counter() - start:.1f}s")
    print(f"  {sample!r} -> {[trained.decode([i]) for i in trained.encode(sample)]}")
    print(f"  prepare a corpus with it: bertjax prepare_data --tokenizer {output} --output_dir DIR")
