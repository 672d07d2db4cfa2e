"""Masking statistics over many examples, against BERT's recipe."""

import numpy as np
import pytest

from bertjax.data.masking import MaskingTables, mask_example, prediction_slots

VOCAB = 1000
MASK_ID = 4


def _tables(word_start=None):
    is_special = np.zeros(VOCAB, bool)
    is_special[:5] = True  # [PAD] [UNK] [CLS] [SEP] [MASK]
    if word_start is None:
        word_start = np.ones(VOCAB, bool)
    return MaskingTables(MASK_ID, is_special, word_start, np.arange(5, VOCAB, dtype=np.int32))


def _example(rng, length):
    """[CLS] A [SEP] B [SEP] with ordinary tokens."""
    tokens = rng.integers(5, VOCAB, length)
    tokens[0], tokens[length // 2], tokens[-1] = 2, 3, 3
    return tokens


def test_selection_count_and_80_10_10_split():
    rng = np.random.default_rng(0)
    tables = _tables()
    counts = {"mask": 0, "random": 0, "kept": 0}
    for index in range(3000):
        length = int(rng.integers(10, 129))
        tokens = _example(rng, length)
        masked = mask_example(tokens, np.random.default_rng([7, index]), tables)
        assert len(masked.positions) == min(20, max(1, round(length * 0.15)))  # BERT's count
        assert np.all(np.diff(masked.positions) > 0)
        assert not tables.is_special[tokens[masked.positions]].any()  # never [CLS], [SEP] or padding
        np.testing.assert_array_equal(masked.targets, tokens[masked.positions])
        unselected = np.setdiff1d(np.arange(length), masked.positions)
        np.testing.assert_array_equal(masked.input_ids[unselected], tokens[unselected])
        chosen = masked.input_ids[masked.positions]
        counts["mask"] += int(np.sum(chosen == MASK_ID))
        counts["kept"] += int(np.sum(chosen == tokens[masked.positions]))
        counts["random"] += int(np.sum((chosen != MASK_ID) & (chosen != tokens[masked.positions])))
    total = sum(counts.values())
    # ~35,000 predictions: three standard deviations of a 10% share are 0.5%.
    assert counts["mask"] / total == pytest.approx(0.8, abs=0.01)
    assert counts["random"] / total == pytest.approx(0.1 * (1 - 1 / 995), abs=0.008)
    assert counts["kept"] / total == pytest.approx(0.1, abs=0.008)


def test_every_position_is_equally_likely():
    tables = _tables()
    tokens = _example(np.random.default_rng(1), 40)
    hits = np.zeros(40)
    for index in range(4000):
        hits[mask_example(tokens, np.random.default_rng(index), tables).positions] += 1
    ordinary = np.flatnonzero(~tables.is_special[tokens])
    expected = 4000 * 6 / len(ordinary)  # round(40 * 0.15) = 6 of 37 ordinary tokens
    assert np.all(np.abs(hits[ordinary] - expected) < 5 * np.sqrt(expected))
    assert hits[tables.is_special[tokens]].sum() == 0


def test_whole_word_masking_takes_words_whole_with_one_decision():
    rng = np.random.default_rng(2)
    word_start = rng.random(VOCAB) < 0.5  # half the vocabulary continues a word
    tables = _tables(word_start)
    decisions = {"mask": 0, "other": 0}
    for index in range(2000):
        tokens = _example(rng, int(rng.integers(20, 129)))
        masked = mask_example(tokens, np.random.default_rng([3, index]), tables, whole_word=True)
        budget = min(20, max(1, round(len(tokens) * 0.15)))
        assert 0 < len(masked.positions) <= budget
        selected = np.zeros(len(tokens), bool)
        selected[masked.positions] = True
        # Words: a start token (or any token after a special one) and the continuation tokens after it.
        word = np.cumsum(word_start[tokens] | np.r_[True, tables.is_special[tokens[:-1]]])
        for word_id in np.unique(word[selected]):
            members = (word == word_id) & ~tables.is_special[tokens]
            assert selected[members].all()  # all or nothing
            is_mask = masked.input_ids[members] == MASK_ID
            assert is_mask.all() or not is_mask.any()  # one 80/10/10 decision per word
            decisions["mask" if is_mask.all() else "other"] += 1
    assert decisions["mask"] / sum(decisions.values()) == pytest.approx(0.8, abs=0.02)


def test_same_generator_state_gives_the_same_mask():
    tables = _tables()
    tokens = _example(np.random.default_rng(3), 100)
    first = mask_example(tokens, np.random.default_rng([1, 2, 3]), tables)
    again = mask_example(tokens, np.random.default_rng([1, 2, 3]), tables)
    other = mask_example(tokens, np.random.default_rng([1, 2, 4]), tables)
    np.testing.assert_array_equal(first.input_ids, again.input_ids)
    assert not np.array_equal(first.positions, other.positions)


def test_prediction_slots_pad_with_zero_weight():
    weights = np.array([0, 1, 0, 1, 0])
    targets = np.array([0, 7, 0, 9, 0])
    slots = prediction_slots(weights, targets, 4)
    np.testing.assert_array_equal(slots["masked_positions"], [1, 3, 0, 0])
    np.testing.assert_array_equal(slots["masked_ids"], [7, 9, 0, 0])
    np.testing.assert_array_equal(slots["masked_weights"], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="raise max_predictions_per_seq"):
        prediction_slots(weights, targets, 1)
