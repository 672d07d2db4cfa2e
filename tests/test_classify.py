"""Fine-tuning on the user's own files (finetune.task=classify): a CSV of spam/ham trains, evaluates, predicts and
exports with its label names; pairs from JSON lines; regression and multi-label metrics and loss against hand
computations; bad rows and unseen labels named by file and line."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bertjax import finetune, interop, losses, runs
from bertjax.tasks import classify
from bertjax.tasks.base import PredictiveTask
from bertjax.configs import classify as classify_config

WORDS = ["win", "free", "money", "now", "prize", "click", "meet", "lunch", "at", "noon", "see", "you", "tomorrow",
         "the", "report", "is", "ready", "call", "me", "a", "cat", "sat", "on", "mat"]
SPAM = ["win free money now", "click now to win a prize", "free prize money", "win a free prize now"]
HAM = ["meet me at noon", "see you tomorrow", "the report is ready", "call me at lunch"]


@pytest.fixture
def vocab(tmp_path):
    """A WordPiece vocab.txt of the tests' words (nothing to train)."""
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(c for c in "abcdefghijklmnopqrstuvwxyz.,!?"
                                                                    if c not in WORDS)]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(pieces) + "\n")
    return path


def _config(vocab, **settings):
    config = classify_config.get_config()
    config.model.update(variant="tiny", vocab_size=64, hidden_size=32, num_layers=2, num_heads=2,
                        intermediate_size=64, max_position_embeddings=32)
    config.data.update(tokenizer=str(vocab), max_seq_length=16)
    config.classify.update(**settings)
    return config


def _write_csv(path, rows, header="text,label"):
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n")
    return path


def _spam_files(folder):
    train = [(text, "spam") for text in SPAM] * 2 + [(text, "ham") for text in HAM] * 2
    dev = [(SPAM[0], "spam"), (HAM[0], "ham"), (SPAM[2], "spam"), (HAM[3], "ham"), (HAM[1], "ham")]
    return (_write_csv(folder / "train.csv", train), _write_csv(folder / "dev.csv", dev),
            _write_csv(folder / "test.csv", [(SPAM[1],), (HAM[2],), (SPAM[3],)], header="text"))


@pytest.mark.slow
def test_csv_with_string_labels_trains_predicts_and_exports_with_its_label_names(vocab, tmp_path):
    import torch
    import transformers

    train_file, dev_file, test_file = _spam_files(tmp_path)
    config = _config(vocab, train_file=str(train_file), validation_file=str(dev_file), test_file=str(test_file),
                     text_a_column="text")
    config.finetune.num_epochs = 0.0
    config.optim.update(learning_rate=1e-3)
    config.train.update(num_steps=4, global_batch_size=8, eval_batch_size=8, log_every=2, checkpoint_every=4)
    workdir = tmp_path / "run"
    results = finetune.run(config, workdir, predict=True)

    assert results["task"] == "classify" and results["metric"] == "accuracy"
    metrics = results["best"]["metrics"]
    assert list(metrics)[:3] == ["loss", "accuracy", "macro_f1"]  # the loss beside every evaluation's metrics
    assert metrics["spam/support"] == 2 and metrics["ham/support"] == 3
    predictions = (workdir / "predictions" / "test_predictions.tsv").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == 4
    assert {line.split("\t")[1] for line in predictions[1:]} <= {"spam", "ham"}
    dev_lines = (workdir / "predictions" / "validation_predictions.tsv").read_text().splitlines()
    assert [line.split("\t")[2] for line in dev_lines[1:]] == ["spam", "ham", "spam", "ham", "ham"]
    report = (workdir / "predictions" / "validation_report.txt").read_text()
    assert "spam" in report and "ham" in report and "precision" in report

    interop.export_hf(workdir, tmp_path / "hf")
    hf_config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_config["id2label"] == {"0": "ham", "1": "spam"}  # the training file's labels, sorted
    assert hf_config["label2id"] == {"ham": 0, "spam": 1}
    assert hf_config["problem_type"] == "single_label_classification"

    task = finetune.make_task(config)
    run, _, params = runs.load_run(workdir)
    assert run.record["labels"] == ["ham", "spam"] and run.record["problem_type"] == "single_label_classification"
    batch = next(iter(task.dataset("validation", batch_size=8, seed=0, train=False)))
    ours = np.asarray(task.predict(params, batch)["logits"])
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf",
                                                                               attn_implementation="eager")
    assert hf_model.config.id2label == {0: "ham", 1: "spam"}
    with torch.no_grad():
        theirs = hf_model.eval()(torch.tensor(batch["input_ids"], dtype=torch.long),
                                 attention_mask=torch.tensor(batch["attention_mask"], dtype=torch.long),
                                 token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)


def test_labels_keep_the_given_order_and_default_to_the_sorted_training_labels(vocab, tmp_path):
    train_file, dev_file, _ = _spam_files(tmp_path)
    files = {"train_file": str(train_file), "validation_file": str(dev_file), "text_a_column": "text"}
    assert classify.FileClassificationTask(_config(vocab, **files)).labels == ("ham", "spam")
    task = classify.FileClassificationTask(_config(vocab, labels="spam,ham", **files))
    assert task.labels == ("spam", "ham") and task.identity["labels"] == ["spam", "ham"]
    assert [example.label for example in task.examples("validation")] == [0, 1, 0, 1, 1]
    assert isinstance(task, PredictiveTask) and task.fresh_parameters == ("classifier",)
    # Predicting needs only the label names and the test file; training needs the validation file.
    task = classify.FileClassificationTask(_config(vocab, labels="ham,spam", test_file=str(dev_file),
                                                   text_a_column="text"))
    assert len(task.examples("test")) == 5 and task.examples("test")[0].label == 1
    with pytest.raises(ValueError, match="config.classify.validation_file is not set"):
        task.dataset("train", batch_size=2, seed=0, train=True)
    with pytest.raises(ValueError, match="config.classify.train_file is not set"):
        classify.FileClassificationTask(_config(vocab, validation_file=str(dev_file)))
    assert classify.label_set(["10", "2", "1"], classify.SINGLE) == ("1", "2", "10")  # integers sort as numbers
    assert classify.label_set([["b", "a"], [], ["c"]], classify.MULTI) == ("a", "b", "c")


def test_jsonl_pairs_encode_as_cls_a_sep_b_sep_with_segment_ids(vocab, tmp_path):
    rows = [{"text_a": "see you tomorrow", "text_b": "meet me at noon", "label": "same"},
            {"text_a": "the cat sat", "text_b": "win free money", "label": "different"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = classify.FileClassificationTask(_config(vocab, train_file=str(path), validation_file=str(path),
                                                   text_b_column="text_b"))
    assert task.examples("train")[0].texts == ("see you tomorrow", "meet me at noon")
    batch = next(iter(task.dataset("validation", batch_size=2, seed=0, train=False)))
    ids = {word: index for index, word in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    expected = [ids[token] for token in "[CLS] see you tomorrow [SEP] meet me at noon [SEP]".split()]
    assert list(batch["input_ids"][0, :len(expected)]) == expected and not batch["input_ids"][0, len(expected):].any()
    assert list(batch["segment_ids"][0, :len(expected)]) == [0] * 5 + [1] * 5
    assert list(batch["attention_mask"][0]) == [1] * len(expected) + [0] * (16 - len(expected))
    assert list(batch["label"]) == [1, 0]  # different, same


def test_an_unseen_dev_label_is_named_or_counted_wrong(vocab, tmp_path):
    train_file, _, _ = _spam_files(tmp_path)
    dev_file = _write_csv(tmp_path / "odd.csv", [(SPAM[0], "spam"), (HAM[0], "eggs"), (HAM[1], "ham")])
    files = {"train_file": str(train_file), "validation_file": str(dev_file), "text_a_column": "text"}
    task = classify.FileClassificationTask(_config(vocab, **files))
    with pytest.raises(ValueError) as error:
        task.examples("validation")
    message = str(error.value)
    assert message.startswith(f"{dev_file}, line 3: label 'eggs' is not one of ['ham', 'spam']") and "\n" not in message
    task = classify.FileClassificationTask(_config(vocab, unseen_labels="wrong", **files))
    assert [example.label for example in task.examples("validation")] == [1, -1, 0]
    logits = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # spam, ham (gold: eggs), ham
    metrics = task.evaluate({"logits": logits}, "validation")
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    # ham: predicted twice, right once (precision 1/2), its one gold row found (recall 1); spam: 1 of 1.
    assert metrics["ham/precision"] == pytest.approx(0.5) and metrics["ham/recall"] == 1.0
    assert metrics["macro_f1"] == pytest.approx((2 * 0.5 / 1.5 + 1.0) / 2)


@pytest.mark.parametrize("name,content,settings,expected", [
    ("empty.csv", "text,label\nwin free money,spam\n,ham\n", {}, r"empty.csv, line 3: the text column 'text' is empty"),
    ("score.tsv", "text\tlabel\nwin free money\t0.5\nsee you\thigh\n", {"problem_type": "regression"},
     r"score.tsv, line 3: the label 'high' is not a number; regression expects a finite number"),
    ("tags.jsonl", '{"text": "win", "label": ["spam"]}\n\n{"text": "see you", "label": "ham"}\n',
     {"problem_type": "multi_label_classification"},
     r"tags.jsonl, line 3: the label 'ham' is not a list; multi-label rows expect a JSON list of label names"),
    ("missing.jsonl", '{"text": "win", "label": "spam"}\n{"text": null, "label": "ham"}\n', {},
     r"missing.jsonl, line 2: the text column 'text' is missing"),
    ("unlabelled.jsonl", '{"text": "win", "label": "spam"}\n{"text": "see you", "label": null}\n', {},
     r"unlabelled.jsonl, line 2: the label column 'label' is missing; every training and validation row"),
])
def test_a_malformed_row_is_one_line_naming_the_file_the_line_and_what_was_expected(vocab, tmp_path, name, content,
                                                                                      settings, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=expected) as error:
        task = classify.FileClassificationTask(_config(vocab, train_file=str(path), validation_file=str(path),
                                                       text_a_column="text", **settings))
        task.examples("train")  # regression reads no labels to build its task
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_multi_label_rows_from_jsonl_lists_and_separated_strings(vocab, tmp_path):
    jsonl = tmp_path / "tags.jsonl"
    jsonl.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in [
        ("win free money", ["spam", "money"]), ("see you", []), ("call me", ["personal"])]))
    csv_file = _write_csv(tmp_path / "tags.csv", [("win free money", "money|spam"), ("see you", ""),
                                                  ("call me", "personal")])
    for path in (jsonl, csv_file):
        task = classify.FileClassificationTask(_config(vocab, train_file=str(path), validation_file=str(path),
                                                       text_a_column="text", problem_type=classify.MULTI))
        assert task.labels == ("money", "personal", "spam") and task.metric == "micro_f1"
        assert sorted(task.examples("train")[0].label) == [0, 2] and task.examples("train")[1].label == ()
        batch = next(iter(task.dataset("train", batch_size=3, seed=0, train=False)))
        np.testing.assert_array_equal(batch["label"], [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
        assert batch["label"].dtype == np.float32


def test_problem_type_is_recorded_by_glue_and_written_to_the_hf_config(vocab):
    from bertjax import convert
    from bertjax.model import BertConfig
    from bertjax.tasks import glue
    from bertjax.configs import glue as glue_config

    config = glue_config.get_config("task=stdlib")
    config.model.update(variant="tiny", vocab_size=64)
    config.data.tokenizer = str(vocab)
    assert glue.ClassificationTask(config).identity["problem_type"] == "single_label_classification"
    model = BertConfig(vocab_size=64, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    hf = convert.config_to_hf(model, "sequence_classification", ["a"], 1, problem_type=classify.MULTI)
    assert hf["problem_type"] == classify.MULTI and hf["id2label"] == {"0": "a"}
    assert convert.config_to_hf(model, "sequence_classification", None, 1)["problem_type"] == "regression"
    assert "problem_type" not in convert.config_to_hf(model, "sequence_classification", ["a", "b"], 2)


def test_parquet_integer_labels_sort_as_numbers_and_list_columns_are_multi_label(vocab, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": ["win free money", "see you", "call me", "the cat"], "label": [10, 2, 10, 1],
                             "tags": [["spam"], [], ["personal", "spam"], ["cats"]]}), path)
    task = classify.FileClassificationTask(_config(vocab, train_file=str(path), validation_file=str(path),
                                                   text_a_column="text"))
    assert task.labels == ("1", "2", "10") and [e.label for e in task.examples("train")] == [2, 1, 2, 0]
    task = classify.FileClassificationTask(_config(vocab, train_file=str(path), validation_file=str(path),
                                                   text_a_column="text", label_column="tags",
                                                   problem_type=classify.MULTI))
    assert task.labels == ("cats", "personal", "spam")
    assert [e.label for e in task.examples("train")] == [(2,), (), (1, 2), (0,)]


def test_regression_metrics_equal_hand_computations():
    predicted, gold = np.array([0.5, 2.0, 1.0, 4.0]), np.array([1.0, 2.0, 2.5, 3.0])
    dp, dg = predicted - 1.875, gold - 2.125  # centred on the means
    pearson = (dp @ dg) / math.sqrt((dp @ dp) * (dg @ dg))
    # Ranks: predicted 1 3 2 4, gold 1 2 3 4; squared rank differences 0 + 1 + 1 + 0.
    spearman = 1 - 6 * 2 / (4 * (4 ** 2 - 1))
    mse = (0.5 ** 2 + 0 + 1.5 ** 2 + 1.0 ** 2) / 4
    metrics = classify.regression_metrics(predicted, gold)
    assert list(metrics) == ["pearson", "spearman", "mse"]
    assert metrics["pearson"] == pytest.approx(pearson) and metrics["spearman"] == pytest.approx(spearman)
    assert metrics["mse"] == pytest.approx(mse)


def test_multi_label_metrics_equal_hand_computations():
    # Three labels; row 3's gold holds a label outside the set (the last column), which is never predicted.
    predicted = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    gold = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]])
    # label 0: tp 2; label 1: fp 2; label 2: tp 2; unseen: fn 1 -> micro tp 4, fp 2, fn 1.
    micro = 2 * 4 / (2 * 4 + 2 + 1)
    f1_per_label = [1.0, 0.0, 1.0]  # label 1: no gold rows, two predictions: precision 0, F1 0
    metrics = classify.multi_label_metrics(predicted, gold)
    assert metrics["micro_f1"] == pytest.approx(micro)
    assert metrics["macro_f1"] == pytest.approx(sum(f1_per_label) / 3)
    assert metrics["exact_match"] == pytest.approx(1 / 4)  # row 0 only; row 3 misses its unseen label


def test_single_label_metrics_equal_hand_computations():
    predicted, gold = np.array([0, 1, 1, 2, 2, 0]), np.array([0, 1, 2, 2, 1, 1])
    metrics = classify.single_label_metrics(predicted, gold, ("a", "b", "c"))
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    # a: tp 1 fp 1 fn 0; b: tp 1 fp 1 fn 2; c: tp 1 fp 1 fn 1
    f1 = {"a": 2 / 3, "b": 2 * 1 / (2 + 1 + 2), "c": 2 * 1 / (2 + 1 + 1)}
    assert metrics["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert metrics["b/precision"] == pytest.approx(0.5) and metrics["b/recall"] == pytest.approx(1 / 3)
    assert metrics["b/f1"] == pytest.approx(f1["b"]) and metrics["b/support"] == 3


def test_multi_label_loss_is_the_mean_sigmoid_cross_entropy_of_real_rows():
    logits = jnp.array([[2.0, -1.0, 0.5], [-3.0, 1.0, 0.0], [9.0, 9.0, 9.0]])
    labels = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    weights = jnp.array([1.0, 1.0, 0.0])  # the last row pads the batch

    def bce(x, y):  # -y log sigmoid(x) - (1 - y) log (1 - sigmoid(x))
        return y * math.log1p(math.exp(-x)) + (1 - y) * math.log1p(math.exp(x))

    rows = [sum(bce(x, y) for x, y in zip(row_x, row_y)) / 3
            for row_x, row_y in zip(np.asarray(logits)[:2].tolist(), np.asarray(labels)[:2].tolist())]
    loss, sums = jax.jit(losses.multi_label_loss)(logits, labels, weights, jnp.sum(weights))
    assert float(loss) == pytest.approx(sum(rows) / 2, rel=1e-6)
    assert float(loss) == pytest.approx(float(jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:2], labels[:2]))),
                                        rel=1e-6)
    assert float(sums["correct_sum"]) == 1.0  # row 0 right at threshold 0.5; row 1 predicts label 1 wrongly
    assert float(sums["example_weight"]) == 2.0


@pytest.mark.slow
@pytest.mark.parametrize("problem_type", [classify.REGRESSION, classify.MULTI])
def test_regression_and_multi_label_runs_train_and_export_their_problem_type(vocab, tmp_path, problem_type):
    import transformers

    rows = ([(text, "4.5" if problem_type == classify.REGRESSION else "spam|ads") for text in SPAM]
            + [(text, "0.5" if problem_type == classify.REGRESSION else "") for text in HAM])
    train_file = _write_csv(tmp_path / "train.csv", rows * 2)
    config = _config(vocab, train_file=str(train_file), validation_file=str(train_file), text_a_column="text",
                     problem_type=problem_type)
    config.finetune.num_epochs = 0.0
    config.train.update(num_steps=2, global_batch_size=8, eval_batch_size=8, log_every=1, checkpoint_every=2)
    results = finetune.run(config, tmp_path / "run", predict=True)
    assert results["metric"] == ("pearson" if problem_type == classify.REGRESSION else "micro_f1")
    interop.export_hf(tmp_path / "run", tmp_path / "hf")
    hf_config = transformers.AutoConfig.from_pretrained(tmp_path / "hf")
    assert hf_config.problem_type == problem_type
    if problem_type == classify.MULTI:
        assert hf_config.id2label == {0: "ads", 1: "spam"}
    lines = (tmp_path / "run" / "predictions" / "validation_predictions.tsv").read_text().splitlines()
    assert len(lines) == 17 and lines[1].split("\t")[2] == ("4.5" if problem_type == classify.REGRESSION
                                                           else "spam|ads")


def test_every_split_is_read_and_checked_before_training(vocab, tmp_path):
    # A bad dev label used to surface at the first evaluation, after the training it cost; a test file that
    # is not UTF-8 text, when the predictions were written at the end.
    train_file, dev_file, _ = _spam_files(tmp_path)
    odd = _write_csv(tmp_path / "odd.csv", [(SPAM[0], "spam"), (HAM[0], "eggs")])
    config = _config(vocab, train_file=str(train_file), validation_file=str(odd), text_a_column="text")
    with pytest.raises(ValueError, match=r"odd.csv, line 3: label 'eggs' is not one of"):
        finetune.run(config, tmp_path / "run")
    binary = tmp_path / "test.csv"
    binary.write_bytes(b"text\n\xff\xfe\x00binary\n")
    config = _config(vocab, train_file=str(train_file), validation_file=str(dev_file), test_file=str(binary),
                     text_a_column="text")
    with pytest.raises(ValueError, match=r"test.csv"):
        finetune.run(config, tmp_path / "run", predict=True)
    assert not (tmp_path / "run" / "checkpoints").exists()
