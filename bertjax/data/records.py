"""Rows of named fields from the files people keep data in: JSON lines (plain, gzip or zstd), CSV and TSV with a
header row, Parquet, and the Arrow stream files of a saved HF dataset. One home for reading them, streaming:
the corpus readers take a text column from each row, the fine-tuning tasks their texts and labels.

Each reader yields `Row(where, values)`: `values` maps each asked-for column to its value (None for an
optional column a row lacks), `where` names the row for messages ("FILE, line N", "FILE, row N"). A required
column that is missing is an error naming the file, the row and the columns there are; the columns of every
file are checked when its reader starts, before its first row.
"""

import csv
import gzip
import io
import json
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple


class Row(NamedTuple):
    where: str  # "FILE, line N" or "FILE, row N"
    values: dict[str, Any]


def missing_column(where: str, kind: str, key: str, names: Iterable[str], fix: str) -> ValueError:
    return ValueError(f"{where}: no {kind} {key!r}; it has {', '.join(map(repr, names)) or 'none'}. {fix}")


def _zstd_open(path):
    import pyarrow as pa

    return io.BufferedReader(pa.input_stream(str(path), compression="zstd"), 1 << 20)


def open_binary(path: str | pathlib.Path):
    """A file, decompressed as it is read when its first bytes say gzip or zstd."""
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic == b"\x28\xb5\x2f\xfd":
        return _zstd_open(path)
    return open(path, "rb")


def jsonl_rows(path: pathlib.Path, columns: Sequence[str], optional: Sequence[str] = (),
               fix: str = "") -> Iterator[Row]:
    """One row per JSON object per line; blank lines are skipped."""
    with open_binary(path) as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{where}: not a JSON record ({error}); JSON lines hold one object per line.") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: a JSON {type(record).__name__}, not an object with the fields "
                                 f"{', '.join(map(repr, columns))}; JSON lines hold one object per line.")
            for column in columns:
                if column not in record:
                    raise missing_column(where, "field", column, sorted(record), fix)
            yield Row(where, {column: record.get(column) for column in (*columns, *optional)})


def delimited_rows(path: pathlib.Path, columns: Sequence[str], optional: Sequence[str] = (), delimiter: str = ",",
                   fix: str = "") -> Iterator[Row]:
    """One row per line of a CSV (or TSV) file after its header row, quoted as Python's csv module reads
    Excel's dialect. A field may be longer than the module's 128 kB default; a BOM is not part of the header."""
    csv.field_size_limit(2**31 - 1)
    with io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                return
            for column in columns:
                if column not in header:
                    raise missing_column(f"{path}, line 1 (the header)", "column", column, header, fix)
            indices = {column: header.index(column) for column in (*columns, *optional) if column in header}
            for row in reader:
                if not row:
                    continue
                where = f"{path}, line {reader.line_num}"
                if len(row) != len(header):
                    raise ValueError(f"{where}: {len(row)} fields where the header has {len(header)}; quote "
                                     f"fields that hold the delimiter {delimiter!r} (csv quoting).")
                yield Row(where, {column: row[indices[column]] if column in indices else None
                                  for column in (*columns, *optional)})
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}, near line {reader.line_num + 1}: not UTF-8 text ({error.reason}); "
                             "convert the file to UTF-8.") from None
        except csv.Error as error:
            raise ValueError(f"{path}, line {reader.line_num}: {error}.") from None


def _batch_rows(path: pathlib.Path, batches, columns: Sequence[str], optional: Sequence[str]) -> Iterator[Row]:
    number = 0
    for batch in batches:
        names = [column for column in (*columns, *optional) if column in batch.schema.names]
        for values in batch.select(names).to_pylist():
            number += 1
            yield Row(f"{path}, row {number}", {column: values.get(column) for column in (*columns, *optional)})


def check_columns(path: pathlib.Path, schema, columns: Sequence[str], fix: str) -> None:
    for column in columns:
        if column not in schema.names:
            raise missing_column(str(path), "column", column, schema.names, fix)


def parquet_file(path: pathlib.Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ValueError(f"{path} is not a Parquet file ({error}).") from None


def parquet_rows(path: pathlib.Path, columns: Sequence[str], optional: Sequence[str] = (),
                 fix: str = "") -> Iterator[Row]:
    """One row per Parquet row, read a row group at a time in batches of rows: over a whole file, pyarrow's
    batch reader keeps every page it has read (a 115 MB file held 115 MB at its end); over one row group it
    keeps that group's."""
    with parquet_file(path) as parquet:
        check_columns(path, parquet.schema_arrow, columns, fix)
        present = [column for column in (*columns, *optional) if column in parquet.schema_arrow.names]

        def batches():
            for group in range(parquet.num_row_groups):
                yield from parquet.iter_batches(batch_size=1024, row_groups=[group], columns=present,
                                                use_threads=False)

        yield from _batch_rows(path, batches(), columns, optional)


def arrow_stream_rows(path: pathlib.Path, columns: Sequence[str], optional: Sequence[str] = (),
                      fix: str = "") -> Iterator[Row]:
    """One row per row of an Arrow stream file (a saved HF dataset's), a record batch at a time."""
    import pyarrow as pa

    with pa.OSFile(str(path)) as file:
        try:
            reader = pa.ipc.open_stream(file)
        except pa.ArrowInvalid as error:
            raise ValueError(f"{path} is not an Arrow stream as save_to_disk writes one ({error}).") from None
        check_columns(path, reader.schema, columns, fix)
        yield from _batch_rows(path, reader, columns, optional)


# File name endings -> (reader, keyword arguments).
FORMATS = {".jsonl": (jsonl_rows, {}), ".jsonl.gz": (jsonl_rows, {}), ".jsonl.zst": (jsonl_rows, {}),
           ".csv": (delimited_rows, {}), ".csv.gz": (delimited_rows, {}),
           ".tsv": (delimited_rows, {"delimiter": "\t"}), ".tsv.gz": (delimited_rows, {"delimiter": "\t"}),
           ".parquet": (parquet_rows, {})}


def read_rows(path: str | pathlib.Path, columns: Sequence[str], optional: Sequence[str] = (),
              fix: str = "") -> Iterator[Row]:
    """The rows of one file, its format told by its name (`FORMATS`: .jsonl, .csv, .tsv, .parquet, with .gz
    or .zst where the format allows); `fix` ends the message of a missing column (what to set)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    name = path.name.lower()
    ending = next((ending for ending in sorted(FORMATS, key=len, reverse=True) if name.endswith(ending)), None)
    if ending is None:
        raise ValueError(f"{path}: name the file by its format, one of {', '.join(FORMATS)}.")
    reader, options = FORMATS[ending]
    return reader(path, columns, optional, fix=fix, **options)


def checked(rows: Iterator[Row]) -> Iterator[Row]:
    """`rows` with its start read now: the file opened and its columns checked (a header, a schema, the first
    record) before the caller reads on. The first row is kept."""
    first = next(rows, None)

    def all_rows():
        if first is not None:
            yield first
            yield from rows

    return all_rows()
