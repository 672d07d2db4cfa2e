"""The tokenizer interface: SentencePiece and WordPiece trained here, WordPiece as HF encodes it, casing."""

import hashlib
import itertools
import json
import shutil
import unicodedata

import numpy as np
import pytest
import transformers

from bertjax import files
from bertjax.data import tokenizer


def test_special_tokens_have_fixed_ids(sp_tokenizer):
    assert (sp_tokenizer.pad_id, sp_tokenizer.unk_id, sp_tokenizer.cls_id, sp_tokenizer.sep_id,
            sp_tokenizer.mask_id) == (0, 1, 2, 3, 4)
    assert sp_tokenizer.vocab_size == 4000
    assert set(sp_tokenizer.special_ids.tolist()) == {0, 1, 2, 3, 4}
    assert not np.isin(sp_tokenizer.replacement_ids, [0, 1, 2, 3, 4]).any()
    assert len(sp_tokenizer.replacement_ids) == 3995


def test_round_trip_on_the_builtin_corpus(sp_tokenizer, builtin_documents):
    sentences = [sentence for document in builtin_documents[::40] for sentence in document][:400]
    encoded = sp_tokenizer.encode_batch(sentences)
    for sentence, ids in zip(sentences, encoded):
        assert sp_tokenizer.unk_id not in ids  # byte fallback: nothing is unknown
        assert sp_tokenizer.decode(ids) == unicodedata.normalize("NFKC", sentence)


def test_literal_special_token_text_stays_text(sp_tokenizer):
    ids = sp_tokenizer.encode("Write [MASK] or [CLS] in a docstring.")
    assert not set(ids) & {sp_tokenizer.mask_id, sp_tokenizer.cls_id, sp_tokenizer.sep_id}
    assert sp_tokenizer.decode(ids) == "Write [MASK] or [CLS] in a docstring."


def test_word_start_marks_the_first_piece_of_each_word(sp_tokenizer):
    text = "Serialization of unambiguous representations"
    ids = sp_tokenizer.encode(text)
    starts = sp_tokenizer.word_start[ids]
    assert starts.sum() == len(text.split())
    words = []
    for token, start in zip(ids, starts):
        piece = sp_tokenizer.decode([token])
        words.append(piece) if start else words.__setitem__(-1, words[-1] + piece)
    assert words == text.split()


def test_empty_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="empty corpus"):
        tokenizer.train_sentencepiece(iter(["", "  "]), vocab_size=100)


def test_bpe_model_type_trains(builtin_documents):
    sentences = [sentence for document in builtin_documents[:300] for sentence in document]
    bpe = tokenizer.train_sentencepiece(sentences, vocab_size=500, model_type="bpe")
    assert bpe.vocab_size == 500 and bpe.mask_id == 4


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory, builtin_documents):
    """A small WordPiece vocabulary in BERT's layout ([PAD] 0, [unused..], [UNK] [CLS] [SEP] [MASK], pieces)."""
    words = sorted({word.lower().strip(".,:;()'\"") for document in builtin_documents[:200]
                    for sentence in document for word in sentence.split()} - {""})[:1500]
    pieces = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces += sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,:;()'\"-_=[]/*"))
    pieces += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + ["##ing", "##ed"]
    pieces += [word for word in words if word not in pieces]
    path = tmp_path_factory.mktemp("wordpiece") / "vocab.txt"
    path.write_text("\n".join(pieces) + "\n")
    return path


def test_wordpiece_encodes_as_hf(vocab_file, builtin_documents):
    ours = tokenizer.load_tokenizer(vocab_file)
    reference = transformers.BertTokenizer(str(vocab_file), do_lower_case=True)
    texts = [sentence for document in builtin_documents[:60] for sentence in document]
    for text, ids in zip(texts, ours.encode_batch(texts)):
        assert ids == reference.encode(text, add_special_tokens=False)
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 3, 4, 5, 6)
    assert set(ours.special_ids.tolist()) == {0, 1, 2, 3, 4, 5, 6}
    hashes = [i for i, piece in enumerate(vocab_file.read_text().split("\n")) if piece.startswith("##")]
    assert not ours.word_start[hashes].any() and ours.word_start[ours.cls_id]


def test_unknown_tokenizer_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="expected a SentencePiece .model"):
        tokenizer.load_tokenizer(tmp_path / "tokenizer.bin")
    with pytest.raises(FileNotFoundError, match="bertjax train_tokenizer"):
        tokenizer.load_tokenizer(tmp_path / "missing.model")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="lacks the special tokens"):
        tokenizer.load_tokenizer(tmp_path / "vocab.txt")


# --- WordPiece trained here -------------------------------------------------------------------------------------

# Accents (composed and decomposed), CJK, Greek and Cyrillic, punctuation, mixed case, characters never seen in
# training (unknown), control and zero-width characters, a literal special token, a word over 100 characters.
VARIED_TEXTS = ["Café déjà vu in München: Größe, STRASSE!", "東京 and 北京, Αθήνα & Москва, ΘΕΣΣΑΛΟΝΙΚΗ",
                "HTTPServer.getUserName() -> Optional[str]", "snowman ☃ check ✓ face 🙂 hangul 한국어",
                "e\u0301 combining, zero\u200bwidth, nul\x00byte, tab\tnbsp\u00a0end", "[MASK] stays [MASK]",
                "pre-tokenized? (yes); 3.14 ≥ 2", "ÉCOLE école Ecole", "", "x" * 150]


def _references(vocab, lowercase):
    """HF's BertTokenizer (built on `tokenizers`), and its pure-Python predecessor, which shares no code with
    `tokenizers`. The second normalises text to NFC first, which BERT and the first do not do, so it is asked
    only about text NFC leaves as it is."""
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    return (transformers.BertTokenizer(str(vocab), do_lower_case=lowercase),
            BertTokenizerLegacy(str(vocab), do_lower_case=lowercase))


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def trained_wordpiece(request, tmp_path_factory, builtin_documents):
    """(lowercase, the trained tokenizer, the folder written as tools/train_tokenizer.py writes it)."""
    from conftest import wordpiece_sentences

    lowercase = request.param
    trained = tokenizer.train_wordpiece(wordpiece_sentences(builtin_documents), vocab_size=1200, lowercase=lowercase)
    folder = tmp_path_factory.mktemp("trained") / "wordpiece"
    with files.replacing_directory(folder) as partial:
        tokenizer.save_hf_tokenizer(trained, partial)
    return lowercase, trained, folder


def test_trained_wordpiece_encodes_as_transformers(trained_wordpiece):
    lowercase, trained, folder = trained_wordpiece
    fast, python = _references(folder / "vocab.txt", lowercase)
    loaded = [tokenizer.load_tokenizer(path) for path in (folder, folder / "tokenizer.json", folder / "vocab.txt")]
    for text in VARIED_TEXTS:
        expected = fast.encode(text, add_special_tokens=False)
        for ours in (trained, *loaded):
            assert ours.encode(text) == expected, (text, ours.casing_source)
        if unicodedata.normalize("NFC", text) == text:
            assert python.encode(text, add_special_tokens=False) == expected, text
            assert trained.decode(expected) == python.decode(expected, skip_special_tokens=True)
    # The texts exercise unknown characters and known ones in every script.
    encoded = trained.encode_batch(VARIED_TEXTS)
    assert trained.unk_id in encoded[3]
    assert trained.unk_id not in encoded[1] and trained.unk_id not in encoded[0]
    assert (trained.encode("ÉCOLE") == trained.encode("ecole")) == lowercase
    assert trained.vocab_size == 1200 == len((folder / "vocab.txt").read_text().splitlines())
    assert (trained.pad_id, trained.unk_id, trained.cls_id, trained.sep_id, trained.mask_id) == (0, 1, 2, 3, 4)
    continuations = [i for i in range(trained.vocab_size) if fast.convert_ids_to_tokens(i).startswith("##")]
    assert continuations and not trained.word_start[continuations].any() and trained.word_start[5:].sum() > 100
    # The folder loads as the tokenizer trained, whichever file is named; its casing is written down.
    assert all(tok.lowercase == lowercase for tok in (trained, *loaded))
    assert loaded[0].fingerprint == loaded[1].fingerprint == trained.fingerprint
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    assert (settings["do_lower_case"], settings["strip_accents"], settings["tokenize_chinese_chars"]) == (
        lowercase, None, True)
    assert "tokenizer_config.json" in loaded[2].casing_source


def test_trained_wordpiece_folder_loads_in_transformers_with_bert_pairs(trained_wordpiece):
    lowercase, trained, folder = trained_wordpiece
    fast, _ = _references(folder / "vocab.txt", lowercase)
    auto = transformers.AutoTokenizer.from_pretrained(folder)
    assert auto(VARIED_TEXTS, add_special_tokens=False)["input_ids"] == trained.encode_batch(VARIED_TEXTS)
    first, second = VARIED_TEXTS[0], VARIED_TEXTS[2]
    pair, expected = auto(first, second), fast(first, second)
    assert pair["input_ids"] == expected["input_ids"] and pair["token_type_ids"] == expected["token_type_ids"]
    assert pair["input_ids"][0] == trained.cls_id and pair["input_ids"].count(trained.sep_id) == 2


def test_wordpiece_training_streams_at_most_max_sentences(builtin_documents):
    pulled = 0

    def endless():  # a blank line between sentences, forever
        nonlocal pulled
        for sentence in itertools.cycle(itertools.chain.from_iterable(builtin_documents[:50])):
            for line in (sentence, "  "):
                pulled += 1
                yield line

    trained = tokenizer.train_wordpiece(endless(), vocab_size=300, max_sentences=200)
    assert pulled <= 2 * 200 and trained.vocab_size <= 300
    with pytest.raises(ValueError, match="empty corpus"):
        tokenizer.train_wordpiece(iter(["", "  "]), vocab_size=100)


# --- casing of a bare vocab.txt ---------------------------------------------------------------------------------

def _alone(vocab, folder, settings=None):
    """`vocab` copied into `folder` by itself, with a tokenizer_config.json of `settings` if given."""
    folder.mkdir()
    shutil.copy(vocab, folder / "vocab.txt")
    if settings is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder / "vocab.txt"


def _encodes_as(ours, vocab, **hf_settings):
    reference = transformers.BertTokenizer(str(vocab), **hf_settings)
    return all(ours.encode(text) == reference.encode(text, add_special_tokens=False) for text in VARIED_TEXTS)


def test_vocab_txt_casing_given_written_or_inferred(wordpiece_dir, tmp_path):
    uncased = _alone(wordpiece_dir / "vocab.txt", tmp_path / "uncased")
    inferred, lowered, kept = (tokenizer.load_tokenizer(uncased, lowercase) for lowercase in (None, True, False))
    assert (inferred.lowercase, lowered.lowercase, kept.lowercase) == (True, True, False)
    assert "inferred" in inferred.casing_source and "given" in kept.casing_source
    assert _encodes_as(inferred, uncased, do_lower_case=True) and _encodes_as(kept, uncased, do_lower_case=False)
    assert not _encodes_as(kept, uncased, do_lower_case=True)  # the texts tell the two apart
    # Lower-cased, the file's own hash (what shards prepared before casing was a choice recorded); cased, another.
    assert inferred.fingerprint == lowered.fingerprint == hashlib.sha256(uncased.read_bytes()).hexdigest()
    assert kept.fingerprint != inferred.fingerprint

    # A tokenizer_config.json beside the vocabulary decides over its pieces, and a given value over both.
    written = _alone(wordpiece_dir / "vocab.txt", tmp_path / "written", {"do_lower_case": False})
    assert not tokenizer.load_tokenizer(written).lowercase
    assert "tokenizer_config.json" in tokenizer.load_tokenizer(written).casing_source
    assert tokenizer.load_tokenizer(written, lowercase=True).fingerprint == inferred.fingerprint
    accents = _alone(wordpiece_dir / "vocab.txt", tmp_path / "accents", {"do_lower_case": True, "strip_accents": False})
    kept_accents = tokenizer.load_tokenizer(accents)
    assert _encodes_as(kept_accents, accents, do_lower_case=True, strip_accents=False)
    assert kept_accents.fingerprint not in (inferred.fingerprint, kept.fingerprint)


def test_a_bare_vocab_txt_is_read_with_the_casing_it_was_trained_with(trained_wordpiece, tmp_path):
    lowercase, _, folder = trained_wordpiece
    alone = _alone(folder / "vocab.txt", tmp_path / "alone")
    found = tokenizer.load_tokenizer(alone)
    assert found.lowercase == lowercase and "inferred" in found.casing_source
    assert ("upper-case letters (" in found.casing_source) != lowercase  # the cased one names examples
    assert _encodes_as(found, alone, do_lower_case=lowercase)


def test_casing_that_contradicts_the_tokenizer_is_an_error(wordpiece_dir, sp_tokenizer_path):
    assert tokenizer.load_tokenizer(wordpiece_dir / "tokenizer.json", lowercase=True).lowercase
    for path in (wordpiece_dir, wordpiece_dir / "tokenizer.json"):
        with pytest.raises(ValueError, match="lowercase=False .* contradicts .*tokenizer.json, whose normaliser "
                                             "lower-cases"):
            tokenizer.load_tokenizer(path, lowercase=False)
    assert not tokenizer.load_tokenizer(sp_tokenizer_path, lowercase=False).lowercase
    with pytest.raises(ValueError, match="contradicts the SentencePiece model"):
        tokenizer.load_tokenizer(sp_tokenizer_path, lowercase=True)


def test_tokenizer_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing not found; train one"):
        tokenizer.load_tokenizer(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has neither tokenizer.json nor vocab.txt"):
        tokenizer.load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("\n".join(tokenizer.SPECIAL_TOKENS))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer_config.json is not valid JSON"):
        tokenizer.load_tokenizer(tmp_path)
