"""Corpus readers. Each yields documents in a fixed order, streaming: memory does not grow with the corpus. A
document is a list of sentences (strings), or a text (`str`) still to be split into sentences by
`text_document`: the readers of formats that hold running text leave that to their consumer, so that
preparation splits in its worker processes (splitting costs several times the reading).

- `read_text_files`: BERT's format (one sentence per line, a blank line between documents), or
  `paragraphs` (one document per line, a text). A file that is another format (JSON lines,
  Parquet, Arrow, compressed or binary) is refused, naming the prefix that reads it.
- `read_jsonl`, `read_delimited` (CSV, TSV), `read_parquet`, `read_hf_dataset` (a folder written by
  `datasets`' `save_to_disk`): one record = one document, a text in a named field or column. Empty and
  null texts are skipped.
- `read_tfds`: any TFDS dataset through `tfds.data_source` (no TensorFlow), one text per record.
- `read_builtin`: the built-in default corpus, read offline from the installed Python: the docstrings of
  the standard library (with `ast`, never importing a module), one document per module, class or
  function docstring longer than 80 characters, tests excluded; and the `pydoc_data.topics` help texts.
- `read_environment` (`builtin:environment`): the built-in corpus, then the docstrings and `.md`/`.rst`
  files of every package installed in this interpreter's site-packages (parsed, never imported), a
  document repeated word for word kept once. `Fingerprint` records a corpus's size and content hash, which
  prepared data keeps in its metadata (this corpus depends on what is installed).

`open_corpus(spec)` picks the reader a `--corpus` value names and splits texts into sentences, unless asked
not to (`split=False`).
"""

import ast
import functools
import glob
import hashlib
import itertools
import json
import pathlib
import re
import sysconfig
from collections.abc import Iterable, Iterator, Sequence

from bertjax import files
from bertjax.data import records

Document = list[str]  # its sentences; a reader may yield a text (`str`) instead: see `text_document`

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


def text_document(text: str | Document) -> Document:
    """A text -> its sentences (each line split at sentence ends); a document of sentences as it is."""
    if not isinstance(text, str):
        return text
    return [sentence for line in text.split("\n") for sentence in split_sentences(line)]


def _has_text(text: str | None) -> bool:
    return bool(text) and not text.isspace()


# --- text files -------------------------------------------------------------------------------------------

def _bert_documents(lines: Iterable[str]) -> Iterator[Document]:
    document: Document = []
    for line in lines:
        line = line.strip()
        if line:
            document.append(line)
        elif document:
            yield document
            document = []
    if document:
        yield document


def _line_documents(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        if _has_text(line):
            yield line.rstrip("\n")


# What a file's first bytes say it is, and the --corpus prefix that reads it.
_MAGIC = (
    (b"PAR1", "a Parquet file", "parquet:{path}[:COLUMN]"),
    (b"ARROW1", "an Arrow IPC file", "parquet: once converted to Parquet"),
    (b"\xff\xff\xff\xff", "an Arrow stream (the data file of a saved HF dataset?)",
     "hf:FOLDER[:SPLIT][:COLUMN] on its folder"),
    (b"\x1f\x8b", "gzip-compressed", None),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", None),
    (b"PK\x03\x04", "a zip archive", "the files it holds, once unzipped"),
)
_SUFFIXES = {".csv": "csv:{path}:COLUMN", ".tsv": "tsv:{path}:COLUMN", ".parquet": "parquet:{path}[:COLUMN]"}


def _json_record(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _first_line(data: bytes) -> bytes:
    return next((line for line in data.split(b"\n") if line.strip()), b"")


def check_text_file(path: pathlib.Path, prefix: str) -> None:
    """Refuse, in one line naming the file and the prefix that reads it, a file given to `text:` or
    `paragraphs:` that is JSON lines, columnar, compressed or binary."""
    with open(path, "rb") as file:
        head = file.read(1 << 16)
    found = next(((what, fix) for magic, what, fix in _MAGIC if head.startswith(magic)), None)
    if found and found[1] is None:  # compressed: say what it holds
        with records.open_binary(path) as file:
            inner = file.read(1 << 16)
        fix = (f"jsonl:{path}[:FIELD] (it holds JSON lines)" if _json_record(_first_line(inner)) is not None
               else f"{prefix}: on the decompressed file")
        found = (found[0], fix)
    elif found is None and b"\0" in head:
        found = ("binary data", "the prefix of its format (see --help for --corpus)")
    elif found is None and (record := _json_record(_first_line(head))) is not None:
        found = ("JSON lines", f"jsonl:{path}[:FIELD] (its first record's fields: {', '.join(sorted(record))})")
    elif found is None and path.suffix.lower() in _SUFFIXES:
        found = (f"a {path.suffix.lower()[1:].upper()} file", _SUFFIXES[path.suffix.lower()])
    if found:
        what, fix = found
        raise ValueError(f"{path} is {what}, not text for {prefix}:; read it with {fix.format(path=path)}.")


def read_text_files(paths: Sequence[str | pathlib.Path], text_format: str = "bert") -> Iterator[Document | str]:
    """Documents from text files, in the order given. `text_format`: "bert" (one sentence per line, a blank
    line between documents: lists of sentences) or "paragraphs" (one document per line: texts, for
    `text_document` to split). Every file is checked before any is read."""
    if text_format not in ("bert", "paragraphs"):
        raise ValueError(f"text_format={text_format!r}: choose 'bert' (one sentence per line) or 'paragraphs'.")
    prefix = "text" if text_format == "bert" else "paragraphs"
    paths = _existing(paths, prefix)
    for path in paths:
        check_text_file(path, prefix)
    return _text_documents(paths, _bert_documents if text_format == "bert" else _line_documents)


def _text_documents(paths, documents) -> Iterator[Document | str]:
    for path in paths:
        with open(path, "rb") as file:
            yield from documents(files.decoded_lines(file, path))


def _existing(paths: Sequence[str | pathlib.Path], prefix: str) -> list[pathlib.Path]:
    """The paths, checked to be files: a directory is named with the prefix that reads it."""
    paths = [pathlib.Path(path) for path in paths]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise FileNotFoundError(f"Corpus file(s) not found: {', '.join(missing)}.")
    for path in paths:
        if path.is_dir():
            saved = any((path / name).is_file() for name in ("dataset_dict.json", "state.json"))
            raise ValueError(f"{path} is a directory; " + (f"a saved HF dataset, read it with hf:{path}." if saved
                             else f"name its files: {prefix}:{path}/*"))
    return paths


# --- records: JSON lines, CSV and TSV, Parquet, saved HF datasets (rows read by `records`) -------------------

def _record_text(value, where: str, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} holds {type(value).__name__} {str(value)[:40]!r}, not text; name the "
                         "field or column that holds the document's text.")
    return value if _has_text(value) else None


def _record_texts(paths: list[pathlib.Path], rows, column: str, spec: str, **options) -> Iterator[str]:
    """The texts of `column` in the rows of every file, each file's start (header, schema, first record)
    checked before any file is read on; `spec(path)` is the --corpus form that names another column."""
    def file_rows(path):
        return rows(path, [column], fix=f"Name the one holding the text: {spec(path)}.", **options)

    for path in paths:
        if (first := next(file_rows(path), None)) is not None:
            _record_text(first.values[column], first.where, column)
    return (text for path in paths for row in file_rows(path)
            if (text := _record_text(row.values[column], row.where, column)))


def read_jsonl(paths: Sequence[str | pathlib.Path], field: str = "text") -> Iterator[str]:
    """One document per JSON object per line (blank lines skipped); gzip and zstd files are read as they are."""
    return _record_texts(_existing(paths, "jsonl"), records.jsonl_rows, field, lambda path: f"jsonl:{path}:FIELD")


def read_delimited(paths: Sequence[str | pathlib.Path], column: str, delimiter: str = ",") -> Iterator[str]:
    """One document per row of CSV (or TSV: `delimiter="\\t"`) files with a header row, quoted as Python's
    csv module reads Excel's dialect; gzip and zstd files are read as they are."""
    kind = "tsv" if delimiter == "\t" else "csv"
    return _record_texts(_existing(paths, kind), records.delimited_rows, column,
                         lambda path: f"{kind}:{path}:COLUMN", delimiter=delimiter)


def read_parquet(paths: Sequence[str | pathlib.Path], column: str = "text") -> Iterator[str]:
    """One document per row of Parquet files, read a row group at a time, in batches of rows (never a whole
    file)."""
    return _record_texts(_existing(paths, "parquet"), records.parquet_rows, column,
                         lambda path: f"parquet:{path}:COLUMN")


def hf_dataset_files(folder: str | pathlib.Path, split: str | None = None) -> list[pathlib.Path]:
    """The Arrow files of a folder written by `datasets`' `Dataset.save_to_disk` (one dataset) or
    `DatasetDict.save_to_disk` (a folder per split; `split` picks one, "train" by default)."""
    folder = pathlib.Path(folder)
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        split = split or "train"
        if split not in splits:
            raise ValueError(f"{folder} holds the splits {', '.join(splits)}, not {split!r}; name one: "
                             f"hf:{folder}:SPLIT[:COLUMN].")
        folder = folder / split
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(f"{folder} is not a folder written by datasets' save_to_disk (no state.json "
                                "or dataset_dict.json there).")
    state = json.loads((folder / "state.json").read_text())
    return [folder / entry["filename"] for entry in state["_data_files"]]


def read_hf_dataset(folder: str | pathlib.Path, split: str | None = None, column: str = "text") -> Iterator[str]:
    """One document per row of a saved HF dataset, read with pyarrow from its Arrow stream files a record
    batch at a time (`datasets` itself is not needed)."""
    spec = f"hf:{folder}{f':{split}' if split else ''}:COLUMN"
    return _record_texts(_existing(hf_dataset_files(folder, split), "hf"), records.arrow_stream_rows, column,
                         lambda path: spec)


def read_tfds(name: str, split: str, text_field: str, data_dir: str | None = None) -> Iterator[str]:
    """Texts from a prepared TFDS dataset (ArrayRecord format), read through `tfds.data_source`: each
    record's `text_field` is one document (a text: `text_document` splits it)."""
    import tensorflow_datasets as tfds  # needs no TensorFlow for data_source

    source = tfds.data_source(name, split=split, data_dir=data_dir)
    for index in range(len(source)):
        record = source[index]
        if text_field not in record:
            raise KeyError(f"TFDS {name}[{split}] record {index} has no field {text_field!r}; "
                           f"fields: {sorted(record)}.")
        text = record[text_field]
        text = text.decode("utf-8") if isinstance(text, bytes) else str(text)  # real data is bytes, mocks str
        if _has_text(text):
            yield text


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


# --- the environment corpus: the standard library and every package installed beside it --------------------

DOCUMENTATION_SUFFIXES = (".md", ".rst")
_FENCE = re.compile(r"^\s*(```|~~~)")
_UNDERLINE = re.compile(r"^\s*([=\-~^*#+\"'`])\1{2,}\s*$")
_MARKUP = re.compile(r"^\s*(\.\. |:[a-z]+:|\||<|\[!|!\[)")


def environment_root() -> pathlib.Path:
    """Where this interpreter installs packages: its environment's site-packages."""
    return pathlib.Path(sysconfig.get_paths()["purelib"])


def environment_files(root: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    """(package, file) for every Python source and documentation file (`.md`, `.rst`) under the top-level
    packages installed in `root`, in sorted order; tests, caches and installer metadata left out. A top-level
    module (`six.py`) is its own package."""
    found = []
    for entry in sorted(root.iterdir()):
        if entry.suffix in (".dist-info", ".egg-info", ".pth", ".libs") or entry.name.startswith((".", "__")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            found.append((entry.stem, entry))
        elif entry.is_dir():
            for path in sorted(entry.rglob("*")):
                parts = path.relative_to(root).parts
                if (path.suffix not in (".py", *DOCUMENTATION_SUFFIXES) or set(parts[:-1]) & _EXCLUDED_DIRS
                        or any(part.startswith(("test", ".")) for part in parts[1:]) or not path.is_file()):
                    continue
                found.append((entry.name, path))
    return found


def documentation_document(text: str) -> Document:
    """A Markdown or reStructuredText file -> sentences of its prose: fenced and indented code, tables,
    directives, headings' underlines and markup-only lines dropped, paragraphs joined."""
    sentences, paragraph, fenced = [], [], False
    for line in [*text.splitlines(), ""]:
        if _FENCE.match(line):
            fenced = not fenced
            continue
        prose = not (fenced or line.startswith(("    ", "\t")) or _UNDERLINE.match(line) or _MARKUP.match(line)
                     or line.lstrip().startswith((">>>", "...", "#")))
        if prose and line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            sentences.extend(split_sentences(" ".join(paragraph)))
            paragraph = []
    return sentences


def _file_documents(path: pathlib.Path) -> list[Document]:
    """A source file's docstrings (module, classes, functions) longer than `MIN_DOCSTRING_CHARS`, or a
    documentation file as one document; parsed, never imported. Unreadable or unparsable files give none."""
    try:
        data = path.read_bytes()
        if path.suffix in DOCUMENTATION_SUFFIXES:
            document = documentation_document(data.decode("utf-8", errors="replace"))
            return [document] if len(" ".join(document)) > MIN_DOCSTRING_CHARS else []
        tree = ast.parse(data, filename=str(path))
    except (SyntaxError, ValueError, OSError, RecursionError):
        return []
    documents = []
    for node in [tree, *(node for node in ast.walk(tree)
                         if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))]:
        docstring = docstring_of(node)
        if docstring and len(" ".join(docstring.split())) > MIN_DOCSTRING_CHARS:
            document = docstring_document(docstring)
            if document:
                documents.append(document)
    return documents


def environment_documents(root: str | pathlib.Path | None = None) -> Iterator[tuple[str, Document]]:
    """(package, document) pairs of the environment corpus, in a fixed order: the built-in corpus (the
    standard library), then each package installed in `root` (this interpreter's site-packages by default),
    a document repeated word for word kept once (libraries copy docstrings between modules). Deterministic
    given the environment: the same installed files give the same documents."""
    seen = set()
    for package, document in itertools.chain(
            builtin_documents(),
            ((package, document) for package, path in environment_files(
                environment_root() if root is None else pathlib.Path(root)) for document in _file_documents(path))):
        key = hashlib.sha1("\n".join(document).encode()).digest()
        if key not in seen:
            seen.add(key)
            yield package, document


def read_environment(root: str | pathlib.Path | None = None) -> Iterator[Document]:
    for _, document in environment_documents(root):
        yield document


class Fingerprint:
    """Size and content hash of a corpus as it is read (documents of sentences, or texts): what a prepared
    data set records to say which text it holds (the environment corpus depends on what is installed)."""

    def __init__(self):
        self._digest, self.documents, self.bytes = hashlib.sha256(), 0, 0

    def update(self, document: Document | str) -> None:
        text = (document if isinstance(document, str) else "\n".join(document)).encode()
        self._digest.update(len(text).to_bytes(8, "little") + text)
        self.documents, self.bytes = self.documents + 1, self.bytes + len(text)

    def record(self) -> dict:
        return {"documents": self.documents, "bytes": self.bytes, "sha256": self._digest.hexdigest()}

    def passing(self, documents: Iterable[Document | str]) -> Iterator[Document | str]:
        """`documents` unchanged, each counted and hashed as it passes."""
        for document in documents:
            self.update(document)
            yield document


def corpus_fingerprint(documents: Iterable[Document | str]) -> dict:
    """`Fingerprint`'s record of a whole corpus."""
    fingerprint = Fingerprint()
    for document in documents:
        fingerprint.update(document)
    return fingerprint.record()


CORPORA = """\
builtin                              the built-in corpus (the default): the standard library's docstrings
builtin:environment                  the built-in corpus and the docstrings and .md/.rst files of every
                                     package installed beside it (read with ast, never imported)
text:FILES                           BERT's format: one sentence per line, a blank line between documents
paragraphs:FILES                     one document per line, split into sentences
jsonl:FILES[:FIELD]                  JSON lines, one record per document (.gz and .zst read as they are);
                                     FIELD defaults to text
csv:FILES:COLUMN, tsv:FILES:COLUMN   a header row, then one row per document
parquet:FILES[:COLUMN]               Parquet, one row per document; COLUMN defaults to text
hf:FOLDER[:SPLIT][:COLUMN]           a folder written by datasets' save_to_disk; SPLIT defaults to train (of a
                                     DatasetDict), COLUMN to text
tfds:NAME:SPLIT:FIELD[:DATA_DIR]     a prepared TFDS dataset's text field
FILES: glob patterns, comma-separated. A record's text is split into sentences at line breaks and
sentence ends."""


def open_corpus(spec: str, split: bool = True) -> Iterator[Document | str]:
    """Documents from a corpus named on the command line (`CORPORA` lists the forms). The files are found
    and their formats checked now; a corpus that gives no document is an error when it is read.
    `split=False` leaves texts unsplit, for a consumer that splits them with `text_document` (in parallel)."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "builtin" and not parts:
        documents = read_builtin()
    elif kind == "builtin" and parts == ["environment"]:
        documents = read_environment()
    elif kind in ("text", "paragraphs") and len(parts) == 1:
        documents = read_text_files(expand(spec, parts[0]), "bert" if kind == "text" else "paragraphs")
    elif kind == "jsonl" and len(parts) in (1, 2):
        documents = read_jsonl(expand(spec, parts[0]), *parts[1:])
    elif kind in ("csv", "tsv") and len(parts) == 2:
        documents = read_delimited(expand(spec, parts[0]), parts[1], "," if kind == "csv" else "\t")
    elif kind == "parquet" and len(parts) in (1, 2):
        documents = read_parquet(expand(spec, parts[0]), *parts[1:])
    elif kind == "hf" and len(parts) in (1, 2, 3):
        folder, extra = pathlib.Path(parts[0]), parts[1:]
        if len(extra) == 1 and not (folder / "dataset_dict.json").is_file():
            extra = [None, extra[0]]  # one dataset: no split, the one extra part is the column
        documents = read_hf_dataset(folder, *extra)
    elif kind == "tfds" and len(tfds_parts := re.split(r":(?![^\[]*\])", rest, maxsplit=3)) in (3, 4):
        documents = read_tfds(*tfds_parts)  # no split inside a slice: train[:10%]
    else:
        raise ValueError(f"Corpus {spec!r} is not one of these forms:\n{CORPORA}")
    documents = _not_empty(documents, spec)
    return (text_document(document) for document in documents) if split else documents


def expand(spec: str, patterns: str) -> list[str]:
    """The files comma-separated glob `patterns` name, each pattern's sorted; one that matches none is an error."""
    paths = []
    for pattern in patterns.split(","):
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{spec!r}: no file matches {pattern!r}.")
        paths.extend(matches)
    return paths


def _not_empty(documents: Iterator[Document | str], spec: str) -> Iterator[Document | str]:
    count = 0
    for count, document in enumerate(documents, 1):
        yield document
    if count == 0:
        raise ValueError(f"Corpus {spec!r} holds no documents: its files are empty, or the field or column named "
                         "holds no text.")
