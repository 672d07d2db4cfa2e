"""Sentence pairs: labels balanced and true, lengths within bounds."""

import numpy as np
import pytest

from bertjax.data.pairs import document_pairs, truncate_pair

SENTENCES_PER_DOCUMENT = 12


def _documents(count, rng):
    """Token t encodes (document, global position): document * 10,000 + position, so tests can locate it."""
    documents = []
    for doc in range(count):
        lengths = rng.integers(3, 30, SENTENCES_PER_DOCUMENT)
        positions = np.arange(lengths.sum())
        documents.append(np.split(doc * 10_000 + positions, np.cumsum(lengths)[:-1]))
    return documents


def _pairs(task, documents, seed=0, short_seq_prob=0.1, max_num_tokens=61):
    out = []
    for index, document in enumerate(documents):
        def random_document(rng, index=index):
            other = index
            while other == index:
                other = int(rng.integers(len(documents)))
            return documents[other]

        rng = np.random.default_rng([seed, index])
        out.extend(document_pairs(document, rng, max_num_tokens=max_num_tokens, short_seq_prob=short_seq_prob,
                                  sentence_task=task, random_document=random_document))
    return out


def test_nsp_positive_is_the_next_segment_and_negative_another_document():
    pairs = _pairs("nsp", _documents(300, np.random.default_rng(0)))
    labels = np.array([label for _, _, label in pairs])
    # BERT's rule draws a random next for half the multi-sentence chunks and for every one-sentence chunk.
    assert 0.45 < labels.mean() < 0.6
    for tokens_a, tokens_b, label in pairs:
        assert len(tokens_a) + len(tokens_b) <= 61 and len(tokens_a) and len(tokens_b)
        doc_a, doc_b = set(tokens_a // 10_000), set(tokens_b // 10_000)
        assert len(doc_a) == 1 and len(doc_b) == 1
        if label == 0:  # B is the text that follows A in the same document
            assert doc_a == doc_b and tokens_b.min() > tokens_a.max()
            assert np.all(np.diff(tokens_a) > 0) and np.all(np.diff(tokens_b) > 0)
        else:
            assert doc_a != doc_b


def test_sop_swaps_half_and_never_leaves_the_document():
    pairs = _pairs("sop", _documents(300, np.random.default_rng(1)))
    labels = np.array([label for _, _, label in pairs])
    assert 0.45 < labels.mean() < 0.55
    for tokens_a, tokens_b, label in pairs:
        assert set(tokens_a // 10_000) == set(tokens_b // 10_000)
        if label == 0:
            assert tokens_b.min() > tokens_a.max()
        else:
            assert tokens_a.min() > tokens_b.max()


def test_single_segment_without_sentence_task():
    pairs = _pairs("none", _documents(50, np.random.default_rng(2)), max_num_tokens=62)
    assert all(tokens_b is None and 0 < len(tokens_a) <= 62 for tokens_a, tokens_b, _ in pairs)


def test_short_sequences_follow_short_seq_prob():
    documents = _documents(400, np.random.default_rng(3))

    def mean_length(probability):
        return np.mean([len(a) + len(b) for a, b, _ in _pairs("sop", documents, short_seq_prob=probability)])

    assert mean_length(1.0) < 0.75 * mean_length(0.0)


def test_truncation_removes_from_the_longer_segment_at_both_ends():
    rng = np.random.default_rng(4)
    fronts = backs = 0
    for _ in range(200):
        tokens_a, tokens_b = np.arange(40), np.arange(100, 110)
        kept_a, kept_b = truncate_pair(tokens_a, tokens_b, 30, rng)
        assert len(kept_a) + len(kept_b) == 30 and len(kept_b) == 10  # only the longer one lost tokens
        fronts += kept_a[0] > 0
        backs += kept_a[-1] < 39
    assert fronts > 150 and backs > 150
    kept_a, kept_b = truncate_pair(np.arange(5), np.arange(5), 30, rng)
    assert len(kept_a) == len(kept_b) == 5


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="sentence_task='mlm'"):
        _pairs("mlm", _documents(2, np.random.default_rng(5)))
