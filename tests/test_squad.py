"""SQuAD: reading, windows with character offsets, post-processing, the official metrics, and a tiny
fine-tuning run end to end on files in the official format."""

import json
import pathlib

import numpy as np
import pytest

from bertjax import finetune
from bertjax.data import tokenizer
from bertjax.tasks import squad
from bertjax.configs import squad as squad_config

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
FILES = {"v1.1": (FIXTURES / "squad-train-v1.1.json", FIXTURES / "squad-dev-v1.1.json"),
         "v2.0": (FIXTURES / "squad-train-v2.0.json", FIXTURES / "squad-dev-v2.0.json")}


def write_squad(path, paragraphs):
    """paragraphs: [(context, [(qid, question, [(text, start)] or None for unanswerable)])]."""
    data = [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": qid, "question": question, "is_impossible": answers is None,
         "answers": [{"text": text, "answer_start": start} for text, start in answers or []]}
        for qid, question, answers in qas]} for context, qas in paragraphs]}]
    path.write_text(json.dumps({"version": "v2.0", "data": data}), encoding="utf-8")
    return path


# --- reading and features -----------------------------------------------------------------------------------
def test_read_squad_fixtures_and_a_misplaced_answer(tmp_path):
    examples = squad.read_squad(FILES["v2.0"][1])
    assert len(examples) == 8 * 6
    assert sum(example.is_impossible for example in examples) == 16
    assert all(not example.answers for example in examples if example.is_impossible)
    bad = write_squad(tmp_path / "bad.json", [("Paris is big.", [("x1", "Which?", [("Paris", 3)])])])
    with pytest.raises(ValueError, match=r"bad.json: article 0, paragraph 0, question x1: answer 'Paris' is not at answer_start 3"):
        squad.read_squad(bad)
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a SQuAD JSON file"):
        squad.read_squad(tmp_path / "other.json")


def gold_recovered(examples, features):
    """For every answerable example: is its first answer recovered exactly by some window, and do all windows
    that label a span recover it exactly?"""
    found = set()
    for row in range(len(features["input_ids"])):
        start, end = features["start_position"][row], features["end_position"][row]
        if start == 0:
            continue
        example = examples[features["feature_example"][row]]
        offsets = features["offsets"][row]
        assert example.context[offsets[start, 0]:offsets[end, 1]] == example.answers[0][0]
        found.add(example.qid)
    return found


@pytest.mark.parametrize("version", ["v1.1", "v2.0"])
def test_windows_recover_every_gold_answer_exactly(sp_tokenizer, version):
    for path in FILES[version]:
        examples = squad.read_squad(path)
        # Short windows and a short stride: most contexts need several windows, answers cross their edges.
        features = squad.make_features(examples, sp_tokenizer, max_seq_length=40, doc_stride=7, max_query_length=12)
        assert np.bincount(features["feature_example"]).min() >= 2
        answerable = {example.qid for example in examples if example.answers}
        assert gold_recovered(examples, features) == answerable


def test_windows_recover_gold_answers_with_a_wordpiece_vocabulary(tmp_path):
    """An HF-style uncased WordPiece vocabulary (accents stripped on the way in): the offsets still point into
    the original text, so answers come back with their accents and spacing."""
    examples = squad.read_squad(FILES["v2.0"][0])
    characters = sorted({char for example in examples for char in example.context.lower() if not char.isspace()}
                        | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    words = sorted({word.strip(".,?'").lower() for example in examples[:40] for word in example.context.split()})
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters, *("##" + char for char in characters)]
    pieces += [word for word in words if word and word not in pieces]
    (tmp_path / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    wordpiece = tokenizer.load_tokenizer(tmp_path / "vocab.txt")
    features = squad.make_features(examples, wordpiece, max_seq_length=48, doc_stride=8, max_query_length=12)
    assert gold_recovered(examples, features) == {example.qid for example in examples if example.answers}


def test_multibyte_characters_whitespace_quirks_and_window_boundaries(sp_tokenizer, tmp_path):
    context = ("Le  café\tcrème coûte 5 € à Zürich\n\nsince 1862. The\u00a0Old Pier of 東京駅 opened  in"
               " spring, said Zoë Müller-Řezníková (an engineer).")
    answers = ["café\tcrème", "5 €", "Zürich", "1862", "The\u00a0Old Pier", "東京駅", "Zoë Müller",
               "engineer", "spring"]
    qas = [(f"q{index}", "What is it?", [(text, context.index(text))]) for index, text in enumerate(answers)]
    examples = squad.read_squad(write_squad(tmp_path / "quirks.json", [(context, qas)]))
    for max_seq_length, doc_stride in ((128, 128), (26, 5), (22, 3)):
        features = squad.make_features(examples, sp_tokenizer, max_seq_length=max_seq_length,
                                       doc_stride=doc_stride, max_query_length=8)
        assert gold_recovered(examples, features) == {f"q{index}" for index in range(len(answers))}
    # In short windows some window holds only part of an answer: it points at [CLS] instead.
    features = squad.make_features(examples, sp_tokenizer, max_seq_length=22, doc_stride=3, max_query_length=8)
    context_ids, spans = sp_tokenizer.encode_with_offsets([context], split_punctuation=True)[0]
    first, last = squad.answer_token_span(np.asarray(spans), context.index(answers[6]),
                                          context.index(answers[6]) + len(answers[6]))
    window_length = 22 - len(sp_tokenizer.encode("What is it?")[:8]) - 3
    starts = squad.window_starts(len(context_ids), window_length, 3)
    rows_of_example = np.flatnonzero(features["feature_example"] == 6)
    assert len(rows_of_example) == len(starts)
    straddled = 0
    for row, start in zip(rows_of_example, starts):
        holds_first, holds_last = start <= first < start + window_length, start <= last < start + window_length
        if holds_first != holds_last:
            straddled += 1
            assert features["start_position"][row] == features["end_position"][row] == 0
        elif holds_first:
            assert features["start_position"][row] > 0
    assert straddled >= 1


def test_max_context_gives_each_token_to_exactly_one_window(sp_tokenizer):
    examples = squad.read_squad(FILES["v1.1"][1])
    features = squad.make_features(examples, sp_tokenizer, max_seq_length=32, doc_stride=6, max_query_length=10)
    for index, example in enumerate(examples[:6]):
        num_tokens = len(sp_tokenizer.encode_with_offsets([example.context], split_punctuation=True)[0][0])
        window_length = 32 - len(sp_tokenizer.encode(example.question)[:10]) - 3
        owned = []
        rows_of_example = np.flatnonzero(features["feature_example"] == index)
        starts = squad.window_starts(num_tokens, window_length, 6)
        assert len(rows_of_example) == len(starts) >= 3
        for row, start in zip(rows_of_example, starts):
            context_start = int(np.argmax(features["segment_ids"][row]))
            owned.extend(start + np.flatnonzero(features["max_context"][row]) - context_start)
        assert sorted(owned) == list(range(num_tokens))


def test_max_context_rule_by_hand():
    # Windows [0, 4) and [2, 6): token 2 has context (2 left, 1 right) in the first, (0, 3) in the second.
    assert squad.max_context_windows([0, 2], 4, 6).tolist() == [0, 0, 0, 1, 1, 1]
    # A shorter last window [4, 6) scores by its own length: token 5 has 0 + 0.02 there, 0 + 0.04 in [2, 6).
    assert squad.max_context_windows([0, 2, 4], 4, 6).tolist() == [0, 0, 0, 1, 1, 1]
    assert squad.max_context_windows([0, 3], 4, 7).tolist() == [0, 0, 0, 0, 1, 1, 1]  # token 3 ties: the first wins


# --- the official metrics -----------------------------------------------------------------------------------
def test_exact_match_and_f1_follow_the_official_definition():
    assert squad.normalize_answer("  The Cat's  hat!  ") == "cats hat"
    assert squad.exact_match("the Eiffel-Tower.", "Eiffel Tower") == 0.0  # the hyphen is removed, not a space
    assert squad.exact_match("An apple", "apple") == 1.0
    # "cat sat on mat" vs "cat on mat": 3 common, P 3/4, R 1, F1 2PR/(P+R) = 6/7.
    assert squad.f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # Repeated tokens count by multiplicity: x x y / x y y share x and y: P = R = 2/3.
    assert squad.f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    assert squad.f1_score("", "") == 1.0 and squad.f1_score("a", "") == 1.0  # "a" normalises to nothing
    assert squad.f1_score("", "cat") == 0.0 and squad.f1_score("dog", "cat") == 0.0


def test_metrics_take_the_max_over_gold_answers_and_split_has_and_no_answer():
    examples = [squad.Example("a", "?", "c", (("the Polar Trust", 0), ("Polar Trust Fund", 0))),
                squad.Example("b", "?", "c", (("red car", 0),)),
                squad.Example("c", "?", "c", (), True),
                squad.Example("d", "?", "c", (), True)]
    predictions = {"a": "Polar Trust", "b": "car", "c": "", "d": "something"}
    metrics = squad.squad_metrics(examples, predictions)
    # a: EM 1 (first gold), F1 1; b: EM 0, F1 = 2*(1)*(1/2)/(1.5) = 2/3; c: 1, 1; d: 0, 0.
    assert metrics["exact"] == pytest.approx(100 * 2 / 4)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1) / 4)
    assert metrics["HasAns_exact"] == pytest.approx(50.0) and metrics["HasAns_f1"] == pytest.approx(100 * 5 / 6)
    assert metrics["NoAns_exact"] == metrics["NoAns_f1"] == pytest.approx(50.0)
    assert metrics["HasAns_total"] == metrics["NoAns_total"] == 2


def test_best_null_threshold_search_by_hand():
    examples = [squad.Example("q1", "?", "c", (("right", 0),)), squad.Example("q2", "?", "c", (("right", 0),)),
                squad.Example("q3", "?", "c", (), True), squad.Example("q4", "?", "c", (), True)]
    answers = {"q1": "right", "q2": "wrong", "q3": "x", "q4": "y"}
    null_odds = {"q1": -2.0, "q2": 1.0, "q3": 0.5, "q4": 3.0}
    metrics = squad.squad_metrics(examples, answers, null_odds, answers)
    # Predict null where odds > t. t = -2: q1 answered (right), q2 q3 q4 null (wrong, right, right) = 3/4.
    # t = 0.5: q3 answered -> 2/4; t = 1: 2/4; t = 3: 1/4; below -2: all null = 2/4.
    assert metrics["best_exact"] == pytest.approx(75.0) and metrics["best_exact_thresh"] == -2.0
    assert metrics["best_f1"] == pytest.approx(75.0) and metrics["best_f1_thresh"] == -2.0


def test_na_prob_thresh_as_the_official_script_by_hand():
    """The v2.0 script's --na-prob-thresh (default 1.0): a question whose null odds (--na-prob-file) exceed it
    scores as predicted null, right exactly when it has no answer."""
    examples = [squad.Example("q1", "?", "c", (("right", 0),)), squad.Example("q2", "?", "c", (("right", 0),)),
                squad.Example("q3", "?", "c", (), True), squad.Example("q4", "?", "c", (), True)]
    answers = {"q1": "right", "q2": "right answer", "q3": "x", "q4": "y"}
    null_odds = {"q1": -1.0, "q2": 1.5, "q3": 2.0, "q4": 1.0}
    # Default 1.0: q2 (1.5) and q3 (2.0) count as null; q4 (1.0, not above) keeps "y".
    # exact: q1 1, q2 0, q3 1, q4 0 = 2/4; F1 the same (q2 null scores 0, not its 2/3).
    metrics = squad.squad_metrics(examples, answers, null_odds, answers)
    assert metrics["exact"] == metrics["f1"] == pytest.approx(50.0)
    assert metrics["HasAns_exact"] == pytest.approx(50.0) and metrics["NoAns_exact"] == pytest.approx(50.0)
    # 0.5: q4 (1.0) is null too: 3/4.
    metrics = squad.squad_metrics(examples, answers, null_odds, answers, na_prob_thresh=0.5)
    assert metrics["exact"] == metrics["f1"] == pytest.approx(75.0) and metrics["NoAns_exact"] == 100.0
    # 10: nothing is null: q1 1, q2 F1 2/3 (EM 0), q3 0, q4 0; as without null odds.
    metrics = squad.squad_metrics(examples, answers, null_odds, answers, na_prob_thresh=10.0)
    assert metrics["exact"] == pytest.approx(25.0) and metrics["f1"] == pytest.approx(100 * (1 + 2 / 3) / 4)
    plain = squad.squad_metrics(examples, answers)
    assert (plain["exact"], plain["f1"]) == (metrics["exact"], metrics["f1"])
    assert squad_config.get_config("v2").squad.na_prob_thresh == 1.0


# --- post-processing ----------------------------------------------------------------------------------------
def hand_features():
    """One example, context "alpha beta gamma", two windows of [CLS] q [SEP] ... [SEP] (L = 6)."""
    example = squad.Example("q", "?", "alpha beta gamma", (("beta", 6),))
    offsets = np.full((2, 6, 2), -1, np.int32)
    offsets[0, 3:5] = [[0, 5], [6, 10]]  # window 1: alpha beta
    offsets[1, 3:5] = [[6, 10], [11, 16]]  # window 2: beta gamma
    max_context = np.zeros((2, 6), bool)
    max_context[0, 3:5] = [True, True]
    max_context[1, 4] = True  # beta belongs to window 1
    return [example], {"offsets": offsets, "max_context": max_context, "feature_example": np.zeros(2, np.int32)}


def test_postprocess_spans_across_windows_max_length_and_null():
    examples, features = hand_features()
    start, end = np.full((2, 6), -5.0), np.full((2, 6), -5.0)
    start[1, 4], end[1, 4] = 3.0, 3.0  # "gamma" in window 2: score 6
    start[0, 3], end[0, 4] = 2.0, 2.0  # "alpha beta" in window 1: score 4
    start[1, 3] = 9.0  # "beta" starting in window 2, where it lacks max context: not a candidate
    start[:, 0], end[:, 0] = [1.0, 4.0], [1.0, 4.0]  # null = min over windows = 2
    predictions, null_odds, best, n_best = squad.postprocess(examples, features, start, end, n_best_size=3,
                                                             version_2=True)
    assert best["q"] == "gamma" and [c.text for c in n_best["q"]][:2] == ["gamma", "alpha beta"]
    assert null_odds["q"] == pytest.approx(2.0 - 6.0) and predictions["q"] == "gamma"
    predictions, *_ = squad.postprocess(examples, features, start, end, version_2=True,
                                        null_score_diff_threshold=-5.0)
    assert predictions["q"] == ""  # -4 > -5: null
    predictions, _, best, _ = squad.postprocess(examples, features, start, end, max_answer_length=1)
    assert best["q"] == "gamma"
    start[1, 4] = -9.0  # now "alpha beta" (two tokens) is the best, but max_answer_length=1 excludes it
    predictions, _, best, n_best = squad.postprocess(examples, features, start, end, max_answer_length=1)
    assert "alpha beta" not in [c.text for c in n_best["q"]]


def test_postprocess_never_crashes_when_every_candidate_is_null():
    examples, features = hand_features()
    start, end = np.zeros((2, 6)), np.zeros((2, 6))
    start[:, 4] = 9.0  # the best start is the last context token ...
    end[:, 0] = 9.0  # ... and the best end is [CLS], outside the context: with n_best 1 no span is valid
    for version_2 in (False, True):
        predictions, null_odds, _, n_best = squad.postprocess(examples, features, start, end, n_best_size=1,
                                                              version_2=version_2)
        assert predictions == {"q": ""} and n_best["q"] == []
        if version_2:
            assert null_odds["q"] == float("inf")
    metrics = squad.squad_metrics(examples, {"q": ""}, {"q": float("inf")}, {"q": ""})
    assert metrics["exact"] == 0.0 and metrics["best_f1"] == 0.0


# --- the task -----------------------------------------------------------------------------------------------
def tiny_config(sp_tokenizer_path, version):
    config = squad_config.get_config("v2" if version == "v2.0" else "v1")
    config.model.update(variant="tiny", vocab_size=4000, max_position_embeddings=96, hidden_dropout=0.0,
                        attention_dropout=0.0)
    config.data.update(tokenizer=str(sp_tokenizer_path), max_seq_length=96)
    config.squad.update(train_file=str(FILES[version][0]), validation_file=str(FILES[version][1]), doc_stride=32,
                        max_query_length=24)
    config.optim.update(learning_rate=5e-3, warmup_fraction=0.1)
    config.finetune.num_epochs = 0.0  # train.num_steps
    config.train.update(num_steps=100, global_batch_size=16, eval_batch_size=24, log_every=25, checkpoint_every=0)
    return config


@pytest.mark.parametrize("version", ["v1.1", "v2.0"])
def test_oracle_logits_score_100_and_evaluation_batches_cover_every_feature_once(sp_tokenizer_path, version):
    task = squad.SquadTask(tiny_config(sp_tokenizer_path, version))
    examples, features = task.split("validation")
    seen = []
    for process in range(2):  # two processes' shares of each global batch
        for batch in task.dataset("validation", batch_size=5, seed=0, train=False, process_index=process,
                                  process_count=2):
            assert batch["input_ids"].shape == (5, 96)
            seen.extend(batch["example_index"][batch["example_weight"] > 0])
    assert sorted(seen) == list(range(len(features["input_ids"])))
    # Logits that point at the labels: every answer (and every null) is found.
    positions = np.arange(96)
    oracle = {name: np.where(positions == features[f"{name}_position"][:, None], 10.0, -10.0)
              for name in ("start", "end")}
    metrics = task.evaluate({"start_logits": oracle["start"], "end_logits": oracle["end"]}, "validation")
    assert metrics["exact"] == metrics["f1"] == 100.0
    if version == "v2.0":
        assert metrics["HasAns_exact"] == metrics["NoAns_exact"] == 100.0 and metrics["best_f1"] == 100.0


@pytest.mark.slow
def test_fine_tune_tiny_end_to_end(sp_tokenizer_path, tmp_path):
    """tools/finetune.py's run on v2.0 files (spans, nulls, the threshold search), from a random tiny encoder."""
    config = tiny_config(sp_tokenizer_path, "v2.0")
    results = finetune.run(config, tmp_path / "run", predict=True)
    metrics = results["best"]["metrics"]
    assert {"exact", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"} <= set(metrics)
    assert results["predictions"] == [str(tmp_path / "run" / "predictions" / name)
                                      for name in ("predictions.json", "nbest_predictions.json", "null_odds.json")]
    examples = squad.read_squad(FILES["v2.0"][1])
    answers = json.loads((tmp_path / "run" / "predictions" / "predictions.json").read_text(encoding="utf-8"))
    null_odds = json.loads((tmp_path / "run" / "predictions" / "null_odds.json").read_text(encoding="utf-8"))
    assert set(answers) == set(null_odds) == {example.qid for example in examples}
    assert all(isinstance(text, str) for text in answers.values())
    for qid, text in answers.items():
        assert (text == "") == (null_odds[qid] > config.squad.null_score_diff_threshold)
    # The files alone give the run's numbers, as the official script would read them.
    assert squad.squad_metrics(examples, answers)["f1"] == pytest.approx(metrics["f1"])

    # 100 steps from random weights: on the questions it trained on, the best threshold beats predicting null
    # for every question (which scores the share of unanswerable questions).
    task = finetune.make_task(config)
    finetune.predict_and_write(config, task, tmp_path / "run", tmp_path / "train_predictions", splits=["train"])
    train_examples = task.split("train")[0]
    trained = squad.squad_metrics(
        train_examples, json.loads((tmp_path / "train_predictions" / "predictions.json").read_text()),
        json.loads((tmp_path / "train_predictions" / "null_odds.json").read_text()),
        {qid: candidates[0]["text"] if candidates else "" for qid, candidates in json.loads(
            (tmp_path / "train_predictions" / "nbest_predictions.json").read_text()).items()})
    all_null = 100 * np.mean([not example.answers for example in train_examples])
    assert trained["best_f1"] > all_null + 5, trained


def test_rerunning_a_finished_run_with_another_null_threshold_re_evaluates(sp_tokenizer_path, tmp_path):
    """The same command again with only an evaluation setting changed: the run is found complete, no
    checkpoint is written again, and the last step is evaluated with the new threshold (the best record of
    that step too: the same parameters)."""
    config = tiny_config(sp_tokenizer_path, "v2.0")
    config.train.update(num_steps=3, eval_batch_size=48)
    config.squad.update(null_score_diff_threshold=1e6, na_prob_thresh=1e6)  # every question answered
    first = finetune.run(config, tmp_path / "run")
    assert first["final"]["NoAns_exact"] == 0.0
    written = (tmp_path / "run" / "checkpoints" / "3").stat().st_mtime_ns
    config = tiny_config(sp_tokenizer_path, "v2.0")
    config.train.update(num_steps=3, eval_batch_size=48)
    config.squad.null_score_diff_threshold = -1e6  # every question null
    second = finetune.run(config, tmp_path / "run")
    assert second["final"]["NoAns_exact"] == 100.0 and second["final"]["HasAns_exact"] == 0.0
    assert second["final"]["exact"] == pytest.approx(100 * 16 / 48)
    assert second["best"]["step"] == 3 and second["best"]["metrics"] == second["final"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["final"] == second["final"]
    assert sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir()) == ["3"]
    assert (tmp_path / "run" / "checkpoints" / "3").stat().st_mtime_ns == written


@pytest.mark.parametrize("edit, message", [
    (lambda data: data["data"][0]["paragraphs"][0]["qas"][0].pop("question"),
     r"article 0, paragraph 0, question q0: expected a field 'question' holding a str; found none"),
    (lambda data: data["data"][0]["paragraphs"][0].pop("context"),
     r"article 0, paragraph 0: expected a field 'context' holding a str"),
    (lambda data: data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0].update(answer_start="four"),
     r"question q0: answer_start 'four' is not a character offset"),
    (lambda data: data.update(data={"title": "x"}), r'expected \{"data": \[articles ...\]\} at the top'),
])
def test_a_malformed_squad_file_is_named_with_where(tmp_path, edit, message):
    data = {"data": [{"title": "t", "paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "q0", "question": "Which?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as raised:
        squad.read_squad(path)
    assert str(raised.value).startswith(f"{path}")


def test_squad_v1_training_refuses_a_question_without_an_answer(tmp_path):
    path = write_squad(tmp_path / "train.json", [("Paris is big.", [("x1", "Which?", [])])])
    assert squad.read_squad(path)[0].answers == ()  # a dev question may list none
    with pytest.raises(ValueError, match="question x1: an answerable question with no answer"):
        squad.read_squad(path, answers_required=True)
