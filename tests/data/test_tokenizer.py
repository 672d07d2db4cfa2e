"""The tokenizer interface: SentencePiece trained here, WordPiece as HF encodes it."""

import unicodedata

import numpy as np
import pytest
import transformers

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
    with pytest.raises(FileNotFoundError, match="tools/train_tokenizer.py"):
        tokenizer.load_tokenizer(tmp_path / "missing.model")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="lacks the special tokens"):
        tokenizer.load_tokenizer(tmp_path / "vocab.txt")
