"""The experiments' pure pieces: settings are checked when made, smoke runs shrink the later budgets, configs
come from `bertjax/configs/common.py`, cached results are reused only while their settings hold, the claims'
verdicts follow their stated rule, and the report's tables read the results they are given."""

import json

import pytest

from bertjax.experiments import claims, report, running, settings
from bertjax.experiments.settings import Settings


def test_settings_refuse_unknown_experiments_and_parts():
    with pytest.raises(ValueError, match=r"--only: unknown experiment\(s\) \['bert'\]"):
        Settings(experiments=("bert_mlm", "bert"))
    with pytest.raises(ValueError, match=r"--skip: unknown part\(s\) \['features2'\]; choose from curves"):
        Settings(skip=("features2",))
    with pytest.raises(ValueError, match="--corpus='text'"):
        Settings(corpus="text")
    with pytest.raises(ValueError, match="--seeds"):
        Settings(seeds=())
    assert Settings().experiments == settings.DEFAULT_EXPERIMENTS


def test_numbers_parse_and_name_the_flag_when_bad():
    assert settings.parse_numbers("finetune_learning_rates", ["1e-4", "3e-3"]) == (1e-4, 3e-3)
    assert settings.parse_numbers("seeds", ["1", "2"], int) == (1, 2)
    with pytest.raises(ValueError, match="--finetune_learning_rates"):
        settings.parse_numbers("finetune_learning_rates", ["1e-4", "fast"])
    with pytest.raises(ValueError, match="--curve_sizes=.*1,2,3"):
        settings.parse_numbers("curve_sizes", ["32", "1.5"], int)


def test_a_smoke_run_shrinks_the_later_budgets_in_proportion():
    assert Settings(steps=20).scaled(1000) == 10
    assert Settings(steps=settings.FULL_STEPS).scaled(1000) == 1000
    assert Settings(steps=4000).scaled(1000) == 1000  # a longer run does not lengthen them
    assert Settings(steps=1).scaled(10) == 1


def test_fine_tuning_takes_its_epochs_but_never_fewer_than_the_minimum_updates():
    full = Settings(finetune_epochs=3, min_finetune_steps=100, finetune_batch_size=32)
    assert running.finetune_steps(1573, full) == 148  # ceil(1573 * 3 / 32)
    assert running.finetune_steps(32, full) == 100  # 3 updates by epochs: the minimum instead
    assert running.finetune_steps(32, Settings(steps=200, min_finetune_steps=100)) == 10  # a smoke run: shrunk


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
    point = running.finetune_config("bert_mlm", tmp_path, settings, True, 1e-3, task="same_docstring",
                                    train_examples=128, seed=2)
    assert (point.finetune.task, point.finetune.train_examples, point.seed) == ("same_docstring", 128, 2)


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
    assert running.loss_curves(tmp_path, "lm_loss") == {"train/lm_loss": [(20, 3.0), (30, 2.0)]}


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


def test_a_point_over_seeds_is_its_mean_and_sample_standard_deviation():
    assert report.mean_sd([0.5, 0.6, 0.7]) == "60.0% ± 10.0%"
    assert report.mean_sd([0.25]) == "25.0% ± 0.0%"


def test_the_tagging_table_leaves_rows_a_model_cannot_fill():
    downstream = {"tagging_data": {"counts": {"train": {"sentences": 1200, "words": 3000, "ARG": 40, "DEF": 5}},
                                   "dictionary": {"f1": 0.5, "ARG_f1": 0.6, "DEF_f1": 0.1}},
                  "tagging": {"elmo": {"last": {"f1": 0.7}}, "bert_mlm": {"last": {"f1": 0.8},
                                                                         "sum_last_four": {"f1": 0.9}}}}
    lines = report.tagging_table(downstream, Settings(steps=200))
    assert "trained for 100 updates" in lines[0]
    assert "| train | 1,200 | 3,000 | 40 | 5 |" in lines
    assert "| last hidden | 70.0% | 80.0% |" in lines
    assert "| sum of last four hidden | - | 90.0% |" in lines


METADATA = {"source": "builtin:environment", "corpus": {"documents": 56829, "bytes": 36_124_719, "sha256": "c1b3" * 16},
            "splits": {"train": {"tokens": 9_000_000}, "validation": {"tokens": 180_000}}}
BASELINE = {"accuracy": 0.04, "loss": 6.5, "loss_standard_error": 0.004, "tokens": 180_000}


def test_the_report_says_how_it_was_made_and_adds_the_probe():
    seconds = {**report.part_seconds(RESULTS, {}), "invocation": 300.0}
    assert seconds["pretraining"] == 126.0 and seconds["feature-layer table"] == 0
    text = report.report(RESULTS, {}, [], METADATA, BASELINE, seconds, "python tools/reproduce.py --steps 20",
                         Settings(steps=20))
    assert text.startswith("Command: `python tools/reproduce.py --steps 20`; it took 5.0 min on ")
    assert "Compute of each part, as first done: pretraining 2.1 min, learning curves 0.0 min" in text
    assert ("Corpus `builtin:environment`: 56,829 documents, 36.1 MB of text (sha256 c1b3c1b3c1b3c1b3...), "
            "9,000,000 training and 180,000 held-out tokens.") in text
    assert "Each model: 20 updates of 16 rows x 128 tokens; vocabulary 2048." in text
    assert "scores 6.500 nats per held-out token, 4.0% accuracy" in text
    assert "held-out loss 7.250, accuracy 1.2%." in text
    assert "## Learning curves" not in text and "Samples" not in text


# --- the claims' verdicts ---------------------------------------------------------------------------------
def test_a_verdict_follows_two_standard_errors_of_the_difference():
    a = claims.Measure(0.80, 0.01)
    assert claims.verdict(a, claims.Measure(0.75, 0.01)) == claims.REPRODUCED  # 5 points > 2 * 1.41
    assert claims.verdict(a, claims.Measure(0.78, 0.01)) == claims.INCONCLUSIVE  # 2 points < 2.83
    assert claims.verdict(a, claims.Measure(0.85, 0.01)) == claims.NOT_REPRODUCED
    assert claims.difference(a, claims.Measure(0.7, 0.02)).standard_error == pytest.approx(0.05 ** 0.5 / 10)


def test_measures_of_seeds_and_of_proportions():
    seeds = claims.Measure.of_seeds([0.5, 0.6, 0.7])
    assert seeds.value == pytest.approx(0.6) and seeds.standard_error == pytest.approx(0.1 / 3 ** 0.5)
    assert claims.Measure.of_seeds([0.4]).standard_error == 0
    assert claims.Measure.of_proportion(0.5, 100).standard_error == pytest.approx(0.05)


def test_a_claim_of_several_comparisons_needs_them_all():
    reproduced, inconclusive, not_reproduced = claims.REPRODUCED, claims.INCONCLUSIVE, claims.NOT_REPRODUCED
    assert claims.all_of([reproduced, reproduced]) == reproduced
    assert claims.all_of([reproduced, inconclusive]) == inconclusive
    assert claims.all_of([inconclusive, not_reproduced, reproduced]) == not_reproduced


def test_the_claims_are_judged_from_the_numbers_given():
    results = {**RESULTS, "causal_lm": {"task": "causal_lm", "final": {"lm_loss": 4.0, "lm_accuracy": 0.25}}}
    downstream = {
        "calls": {"f1": {"bert_mlm": [0.80, 0.82, 0.81], "causal_lm": [0.50, 0.52, 0.51],
                         "elmo_features": [0.79, 0.83, 0.81]}},
        "curves": {"stdlib": {"points": {"pretrained": {"32": [0.40, 0.42, 0.41], "128": [0.6, 0.5, 0.7], "0": [0.9]},
                                         "scratch": {"32": [0.20, 0.22, 0.21], "128": [0.6, 0.55, 0.65], "0": [0.9]}}}},
        "tagging": {"bert_mlm": {"embeddings": {"f1": 0.40, "entities": 600}, "last": {"f1": 0.70, "entities": 600},
                                 "concat_last_four": {"f1": 0.72, "entities": 600},
                                 "weighted_sum": {"f1": 0.75, "entities": 600}}}}
    judged = claims.judge(results, downstream, BASELINE)
    verdicts, numbers = [claim.verdict for claim in judged], [claim.number for claim in judged]
    assert numbers == ["1", "2", "3", "4", "4", "5"]
    # 1: 99% against 25% of 180,000 tokens; 2: 4.0 nats against the unigram's 6.5
    assert verdicts[:2] == [claims.REPRODUCED, claims.REPRODUCED]
    # 3: far above the causal LM, level with ELMo's features: one comparison within noise
    assert verdicts[2] == claims.INCONCLUSIVE
    assert "MLM 81.0% ± 0.6% vs left-to-right LM fine-tuned 51.0% ± 0.6%: difference +30.0 points" in (
        judged[2].evidence)
    # 4: 32 labels clearly; 128 within the seeds' noise
    assert verdicts[3:5] == [claims.REPRODUCED, claims.INCONCLUSIVE]
    # 5: weighted sum 75% beats last 70% by 5 points (2 SE ~ 5.2 with 600 entities): inconclusive
    assert verdicts[5] == claims.INCONCLUSIVE and "weighted sum" in judged[5].evidence


def test_the_claims_table_states_the_rule():
    lines = report.claims_table([claims.Claim("4", "pretrained beats scratch", "a vs b", claims.REPRODUCED)])
    assert claims.RULE in lines[0]
    assert lines[-1] == "| 4 | pretrained beats scratch | a vs b | **reproduced** |"
