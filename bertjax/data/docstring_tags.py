"""A token-tagging data set made from the built-in corpus, labelled by the code instead of by hand.

In each function's docstring, a word is tagged when the function's own code says what it names:

    ARG   one of the function's parameters (`def open(path, mode)`: "Open *path* in *mode*")
    DEF   a class or function defined at the top level of the same module, with the attributes that follow
          it at once (`Decimal.quantize` is one entity of three words: Decimal . quantize)

The labels come from the syntax tree (`ast`), the input is the docstring's text alone, so a tagger must guess
from the wording what the signature and the module say. Tags are IOB2; a parameter named like a short English
function word ("a", "to", ...) is not tagged (it would tag the article).

A second data set, `calls`, asks what only the right context answers, so that a left-to-right model is at
a disadvantage and a bidirectional one is not: in every docstring sentence with a parenthesis,

    CALL  a name written on at once before "(", with the dotted names before it (`os.path.join(a, b)`: one
          entity of five words, os . path . join), while `os.path` alone, or `join (see below)`, is no call

so that a tagger at the word "os" must look two, four or more words ahead to know its tag.

    function docstring (as the corpus keeps it) ─ its sentences ─ words (identifiers, numbers, single other
    characters) ─ tags ─ train / validation / test by a hash of the docstring (80/10/10, as the `stdlib`
    classification task splits) ─ CoNLL files of `word tag` lines, read by `bertjax.tasks.ner.read_conll`
"""

import ast
import collections
import hashlib
import pathlib
import re
from collections.abc import Iterator

from bertjax import files
from bertjax.data import corpus

ENTITY_TYPES = ("ARG", "DEF")
CALL_TYPES = ("CALL",)
KINDS = {"names": ENTITY_TYPES, "calls": CALL_TYPES}  # the data sets `prepare` builds, and their entity types
SPLITS = ("train", "validation", "test")
MIN_WORDS, MAX_WORDS = 3, 40  # sentences outside these lengths are left out

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\S")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNTAGGED_NAMES = frozenset({"self", "cls", "a", "A", "I", "an", "the", "to", "of", "on", "at", "by", "for", "with",
                             "and", "not", "it", "be", "no", "do", "so", "we", "me", "up"})

Sentence = tuple[tuple[str, ...], tuple[str, ...]]  # words, IOB2 tags


def parameter_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    arguments = function.args
    names = [arg.arg for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
    names += [arg.arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
    return set(names) - _UNTAGGED_NAMES


def module_definitions(tree: ast.Module) -> set[str]:
    """The classes and functions a module defines at its top level (dunder names aside)."""
    names = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}
    return {name for name in names if not name.startswith("__")} - _UNTAGGED_NAMES


def tag_sentence(sentence: str, parameters: set[str], definitions: set[str]) -> Sentence:
    """A sentence's words and their IOB2 tags. A parameter shadows a module-level name of the same spelling,
    as it does in the function's body."""
    matches = list(_WORD.finditer(sentence))
    words = [match.group() for match in matches]
    tags = ["O"] * len(words)
    index = 0
    while index < len(words):
        if words[index] in parameters:
            tags[index] = "B-ARG"
        elif words[index] in definitions:
            tags[index] = "B-DEF"
            # `.attribute` written on at once (no space) belongs to the reference: Decimal.quantize
            while (index + 2 < len(words) and words[index + 1] == "."
                   and matches[index].end() == matches[index + 1].start()
                   and matches[index + 1].end() == matches[index + 2].start()
                   and _IDENTIFIER.fullmatch(words[index + 2])):
                tags[index + 1] = tags[index + 2] = "I-DEF"
                index += 2
        index += 1
    return tuple(words), tuple(tags)


def split_of(document: list[str]) -> str:
    """A docstring's split, from a hash of its text: the `stdlib` classification task's buckets, so a
    docstring in both tasks lies in the same split of each."""
    bucket = int(hashlib.sha1(" ".join(document).encode()).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def module_sentences(tree: ast.Module) -> Iterator[tuple[str, list[Sentence]]]:
    """(split, tagged sentences) for each function or method docstring of a parsed module, in source order;
    docstrings are kept as the built-in corpus keeps them (longer than `corpus.MIN_DOCSTRING_CHARS`)."""
    definitions = module_definitions(tree)
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for node in sorted(functions, key=lambda node: (node.lineno, node.col_offset)):
        docstring = corpus.docstring_of(node)
        if not docstring or len(" ".join(docstring.split())) <= corpus.MIN_DOCSTRING_CHARS:
            continue
        document = corpus.docstring_document(docstring)
        parameters = parameter_names(node)
        sentences = [tag_sentence(sentence, parameters, definitions) for sentence in document]
        sentences = [sentence for sentence in sentences if MIN_WORDS <= len(sentence[0]) <= MAX_WORDS]
        if sentences:
            yield split_of(document), sentences


def build() -> dict[str, list[Sentence]]:
    """The data set from the installed Python's standard library (the built-in corpus's files)."""
    splits = {split: [] for split in SPLITS}
    for path in corpus.stdlib_files():
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue
        for split, sentences in module_sentences(tree):
            splits[split].extend(sentences)
    return splits


def tag_calls(sentence: str) -> Sentence:
    """A sentence's words and their IOB2 CALL tags: a name followed at once by "(" is a call, and so are the
    names and dots written on at once before it (`os.path.join(`)."""
    matches = list(_WORD.finditer(sentence))
    words = [match.group() for match in matches]
    tags = ["O"] * len(words)

    def joined(left: int) -> bool:  # word `left` is written on at once before word `left + 1`
        return matches[left].end() == matches[left + 1].start()

    for index in range(len(words) - 1):
        if words[index + 1] == "(" and joined(index) and _IDENTIFIER.fullmatch(words[index]):
            start = index
            while (start >= 2 and words[start - 1] == "." and joined(start - 1) and joined(start - 2)
                   and _IDENTIFIER.fullmatch(words[start - 2])):
                start -= 2
            if tags[start] == "O":
                tags[start:index + 1] = ["B-CALL", *["I-CALL"] * (index - start)]
    return tuple(words), tuple(tags)


def build_calls(documents=None) -> dict[str, list[Sentence]]:
    """The `calls` data set from (package, document) pairs (the built-in corpus's by default): every sentence
    of `MIN_WORDS` to `MAX_WORDS` words that holds a "(", split by its docstring's hash."""
    splits = {split: [] for split in SPLITS}
    for _, document in corpus.builtin_documents() if documents is None else documents:
        split = split_of(document)
        for sentence in document:
            if "(" in sentence:
                words, tags = tag_calls(sentence)
                if MIN_WORDS <= len(words) <= MAX_WORDS:
                    splits[split].append((words, tags))
    return splits


def entity_counts(sentences: list[Sentence], types: tuple[str, ...] = ENTITY_TYPES) -> dict[str, int]:
    """Entities per type (B- tags), and words."""
    counts = collections.Counter(tag[2:] for _, tags in sentences for tag in tags if tag.startswith("B-"))
    return {**{name: counts[name] for name in types}, "words": sum(len(words) for words, _ in sentences)}


def write_conll(sentences: list[Sentence], path: pathlib.Path) -> None:
    """`word tag` lines, a blank line after each sentence; written whole or not at all."""
    text = "".join("".join(f"{word} {tag}\n" for word, tag in zip(words, tags)) + "\n" for words, tags in sentences)
    files.write_text(path, text)


def prepare(directory: str | pathlib.Path, kind: str = "names") -> dict[str, pathlib.Path]:
    """`train.conll`, `validation.conll` and `test.conll` of data set `kind` (of `KINDS`) in `directory`,
    built once (reused when there)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: choose one of {list(KINDS)}.")
    directory = pathlib.Path(directory)
    paths = {split: directory / f"{split}.conll" for split in SPLITS}
    if not all(path.is_file() for path in paths.values()):
        directory.mkdir(parents=True, exist_ok=True)
        for split, sentences in (build() if kind == "names" else build_calls()).items():
            write_conll(sentences, paths[split])
    return paths
