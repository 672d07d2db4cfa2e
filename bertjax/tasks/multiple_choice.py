"""Multiple choice in SWAG's format: a context and N candidate continuations, one of them right.

    swagaf CSV (train.csv, val.csv, test.csv: video-id, fold-ind, startphrase, sent1, sent2, gold-source,
      ending0 ... endingK, label; test files without label)
    ─ per choice i: [CLS] sent1 [SEP] sent2 + " " + ending_i [SEP], as HF's run_swag pairs them, the pair cut
      as BERT cuts pairs ─ (N, L) rows per example
    ─ `BertForMultipleChoice`: one score per choice, softmax cross entropy over the N choices
    ─ accuracy (the best checkpoint's metric); `SPLIT_predictions.csv`

The number of choices is the training file's number of `ending` columns (SWAG: 4); every file must have as
many. Shape letters: B batch, N choices, L length.
"""

import csv
import dataclasses
import functools
import io
import pathlib

import grain
import jax.numpy as jnp
import numpy as np

from bertjax import convert, files, losses
from bertjax.data import batching, tokenizer as tokenizers
from bertjax.heads import BertForMultipleChoice
from bertjax.model import BertConfig
from bertjax.tasks.base import TaskBase, label_subset
from bertjax.tasks.glue import encode


# --- reading ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Question:
    context: str  # sent1
    endings: tuple[str, ...]  # sent2 + " " + ending_i, for each choice i
    label: int | None  # the right ending's index; None in test files
    ids: tuple[str, str]  # the file's video-id and fold-ind ("" where the file has no such column)
    line: int  # where the row starts in the file (1-based), for messages


def _ending_columns(header: list[str], path) -> list[str]:
    """ending0, ending1, ... as far as they go without a gap; at least two."""
    count = 0
    while f"ending{count}" in header:
        count += 1
    stray = sorted(name for name in header if name.startswith("ending") and name[6:].isdigit()
                   and int(name[6:]) >= count)
    if stray:
        raise ValueError(f"{path}:1: the columns {stray} follow no ending{count}; endings are numbered from "
                         "ending0 without gaps.")
    if count < 2:
        raise ValueError(f"{path}:1: the header {header} has {count} ending column(s); expected ending0, "
                         "ending1, ... (SWAG's CSV layout: sent1, sent2, ending0..ending3, label).")
    return [f"ending{index}" for index in range(count)]


def read_swag(path: str | pathlib.Path, *, labelled: bool) -> list[Question]:
    """The questions of a SWAG CSV file (swagaf's train.csv/val.csv/test.csv, or any file with a header naming
    sent1, sent2, ending0..endingK and, when `labelled`, label; other columns such as swagaf's unnamed index,
    startphrase and gold-source are ignored). A row with another number of fields than the header, or a
    label that is not an ending's index, is an error naming the file and line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SWAG file {path} not found.")
    with path.open(encoding="utf-8-sig", newline="") as file:
        rows = csv.reader(file)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty; expected a header row (sent1, sent2, ending0, ...).")
        endings = _ending_columns(header, path)
        needed = ["sent1", "sent2", *(["label"] if labelled else [])]
        missing = [name for name in needed if name not in header]
        if missing:
            raise ValueError(f"{path}:1: the header {header} lacks the column(s) {missing} of SWAG's CSV layout"
                             + ("" if "label" not in missing else "; a test file without labels goes in "
                                "swag.test_file") + ".")
        column = {name: index for index, name in enumerate(header)}
        ending_columns = [column[name] for name in endings]
        questions, start = [], rows.line_num + 1
        for row in rows:
            line, start = start, rows.line_num + 1  # a quoted field may span lines: the row starts at `line`
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: {len(row)} comma-separated fields where the header has "
                                 f"{len(header)}; quote fields that hold commas.")
            label = None
            if labelled:
                value = row[column["label"]].strip()
                if not value.isdigit() or int(value) >= len(endings):
                    raise ValueError(f"{path}:{line}: label {value!r} is not an ending's index (0 to "
                                     f"{len(endings) - 1}).")
                label = int(value)
            sent2 = row[column["sent2"]]
            ids = tuple(row[column[name]] if name in column else "" for name in ("video-id", "fold-ind"))
            questions.append(Question(row[column["sent1"]], tuple(f"{sent2} {row[c]}" for c in ending_columns),
                                      label, ids, line))
    if not questions:
        raise ValueError(f"{path} holds no rows after its header.")
    return questions


def count_choices(path: str | pathlib.Path) -> int:
    """The number of ending columns in a SWAG CSV file's header."""
    with pathlib.Path(path).open(encoding="utf-8-sig", newline="") as file:
        header = next(csv.reader(file), None)
    if header is None:
        raise ValueError(f"{path}: the file is empty; expected a header row (sent1, sent2, ending0, ...).")
    return len(_ending_columns(header, path))


# --- encoding -----------------------------------------------------------------------------------------------
def batch_fields(num_choices: int, max_seq_length: int) -> dict[str, batching.Field]:
    rows = (num_choices, max_seq_length)
    return {"input_ids": batching.Field(rows), "segment_ids": batching.Field(rows),
            "attention_mask": batching.Field(rows), "label": batching.Field(()), **batching.example_fields()}


class _Encode(grain.transforms.Map):
    """Position in a split -> its N rows, [CLS] context [SEP] ending [SEP], from token ids made once."""

    def __init__(self, questions: list[Question], context_ids: list, ending_ids: list,
                 tokenizer: tokenizers.Tokenizer, max_seq_length: int):
        self._questions, self._context_ids, self._ending_ids = questions, context_ids, ending_ids
        self._cls_id, self._sep_id, self._max_seq_length = tokenizer.cls_id, tokenizer.sep_id, max_seq_length

    def map(self, position: int) -> dict:
        question = self._questions[position]
        shape = (len(question.endings), self._max_seq_length)  # N, L
        row = {name: np.zeros(shape, np.int32) for name in ("input_ids", "segment_ids", "attention_mask")}
        for choice, ending_ids in enumerate(self._ending_ids[position]):
            ids, segments = encode([self._context_ids[position], ending_ids], self._max_seq_length, self._cls_id,
                                   self._sep_id)
            row["input_ids"][choice, :len(ids)] = ids
            row["segment_ids"][choice, :len(ids)] = segments
            row["attention_mask"][choice, :len(ids)] = 1
        return {**row, "label": question.label or 0, "example_index": position}


# --- the task -----------------------------------------------------------------------------------------------
class MultipleChoiceTask(TaskBase):
    """SWAG-style multiple choice for the train loop: `BertForMultipleChoice` on `config.swag`'s files.
    Evaluation rows are indexed by position in their file; `predictions` are (N,) logits per question."""

    name = "swag"
    metric = "accuracy"
    eval_splits = ("validation",)
    fresh_parameters = ("classifier",)  # new at fine-tuning; the encoder and pooler come from the checkpoint

    def __init__(self, config):
        self.settings, self.max_seq_length = config.swag, config.data.max_seq_length
        self.train_examples, self.seed = config.finetune.train_examples, config.seed
        self.model_config = BertConfig.from_config(config.model)
        self.check_sequence_length(self.max_seq_length, self.model_config)
        self.require(config.swag, ("train_file",), "swag", "(SWAG's train.csv; it also fixes the number of choices).")
        self.require(config.data, ("tokenizer",), "data", "(or an init_checkpoint whose run names one).")
        self.tokenizer = tokenizers.load_tokenizer(config.data.tokenizer, config.data.lowercase)
        self.check_tokenizer_fits(self.tokenizer, self.model_config)
        self.num_choices = count_choices(config.swag.train_file)
        self.fields = batch_fields(self.num_choices, self.max_seq_length)
        self.model = BertForMultipleChoice(self.model_config)
        self.identity = {"task": self.name, "head": convert.HEADS["multiple_choice"].recorded_as,
                         "num_choices": self.num_choices, "tokenizer_fingerprint": self.tokenizer.fingerprint}

    @property
    def test_splits(self) -> tuple[str, ...]:
        """The splits `--predict` writes: the test file's when there is one, else the validation file's."""
        return ("test",) if self.settings.test_file else ("validation",)

    # --- data -----------------------------------------------------------------------------------------------
    def read(self, split: str) -> None:
        self.questions(split)

    @functools.cache
    def questions(self, split: str) -> list[Question]:
        path = {"train": self.settings.train_file, "validation": self.settings.validation_file,
                "test": self.settings.test_file}.get(split)
        if not path:
            raise ValueError(f"No file for split {split!r}: set config.swag.{split}_file.")
        questions = read_swag(path, labelled=split != "test")
        if len(questions[0].endings) != self.num_choices:
            raise ValueError(f"{path}: {len(questions[0].endings)} endings per question where the training file "
                             f"{self.settings.train_file} has {self.num_choices}.")
        return label_subset(questions, self.train_examples, self.seed, path) if split == "train" else questions

    @functools.cache
    def token_ids(self, split: str) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
        """Each question's context and endings as token ids, tokenized once per split."""
        questions = self.questions(split)
        contexts = self.tokenizer.encode_batch([question.context for question in questions])
        endings = self.tokenizer.encode_batch([ending for question in questions for ending in question.endings])
        context_ids = [np.asarray(ids, np.int32) for ids in contexts]
        count = self.num_choices
        ending_ids = [[np.asarray(ids, np.int32) for ids in endings[row * count:(row + 1) * count]]
                      for row in range(len(questions))]
        return context_ids, ending_ids

    def num_train_examples(self) -> int:
        return len(self.questions("train"))

    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        questions = self.questions(split)
        encode_row = _Encode(questions, *self.token_ids(split), self.tokenizer, self.max_seq_length)
        return batching.indexed_batches(len(questions), encode_row, self.fields, batch_size=batch_size, seed=seed,
                                        train=train, process_index=process_index, process_count=process_count,
                                        name=self.name)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        return batching.empty_batch(self.fields, batch_size)

    # --- model ----------------------------------------------------------------------------------------------
    @staticmethod
    def normalizers(batch) -> dict:
        return {"examples": jnp.sum(batch["example_weight"])}

    def loss(self, params, batch, rng, normalizers=None):
        logits = self.apply(params, batch, rng).logits  # B, N
        return losses.classification_loss(logits, batch["label"], batch["example_weight"],
                                          (normalizers or self.normalizers(batch))["examples"])

    summarize = staticmethod(losses.summarize_classification)

    def predict(self, params, batch) -> dict:
        return {"logits": self.apply(params, batch).logits}  # B, N

    # --- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self, predictions: dict[str, np.ndarray], split: str) -> dict[str, float]:
        labels = np.array([question.label for question in self.questions(split)])
        return {"accuracy": float(np.mean(np.argmax(predictions["logits"], axis=-1) == labels))}

    def write_predictions(self, predictions: dict[str, np.ndarray], split: str,
                          directory: str | pathlib.Path) -> list[pathlib.Path]:
        """`SPLIT_predictions.csv`: per question its position in the file, video-id, fold-ind, the predicted
        ending's index, the label (files that have one) and each ending's logit."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        questions, logits = self.questions(split), np.asarray(predictions["logits"])
        labelled = split != "test"
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["index", "video-id", "fold-ind", "prediction", *(["label"] if labelled else []),
                         *(f"logit{choice}" for choice in range(self.num_choices))])
        for index, (question, scores) in enumerate(zip(questions, logits, strict=True)):
            writer.writerow([index, *question.ids, int(np.argmax(scores)), *([question.label] if labelled else []),
                             *(f"{score:.6f}" for score in scores)])
        path = directory / f"{split}_predictions.csv"
        files.write_text(path, text.getvalue())
        return [path]
