"""A sentence-pair task made from the built-in corpus, labelled by the code instead of by hand: do two
sentences come from the same docstring?

Each docstring of the built-in corpus (the standard library's) with at least two sentences of `MIN_WORDS`
words gives one example: its sentence A, and as B either another of its sentences (label `same`) or a
sentence of another docstring of the same top-level package in the same split (label `different`), one
or the other with equal chance. Drawing the other docstring from the same package keeps the package's
vocabulary from telling the answer: a model must judge whether B goes on A's subject. Every draw is seeded
by a hash of the docstring, so the data set is the same on every machine with the same Python.

    docstring ─ train / validation / test by its hash (`docstring_tags.split_of`: the same buckets as the
    `stdlib` and tagging tasks) ─ (A, B, label), in corpus order
"""

import collections
import functools
import hashlib
from collections.abc import Iterable

import numpy as np

from bertjax.data import corpus, docstring_tags

LABELS = ("different", "same")
MIN_WORDS = 4  # shorter sentences ("Args:", "Example.") say too little to judge


def _sentences(document: list[str]) -> list[str]:
    return [sentence for sentence in document if len(sentence.split()) >= MIN_WORDS]


def _rng(document: list[str]) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1(" ".join(document).encode()).hexdigest()[:16], 16))


def build(documents: Iterable[tuple[str, list[str]]]) -> dict[str, list[tuple[str, str, int]]]:
    """(A, B, label) examples per split from (package, document) pairs; label 1 = same docstring."""
    by_split = collections.defaultdict(list)  # split -> [(package, sentences, document)]
    for package, document in documents:
        sentences = _sentences(document)
        if len(sentences) >= 2:
            by_split[docstring_tags.split_of(document)].append((package, sentences, document))
    splits = {split: [] for split in docstring_tags.SPLITS}
    for split, docstrings in by_split.items():
        by_package = collections.defaultdict(list)
        for position, (package, _, _) in enumerate(docstrings):
            by_package[package].append(position)
        for position, (package, sentences, document) in enumerate(docstrings):
            rng = _rng(document)
            first, second = rng.choice(len(sentences), 2, replace=False)
            others = [other for other in by_package[package] if other != position]
            if rng.random() < 0.5 or not others:
                splits[split].append((sentences[first], sentences[second], 1))
            else:
                other = docstrings[others[rng.integers(len(others))]][1]
                splits[split].append((sentences[first], other[rng.integers(len(other))], 0))
    return splits


@functools.cache
def _built() -> dict[str, list[tuple[str, str, int]]]:
    return build(corpus.builtin_documents())


def examples(split: str) -> list[tuple[str, str, int]]:
    """One split of the task built from the built-in corpus (built once per process)."""
    return _built()[split]
