"""Prepared data: tokenized documents in ArrayRecord shards, with a JSON metadata file.

    DIR/metadata.json                 format, tokenizer fingerprint and vocab size, counts per split
    DIR/tokenizer/                    the tokenizer they were made with (a copy that loads the same)
    DIR/train-00000.array_record      one record per document, up to `documents_per_shard` per file
    DIR/validation-00000.array_record

A record is int32 [number of sentences, each sentence's length..., the token ids...]. Documents go to the
validation split by a hash of their text (stable whatever the order or the number of workers), and fill a
split's shards in order. Preparation streams: documents are read, tokenized by worker processes and written
a window at a time; an ArrayRecord writer keeps about 90 bytes per record until it closes, so a shard is
closed after `documents_per_shard` documents and memory does not grow with the corpus. The directory
appears only when complete: it is written beside its final name and renamed into place.
"""

import hashlib
import itertools
import json
import multiprocessing
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
from absl import logging
from array_record.python.array_record_module import ArrayRecordWriter

from bertjax import files
from bertjax.data import corpus
from bertjax.data.corpus import text_document
from bertjax.data.tokenizer import Tokenizer, copy_tokenizer, load_tokenizer

FORMAT = "bertjax-tokenized-documents"
TOKENIZER_DIR = "tokenizer"  # DIR/tokenizer/: a copy of the tokenizer the shards were made with
VERSION = 1
SPLITS = ("train", "validation")


def encode_document(sentences: Sequence[Sequence[int]]) -> bytes:
    lengths = [len(sentence) for sentence in sentences]
    tokens = list(itertools.chain.from_iterable(sentences))
    return np.array([len(lengths), *lengths, *tokens], np.int32).tobytes()


def decode_document(record: bytes) -> list[np.ndarray]:
    values = np.frombuffer(record, np.int32) if len(record) % 4 == 0 else np.zeros(0, np.int32)
    count = int(values[0]) if len(values) else -1
    lengths = values[1:1 + count] if 0 <= count < len(values) else None
    if lengths is None or (lengths < 0).any() or 1 + count + int(lengths.sum()) != len(values):
        raise ValueError(f"a malformed document record ({len(record)} bytes do not hold the sentence count, "
                         "lengths and tokens of the prepared format)")
    ends = (np.cumsum(values[1:1 + count]) + 1 + count).tolist()
    return [values[start:end] for start, end in zip([1 + count] + ends[:-1], ends)]


class DocumentSource:
    """Random access to a split's documents (a grain data source; picklable for worker processes)."""

    def __init__(self, paths: Sequence[str]):
        import grain

        self._paths = list(paths)
        self._source = grain.sources.ArrayRecordDataSource(self._paths)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> list[np.ndarray]:
        try:
            return decode_document(self._source[index])
        except ValueError as error:
            raise ValueError(f"Record {index} of the shards {', '.join(self._paths)}: {error}; prepare the data "
                             "again (bertjax prepare_data --overwrite).") from None

    def __getstate__(self):
        return {"paths": self._paths}

    def __setstate__(self, state):
        self.__init__(state["paths"])


def resolve_tokenizer(data) -> str:
    """The tokenizer a run of the config's `data` group reads: `data.tokenizer`, else the copy in
    `data.prepared_dir` (made by `bertjax prepare_data`), as an absolute path for the run's config.json."""
    if data.tokenizer:
        return data.tokenizer
    if not data.prepared_dir:
        raise ValueError("data.prepared_dir is not set: prepare a corpus with `bertjax prepare_data --tokenizer TOK "
                         "--output_dir DIR` and pass --config.data.prepared_dir=DIR.")
    directory = pathlib.Path(data.prepared_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"data.prepared_dir {directory} not found; make it with `bertjax prepare_data "
                                f"--tokenizer TOK --output_dir {directory}`.")
    copy = directory / TOKENIZER_DIR
    if not copy.is_dir():
        raise ValueError(f"data.tokenizer is not set and {directory} holds no {TOKENIZER_DIR}/ (it was prepared "
                         "before prepare_data kept a copy): pass --config.data.tokenizer=THE_TOKENIZER_IT_WAS_MADE_WITH, "
                         "or prepare it again.")
    return str(copy.resolve())


def load_metadata(directory: str | pathlib.Path) -> dict:
    directory = pathlib.Path(directory)
    path = directory / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not prepared data; "
                                "make it with bertjax prepare_data.")
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); prepare the data again.") from None
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise ValueError(f"{path}: format {metadata.get('format')!r} version {metadata.get('version')!r}, expected "
                         f"{FORMAT!r} version {VERSION}; prepare the data again with this bertjax.")
    return metadata


def split_paths(directory: str | pathlib.Path, split: str) -> list[str]:
    """The shard files of one split, checked to exist and to hold documents."""
    directory = pathlib.Path(directory)
    metadata = load_metadata(directory)
    if split not in metadata["splits"]:
        raise KeyError(f"{directory} has no split {split!r}; it has {sorted(metadata['splits'])}.")
    info = metadata["splits"][split]
    if info["documents"] == 0:
        raise ValueError(f"Split {split!r} of {directory} holds no documents; prepare the data again with more "
                         "text, a larger --validation_fraction or a --validation_corpus.")
    paths = [directory / name for name in info["shards"]]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"Shard(s) missing from {directory}: {', '.join(missing)}; prepare the data again.")
    return [str(path) for path in paths]


def check_compatible(directory: str | pathlib.Path, tokenizer: Tokenizer, model_vocab_size: int | None = None):
    """Fail before training when the shards, the tokenizer and the model do not belong together, or when a
    split that training reads or evaluates on holds no documents."""
    metadata = load_metadata(directory)
    for split in SPLITS:
        split_paths(directory, split)
    if metadata["tokenizer_fingerprint"] != tokenizer.fingerprint:
        raise ValueError(
            f"{directory} was prepared with another tokenizer (fingerprint {metadata['tokenizer_fingerprint'][:12]}, "
            f"from {metadata.get('tokenizer_path')}) than the one configured (fingerprint "
            f"{tokenizer.fingerprint[:12]}); prepare the data again with this tokenizer, or configure that one (a "
            "vocab.txt read with other casing is another tokenizer: see data.lowercase).")
    if model_vocab_size is not None and model_vocab_size < tokenizer.vocab_size:
        raise ValueError(f"The model's vocab_size={model_vocab_size} is smaller than the tokenizer's "
                         f"{tokenizer.vocab_size}; set config.model.vocab_size >= {tokenizer.vocab_size}.")


# --- preparation ------------------------------------------------------------------------------------------

_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_path: str, lowercase: bool | None = None) -> None:
    global _worker_tokenizer
    _worker_tokenizer = load_tokenizer(tokenizer_path, lowercase)


def _in_validation(sentences: Sequence[str], fraction: float) -> bool:
    digest = hashlib.blake2b("\n".join(sentences).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def _tokenize_chunk(job: tuple[list[list[str] | str], float]) -> list[tuple[bytes, int, int, bool]]:
    texts, validation_fraction = job
    documents = [text_document(text) for text in texts]  # texts are split into sentences here, in parallel
    flat = [sentence for document in documents for sentence in document]
    encoded = iter(_worker_tokenizer.encode_batch(flat))
    results = []
    for document in documents:
        sentences = [ids for ids in itertools.islice(encoded, len(document)) if ids]
        if sentences:
            results.append((encode_document(sentences), len(sentences), sum(map(len, sentences)),
                            _in_validation(document, validation_fraction)))
    return results


class _SplitWriter:
    """Writes one split's documents into shards of at most `documents_per_shard` records."""

    def __init__(self, directory: pathlib.Path, split: str, documents_per_shard: int):
        self._directory, self._split, self._per_shard = directory, split, documents_per_shard
        self._writer = None
        self.shards: list[str] = []
        self.counts = {"documents": 0, "sentences": 0, "tokens": 0}

    def write(self, record: bytes, sentences: int, tokens: int) -> None:
        if self.counts["documents"] % self._per_shard == 0:
            self.close()
            self.shards.append(f"{self._split}-{len(self.shards):05d}.array_record")
            self._writer = ArrayRecordWriter(str(self._directory / self.shards[-1]), "group_size:1")
        self._writer.write(record)
        self.counts["documents"] += 1
        self.counts["sentences"] += sentences
        self.counts["tokens"] += tokens

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def prepare(documents: Iterable[list[str] | str], tokenizer_path: str | pathlib.Path, output_dir: str | pathlib.Path, *,
            documents_per_shard: int = 10_000, validation_fraction: float = 0.01,
            validation_documents: Iterable[list[str] | str] | None = None, allow_empty_validation: bool = False,
            num_workers: int = 2, chunk_documents: int = 256, overwrite: bool = False, source: str = "",
            validation_source: str = "", lowercase: bool | None = None) -> dict:
    """Tokenize documents into ArrayRecord shards under `output_dir`; returns the metadata written. A document
    is a list of sentences, or a text that the tokenizing workers split (`corpus.text_document`).

    `validation_fraction` of `documents` (by a hash of each) go to the validation split, and all of
    `validation_documents` if given. An empty validation split is an error (nothing is written) unless
    `allow_empty_validation`: pretraining evaluates on it. `lowercase`: as `load_tokenizer`'s (None: the
    tokenizer's own casing)."""
    output_dir = pathlib.Path(output_dir)
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction={validation_fraction}: the share of documents held out is at least "
                         "0 and below 1 (0.01 holds out 1%).")
    for name, value in (("documents_per_shard", documents_per_shard), ("num_workers", num_workers),
                        ("chunk_documents", chunk_documents)):
        if value < 1:
            raise ValueError(f"{name}={value}: it must be at least 1.")
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} exists; choose another directory or pass --overwrite.")
    with files.replacing_directory(output_dir) as staging:
        # A copy beside the shards: pretraining reads it, so data and tokenizer cannot part (see resolve_tokenizer).
        tokenizer = copy_tokenizer(tokenizer_path, lowercase, staging / TOKENIZER_DIR)
        writers = {split: _SplitWriter(staging, split, documents_per_shard) for split in SPLITS}
        fingerprint = corpus.Fingerprint()
        chunks = ((chunk, validation_fraction) for chunk in _batched(fingerprint.passing(documents),
                                                                      chunk_documents))
        if validation_documents is not None:  # a fraction of 1 sends every document to validation
            chunks = itertools.chain(chunks, ((chunk, 1.0) for chunk in _batched(validation_documents,
                                                                                 chunk_documents)))
        context = multiprocessing.get_context("spawn")
        with context.Pool(num_workers, initializer=_init_worker, initargs=(str(tokenizer_path), lowercase)) as pool:
            while window := list(itertools.islice(chunks, 4 * num_workers)):  # bounded: a window at a time
                for results in pool.imap(_tokenize_chunk, window):
                    for record, sentences, tokens, validation in results:
                        writers["validation" if validation else "train"].write(record, sentences, tokens)
        for writer in writers.values():
            writer.close()
        if writers["train"].counts["documents"] == 0:
            raise ValueError(f"No training documents were prepared from {source or 'the corpus'}: it is empty, "
                             "or every document went to validation.")
        if writers["validation"].counts["documents"] == 0:
            message = (f"the validation split is empty: none of the {writers['train'].counts['documents']:,} "
                       f"documents of {source or 'the corpus'} fell in validation_fraction={validation_fraction}. "
                       "Raise --validation_fraction or pass --validation_corpus")
            if not allow_empty_validation:
                raise ValueError(f"Nothing was written: {message}; or --allow_empty_validation to prepare it so "
                                 "(pretraining cannot then evaluate).")
            logging.warning("WARNING: %s. Pretraining on these shards cannot evaluate.", message)
        metadata = {
            "format": FORMAT, "version": VERSION, "source": source, "validation_source": validation_source,
            "tokenizer": TOKENIZER_DIR, "tokenizer_path": str(tokenizer_path),
            "tokenizer_fingerprint": tokenizer.fingerprint, "corpus": fingerprint.record(),
            "vocab_size": tokenizer.vocab_size, "validation_fraction": validation_fraction,
            "splits": {split: {"shards": writer.shards, **writer.counts} for split, writer in writers.items()},
        }
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def _batched(items: Iterable, size: int):
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
