"""Sentence pairs for BERT's sentence task, built from a document on the fly.

This is google-research/bert's `create_instances_from_document`, run per (document, epoch) with a
generator seeded from both, so each epoch cuts and pairs documents anew and every run cuts them alike:

- a target length: `max_num_tokens`, or with probability `short_seq_prob` a random length in
  [2, max_num_tokens] (short sequences make fine-tuning on short inputs work);
- sentences are gathered into a chunk until the target is reached, and the chunk is cut at a random
  sentence boundary into A and B;
- `nsp`: half of the time B is replaced by text from a random other document (label 1, "random next"),
  and the unused sentences are given back to be the start of the next chunk; label 0 means B follows A;
- `sop` (ALBERT): A and B are always consecutive; half of the time they are swapped (label 1). A chunk
  of one sentence is cut inside that sentence, so that the label never lies;
- `none`: one segment, no label;
- the pair is truncated to `max_num_tokens` by removing tokens from the longer segment, from its front
  or its back at random.
"""

from collections.abc import Callable, Sequence

import numpy as np

SENTENCE_TASKS = ("nsp", "sop", "none")
Document = Sequence[np.ndarray]  # token ids per sentence


def truncate_pair(tokens_a: np.ndarray, tokens_b: np.ndarray, max_num_tokens: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Remove tokens from the longer segment, each from its front or its back at random."""
    excess = len(tokens_a) + len(tokens_b) - max_num_tokens
    if excess <= 0:
        return tokens_a, tokens_b
    front = rng.random(excess) < 0.5
    spans = [[0, len(tokens_a)], [0, len(tokens_b)]]  # [start, end) kept of each segment
    for from_front in front:
        longer = spans[0] if spans[0][1] - spans[0][0] > spans[1][1] - spans[1][0] else spans[1]
        if from_front:
            longer[0] += 1
        else:
            longer[1] -= 1
    return tokens_a[spans[0][0]:spans[0][1]], tokens_b[spans[1][0]:spans[1][1]]


def randint(rng: np.random.Generator, low: int, high: int) -> int:
    """A uniform integer in [low, high): `rng.integers` costs ten times more per call."""
    return low + int(rng.random() * (high - low))


def _concat(sentences: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(sentences) if len(sentences) else np.zeros(0, np.int32)


def document_pairs(document: Document, rng: np.random.Generator, *, max_num_tokens: int, short_seq_prob: float,
                   sentence_task: str, random_document: Callable[[np.random.Generator], Document]
                   ) -> list[tuple[np.ndarray, np.ndarray | None, int]]:
    """(tokens_a, tokens_b, label) triples from one document; tokens_b is None for `none`.

    `random_document(rng)` returns another document (for NSP's random next segments).
    """
    if sentence_task not in SENTENCE_TASKS:
        raise ValueError(f"sentence_task={sentence_task!r}: choose one of {SENTENCE_TASKS}.")
    target_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_length = randint(rng, 2, max_num_tokens + 1)

    pairs, chunk, chunk_length, index = [], [], 0, 0
    while index < len(document):
        chunk.append(document[index])
        chunk_length += len(document[index])
        if index == len(document) - 1 or chunk_length >= target_length:
            if sentence_task == "none":
                tokens = _concat(chunk)
                start = randint(rng, 0, len(tokens) - max_num_tokens + 1) if len(tokens) > max_num_tokens else 0
                pairs.append((tokens[start:start + max_num_tokens], None, 0))
            else:
                pair, unused = _cut_chunk(chunk, rng, target_length, sentence_task, random_document)
                index -= unused
                if pair is not None:
                    tokens_a, tokens_b, label = pair
                    tokens_a, tokens_b = truncate_pair(tokens_a, tokens_b, max_num_tokens, rng)
                    pairs.append((tokens_a, tokens_b, label))
            chunk, chunk_length = [], 0
        index += 1
    return [pair for pair in pairs if len(pair[0]) and (pair[1] is None or len(pair[1]))]


def _cut_chunk(chunk, rng, target_length, sentence_task, random_document):
    """One chunk -> ((A, B, label) or None, number of sentences given back)."""
    a_end = 1 if len(chunk) < 2 else randint(rng, 1, len(chunk))
    tokens_a = _concat(chunk[:a_end])
    if sentence_task == "nsp":
        if len(chunk) == 1 or rng.random() < 0.5:
            other = random_document(rng)
            if not len(other):
                return None, 0
            start = randint(rng, 0, len(other))
            tokens_b, needed = [], target_length - len(tokens_a)
            for sentence in other[start:]:
                tokens_b.append(sentence)
                if sum(map(len, tokens_b)) >= needed:
                    break
            return (tokens_a, _concat(tokens_b), 1), len(chunk) - a_end
        return (tokens_a, _concat(chunk[a_end:]), 0), 0
    # sop
    if len(chunk) == 1:
        sentence = chunk[0]
        if len(sentence) < 2:
            return None, 0
        cut = randint(rng, 1, len(sentence))
        tokens_a, tokens_b = sentence[:cut], sentence[cut:]
    else:
        tokens_b = _concat(chunk[a_end:])
    if rng.random() < 0.5:
        return (tokens_b, tokens_a, 1), 0
    return (tokens_a, tokens_b, 0), 0
