"""Sentence and sentence-pair classification: the GLUE tasks and the built-in demo task.

`TASKS` lists every GLUE task with its files, text fields, labels and official metrics. Examples come from
the original GLUE TSV files (each task's own column layout: CoLA's train and dev files have no header row,
MNLI has two dev and two test files, test files have no labels) or from TFDS's prepared `glue/*` datasets
(`tfds.data_source`, no TensorFlow). `BUILTIN_TASKS` are made from the built-in corpus, labelled by the code:
`stdlib`, ten-way (which standard-library package a docstring comes from), and `same_docstring`, a sentence
pair (do two sentences come from the same docstring; `bertjax.data.docstring_pairs`).

`ClassificationTask` is what the train loop runs: [CLS] A [SEP] B [SEP] with segment ids, a classifier on
the pooled [CLS] output (a regressor for STS-B), whole-split predictions, the official metrics, and
prediction files in the GLUE server's submission format.
"""

import csv
import dataclasses
import functools
import hashlib
import pathlib
from collections.abc import Sequence
from typing import NamedTuple

import grain
import jax.numpy as jnp
import numpy as np
from absl import logging

from bertjax import files, losses
from bertjax.data import batching, corpus, docstring_pairs, tokenizer as tokenizers
from bertjax.heads import BertForSequenceClassification
from bertjax.model import BertConfig
from bertjax.tasks.base import TaskBase, label_subset


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str  # the config's finetune.task, and TFDS's glue/<name>
    folder: str  # the task's folder in the GLUE download
    text_columns: tuple[str, ...]  # TSV header names of the one or two texts
    tfds_text: tuple[str, ...]  # TFDS feature names of the same texts
    label_column: str | None  # TSV header name of the label
    labels: tuple[str, ...] | None  # label values as the TSV writes them, in TFDS's index order; None: regression
    metrics: tuple[str, ...]  # official metrics; the first selects the best checkpoint
    eval_files: dict[str, str]  # split -> TSV file
    test_files: dict[str, tuple[str, str]]  # split -> (TSV file, the GLUE server's submission file name)
    train_file: str | None = "train.tsv"

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.labels else 1


_DEV = {"validation": "dev.tsv"}


def _test(submission: str) -> dict[str, tuple[str, str]]:
    return {"test": ("test.tsv", submission)}


_MNLI_LABELS = ("entailment", "neutral", "contradiction")
TASKS = {spec.name: spec for spec in [
    TaskSpec("cola", "CoLA", ("sentence",), ("sentence",), "label", ("0", "1"), ("mcc", "accuracy"), _DEV,
             _test("CoLA.tsv")),
    TaskSpec("sst2", "SST-2", ("sentence",), ("sentence",), "label", ("0", "1"), ("accuracy",), _DEV,
             _test("SST-2.tsv")),
    TaskSpec("mrpc", "MRPC", ("#1 String", "#2 String"), ("sentence1", "sentence2"), "Quality", ("0", "1"),
             ("f1", "accuracy"), _DEV, _test("MRPC.tsv")),
    TaskSpec("stsb", "STS-B", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "score", None,
             ("pearson", "spearman"), _DEV, _test("STS-B.tsv")),
    TaskSpec("qqp", "QQP", ("question1", "question2"), ("question1", "question2"), "is_duplicate", ("0", "1"),
             ("f1", "accuracy"), _DEV, _test("QQP.tsv")),
    TaskSpec("mnli", "MNLI", ("sentence1", "sentence2"), ("premise", "hypothesis"), "gold_label", _MNLI_LABELS,
             ("accuracy",), {"validation_matched": "dev_matched.tsv", "validation_mismatched": "dev_mismatched.tsv"},
             {"test_matched": ("test_matched.tsv", "MNLI-m.tsv"),
              "test_mismatched": ("test_mismatched.tsv", "MNLI-mm.tsv")}),
    TaskSpec("qnli", "QNLI", ("question", "sentence"), ("question", "sentence"), "label",
             ("entailment", "not_entailment"), ("accuracy",), _DEV, _test("QNLI.tsv")),
    TaskSpec("rte", "RTE", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "label",
             ("entailment", "not_entailment"), ("accuracy",), _DEV, _test("RTE.tsv")),
    TaskSpec("wnli", "WNLI", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "label", ("0", "1"),
             ("accuracy",), _DEV, _test("WNLI.tsv")),
    # The diagnostic set: test only, predicted by an MNLI model (bertjax finetune does it with MNLI's test).
    TaskSpec("ax", "diagnostic", ("sentence1", "sentence2"), ("premise", "hypothesis"), None, _MNLI_LABELS,
             (), {}, {"test": ("diagnostic.tsv", "AX.tsv")}, train_file=None),
]}

# The demo task: the ten standard-library packages with the most docstrings in the built-in corpus.
STDLIB_PACKAGES = ("tkinter", "idlelib", "distutils", "asyncio", "email", "importlib", "_pydecimal", "logging",
                   "xml", "turtle")
STDLIB = TaskSpec("stdlib", "", ("docstring",), ("docstring",), None, STDLIB_PACKAGES, ("accuracy", "macro_f1"),
                  _DEV, {"test": ("", "stdlib.tsv")}, train_file=None)
# Do two sentences come from the same docstring (`bertjax.data.docstring_pairs`)?
SAME_DOCSTRING = TaskSpec("same_docstring", "", ("sentence1", "sentence2"), ("sentence1", "sentence2"), None,
                          docstring_pairs.LABELS, ("accuracy", "f1"), _DEV, {"test": ("", "same_docstring.tsv")},
                          train_file=None)
BUILTIN_TASKS = {spec.name: spec for spec in (STDLIB, SAME_DOCSTRING)}  # made from the built-in corpus, no files


AX_SPLIT = "ax"  # MNLI's extra test split: the diagnostic set


class Example(NamedTuple):
    index: int  # the row's id: the file's `index` column where it has one, else its position
    texts: tuple[str, ...]
    label: int | float | None  # a class index, the STS-B score, or None (test files)


# --- readers -----------------------------------------------------------------------------------------------

class DataError(ValueError):
    """A task file that does not have the expected layout; the message names the file and line."""


def _parse_label(spec: TaskSpec, value: str, where: str) -> int | float:
    if spec.labels is None:
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: the score {value!r} is not a number.") from None
    if value not in spec.labels:
        raise DataError(f"{where}: label {value!r} is not one of {list(spec.labels)}.")
    return spec.labels.index(value)


def read_tsv(spec: TaskSpec, path: str | pathlib.Path, *, labelled: bool,
             skip_malformed: bool = False) -> list[Example]:
    """The examples of one GLUE TSV file. Tab-separated, no quoting (texts hold quote characters), a header
    row naming the columns, except CoLA's train and dev files (source, label, original mark, sentence).
    A row with another number of fields than the header is an error naming the file and line (or, with
    `skip_malformed`, skipped and counted in the log)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name}: {path} not found.")
    headerless = spec.name == "cola" and labelled
    examples, skipped = [], 0
    rows = csv.reader(files.text_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = ["source", "label", "original_label", "sentence"] if headerless else next(rows, None)
    if header is None:
        raise DataError(f"{path}: the file is empty; expected a header row.")
    needed = list(spec.text_columns) + ([spec.label_column] if labelled else [])
    missing = [name for name in needed if name not in header]
    if missing:
        raise DataError(f"{path}:1: the header {header} lacks the column(s) {missing} that {spec.name} "
                        "files have; is this the right task's file?")
    columns = [header.index(name) for name in spec.text_columns]
    label_column = header.index(spec.label_column) if labelled else None
    index_column = header.index("index") if "index" in header else header.index("id") if "id" in header else None
    for row in rows:
        line = rows.line_num
        if not row or row == [""]:
            continue
        if len(row) != len(header):
            if skip_malformed:
                skipped += 1
                continue
            raise DataError(f"{path}:{line}: {len(row)} tab-separated fields where the header has {len(header)}; "
                            "fix the row, or set finetune.skip_malformed_rows=true to skip such rows.")
        where = f"{path}:{line}"
        label = _parse_label(spec, row[label_column], where) if labelled else None
        if index_column is not None and not labelled:
            try:
                index = int(row[index_column])
            except ValueError:
                raise DataError(f"{where}: the id {row[index_column]!r} is not an integer.") from None
        else:
            index = len(examples) + skipped
        examples.append(Example(index, tuple(row[c] for c in columns), label))
    if skipped:
        logging.warning("%s: skipped %d malformed row(s).", path, skipped)
    return examples


def task_folder(spec: TaskSpec, data_dir: str | pathlib.Path) -> pathlib.Path:
    """`data_dir` is the GLUE download (holding CoLA/, SST-2/, ...) or the task's own folder."""
    data_dir = pathlib.Path(data_dir)
    for folder in (data_dir / spec.folder, data_dir):
        names = [spec.train_file] if spec.train_file else [file for file, _ in spec.test_files.values()]
        if all((folder / name).is_file() for name in names):
            return folder
    raise FileNotFoundError(f"{spec.name}: no {spec.folder}/{names[0]} under {data_dir}; pass the GLUE folder (with "
                            f"{spec.folder}/ in it) or the {spec.folder} folder itself as finetune.data_dir.")


def read_tfds(spec: TaskSpec, split: str, data_dir: str | None) -> list[Example]:
    """The examples of TFDS's `glue/<name>` split (prepared with bertjax prepare_glue), read with
    `tfds.data_source`. Texts come back as bytes from files and as str from `tfds.testing.mock_data`."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.text import glue  # noqa: F401  registers glue/* without importing TensorFlow

    source = tfds.data_source(f"glue/{spec.name}", split=split, data_dir=data_dir)
    examples = []
    for position in range(len(source)):
        record = source[position]
        texts = tuple(_text(record[name]) for name in spec.tfds_text)
        label = record.get("label")
        label = None if label is None or split.startswith("test") else (
            float(label) if spec.labels is None else int(label))
        examples.append(Example(int(record.get("idx", position)), texts, label))
    return examples


def _text(value) -> str:
    value = value.item() if isinstance(value, np.ndarray) else value
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def builtin_examples(name: str, split: str) -> list[Example]:
    """A split of a task of `BUILTIN_TASKS`."""
    if name == "stdlib":
        return stdlib_examples(split)
    return [Example(index, (first, second), label)
            for index, (first, second, label) in enumerate(docstring_pairs.examples(split))]


def stdlib_examples(split: str) -> list[Example]:
    """The demo task's split: docstrings of the `STDLIB_PACKAGES`, labelled with their package, split 80/10/10
    by a hash of the text (the same on every machine with the same Python)."""
    buckets = {"train": range(2, 10), "validation": (1,), "test": (0,)}[split]
    examples = []
    for package, document in corpus.builtin_documents():
        if package not in STDLIB_PACKAGES:
            continue
        text = " ".join(document)
        if int(hashlib.sha1(text.encode()).hexdigest(), 16) % 10 in buckets:
            examples.append(Example(len(examples), (text,), STDLIB_PACKAGES.index(package)))
    return examples


def prepare_tfds(spec: TaskSpec, glue_dir: str | pathlib.Path, data_dir: str | pathlib.Path, *,
                 skip_malformed: bool = False) -> pathlib.Path:
    """Build TFDS's `glue/<name>` (ArrayRecord files, readable by `tfds.data_source`) from the task's
    original GLUE files in `glue_dir` (extracted; see bertjax prepare_glue for the zip files), with TFDS's
    own builder for the features and metadata and this module's readers for the rows. No download."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.text import glue

    folder = task_folder(spec, glue_dir)
    files = {**({"train": spec.train_file} if spec.train_file else {}), **spec.eval_files,
             **{split: file for split, (file, _) in spec.test_files.items()}}

    class OfflineGlue(glue.Glue, skip_registration=True):
        name = "glue"  # TFDS's own name and version: data_source("glue/<task>") reads the result

        def _split_generators(self, dl_manager):
            del dl_manager
            return [tfds.core.SplitGenerator(name=split, gen_kwargs={"split": split}) for split in files]

        def _generate_examples(self, split):
            labelled = not split.startswith("test")
            for example in read_tsv(spec, folder / files[split], labelled=labelled, skip_malformed=skip_malformed):
                record = dict(zip(spec.tfds_text, example.texts))
                record["label"] = example.label if labelled else -1
                record["idx"] = example.index
                yield example.index, record

    builder = OfflineGlue(config=spec.name, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return pathlib.Path(builder.data_dir)


# --- metrics -----------------------------------------------------------------------------------------------

def compute_metrics(names: Sequence[str], predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """GLUE's official metrics (scikit-learn and SciPy implementations). A correlation of constant
    predictions is undefined; it is reported as 0."""
    from scipy import stats
    from sklearn import metrics

    results = {}
    for name in names:
        if name == "accuracy":
            value = metrics.accuracy_score(labels, predictions)
        elif name == "f1":
            value = metrics.f1_score(labels, predictions, zero_division=0.0)
        elif name == "macro_f1":
            value = metrics.f1_score(labels, predictions, average="macro", zero_division=0.0)
        elif name == "mcc":
            value = metrics.matthews_corrcoef(labels, predictions)
        elif name in ("pearson", "spearman"):
            if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
                value = 0.0
            else:
                value = (stats.pearsonr if name == "pearson" else stats.spearmanr)(predictions, labels)[0]
        else:
            raise ValueError(f"Unknown metric {name!r}.")
        results[name] = float(value)
    return results


# --- encoding and batches ----------------------------------------------------------------------------------

def encode(token_ids: Sequence[Sequence[int]], max_seq_length: int, cls_id: int, sep_id: int):
    """[CLS] A [SEP] (B [SEP]) with segment ids 0 for A and 1 for B. A pair too long is cut as BERT cuts it:
    one token at a time from the end of the longer text."""
    first, second = list(token_ids[0]), list(token_ids[1]) if len(token_ids) > 1 else None
    if second is None:
        del first[max_seq_length - 2:]
        return [cls_id, *first, sep_id], [0] * (len(first) + 2)
    while len(first) + len(second) > max_seq_length - 3:
        (first if len(first) > len(second) else second).pop()
    return [cls_id, *first, sep_id, *second, sep_id], [0] * (len(first) + 2) + [1] * (len(second) + 1)


def batch_fields(max_seq_length: int, regression: bool) -> dict[str, batching.Field]:
    length = (max_seq_length,)
    return {"input_ids": batching.Field(length), "segment_ids": batching.Field(length),
            "attention_mask": batching.Field(length, ones_over="input_ids"),
            "label": batching.Field((), np.float32 if regression else np.int32), **batching.example_fields()}


class _Encode(grain.transforms.Map):
    """Position in a split -> one encoded row, from the split's texts tokenized once (`token_ids`)."""

    def __init__(self, examples: list[Example], token_ids: list[tuple[np.ndarray, ...]],
                 tokenizer: tokenizers.Tokenizer, max_seq_length: int):
        self._examples, self._token_ids = examples, token_ids
        self._cls_id, self._sep_id, self._max_seq_length = tokenizer.cls_id, tokenizer.sep_id, max_seq_length

    def map(self, position: int) -> dict:
        input_ids, segment_ids = encode(self._token_ids[position], self._max_seq_length, self._cls_id, self._sep_id)
        label = self._examples[position].label
        return {"input_ids": input_ids, "segment_ids": segment_ids, "label": 0 if label is None else label,
                "example_index": position}


# --- the task ----------------------------------------------------------------------------------------------

class ClassificationTask(TaskBase):
    """Fine-tuning a BERT on one sentence(-pair) classification or regression task (see `bertjax.train`
    for the interface). Evaluation rows are indexed by position in their split; `predictions` are logits
    (classification) or scores (regression)."""

    head = "sequence_classification"
    fresh_parameters = ("classifier",)  # new at fine-tuning; the encoder (and pooler) come from the checkpoint

    def __init__(self, config, spec: TaskSpec | None = None):
        name = config.finetune.task
        self.spec = spec or BUILTIN_TASKS.get(name) or TASKS.get(name)
        if self.spec is None:
            raise ValueError(f"finetune.task={name!r}: choose one of {sorted(TASKS)} or {', '.join(BUILTIN_TASKS)}.")
        if not self.spec.train_file and self.spec.name not in BUILTIN_TASKS:
            raise ValueError(f"finetune.task={name!r} has no training data; it is predicted by an MNLI model "
                             "(bertjax finetune --predict with finetune.task=mnli).")
        self.name = f"glue/{self.spec.name}" if self.spec.name in TASKS else self.spec.name
        self._set_up_encoder(config)
        self.regression = self.spec.labels is None
        self.fields = batch_fields(self.max_seq_length, self.regression)
        self.model = BertForSequenceClassification(self.model_config, self.spec.num_labels)
        first = self.spec.metrics[0]
        self.metric = first if len(self.eval_splits) == 1 else f"{self.eval_splits[0]}/{first}"
        self.identity = {"task": self.name, "head": self.head, "num_labels": self.spec.num_labels,
                         "labels": None if self.regression else list(self.label_names),
                         "problem_type": "regression" if self.regression else "single_label_classification",
                         "tokenizer_fingerprint": self.tokenizer.fingerprint}
        if self.spec.name not in BUILTIN_TASKS and not (self.finetune.data_dir or self.finetune.tfds_data_dir):
            raise ValueError(f"{self.name}: set finetune.data_dir (the GLUE TSV folder) or finetune.tfds_data_dir "
                             "(TFDS's prepared glue/*, see bertjax prepare_glue).")

    def _set_up_encoder(self, config) -> None:
        """The settings, model config and tokenizer every sequence classification task takes from `config`."""
        self.finetune, self.seed = config.finetune, config.seed
        self.max_seq_length = config.data.max_seq_length
        self.model_config = BertConfig.from_config(config.model)
        self.check_sequence_length(self.max_seq_length, self.model_config)
        self.require(config.data, ("tokenizer",), "data", "(or an init_checkpoint whose run names one).")
        self.tokenizer = tokenizers.load_tokenizer(config.data.tokenizer, config.data.lowercase)
        self.check_tokenizer_fits(self.tokenizer, self.model_config)

    @property
    def label_names(self) -> tuple[str, ...]:
        if self.spec.name in BUILTIN_TASKS or self.spec.labels is None:
            return self.spec.labels or ()
        return tuple(_LABEL_NAMES.get(self.spec.name, self.spec.labels))

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(self.spec.eval_files)

    @property
    def test_splits(self) -> tuple[str, ...]:
        """The splits `--predict` writes: the task's test files, and for MNLI the AX diagnostic set when
        its file (or TFDS dataset) is there: the GLUE server takes AX predictions from the MNLI model."""
        splits = tuple(self.spec.test_files)
        if self.spec.name == "mnli" and self._has_ax():
            splits += (AX_SPLIT,)
        return splits

    def _has_ax(self) -> bool:
        if self.finetune.tfds_data_dir:
            return (pathlib.Path(self.finetune.tfds_data_dir) / "glue" / "ax").is_dir()
        try:
            task_folder(TASKS["ax"], self.finetune.data_dir)
        except FileNotFoundError:
            return False
        return True

    # --- data -----------------------------------------------------------------------------------------------
    def read(self, split: str) -> None:
        self.examples(split)

    @functools.cache
    def examples(self, split: str) -> list[Example]:
        examples = self._read_examples(split)
        if split != "train":
            return examples
        return label_subset(examples, self.finetune.train_examples, self.seed, self.name,
                            None if self.regression else [example.label for example in examples])

    def _read_examples(self, split: str) -> list[Example]:
        spec = self.spec
        if spec.name in BUILTIN_TASKS:
            return builtin_examples(spec.name, split)
        if split == AX_SPLIT and spec.name == "mnli":
            spec, split = TASKS["ax"], "test"
        if split != "train" and split not in spec.eval_files and split not in spec.test_files:
            raise ValueError(f"{self.name} has no split {split!r}; it has train, {list(spec.eval_files)} and "
                             f"{list(spec.test_files)}.")
        if self.finetune.tfds_data_dir:
            return read_tfds(spec, split, self.finetune.tfds_data_dir)
        folder = task_folder(spec, self.finetune.data_dir)
        file = (spec.train_file if split == "train" else spec.eval_files.get(split)
                or spec.test_files[split][0])
        return read_tsv(spec, folder / file, labelled=not split.startswith("test"),
                        skip_malformed=self.finetune.skip_malformed_rows)

    @functools.cache
    def token_ids(self, split: str) -> list[tuple[np.ndarray, ...]]:
        """Each example's texts as token ids, tokenized once per split (in one batch call per text field), not
        again every epoch or evaluation."""
        examples = self.examples(split)
        columns = [self.tokenizer.encode_batch([example.texts[field] for example in examples])
                   for field in range(len(self.spec.text_columns))]
        return [tuple(np.asarray(column[row], np.int32) for column in columns) for row in range(len(examples))]

    def num_train_examples(self) -> int:
        return len(self.examples("train"))

    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        """Training: endless batches, reshuffled each epoch, each process reading its own examples.
        Otherwise: the split once, in order, the last batch padded (`bertjax.data.batching`)."""
        examples = self.examples(split)
        encode = _Encode(examples, self.token_ids(split), self.tokenizer, self.max_seq_length)
        return batching.indexed_batches(len(examples), encode, self.fields, batch_size=batch_size, seed=seed,
                                        train=train, process_index=process_index, process_count=process_count,
                                        name=self.name)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        return batching.empty_batch(self.fields, batch_size)

    # --- model ----------------------------------------------------------------------------------------------
    def _outputs(self, params, batch, rng):
        return self.apply(params, batch, rng).logits

    @staticmethod
    def normalizers(batch) -> dict:
        return {"examples": jnp.sum(batch["example_weight"])}

    def loss(self, params, batch, rng, normalizers=None):
        logits = self._outputs(params, batch, rng)
        return losses.classification_loss(logits, batch["label"], batch["example_weight"],
                                          (normalizers or self.normalizers(batch))["examples"],
                                          regression=self.regression)

    summarize = staticmethod(losses.summarize_classification)

    def predict(self, params, batch) -> dict:
        logits = self._outputs(params, batch, None)
        return {"score": logits[:, 0]} if self.regression else {"logits": logits}

    def predicted_labels(self, predictions: dict[str, np.ndarray]) -> np.ndarray:
        return predictions["score"] if self.regression else np.argmax(predictions["logits"], axis=-1)

    def evaluate(self, predictions: dict[str, np.ndarray], split: str) -> dict[str, float]:
        labels = np.array([example.label for example in self.examples(split)])
        return compute_metrics(self.spec.metrics, self.predicted_labels(predictions), labels)

    def write_predictions(self, predictions: dict[str, np.ndarray], split: str,
                          directory: str | pathlib.Path) -> list[pathlib.Path]:
        """A test split's predictions as the GLUE server wants them (`index<TAB>prediction`, one file per
        task and split: SST-2.tsv, MNLI-m.tsv, AX.tsv, ...); an evaluation split's as `<split>_predictions.tsv`
        with the gold label beside each prediction."""
        spec = TASKS["ax"] if split == AX_SPLIT else self.spec
        test = split == AX_SPLIT or split in spec.test_files
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / (spec.test_files["test" if split == AX_SPLIT else split][1] if test
                            else f"{split}_predictions.tsv")
        lines = ["index\tprediction" + ("" if test else "\tlabel")]
        for example, value in zip(self.examples(split), self.predicted_labels(predictions), strict=True):
            lines.append(f"{example.index}\t{self._shown(value)}" + ("" if test else f"\t{self._shown(example.label)}"))
        files.write_text(path, "\n".join(lines) + "\n")
        return [path]

    def _shown(self, value) -> str:
        if self.regression:
            return f"{min(max(float(value), 0.0), 5.0):.3f}"  # STS-B scores lie in [0, 5]
        return self.spec.labels[int(value)]


# Human-readable label names recorded in checkpoints and exported configs (the TSV values are 0/1).
_LABEL_NAMES = {
    "cola": ("unacceptable", "acceptable"), "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate"),
    "wnli": ("not_entailment", "entailment"),
}

