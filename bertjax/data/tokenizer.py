"""One tokenizer interface over SentencePiece (vocabularies we train) and WordPiece (imported HF checkpoints).

Both give: special ids ([PAD], [UNK], [CLS], [SEP], [MASK]), batch encoding without special tokens (the
pipeline adds [CLS]/[SEP]), decoding, a per-id `word_start` table (does this token begin a word? used by
whole-word masking), the ids that masking may draw as random replacements, and a `fingerprint` that
prepared shards record so that a pipeline never reads shards made by another tokenizer.
"""

import functools
import hashlib
import json
import io
import pathlib
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
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
    fingerprint: str  # sha256 of the vocabulary file
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
                raise FileNotFoundError(f"Tokenizer model {path} not found; train one with tools/train_tokenizer.py.")
            model = path.read_bytes()
        self.model_bytes = model
        try:  # a protobuf parse: the file is data, never code
            self._processor = spm.SentencePieceProcessor(model_proto=model)
        except RuntimeError:
            raise ValueError(f"{source} is not a SentencePiece model ({len(model):,} bytes that do not parse); train "
                             "one with tools/train_tokenizer.py.") from None
        self.vocab_size = self._processor.get_piece_size()
        ids = [self._processor.piece_to_id(token) for token in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise ValueError(f"SentencePiece model lacks BERT's special tokens at ids 0-4 (found {ids} for "
                             f"{SPECIAL_TOKENS}); train it with tools/train_tokenizer.py.")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = ids
        self.fingerprint = hashlib.sha256(model).hexdigest()
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
    """HF WordPiece (`vocab.txt` or `tokenizer.json`) through the `tokenizers` library, so that text encodes
    exactly as HF's BertTokenizer encodes it."""

    def __init__(self, path: str | pathlib.Path, lowercase: bool = True):
        import tokenizers  # only imported checkpoints need it

        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"WordPiece vocabulary {path} not found.")
        if path.suffix == ".json":
            try:  # JSON, never code
                self._tokenizer = tokenizers.Tokenizer.from_file(str(path))
            except Exception as error:  # noqa: BLE001 - the tokenizers library raises a bare Exception
                raise ValueError(f"{path} is not an HF tokenizer.json ({error}).") from None
        else:
            try:
                lines = path.read_text(encoding="utf-8").split("\n")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path} is not a UTF-8 vocabulary file ({error}).") from None
            missing = set(SPECIAL_TOKENS) - set(lines)
            if missing:
                raise ValueError(f"{path} lacks the special tokens {sorted(missing)}; is it a BERT WordPiece vocabulary?")
            self._tokenizer = tokenizers.BertWordPieceTokenizer(str(path), lowercase=lowercase)
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        vocab = self._tokenizer.get_vocab()
        missing = [token for token in SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise ValueError(f"{path} lacks the special tokens {missing}; is it a BERT WordPiece vocabulary?")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (vocab[t] for t in SPECIAL_TOKENS)
        self.vocab_size = self._tokenizer.get_vocab_size()
        self.fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()
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


def load_tokenizer(path: str | pathlib.Path) -> Tokenizer:
    """A `.model` file is SentencePiece; `vocab.txt` or `tokenizer.json` is WordPiece."""
    path = pathlib.Path(path)
    if path.suffix == ".model":
        return SentencePieceTokenizer(path)
    if path.suffix in (".txt", ".json"):
        return WordPieceTokenizer(path)
    raise ValueError(f"Tokenizer {path}: expected a SentencePiece .model, a WordPiece vocab.txt or tokenizer.json.")


# --- HF tokenizer files ----------------------------------------------------------------------------------------

def wordpiece_from_hf_folder(folder: str | pathlib.Path, output: str | pathlib.Path) -> WordPieceTokenizer:
    """An HF BERT folder's tokenizer -> `output` (a `tokenizer.json`) and the `WordPieceTokenizer` over it.

    A `tokenizer.json` there is copied as it is; else `vocab.txt` is built into one with the casing and accent
    settings of `tokenizer_config.json` (`do_lower_case`, `strip_accents`, `tokenize_chinese_chars`), as
    HF's `BertTokenizerFast` builds it.
    """
    import tokenizers

    folder, output = pathlib.Path(folder), pathlib.Path(output)
    if (folder / "tokenizer.json").is_file():
        tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    elif (folder / "vocab.txt").is_file():
        settings_path = folder / "tokenizer_config.json"
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        WordPieceTokenizer(folder / "vocab.txt")  # checks the special tokens
        tokenizer = tokenizers.BertWordPieceTokenizer(
            str(folder / "vocab.txt"), lowercase=settings.get("do_lower_case", True),
            strip_accents=settings.get("strip_accents"),
            handle_chinese_chars=settings.get("tokenize_chinese_chars", True))._tokenizer
    else:
        raise FileNotFoundError(f"{folder} has neither tokenizer.json nor vocab.txt: an HF BERT folder needs one.")
    with files.replacing(output) as partial:
        tokenizer.save(str(partial))
    return WordPieceTokenizer(output)


def hf_tokenizer(tokenizer: Tokenizer):
    """A `tokenizers.Tokenizer` that HF's `PreTrainedTokenizerFast` loads, with BERT's [CLS] A [SEP] B [SEP]
    template. WordPiece is the same tokenizer. A SentencePiece unigram model becomes a `Unigram` model over the
    same pieces and scores, with SentencePiece's own normalisation table and byte fallback; the five BERT
    specials become HF special tokens, so a literal "[MASK]" in text is the mask token there (SentencePiece
    keeps it text). BPE SentencePiece models are not converted."""
    import tokenizers
    from tokenizers import decoders, normalizers, pre_tokenizers, processors

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
    converted.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokenizer.cls_id), ("[SEP]", tokenizer.sep_id)])
    return converted


def save_hf_tokenizer(tokenizer: Tokenizer, folder: str | pathlib.Path, max_length: int = 512) -> list[str]:
    """Write what `transformers.AutoTokenizer.from_pretrained(folder)` loads: `tokenizer.json`,
    `tokenizer_config.json`, `special_tokens_map.json`, and `vocab.txt` for WordPiece. Returns the names."""
    folder = pathlib.Path(folder)
    hf_tokenizer(tokenizer).save(str(folder / "tokenizer.json"))
    specials = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
                "model_input_names": ["input_ids", "token_type_ids", "attention_mask"], **specials}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
    names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    if isinstance(tokenizer, WordPieceTokenizer):
        pieces = [tokenizer._tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
        (folder / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
        names.append("vocab.txt")
    return names
