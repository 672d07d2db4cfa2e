"""Predictions on raw text from a fine-tuned run or an HF folder: what `bertjax predict` writes, from Python.

    predictor = bertjax.load("runs/sst2")           # a run (its best/ when it has one), a step, or an HF folder
    predictor.classify(["a fine film", "dull"])     # [{"label": ..., "probability": ..., "probabilities": {...}}]
    predictor.tag(["EU rejects German call"])       # [{"words": [{"word", "tag", "start", "end"}], "entities": []}]
    predictor.answer(["Who?"], ["Ada wrote it."])   # [{"answer": "Ada", "start": 0, "end": 3, "score": ...}]
    predictor.stream(rows)                          # any of the three, lazily, from dicts of the input's fields

What each head gives per example:

    sequence_classification   single-label: `label`, its `probability`, `probabilities` by label name;
                              regression: `score`; multi-label: `labels` (sigmoid > 0.5) and `probabilities`
    token_classification      per word (split as BERT's basic tokenizer splits: whitespace and punctuation) its
                              `tag` and `start`/`end` character offsets; `entities` (type, text, start, end)
    question_answering        the `answer` text, its `start`/`end` offsets in the context and `score`; a v2.0
                              null answer is "" with start and end None

Rows are encoded as fine-tuning encodes them (classification truncates as `glue.encode` does; tagging splits a
long text into overlapping windows, each word tagged from the one that gives it the most context, as
`ner.make_features` does; SQuAD's windows every `doc_stride` tokens)
and run in batches of `batch_size` rows padded to a few lengths (`length_buckets`), one compile per length.
`stream` holds one group of `batch_size` examples at a time, whatever the length of its input.
"""

import dataclasses
import itertools
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bertjax import convert, hub, interop, runs
from bertjax.data import tokenizer as tokenizers
from bertjax.model import BertConfig

PROBLEM_TYPES = ("single_label_classification", "regression", "multi_label_classification")
_MULTI_LABEL_THRESHOLD = 0.5
_SQUAD_DEFAULTS = {"doc_stride": 128, "max_query_length": 64, "n_best_size": 20, "max_answer_length": 30,
                   "version_2": False, "null_score_diff_threshold": 0.0}


def length_buckets(max_seq_length: int, smallest: int = 16) -> tuple[int, ...]:
    """Row lengths a batch is padded to: powers of two from `smallest`, and `max_seq_length` itself."""
    lengths = [smallest]
    while lengths[-1] * 2 < max_seq_length:
        lengths.append(lengths[-1] * 2)
    return tuple(length for length in lengths if length < max_seq_length) + (max_seq_length,)


def problem_type(record: dict) -> str:
    """A record's `problem_type` (HF's names); older records have none: regression when `labels` is None."""
    kind = record.get("problem_type")
    if kind is None:
        return "regression" if record.get("labels") is None else "single_label_classification"
    if kind not in PROBLEM_TYPES:
        raise ValueError(f"problem_type {kind!r} is not one of {PROBLEM_TYPES}.")
    return kind


@dataclasses.dataclass
class Predictor:
    """A model with its head, parameters, tokenizer and settings; see the module's docstring."""

    model_config: BertConfig
    head: str  # a `convert.HEADS` name
    params: Any
    tokenizer: tokenizers.Tokenizer
    labels: list[str] | None
    problem_type: str | None  # sequence classification's
    max_seq_length: int
    batch_size: int = 32
    squad: dict = dataclasses.field(default_factory=lambda: dict(_SQUAD_DEFAULTS))
    columns: dict = dataclasses.field(default_factory=dict)  # input field -> the run's column name (classify.*)
    ner_stride: int | None = None  # token classification: the run's ner.stride (None: half a window)

    def __post_init__(self):
        if self.head not in ("sequence_classification", "token_classification", "question_answering"):
            raise ValueError(f"A {self.head!r} checkpoint makes no predictions; predict with a fine-tuned run "
                             "(sequence classification, token classification or question answering).")
        model = convert.head_model(self.model_config, self.head, len(self.labels or ()) or 1)
        self._forward = jax.jit(lambda params, ids, segments, mask: model.apply(
            {"params": params}, ids, segments, mask, deterministic=True).logits)
        self.buckets = length_buckets(self.max_seq_length)
        self.compiled_shapes: set[tuple[int, int]] = set()  # (batch, length) of each call: one compile each

    # --- the public calls -----------------------------------------------------------------------------------
    def classify(self, texts: Sequence[str], texts_b: Sequence[str] | None = None) -> list[dict]:
        rows = [{"text": text, **({"text_b": texts_b[i]} if texts_b is not None else {})}
                for i, text in enumerate(texts)]
        return list(self.stream(rows))

    def tag(self, texts: Sequence[str]) -> list[dict]:
        return list(self.stream({"text": text} for text in texts))

    def answer(self, questions: Sequence[str], contexts: Sequence[str]) -> list[dict]:
        return list(self.stream({"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)))

    def __call__(self, *args):
        """`classify`, `tag` or `answer`, by the head."""
        method = {"sequence_classification": self.classify, "token_classification": self.tag,
                  "question_answering": self.answer}[self.head]
        return method(*args)

    def stream(self, rows: Iterable[dict]) -> Iterator[dict]:
        """One prediction per row, in order, lazily: rows are dicts with `text` (and `text_b`), or `question`
        and `context`. A group of `batch_size` rows is read, predicted and given out before the next."""
        rows = iter(rows)
        group_of = {"sequence_classification": self._classify_group, "token_classification": self._tag_group,
                    "question_answering": self._answer_group}[self.head]
        while group := list(itertools.islice(rows, self.batch_size)):
            yield from group_of(group)

    # --- running rows ---------------------------------------------------------------------------------------
    def logits(self, input_ids: list[list[int]], segment_ids: list[list[int]]) -> list[np.ndarray]:
        """The head's logits for each row of token ids, its own length long: rows sorted by length, run in
        batches of `batch_size` padded to the next length bucket (and to the batch size)."""
        order = sorted(range(len(input_ids)), key=lambda row: len(input_ids[row]))
        results: list[np.ndarray | None] = [None] * len(input_ids)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            longest = max(len(input_ids[row]) for row in chosen)
            length = next(bucket for bucket in self.buckets if bucket >= longest)
            ids = np.zeros((self.batch_size, length), np.int32)
            segments = np.zeros_like(ids)
            mask = np.zeros_like(ids)
            for slot, row in enumerate(chosen):
                ids[slot, :len(input_ids[row])] = input_ids[row]
                segments[slot, :len(segment_ids[row])] = segment_ids[row]
                mask[slot, :len(input_ids[row])] = 1
            self.compiled_shapes.add(ids.shape)
            output = np.asarray(self._forward(self.params, ids, segments, mask))
            for slot, row in enumerate(chosen):
                results[row] = output[slot] if output.ndim == 2 else output[slot, :len(input_ids[row])]
        return results

    # --- sequence classification ----------------------------------------------------------------------------
    def _classify_group(self, group: list[dict]) -> list[dict]:
        from bertjax.tasks import glue

        firsts = self.tokenizer.encode_batch([row["text"] for row in group])
        pairs = all(row.get("text_b") is not None for row in group)
        seconds = self.tokenizer.encode_batch([row["text_b"] for row in group]) if pairs else None
        encoded = [glue.encode([first, seconds[i]] if pairs else [first], self.max_seq_length,
                               self.tokenizer.cls_id, self.tokenizer.sep_id) for i, first in enumerate(firsts)]
        logits = self.logits([ids for ids, _ in encoded], [segments for _, segments in encoded])
        return [self.classification(row_logits) for row_logits in logits]

    def classification(self, logits: np.ndarray) -> dict:
        """One row's (C,) logits -> what the problem type reports."""
        logits = np.asarray(logits, np.float64)
        if self.problem_type == "regression":
            return {"score": float(logits[0])}
        names = self.labels or [f"LABEL_{index}" for index in range(len(logits))]
        if self.problem_type == "multi_label_classification":
            probabilities = 1 / (1 + np.exp(-logits))
            return {"labels": [name for name, p in zip(names, probabilities) if p > _MULTI_LABEL_THRESHOLD],
                    "probabilities": {name: float(p) for name, p in zip(names, probabilities)}}
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = int(np.argmax(probabilities))
        return {"label": names[best], "probability": float(probabilities[best]),
                "probabilities": {name: float(p) for name, p in zip(names, probabilities)}}

    # --- token classification -------------------------------------------------------------------------------
    def _tag_group(self, group: list[dict]) -> list[dict]:
        """Words split as BERT's basic tokenizer splits them, encoded and windowed as fine-tuning does
        (`ner.make_features`: a long text in overlapping windows, each word tagged from the window that gives
        it the most context)."""
        from bertjax.tasks import ner

        spans = [tokenizers.punctuation_runs(row["text"]) for row in group]
        sentences = [ner.Sentence(tuple(row["text"][start:end] for start, end in example), ("O",) * len(example), 0)
                     for row, example in zip(group, spans)]
        features = ner.make_features(sentences, self.tokenizer, self.labels, max_seq_length=self.max_seq_length,
                                     stride=self.ner_stride)
        lengths = features["attention_mask"].sum(axis=1)
        logits = self.logits([row[:length] for row, length in zip(features["input_ids"].tolist(), lengths)],
                             [[0] * length for length in lengths])
        tag_ids = np.zeros(features["input_ids"].shape, np.int64)
        for row, row_logits in enumerate(logits):
            tag_ids[row, :len(row_logits)] = np.argmax(row_logits, axis=-1)
        tags = ner.word_tags(tag_ids, features, sentences, self.labels)
        return [_tagged(row["text"], example, example_tags) for row, example, example_tags in zip(group, spans, tags)]

    # --- span prediction ------------------------------------------------------------------------------------
    def _answer_group(self, group: list[dict]) -> list[dict]:
        from bertjax.tasks import squad

        examples = [squad.Example(str(index), row["question"], row["context"], ()) for index, row in enumerate(group)]
        settings = self.squad
        features = squad.make_features(examples, self.tokenizer, max_seq_length=self.max_seq_length,
                                       doc_stride=settings["doc_stride"], max_query_length=settings["max_query_length"])
        lengths = features["attention_mask"].sum(axis=1)
        logits = self.logits([row[:length] for row, length in zip(features["input_ids"].tolist(), lengths)],
                             [row[:length] for row, length in zip(features["segment_ids"].tolist(), lengths)])
        full = np.full((len(logits), self.max_seq_length, 2), -1e9, np.float32)  # padding: never a span
        for row, row_logits in enumerate(logits):
            full[row, :len(row_logits)] = row_logits
        answers, null_odds, _, n_best = squad.postprocess(
            examples, features, full[..., 0], full[..., 1], n_best_size=settings["n_best_size"],
            max_answer_length=settings["max_answer_length"], version_2=settings["version_2"],
            null_score_diff_threshold=settings["null_score_diff_threshold"])
        results = []
        for example in examples:
            kept = n_best[example.qid]
            if not kept or (settings["version_2"] and answers[example.qid] == ""):
                result = {"answer": "", "start": None, "end": None,
                          "score": float(kept[0].score) if kept else None}
            else:
                best = kept[0]
                offsets = features["offsets"][best.feature]
                result = {"answer": best.text, "start": int(offsets[best.start, 0]),
                          "end": int(offsets[best.end, 1]), "score": float(best.score)}
            if settings["version_2"]:
                result["null_odds"] = float(min(null_odds[example.qid], 1e9))
            results.append(result)
        return results


def _tagged(text: str, spans: list[tuple[int, int]], tags: list[str]) -> dict:
    """Words with their tags and offsets, and the entities of the IOB2 tags (an I- tag after O or another
    type starts an entity, as `ner.to_iob2` reads it)."""
    words = [{"word": text[start:end], "tag": tag, "start": start, "end": end}
             for (start, end), tag in zip(spans, tags)]
    entities = []
    for (start, end), tag in zip(spans, tags):
        kind = tag[2:] if tag != "O" else None
        if kind and (tag.startswith("B-") or not entities or entities[-1]["_open"] != kind):
            entities.append({"type": kind, "start": start, "end": end, "_open": kind})
        elif kind:
            entities[-1]["end"] = end
        if not kind and entities:
            entities[-1]["_open"] = None
    for entity in entities:
        del entity["_open"]
        entity["text"] = text[entity["start"]:entity["end"]]
    return {"words": words, "entities": entities}


# --- input files --------------------------------------------------------------------------------------------
def input_fields(predictor: Predictor, text_column=None, text_b_column=None, question_column=None,
                 context_column=None) -> dict[str, str]:
    """Input field -> the file's column: given names, else the run's `classify.*` columns, else `text`
    (and no second text), `question`, `context`."""
    if predictor.head == "question_answering":
        return {"question": question_column or "question", "context": context_column or "context"}
    fields = {"text": text_column or predictor.columns.get("text", "text")}
    text_b = text_b_column or predictor.columns.get("text_b")
    return {**fields, "text_b": text_b} if text_b else fields


def read_inputs(path: str | pathlib.Path, fields: dict[str, str]) -> Iterator[dict]:
    """The rows of an input file, lazily, as dicts of input fields: a text file (any name `records.FORMATS`
    does not know) is one `text` per line; CSV, TSV, JSON lines and Parquet give `fields`' columns."""
    from bertjax.data import records

    path = pathlib.Path(path)
    name = path.name.lower()
    if not any(name.endswith(ending) for ending in records.FORMATS):
        if set(fields) - {"text"}:
            raise ValueError(f"{path}: a text file holds one text per line; give {sorted(fields.values())} as "
                             "columns of a CSV, TSV, JSON lines or Parquet file.")
        return _lines(path)
    columns = list(fields.values())
    rows = records.checked(records.read_rows(path, columns, fix="Name the input's columns with --text_column, "
                                             "--text_b_column, --question_column or --context_column."))
    return ({field: str(row.values[column]) for field, column in fields.items()} for row in rows)


def _lines(path: pathlib.Path) -> Iterator[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield {"text": line.rstrip("\n")}


# --- loading ------------------------------------------------------------------------------------------------
def _step_of(path: pathlib.Path) -> pathlib.Path:
    """A run directory -> its best/ when it has one (what a fine-tuning run's --predict uses), else itself."""
    best = path / "best"
    if (path / "config.json").is_file() and best.is_dir() and any(child.name.isdigit() for child in best.iterdir()):
        return best
    return path


def load(path: str | pathlib.Path, *, batch_size: int = 32, max_seq_length: int | None = None,
         tokenizer: str | None = None) -> Predictor:
    """A `Predictor` for a fine-tuned bertjax run (its best parameters when it has best/, else its latest
    checkpoint; or a step directory) or an HF folder (BertForSequenceClassification, ...ForTokenClassification
    or ...ForQuestionAnswering; or the Hub id of one in the local HF cache, `hub.resolve_hf`). `max_seq_length`:
    default the run's `data.max_seq_length` (an HF folder's: 128); `tokenizer`: the run's own, where its
    config.json path has moved."""
    path = hub.resolve_hf(path)
    if convert.is_hf_folder(path):
        return _load_hf(path, batch_size=batch_size, max_seq_length=max_seq_length, tokenizer=tokenizer)
    run = runs.open_run(_step_of(path))
    if "model" not in run.config:
        raise ValueError(f"{run.step_dir}: the run's config.json has no `model` group.")
    model_config = BertConfig.from_config(run.config["model"])
    abstract = convert.abstract_params(model_config, run.head, run.record.get("num_labels"))
    params = jax.tree.map(jnp.asarray, runs.restore_params(run, abstract))
    data = run.config.get("data", {})
    classify = run.config.get("classify") or {}
    columns = {"text": classify.get("text_a_column"), "text_b": classify.get("text_b_column")}
    squad_settings = {**_SQUAD_DEFAULTS, **{key: value for key, value in (run.config.get("squad") or {}).items()
                                            if key in _SQUAD_DEFAULTS}}
    return Predictor(model_config, run.head, params, interop.run_tokenizer(run, tokenizer),
                     labels=run.record.get("labels"),
                     problem_type=problem_type(run.record) if run.head == "sequence_classification" else None,
                     max_seq_length=max_seq_length or data.get("max_seq_length") or 128, batch_size=batch_size,
                     squad=squad_settings, columns={key: value for key, value in columns.items() if value},
                     ner_stride=(run.config.get("ner") or {}).get("stride"))


def _load_hf(folder: pathlib.Path, *, batch_size: int, max_seq_length: int | None, tokenizer: str | None):
    model_config, params, _, hf_config = convert.load_hf_folder(folder)
    head = convert.head_of_hf_config(hf_config, params, str(folder / "config.json"))
    labels = convert.hf_labels(hf_config)
    record = {"labels": None if hf_config.get("problem_type") == "regression" else labels,
              "problem_type": hf_config.get("problem_type")}
    source = tokenizer or next((str(folder / name) for name in ("tokenizer.json", "vocab.txt")
                                if (folder / name).is_file()), None)
    if source is None:
        raise FileNotFoundError(f"{folder} has no tokenizer.json or vocab.txt; pass the tokenizer.")
    return Predictor(model_config, head, jax.tree.map(jnp.asarray, params), tokenizers.load_tokenizer(source),
                     labels=record["labels"] if head == "sequence_classification" else labels,
                     problem_type=problem_type(record) if head == "sequence_classification" else None,
                     max_seq_length=max_seq_length or min(128, model_config.max_position_embeddings),
                     batch_size=batch_size)
