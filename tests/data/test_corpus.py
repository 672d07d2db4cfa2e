"""Corpus readers and the built-in corpus."""

import csv
import json
import subprocess
import sys

import pytest
from corpus_formats import write_records

from bertjax.data import corpus


def test_bert_format_and_paragraph_files(tmp_path):
    bert = tmp_path / "bert.txt"
    bert.write_text("First sentence.\nSecond one.\n\n\nOther document.\n")
    assert list(corpus.read_text_files([bert])) == [["First sentence.", "Second one."], ["Other document."]]
    paragraphs = tmp_path / "paragraphs.txt"  # one document per line, blank lines between them or not
    paragraphs.write_text("One sentence. Another, e.g. this one! A third?\nNext document.\n\nA last one.")
    assert list(corpus.open_corpus(f"paragraphs:{paragraphs}")) == [
        ["One sentence.", "Another, e.g. this one!", "A third?"], ["Next document."], ["A last one."]]


def test_missing_and_undecodable_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        list(corpus.read_text_files([tmp_path / "nowhere.txt"]))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("A first line.\n\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt, line 3: not UTF-8"):
        list(corpus.read_text_files([latin]))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        corpus.open_corpus(f"text:{tmp_path}/*.none")
    with pytest.raises(ValueError, match="is not one of these forms"):
        corpus.open_corpus("wikipedia")
    with pytest.raises(ValueError, match="is not one of these forms"):
        corpus.open_corpus(f"csv:{latin}")  # csv: needs its column


def test_split_sentences():
    assert corpus.split_sentences("Use foo(), i.e. the helper. Then call bar.  Done") == [
        "Use foo(), i.e. the helper.", "Then call bar.", "Done"]
    assert corpus.split_sentences("Version 3.11 is out. \"Quoted.\" (Bracketed.)") == [
        "Version 3.11 is out.", "\"Quoted.\"", "(Bracketed.)"]


def test_builtin_corpus_is_real_prose_in_a_fixed_order(builtin_documents):
    characters = sum(len(sentence) for document in builtin_documents for sentence in document)
    assert len(builtin_documents) > 3000 and characters > 1_200_000
    assert builtin_documents == list(corpus.read_builtin())  # deterministic
    packages = {package for package, _ in corpus.builtin_documents()}
    assert {"collections", "asyncio", "json", "pydoc_topics"} <= packages
    assert "test" not in packages
    assert all(document and all(sentence.strip() for sentence in document) for document in builtin_documents)


def test_builtin_corpus_imports_no_module():
    code = ("import sys; before = set(sys.modules); from bertjax.data import corpus; "
            "after_import = set(sys.modules); docs = list(corpus.read_builtin()); "
            "print(sorted(set(sys.modules) - after_import))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    imported = [name for name in eval(result.stdout) if not name.startswith(("encodings.", "_sysconfigdata"))]
    assert imported == []  # reading 4,000 docstrings imported none of their modules (codecs aside)


# --- records: JSON lines, CSV, TSV, Parquet, saved HF datasets ---------------------------------------------

TEXTS = ["First one. Second one here.", "Alone", "Line a.\nLine b. More b.", "", "Quote \"in\" it, and a, comma."]
DOCUMENTS = [["First one.", "Second one here."], ["Alone"], ["Line a.", "Line b.", "More b."],
             ["Quote \"in\" it, and a, comma."]]  # the empty text is no document


@pytest.mark.parametrize("column", ["text", "body"])
def test_every_record_format_reads_the_same_documents(tmp_path, column):
    for name, spec in write_records(tmp_path, TEXTS, column).items():
        assert list(corpus.open_corpus(spec)) == DOCUMENTS, name
    assert list(corpus.open_corpus(f"hf:{tmp_path}/dict:test{':' + column if column != 'text' else ''}")) == [
        DOCUMENTS[1]]


def test_globs_and_commas_name_several_files_in_order(tmp_path):
    for index in range(3):
        (tmp_path / f"part-{index}.jsonl").write_text(json.dumps({"text": f"Document {index}."}) + "\n")
    expected = [["Document 0."], ["Document 1."], ["Document 2."]]
    assert list(corpus.open_corpus(f"jsonl:{tmp_path}/part-*.jsonl")) == expected
    assert list(corpus.open_corpus(f"jsonl:{tmp_path}/part-2.jsonl,{tmp_path}/part-[01].jsonl")) == [
        expected[2], *expected[:2]]


def test_wrong_formats_for_text_name_the_file_and_the_prefix(tmp_path):
    specs = write_records(tmp_path, TEXTS)
    arrow = next((tmp_path / "dataset").glob("*.arrow"))
    (tmp_path / "binary.txt").write_bytes(b"text\x00\x01\x02")
    cases = {
        specs["jsonl"].removeprefix("jsonl:"): "is JSON lines.*read it with jsonl:.*c.jsonl",
        specs["jsonl.gz"].removeprefix("jsonl:"): "is gzip-compressed.*read it with jsonl:.*c.jsonl.gz",
        specs["jsonl.zst"].removeprefix("jsonl:"): "is zstd-compressed.*read it with jsonl:",
        specs["parquet"].removeprefix("parquet:"): "is a Parquet file.*read it with parquet:.*c.parquet",
        str(tmp_path / "c.csv"): "is a CSV file.*read it with csv:.*c.csv:COLUMN",
        str(arrow): "is an Arrow stream.*hf:",
        str(tmp_path / "dataset"): "is a directory; a saved HF dataset, read it with hf:.*dataset",
        str(tmp_path / "binary.txt"): "binary.txt is binary",
    }
    for prefix in ("text", "paragraphs"):
        for path, message in cases.items():
            with pytest.raises(ValueError, match=message) as error:
                corpus.open_corpus(f"{prefix}:{path}")  # refused when named, before anything is read
            message = str(error.value)
            assert "\n" not in message and (f"for {prefix}:" in message or "is a directory" in message)


def test_a_missing_field_or_column_names_the_file_record_and_what_it_has(tmp_path):
    specs = write_records(tmp_path, TEXTS)
    cases = {
        "jsonl": (specs["jsonl"] + ":body", r"c.jsonl, line 1: no field 'body'; it has 'id', 'text'.*jsonl:.*:FIELD"),
        "csv": (specs["csv"].replace(":text", ":body"),
                r"c.csv, line 1 \(the header\): no column 'body'; it has 'id', 'text'.*csv:.*:COLUMN"),
        "tsv": (specs["tsv"].replace(":text", ":body"), r"c.tsv, line 1 \(the header\): no column 'body'"),
        "parquet": (specs["parquet"] + ":body", r"c.parquet: no column 'body'; it has 'id', 'text'"),
        "hf": (specs["hf"] + ":body", r"\.arrow: no column 'body'; it has 'id', 'text'.*hf:"),
        "not text": (specs["parquet"] + ":id", r"c.parquet, row 1: 'id' holds int '0', not text"),
        "hf split": (f"hf:{tmp_path}/dict:dev", "holds the splits train, test, not 'dev'"),
    }
    for name, (spec, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            corpus.open_corpus(spec)  # named before the first document is read
    # A later record: the line number, and a value that is not text.
    late = tmp_path / "late.jsonl"
    late.write_text('{"text": "Fine."}\n\n{"text": "Fine too."}\n{"content": "x"}\n')
    documents = corpus.open_corpus(f"jsonl:{late}")
    with pytest.raises(ValueError, match=r"late.jsonl, line 4: no field 'text'; it has 'content'"):
        list(documents)
    late.write_text('{"text": "Fine."}\n{"text": ["a", "list"]}\n')
    with pytest.raises(ValueError, match=r"late.jsonl, line 2: 'text' holds list"):
        list(corpus.open_corpus(f"jsonl:{late}"))
    late.write_text('{"text": "Fine."}\nnot json\n')
    with pytest.raises(ValueError, match=r"late.jsonl, line 2: not a JSON record"):
        list(corpus.open_corpus(f"jsonl:{late}"))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("id,text\n1,Fine.\n2,Not, quoted.\n")
    with pytest.raises(ValueError, match=r"ragged.csv, line 3: 3 fields where the header has 2"):
        list(corpus.open_corpus(f"csv:{ragged}:text"))


def test_a_corpus_without_documents_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": ""}\n{"text": null}\n')
    with pytest.raises(ValueError, match="holds no documents"):
        list(corpus.open_corpus(f"jsonl:{empty}"))
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no documents"):
        list(corpus.open_corpus(f"text:{tmp_path / 'blank.txt'}"))


def test_a_long_csv_field_and_quoted_newlines(tmp_path):
    long_text = "A sentence that repeats. " * 20_000  # 500 kB: past the csv module's default field limit
    path = tmp_path / "long.csv"
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([["text"], [long_text], ["Quoted\nnewline. Inside it."]])
    documents = list(corpus.open_corpus(f"csv:{path}:text"))
    assert len(documents[0]) == 20_000 and documents[1] == ["Quoted", "newline.", "Inside it."]
