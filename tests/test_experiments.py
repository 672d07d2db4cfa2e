"""The experiments' pure pieces: settings are checked when made, smoke runs shrink the later budgets, configs
come from `bertjax/configs/common.py`, cached results are reused only while their settings hold, and the report's
tables read the results they are given."""

import json

import pytest

from bertjax.experiments import report, running, settings
from bertjax.experiments.settings import Settings


def test_settings_refuse_unknown_experiments_and_parts():
    with pytest.raises(ValueError, match=r"--only: unknown experiment\(s\) \['bert'\]"):
        Settings(experiments=("bert_mlm", "bert"))
    with pytest.raises(ValueError, match=r"--skip: unknown part\(s\) \['features2'\]; choose from finetune"):
        Settings(skip=("features2",))
    assert Settings().experiments == tuple(settings.EXPERIMENTS)


def test_rates_parse_and_name_the_flag_when_bad():
    assert settings.parse_rates(["1e-4", "3e-3"]) == (1e-4, 3e-3)
    with pytest.raises(ValueError, match="--finetune_learning_rates"):
        settings.parse_rates(["1e-4", "fast"])


def test_a_smoke_run_shrinks_the_later_budgets_in_proportion():
    assert Settings(steps=20).scaled(1000) == 67
    assert Settings(steps=settings.FULL_STEPS).scaled(1000) == 1000
    assert Settings(steps=2000).scaled(1000) == 1000  # a longer run does not lengthen them
    assert Settings(steps=1).scaled(10) == 1


def test_configs_are_the_common_config_with_the_settings(tmp_path):
    settings = Settings(steps=20, batch_size=8, seq_length=64, vocab_size=512, warmup_fraction=0.25)
    config = running.pretraining_config("causal_lm", tmp_path, settings)
    assert config.is_locked and config.task == "causal_lm"
    assert (config.model.vocab_size, config.model.max_position_embeddings, config.model.type_vocab_size) == (
        512, 64, 1)
    assert (config.train.num_steps, config.train.log_every, config.train.eval_every) == (20, 1, 3)
    assert config.optim.warmup_steps == 5
    assert config.data.tokenizer == str(tmp_path / "tokenizer.model")
    with pytest.raises(AttributeError):
        config.train.num_step = 3  # a locked common config refuses a misspelt key
    pretrained = running.finetune_config("elmo", tmp_path, settings, True, 3e-4)
    scratch = running.finetune_config("elmo", tmp_path, settings, False, 3e-4)
    assert pretrained.train.init_checkpoint == str(tmp_path / "elmo") and scratch.train.init_checkpoint is None
    assert (pretrained.data.max_seq_length, pretrained.optim.learning_rate) == (settings.finetune_seq_length, 3e-4)


def test_tagging_rows_need_enough_layers():
    assert running.tagging_combinations(3) == ["embeddings", "last", "second_to_last", "weighted_sum"]
    assert running.tagging_combinations(5) == list(running.TAGGING_ROWS)


def test_a_cached_result_is_reused_only_while_its_settings_hold(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"accuracy": 0.5 + len(calls)}

    path = tmp_path / "downstream" / "result.json"
    first = running.cached(path, {"length": 64}, compute)
    assert first["accuracy"] == 1.5 and "seconds" in first
    assert running.cached(path, {"length": 64}, compute) == first and len(calls) == 1
    assert running.cached(path, {"length": 32}, compute)["accuracy"] == 2.5
    assert json.loads(path.read_text())["settings"] == {"length": 32}


def test_run_time_counts_the_first_window_at_the_average_pace(tmp_path):
    records = [{"split": "train", "step": 10, "time": 100.0}, {"split": "eval", "step": 10, "time": 101.0},
               {"split": "train", "step": 20, "time": 120.0, "lm_loss": 3.0},
               {"split": "train", "step": 30, "time": 140.0, "lm_loss": 2.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(record) for record in records))
    assert running.train_seconds(tmp_path) == pytest.approx(60.0)
    assert running.curves(tmp_path, "lm_loss") == {"train/lm_loss": [(20, 3.0), (30, 2.0)]}


RESULTS = {
    "bert_mlm": {"task": "pretraining", "parameters": 1234567, "seconds": 90.0,
                 "final": {"mlm_loss": 4.56789, "mlm_accuracy": 0.2345}, "curves": {}},
    "forward_backward": {"task": "forward_backward", "parameters": 999, "seconds": 30.0,
                         "final": {"lm_loss": 3.0, "lm_accuracy": 0.3, "backward_lm_loss": 3.5,
                                   "backward_lm_accuracy": 0.25}, "curves": {}},
    "shifted_lm_unmasked": {"task": "shifted_lm_unmasked", "parameters": 10, "seconds": 6.0,
                            "final": {"lm_loss": 0.1, "lm_accuracy": 0.99}, "curves": {},
                            "as_forward_lm": {"lm_loss": 7.25, "lm_accuracy": 0.0123}},
}


def test_the_pretraining_table_reads_each_objective_s_targets():
    lines = report.pretraining_table(RESULTS)
    assert lines[2] == "| bert_mlm | pretraining (MLM targets) | 1,234,567 | 1.5 min | 4.568 | 23.4% |"
    assert lines[3] == ("| forward_backward | forward_backward (LM targets) | 999 | 0.5 min | 3.000 (backward 3.500) "
                        "| 30.0% (backward 25.0%) |")


def test_the_best_rate_is_reported_with_its_rate():
    assert report.best_rate({"0.0001": {"accuracy": 0.4}, "0.001": {"accuracy": 0.61}}) == "61.0% (0.001)"
    assert report.best_rate(None) == "-"


def test_the_tagging_table_leaves_rows_a_model_cannot_fill():
    downstream = {"tagging_data": {"counts": {"train": {"sentences": 1200, "words": 3000, "ARG": 40, "DEF": 5}},
                                   "dictionary": {"f1": 0.5, "ARG_f1": 0.6, "DEF_f1": 0.1}},
                  "tagging": {"elmo": {"last": {"f1": 0.7}}, "bert_mlm": {"last": {"f1": 0.8},
                                                                         "sum_last_four": {"f1": 0.9}}}}
    lines = report.tagging_table(downstream, Settings(steps=30))
    assert "trained for 100 updates" in lines[0]
    assert "| train | 1,200 | 3,000 | 40 | 5 |" in lines
    assert "| last hidden | 70.0% | 80.0% |" in lines
    assert "| sum of last four hidden | - | 90.0% |" in lines


def test_the_report_says_how_it_was_made_and_adds_the_probe():
    downstream = {"finetuned": {}, "scratch": {}, "feature_based": {}, "feature_based_untrained": {}, "tagging": {}}
    seconds = {**report.part_seconds(RESULTS, downstream), "invocation": 300.0}
    assert seconds["pretraining"] == 126.0 and seconds["tagging"] == 0
    text = report.report(RESULTS, downstream, seconds, "python tools/reproduce.py --steps 20", Settings(steps=20))
    assert text.startswith("Command: `python tools/reproduce.py --steps 20`; it took 5.0 min on ")
    assert "Compute of each part, as first done: pretraining 2.1 min, fine-tuning 0.0 min" in text
    assert "Pretraining, each model: 20 updates of 16 rows x 128 tokens; vocabulary 2048." in text
    assert "held-out loss 7.250, accuracy 1.2%." in text
    assert "Downstream" not in text and "Samples" not in text
