"""Predictions on raw text (bertjax.predictor, tools/predict.py) and evaluation alone (--evaluate_only): each
against the task's own forward pass on tiny fine-tuned runs."""

import copy
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import bertjax
from bertjax import finetune, predictor as predictors, runs
from bertjax.tasks import glue, ner, squad
from bertjax.configs import glue as glue_config
import glue_fixtures
import test_ner
import test_squad

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_bertjax_does_not_import_jax():
    code = "import sys, bertjax; assert 'jax' not in sys.modules and callable(bertjax.load)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_length_buckets_and_problem_types():
    assert predictors.length_buckets(128) == (16, 32, 64, 128)
    assert predictors.length_buckets(96) == (16, 32, 64, 96)
    assert predictors.problem_type({"labels": None}) == "regression"
    assert predictors.problem_type({"labels": ["a", "b"]}) == "single_label_classification"
    assert predictors.problem_type({"labels": ["a", "b"], "problem_type": "multi_label_classification"}) == \
        "multi_label_classification"


def test_entities_from_iob2_tags_by_hand():
    text = "Ada Lovelace met Babbage in London ."
    spans = [(0, 3), (4, 12), (13, 16), (17, 24), (25, 27), (28, 34), (35, 36)]
    tagged = predictors._tagged(text, spans, ["B-PER", "I-PER", "O", "I-PER", "O", "B-LOC", "O"])
    assert tagged["entities"] == [{"type": "PER", "start": 0, "end": 12, "text": "Ada Lovelace"},
                                  {"type": "PER", "start": 17, "end": 24, "text": "Babbage"},
                                  {"type": "LOC", "start": 28, "end": 34, "text": "London"}]
    assert [word["word"] for word in tagged["words"]] == text.split()


# --- classification -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classification_run(tmp_path_factory, sp_tokenizer_path):
    """A four-step SST-2-style run from scratch, evaluated once at its end."""
    directory = tmp_path_factory.mktemp("predict_sst2")
    glue_dir = glue_fixtures.write_glue(directory / "glue", 24, 13, 7)
    config = glue_config.get_config("task=sst2")
    config.model.update(variant="tiny", vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    config.data.update(tokenizer=str(sp_tokenizer_path), max_seq_length=32)
    config.finetune.update(data_dir=str(glue_dir), num_epochs=0.0)
    config.train.update(num_steps=4, global_batch_size=8, eval_batch_size=8, log_every=2, eval_every=0)
    results = finetune.run(copy.deepcopy(config), directory / "run")
    return directory / "run", config, results


def _classification_task(config):
    return glue.ClassificationTask(copy.deepcopy(config))


@pytest.mark.slow
def test_evaluate_only_equals_the_runs_last_evaluation(classification_run):
    workdir, config, results = classification_run
    assert "loss" in results["final"] and "accuracy" in results["final"]  # the loss beside the task's metrics
    evaluated = finetune.evaluate_only(copy.deepcopy(config), workdir)
    assert evaluated["checkpoint"].startswith(str(workdir / "best"))
    assert evaluated["metrics"].keys() == results["final"].keys()
    for name, value in results["final"].items():
        assert evaluated["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-7), name
    assert json.loads((workdir / "evaluation.json").read_text())["metrics"] == evaluated["metrics"]
    # The loss is the split's mean cross entropy, as the direct forward pass gives it.
    task = _classification_task(config)
    params = runs.load_params(workdir / "best", jax.eval_shape(lambda: task.init_params(
        jax.random.PRNGKey(0), task.example_batch(1))))
    batch = next(iter(task.dataset("validation", batch_size=13, seed=0, train=False)))
    logits = np.asarray(task.predict(params, batch)["logits"], np.float64)
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean(log_probabilities[np.arange(13), batch["label"]])
    assert evaluated["metrics"]["loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_classification_equals_the_tasks_forward_pass_and_the_tool_writes_it(classification_run, tmp_path):
    workdir, config, _ = classification_run
    task = _classification_task(config)
    predictor = bertjax.load(workdir, batch_size=4)
    texts = [example.texts[0] for example in task.examples("validation")]
    predicted = predictor.classify(texts)
    batch = next(iter(task.dataset("validation", batch_size=len(texts), seed=0, train=False)))
    logits = np.asarray(task.predict(predictor.params, batch)["logits"], np.float64)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert [row["label"] for row in predicted] == [task.label_names[i] for i in np.argmax(logits, -1)]
    for row, expected in zip(predicted, probabilities):
        assert list(row["probabilities"]) == ["negative", "positive"]
        np.testing.assert_allclose(list(row["probabilities"].values()), expected, rtol=1e-4, atol=1e-6)
        assert row["probability"] == max(row["probabilities"].values())
    # Batches of 4 rows padded to length buckets: one compile per bucket, each at the fixed batch size.
    assert {shape[0] for shape in predictor.compiled_shapes} == {4}
    assert {shape[1] for shape in predictor.compiled_shapes} <= set(predictor.buckets)

    source = tmp_path / "dev.csv"
    source.write_text("sentence,other\n" + "".join(f'"{text}",x\n' for text in texts))
    subprocess.run([sys.executable, "tools/predict.py", f"--checkpoint={workdir}", f"--input={source}",
                    "--text_column=sentence", f"--output_dir={tmp_path / 'out'}", "--batch_size=4"],
                   check=True, cwd=ROOT, capture_output=True)
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [line["label"] for line in lines] == [row["label"] for row in predicted]
    for line, row in zip(lines, predicted):
        assert line["probabilities"] == pytest.approx(row["probabilities"], rel=1e-5)


@pytest.mark.slow
def test_streaming_holds_at_most_one_batch_of_inputs(classification_run):
    workdir, _, _ = classification_run
    predictor = bertjax.load(workdir, batch_size=8)
    for count in (40, 400):  # ten times the rows: no more held
        pulled, held = 0, []

        def rows():
            nonlocal pulled
            for index in range(count):
                pulled += 1
                yield {"text": f"row {index} of a stream"}

        given = 0
        for _ in predictor.stream(rows()):
            given += 1
            held.append(pulled - given)
        assert given == count and max(held) < predictor.batch_size


def test_a_text_file_is_one_example_per_line_and_columns_are_checked(tmp_path):
    (tmp_path / "texts.txt").write_text("first line\n\nthird, with a comma\n")
    assert list(predictors.read_inputs(tmp_path / "texts.txt", {"text": "text"})) == \
        [{"text": "first line"}, {"text": ""}, {"text": "third, with a comma"}]
    (tmp_path / "rows.jsonl").write_text('{"q": "who?", "c": "Ada."}\n')
    assert list(predictors.read_inputs(tmp_path / "rows.jsonl", {"question": "q", "context": "c"})) == \
        [{"question": "who?", "context": "Ada."}]
    (tmp_path / "other.csv").write_text("sentence\nhello\n")
    with pytest.raises(ValueError, match="no column 'text'.*--text_column"):
        predictors.read_inputs(tmp_path / "other.csv", {"text": "text"})


# --- tagging ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tagging_run(tmp_path_factory, sp_tokenizer_path):
    config = test_ner.tiny_config(sp_tokenizer_path, "iob2")
    config.train.update(num_steps=6, log_every=3)
    workdir = tmp_path_factory.mktemp("predict_ner") / "run"
    finetune.run(config, workdir)
    return workdir, config


@pytest.mark.slow
def test_tagging_equals_the_tasks_forward_pass(tagging_run):
    workdir, config = tagging_run
    task = ner.NerTask(copy.deepcopy(config))
    predictor = bertjax.load(workdir, batch_size=4)
    texts = [" ".join(sentence.words) for sentence in ner.read_conll(config.ner.validation_file)[:12]]
    predicted = predictor.tag(texts)
    # The task's own rows of the same words (split as BERT's basic tokenizer splits the text).
    sentences = [ner.Sentence(tuple(text[s:e] for s, e in tokenizer_runs(text)), ("O",) * len(tokenizer_runs(text)), 1)
                 for text in texts]
    features = ner.make_features(sentences, task.tokenizer, task.labels, max_seq_length=task.max_seq_length)
    tag_ids = np.asarray(task.predict(predictor.params, features)["tags"])
    expected = ner.word_tags(tag_ids, features, sentences, task.labels)
    assert [[word["tag"] for word in row["words"]] for row in predicted] == expected
    for text, row in zip(texts, predicted):
        assert all(text[word["start"]:word["end"]] == word["word"] for word in row["words"])
        assert all(text[entity["start"]:entity["end"]] == entity["text"] for entity in row["entities"])


def tokenizer_runs(text):
    from bertjax.data import tokenizer

    return tokenizer.punctuation_runs(text)


@pytest.mark.slow
def test_a_300_word_text_is_tagged_in_full(tagging_run):
    workdir, _ = tagging_run
    predictor = bertjax.load(workdir, batch_size=4)
    words = [f"word{index % 17}" if index % 5 else "Germany" for index in range(300)]
    [row] = predictor.tag([" ".join(words)])
    assert [word["word"] for word in row["words"]] == words  # far more than max_seq_length=48 tokens
    assert all(word["tag"] in predictor.labels for word in row["words"])


# --- spans --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def span_run(tmp_path_factory, sp_tokenizer_path):
    config = test_squad.tiny_config(sp_tokenizer_path, "v1.1")
    config.train.update(num_steps=6, log_every=3)
    workdir = tmp_path_factory.mktemp("predict_squad") / "run"
    finetune.run(config, workdir, predict=True)
    return workdir, config


@pytest.mark.slow
def test_span_answers_are_the_contexts_characters_and_the_tasks_predictions(span_run):
    workdir, config = span_run
    predictor = bertjax.load(workdir, batch_size=8)
    examples = squad.read_squad(config.squad.validation_file)
    answers = predictor.answer([e.question for e in examples], [e.context for e in examples])
    expected = json.loads((workdir / "predictions" / "predictions.json").read_text())
    for example, answer in zip(examples, answers):
        assert answer["answer"] == example.context[answer["start"]:answer["end"]]
        assert answer["answer"] == expected[example.qid]
        assert isinstance(answer["score"], float)


@pytest.mark.slow
def test_an_exported_hf_folder_predicts_and_evaluates_as_the_run(classification_run, tmp_path):
    from bertjax import interop

    workdir, config, results = classification_run
    interop.export_hf(workdir / "best", tmp_path / "hf")
    texts = ["a fine and moving film", "dull, dull, dull"]
    from_run, from_hf = bertjax.load(workdir).classify(texts), bertjax.load(tmp_path / "hf").classify(texts)
    assert [row["label"] for row in from_hf] == [row["label"] for row in from_run]
    for hf_row, run_row in zip(from_hf, from_run):
        assert hf_row["probabilities"] == pytest.approx(run_row["probabilities"], rel=1e-4)
    evaluated = finetune.evaluate_only(copy.deepcopy(config), tmp_path / "evaluation", tmp_path / "hf")
    for name, value in results["final"].items():
        assert evaluated["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


@pytest.mark.slow
def test_a_v2_null_answer_is_empty(span_run):
    workdir, config = span_run
    predictor = bertjax.load(workdir)
    predictor.squad.update(version_2=True, null_score_diff_threshold=-1e12)  # every question null
    [answer] = predictor.answer(["What?"], ["Nothing here answers it."])
    assert answer["answer"] == "" and answer["start"] is None and answer["end"] is None
    assert "null_odds" in answer


@pytest.mark.slow
def test_evaluate_only_scores_a_labelled_test_split_too(tagging_run, tmp_path):
    workdir, config = tagging_run
    config = copy.deepcopy(config)
    config.ner.test_file = config.ner.validation_file  # the same sentences: the same scores
    evaluated = finetune.evaluate_only(config, workdir)["metrics"]
    assert {"loss", "f1", "test/loss", "test/f1"} <= set(evaluated)
    for name in ("loss", "f1", "precision", "accuracy"):
        assert evaluated[f"test/{name}"] == pytest.approx(evaluated[name]), name


def test_logits_become_labels_by_problem_type(sp_tokenizer):
    from bertjax.model import BertConfig

    def predictor(kind, labels):
        return predictors.Predictor(BertConfig.from_variant("tiny", vocab_size=4000), "sequence_classification",
                                    None, sp_tokenizer, labels=labels, problem_type=kind, max_seq_length=32)

    multi_label = predictor("multi_label_classification", ["toxic", "spam", "news"])
    multi = multi_label.classification(np.array([2.0, -1.0, 0.1]))
    assert multi["labels"] == ["toxic", "news"]  # sigmoid above 0.5
    assert multi["probabilities"] == pytest.approx({"toxic": 1 / (1 + np.exp(-2.0)), "spam": 1 / (1 + np.exp(1.0)),
                                                    "news": 1 / (1 + np.exp(-0.1))})
    assert predictor("regression", None).classification(np.array([3.25])) == {"score": 3.25}
    single = predictor("single_label_classification", ["no", "yes"]).classification(np.array([0.0, np.log(3.0)]))
    assert single["label"] == "yes" and single["probability"] == pytest.approx(0.75)
    assert single["probabilities"] == pytest.approx({"no": 0.25, "yes": 0.75})


@pytest.mark.slow
def test_the_tool_answers_questions_from_json_lines(span_run, tmp_path):
    workdir, config = span_run
    examples = squad.read_squad(config.squad.validation_file)[:6]
    source = tmp_path / "questions.jsonl"
    source.write_text("".join(json.dumps({"q": e.question, "context": e.context}) + "\n" for e in examples))
    subprocess.run([sys.executable, "tools/predict.py", f"--checkpoint={workdir}", f"--input={source}",
                    "--question_column=q", f"--output_dir={tmp_path / 'out'}"], check=True, cwd=ROOT,
                   capture_output=True)
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    expected = bertjax.load(workdir).answer([e.question for e in examples], [e.context for e in examples])
    assert [line["answer"] for line in lines] == [answer["answer"] for answer in expected]
    assert [(line["start"], line["end"]) for line in lines] == [(a["start"], a["end"]) for a in expected]


@pytest.mark.slow
def test_the_finetune_tool_evaluates_only(classification_run):
    workdir, config, results = classification_run
    overrides = [f"--config.finetune.data_dir={config.finetune.data_dir}", "--config.train.eval_batch_size=8",
                 f"--config.data.tokenizer={config.data.tokenizer}", "--config.data.max_seq_length=32"]
    done = subprocess.run([sys.executable, "tools/finetune.py", "--config=glue:task=sst2",
                           f"--workdir={workdir}", "--evaluate_only", *overrides], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "evaluation.json" in done.stdout and "loss" in done.stdout
    written = json.loads((workdir / "evaluation.json").read_text())["metrics"]
    assert written == pytest.approx(results["final"], rel=1e-6, abs=1e-7)
