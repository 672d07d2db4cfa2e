"""CoNLL tagging: reading IOB1 and IOB2, entity-level metrics by hand, first-sub-token labels, the
feature-based tagger's layer combinations, and a tiny fine-tuning run end to end."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import finetune, heads
from bertjax.tasks import ner
from bertjax.configs import ner as ner_config

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


# --- reading ------------------------------------------------------------------------------------------------
def test_reading_iob1_and_iob2_gives_the_same_entities():
    iob1, iob2 = ner.read_conll(FIXTURES / "conll-train.iob1"), ner.read_conll(FIXTURES / "conll-train.iob2")
    assert len(iob1) == len(iob2) == 60  # -DOCSTART- lines and blank lines only separate
    assert [s.words for s in iob1] == [s.words for s in iob2]
    assert any(s.tags != t.tags for s, t in zip(iob1, iob2))
    assert all(ner.to_iob2(s.tags) == list(t.tags) for s, t in zip(iob1, iob2))
    assert all(tag.startswith(("B-", "O")) for s in iob1 for tag in ner.to_iob2(s.tags)[:1])


def test_to_iob2_by_hand():
    # IOB1: B- only where an entity directly follows one of the same type.
    assert ner.to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]) == \
        ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    assert ner.to_iob2(["B-PER", "I-PER", "O"]) == ["B-PER", "I-PER", "O"]


def test_conll_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ\n")
    with pytest.raises(ValueError, match=r"bad.conll:4: 2 columns where line\(s\) before had 3"):
        ner.read_conll(path)
    path.write_text("EU B-ORG\nrejects X-VERB\n")
    with pytest.raises(ValueError, match=r"bad.conll:2: tag 'X-VERB' is not O, B-TYPE or I-TYPE"):
        ner.read_conll(path)
    path.write_text("\n-DOCSTART- O\n\n")
    with pytest.raises(ValueError, match="holds no sentences"):
        ner.read_conll(path)


# --- metrics ------------------------------------------------------------------------------------------------
def test_entity_metrics_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "B-MISC", "I-MISC"]]
    metrics = ner.entity_metrics(gold, predicted)
    # Gold: PER(0-1) LOC(3) ORG(0) MISC(2-3); predicted: PER(0-1) ORG(3) ORG(0-1) MISC(2-3).
    # Right: PER and MISC (ORG 0-1 has the wrong end): P = 2/4, R = 2/4, F1 = 1/2.
    assert metrics["precision"] == pytest.approx(0.5) and metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(0.5)
    assert metrics["PER_f1"] == 1.0 and metrics["MISC_f1"] == 1.0
    assert metrics["LOC_recall"] == 0.0 and metrics["LOC_precision"] == 0.0  # nothing predicted: 0, no warning
    assert metrics["ORG_precision"] == 0.0 and metrics["ORG_recall"] == 0.0
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    # Three of four entities found, one spurious: P = 3/4, R = 3/4.
    metrics = ner.entity_metrics([["B-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG", "B-ORG"]],
                                 [["B-PER", "O", "B-LOC", "I-LOC", "B-PER", "B-ORG", "O"]])
    assert metrics["precision"] == pytest.approx(3 / 4) and metrics["recall"] == pytest.approx(3 / 4)
    assert metrics["f1"] == pytest.approx(3 / 4)
    assert metrics["PER_precision"] == pytest.approx(1 / 2) and metrics["ORG_recall"] == pytest.approx(1 / 2)


def test_iob1_gold_scores_as_its_iob2_form():
    sentences = ner.read_conll(FIXTURES / "conll-dev.iob1")
    gold = [list(s.tags) for s in sentences]
    assert ner.entity_metrics(gold, [ner.to_iob2(tags) for tags in gold])["f1"] == 1.0
    # Token accuracy compares IOB2 with IOB2: perfect (IOB2) predictions on an IOB1 file score 1, not the
    # share of words whose IOB1 tag happens to be its IOB2 tag (0.67 on this file).
    perfect = ner.entity_metrics(gold, [ner.to_iob2(tags) for tags in gold])
    assert perfect["accuracy"] == 1.0 and perfect["f1"] == 1.0
    assert sum(g == p for tags in gold for g, p in zip(tags, ner.to_iob2(tags))) < sum(map(len, gold))
    # Adjacent entities of one type (B- in IOB1) stay two entities: merging them costs precision and recall.
    merged = ner.entity_metrics([["I-PER", "I-PER", "B-PER", "I-PER"]], [["B-PER", "I-PER", "I-PER", "I-PER"]])
    assert merged["f1"] == 0.0


# --- features -----------------------------------------------------------------------------------------------
def test_labels_sit_on_first_sub_tokens_and_map_back_to_words(sp_tokenizer):
    sentences = ner.read_conll(FIXTURES / "conll-train.iob1")
    labels = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    features = ner.make_features(sentences, sp_tokenizer, labels, max_seq_length=64)
    multi_piece_words = 0
    for row, sentence in enumerate(sentences):
        positions = features["word_positions"][row, :len(sentence.words)]
        assert np.all(positions > 0) and np.all(np.diff(positions) > 0)
        assert np.flatnonzero(features["label_weights"][row]).tolist() == positions.tolist()
        for word, position, next_position in zip(sentence.words, positions, [*positions[1:], None]):
            pieces = sp_tokenizer.encode(word)
            end = next_position if next_position is not None else position + len(pieces)
            assert features["input_ids"][row, position:end].tolist() == pieces
            multi_piece_words += len(pieces) > 1
        assert features["input_ids"][row, 0] == sp_tokenizer.cls_id
        assert features["input_ids"][row, int(features["attention_mask"][row].sum()) - 1] == sp_tokenizer.sep_id
        assert [labels[i] for i in features["label_ids"][row, positions]] == ner.to_iob2(sentence.tags)
    assert multi_piece_words > 20
    # The gold labels at every position, read back per word, are the sentence's IOB2 tags.
    assert ner.word_tags(features["label_ids"], features, sentences, labels) == \
        [ner.to_iob2(s.tags) for s in sentences]


def test_a_tag_unseen_in_training_is_an_error(sp_tokenizer):
    sentence = ner.Sentence(("Ana", "sang"), ("B-PER", "B-SONG"), 7)
    with pytest.raises(ValueError, match=r"line 7: tag 'B-SONG' is not among the training file's labels"):
        ner.make_features([sentence], sp_tokenizer, ["O", "B-PER", "I-PER"], max_seq_length=16)


def test_words_past_max_seq_length_are_tagged_from_further_windows(sp_tokenizer):
    sentence = ner.Sentence(("Ana", "Souza", "visited", "Kraków", "today"), ("B-PER", "I-PER", "O", "B-LOC", "O"), 1)
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    features = ner.make_features([sentence], sp_tokenizer, labels, max_seq_length=6)
    assert len(features["input_ids"]) > 1 and features["attention_mask"].sum(1).max() <= 6
    assert ner.word_tags(features["label_ids"], features, [sentence], labels) == [list(sentence.tags)]


def long_sentence(words: int) -> ner.Sentence:
    """The training fixture's sentences run together into one of `words` words (IOB2; multi-word entities)."""
    sentences = ner.read_conll(FIXTURES / "conll-train.iob2")
    all_words = [word for sentence in sentences for word in sentence.words]
    all_tags = [tag for sentence in sentences for tag in sentence.tags]
    assert len(all_words) >= words
    return ner.Sentence(tuple(all_words[:words]), tuple(all_tags[:words]), 1)


def test_a_long_sentence_is_tagged_in_full_from_overlapping_windows(sp_tokenizer):
    """300 words at max_seq_length 64: overlapping windows of whole words, each word predicted from the one
    window where it has the most context (BERT's SQuAD rule), so logits right only there give the gold."""
    labels = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    short = ner.Sentence(("Ana", "Souza", "sang"), ("B-PER", "I-PER", "O"), 1)
    long = long_sentence(300)
    assert sum(tag.startswith("I-") for tag in long.tags) > 10
    sentences = [short, long, short]
    features = ner.make_features(sentences, sp_tokenizer, labels, max_seq_length=64)
    rows = np.flatnonzero(features["sentence"] == 1)
    assert features["sentence"].tolist() == [0, *[1] * len(rows), 2] and len(rows) >= 6
    lengths = features["attention_mask"].sum(1)
    assert lengths.max() <= 64
    counts = (features["word_positions"] >= 0).sum(1)
    spans = [(int(features["first_word"][row]), int(features["first_word"][row] + counts[row])) for row in rows]
    assert spans[0][0] == 0 and spans[-1][1] == 300
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # consecutive windows overlap
    owners = np.zeros(300, int)
    for row, (first, last) in zip(rows, spans):
        owned = np.flatnonzero(features["word_owner"][row])
        assert np.all(owned < last - first)  # a row owns only words it holds
        owners[first + owned] += 1
    assert np.all(owners == 1)  # every word predicted from exactly one window
    # The owner gives the word's first sub-token the most context: min(tokens left, right) + 0.01 x length.
    for word in range(300):
        scores = {}
        for row, (first, last) in zip(rows, spans):
            if first <= word < last:
                position = features["word_positions"][row, word - first]
                scores[row] = min(position - 1, lengths[row] - 2 - position) + 0.01 * (lengths[row] - 2)
        owner = next(row for row, (first, _) in zip(rows, spans)
                     if row in scores and features["word_owner"][row, word - first])
        assert scores[owner] == max(scores.values())
    # Logits right only at each word's owning window (wrong everywhere else) give the gold tags in full.
    tag_ids = (features["label_ids"] + 1) % len(labels)
    owned_positions = np.where(features["word_owner"], features["word_positions"], -1)
    for row in range(len(tag_ids)):
        positions = owned_positions[row][owned_positions[row] >= 0]
        tag_ids[row, positions] = features["label_ids"][row, positions]
    assert ner.word_tags(tag_ids, features, sentences, labels) == [list(s.tags) for s in sentences]
    # Training rows: every window's words carry their labels.
    assert all(features["label_weights"][row].sum() == counts[row] for row in rows)


# --- feature-based tagging ----------------------------------------------------------------------------------
def test_layer_combinations():
    hidden = jax.random.normal(jax.random.PRNGKey(0), (7, 2, 3, 4))  # embeddings + 6 layers
    np.testing.assert_allclose(heads.combine_stacked_layers(hidden, "first"), hidden[1])
    np.testing.assert_allclose(heads.combine_stacked_layers(hidden, "last"), hidden[6])
    np.testing.assert_allclose(heads.combine_stacked_layers(hidden, "second_to_last"), hidden[5])
    np.testing.assert_allclose(heads.combine_stacked_layers(hidden, "sum_last_four"),
                               hidden[3] + hidden[4] + hidden[5] + hidden[6], rtol=1e-6)
    concat = heads.combine_stacked_layers(hidden, "concat_last_four")
    assert concat.shape == (2, 3, 16)
    np.testing.assert_allclose(concat[..., 4:8], hidden[4])
    np.testing.assert_allclose(heads.combine_stacked_layers(hidden, "weighted_sum", jnp.zeros(7)), hidden.mean(0), rtol=1e-5)
    with pytest.raises(ValueError, match="needs 4 Transformer layers; this model has"):
        heads.combine_stacked_layers(hidden[:3], "sum_last_four")


def test_feature_tagger_shapes_and_padding():
    hidden = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 5, 8))
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    tagger = heads.FeatureTagger(num_labels=4, how="weighted_sum", hidden_size=6)
    params = tagger.init(jax.random.PRNGKey(1), hidden, mask)["params"]
    assert params["layer_weights"].shape == (3,)
    apply = jax.jit(tagger.apply)
    logits = apply({"params": params}, hidden, mask)
    assert logits.shape == (2, 5, 4)
    # The backward LSTM starts at each row's last real token: padding does not change real positions' logits.
    padded = hidden.at[:, 0, 3:].set(100.0)
    np.testing.assert_allclose(apply({"params": params}, padded, mask)[0, :3], logits[0, :3], atol=1e-5)


def test_fit_feature_tagger_learns_tags_the_features_carry():
    rng = np.random.default_rng(0)
    label_ids = rng.integers(0, 3, (64, 6)).astype(np.int32)
    states = rng.normal(size=(2, 64, 6, 4)).astype(np.float32)
    states[1, ..., :3] += 3.0 * np.eye(3)[label_ids]  # the last layer tells each position's tag
    features = {"attention_mask": np.ones((64, 6), np.int32), "label_ids": label_ids,
                "label_weights": np.ones((64, 6), np.float32)}
    tagger, params = ner.fit_feature_tagger("last", 3, states[:, :48], {k: v[:48] for k, v in features.items()},
                                            steps=60, batch_size=16, learning_rate=1e-2, hidden_size=8)
    predicted = ner.predict_feature_tags(tagger, params, states[:, 48:], {k: v[48:] for k, v in features.items()},
                                         batch_size=8)
    assert predicted.shape == (16, 6) and np.mean(predicted == label_ids[48:]) > 0.9


def test_dictionary_baseline_by_hand():
    train = [ner.Sentence(("open", "path", "now"), ("O", "B-ARG", "O"), 1),
             ner.Sentence(("the", "path", "is", "Foo"), ("O", "B-ARG", "O", "I-DEF"), 5),  # IOB1-style I-: B-
             ner.Sentence(("a", "path"), ("O", "O"), 10)]
    predicted = ner.dictionary_tags(train, [ner.Sentence(("path", "Foo", "unseen"), ("O", "O", "O"), 1)])
    assert predicted == [["B-ARG", "B-DEF", "O"]]  # most frequent tag per word; an unseen word O


# --- the task end to end ------------------------------------------------------------------------------------
def tiny_config(sp_tokenizer_path, scheme):
    config = ner_config.get_config()
    config.model.update(variant="tiny", vocab_size=4000, max_position_embeddings=48, hidden_dropout=0.0,
                        attention_dropout=0.0)
    config.data.update(tokenizer=str(sp_tokenizer_path), max_seq_length=48)
    config.ner.update(train_file=str(FIXTURES / f"conll-train.{scheme}"),
                      validation_file=str(FIXTURES / f"conll-dev.{scheme}"))
    config.optim.update(learning_rate=5e-3, warmup_fraction=0.1)
    config.finetune.num_epochs = 0.0  # train.num_steps
    config.train.update(num_steps=80, global_batch_size=16, eval_batch_size=16, log_every=20, checkpoint_every=0)
    return config


@pytest.mark.slow
def test_fine_tune_tiny_end_to_end(sp_tokenizer_path, tmp_path):
    """tools/finetune.py's run on IOB1 files, from a random tiny encoder: metrics and a CoNLL predictions file."""
    config = tiny_config(sp_tokenizer_path, "iob1")
    results = finetune.run(config, tmp_path / "run", predict=True)
    task = finetune.make_task(config)
    # MISC occurs only as one-word entities in the training file: its I- label is there all the same.
    assert task.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    metrics = results["best"]["metrics"]
    assert {"PER_f1", "LOC_f1", "ORG_f1", "MISC_f1", "precision", "recall", "f1"} <= set(metrics)
    # The templates are easy: 80 steps from random weights tag most entities of unseen sentences.
    assert metrics["f1"] > 0.6, metrics
    path = tmp_path / "run" / "predictions" / "validation.conll"
    assert results["predictions"] == [str(path)]
    blocks = path.read_text(encoding="utf-8").strip("\n").split("\n\n")
    sentences = ner.read_conll(FIXTURES / "conll-dev.iob1")
    assert len(blocks) == len(sentences)
    gold, predicted = [], []
    for block, sentence in zip(blocks, sentences):
        columns = [line.split() for line in block.split("\n")]
        assert [c[0] for c in columns] == list(sentence.words) and [c[1] for c in columns] == list(sentence.tags)
        gold.append([c[1] for c in columns])
        predicted.append([c[2] for c in columns])
    assert ner.entity_metrics(gold, predicted)["f1"] == pytest.approx(metrics["f1"])  # the file scores the same


def write_conll(path, sentences):
    """sentences: [[(word, tag), ...], ...] as a CoNLL file of word and tag columns."""
    path.write_text("-DOCSTART- O\n\n" + "".join("".join(f"{word} {tag}\n" for word, tag in sentence) + "\n"
                                                  for sentence in sentences), encoding="utf-8")
    return path


@pytest.mark.parametrize("scheme", ["iob1", "iob2"])
def test_a_type_seen_only_in_one_word_entities_fine_tunes_and_evaluates(sp_tokenizer_path, tmp_path, scheme):
    """LOC only as single words in training (I-LOC in IOB1, B-LOC in IOB2), as multi-word entities in dev
    (I-LOC after B-LOC in IOB2): the label set has I-LOC, and a short run trains and evaluates, a long dev
    sentence in overlapping windows."""
    place = "I-LOC" if scheme == "iob1" else "B-LOC"
    person = ("I-PER", "I-PER") if scheme == "iob1" else ("B-PER", "I-PER")
    train = [[("Ana", person[0]), ("Souza", person[1]), ("visited", "O"), ("Lisbon", place), ("today", "O")],
             [("Rui", person[0]), ("Costa", person[1]), ("left", "O"), ("Porto", place)]] * 8
    dev_tags = ("I-LOC", "I-LOC") if scheme == "iob1" else ("B-LOC", "I-LOC")
    dev = [[("Ana", person[0]), ("visited", "O"), ("New", dev_tags[0]), ("York", dev_tags[1])],
           [(word, tag) for _ in range(12) for word, tag in
            (("Rui", person[0]), ("Costa", person[1]), ("left", "O"), ("Rio", dev_tags[0]), ("Branco", dev_tags[1]))]]
    config = tiny_config(sp_tokenizer_path, scheme)
    config.ner.update(train_file=str(write_conll(tmp_path / f"train.{scheme}", train)),
                      validation_file=str(write_conll(tmp_path / f"dev.{scheme}", dev)))
    config.train.update(num_steps=3, eval_batch_size=8)
    task = finetune.make_task(config)
    assert task.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert len(task.split("validation")[1]["input_ids"]) > 2  # the 60-word sentence takes several windows
    results = finetune.run(config, tmp_path / "run", task=task)
    assert {"f1", "LOC_f1", "PER_f1", "accuracy"} <= set(results["final"])
    # Perfect predictions score 1 (IOB1 gold compared in IOB2).
    sentences, features = task.split("validation")
    perfect = {"tags": features["label_ids"]}
    assert task.evaluate(perfect, "validation")["f1"] == task.evaluate(perfect, "validation")["accuracy"] == 1.0


def test_a_type_never_seen_in_training_is_an_error_naming_the_file_and_line(sp_tokenizer_path, tmp_path):
    config = tiny_config(sp_tokenizer_path, "iob2")
    dev = write_conll(tmp_path / "valid.txt", [[("Ana", "B-PER"), ("sang", "O")],
                                               [("Ana", "B-PER"), ("sang", "O"), ("Fado", "B-SONG")]])
    config.ner.validation_file = str(dev)
    # Line 1 -DOCSTART-, 2 blank, 3-4 the first sentence, 5 blank, 6-8 the second: Fado on line 8.
    with pytest.raises(ValueError, match=r"valid.txt:8: tag 'B-SONG': entity type 'SONG' does not occur in the "
                                         r"training file, whose types are \['LOC', 'MISC', 'ORG', 'PER'\]"):
        finetune.make_task(config)


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "latin1.conll"
    path.write_bytes("EU B-ORG\nJos\u00e9 B-PER\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.conll, line 2: not UTF-8 text \(byte 0xe9 at column 4\)"):
        ner.read_conll(path)


def test_a_learning_curve_point_trains_on_sentences_drawn_by_seed(sp_tokenizer_path):
    config = tiny_config(sp_tokenizer_path, "iob2")
    all_sentences = ner.NerTask(config).split("train")[0]
    config.finetune.train_examples = 3
    config.seed = 5
    drawn = ner.NerTask(config).split("train")[0]
    assert len(drawn) == 3 and set(drawn) <= set(all_sentences)
    assert ner.NerTask(config).split("validation")[0] == ner.NerTask(tiny_config(sp_tokenizer_path, "iob2")).split(
        "validation")[0]
    config.finetune.train_examples = len(all_sentences) + 1
    with pytest.raises(ValueError, match=f"conll-train.iob2's training split has only {len(all_sentences)}"):
        ner.NerTask(config).split("train")
