"""Layer combinations and pooling are what their names say; feature files read back as a direct forward pass."""

import numpy as np
import pytest

from bertjax import features


def _hidden_states(count=5, shape=(2, 3, 4)):
    rng = np.random.default_rng(0)
    return tuple(rng.normal(size=shape).astype(np.float32) for _ in range(count))


def test_named_combinations_by_hand():
    hidden = _hidden_states()
    expected = {
        "first": hidden[0], "last": hidden[4], "second_to_last": hidden[3],
        "sum_last_four": hidden[1] + hidden[2] + hidden[3] + hidden[4],
        "concat_last_four": np.concatenate(hidden[1:], axis=-1),
        "mean_all": (hidden[1] + hidden[2] + hidden[3] + hidden[4]) / 4,
    }
    assert set(expected) == set(features.COMBINATIONS)
    for how, want in expected.items():
        np.testing.assert_allclose(features.combine_layers(hidden, how), want, rtol=1e-6, err_msg=how)


def test_explicit_layer_list_concatenates_in_order():
    hidden = _hidden_states()
    combined = features.combine_layers(hidden, [-1, 0, 2])
    assert combined.shape == (2, 3, 12)
    np.testing.assert_array_equal(combined, np.concatenate([hidden[4], hidden[0], hidden[2]], axis=-1))
    assert features.parse_layers("-1, 0,2") == [-1, 0, 2]
    assert features.parse_layers("sum_last_four") == "sum_last_four"


def test_bad_layer_choices_are_named():
    hidden = _hidden_states(count=3)
    with pytest.raises(ValueError, match=r"Layer indices \[3, -4\] are out of range"):
        features.combine_layers(hidden, [3, -4, 1])
    with pytest.raises(ValueError, match="needs four hidden states"):
        features.combine_layers(hidden, "sum_last_four")
    with pytest.raises(ValueError, match="'best' is not one of"):
        features.combine_layers(hidden, "best")
    with pytest.raises(ValueError, match="Layer choice 'last2'"):
        features.parse_layers("last2")


def test_pooling_cls_and_mean_over_real_tokens():
    hidden = _hidden_states(count=1)[0]
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(features.pool(hidden, mask, "cls"), hidden[:, 0])
    mean = features.pool(hidden, mask, "mean")
    np.testing.assert_allclose(mean[0], hidden[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(mean[1], hidden[1].mean(0), rtol=1e-6)
    with pytest.raises(ValueError, match="Pooling 'max'"):
        features.pool(hidden, mask, "max")
