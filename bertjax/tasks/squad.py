"""SQuAD v1.1 and v2.0: extractive question answering with a start/end span head.

    official JSON ─ examples (question, context, gold answers) ─ features: [CLS] question [SEP] window [SEP],
      windows of the context every `doc_stride` tokens, each token's character span in the context kept
    ─ start/end logits at every position ─ n-best spans over all windows of a question ─ text from the context
    ─ the official exact match and F1 (v2.0: null answers, HasAns/NoAns, the best null threshold)

Unanswerable (v2.0) questions, and windows that do not hold the whole answer, point both labels at [CLS].
Shape letters: N features, B batch, L length.
"""

import collections
import dataclasses
import json
import pathlib
import re
import string

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from bertjax import losses
from bertjax.files import write_json
from bertjax.data import batching, tokenizer
from bertjax.heads import BertForQuestionAnswering
from bertjax.model import BertConfig
from bertjax.tasks.base import TaskBase, label_subset


# --- reading ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Example:
    qid: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, character start in context); empty when unanswerable
    is_impossible: bool = False


def read_squad(path: str | pathlib.Path, *, answers_required: bool = False) -> list[Example]:
    """The examples of an official SQuAD JSON file (v1.1 or v2.0). A missing field, an `answer_start` that is
    not a number or whose answer text is not found there, and (with `answers_required`: SQuAD v1.1 training)
    an answerable question with no answer are errors naming the file and the article, paragraph or question."""
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"SQuAD file {path} not found.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a SQuAD JSON file: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f'{path} is not a SQuAD JSON file: expected {{"data": [articles ...]}} at the top.')

    def field(record, name: str, kind: type, where: str):
        value = record.get(name) if isinstance(record, dict) else None
        if not isinstance(value, kind):
            raise ValueError(f"{path}: {where}: expected a field {name!r} holding a {kind.__name__}; found "
                             f"{type(value).__name__ if value is not None else 'none'}.")
        return value

    examples = []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(field(article, "paragraphs", list, f"article {a}")):
            where = f"article {a}, paragraph {p}"
            context = field(paragraph, "context", str, where)
            for q, qa in enumerate(field(paragraph, "qas", list, where)):
                qid = qa.get("id", f"{q}") if isinstance(qa, dict) else f"{q}"
                at = f"{where}, question {qid}"
                question = field(qa, "question", str, at)
                impossible = bool(qa.get("is_impossible", False))
                answers = []
                for answer in ([] if impossible else field(qa, "answers", list, at)):
                    text = field(answer, "text", str, at)
                    try:
                        start = int(answer.get("answer_start"))
                    except (TypeError, ValueError):
                        raise ValueError(f"{path}: {at}: answer_start {answer.get('answer_start')!r} is not a "
                                         "character offset (an integer).") from None
                    if context[start:start + len(text)] != text:
                        raise ValueError(f"{path}: {at}: answer {text!r} is not at answer_start "
                                         f"{start} of its context (found {context[start:start + len(text)]!r}).")
                    answers.append((text, start))
                if answers_required and not impossible and not answers:
                    raise ValueError(f"{path}: {at}: an answerable question with no answer; SQuAD v1.1 training "
                                     "needs one (mark it is_impossible with squad.version_2=True).")
                examples.append(Example(str(qid), question, context, tuple(answers), impossible))
    return examples


# --- the official metrics -----------------------------------------------------------------------------------
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 after normalisation; 1 when both are empty, 0 when only one is."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def gold_answers(example: Example) -> list[str]:
    """Gold texts that survive normalisation; [""] for an unanswerable question (as the official script)."""
    return [text for text, _ in example.answers if normalize_answer(text)] or [""]


def _best_threshold(scores: dict[str, float], null_odds: dict[str, float], has_answer: dict[str, bool],
                    answered: dict[str, bool]) -> tuple[float, float]:
    """The official search: predict null where the null odds exceed a threshold; try every question's odds
    as the threshold; returns (best score in percent, its threshold)."""
    current = best = sum(not has for has in has_answer.values())  # all predicted null
    threshold = 0.0
    for qid in sorted(null_odds, key=null_odds.get):
        if has_answer[qid]:
            current += scores[qid]
        elif answered[qid]:
            current -= 1
        if current > best:
            best, threshold = current, null_odds[qid]
    return 100.0 * best / max(len(scores), 1), threshold


def squad_metrics(examples: list[Example], predictions: dict[str, str],
                  null_odds: dict[str, float] | None = None, answers_if_not_null: dict[str, str] | None = None,
                  na_prob_thresh: float = 1.0):
    """Exact match and F1 in percent, each the max over gold answers, as the official scripts compute them.
    With some unanswerable questions: HasAns_/NoAns_ splits too. With `null_odds` (what the v2.0 script
    reads with --na-prob-file; and, for the search, every question's best non-null answer in
    `answers_if_not_null`): a question whose null odds exceed `na_prob_thresh` (the script's
    --na-prob-thresh, default 1.0) counts as predicted null, and the best threshold on these examples."""
    exact, f1 = {}, {}
    for example in examples:
        if null_odds is not None and null_odds.get(example.qid, 0.0) > na_prob_thresh:
            # The official script's apply_no_ans_threshold: right exactly when the question has no answer.
            exact[example.qid] = f1[example.qid] = float(not example.answers)
            continue
        prediction = predictions.get(example.qid, "")
        exact[example.qid] = max(exact_match(prediction, gold) for gold in gold_answers(example))
        f1[example.qid] = max(f1_score(prediction, gold) for gold in gold_answers(example))
    metrics = {"exact": 100.0 * np.mean(list(exact.values())), "f1": 100.0 * np.mean(list(f1.values())),
               "total": float(len(examples))}
    has_answer = {example.qid: bool(example.answers) for example in examples}
    if not all(has_answer.values()):
        for prefix, wanted in (("HasAns", True), ("NoAns", False)):
            qids = [qid for qid, has in has_answer.items() if has == wanted]
            if qids:
                metrics[f"{prefix}_exact"] = 100.0 * np.mean([exact[qid] for qid in qids])
                metrics[f"{prefix}_f1"] = 100.0 * np.mean([f1[qid] for qid in qids])
                metrics[f"{prefix}_total"] = float(len(qids))
    if null_odds is not None:
        answers = answers_if_not_null if answers_if_not_null is not None else predictions
        answered = {qid: bool(answers.get(qid, "")) for qid in has_answer}
        for name, score in (("exact", exact_match), ("f1", f1_score)):
            raw = {example.qid: max(score(answers.get(example.qid, ""), gold) for gold in gold_answers(example))
                   for example in examples}
            metrics[f"best_{name}"], metrics[f"best_{name}_thresh"] = _best_threshold(
                raw, null_odds, has_answer, answered)
    return metrics


# --- features -----------------------------------------------------------------------------------------------
def answer_token_span(spans: np.ndarray, start_char: int, end_char: int) -> tuple[int, int] | None:
    """The first and last token (indices into `spans`, (T, 2) character spans) covering the characters
    [start_char, end_char); None if no token does."""
    covering = np.flatnonzero((spans[:, 1] > start_char) & (spans[:, 0] < end_char) & (spans[:, 1] > spans[:, 0]))
    return (int(covering[0]), int(covering[-1])) if len(covering) else None


def window_starts(num_tokens: int, window_length: int, doc_stride: int) -> list[int]:
    """BERT's windows: every `doc_stride` tokens until one reaches the end of the context."""
    starts = [0]
    while starts[-1] + window_length < num_tokens:
        starts.append(starts[-1] + min(doc_stride, window_length))
    return starts


def make_features(examples: list[Example], tok: tokenizer.Tokenizer, *, max_seq_length: int, doc_stride: int,
                  max_query_length: int) -> dict[str, np.ndarray]:
    """[CLS] question [SEP] context window [SEP] rows for every window of every example.

    Keys: input_ids, segment_ids, attention_mask (N, L); offsets (N, L, 2) each token's character span in
    its context, -1 outside the context; max_context (N, L) whether this window gives the token its most
    context (of all windows holding it); feature_example (N,) the example's index; start_position,
    end_position (N,) of the first gold answer, 0 ([CLS]) if unanswerable or not wholly in the window.
    """
    questions = tok.encode_batch([example.question for example in examples])
    unique = list(dict.fromkeys(example.context for example in examples))  # questions share contexts
    encoded = dict(zip(unique, tok.encode_with_offsets(unique, split_punctuation=True)))
    contexts = [encoded[example.context] for example in examples]
    features = collections.defaultdict(list)
    for index, (example, question, (context_ids, spans)) in enumerate(zip(examples, questions, contexts)):
        question = question[:max_query_length]
        spans = np.asarray(spans, np.int32).reshape(-1, 2)
        window_length = max_seq_length - len(question) - 3
        if window_length < 1:
            raise ValueError(f"max_seq_length={max_seq_length} leaves no room for the context after a "
                             f"{len(question)}-token question; raise it or lower max_query_length.")
        answer = None
        if example.answers:
            text, start = example.answers[0]
            answer = answer_token_span(spans, start, start + len(text))
        starts = window_starts(len(context_ids), window_length, doc_stride)
        owner = max_context_windows(starts, window_length, len(context_ids))
        context_start = len(question) + 2
        for window_number, window_start in enumerate(starts):
            window_end = min(window_start + window_length, len(context_ids))  # exclusive
            length = context_start + window_end - window_start + 1
            input_ids = np.zeros(max_seq_length, np.int32)
            input_ids[:length] = [tok.cls_id, *question, tok.sep_id, *context_ids[window_start:window_end], tok.sep_id]
            segment_ids = np.zeros(max_seq_length, np.int32)
            segment_ids[context_start:length] = 1
            offsets = np.full((max_seq_length, 2), -1, np.int32)
            offsets[context_start:length - 1] = spans[window_start:window_end]
            max_context = np.zeros(max_seq_length, bool)
            max_context[context_start:length - 1] = owner[window_start:window_end] == window_number
            start_position = end_position = 0
            if answer is not None and window_start <= answer[0] and answer[1] < window_end:
                start_position = context_start + answer[0] - window_start
                end_position = context_start + answer[1] - window_start
            for name, value in (("input_ids", input_ids), ("segment_ids", segment_ids),
                                ("attention_mask", (np.arange(max_seq_length) < length).astype(np.int32)),
                                ("offsets", offsets), ("max_context", max_context), ("feature_example", index),
                                ("start_position", start_position), ("end_position", end_position)):
                features[name].append(value)
    return {name: np.asarray(value, np.int32 if name != "max_context" else bool) for name, value in features.items()}


def max_context_windows(starts: list[int], window_length: int, num_tokens: int) -> np.ndarray:
    """(T,) for each context token, the window that gives it the most context: BERT's rule, the largest
    min(tokens left, tokens right) + 0.01 x the window's length (the first such window wins ties)."""
    starts = np.asarray(starts)[:, None]  # W, 1
    lengths = np.minimum(window_length, num_tokens - starts)
    tokens = np.arange(num_tokens)[None, :]  # 1, T
    inside = (tokens >= starts) & (tokens < starts + lengths)
    score = np.minimum(tokens - starts, starts + lengths - 1 - tokens) + 0.01 * lengths
    return np.argmax(np.where(inside, score, -1.0), axis=0)


# --- post-processing ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Candidate:
    text: str
    score: float  # start logit + end logit
    feature: int
    start: int
    end: int


def postprocess(examples: list[Example], features: dict[str, np.ndarray], start_logits: np.ndarray,
                end_logits: np.ndarray, *, n_best_size: int = 20, max_answer_length: int = 30,
                version_2: bool = False, null_score_diff_threshold: float = 0.0):
    """Predicted texts from (N, L) start and end logits.

    For each question, the `n_best_size` best starts and ends of each of its windows form candidate spans
    (inside the context, start <= end, at most `max_answer_length` tokens, started in a window that gives the
    start token its most context); the best by start + end logit wins. v2.0: the null score is the lowest
    [CLS] start + end over its windows; the answer is empty if null - best > `null_score_diff_threshold`.
    Returns (predictions, null_odds (null - best; v2.0), best non-null answers, n-best lists)."""
    by_example = collections.defaultdict(list)
    for feature, example_index in enumerate(features["feature_example"]):
        by_example[int(example_index)].append(feature)
    predictions, null_odds, best_answers, n_best = {}, {}, {}, {}
    for index, example in enumerate(examples):
        candidates, null_score = [], np.inf
        for feature in by_example[index]:
            starts, ends = start_logits[feature], end_logits[feature]
            null_score = min(null_score, float(starts[0] + ends[0]))
            offsets, max_context = features["offsets"][feature], features["max_context"][feature]
            for start in np.argsort(-starts)[:n_best_size]:
                if offsets[start, 0] < 0 or not max_context[start]:
                    continue
                for end in np.argsort(-ends)[:n_best_size]:
                    if offsets[end, 0] < 0 or end < start or end - start + 1 > max_answer_length:
                        continue
                    text = example.context[offsets[start, 0]:offsets[end, 1]]
                    candidates.append(Candidate(text, float(starts[start] + ends[end]), feature, int(start), int(end)))
        candidates.sort(key=lambda candidate: -candidate.score)
        seen, kept = set(), []
        for candidate in candidates:  # the n best distinct texts
            if candidate.text not in seen and len(kept) < n_best_size:
                seen.add(candidate.text)
                kept.append(candidate)
        n_best[example.qid] = kept
        best = kept[0] if kept else None
        best_answers[example.qid] = best.text if best else ""
        if version_2:
            # No span at all (every candidate was null) predicts null whatever the threshold.
            null_odds[example.qid] = null_score - best.score if best else float("inf")
            answer_is_null = best is None or null_odds[example.qid] > null_score_diff_threshold
            predictions[example.qid] = "" if answer_is_null else best.text
        else:
            predictions[example.qid] = best_answers[example.qid]
    return predictions, null_odds, best_answers, n_best


# --- the task -----------------------------------------------------------------------------------------------
class SquadTask(TaskBase):
    """SQuAD fine-tuning for the train loop: `BertForQuestionAnswering` on `config.squad`'s files."""

    name = "squad"
    metric = "f1"
    fresh_parameters = ("qa_outputs",)  # new at fine-tuning; the encoder comes from the checkpoint
    eval_splits = ("validation",)
    test_splits = ("validation",)  # the official test sets are hidden: --predict writes dev predictions

    def __init__(self, config):
        self.model_config = BertConfig.from_config(config.model)
        self.model = BertForQuestionAnswering(self.model_config)
        self.settings, self.max_seq_length = config.squad, config.data.max_seq_length
        self.train_examples, self.seed = config.finetune.train_examples, config.seed
        self.require(config.data, ("tokenizer",), "data",
                     "(the pretraining run's tokenizer, or an HF folder's vocab.txt).")
        self.check_sequence_length(self.max_seq_length, self.model_config)
        self.tokenizer = tokenizer.load_tokenizer(config.data.tokenizer, config.data.lowercase)
        self.check_tokenizer_fits(self.tokenizer, self.model_config)
        self.identity = {"task": self.name, "head": "span", "num_labels": 2, "labels": ["start", "end"],
                         "tokenizer_fingerprint": self.tokenizer.fingerprint}
        self._splits = {}

    def read(self, split: str) -> None:
        self.split(split)

    def split(self, split: str) -> tuple[list[Example], dict[str, np.ndarray]]:
        """A split's examples and features, built once."""
        if split not in self._splits:
            path = {"train": self.settings.train_file, "validation": self.settings.validation_file}.get(split)
            if not path:
                raise ValueError(f"No file for split {split!r}: set config.squad.{split}_file.")
            # v1.1 trains on every question's first answer; its dev questions may list none (they score 0)
            examples = read_squad(path, answers_required=split == "train" and not self.settings.version_2)
            if not examples:
                raise ValueError(f"{path} holds no questions.")
            if split == "train":
                examples = label_subset(examples, self.train_examples, self.seed, path)
            features = make_features(examples, self.tokenizer, max_seq_length=self.max_seq_length,
                                     doc_stride=self.settings.doc_stride,
                                     max_query_length=self.settings.max_query_length)
            logging.info("SQuAD %s: %d questions, %d features from %s.", split, len(examples),
                         len(features["input_ids"]), path)
            self._splits[split] = examples, features
        return self._splits[split]

    def num_train_examples(self) -> int:
        """Training rows: features (windows), which an epoch goes over."""
        return len(self.split("train")[1]["input_ids"])

    def _row_arrays(self, split):
        features = self.split(split)[1]
        return {name: features[name] for name in (*self.model_inputs, "start_position", "end_position")}

    # --- data -----------------------------------------------------------------------------------------------
    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        return batching.array_batches(self._row_arrays(split), batch_size=batch_size, seed=seed, train=train,
                                      process_index=process_index, process_count=process_count)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        fields = {name: batching.Field((self.max_seq_length,)) for name in self.model_inputs}
        fields.update(start_position=batching.Field(()), end_position=batching.Field(()))
        return batching.empty_batch({**fields, **batching.example_fields()}, batch_size)

    # --- model ----------------------------------------------------------------------------------------------
    def loss(self, params, batch, rng: jax.Array | None, normalizers=None):
        return losses.span_loss(self.apply(params, batch, rng).logits, batch, normalizers)

    @staticmethod
    def normalizers(batch):
        return {"span": jnp.sum(jnp.asarray(batch["example_weight"], jnp.float32))}

    @staticmethod
    def summarize(sums) -> dict[str, float]:
        weight = max(float(sums["span_weight"]), 1e-8)
        return {"span_loss": (float(sums["start_loss_sum"]) + float(sums["end_loss_sum"])) / 2 / weight,
                "start_accuracy": float(sums["start_correct_sum"]) / weight,
                "end_accuracy": float(sums["end_correct_sum"]) / weight}

    def predict(self, params, batch) -> dict[str, jax.Array]:
        logits = self.apply(params, batch).logits  # B, L, 2
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    # --- evaluation -----------------------------------------------------------------------------------------
    def _postprocess(self, predictions, split):
        examples, features = self.split(split)
        if len(predictions["start_logits"]) != len(features["input_ids"]):
            raise ValueError(f"{len(predictions['start_logits'])} rows of predictions for the "
                             f"{len(features['input_ids'])} features of split {split!r}.")
        return examples, postprocess(
            examples, features, np.asarray(predictions["start_logits"]), np.asarray(predictions["end_logits"]),
            n_best_size=self.settings.n_best_size, max_answer_length=self.settings.max_answer_length,
            version_2=self.settings.version_2, null_score_diff_threshold=self.settings.null_score_diff_threshold)

    def evaluate(self, predictions: dict[str, np.ndarray], split: str) -> dict[str, float]:
        """The official metrics of a split's predictions (rows in feature order, padding removed)."""
        examples, (answers, null_odds, best_answers, _) = self._postprocess(predictions, split)
        if not self.settings.version_2:
            return squad_metrics(examples, answers)
        return squad_metrics(examples, answers, null_odds, best_answers, na_prob_thresh=self.settings.na_prob_thresh)

    def write_predictions(self, predictions, split: str, directory) -> list[pathlib.Path]:
        """`predictions.json` (question id -> answer text) and, for v2.0, `null_odds.json` (question id ->
        null score - best span score, what the official script reads with --na-prob-file), in the official
        formats; plus `nbest_predictions.json`."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _, (answers, null_odds, _, n_best) = self._postprocess(predictions, split)
        written = [directory / "predictions.json", directory / "nbest_predictions.json"]
        write_json(written[0], answers)
        write_json(written[1], {qid: [{"text": candidate.text, "score": candidate.score} for candidate in kept]
                                for qid, kept in n_best.items()})
        if self.settings.version_2:
            # JSON has no infinity: a question without any span gets a large finite null odds.
            write_json(directory / "null_odds.json", {qid: min(value, 1e9) for qid, value in null_odds.items()})
            written.append(directory / "null_odds.json")
        return written
