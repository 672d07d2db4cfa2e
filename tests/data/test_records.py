"""Rows of named fields from JSON lines, CSV, TSV and Parquet files, told apart by their names."""

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertjax.data import records

ROWS = [{"text_a": "A first, quoted one.", "text_b": "B", "label": "spam"},
        {"text_a": "Second\nwith a newline", "text_b": None, "label": "ham"}]


def write_all(directory):
    paths = {}
    paths["jsonl"] = directory / "rows.jsonl"
    paths["jsonl"].write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    paths["jsonl.gz"] = directory / "rows.jsonl.gz"
    with gzip.open(paths["jsonl.gz"], "wt") as file:
        file.writelines(json.dumps(row) + "\n" for row in ROWS)
    for name, delimiter in (("csv", ","), ("tsv", "\t")):
        paths[name] = directory / f"rows.{name}"
        with open(paths[name], "w", newline="") as file:
            writer = csv.writer(file, delimiter=delimiter)
            writer.writerow(["label", "text_a", "text_b"])
            writer.writerows([row["label"], row["text_a"], row["text_b"] or ""] for row in ROWS)
    paths["parquet"] = directory / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), paths["parquet"], row_group_size=1)
    return paths


def test_every_format_gives_the_same_rows_with_where_they_come_from(tmp_path):
    for name, path in write_all(tmp_path).items():
        rows = list(records.read_rows(path, ["text_a", "label"], optional=["text_b", "absent"]))
        assert [row.values["text_a"] for row in rows] == [row["text_a"] for row in ROWS], name
        assert [row.values["label"] for row in rows] == ["spam", "ham"]
        assert all(row.values["absent"] is None for row in rows)
        # CSV has no null: an empty field is the empty string.
        assert rows[1].values["text_b"] in (None, "") and rows[0].values["text_b"] == "B"
        assert rows[0].where.startswith(str(path)) and (", line " in rows[0].where or ", row 1" in rows[0].where)


def test_a_missing_column_and_an_unknown_format_are_named(tmp_path):
    paths = write_all(tmp_path)
    for name, path in paths.items():
        with pytest.raises(ValueError, match=rf"{path.name}.*no (field|column) 'score'; it has .*Set it\."):
            next(records.read_rows(path, ["score"], fix="Set it."))
    (tmp_path / "rows.xlsx").write_bytes(b"PK")
    with pytest.raises(ValueError, match=r"rows.xlsx: name the file by its format, one of \.jsonl"):
        records.read_rows(tmp_path / "rows.xlsx", ["text"])
    with pytest.raises(FileNotFoundError, match="none.csv not found"):
        records.read_rows(tmp_path / "none.csv", ["text"])
