"""Preparation: deterministic shards, split by document, errors before work, never a half-written directory."""

import pytest
from conftest import write_bert_text
from corpus_formats import write_records

from bertjax.data import corpus, shards, tokenizer


def test_documents_round_trip_through_records():
    document = [[5, 6, 7], [8], [9, 10]]
    assert [sentence.tolist() for sentence in shards.decode_document(shards.encode_document(document))] == document


def test_prepared_data_matches_the_corpus(prepared_dir, corpus_file, sp_tokenizer):
    metadata = shards.load_metadata(prepared_dir)
    documents = list(corpus.read_text_files([corpus_file]))
    splits = metadata["splits"]
    assert splits["train"]["documents"] + splits["validation"]["documents"] == len(documents)
    assert 0.05 < splits["validation"]["documents"] / len(documents) < 0.15  # validation_fraction=0.1
    assert metadata["tokenizer_fingerprint"] == sp_tokenizer.fingerprint
    # Every document arrives whole and tokenized as the tokenizer tokenizes it.
    expected = {tuple(tuple(ids) for ids in sp_tokenizer.encode_batch(document)) for document in documents}
    found = set()
    for split in shards.SPLITS:
        source = shards.DocumentSource(shards.split_paths(prepared_dir, split))
        found |= {tuple(tuple(sentence.tolist()) for sentence in source[i]) for i in range(len(source))}
    assert found == expected


def test_preparing_again_gives_identical_shards(prepared_dir, corpus_file, sp_tokenizer_path, tmp_path):
    again = tmp_path / "again"
    shards.prepare(corpus.read_text_files([corpus_file]), sp_tokenizer_path, again, documents_per_shard=100,
                   validation_fraction=0.1, num_workers=1, chunk_documents=7)  # other workers and chunks
    written = sorted(path.relative_to(prepared_dir) for path in prepared_dir.rglob("*") if path.is_file())
    assert written == sorted(path.relative_to(again) for path in again.rglob("*") if path.is_file())
    for name in written:
        assert (again / name).read_bytes() == (prepared_dir / name).read_bytes(), name


def test_the_prepared_directory_carries_its_tokenizer(prepared_dir, sp_tokenizer, wordpiece_dir, tmp_path):
    from ml_collections import config_dict

    # SentencePiece: the copy in DIR/tokenizer/ is what a run with only data.prepared_dir reads.
    data = config_dict.ConfigDict({"tokenizer": None, "prepared_dir": str(prepared_dir)})
    resolved = shards.resolve_tokenizer(data)
    assert resolved == str((prepared_dir / "tokenizer").resolve())
    assert tokenizer.load_tokenizer(resolved).fingerprint == sp_tokenizer.fingerprint
    assert shards.load_metadata(prepared_dir)["tokenizer"] == "tokenizer"
    # WordPiece, read from a folder, a tokenizer.json, and a bare vocab.txt either way: the copy reads the same.
    for source, lowercase in [(wordpiece_dir, None), (wordpiece_dir / "tokenizer.json", None),
                              (wordpiece_dir / "vocab.txt", False), (wordpiece_dir / "vocab.txt", True)]:
        folder = tmp_path / f"copy-{source.name}-{lowercase}"
        original = tokenizer.copy_tokenizer(source, lowercase, folder)
        copy = tokenizer.load_tokenizer(folder)
        assert (copy.fingerprint, copy.lowercase) == (original.fingerprint, original.lowercase) == (
            tokenizer.load_tokenizer(source, lowercase).fingerprint, lowercase is not False), (source, lowercase)
        assert copy.encode_batch(["Hello World"]) == original.encode_batch(["Hello World"])

    data.tokenizer = str(wordpiece_dir)  # named: it wins over the copy
    assert shards.resolve_tokenizer(data) == str(wordpiece_dir)
    data.tokenizer, data.prepared_dir = None, None
    with pytest.raises(ValueError, match="data.prepared_dir is not set: prepare a corpus with `bertjax prepare_data"):
        shards.resolve_tokenizer(data)
    old = tmp_path / "old"
    old.mkdir()  # prepared before the copy was kept
    data.prepared_dir = str(old)
    with pytest.raises(ValueError, match="holds no tokenizer/ .*pass --config.data.tokenizer="):
        shards.resolve_tokenizer(data)


def test_errors_come_before_work(tmp_path, sp_tokenizer_path, prepared_dir):
    with pytest.raises(ValueError, match="No training documents"):
        shards.prepare(iter([]), sp_tokenizer_path, tmp_path / "empty", num_workers=1)
    assert not (tmp_path / "empty").exists()
    assert [path.name for path in tmp_path.iterdir()] == []  # no partial directory left behind
    with pytest.raises(FileExistsError, match="--overwrite"):
        shards.prepare(iter([["a"]]), sp_tokenizer_path, prepared_dir, num_workers=1)
    with pytest.raises(FileNotFoundError, match="not prepared data"):
        shards.load_metadata(tmp_path)
    with pytest.raises(KeyError, match="no split 'test'"):
        shards.split_paths(prepared_dir, "test")


def test_every_corpus_format_prepares_byte_identical_shards(tmp_path, builtin_documents, sp_tokenizer_path):
    """The same documents as BERT-format text, one-document-per-line text, JSON lines (plain, gzip, zstd),
    CSV, TSV, Parquet and saved HF datasets give the same shards, byte for byte."""
    # Documents whose sentences the splitter finds again when they are joined by spaces (paragraphs:)
    # or line breaks (records).
    documents = [document for document in builtin_documents[:400]
                 if corpus.split_sentences(" ".join(document)) == document][:150]
    assert len(documents) > 100
    bert = write_bert_text(tmp_path / "bert.txt", documents)
    (tmp_path / "paragraphs.txt").write_text("".join(" ".join(document) + "\n" for document in documents))
    specs = {"text": f"text:{bert}", "paragraphs": f"paragraphs:{tmp_path / 'paragraphs.txt'}",
             **write_records(tmp_path, ["\n".join(document) for document in documents])}
    reference = None
    for name, spec in specs.items():
        output = tmp_path / f"prepared-{name.replace(' ', '-')}"
        shards.prepare(corpus.open_corpus(spec), sp_tokenizer_path, output, documents_per_shard=40,
                       validation_fraction=0.1, num_workers=1)
        prepared = {path.name: path.read_bytes() for path in output.glob("*.array_record")}
        assert len(prepared) > 2, name
        reference = reference or prepared
        assert prepared == reference, name


def test_the_validation_split_is_never_left_empty_by_accident(tmp_path, sp_tokenizer_path):
    documents = [["Only one document here."], ["And a second one."]]
    with pytest.raises(ValueError, match="validation split is empty.*--validation_fraction.*--validation_corpus"):
        shards.prepare(iter(documents), sp_tokenizer_path, tmp_path / "data", validation_fraction=0.0,
                       num_workers=1)
    assert list(tmp_path.iterdir()) == []  # nothing written
    shards.prepare(iter(documents), sp_tokenizer_path, tmp_path / "data", validation_fraction=0.0, num_workers=1,
                   allow_empty_validation=True)
    with pytest.raises(ValueError, match="Split 'validation' .* holds no documents.*--validation_corpus"):
        shards.check_compatible(tmp_path / "data", tokenizer.load_tokenizer(sp_tokenizer_path))
    # A separate validation corpus: all of it is held out, none of the training corpus.
    metadata = shards.prepare(iter(documents), sp_tokenizer_path, tmp_path / "split", validation_fraction=0.0,
                              validation_documents=iter([["Held out."]]), num_workers=1)
    assert {split: info["documents"] for split, info in metadata["splits"].items()} == {
        "train": 2, "validation": 1}
    source = shards.DocumentSource(shards.split_paths(tmp_path / "split", "validation"))
    assert [sentence.tolist() for sentence in source[0]] == tokenizer.load_tokenizer(sp_tokenizer_path).encode_batch(
        ["Held out."])
    for bad in ({"validation_fraction": -0.5}, {"validation_fraction": 1.0}, {"documents_per_shard": 0},
                {"num_workers": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            shards.prepare(iter(documents), sp_tokenizer_path, tmp_path / "bad", **bad)


def test_shards_prepared_cased_are_tokenized_so_and_refused_read_uncased(wordpiece_dir, builtin_documents, tmp_path):
    import transformers

    from bertjax.data import tokenizer

    vocab = wordpiece_dir / "vocab.txt"  # uncased by its tokenizer_config.json; read cased here
    documents = builtin_documents[:40]
    shards.prepare(iter(documents), vocab, tmp_path / "cased", validation_fraction=0.2, num_workers=1,
                   lowercase=False)
    reference = transformers.BertTokenizer(str(vocab), do_lower_case=False)
    expected = {tuple(tuple(ids) for ids in reference(document, add_special_tokens=False)["input_ids"] if ids)
                for document in documents}
    found = set()
    for split in shards.SPLITS:
        source = shards.DocumentSource(shards.split_paths(tmp_path / "cased", split))
        found |= {tuple(tuple(sentence.tolist()) for sentence in source[i]) for i in range(len(source))}
    assert found == expected
    shards.check_compatible(tmp_path / "cased", tokenizer.load_tokenizer(vocab, lowercase=False))
    with pytest.raises(ValueError, match="prepared with another tokenizer .* see data.lowercase"):
        shards.check_compatible(tmp_path / "cased", tokenizer.load_tokenizer(vocab))
