"""The docstring tagging data set: labels from the code on a hand-made module, IOB2 that reads back, a split
that depends on the docstring alone."""

import ast
import textwrap

from bertjax.data import docstring_tags
from bertjax.tasks import ner

MODULE = textwrap.dedent('''
    """A module."""

    class Parser:
        def parse(self, text, strict=False, *, a=None, **options):
            """Parse *text* with Parser.feed before the parse ends. If strict is true, a bad text raises; the
            options go to helper and Parser. Feed it."""

        def feed(self, data):
            """Feed data to the Parser; a helper (Parser . feed) written with spaces is still one reference."""

    def helper(path, helper=0):
        """Return path unchanged, or helper itself when path is empty. Parser.feed.__doc__ is documentation."""

    def _short(x):
        """Too short."""
''')


def _entities(sentence):
    words, tags = sentence
    return [(word, tag) for word, tag in zip(words, tags) if tag != "O"]


def test_labels_come_from_the_signature_and_the_module():
    tree = ast.parse(MODULE)
    assert docstring_tags.module_definitions(tree) == {"Parser", "helper", "_short"}  # not the methods
    parse_function = next(node for node in ast.walk(tree) if getattr(node, "name", None) == "parse")
    assert docstring_tags.parameter_names(parse_function) == {"text", "strict", "options"}  # not self, not "a"
    found = list(docstring_tags.module_sentences(tree))
    assert len(found) == 3  # in source order; _short's docstring is shorter than the corpus keeps
    (_, parse), (_, feed), (_, helper) = found
    assert parse[0] == (("Parse", "*", "text", "*", "with", "Parser", ".", "feed", "before", "the", "parse", "ends",
                         "."),
                        ("O", "O", "B-ARG", "O", "O", "B-DEF", "I-DEF", "I-DEF", "O", "O", "O", "O", "O"))
    # "a" names a parameter but is left untagged; "Parser." ends its entity at the full stop.
    assert _entities(parse[1]) == [("strict", "B-ARG"), ("text", "B-ARG"), ("options", "B-ARG"),
                                   ("helper", "B-DEF"), ("Parser", "B-DEF")]
    assert parse[1][0][-2:] == ("Parser", ".")
    assert parse[2] == (("Feed", "it", "."), ("O", "O", "O"))
    # Spaces break an attribute chain: "Parser . feed" is a reference to Parser, then two untagged words.
    assert _entities(feed[0]) == [("data", "B-ARG"), ("Parser", "B-DEF"), ("helper", "B-DEF"), ("Parser", "B-DEF")]
    # A parameter shadows the module's function of the same name; a chain extends over every attribute.
    assert _entities(helper[0]) == [("path", "B-ARG"), ("helper", "B-ARG"), ("path", "B-ARG")]
    assert _entities(helper[1]) == [("Parser", "B-DEF"), (".", "I-DEF"), ("feed", "I-DEF"), (".", "I-DEF"),
                                    ("__doc__", "I-DEF")]


def test_sentences_outside_the_length_limits_are_left_out():
    tree = ast.parse(MODULE)
    for _, sentences in docstring_tags.module_sentences(tree):
        assert all(docstring_tags.MIN_WORDS <= len(words) <= docstring_tags.MAX_WORDS for words, _ in sentences)
    words = " ".join(f"w{i}" for i in range(docstring_tags.MAX_WORDS + 1))
    long_module = f'def f(w3):\n    """{words}. A second sentence that names w3 and is long enough to keep."""\n'
    (_, sentences), = docstring_tags.module_sentences(ast.parse(long_module))
    assert len(sentences) == 1 and sentences[0][1][sentences[0][0].index("w3")] == "B-ARG"


def test_the_data_set_is_iob2_reads_back_and_splits_by_docstring(tmp_path):
    splits = docstring_tags.build()
    counts = {split: docstring_tags.entity_counts(sentences) for split, sentences in splits.items()}
    assert all(counts[split]["ARG"] > 300 and counts[split]["DEF"] > 100 for split in docstring_tags.SPLITS)
    assert len(splits["train"]) > 6 * len(splits["validation"])
    for sentences in splits.values():
        for words, tags in sentences:
            assert ner.to_iob2(tags) == list(tags)  # every I- continues an entity of its type
            assert all(tag == "O" or tag[2:] in docstring_tags.ENTITY_TYPES for tag in tags)
            assert all(word and not any(space in word for space in " \t\n") for word in words)
    for split, sentences in splits.items():
        docstring_tags.write_conll(sentences, tmp_path / f"{split}.conll")
        assert [(s.words, s.tags) for s in ner.read_conll(tmp_path / f"{split}.conll")] == sentences
    # The split is a function of the docstring's text alone: the same text, the same split, in any order.
    document = ["Return the path.", "The file is not opened."]
    assert docstring_tags.split_of(document) == docstring_tags.split_of(list(document))
    assert {docstring_tags.split_of([f"Sentence {i}."]) for i in range(200)} == set(docstring_tags.SPLITS)
