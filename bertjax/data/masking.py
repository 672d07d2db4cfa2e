"""BERT's masked-LM input corruption, on the fly, in numpy.

Masking runs in the input pipeline rather than inside the jitted step: each example's mask is a function
of (seed, document, epoch) alone, whatever the batch it lands in, the number of devices or hosts, or the
place a resumed run starts from; and it costs the accelerator nothing (about 15 us per example of length
128 on one CPU core; the whole pipeline's rate is in docs/performance.md).

The rule is google-research/bert's: predict round(15% of the example's tokens) (at least one, at most
`max_predictions`), chosen at random among the non-special tokens — whole words at a time with whole-word
masking, never going over the count — and replace each chosen token by [MASK] 80% of the time, a random
token 10%, and keep it 10%. With whole-word masking that 80/10/10 choice is made once per word.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskingTables:
    """What masking needs to know of the vocabulary (from `Tokenizer`)."""

    mask_id: int
    is_special: np.ndarray  # (V,) bool: never selected
    word_start: np.ndarray  # (V,) bool: begins a word (whole-word masking groups the rest with it)
    replacement_ids: np.ndarray  # ids drawn for the "random token" replacement

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "MaskingTables":
        is_special = np.zeros(tokenizer.vocab_size, bool)
        is_special[tokenizer.special_ids] = True
        return cls(tokenizer.mask_id, is_special, tokenizer.word_start, tokenizer.replacement_ids)


@dataclasses.dataclass(frozen=True)
class MaskedExample:
    input_ids: np.ndarray  # (n,) the corrupted tokens
    positions: np.ndarray  # (k,) sorted positions to predict
    targets: np.ndarray  # (k,) the original tokens there


def _word_groups(candidate: np.ndarray, starts_word: np.ndarray) -> np.ndarray:
    """Group id per candidate position (-1 elsewhere): a new group at each word start, or after a gap."""
    previous_candidate = np.concatenate([[False], candidate[:-1]])
    starts = candidate & (starts_word | ~previous_candidate)
    return np.where(candidate, np.cumsum(starts) - 1, -1)


def mask_example(tokens: np.ndarray, rng: np.random.Generator, tables: MaskingTables, *, rate: float = 0.15,
                 max_predictions: int = 20, whole_word: bool = False, mask_fraction: float = 0.8,
                 random_fraction: float = 0.1) -> MaskedExample:
    """Corrupt one example's tokens (n,) and say which positions to predict."""
    tokens = np.asarray(tokens, np.int32)
    candidate = ~tables.is_special[tokens]
    if not candidate.any():
        return MaskedExample(tokens.copy(), np.zeros(0, np.int32), np.zeros(0, np.int32))
    num_to_predict = min(max_predictions, max(1, int(round(len(tokens) * rate))))

    if whole_word:
        groups = _word_groups(candidate, tables.word_start[tokens])
        num_groups = int(groups.max()) + 1
        sizes = np.bincount(groups[candidate], minlength=num_groups)
        chosen, total = [], 0
        for group in rng.permutation(num_groups):  # words in random order, skipping any that overshoot
            if total + sizes[group] <= num_to_predict:
                chosen.append(group)
                total += sizes[group]
                if total == num_to_predict:
                    break
        group_decision = np.full(num_groups, np.inf)
        group_decision[chosen] = rng.random(len(chosen))  # one 80/10/10 decision per word
        positions = np.flatnonzero(candidate & (group_decision[groups] < np.inf))
        decision = group_decision[groups[positions]]
    else:
        candidates = np.flatnonzero(candidate)
        positions = np.sort(candidates[rng.permutation(len(candidates))[:num_to_predict]])
        decision = rng.random(len(positions))

    corrupted = tokens.copy()
    corrupted[positions[decision < mask_fraction]] = tables.mask_id
    randomised = positions[(decision >= mask_fraction) & (decision < mask_fraction + random_fraction)]
    draws = (rng.random(len(randomised)) * len(tables.replacement_ids)).astype(np.int64)
    corrupted[randomised] = tables.replacement_ids[draws]
    return MaskedExample(corrupted, positions.astype(np.int32), tokens[positions])


def prediction_slots(weights: np.ndarray, targets: np.ndarray, slots: int) -> dict[str, np.ndarray]:
    """Token-aligned (L,) prediction weights and targets -> the fixed (slots,) arrays the model takes:
    `masked_positions`, `masked_ids` and `masked_weights` (0 on unused slots)."""
    positions = np.flatnonzero(weights)
    if len(positions) > slots:
        raise ValueError(f"{len(positions)} masked positions do not fit {slots} prediction slots; "
                         "raise max_predictions_per_seq.")
    masked_positions = np.zeros(slots, np.int32)
    masked_positions[:len(positions)] = positions
    masked_ids = np.zeros(slots, np.int32)
    masked_ids[:len(positions)] = targets[positions]
    masked_weights = np.zeros(slots, np.float32)
    masked_weights[:len(positions)] = 1.0
    return {"masked_positions": masked_positions, "masked_ids": masked_ids, "masked_weights": masked_weights}
