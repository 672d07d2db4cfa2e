"""Fine-tuning on your own labelled files: `finetune.task=classify` with the `classify` config group.

Texts (one, or a pair: [CLS] A [SEP] B [SEP]) and a label per row, from CSV, TSV, JSON lines or Parquet files
(`bertjax.data.records.read_rows`, told by the file name), for HF's three problem types:

    single_label_classification   one label name per row, any label set: accuracy, macro-F1, per-class
                                  precision, recall, F1 and support
    regression                    a number per row, one output: Pearson, Spearman, MSE
    multi_label_classification    a list of label names per row (a JSON list, or names joined by
                                  `label_separator` in a string column); a sigmoid per label, threshold 0.5:
                                  micro-F1, macro-F1, exact match (subset accuracy)

The label set is `classify.labels` (comma-separated, in id order) or the training file's labels, sorted. It is
recorded in every checkpoint with the problem type, and the HF export's config.json carries both (`id2label`,
`label2id`, `problem_type`). The first metric selects the best checkpoint. A dev or test label outside the set
is an error naming it, its file and line; with `unseen_labels=wrong` the row counts as wrong instead.

The encoding, batches, head and whole-split prediction are GLUE's (`glue.ClassificationTask`); this module
reads the files and scores the predictions.
"""

import functools
import math
import pathlib
from typing import NamedTuple

import jax
import numpy as np
from absl import logging

from bertjax import files, losses
from bertjax.data import batching, records
from bertjax.heads import BertForSequenceClassification
from bertjax.tasks import glue
from bertjax.tasks.base import label_subset

SINGLE, REGRESSION, MULTI = "single_label_classification", "regression", "multi_label_classification"
METRICS = {SINGLE: ("accuracy", "macro_f1"), REGRESSION: ("pearson", "spearman", "mse"),
           MULTI: ("micro_f1", "macro_f1", "exact_match")}
SPLIT_FILES = {"train": "train_file", "validation": "validation_file", "test": "test_file"}


class Example(NamedTuple):
    index: int  # the row's position in its file (0-based, blank lines not counted)
    texts: tuple[str, ...]
    # single-label: the class index (-1: a label outside the set); regression: the score; multi-label: a tuple
    # of class indices (-1 for each label outside the set); None: the row has no label (test files)
    label: int | float | tuple[int, ...] | None
    gold: str | None  # the label as the file writes it (multi-label: names joined by the separator)


# --- reading rows --------------------------------------------------------------------------------------------

def _text(value, column: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        found = "missing" if value is None else "empty" if isinstance(value, str) else f"a {type(value).__name__}"
        raise ValueError(f"{where}: the text column {column!r} is {found}; expected a non-empty string (fill or "
                         "drop the row).")
    return value


def _label_name(value, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    found = "empty" if isinstance(value, str) else "missing" if value is None else f"{value!r}"
    raise ValueError(f"{where}: the label is {found}; expected a label name (a string or an integer).")


def _score(value, where: str) -> float:
    try:
        score = float(value.strip() if isinstance(value, str) else value)
        if isinstance(value, bool) or not math.isfinite(score):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the label {value!r} is not a number; regression expects a finite number "
                         "per row.") from None
    return score


def _label_list(value, where: str, separator: str, jsonl: bool) -> list[str]:
    if isinstance(value, str) and not jsonl:
        return [name.strip() for name in value.split(separator) if name.strip()]
    if not isinstance(value, (list, tuple)):
        expected = "a JSON list of label names" if jsonl else f"label names joined by {separator!r}, or a list"
        raise ValueError(f"{where}: the label {value!r} is not a list; multi-label rows expect {expected}.")
    return [_label_name(name, where) for name in value]


def read_labelled(path: str | pathlib.Path, settings, *, labelled: bool) -> list[tuple[str, tuple[str, ...], object]]:
    """(where, texts, raw label) per row of one file: the label as a name (single-label), a float
    (regression), a list of names (multi-label), or None where the file has no label (`labelled=False`: the
    label column is optional). A bad row is a one-line ValueError naming the file and line."""
    text_columns = [settings.text_a_column, *([settings.text_b_column] if settings.text_b_column else [])]
    columns = text_columns + ([settings.label_column] if labelled else [])
    optional = [] if labelled else [settings.label_column]
    fix = "set classify.text_a_column, text_b_column and label_column to the file's names."
    jsonl = ".jsonl" in pathlib.Path(path).name.lower()
    rows = []
    for row in records.read_rows(path, columns, optional, fix=fix):
        texts = tuple(_text(row.values[column], column, row.where) for column in text_columns)
        value = row.values[settings.label_column]
        if value is None or (not labelled and value == ""):
            if labelled:
                raise ValueError(f"{row.where}: the label column {settings.label_column!r} is missing; every "
                                 "training and validation row needs a label.")
            label = None
        elif settings.problem_type == REGRESSION:
            label = _score(value, row.where)
        elif settings.problem_type == MULTI:
            label = _label_list(value, row.where, settings.label_separator, jsonl)
        else:
            label = _label_name(value, row.where)
        rows.append((row.where, texts, label))
    return rows


def label_set(raw_labels, problem_type: str) -> tuple[str, ...]:
    """The training file's label names, sorted: as numbers when every name is an integer ("2" before "10"),
    else as strings."""
    names = set()
    for label in raw_labels:
        names.update(label if problem_type == MULTI else [label])
    return tuple(sorted(names, key=int if all(map(_is_integer, names)) else None))


def _is_integer(name: str) -> bool:
    try:
        return str(int(name)) == name
    except ValueError:
        return False


# --- metrics -------------------------------------------------------------------------------------------------

def single_label_metrics(predicted: np.ndarray, gold: np.ndarray, labels) -> dict[str, float]:
    """Accuracy, macro-F1 over the label set, and per label its precision, recall, F1 and support
    (`LABEL/precision`, ...). Gold -1 (a label outside the set) matches no prediction."""
    from sklearn import metrics

    classes = list(range(len(labels)))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        gold, predicted, labels=classes, zero_division=0.0)
    results = {"accuracy": float(np.mean(predicted == gold)),
               "macro_f1": float(metrics.f1_score(gold, predicted, labels=classes, average="macro",
                                                  zero_division=0.0))}
    for index, name in enumerate(labels):
        results |= {f"{name}/precision": float(precision[index]), f"{name}/recall": float(recall[index]),
                    f"{name}/f1": float(f1[index]), f"{name}/support": float(support[index])}
    return results


def regression_metrics(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    return {**glue.compute_metrics(("pearson", "spearman"), predicted, gold),
            "mse": float(np.mean((predicted - gold) ** 2))}


def multi_hot(label: tuple[int, ...] | None, num_labels: int) -> np.ndarray:
    """Class indices -> (num_labels + 1,) 0/1, the last column set when a label lies outside the set."""
    row = np.zeros(num_labels + 1, np.int32)
    for index in label or ():
        row[index if index >= 0 else num_labels] = 1
    return row


def multi_label_metrics(predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """(N, C) 0/1 predictions against (N, C + 1) 0/1 gold labels (the last column: a label outside the set,
    never predicted). Micro-F1 over every label (an unseen gold label is a miss), macro-F1 over the C labels,
    and exact match: the rows whose whole label set is right."""
    from sklearn import metrics

    num_labels = predicted.shape[1]
    predicted = np.concatenate([predicted, np.zeros((len(predicted), 1), predicted.dtype)], axis=1)
    return {"micro_f1": float(metrics.f1_score(gold, predicted, average="micro", zero_division=0.0)),
            "macro_f1": float(metrics.f1_score(gold[:, :num_labels], predicted[:, :num_labels], average="macro",
                                               zero_division=0.0)),
            "exact_match": float(np.mean(np.all(predicted == gold, axis=1)))}


# --- the task ------------------------------------------------------------------------------------------------

class _Encode(glue._Encode):
    """GLUE's encoding, with multi-label rows' class indices as 0/1 targets."""

    def __init__(self, *args, num_labels: int | None):
        super().__init__(*args)
        self._num_labels = num_labels

    def map(self, position: int) -> dict:
        row = super().map(position)
        if self._num_labels is not None:
            row["label"] = multi_hot(self._examples[position].label, self._num_labels)[:-1]
        return row


class FileClassificationTask(glue.ClassificationTask):
    """`glue.ClassificationTask` on the files of `config.classify` (see the module's docstring)."""

    def __init__(self, config):
        settings = self.settings = config.classify
        if settings.problem_type not in METRICS:
            raise ValueError(f"classify.problem_type={settings.problem_type!r}: choose one of {list(METRICS)}.")
        if settings.unseen_labels not in ("error", "wrong"):
            raise ValueError(f"classify.unseen_labels={settings.unseen_labels!r}: choose error or wrong.")
        self.problem_type = settings.problem_type
        self.regression, self.multi_label = self.problem_type == REGRESSION, self.problem_type == MULTI
        self.labels = () if self.regression else self._label_set()
        text_columns = (settings.text_a_column, *([settings.text_b_column] if settings.text_b_column else ()))
        self.spec = glue.TaskSpec(
            "classify", "", text_columns, (), settings.label_column, self.labels or None, METRICS[self.problem_type],
            {"validation": settings.validation_file},
            {"test": (settings.test_file, "test_predictions.tsv")} if settings.test_file else {},
            train_file=settings.train_file)
        self.name = "classify"
        self._set_up_encoder(config)
        num_outputs = self.spec.num_labels
        length = (self.max_seq_length,)
        label_field = (batching.Field((num_outputs,), np.float32) if self.multi_label
                       else batching.Field((), np.float32 if self.regression else np.int32))
        self.fields = {"input_ids": batching.Field(length), "segment_ids": batching.Field(length),
                       "attention_mask": batching.Field(length, ones_over="input_ids"), "label": label_field,
                       **batching.example_fields()}
        self.model = BertForSequenceClassification(self.model_config, num_outputs)
        self.metric = self.spec.metrics[0]
        self.identity = {"task": self.name, "head": self.head, "num_labels": num_outputs,
                         "labels": list(self.labels) or None, "problem_type": self.problem_type,
                         "tokenizer_fingerprint": self.tokenizer.fingerprint}

    def _label_set(self) -> tuple[str, ...]:
        """`classify.labels` (comma-separated, in id order), else the training file's labels (`label_set`)."""
        settings = self.settings
        if settings.labels:
            labels = tuple(name.strip() for name in settings.labels.split(",") if name.strip())
            if len(set(labels)) != len(labels):
                raise ValueError(f"classify.labels={settings.labels!r} names a label twice.")
        else:
            self.require(settings, ("train_file",), "classify", "(its labels make the label set), or set "
                         "classify.labels to the label names in id order.")
            labels = label_set((label for _, _, label in self._raw("train")), self.problem_type)
        if len(labels) < (1 if self.multi_label else 2):
            raise ValueError(f"{settings.labels or settings.train_file}: {len(labels)} label(s) {list(labels)}; "
                             "classification needs at least two (multi-label: one).")
        return labels

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.labels

    @property
    def test_splits(self) -> tuple[str, ...]:
        """The splits `--predict` writes: the validation file's (with its per-class report) and the test file's."""
        return ("validation", "test") if self.settings.test_file else ("validation",)

    # --- data -----------------------------------------------------------------------------------------------
    @functools.cache
    def _raw(self, split: str):
        if split not in SPLIT_FILES or not self.settings[SPLIT_FILES[split]]:
            raise ValueError(f"{self.name} has no split {split!r}; set classify.{SPLIT_FILES.get(split, 'test_file')}.")
        return read_labelled(self.settings[SPLIT_FILES[split]], self.settings, labelled=split != "test")

    @functools.cache
    def examples(self, split: str) -> list[Example]:
        examples, unseen = [], 0
        for position, (where, texts, raw) in enumerate(self._raw(split)):
            label, gold = raw, None if raw is None else str(raw)
            if raw is not None and not self.regression:
                names = raw if self.multi_label else [raw]
                indices = tuple(self.labels.index(name) if name in self.labels else -1 for name in names)
                outside = [name for name, index in zip(names, indices) if index < 0]
                if outside and (split == "train" or self.settings.unseen_labels == "error"):
                    raise ValueError(f"{where}: label {outside[0]!r} is not one of {list(self.labels)}"
                                     + ("" if split == "train" else "; set classify.unseen_labels=wrong to count such "
                                        "rows as wrong") + ".")
                unseen += bool(outside)
                label = indices if self.multi_label else indices[0]
                gold = self.settings.label_separator.join(names) if self.multi_label else raw
            examples.append(Example(position, texts, label, gold))
        if unseen:
            logging.warning("%s: %d row(s) with a label outside %s, counted as wrong.",
                            self.settings[SPLIT_FILES[split]], unseen, list(self.labels))
        if split != "train":
            return examples
        stratify = not (self.regression or self.multi_label)
        return label_subset(examples, self.finetune.train_examples, self.seed, self.name,
                            [example.label for example in examples] if stratify else None)

    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        if train:  # before training, not at its first evaluation
            self.require(self.settings, ("validation_file",), "classify", "(it selects the best checkpoint).")
        examples = self.examples(split)
        encode = _Encode(examples, self.token_ids(split), self.tokenizer, self.max_seq_length,
                         num_labels=len(self.labels) if self.multi_label else None)
        return batching.indexed_batches(len(examples), encode, self.fields, batch_size=batch_size, seed=seed,
                                        train=train, process_index=process_index, process_count=process_count,
                                        name=self.name)

    # --- model ----------------------------------------------------------------------------------------------
    def loss(self, params, batch, rng, normalizers=None):
        if not self.multi_label:
            return super().loss(params, batch, rng, normalizers)
        return losses.multi_label_loss(self._outputs(params, batch, rng), batch["label"], batch["example_weight"],
                                       (normalizers or self.normalizers(batch))["examples"])

    def predict(self, params, batch) -> dict[str, jax.Array]:
        if not self.multi_label:
            return super().predict(params, batch)
        return {"logits": self._outputs(params, batch, None)}  # a label is predicted where its sigmoid > 0.5

    def predicted_labels(self, predictions: dict[str, np.ndarray]) -> np.ndarray:
        if self.multi_label:
            return np.asarray(predictions["logits"]) > 0  # sigmoid > 0.5
        return super().predicted_labels(predictions)

    # --- evaluation -----------------------------------------------------------------------------------------
    def _gold(self, examples: list[Example]) -> np.ndarray:
        if self.multi_label:
            return np.stack([multi_hot(example.label, len(self.labels)) for example in examples])
        return np.array([example.label for example in examples], np.float64 if self.regression else np.int64)

    def evaluate(self, predictions: dict[str, np.ndarray], split: str) -> dict[str, float]:
        examples = self.examples(split)
        if any(example.label is None for example in examples):
            raise ValueError(f"{self.settings[SPLIT_FILES[split]]}: rows without a label cannot be scored.")
        predicted, gold = self.predicted_labels(predictions), self._gold(examples)
        if self.regression:
            return regression_metrics(np.asarray(predicted, np.float64), gold)
        if self.multi_label:
            return multi_label_metrics(predicted.astype(np.int32), gold)
        return single_label_metrics(predicted, gold, self.labels)

    def write_predictions(self, predictions: dict[str, np.ndarray], split: str,
                          directory: str | pathlib.Path) -> list[pathlib.Path]:
        """`SPLIT_predictions.tsv`: `index<TAB>prediction`, and `<TAB>label` (the file's) where every row has
        one; predictions are label names (multi-label: joined by `label_separator`) or scores. With labels, a
        classification task also writes `SPLIT_report.txt`: scikit-learn's per-class report."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        examples, predicted = self.examples(split), self.predicted_labels(predictions)
        labelled = all(example.label is not None for example in examples)
        lines = ["index\tprediction" + ("\tlabel" if labelled else "")]
        for example, value in zip(examples, predicted, strict=True):
            lines.append(f"{example.index}\t{self._shown(value)}" + (f"\t{example.gold}" if labelled else ""))
        written = [directory / f"{split}_predictions.tsv"]
        files.write_text(written[0], "\n".join(lines) + "\n")
        if labelled and not self.regression:
            written.append(directory / f"{split}_report.txt")
            files.write_text(written[1], self.report(predicted, self._gold(examples)))
        return written

    def report(self, predicted: np.ndarray, gold: np.ndarray) -> str:
        """scikit-learn's classification report (precision, recall, F1, support per label) with the names."""
        from sklearn import metrics

        if self.multi_label:
            predicted, gold = predicted.astype(np.int32), gold[:, :len(self.labels)]
        return metrics.classification_report(gold, predicted, labels=list(range(len(self.labels))),
                                             target_names=list(self.labels), digits=4, zero_division=0.0)

    def _shown(self, value) -> str:
        if self.regression:
            return f"{float(value):.6g}"
        if self.multi_label:
            return self.settings.label_separator.join(name for name, on in zip(self.labels, value) if on)
        return self.labels[int(value)]
