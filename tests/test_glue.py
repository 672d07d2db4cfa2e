"""GLUE: every task's reader on files in the original layouts, TFDS's datasets, the official metrics against
hand computations, whole-split evaluation, submission files, and a fine-tuning run end to end."""

import json
import math

import numpy as np
import pytest

from bertjax import finetune, sharding, train
from bertjax.tasks import glue
from bertjax.configs import glue as glue_config
import glue_fixtures

TRAIN, DEV, TEST = 24, 13, 7


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    return glue_fixtures.write_glue(tmp_path_factory.mktemp("glue"), TRAIN, DEV, TEST)


def _task(glue_dir, sp_tokenizer_path, name, **finetune_overrides):
    config = glue_config.get_config(f"task={name}")
    config.model.update(variant="tiny", vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    config.data.update(tokenizer=str(sp_tokenizer_path), max_seq_length=32)
    config.finetune.update(**{"data_dir": str(glue_dir), **finetune_overrides})
    return glue.ClassificationTask(config), config


@pytest.mark.parametrize("name", sorted(set(glue.TASKS) - {"ax"}))
def test_every_task_reads_its_original_files(glue_dir, sp_tokenizer_path, name):
    task, _ = _task(glue_dir, sp_tokenizer_path, name)
    spec = glue.TASKS[name]
    expected = dict(glue_fixtures.sentiment(TRAIN))
    train_examples = task.examples("train")
    assert len(train_examples) == TRAIN
    assert [example.index for example in train_examples] == list(range(TRAIN))
    assert len(train_examples[0].texts) == len(spec.text_columns)
    for example in train_examples:
        assert example.texts[0] in expected
        sentiment = int(expected[example.texts[0]])
        if name == "stsb":
            assert example.label == pytest.approx(sentiment * 4 + 0.5)
        elif name == "mnli":
            assert spec.labels[example.label] == ("entailment", "neutral", "contradiction")[example.index % 3]
        elif name in ("qnli", "rte"):  # the fixture writes not_entailment for 0
            assert spec.labels[example.label] == ("not_entailment", "entailment")[sentiment]
        else:
            assert example.label == sentiment
    for split in task.eval_splits:
        assert all(example.label is not None for example in task.examples(split))
    assert sum(len(task.examples(split)) for split in task.eval_splits) == (2 * DEV - 2 if name == "mnli" else DEV)
    for split in task.test_splits:
        test = task.examples(split)
        assert len(test) == TEST and all(example.label is None for example in test)
    if name == "qqp":  # test ids come from the file's id column
        assert [example.index for example in task.examples("test")] == list(range(1000, 1000 + TEST))


def test_mnli_has_matched_and_mismatched_splits_and_predicts_ax(glue_dir, sp_tokenizer_path):
    task, _ = _task(glue_dir, sp_tokenizer_path, "mnli")
    assert task.eval_splits == ("validation_matched", "validation_mismatched")
    assert task.test_splits == ("test_matched", "test_mismatched", glue.AX_SPLIT)
    assert task.metric == "validation_matched/accuracy"
    assert len(task.examples(glue.AX_SPLIT)) == TEST


def test_a_malformed_row_names_its_file_and_line(glue_dir, sp_tokenizer_path, tmp_path):
    broken = tmp_path / "SST-2"
    broken.mkdir()
    lines = (glue_dir / "SST-2" / "train.tsv").read_text().splitlines()
    lines[5] = lines[5].replace("\t", " ")  # one field where the header has two
    (broken / "train.tsv").write_text("\n".join(lines) + "\n")
    task, _ = _task(tmp_path, sp_tokenizer_path, "sst2")
    with pytest.raises(glue.DataError, match=rf"{broken / 'train.tsv'}:6: 1 tab-separated fields"):
        task.examples("train")
    task, _ = _task(tmp_path, sp_tokenizer_path, "sst2", skip_malformed_rows=True)
    assert len(task.examples("train")) == TRAIN - 1
    lines[5] = "a sentence\tmaybe"
    (broken / "train.tsv").write_text("\n".join(lines) + "\n")
    task, _ = _task(tmp_path, sp_tokenizer_path, "sst2")
    with pytest.raises(glue.DataError, match=r"train.tsv:6: label 'maybe' is not one of \['0', '1'\]"):
        task.examples("train")


def test_wrong_file_for_the_task_is_named(glue_dir, sp_tokenizer_path, tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text((glue_dir / "SST-2" / "train.tsv").read_text())
    task, _ = _task(tmp_path, sp_tokenizer_path, "rte")
    with pytest.raises(glue.DataError, match="lacks the column"):
        task.examples("train")


def test_metrics_equal_hand_computations():
    predictions = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    tp, tn, fp, fn = 3, 2, 2, 1
    metrics = glue.compute_metrics(("mcc", "f1", "accuracy"), predictions, labels)
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert metrics["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert metrics["mcc"] == pytest.approx((tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    scores, gold = np.array([0.5, 2.0, 1.0, 4.0, 3.5]), np.array([1.0, 2.5, 0.5, 5.0, 3.0])
    centred_s, centred_g = scores - scores.mean(), gold - gold.mean()
    pearson = (centred_s @ centred_g) / math.sqrt((centred_s @ centred_s) * (centred_g @ centred_g))
    rank_s, rank_g = np.array([1, 3, 2, 5, 4.0]), np.array([2, 3, 1, 5, 4.0])  # ranks by hand
    spearman = 1 - 6 * np.sum((rank_s - rank_g) ** 2) / (5 * (25 - 1))
    metrics = glue.compute_metrics(("pearson", "spearman"), scores, gold)
    assert metrics["pearson"] == pytest.approx(pearson)
    assert metrics["spearman"] == pytest.approx(spearman)
    assert glue.compute_metrics(("pearson",), np.ones(5), gold)["pearson"] == 0.0  # constant: undefined, 0


def test_pairs_are_packed_and_truncated_as_bert_does():
    ids, segments = glue.encode([[7, 8, 9, 10, 11, 12], [20, 21]], 8, cls_id=2, sep_id=3)
    assert ids == [2, 7, 8, 9, 3, 20, 21, 3]  # the longer text loses tokens from its end
    assert segments == [0, 0, 0, 0, 0, 1, 1, 1]
    ids, segments = glue.encode([[7, 8, 9, 10, 11, 12]], 5, cls_id=2, sep_id=3)
    assert ids == [2, 7, 8, 9, 3] and segments == [0] * 5


@pytest.mark.parametrize("process_count", [1, 2])
def test_evaluation_batches_cover_every_dev_example_exactly_once(glue_dir, sp_tokenizer_path, process_count):
    task, _ = _task(glue_dir, sp_tokenizer_path, "sst2")
    seen = []
    for process_index in range(process_count):
        for batch in task.dataset("validation", batch_size=2, seed=0, train=False, process_index=process_index,
                                  process_count=process_count):
            assert batch["input_ids"].shape == (2, 32)
            seen += list(batch["example_index"][batch["example_weight"] > 0])
    assert sorted(seen) == list(range(DEV))


def test_whole_dev_set_predictions_when_the_size_is_not_a_multiple_of_the_batch(glue_dir, sp_tokenizer_path):
    import jax

    task, config = _task(glue_dir, sp_tokenizer_path, "sst2")
    mesh = sharding.make_mesh(config.mesh)  # 8 devices; 13 examples in batches of 8
    params = task.init_params(jax.random.PRNGKey(0), task.example_batch(8))
    with sharding.activate(mesh, config.mesh.rules):
        predict_fn = jax.jit(lambda p, b: train.predict_step(p, b, task=task))
        predictions, tokens = train.predict(task, predict_fn, params, mesh, "validation", batch_size=8)
    assert predictions["logits"].shape == (DEV, 2)
    assert tokens == sum(task.real_tokens(b) for b in task.dataset("validation", batch_size=8, seed=0, train=False))
    # Row i is example i: the same logits as a direct forward pass over that one example.
    single = next(iter(task.dataset("validation", batch_size=DEV, seed=0, train=False)))
    direct = task.predict(params, single)["logits"]
    np.testing.assert_allclose(predictions["logits"], direct, rtol=1e-5, atol=1e-6)
    metrics = task.evaluate(predictions, "validation")
    labels = np.array([e.label for e in task.examples("validation")])
    assert metrics["accuracy"] == pytest.approx(np.mean(np.argmax(direct, -1) == labels))


def test_submission_files_have_the_glue_server_format(glue_dir, sp_tokenizer_path, tmp_path):
    for name, split, logits_or_scores, expected_file, expected_values in [
        ("sst2", "test", np.eye(2)[[1, 0, 1, 1, 0, 0, 1]], "SST-2.tsv", ["1", "0", "1", "1", "0", "0", "1"]),
        ("mnli", "test_mismatched", np.eye(3)[[0, 1, 2, 0, 1, 2, 0]], "MNLI-mm.tsv",
         ["entailment", "neutral", "contradiction"] * 2 + ["entailment"]),
        ("mnli", glue.AX_SPLIT, np.eye(3)[[2] * 7], "AX.tsv", ["contradiction"] * 7),
        ("stsb", "test", np.array([-1.0, 0.25, 2.0, 4.5, 5.5, 3.0, 1.0]), "STS-B.tsv",
         ["0.000", "0.250", "2.000", "4.500", "5.000", "3.000", "1.000"]),
    ]:
        task, _ = _task(glue_dir, sp_tokenizer_path, name)
        key = "score" if name == "stsb" else "logits"
        [path] = task.write_predictions({key: logits_or_scores}, split, tmp_path / name)
        assert path.name == expected_file
        lines = path.read_text().splitlines()
        assert lines[0] == "index\tprediction"
        assert [line.split("\t") for line in lines[1:]] == [[str(i), v] for i, v in enumerate(expected_values)]


def test_tfds_glue_prepared_offline_reads_like_the_tsv_files(glue_dir, sp_tokenizer_path, tmp_path):
    for name in ("sst2", "mnli", "stsb"):
        glue.prepare_tfds(glue.TASKS[name], glue_dir, tmp_path)
        from_tsv, _ = _task(glue_dir, sp_tokenizer_path, name)
        from_tfds, _ = _task(glue_dir, sp_tokenizer_path, name, data_dir=None, tfds_data_dir=str(tmp_path))
        for split in ("train", *from_tsv.eval_splits, *from_tsv.test_splits[:2]):
            tsv = sorted(from_tsv.examples(split))
            tfds_examples = sorted(from_tfds.examples(split))
            assert [(e.texts, e.label) for e in tfds_examples] == [(e.texts, e.label) for e in tsv], (name, split)


def test_tfds_mock_data_gives_examples(glue_dir, sp_tokenizer_path):
    import tensorflow_datasets as tfds

    task, _ = _task(glue_dir, sp_tokenizer_path, "mrpc", data_dir=None, tfds_data_dir="unused")
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        examples = task.examples("train")
    assert len(examples) == 6
    assert all(len(e.texts) == 2 and all(isinstance(t, str) for t in e.texts) for e in examples)
    assert all(e.label in (0, 1) for e in examples)


def test_stdlib_task_splits_are_disjoint_and_labelled(sp_tokenizer_path):
    config = glue_config.get_config("task=stdlib")
    config.data.tokenizer = str(sp_tokenizer_path)
    config.model.update(variant="tiny", vocab_size=4000)
    task = glue.ClassificationTask(config)
    splits = {split: task.examples(split) for split in ("train", "validation", "test")}
    texts = [{e.texts[0] for e in examples} for examples in splits.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert len(splits["validation"]) > 100 and len(splits["train"]) > 6 * len(splits["validation"])
    assert {e.label for e in splits["train"]} == set(range(len(glue.STDLIB_PACKAGES)))


@pytest.mark.slow
def test_pretrain_then_finetune_end_to_end(glue_dir, tiny_pretraining_run, sp_tokenizer_path, tmp_path):
    config = glue_config.get_config("task=sst2")
    config.train.update(init_checkpoint=str(tiny_pretraining_run), global_batch_size=8, eval_batch_size=8,
                        eval_every=6, log_every=3)
    config.optim.update(learning_rate=3e-3)
    config.finetune.update(data_dir=str(glue_dir), num_epochs=6.0)
    config.data.max_seq_length = 32
    results = finetune.run(config, tmp_path / "sst2", predict=True)

    assert config.model.hidden_size == 32 and config.data.tokenizer == str(sp_tokenizer_path)  # from the run
    assert config.train.num_steps == math.ceil(TRAIN * 6 / 8)
    written = json.loads((tmp_path / "sst2" / "results.json").read_text())
    assert written["best"]["metrics"] == results["best"]["metrics"]
    assert set(results["best"]["metrics"]) == {"loss", "accuracy"}  # every evaluation reports the loss
    assert results["best"]["value"] == max(
        json.loads(line)["accuracy"] for line in (tmp_path / "sst2" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "eval")
    losses = [json.loads(line)["loss"] for line in (tmp_path / "sst2" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train"]
    assert losses[-1] < losses[0]
    lines = (tmp_path / "sst2" / "predictions" / "SST-2.tsv").read_text().splitlines()
    assert len(lines) == TEST + 1


def test_seed_summary_is_median_mean_and_sample_std():
    runs = [{"best": {"metrics": {"accuracy": value, "f1": 1 - value}}} for value in (0.5, 0.7, 0.9, 0.6)]
    summary = finetune.summarize_seeds(runs)
    assert summary["accuracy"]["median"] == pytest.approx(0.65)
    assert summary["accuracy"]["mean"] == pytest.approx(0.675)
    deviations = np.array([0.5, 0.7, 0.9, 0.6]) - 0.675
    assert summary["accuracy"]["std"] == pytest.approx(math.sqrt(deviations @ deviations / 3))
    assert summary["f1"]["values"] == pytest.approx([0.5, 0.3, 0.1, 0.4])


def test_the_seed_comparison_counts_the_gap_in_the_larger_standard_deviation():
    summaries = {name: finetune.summarize_seeds([{"best": {"metrics": {"accuracy": value}}} for value in values])
                 for name, values in (("pretrained", (0.60, 0.62, 0.64)), ("scratch", (0.40, 0.44, 0.48)))}
    line = finetune.seed_comparison("accuracy", summaries)
    assert line == ("accuracy: pretrained 0.6200 vs from scratch 0.4400 over 3 seeds: difference +0.1800, 4.5 times "
                    "the larger seed standard deviation (0.0400)")


def test_the_builtin_tasks_draw_their_training_labels_by_seed(sp_tokenizer_path):
    def task(seed):
        config = glue_config.get_config("task=same_docstring")
        config.data.tokenizer = str(sp_tokenizer_path)
        config.model.update(variant="tiny", vocab_size=4000)
        config.update(seed=seed)
        config.finetune.train_examples = 64
        return glue.ClassificationTask(config)

    train = task(3).examples("train")
    assert len(train) == 64 and task(3).num_train_examples() == 64 and task(3).examples("train") == train
    assert set(train) <= set(glue.builtin_examples("same_docstring", "train"))
    assert len(task(3).examples("validation")) == len(glue.builtin_examples("same_docstring", "validation"))
    assert task(4).examples("train") != train


def test_a_tsv_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\nfine\t1\n\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match=r"train.tsv, line 3: not UTF-8 text \(byte 0x89 at column 1\)"):
        glue.read_tsv(glue.TASKS["sst2"], path, labelled=True)
