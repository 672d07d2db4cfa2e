"""Corpus readers. Each yields documents, a document being a list of sentences (strings), in a fixed order.

- `read_text_files`: BERT's format (one sentence per line, a blank line between documents), or
  `paragraphs` (one paragraph per line, split into sentences; a blank line between documents).
- `read_tfds`: any TFDS dataset through `tfds.data_source` (no TensorFlow), one document per record.
- `read_builtin`: the built-in default corpus, read offline from the installed Python: the docstrings of
  the standard library (with `ast`, never importing a module), one document per module, class or
  function docstring longer than 80 characters, tests excluded; and the `pydoc_data.topics` help texts.
"""

import ast
import functools
import glob
import pathlib
import re
import sysconfig
from collections.abc import Iterable, Iterator, Sequence

Document = list[str]

# A sentence ends at . ! or ? followed by space and an upper-case letter, digit, quote or bracket; the
# common abbreviations do not end one.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|vs|cf|Mr|Mrs|Dr|No|approx)\.$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences (a rule-based splitter: good on English prose and docs)."""
    text = " ".join(text.split())
    if not text:
        return []
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start:match.start()]
        if _ABBREVIATIONS.search(candidate):
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [sentence for sentence in sentences if sentence]


def _blank_line_documents(lines: Iterable[str], split: bool) -> Iterator[Document]:
    document: Document = []
    for line in lines:
        line = line.strip()
        if not line:
            if document:
                yield document
            document = []
        else:
            document.extend(split_sentences(line) if split else [line])
    if document:
        yield document


def _decoded_lines(file, path: pathlib.Path) -> Iterator[str]:
    """UTF-8 lines, decoded one by one so that a bad one is named by its number."""
    for number, raw in enumerate(file, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}, line {number}: not UTF-8 text ({error.reason} at byte {error.start + 1} of "
                             "the line); convert the file to UTF-8.") from None


def read_text_files(paths: Sequence[str | pathlib.Path], text_format: str = "bert") -> Iterator[Document]:
    """Documents from text files, in the order given. `text_format`: "bert" or "paragraphs"."""
    if text_format not in ("bert", "paragraphs"):
        raise ValueError(f"text_format={text_format!r}: choose 'bert' (one sentence per line) or 'paragraphs'.")
    paths = [pathlib.Path(path) for path in paths]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"Corpus file(s) not found: {', '.join(missing)}.")
    for path in paths:
        with open(path, "rb") as file:
            yield from _blank_line_documents(_decoded_lines(file, path), split=text_format == "paragraphs")


def read_tfds(name: str, split: str, text_field: str, data_dir: str | None = None) -> Iterator[Document]:
    """Documents from a prepared TFDS dataset (ArrayRecord format), read through `tfds.data_source`.
    Each record's `text_field` is one document; each of its lines is split into sentences."""
    import tensorflow_datasets as tfds  # needs no TensorFlow for data_source

    source = tfds.data_source(name, split=split, data_dir=data_dir)
    for index in range(len(source)):
        record = source[index]
        if text_field not in record:
            raise KeyError(f"TFDS {name}[{split}] record {index} has no field {text_field!r}; "
                           f"fields: {sorted(record)}.")
        text = record[text_field]
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)  # real data is bytes, mocks str
        document = [sentence for paragraph in text.split("\n") for sentence in split_sentences(paragraph)]
        if document:
            yield document


# --- the built-in corpus --------------------------------------------------------------------------------

_EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib2to3"}
MIN_DOCSTRING_CHARS = 80


def stdlib_files() -> list[pathlib.Path]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & _EXCLUDED_DIRS or path.name.startswith("test_") or path.parent.name.startswith("test"):
            continue
        files.append(path)
    return files


def docstring_of(node: ast.AST) -> str | None:
    """The docstring of a module, class or function node (ast.get_docstring would import inspect)."""
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        value = body[0].value.value
        return value.strip() if isinstance(value, str) else None
    return None


def docstring_document(docstring: str) -> Document:
    """A docstring -> sentences: paragraphs joined, doctest and indented code lines dropped."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", docstring):
        lines = [line for line in paragraph.splitlines()
                 if not line.strip().startswith((">>>", "..."))]
        sentences.extend(split_sentences(" ".join(lines)))
    return sentences


def builtin_documents() -> Iterator[tuple[str, Document]]:
    """(package, document) pairs of the built-in corpus, in a fixed order. `package` is the top-level
    standard-library package or module a docstring comes from ("pydoc_topics" for the help topics).

    The standard library is parsed once per process (some seconds; the documents then hold a few MB) and
    each call yields fresh lists, so that a caller may change its documents."""
    for package, document in _parsed_builtin():
        yield package, list(document)


@functools.cache
def _parsed_builtin() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((package, tuple(document)) for package, document in _parse_builtin())


def _parse_builtin() -> Iterator[tuple[str, Document]]:
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for path in stdlib_files():
        if path.name == "topics.py" and path.parent.name == "pydoc_data":
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue  # a few stdlib files are templates or for other Python versions
        package = path.relative_to(root).parts[0].removesuffix(".py")
        nodes = [tree] + [node for node in ast.walk(tree)
                          if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        for node in nodes:
            docstring = docstring_of(node)
            if docstring and len(" ".join(docstring.split())) > MIN_DOCSTRING_CHARS:
                document = docstring_document(docstring)
                if document:
                    yield package, document
    topics = root / "pydoc_data" / "topics.py"
    if topics.is_file():
        tree = ast.parse(topics.read_bytes())
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    if isinstance(key, ast.Constant) and isinstance(value, ast.Constant):
                        document = docstring_document(value.value)
                        if document:
                            yield "pydoc_topics", document
                break


def read_builtin() -> Iterator[Document]:
    for _, document in builtin_documents():
        yield document


def open_corpus(spec: str) -> Iterator[Document]:
    """Documents from a corpus named on the command line:

        builtin                              the built-in corpus (the default)
        text:PATTERN[,PATTERN...]            BERT-format text files (one sentence per line)
        paragraphs:PATTERN[,PATTERN...]      text files with one paragraph per line
        tfds:NAME:SPLIT:FIELD[:DATA_DIR]     a prepared TFDS dataset's text field
    """
    kind, _, rest = spec.partition(":")
    if kind == "builtin" and not rest:
        return read_builtin()
    if kind in ("text", "paragraphs") and rest:
        paths = []
        for pattern in rest.split(","):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"Corpus {spec!r}: no file matches {pattern!r}.")
            paths.extend(matches)
        return read_text_files(paths, "bert" if kind == "text" else "paragraphs")
    if kind == "tfds":
        parts = re.split(r":(?![^\[]*\])", rest, maxsplit=3)  # no split inside a slice: train[:10%]
        if len(parts) in (3, 4):
            return read_tfds(*parts)
    raise ValueError(f"Corpus {spec!r} is not one of: builtin, text:FILES, paragraphs:FILES, "
                     "tfds:NAME:SPLIT:FIELD[:DATA_DIR].")
