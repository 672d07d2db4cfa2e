"""`read_tfds` and `open_corpus("tfds:...")` on a real TFDS dataset: a tiny one built here, on disk, in the
ArrayRecord format, and read back through `tfds.data_source` with no TensorFlow installed."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bertjax.data.corpus import open_corpus, read_tfds, text_document

NAME = "bertjax_tiny_corpus"

def _documents(*args):
    """What `open_corpus` makes of `read_tfds`'s texts."""
    return [text_document(text) for text in read_tfds(*args)]


# Each record's text, and the document `read_tfds` must make of it: paragraphs are "\n"-separated lines
# (blank ones included), each split into sentences; whitespace is collapsed; abbreviations do not end a
# sentence; the text is UTF-8.
TRAIN = [
    ("The cat sat on the mat. It was happy!\nA second paragraph starts here. Does it end?",
     ["The cat sat on the mat.", "It was happy!", "A second paragraph starts here.", "Does it end?"]),
    ("Café au lait costs 3 euros. Naïve readers, e.g. Mr. Smith, pay more.\n\nAfter a blank line. Done.",
     ["Café au lait costs 3 euros.", "Naïve readers, e.g. Mr. Smith, pay more.", "After a blank line.",
      "Done."]),
    ("A title without a full stop\nThe body follows. It has two sentences.",
     ["A title without a full stop", "The body follows.", "It has two sentences."]),
    ("   One   sentence,  oddly\tspaced.   ", ["One sentence, oddly spaced."]),
    ("One. Two. Three.", ["One.", "Two.", "Three."]),
]
# A record whose text has no sentence gives no document.
TEST = [("First test document.", ["First test document."]),
        (" \n\n  ", None),
        ("Last test document. Really.", ["Last test document.", "Really."])]


class BertjaxTinyCorpus(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Not registered: `tfds.data_source` must find the dataset from its files alone, like any prepared one."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Test data."}

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Scalar(dtype=np.int32),
                "title": tfds.features.Text(),
                "text": tfds.features.Text()}),
            disable_shuffling=True)  # records stay in the order generated, so "record order" is known

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(TRAIN), "test": self._generate_examples(TEST)}

    def _generate_examples(self, records):
        for index, (text, _) in enumerate(records):
            yield index, {"id": index, "title": f"record {index}", "text": text}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.disable_progress_bar()
    BertjaxTinyCorpus(data_dir=str(data_dir), file_format="array_record").download_and_prepare(
        file_format="array_record")
    assert list((data_dir / NAME / "1.0.0").glob(f"{NAME}-train.array_record-*"))
    return str(data_dir)


def test_records_are_array_record_with_bytes_text(data_dir):
    source = tfds.data_source(NAME, split="train", data_dir=data_dir)
    assert type(source).__name__ == "ArrayRecordDataSource"
    records = [source[index] for index in range(len(source))]
    assert [record["id"] for record in records] == list(range(len(TRAIN)))
    assert all(isinstance(record["text"], bytes) for record in records)  # so read_tfds decodes bytes


def test_one_document_per_record_in_record_order(data_dir):
    assert _documents(NAME, "train", "text", data_dir) == [document for _, document in TRAIN]
    assert _documents(NAME, "train", "title", data_dir) == [[f"record {index}"] for index in
                                                                 range(len(TRAIN))]


def test_records_without_sentences_give_no_document(data_dir):
    assert _documents(NAME, "test", "text", data_dir) == [document for _, document in TEST if document]


def test_split_slices_pass_through(data_dir):
    assert _documents(NAME, "train[1:3]", "text", data_dir) == [document for _, document in TRAIN[1:3]]


class _StrTextSource:
    """The real data source, its text decoded to `str` (as `tfds.testing.mock_data` sources give it)."""

    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        record = dict(self._source[index])
        record["text"] = record["text"].decode("utf-8")
        return record


def test_str_text_gives_the_same_documents(data_dir, monkeypatch):
    real_data_source = tfds.data_source
    monkeypatch.setattr(tfds, "data_source", lambda *args, **kwargs: _StrTextSource(
        real_data_source(*args, **kwargs)))
    assert isinstance(tfds.data_source(NAME, split="train", data_dir=data_dir)[0]["text"], str)
    assert _documents(NAME, "train", "text", data_dir) == [document for _, document in TRAIN]


def test_wrong_field_names_the_field_and_the_fields(data_dir):
    documents = read_tfds(NAME, "train", "body", data_dir)
    with pytest.raises(KeyError) as error:
        next(documents)
    message = error.value.args[0]
    assert "'body'" in message and "['id', 'text', 'title']" in message and NAME in message


def test_open_corpus_tfds_spec(data_dir, monkeypatch):
    expected = [document for _, document in TRAIN]
    assert list(open_corpus(f"tfds:{NAME}:train:text:{data_dir}")) == expected
    # Without DATA_DIR, TFDS's default data directory is searched.
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", data_dir)
    assert list(open_corpus(f"tfds:{NAME}:train:text")) == expected
    with pytest.raises(ValueError, match="tfds:NAME:SPLIT:FIELD"):
        open_corpus(f"tfds:{NAME}:train")
