"""Corpus readers and the built-in corpus."""

import subprocess
import sys

import pytest

from bertjax.data import corpus


def test_bert_format_and_paragraph_files(tmp_path):
    bert = tmp_path / "bert.txt"
    bert.write_text("First sentence.\nSecond one.\n\n\nOther document.\n")
    assert list(corpus.read_text_files([bert])) == [["First sentence.", "Second one."], ["Other document."]]
    paragraphs = tmp_path / "paragraphs.txt"
    paragraphs.write_text("One sentence. Another, e.g. this one! A third?\nNext paragraph.\n\nNew document.")
    assert list(corpus.read_text_files([paragraphs], "paragraphs")) == [
        ["One sentence.", "Another, e.g. this one!", "A third?", "Next paragraph."], ["New document."]]


def test_missing_and_undecodable_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        list(corpus.read_text_files([tmp_path / "nowhere.txt"]))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("A first line.\n\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt, line 3: not UTF-8"):
        list(corpus.read_text_files([latin]))
    with pytest.raises(FileNotFoundError, match="no file matches"):
        corpus.open_corpus(f"text:{tmp_path}/*.none")
    with pytest.raises(ValueError, match="is not one of"):
        corpus.open_corpus("wikipedia")


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
