"""The offline corpus and the tasks made from it, labelled by the code: the environment corpus reads
installed packages without importing them, the same files give the same documents, the pair and
right-context tasks label hand examples as their rules say, and a learning-curve point draws its labels by
seed."""

import collections

import pytest

from bertjax.data import corpus, docstring_pairs, docstring_tags, shards
from bertjax.tasks import glue
from bertjax.tasks.base import label_subset

LONG = "This sentence is long enough to count as documentation of the thing it describes here."


def _site_packages(root):
    """A fake site-packages: a package with a docstring, documentation, tests and caches; an installer's
    metadata; a module whose import would leave a trace."""
    package = root / "demo_pkg"
    (package / "tests").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "docs").mkdir()
    (package / "__init__.py").write_text(f'"""{LONG} It has two sentences."""\n')
    (package / "core.py").write_text(
        f'import pathlib\npathlib.Path("{root}/imported").write_text("x")\n\n'
        f'def run(x):\n    """{LONG} Run it on x."""\n\n\nclass Thing:\n    """short"""\n')
    (package / "tests" / "test_core.py").write_text(f'"""{LONG} A test."""\n')
    (package / "__pycache__" / "core.py").write_text(f'"""{LONG} A cache."""\n')
    (package / "docs" / "guide.md").write_text(
        f"# Guide\n\n{LONG}\nIt goes on over a second line.\n\n```python\nprint('code')\n```\n\n    indented code\n")
    (package / "broken.py").write_text("def (:\n")
    (root / "demo_pkg-1.0.dist-info").mkdir()
    (root / "demo_pkg-1.0.dist-info" / "METADATA.md").write_text(f"{LONG} Installer metadata.\n")
    (root / "single.py").write_text(f'"""{LONG} A top-level module, and a copy below."""\n'
                                    f'def f():\n    """{LONG} Run it on x."""\n')
    return root


def _environment(root):
    return [(package, document) for package, document in corpus.environment_documents(root)
            if package in ("demo_pkg", "single")]


def test_the_environment_corpus_reads_docstrings_and_docs_without_importing(tmp_path):
    root = _site_packages(tmp_path)
    found = _environment(root)
    assert found == [
        ("demo_pkg", [LONG, "It has two sentences."]),
        ("demo_pkg", [LONG, "Run it on x."]),
        ("demo_pkg", [LONG, "It goes on over a second line."]),  # the guide: prose only, code dropped
        ("single", [LONG, "A top-level module, and a copy below."]),  # f's docstring repeats run's: kept once
    ]
    assert not (root / "imported").exists()  # parsed, never imported


def test_the_environment_corpus_starts_with_the_standard_library_and_is_deterministic(tmp_path):
    root = _site_packages(tmp_path)
    documents = list(corpus.environment_documents(root))
    builtin, seen = [], set()
    for package, document in corpus.builtin_documents():
        if tuple(document) not in seen:
            seen.add(tuple(document))
            builtin.append((package, document))
    assert documents[:len(builtin)] == builtin  # the standard library first, a repeated docstring once
    assert corpus.corpus_fingerprint(d for _, d in documents) == corpus.corpus_fingerprint(
        d for _, d in corpus.environment_documents(root))
    (root / "demo_pkg" / "extra.py").write_text(f'"""{LONG} New."""\n')
    assert corpus.corpus_fingerprint(d for _, d in corpus.environment_documents(root))["documents"] == len(documents) + 1


def test_the_fingerprint_counts_and_hashes_what_it_reads():
    first = corpus.corpus_fingerprint([["a b.", "c."], "d e"])
    assert (first["documents"], first["bytes"]) == (2, len("a b.\nc.") + len("d e"))
    assert first == corpus.corpus_fingerprint([["a b.", "c."], "d e"])
    assert first["sha256"] != corpus.corpus_fingerprint([["a b.", "c.", ""], "d e"])["sha256"]
    assert first["sha256"] != corpus.corpus_fingerprint([["a b."], ["c."], "d e"])["sha256"]  # boundaries count


def test_prepared_data_records_the_corpus_it_read(tmp_path, sp_tokenizer_path, builtin_documents):
    documents = builtin_documents[:60]
    metadata = shards.prepare(documents, sp_tokenizer_path, tmp_path / "data", validation_fraction=0.2,
                              source="test", num_workers=1)
    assert metadata["corpus"] == corpus.corpus_fingerprint(documents)


def test_the_environment_corpus_is_named_on_the_command_line():
    assert "builtin:environment" in corpus.CORPORA
    with pytest.raises(ValueError, match="is not one of these forms"):
        corpus.open_corpus("builtin:everything")


# --- the sentence-pair task ---------------------------------------------------------------------------------
def _document(package_word, count, words=6):
    return [" ".join([f"{package_word}{index}"] + ["word"] * (words - 1)) + "." for index in range(count)]


def test_a_pair_is_two_sentences_of_one_docstring_or_of_another_of_its_package():
    documents = [("pkg_a", _document(f"a{n}x", 3)) for n in range(40)] + [("pkg_b", _document("b0x", 2)),
                                                                          ("pkg_a", ["Too short.", "Also."])]
    built = docstring_pairs.build(documents)
    source = {sentence: (package, n) for n, (package, document) in enumerate(documents) for sentence in document}
    examples = [example for split in built.values() for example in split]
    assert len(examples) == 41  # one per docstring of two long sentences; the short one gives none
    labels = collections.Counter(label for _, _, label in examples)
    assert labels[0] > 5 and labels[1] > 5
    for first, second, label in examples:
        assert first != second
        (package_a, doc_a), (package_b, doc_b) = source[first], source[second]
        assert package_a == package_b  # a negative comes from the same package
        assert (doc_a == doc_b) == (label == 1)
    assert docstring_pairs.build(documents) == built  # seeded by the text


def test_a_docstring_alone_in_its_package_gives_a_positive_pair():
    built = docstring_pairs.build([("lonely", _document("z", 2))])
    assert [label for split in built.values() for _, _, label in split] == [1]


def test_the_pair_task_is_a_builtin_classification_task():
    train = glue.builtin_examples("same_docstring", "train")
    assert len(train[0].texts) == 2 and {example.label for example in train} == {0, 1}
    assert glue.BUILTIN_TASKS["same_docstring"].labels == ("different", "same")


# --- the right-context task ----------------------------------------------------------------------------------
def test_a_call_is_the_dotted_name_written_right_before_a_parenthesis():
    words, tags = docstring_tags.tag_calls("Use os.path.join(a, b), not os.path or join (see below); f(x).")
    tagged = [(word, tag) for word, tag in zip(words, tags) if tag != "O"]
    assert tagged == [("os", "B-CALL"), (".", "I-CALL"), ("path", "I-CALL"), (".", "I-CALL"), ("join", "I-CALL"),
                      ("f", "B-CALL")]
    assert words[:3] == ("Use", "os", ".")


def test_the_calls_data_keeps_sentences_with_a_parenthesis_split_by_docstring():
    documents = [("p", ["Call open(path) to read the file here.", "No parenthesis in this one at all."]),
                 ("p", ["Tiny ("])]
    built = docstring_tags.build_calls(documents)
    kept = [sentence for split in built.values() for sentence in split]
    assert len(kept) == 1 and kept[0][1][1] == "B-CALL"  # the short sentence and the one without "(" left out
    assert built[docstring_tags.split_of(documents[0][1])] == kept
    assert docstring_tags.entity_counts(kept, docstring_tags.CALL_TYPES)["CALL"] == 1


def test_prepare_refuses_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind='verbs'"):
        docstring_tags.prepare(tmp_path, kind="verbs")


# --- learning-curve points --------------------------------------------------------------------------------
def test_a_learning_curve_point_draws_its_labels_by_seed():
    examples = list(range(100))
    first = label_subset(examples, 10, seed=1, name="t")
    assert len(first) == 10 and first == sorted(first) and first == label_subset(examples, 10, seed=1, name="t")
    assert first != label_subset(examples, 10, seed=2, name="t")
    assert label_subset(examples, 0, seed=1, name="t") == examples
    with pytest.raises(ValueError, match="finetune.train_examples=200: t's training split has only 100"):
        label_subset(examples, 200, seed=1, name="t")


def test_a_draw_with_labels_is_stratified_and_fills_small_classes_from_the_rest():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 2
    examples = list(range(len(labels)))
    drawn = label_subset(examples, 30, seed=0, name="t", labels=labels)
    counts = collections.Counter(labels[index] for index in drawn)
    assert len(drawn) == 30 == len(set(drawn)) and counts["c"] == 2  # c gives all it has ...
    assert counts["a"] + counts["b"] == 28 and min(counts["a"], counts["b"]) >= 10  # ... a and b their shares and more
    even = collections.Counter(labels[index] for index in label_subset(examples, 7, seed=1, name="t", labels=labels))
    assert sorted(even.values()) == [2, 2, 3]  # 7 // 3 each, the remainder to one class drawn at random
    assert label_subset(examples, 30, seed=0, name="t", labels=labels) == drawn
