"""One tokenizer interface over SentencePiece and WordPiece (BERT's own: trained here by `train_wordpiece`, or
imported with HF checkpoints).

Both give: special ids ([PAD], [UNK], [CLS], [SEP], [MASK]), batch encoding without special tokens (the
pipeline adds [CLS]/[SEP]), decoding, a per-id `word_start` table (does this token begin a word? used by
whole-word masking), the ids that masking may draw as random replacements, whether text is lower-cased
(`lowercase`, and `casing_source`: what decided it), and a `fingerprint` that prepared shards record so that a
pipeline never reads shards made by another tokenizer (or by the same vocabulary read with other casing).
"""

import functools
import hashlib
import io
import itertools
import json
import pathlib
import shutil
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from absl import logging
from sentencepiece import sentencepiece_model_pb2

from bertjax import files

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class Tokenizer:
    """The common interface. Subclasses set the ids and tables in `__init__`."""

    vocab_size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    fingerprint: str  # sha256 of the vocabulary file (and of the casing, where that is not the file's own)
    lowercase: bool  # text is lower-cased before it is split into pieces
    casing_source: str  # what decided `lowercase`: a given value, a settings file, the vocabulary, the normaliser
    word_start: np.ndarray  # (V,) bool: token i begins a word
    special_ids: np.ndarray  # ids that are never masked and never drawn as random replacements

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_with_offsets(self, texts: Sequence[str], split_punctuation: bool = False):
        """Per text: ids and, per token, the (start, end) character span of the text it came from (leading
        whitespace excluded), so that a span of tokens maps back to the original text (SQuAD answers).
        `split_punctuation` puts a token boundary at every punctuation character, as BERT's WordPiece
        tokenizer always does, so that an answer such as "1862" in "in 1862." is a whole span of tokens."""
        raise NotImplementedError

    @property
    def replacement_ids(self) -> np.ndarray:
        """Ids that masking's "random token" draws from: the vocabulary less the special ids."""
        keep = np.ones(self.vocab_size, bool)
        keep[self.special_ids] = False
        return np.flatnonzero(keep).astype(np.int32)


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model trained by `train_sentencepiece` (specials at ids 0-4)."""

    def __init__(self, model: bytes | str | pathlib.Path):
        source = "SentencePiece model"
        if not isinstance(model, bytes):
            path = source = pathlib.Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"Tokenizer model {path} not found; train one with bertjax train_tokenizer.")
            model = path.read_bytes()
        self.model_bytes = model
        try:  # a protobuf parse: the file is data, never code
            self._processor = spm.SentencePieceProcessor(model_proto=model)
        except RuntimeError:
            raise ValueError(f"{source} is not a SentencePiece model ({len(model):,} bytes that do not parse); train "
                             "one with bertjax train_tokenizer.") from None
        self.vocab_size = self._processor.get_piece_size()
        ids = [self._processor.piece_to_id(token) for token in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise ValueError(f"SentencePiece model lacks BERT's special tokens at ids 0-4 (found {ids} for "
                             f"{SPECIAL_TOKENS}); train it with bertjax train_tokenizer.")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
        self.fingerprint = hashlib.sha256(model).hexdigest()
        self.lowercase = _folds_case(self._processor.normalize)
        self.casing_source = "the SentencePiece model's normaliser"
        pieces = [self._processor.id_to_piece(i) for i in range(self.vocab_size)]
        # "▁" marks a piece that starts a word; byte pieces (<0x..>) continue the one before them.
        self.word_start = np.array([piece.startswith("▁") for piece in pieces], bool)
        self.special_ids = np.array(
            [i for i in range(self.vocab_size) if self._processor.is_control(i) or self._processor.is_unknown(i)]
            + [self.pad_id], np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._processor.encode(list(texts), out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self._processor.decode([int(i) for i in ids])

    def encode_with_offsets(self, texts: Sequence[str], split_punctuation: bool = False):
        if not split_punctuation:
            return [_piece_offsets(text, proto)
                    for text, proto in zip(texts, self._processor.encode(list(texts), out_type="proto"))]
        results = []
        for text in texts:
            runs = punctuation_runs(text)
            # A run glued to the one before it (no space between) is encoded without the word-start "▁".
            glued = [start > 0 and not text[start - 1].isspace() for start, _ in runs]
            encoded = {}
            for processor, wanted in ((self._processor, False), (self._glued_processor, True)):
                chosen = [index for index, is_glued in enumerate(glued) if is_glued == wanted]
                protos = processor.encode([text[runs[i][0]:runs[i][1]] for i in chosen], out_type="proto")
                for index, proto in zip(chosen, protos):
                    encoded[index] = _piece_offsets(text[runs[index][0]:runs[index][1]], proto)
            ids, spans = [], []
            for index, (start, _) in enumerate(runs):
                ids.extend(encoded[index][0])
                spans.extend((start + begin, start + end) for begin, end in encoded[index][1])
            results.append((ids, spans))
        return results

    @functools.cached_property
    def _glued_processor(self) -> spm.SentencePieceProcessor:
        """The same model without the dummy "▁" it puts before a text's first word."""
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(self.model_bytes)
        proto.normalizer_spec.add_dummy_prefix = False
        return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())

    def save(self, path: str | pathlib.Path) -> None:
        pathlib.Path(path).write_bytes(self.model_bytes)


def _piece_offsets(text: str, proto) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids and character spans from a SentencePiece result, whose offsets are bytes of the original text."""
    char_at_byte = np.zeros(len(text.encode("utf-8")) + 1, np.int64)
    position = 0
    for index, char in enumerate(text):
        width = len(char.encode("utf-8"))
        char_at_byte[position:position + width] = index
        position += width
    char_at_byte[position] = len(text)
    spans = [[int(char_at_byte[piece.begin]), int(char_at_byte[piece.end])] for piece in proto.pieces]
    # Byte-fallback pieces before a character's last byte have empty spans: they share its span.
    for index in range(len(spans) - 2, -1, -1):
        if spans[index][0] == spans[index][1] and spans[index + 1][0] == spans[index][0]:
            spans[index] = list(spans[index + 1])
    for span in spans:  # "▁" pieces carry the whitespace before a word
        while span[0] < span[1] and text[span[0]].isspace():
            span[0] += 1
    return [piece.id for piece in proto.pieces], [tuple(span) for span in spans]


def _folds_case(normalize) -> bool:
    """Whether a normalising function lower-cases text: asked of the function itself, so that any normaliser
    (BERT's, a SentencePiece rule, a sequence of steps) answers alike."""
    return normalize("ABC Éx") == normalize("abc éx")


def _is_punctuation(char: str) -> bool:
    """BERT's rule: ASCII symbols and Unicode punctuation."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def punctuation_runs(text: str) -> list[tuple[int, int]]:
    """Character spans of the words of `text`, split at whitespace, each punctuation character a word of its
    own (as BERT's basic tokenizer splits text before WordPiece)."""
    runs, start = [], None
    for index, char in enumerate(text):
        if char.isspace() or _is_punctuation(char):
            if start is not None:
                runs.append((start, index))
                start = None
            if not char.isspace():
                runs.append((index, index + 1))
        elif start is None:
            start = index
    if start is not None:
        runs.append((start, len(text)))
    return runs


def train_sentencepiece(sentences: Iterable[str], vocab_size: int, model_type: str = "unigram",
                        character_coverage: float = 0.9995, input_sentence_size: int = 2_000_000,
                        seed_sentencepiece_size: int = 1_000_000, num_threads: int = 2) -> SentencePieceTokenizer:
    """Train a SentencePiece model in memory, with [PAD]=0, [UNK]=1 and the control symbols
    [CLS]=2, [SEP]=3, [MASK]=4. Control symbols are never produced from raw text: a literal "[MASK]"
    in the corpus is tokenized as ordinary text."""
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type={model_type!r}: choose 'unigram' or 'bpe'.")
    model = io.BytesIO()
    counter = {"sentences": 0}

    def counted(stream):
        for sentence in stream:
            if sentence.strip():
                counter["sentences"] += 1
                yield sentence

    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=counted(sentences), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage, byte_fallback=True,
            pad_id=0, pad_piece="[PAD]", unk_id=1, unk_piece="[UNK]", bos_id=-1, eos_id=-1,
            control_symbols=["[CLS]", "[SEP]", "[MASK]"], input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True, seed_sentencepiece_size=seed_sentencepiece_size,
            num_threads=num_threads, minloglevel=2, hard_vocab_limit=True)
    except RuntimeError as error:
        if counter["sentences"] == 0:
            raise ValueError("Cannot train a tokenizer on an empty corpus: no non-blank sentence was read.") from None
        raise ValueError(f"SentencePiece training failed on {counter['sentences']:,} sentences: {error}. "
                         "A vocabulary too large for the corpus is the usual cause: lower vocab_size.") from None
    return SentencePieceTokenizer(model.getvalue())


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece through HF's `tokenizers`, so that text encodes exactly as HF's BertTokenizer encodes it.
    `path` is an HF tokenizer folder (its `tokenizer.json` if it has one, else its `vocab.txt`), a
    `tokenizer.json`, or a bare `vocab.txt`.

    Casing: a tokenizer.json's own normaliser decides; a `lowercase` that contradicts it is an error. A
    vocab.txt is read as BERT reads one: lower-cased if `lowercase` says so; else as the `do_lower_case` of a
    `tokenizer_config.json` beside it says (whose `strip_accents` and `tokenize_chinese_chars` apply too); else
    as the vocabulary shows: cased when an ordinary piece has an upper-case letter (an uncased vocabulary, made
    from lower-cased text, has none). `casing_source` says which decided.
    """

    def __init__(self, path: str | pathlib.Path, lowercase: bool | None = None):
        import tokenizers  # only WordPiece needs it

        path = pathlib.Path(path)
        if path.is_dir():
            path = _hf_tokenizer_file(path)
        if not path.is_file():
            raise FileNotFoundError(f"WordPiece vocabulary {path} not found.")
        if path.suffix == ".json":
            try:  # JSON, never code
                backend = tokenizers.Tokenizer.from_file(str(path))
            except Exception as error:  # noqa: BLE001 - the tokenizers library raises a bare Exception
                raise ValueError(f"{path} is not an HF tokenizer.json ({error}).") from None
            folds = _folds_case(backend.normalizer.normalize_str) if backend.normalizer else False
            if lowercase is not None and lowercase != folds:
                raise ValueError(
                    f"lowercase={lowercase} (data.lowercase, or --lowercase) contradicts {path}, whose normaliser "
                    f"{'lower-cases' if folds else 'keeps the case of'} text; a tokenizer.json decides its own "
                    "casing: leave lowercase unset, or give a vocab.txt.")
            self._set_up(backend, path, hashlib.sha256(path.read_bytes()).hexdigest(), f"the normaliser of {path}")
        else:
            self._read_vocab(path, lowercase)

    def _read_vocab(self, path: pathlib.Path, lowercase: bool | None) -> None:
        import tokenizers

        try:
            data = path.read_bytes()
            pieces = data.decode("utf-8").split("\n")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is not a UTF-8 vocabulary file ({error}).") from None
        missing = set(SPECIAL_TOKENS) - set(pieces)
        if missing:
            raise ValueError(f"{path} lacks the special tokens {sorted(missing)}; is it a BERT WordPiece vocabulary?")
        settings_path = path.with_name("tokenizer_config.json")
        settings = _read_settings(settings_path) if settings_path.is_file() else {}
        if lowercase is not None:
            source = f"lowercase={lowercase} given"
        elif settings.get("do_lower_case") is not None:
            lowercase, source = bool(settings["do_lower_case"]), f"do_lower_case in {settings_path}"
        else:
            lowercase, source = _casing_of_vocabulary(pieces, path)
            logging.info("%s: %s text (%s); set data.lowercase to choose.", path,
                         "lower-casing" if lowercase else "keeping the case of", source)
        # BERT strips accents when it lower-cases, unless told otherwise.
        strip_accents = settings.get("strip_accents")
        chinese = settings.get("tokenize_chinese_chars", True)
        backend = tokenizers.BertWordPieceTokenizer(str(path), lowercase=lowercase, strip_accents=strip_accents,
                                                    handle_chinese_chars=chinese)._tokenizer
        # The settings BERT's uncased vocabularies are read with keep the file's own hash, as prepared data made
        # before casing was a choice recorded it; any other reading of the same file has another fingerprint.
        casing = {"lowercase": lowercase, "strip_accents": lowercase if strip_accents is None else strip_accents,
                  "tokenize_chinese_chars": chinese}
        digest = hashlib.sha256(data)
        if casing != {"lowercase": True, "strip_accents": True, "tokenize_chinese_chars": True}:
            digest.update(b"\0" + json.dumps(casing, sort_keys=True).encode())
        self._set_up(backend, path, digest.hexdigest(), source)

    @classmethod
    def from_backend(cls, backend, casing_source: str) -> "WordPieceTokenizer":
        """Over a `tokenizers.Tokenizer` in memory (a trained one). Its fingerprint is that of the tokenizer.json
        `save_hf_tokenizer` writes of it, so the folder loads as the same tokenizer."""
        tokenizer = cls.__new__(cls)
        tokenizer._set_up(backend, "WordPiece in memory", "", casing_source)
        tokenizer.fingerprint = hashlib.sha256(hf_tokenizer(tokenizer).to_str(pretty=True).encode()).hexdigest()
        return tokenizer

    def _set_up(self, backend, path, fingerprint: str, casing_source: str) -> None:
        self._tokenizer = backend
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        vocab = self._tokenizer.get_vocab()
        missing = [token for token in SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise ValueError(f"{path} lacks the special tokens {missing}; is it a BERT WordPiece vocabulary?")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (vocab[t] for t in SPECIAL_TOKENS)
        self.vocab_size = self._tokenizer.get_vocab_size()
        self.fingerprint = fingerprint
        self.lowercase = _folds_case(backend.normalizer.normalize_str) if backend.normalizer else False
        self.casing_source = casing_source
        pieces = [self._tokenizer.id_to_token(i) or "" for i in range(self.vocab_size)]
        self.word_start = np.array([not piece.startswith("##") for piece in pieces], bool)
        unused = [i for i, piece in enumerate(pieces) if piece.startswith("[unused")]
        self.special_ids = np.array(sorted({vocab[t] for t in SPECIAL_TOKENS} | set(unused)), np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids])

    def encode_with_offsets(self, texts: Sequence[str], split_punctuation: bool = False):
        # BERT's basic tokenizer already splits punctuation off before WordPiece.
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [(encoding.ids, [tuple(span) for span in encoding.offsets]) for encoding in encodings]

    def normalizer_settings(self) -> dict:
        """The casing keys of an HF BERT `tokenizer_config.json` for this tokenizer: `do_lower_case`, and
        `strip_accents` and `tokenize_chinese_chars` where BERT's normaliser says them."""
        normalizer = json.loads(self._tokenizer.to_str()).get("normalizer") or {}
        if normalizer.get("type") != "BertNormalizer":
            return {"do_lower_case": self.lowercase}
        return {"do_lower_case": normalizer["lowercase"], "strip_accents": normalizer["strip_accents"],
                "tokenize_chinese_chars": normalizer["handle_chinese_chars"]}


def _hf_tokenizer_file(folder: pathlib.Path) -> pathlib.Path:
    for name in ("tokenizer.json", "vocab.txt"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has neither tokenizer.json nor vocab.txt: an HF BERT folder needs one "
                            "(bertjax train_tokenizer --model_type wordpiece writes both).")


def _read_settings(path: pathlib.Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); fix or remove it.") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path} holds a JSON {type(settings).__name__}, not the object of a tokenizer_config.json.")
    return settings


def _casing_of_vocabulary(pieces: Sequence[str], path: pathlib.Path) -> tuple[bool, str]:
    """(lowercase, why) from the pieces themselves: those with a letter that lower-casing changes, [PAD] and
    other bracketed specials left out."""
    cased = [piece for piece in pieces if piece != piece.lower()
             and not (len(piece) > 2 and piece.startswith("[") and piece.endswith("]"))]
    if not cased:
        return True, f"inferred: no piece of {path} has an upper-case letter"
    return False, (f"inferred: {len(cased):,} pieces of {path} have upper-case letters "
                   f"({', '.join(map(repr, cased[:3]))}, ...)")


def load_tokenizer(path: str | pathlib.Path, lowercase: bool | None = None) -> Tokenizer:
    """A `.model` file (or a folder holding `tokenizer.model`) is SentencePiece; a `vocab.txt`, a `tokenizer.json`
    or an HF folder of them is WordPiece.
    `lowercase` (config.data.lowercase) overrides a bare vocab.txt's casing; elsewhere it must agree with the
    tokenizer's own, or it is an error. None: the tokenizer's own (see `WordPieceTokenizer`)."""
    path = pathlib.Path(path)
    if path.is_dir() and (path / "tokenizer.model").is_file():  # the folder bertjax train_tokenizer writes
        path = path / "tokenizer.model"
    if path.suffix == ".model":
        tokenizer = SentencePieceTokenizer(path)
        if lowercase is not None and lowercase != tokenizer.lowercase:
            raise ValueError(f"lowercase={lowercase} (data.lowercase, or --lowercase) contradicts the SentencePiece "
                             f"model {path}, whose normaliser "
                             f"{'lower-cases' if tokenizer.lowercase else 'keeps the case of'} text; leave it unset.")
        return tokenizer
    if path.suffix in (".txt", ".json") or path.is_dir():
        return WordPieceTokenizer(path, lowercase)
    if not path.suffix and not path.exists():
        raise FileNotFoundError(f"Tokenizer folder {path} not found; train one with bertjax train_tokenizer "
                                "--model_type wordpiece.")
    raise ValueError(f"Tokenizer {path}: expected a SentencePiece .model, a WordPiece vocab.txt or tokenizer.json, "
                     "or an HF folder of them.")


def train_wordpiece(sentences: Iterable[str], vocab_size: int, lowercase: bool = True, *,
                    strip_accents: bool | None = None, tokenize_chinese_chars: bool = True, min_frequency: int = 2,
                    limit_alphabet: int = 1000, max_sentences: int | None = None) -> WordPieceTokenizer:
    """Train BERT's WordPiece vocabulary with HF `tokenizers`' WordPiece trainer, in the tokenizer HF's
    BertTokenizer builds over a vocab.txt: BERT's normaliser (control characters removed, whitespace unified,
    CJK characters split apart, lower-casing as `lowercase` says, accents stripped as `strip_accents` says or,
    unset, when lower-casing) and pre-tokeniser (whitespace and punctuation), [PAD] [UNK] [CLS] [SEP] [MASK] at
    ids 0-4, "##" before a piece that continues a word, [CLS] A [SEP] B [SEP] for pairs, and the WordPiece
    decoder. Streams: the trainer keeps word counts, not sentences, and reads the first `max_sentences`
    non-blank sentences at most. Save it with `save_hf_tokenizer` (an HF folder `load_tokenizer` reads)."""
    import tokenizers
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    backend = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
                                                    strip_accents=strip_accents, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), limit_alphabet=limit_alphabet,
                                        continuing_subword_prefix="##", show_progress=False)
    counter = {"sentences": 0}

    def counted(stream):
        for sentence in itertools.islice((sentence for sentence in stream if sentence.strip()), max_sentences):
            counter["sentences"] += 1
            yield sentence

    backend.train_from_iterator(counted(sentences), trainer)
    if counter["sentences"] == 0:
        raise ValueError("Cannot train a tokenizer on an empty corpus: no non-blank sentence was read.")
    vocab = backend.get_vocab()
    if [vocab.get(token) for token in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise AssertionError(f"the WordPiece trainer put {SPECIAL_TOKENS} at {[vocab.get(t) for t in SPECIAL_TOKENS]}")
    backend.post_processor = _bert_template(vocab["[CLS]"], vocab["[SEP]"])
    return WordPieceTokenizer.from_backend(
        backend, f"lowercase={lowercase} given to train_wordpiece, on {counter['sentences']:,} sentences")


# --- HF tokenizer files ----------------------------------------------------------------------------------------

def wordpiece_from_hf_folder(folder: str | pathlib.Path, output: str | pathlib.Path) -> WordPieceTokenizer:
    """An HF BERT folder's tokenizer -> `output` (a `tokenizer.json`) and the `WordPieceTokenizer` over it.

    A `tokenizer.json` there is copied as it is; else `vocab.txt` is built into one as `WordPieceTokenizer`
    reads a vocab.txt: with the casing and accent settings of `tokenizer_config.json` (`do_lower_case`,
    `strip_accents`, `tokenize_chinese_chars`), as HF's `BertTokenizerFast` builds it, or without one with the
    casing the vocabulary shows.
    """
    folder, output = pathlib.Path(folder), pathlib.Path(output)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: an HF BERT folder holds tokenizer.json or vocab.txt.")
    tokenizer = WordPieceTokenizer(folder)
    with files.replacing(output) as partial:
        tokenizer._tokenizer.save(str(partial))
    return WordPieceTokenizer(output)


def hf_tokenizer(tokenizer: Tokenizer):
    """A `tokenizers.Tokenizer` that HF's `PreTrainedTokenizerFast` loads, with BERT's [CLS] A [SEP] B [SEP]
    template. WordPiece is the same tokenizer. A SentencePiece unigram model becomes a `Unigram` model over the
    same pieces and scores, with SentencePiece's own normalisation table and byte fallback; the five BERT
    specials become HF special tokens, so a literal "[MASK]" in text is the mask token there (SentencePiece
    keeps it text). BPE SentencePiece models are not converted."""
    import tokenizers
    from tokenizers import decoders, normalizers, pre_tokenizers

    if isinstance(tokenizer, WordPieceTokenizer):
        converted = tokenizers.Tokenizer.from_str(tokenizer._tokenizer.to_str())
    elif isinstance(tokenizer, SentencePieceTokenizer):
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(tokenizer.model_bytes)
        if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
            raise ValueError("Only unigram SentencePiece models convert to an HF tokenizer; this one is "
                             f"{sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type)}.")
        vocab = [(piece.piece, piece.score) for piece in proto.pieces]
        converted = tokenizers.Tokenizer(tokenizers.models.Unigram(
            vocab, tokenizer.unk_id, byte_fallback=proto.trainer_spec.byte_fallback))
        steps = [normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap)] \
            if proto.normalizer_spec.precompiled_charsmap else []
        if proto.normalizer_spec.remove_extra_whitespaces:
            steps += [normalizers.Strip(), normalizers.Replace(tokenizers.Regex(" {2,}"), " ")]
        converted.normalizer = normalizers.Sequence(steps)
        scheme = "always" if proto.normalizer_spec.add_dummy_prefix else "never"
        converted.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
        converted.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(
            replacement="▁", prepend_scheme=scheme)])
        converted.add_special_tokens(list(SPECIAL_TOKENS))
    else:
        raise ValueError(f"No HF form for a {type(tokenizer).__name__}.")
    converted.post_processor = _bert_template(tokenizer.cls_id, tokenizer.sep_id)
    return converted


def _bert_template(cls_id: int, sep_id: int):
    """BERT's inputs: [CLS] A [SEP], and [CLS] A [SEP] B [SEP] with segment 1 for B and its [SEP]."""
    from tokenizers import processors

    return processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                         special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])


def copy_tokenizer(path: str | pathlib.Path, lowercase: bool | None, folder: str | pathlib.Path) -> Tokenizer:
    """Copy the tokenizer that `load_tokenizer(path, lowercase)` reads into the new `folder`, so that
    `load_tokenizer(folder)` reads the same one, fingerprint included: the file it was read from byte for byte
    (`tokenizer.model`, `tokenizer.json` or `vocab.txt`), and beside a vocab.txt the casing it was read with
    (`tokenizer_config.json`). Returns the tokenizer."""
    tokenizer, path, folder = load_tokenizer(path, lowercase), pathlib.Path(path), pathlib.Path(folder)
    folder.mkdir(parents=True)
    if isinstance(tokenizer, SentencePieceTokenizer):
        (folder / "tokenizer.model").write_bytes(tokenizer.model_bytes)
    else:
        source = _hf_tokenizer_file(path) if path.is_dir() else path
        if source.suffix == ".json":
            shutil.copyfile(source, folder / "tokenizer.json")
        else:
            shutil.copyfile(source, folder / "vocab.txt")
            (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer.normalizer_settings(), indent=2) + "\n")
    copy = load_tokenizer(folder)
    if copy.fingerprint != tokenizer.fingerprint or copy.lowercase != tokenizer.lowercase:
        raise RuntimeError(f"The copy of {path} in {folder} reads as another tokenizer; report this as a bug.")
    return tokenizer


def save_hf_tokenizer(tokenizer: Tokenizer, folder: str | pathlib.Path, max_length: int = 512,
                      segments: bool = True) -> list[str]:
    """Write what `transformers.AutoTokenizer.from_pretrained(folder)` loads: `tokenizer.json`,
    `tokenizer_config.json`, `special_tokens_map.json`, and for WordPiece `vocab.txt` (with its casing in
    tokenizer_config.json: `do_lower_case`, `strip_accents`, `tokenize_chinese_chars`). Returns the names.
    `segments=False` (a model without segment embeddings) leaves token_type_ids out of the model's inputs."""
    folder = pathlib.Path(folder)
    hf_tokenizer(tokenizer).save(str(folder / "tokenizer.json"))
    specials = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
                "model_input_names": ["input_ids", *(["token_type_ids"] if segments else []), "attention_mask"],
                **specials}
    if isinstance(tokenizer, WordPieceTokenizer):  # what a reader of vocab.txt alone needs (BERT's keys)
        settings |= tokenizer.normalizer_settings()
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    if isinstance(tokenizer, WordPieceTokenizer):
        pieces = [tokenizer._tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
        (folder / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
        names.append("vocab.txt")
    return names
