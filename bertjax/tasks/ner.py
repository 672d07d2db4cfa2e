"""Named-entity tagging on CoNLL-2003 style files: a label for every word, from its first sub-token.

    CoNLL file ─ sentences of (word, tag) (tags in IOB1 or IOB2, trained and predicted as IOB2)
      ─ [CLS] sub-tokens of each word [SEP]; the label sits on each word's first sub-token, the others and
        the specials weigh 0 in the loss; a sentence too long for one row is split into overlapping windows
      ─ a label at every position ─ back to one tag per word (a long sentence's word from the window that
        gives it the most context)
    ─ entity-level precision, recall and F1 per type and overall (seqeval's default mode, as conlleval)

Also the feature-based use of BERT (as ELMo): a frozen encoder's layers combined and fed to a small trainable
tagger (`bertjax.heads.FeatureTagger`, trained by `fit_feature_tagger`); `benchmarks/feature_tagging.py`
compares the combinations.
Shape letters: N rows, B batch, L length, D hidden, C labels, S stacked layers.
"""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from seqeval.metrics import classification_report

from bertjax import files, heads, losses, train
from bertjax.data import batching, tokenizer
from bertjax.model import BertConfig
from bertjax.tasks.base import TaskBase, label_subset


# --- reading ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]  # as in the file
    line: int  # where it starts in the file (1-based), for messages


def _check_tag(tag: str, path, line: int) -> None:
    if tag != "O" and (len(tag) < 3 or tag[:2] not in ("B-", "I-")):
        raise ValueError(f"{path}:{line}: tag {tag!r} is not O, B-TYPE or I-TYPE (IOB1 or IOB2 tags expected "
                         "in the last column).")


def read_conll(path: str | pathlib.Path) -> list[Sentence]:
    """Sentences of a CoNLL file: one word per line, its tag in the last column (other columns, such as
    CoNLL-2003's part of speech and chunk, are ignored), blank lines between sentences, -DOCSTART- lines
    between documents. Every line must have the same number of columns."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file {path} not found.")
    sentences, words, tags, start, columns = [], [], [], 0, None

    def close():
        if words:
            sentences.append(Sentence(tuple(words), tuple(tags), start))
        words.clear()
        tags.clear()

    for number, line in enumerate(files.text_lines(path), 1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            close()
            continue
        if columns is None:
            columns = len(fields)
            if columns < 2:
                raise ValueError(f"{path}:{number}: one column ({line.strip()!r}); expected a word and a tag.")
        if len(fields) != columns:
            raise ValueError(f"{path}:{number}: {len(fields)} columns where line(s) before had {columns}.")
        _check_tag(fields[-1], path, number)
        if not words:
            start = number
        words.append(fields[0])
        tags.append(fields[-1])
    close()
    if not sentences:
        raise ValueError(f"{path} holds no sentences.")
    return sentences


def to_iob2(tags) -> list[str]:
    """IOB1 (or IOB2) tags -> IOB2: an entity's first word is B- (IOB1 uses B- only between two adjacent
    entities of one type)."""
    converted = []
    for index, tag in enumerate(tags):
        if tag.startswith("I-"):
            previous = converted[index - 1] if index else "O"
            if previous == "O" or previous[2:] != tag[2:]:
                tag = "B-" + tag[2:]
        converted.append(tag)
    return converted


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 overall (micro) and per type (`{TYPE}_f1`...), in [0, 1]; an
    entity counts only if its type and both boundaries match. seqeval's default mode, like conlleval.
    `accuracy`: the share of words whose predicted tag equals the gold tag in IOB2 (gold may be IOB1)."""
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    overall = report.pop("micro avg")
    metrics = {"precision": float(overall["precision"]), "recall": float(overall["recall"]),
               "f1": float(overall["f1-score"])}
    for entity_type, scores in report.items():
        if "avg" not in entity_type:
            metrics.update({f"{entity_type}_precision": float(scores["precision"]),
                            f"{entity_type}_recall": float(scores["recall"]),
                            f"{entity_type}_f1": float(scores["f1-score"])})
    words = sum(len(tags) for tags in gold)
    # Predictions are IOB2: an IOB1 gold file is compared in its IOB2 form (the same entities, other tags).
    gold = [to_iob2(tags) for tags in gold]
    metrics["accuracy"] = sum(g == p for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)) / max(words, 1)
    return metrics


# --- features -----------------------------------------------------------------------------------------------
def label_set(sentences: list[Sentence]) -> list[str]:
    """O, then B- and I- of every entity type the sentences hold (after IOB2 conversion), types sorted: a
    type seen only in one-word entities still gets its I- label, which other files may use."""
    types = sorted({tag[2:] for sentence in sentences for tag in to_iob2(sentence.tags) if tag != "O"})
    return ["O", *(f"{prefix}-{entity_type}" for entity_type in types for prefix in ("B", "I"))]


def check_types(sentences: list[Sentence], labels: list[str], path) -> None:
    """Every entity type of `sentences` (read from `path`) among `labels`' (the training file's), else an
    error naming the file, the line and the type."""
    known = {label[2:] for label in labels if label != "O"}
    for sentence in sentences:
        for index, tag in enumerate(sentence.tags):
            if tag != "O" and tag[2:] not in known:
                raise ValueError(f"{path}:{sentence.line + index}: tag {tag!r}: entity type {tag[2:]!r} does not "
                                 f"occur in the training file, whose types are {sorted(known)}.")


def sentence_windows(lengths: list[int], window: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [first, last) of the windows over a sentence whose words have `lengths` sub-tokens (each
    at most `window`): as many whole words as fit in `window` tokens; the next window starts at the first
    word at least `stride` tokens after this one's start (at least one word on, at most at this one's end),
    until one reaches the last word. One window when the sentence fits."""
    starts = np.concatenate([[0], np.cumsum(lengths)])
    windows, first = [], 0
    while True:
        last = int(np.searchsorted(starts, starts[first] + window, side="right")) - 1  # words first..last-1 fit
        last = min(max(last, first + 1), len(lengths))
        windows.append((first, last))
        if last == len(lengths):
            return windows
        following = int(np.searchsorted(starts, starts[first] + stride, side="left"))
        first = min(max(following, first + 1), last)


def max_context_owners(lengths: list[int], windows: list[tuple[int, int]]) -> np.ndarray:
    """(words,) for each word, the window that gives its first sub-token the most context: BERT's SQuAD rule,
    the largest min(tokens left, tokens right) in the window + 0.01 x the window's length (the first such
    window wins ties)."""
    starts = np.concatenate([[0], np.cumsum(lengths)])
    best, owners = np.full(len(lengths), -np.inf), np.zeros(len(lengths), np.int64)
    for number, (first, last) in enumerate(windows):
        begin, end = starts[first], starts[last]  # the window's tokens [begin, end)
        words = np.arange(first, last)
        score = np.minimum(starts[words] - begin, end - 1 - starts[words]) + 0.01 * (end - begin)
        better = score > best[words]
        best[words[better]], owners[words[better]] = score[better], number
    return owners


def make_features(sentences: list[Sentence], tok: tokenizer.Tokenizer, labels: list[str], *,
                  max_seq_length: int, stride: int | None = None) -> dict[str, np.ndarray]:
    """[CLS] sub-tokens [SEP] rows, the label on each word's first sub-token. A sentence of more than
    `max_seq_length - 2` sub-tokens is split into overlapping windows of whole words, the next starting about
    `stride` sub-tokens (default: half a window) after the last (`sentence_windows`); every window is a row
    (trained on all its words), and each word is predicted from the window that gives it the most context
    (`max_context_owners`). A word of more sub-tokens than a window keeps the first ones.

    Keys: input_ids, segment_ids, attention_mask, label_ids (N, L), label_weights (N, L) 1 at each word's
    first sub-token; sentence (N,) the row's sentence and first_word (N,) its first word's index there;
    word_positions (N, L) the position of the row's j-th word's first sub-token at [:, j] (-1 past its words);
    word_owner (N, L) whether the row is where its j-th word is predicted. Every word gives at least one token.
    """
    window = max_seq_length - 2
    if window < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for a word between [CLS] and [SEP].")
    stride = max(1, window // 2 if stride is None else min(stride, window))
    label_index = {label: index for index, label in enumerate(labels)}
    pieces = tok.encode_batch([word for sentence in sentences for word in sentence.words])
    rows, cursor, windowed, windowed_rows = [], 0, 0, 0
    for number, sentence in enumerate(sentences):
        tags = to_iob2(sentence.tags)
        for index, tag in enumerate(tags):
            if tag not in label_index:
                raise ValueError(f"Sentence at line {sentence.line}: tag {tag!r} is not among the training "
                                 f"file's labels {labels} (word {index + 1}, line {sentence.line + index}).")
        word_pieces = [(pieces[cursor + index] or [tok.unk_id])[:window] for index in range(len(sentence.words))]
        cursor += len(sentence.words)
        lengths = [len(p) for p in word_pieces]
        windows = sentence_windows(lengths, window, stride)
        windowed += len(windows) > 1
        windowed_rows += len(windows) if len(windows) > 1 else 0
        owners = max_context_owners(lengths, windows)
        for window_number, (first, last) in enumerate(windows):
            rows.append((number, first, last, owners[first:last] == window_number, word_pieces, tags))
    arrays = {name: np.zeros((len(rows), max_seq_length), np.int32)
              for name in ("input_ids", "segment_ids", "attention_mask", "label_ids")}
    arrays["label_weights"] = np.zeros((len(rows), max_seq_length), np.float32)
    arrays["word_positions"] = np.full((len(rows), max_seq_length), -1, np.int32)
    arrays["word_owner"] = np.zeros((len(rows), max_seq_length), bool)
    arrays["sentence"] = np.zeros(len(rows), np.int32)
    arrays["first_word"] = np.zeros(len(rows), np.int32)
    for row, (number, first, last, owned, word_pieces, tags) in enumerate(rows):
        ids = [tok.cls_id]
        for j, index in enumerate(range(first, last)):
            arrays["word_positions"][row, j] = len(ids)
            arrays["label_ids"][row, len(ids)] = label_index[tags[index]]
            arrays["label_weights"][row, len(ids)] = 1.0
            ids.extend(word_pieces[index])
        ids.append(tok.sep_id)
        arrays["input_ids"][row, :len(ids)] = ids
        arrays["attention_mask"][row, :len(ids)] = 1
        arrays["word_owner"][row, :last - first] = owned
        arrays["sentence"][row], arrays["first_word"][row] = number, first
    if windowed:
        logging.info("%d of %d sentences are longer than max_seq_length=%d tokens: split into %d overlapping "
                     "windows in all.", windowed, len(sentences), max_seq_length, windowed_rows)
    return arrays


def word_tags(tag_ids: np.ndarray, features: dict[str, np.ndarray], sentences: list[Sentence],
              labels: list[str]) -> list[list[str]]:
    """(N, L) predicted label ids at every position of `features`' rows -> one tag per word of `sentences`,
    each from the row that owns it (its first sub-token's)."""
    predicted = [[None] * len(sentence.words) for sentence in sentences]
    for row in range(len(features["sentence"])):
        tags, first = predicted[features["sentence"][row]], features["first_word"][row]
        for j in np.flatnonzero(features["word_owner"][row]):
            tags[first + j] = labels[tag_ids[row, features["word_positions"][row, j]]]
    missing = sum(tag is None for tags in predicted for tag in tags)
    if missing:
        raise ValueError(f"{missing} words have no row that predicts them: features of other sentences?")
    return predicted


# --- the task -----------------------------------------------------------------------------------------------
class NerTask(TaskBase):
    """CoNLL tagging for the train loop: `BertForTokenClassification` on `config.ner`'s files; the label set
    is B- and I- of the training file's entity types, O first (`label_set`). A row is a sentence, or one
    window of a long one (`make_features`)."""

    name = "ner"
    metric = "f1"
    fresh_parameters = ("classifier",)  # new at fine-tuning; the encoder comes from the checkpoint
    eval_splits = ("validation",)
    _ROW_KEYS = (*TaskBase.model_inputs, "label_ids", "label_weights")

    def __init__(self, config):
        self.model_config = BertConfig.from_config(config.model)
        self.settings, self.max_seq_length = config.ner, config.data.max_seq_length
        self.train_examples, self.seed = config.finetune.train_examples, config.seed
        if not config.ner.train_file:
            raise ValueError("config.ner.train_file is not set; it also fixes the label set.")
        self.require(config.data, ("tokenizer",), "data", "(the pretraining run's tokenizer).")
        self.check_sequence_length(self.max_seq_length, self.model_config)
        self.tokenizer = tokenizer.load_tokenizer(config.data.tokenizer, config.data.lowercase)
        self.check_tokenizer_fits(self.tokenizer, self.model_config)
        self.labels = label_set(read_conll(config.ner.train_file))
        for path in (config.ner.validation_file, config.ner.test_file):  # before training, not at evaluation
            if path:
                check_types(read_conll(path), self.labels, path)
        self.model = heads.BertForTokenClassification(self.model_config, num_labels=len(self.labels))
        self.identity = {"task": self.name, "head": "tokens", "num_labels": len(self.labels), "labels": self.labels,
                         "tokenizer_fingerprint": self.tokenizer.fingerprint}
        self._splits = {}

    @property
    def test_splits(self) -> tuple[str, ...]:
        """The splits `--predict` writes: the test file's when there is one, else the validation file's."""
        return ("test",) if self.settings.test_file else ("validation",)

    @property
    def labelled_test_splits(self) -> tuple[str, ...]:
        """CoNLL test files carry their gold tags (eng.testb)."""
        return ("test",) if self.settings.test_file else ()

    def num_train_examples(self) -> int:
        """Training rows: sentences, and a long sentence's windows."""
        return len(self.split("train")[1]["input_ids"])

    def read(self, split: str) -> None:
        self.split(split)

    def split(self, split: str) -> tuple[list[Sentence], dict[str, np.ndarray]]:
        if split not in self._splits:
            path = {"train": self.settings.train_file, "validation": self.settings.validation_file,
                    "test": self.settings.test_file}.get(split)
            if not path:
                raise ValueError(f"No file for split {split!r}: set config.ner.{split}_file.")
            sentences = read_conll(path)
            check_types(sentences, self.labels, path)
            if split == "train":
                sentences = label_subset(sentences, self.train_examples, self.seed, path)
            try:
                features = make_features(sentences, self.tokenizer, self.labels, max_seq_length=self.max_seq_length,
                                         stride=self.settings.stride)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
            self._splits[split] = sentences, features
        return self._splits[split]

    # --- data -----------------------------------------------------------------------------------------------
    def dataset(self, split: str, *, batch_size: int, seed: int, train: bool, process_index: int = 0,
                process_count: int = 1):
        features = self.split(split)[1]
        return batching.array_batches({name: features[name] for name in self._ROW_KEYS}, batch_size=batch_size,
                                      seed=seed, train=train, process_index=process_index,
                                      process_count=process_count)

    def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        fields = {name: batching.Field((self.max_seq_length,)) for name in self._ROW_KEYS}
        fields["label_weights"] = batching.Field((self.max_seq_length,), np.float32)
        return batching.empty_batch({**fields, **batching.example_fields()}, batch_size)

    # --- model ----------------------------------------------------------------------------------------------
    def loss(self, params, batch, rng: jax.Array | None, normalizers=None):
        return losses.token_loss(self.apply(params, batch, rng).logits, batch, normalizers)

    @staticmethod
    def normalizers(batch):
        weights = jnp.asarray(batch["label_weights"]) * jnp.asarray(batch["example_weight"])[:, None]
        return {"tokens": jnp.sum(weights.astype(jnp.float32))}

    @staticmethod
    def summarize(sums) -> dict[str, float]:
        weight = max(float(sums["tag_weight"]), 1e-8)
        return {"tag_loss": float(sums["tag_loss_sum"]) / weight,
                "tag_accuracy": float(sums["tag_correct_sum"]) / weight}

    def predict(self, params, batch) -> dict[str, jax.Array]:
        return {"tags": jnp.argmax(self.apply(params, batch).logits, -1).astype(jnp.int32)}  # B, L

    # --- evaluation -----------------------------------------------------------------------------------------
    def _word_tags(self, predictions, split):
        sentences, features = self.split(split)
        if len(predictions["tags"]) != len(features["input_ids"]):
            raise ValueError(f"{len(predictions['tags'])} rows of predictions for the {len(features['input_ids'])} "
                             f"rows of split {split!r}.")
        return sentences, word_tags(np.asarray(predictions["tags"]), features, sentences, self.labels)

    def evaluate(self, predictions: dict[str, np.ndarray], split: str) -> dict[str, float]:
        sentences, predicted = self._word_tags(predictions, split)
        return entity_metrics([list(sentence.tags) for sentence in sentences], predicted)

    def write_predictions(self, predictions, split: str, directory) -> list[pathlib.Path]:
        """`SPLIT.conll` (validation.conll, test.conll): `word gold predicted` per line (gold as in the file,
        predictions in IOB2), a blank line after each sentence: the input conlleval reads."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sentences, predicted = self._word_tags(predictions, split)
        text = "".join("".join(f"{word} {gold} {tag}\n" for word, gold, tag in zip(sentence.words, sentence.tags, tags))
                       + "\n" for sentence, tags in zip(sentences, predicted))
        path = directory / f"{split}.conll"
        files.write_text(path, text)
        return [path]


# --- feature-based tagging ----------------------------------------------------------------------------------
def fit_feature_tagger(how: str, num_labels: int, states, features: dict[str, np.ndarray], *, steps: int,
                       batch_size: int = 32, learning_rate: float = 3e-3, hidden_size: int = 64,
                       seed: int = 0) -> tuple[heads.FeatureTagger, dict]:
    """Train a `FeatureTagger` on a frozen encoder's (S, N, L, D) hidden states of `features`' rows (their
    attention_mask, label_ids and label_weights): Adam, `steps` batches of `batch_size` rows drawn at random.
    Returns the tagger and its parameters."""
    tagger = heads.FeatureTagger(num_labels=num_labels, how=how, hidden_size=hidden_size)
    params = tagger.init(jax.random.PRNGKey(seed), states[:, :1], features["attention_mask"][:1])["params"]

    def loss(params, batch_states, batch):
        return losses.token_loss(tagger.apply({"params": params}, batch_states, batch["attention_mask"]), batch)[0]

    def batches():
        rng, count = np.random.default_rng(seed), states.shape[1]
        for _ in range(steps):
            rows = np.sort(rng.choice(count, size=min(batch_size, count), replace=False))
            batch = {name: features[name][rows] for name in ("attention_mask", "label_ids", "label_weights")}
            batch["example_weight"] = np.ones(len(rows), np.float32)
            yield states[:, rows], batch

    return tagger, train.fit(loss, params, optax.adam(learning_rate), batches())


def predict_feature_tags(tagger: heads.FeatureTagger, params, states, features: dict[str, np.ndarray],
                         batch_size: int = 256) -> np.ndarray:
    """(N, L) predicted label ids of a trained `FeatureTagger` over (S, N, L, D) states."""
    run = jax.jit(lambda states, mask: jnp.argmax(tagger.apply({"params": params}, states, mask), -1))
    return np.concatenate([np.asarray(run(states[:, start:start + batch_size],
                                          features["attention_mask"][start:start + batch_size]))
                           for start in range(0, states.shape[1], batch_size)])


def dictionary_tags(train: list[Sentence], sentences: list[Sentence]) -> list[list[str]]:
    """The baseline a tagger must beat: each word gets the IOB2 tag it has most often in `train` (ties: the
    tag seen first), a word never seen there O."""
    counts: dict[str, dict[str, int]] = {}
    for sentence in train:
        for word, tag in zip(sentence.words, to_iob2(sentence.tags)):
            counts.setdefault(word, {}).setdefault(tag, 0)
            counts[word][tag] += 1
    best = {word: max(tags, key=tags.get) for word, tags in counts.items()}
    return [[best.get(word, "O") for word in sentence.words] for sentence in sentences]
