"""Multiple choice: the head computes transformers' BertForMultipleChoice's logits on the same weights, exports
to and imports from HF folders, SWAG's CSV reader, and a fine-tuning run end to end."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from bertjax import convert, finetune, interop
from bertjax.heads import BertForMultipleChoice
from bertjax.model import BertConfig
from bertjax.tasks import multiple_choice
from bertjax.tasks.base import PredictiveTask
from bertjax.configs import swag as swag_config
from test_export import _bertjax_run, _hf_folder, _vocab_file

CHOICE_LENGTHS = np.array([[9, 7, 5, 8], [4, 6, 3, 4], [2, 9, 9, 6]])  # B=3 questions x N=4 choices


def _choice_batch(vocab_size):
    """(B, N, L) ids, segment ids and masks: each choice padded to L=9, its second segment from position 3."""
    rng = np.random.default_rng(3)
    length = CHOICE_LENGTHS.max()
    mask = (np.arange(length) < CHOICE_LENGTHS[..., None]).astype(np.int64)
    input_ids = rng.integers(1, vocab_size, size=mask.shape) * mask
    segment_ids = (np.arange(length) >= 3) * mask
    return input_ids, segment_ids, mask


def _hf_logits(hf_model, input_ids, segment_ids, mask):
    with torch.no_grad():
        return hf_model.eval()(torch.tensor(input_ids), attention_mask=torch.tensor(mask),
                               token_type_ids=torch.tensor(segment_ids)).logits.numpy()


def _our_logits(model_config, params, input_ids, segment_ids, mask):
    model = convert.head_model(model_config, "multiple_choice")
    return np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(input_ids), jnp.asarray(segment_ids),
                                           jnp.asarray(mask)).logits)


def test_head_gives_transformers_logits_on_the_same_weights(tmp_path):
    (tmp_path / "source").mkdir()
    hf_model = _hf_folder(tmp_path / "source", transformers.BertForMultipleChoice)
    model_config, params, absent = convert.load_hf_bert(tmp_path / "source")
    assert absent == ["mlm_head", "sentence_head", "qa_outputs"]  # the pooler and classifier are there
    assert params["classifier"]["kernel"].shape == (model_config.hidden_size, 1)
    batch = _choice_batch(model_config.vocab_size)
    ours = _our_logits(model_config, params, *batch)
    assert ours.shape == (3, 4)
    np.testing.assert_allclose(ours, _hf_logits(hf_model, *batch), atol=1e-5, rtol=1e-5)
    # Each choice is scored alone: a question's choices in another order give their scores in that order.
    order = [2, 0, 3, 1]
    reordered = _our_logits(model_config, params, *(part[:, order] for part in batch))
    np.testing.assert_allclose(reordered, ours[:, order], atol=1e-6)


def test_dropout_is_on_only_in_training():
    model_config = BertConfig(vocab_size=30, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=20,
                              max_position_embeddings=16)
    model = BertForMultipleChoice(model_config)
    ids = jnp.ones((2, 3, 5), jnp.int32)
    params = model.init(jax.random.key(0), ids)["params"]
    plain = [model.apply({"params": params}, ids).logits for _ in range(2)]
    dropped = model.apply({"params": params}, ids, deterministic=False, rngs={"dropout": jax.random.key(1)}).logits
    np.testing.assert_array_equal(plain[0], plain[1])
    assert plain[0].shape == (2, 3) and not np.allclose(dropped, plain[0])


def test_export_loads_in_auto_model_for_multiple_choice_with_the_same_logits(tmp_path):
    vocab = _vocab_file(tmp_path)
    model_config, params = _bertjax_run(tmp_path / "run", "multiple_choice", vocab)
    summary = interop.export_hf(tmp_path / "run", tmp_path / "hf")
    assert summary["architecture"] == "BertForMultipleChoice"
    hf_model, info = transformers.AutoModelForMultipleChoice.from_pretrained(
        tmp_path / "hf", output_loading_info=True, attn_implementation="eager")
    assert type(hf_model) is transformers.BertForMultipleChoice
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    batch = _choice_batch(model_config.vocab_size)
    np.testing.assert_allclose(_our_logits(model_config, params, *batch), _hf_logits(hf_model, *batch),
                               atol=1e-5, rtol=1e-5)


def test_hf_to_bertjax_to_hf_gives_back_the_source_tensors(tmp_path):
    (tmp_path / "source").mkdir()
    _hf_folder(tmp_path / "source", transformers.BertForMultipleChoice)
    record = interop.import_hf(tmp_path / "source", tmp_path / "run")
    assert record["head"] == "multiple_choice" and record["zero_filled"] == []
    assert "labels" not in record  # transformers' two default labels are not the choices
    interop.export_hf(tmp_path / "run", tmp_path / "back")
    source = load_file(tmp_path / "source" / "model.safetensors")
    back = load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(back) == sorted(source)
    for name, tensor in source.items():
        np.testing.assert_array_equal(back[name], tensor, err_msg=name)
    assert json.loads((tmp_path / "back" / "config.json").read_text())["architectures"] == ["BertForMultipleChoice"]


# --- SWAG's files -------------------------------------------------------------------------------------------
SWAG_HEADER = ["", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source", "ending0", "ending1",
               "ending2", "ending3", "label"]


def _swag_rows(count, seed=0):
    """Questions whose right ending repeats the topic word of the context: learnable by a tiny model."""
    topics = ["the river", "a guitar", "the kitchen", "some snow", "the horse", "a ladder"]
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        topic, label = topics[index % len(topics)], int(rng.integers(4))
        others = [other for other in topics if other != topic]
        endings = [f"looks at {topic}." if choice == label else f"looks at {others[(index + choice) % 5]}."
                   for choice in range(4)]
        rows.append([str(index), f"anetv_{index}", str(1000 + index), f"Someone sees {topic}, then",
                     f"Someone sees {topic}, then", "someone", "gen", *endings, str(label)])
    return rows


def _write_swag(path, rows, header=SWAG_HEADER):
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_swag_reader_pairs_the_context_with_each_ending(tmp_path):
    rows = _swag_rows(3)
    rows[1][7] = 'waves, "hello", then\nleaves.'  # a quoted field with a comma and a line break
    path = _write_swag(tmp_path / "val.csv", rows)
    questions = multiple_choice.read_swag(path, labelled=True)
    assert len(questions) == 3 and [q.line for q in questions] == [2, 3, 5]
    first = questions[0]
    assert first.context == rows[0][4] and first.label == int(rows[0][11]) and first.ids == ("anetv_0", "1000")
    assert first.endings == tuple(f"someone {ending}" for ending in rows[0][7:11])  # sent2 + " " + ending_i
    assert questions[1].endings[0] == 'someone waves, "hello", then\nleaves.'

    test_header = SWAG_HEADER[:-1]  # test files have no label
    test = _write_swag(tmp_path / "test.csv", [row[:-1] for row in rows], test_header)
    assert [q.label for q in multiple_choice.read_swag(test, labelled=False)] == [None] * 3
    five = _write_swag(tmp_path / "five.csv", [["a", "b", *"vwxyz", "4"]], ["sent1", "sent2", *(
        f"ending{i}" for i in range(5)), "label"])
    [question] = multiple_choice.read_swag(five, labelled=True)
    assert question.endings == ("b v", "b w", "b x", "b y", "b z") and question.label == 4
    assert multiple_choice.count_choices(five) == 5


def test_swag_errors_name_the_file_and_line(tmp_path):
    rows = _swag_rows(4)
    rows[2] = rows[2][:-2]  # two fields short
    path = _write_swag(tmp_path / "train.csv", rows)
    with pytest.raises(ValueError, match=rf"^{path}:4: 10 comma-separated fields where the header has 12;"):
        multiple_choice.read_swag(path, labelled=True)
    rows = _swag_rows(4)
    rows[1][11] = "4"
    path = _write_swag(tmp_path / "label.csv", rows)
    with pytest.raises(ValueError, match=rf"^{path}:3: label '4' is not an ending's index \(0 to 3\)") as error:
        multiple_choice.read_swag(path, labelled=True)
    assert "\n" not in str(error.value)
    path = _write_swag(tmp_path / "unlabelled.csv", [row[:-1] for row in _swag_rows(2)], SWAG_HEADER[:-1])
    with pytest.raises(ValueError, match=rf"^{path}:1: the header .* lacks the column\(s\) \['label'\]"):
        multiple_choice.read_swag(path, labelled=True)
    gap = ["sent1", "sent2", "ending0", "ending1", "ending3", "label"]
    path = _write_swag(tmp_path / "gap.csv", [["a", "b", "c", "d", "e", "0"]], gap)
    with pytest.raises(ValueError, match=rf"^{path}:1: the columns \['ending3'\] follow no ending2"):
        multiple_choice.read_swag(path, labelled=True)


# --- fine-tuning --------------------------------------------------------------------------------------------
TRAIN, VALIDATION, TEST = 24, 10, 6


@pytest.fixture(scope="module")
def swag_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("swag")
    return (_write_swag(folder / "train.csv", _swag_rows(TRAIN, seed=1)),
            _write_swag(folder / "val.csv", _swag_rows(VALIDATION, seed=2)),
            _write_swag(folder / "test.csv", [row[:-1] for row in _swag_rows(TEST, seed=3)], SWAG_HEADER[:-1]))


def _config(swag_files, **train):
    config = swag_config.get_config()
    config.swag.update(train_file=str(swag_files[0]), validation_file=str(swag_files[1]),
                       test_file=str(swag_files[2]))
    config.data.max_seq_length = 24
    config.train.update(global_batch_size=8, eval_batch_size=8, log_every=3, **train)
    return config


def test_choices_are_encoded_as_bert_pairs(swag_files, sp_tokenizer_path):
    config = _config(swag_files)
    config.model.update(variant="tiny", vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    config.data.tokenizer = str(sp_tokenizer_path)
    config.data.max_seq_length = 12  # short enough to cut every pair
    task = finetune.make_task(config)
    assert isinstance(task, multiple_choice.MultipleChoiceTask) and task.num_choices == 4
    assert isinstance(task, PredictiveTask) and task.fresh_parameters == ("classifier",)
    assert convert.head_of_record(task.identity) == "multiple_choice"
    assert task.test_splits == ("test",) and task.num_train_examples() == TRAIN
    batch = next(iter(task.dataset("validation", batch_size=4, seed=0, train=False)))
    assert batch["input_ids"].shape == (4, 4, 12) and batch["attention_mask"].shape == (4, 4, 12)
    context, endings = (part[0] for part in task.token_ids("validation"))
    for choice in range(4):
        ids, segments = multiple_choice.encode([context, endings[choice]], 12, task.tokenizer.cls_id,
                                               task.tokenizer.sep_id)
        np.testing.assert_array_equal(batch["input_ids"][0, choice, :len(ids)], ids)
        np.testing.assert_array_equal(batch["segment_ids"][0, choice, :len(ids)], segments)
        assert batch["attention_mask"][0, choice].sum() == len(ids) == 12
    assert list(batch["label"]) == [q.label for q in task.questions("validation")[:4]]


@pytest.mark.slow
def test_pretrain_then_finetune_end_to_end(swag_files, tiny_pretraining_run, tmp_path):
    config = _config(swag_files, init_checkpoint=str(tiny_pretraining_run), eval_every=6)
    config.optim.learning_rate = 3e-3
    config.finetune.num_epochs = 4.0  # 24 questions x 4 epochs / 8 = 12 steps
    results = finetune.run(config, tmp_path / "swag", predict=True)
    assert config.train.num_steps == 12 and results["metric"] == "accuracy"

    evaluations = [json.loads(line) for line in (tmp_path / "swag" / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line)["split"] == "eval"]
    assert results["best"]["value"] == max(evaluation["accuracy"] for evaluation in evaluations)
    # The final evaluation's accuracy by hand, from validation predictions of the final parameters.
    task = finetune.make_task(config)
    written = finetune.predict_and_write(config, task, tmp_path / "swag" / "checkpoints", tmp_path / "dev",
                                         splits=["validation"])
    with written[0].open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == VALIDATION
    assert [int(row["label"]) for row in rows] == [q.label for q in task.questions("validation")]
    for row in rows:
        logits = [float(row[f"logit{choice}"]) for choice in range(4)]
        assert int(row["prediction"]) == int(np.argmax(logits))
    by_hand = sum(row["prediction"] == row["label"] for row in rows) / VALIDATION
    assert results["final"]["accuracy"] == pytest.approx(by_hand)

    with (tmp_path / "swag" / "predictions" / "test_predictions.csv").open(newline="") as file:
        test_rows = list(csv.DictReader(file))
    assert len(test_rows) == TEST and "label" not in test_rows[0]
    assert [row["fold-ind"] for row in test_rows] == [str(1000 + index) for index in range(TEST)]

    # The run's record names its head: its best parameters export as BertForMultipleChoice.
    summary = interop.export_hf(tmp_path / "swag" / "best", tmp_path / "hf")
    assert summary["architecture"] == "BertForMultipleChoice"
    _, info = transformers.AutoModelForMultipleChoice.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
