"""The runs behind `bertjax reproduce`: what is compared (the `EXPERIMENTS` table and its controls), the
settings every run shares (`Settings`), the configs built from them, pretraining, and the downstream uses of
each pretrained model (fine-tuned, feature-based, feature-layer tagging). The tables and plot are
`bertjax.experiments.report`'s.

Runs complete in the work directory are reused, and so are feature-based and tagging results computed with
the same settings (`cached`), so a rerun only redraws.
"""

import json
import pathlib
import time

import flax.linen as nn
import jax
import numpy as np
from ml_collections import config_dict

from bertjax import files, finetune, generate, runs, sharding, train
from bertjax.data import corpus, docstring_tags, shards, tokenizer
from bertjax.heads import BertForCausalLM
from bertjax.tasks import causal_lm, glue, ner, transfer
from bertjax.tasks.pretraining import PretrainingTask
from bertjax.configs import common
from bertjax.experiments.settings import CONTROL, EXPERIMENTS, PROMPTS, TAGGING_LENGTH, TAGGING_ROWS, Settings


# --- configs ------------------------------------------------------------------------------------------------
def pretraining_config(name: str, workdir: pathlib.Path, settings: Settings,
                       lock: bool = True) -> config_dict.ConfigDict:
    task, model, _ = EXPERIMENTS[name]
    config = common.get_config()
    config.task = task
    config.model.update(vocab_size=settings.vocab_size, max_position_embeddings=settings.seq_length, **model)
    config.data.update(tokenizer=str(workdir / "tokenizer.model"), prepared_dir=str(workdir / "data"),
                       max_seq_length=settings.seq_length, packing=True)
    steps = settings.steps
    config.train.update(num_steps=steps, global_batch_size=settings.batch_size, eval_batch_size=32,
                        log_every=max(steps // 30, 1), eval_every=max(steps // 6, 1), checkpoint_every=steps,
                        keep_checkpoints=1)
    config.optim.update(learning_rate=settings.learning_rate,
                        warmup_steps=max(round(steps * settings.warmup_fraction), 1))
    if lock:
        config.lock()
    return config


def _finetune_steps(train_examples: int, settings: Settings) -> int:
    """The fine-tuning budget: `finetune_epochs` over the train split (less in a smoke run)."""
    return settings.scaled(finetune.steps_for_epochs(train_examples, settings.finetune_epochs,
                                                     settings.finetune_batch_size))


def finetune_config(name: str, workdir: pathlib.Path, settings: Settings, pretrained: bool,
                    rate: float) -> config_dict.ConfigDict:
    """The same fine-tuning for every model: the stdlib task, AdamW at peak `rate`, warmup over 10%, linear
    decay, dropout as in pretraining, one evaluation at the end."""
    config = pretraining_config(name, workdir, settings, lock=False)
    config.finetune.update(task="stdlib", num_epochs=0.0)  # num_steps set below, from the epochs
    config.data.max_seq_length = settings.finetune_seq_length
    config.train.update(global_batch_size=settings.finetune_batch_size, eval_batch_size=64, eval_every=0,
                        init_checkpoint=str(workdir / name) if pretrained else None)
    config.optim.update(learning_rate=rate, warmup_fraction=0.1)
    config.lock()
    return config


def _make_task(config):
    return PretrainingTask(config) if config.task == "pretraining" else causal_lm.LanguageModelTask(config)


def prepare(workdir: pathlib.Path, settings: Settings) -> None:
    """The tokenizer and the prepared shards of the built-in corpus, unless `workdir` has them."""
    model_path, data_dir = workdir / "tokenizer.model", workdir / "data"
    if not model_path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        sentences = (sentence for document in corpus.read_builtin() for sentence in document)
        trained = tokenizer.train_sentencepiece(sentences, vocab_size=settings.vocab_size)
        with files.replacing(model_path) as partial:
            trained.save(partial)
    if not (data_dir / "metadata.json").is_file():
        shards.prepare(corpus.read_builtin(), model_path, data_dir, validation_fraction=0.02, overwrite=True,
                       source="builtin")


# --- pretraining --------------------------------------------------------------------------------------------
def _held_out(task, params, config) -> dict[str, float]:
    """A task's metrics over the validation split, on one device (as the pretraining runs were scored)."""
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
    metrics, _ = train.evaluate(task, train.compile_evaluation(task), params, mesh,
                                batch_size=config.train.eval_batch_size)
    return metrics


def _params(task, workdir: pathlib.Path):
    abstract = jax.eval_shape(lambda: task.init_params(jax.random.PRNGKey(0), task.example_batch(1)))
    return runs.load_params(workdir, abstract)


def _samples(task, params) -> list[tuple[str, str, str]]:
    """(prompt, greedy continuation, sampled continuation) from the causal LM."""
    tok = task.tokenizer
    model = BertForCausalLM(task.model.config)  # the task's model, called for decoding
    prompts = [[tok.cls_id, *ids] for ids in tok.encode_batch(PROMPTS)]
    common_args = dict(max_new_tokens=40, stop_ids=(tok.sep_id,))
    greedy = generate.generate(model, params, prompts, **common_args)
    sampled = generate.generate(model, params, prompts, sampling=generate.Sampling(0.8, 0, 0.95), seed=0,
                                **common_args)
    return [(prompt, tok.decode(a), tok.decode(b)) for prompt, a, b in zip(PROMPTS, greedy, sampled)]


def _records(workdir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def train_seconds(workdir: pathlib.Path) -> float:
    """A run's wall time (evaluations included), from the clock times of its logged training records; the
    first window, before any record, is counted at the run's average pace. Also right for a reused run."""
    train_records = [r for r in _records(workdir) if r["split"] == "train"]
    first, last = train_records[0], train_records[-1]
    if last["step"] == first["step"]:
        return 0.0
    return (last["time"] - first["time"]) * last["step"] / (last["step"] - first["step"])


def curves(workdir: pathlib.Path, metric: str) -> dict[str, list[tuple[int, float]]]:
    """The logged `metric` (and its backward direction's) by split: "train/lm_loss": [(step, value), ...]."""
    records = _records(workdir)
    found = {}
    for split in ("train", "eval"):
        for key in (metric, f"backward_{metric}"):
            points = [(r["step"], r[key]) for r in records if r["split"] == split and key in r]
            if points:
                found[f"{split}/{key}"] = points
    return found


def pretrain(name: str, workdir: pathlib.Path, settings: Settings) -> dict:
    """Pretrain `name` in `workdir / name` (or reuse the finished run): its final held-out metrics, size, run
    time and loss curves; the causal LM's samples, the unmasked shifted LM scored without sight of the future."""
    config = pretraining_config(name, workdir, settings)
    task = _make_task(config)
    run_dir = workdir / name
    final = train.train_and_evaluate(config, run_dir, task)
    params = _params(task, run_dir)
    result = {"task": config.task, "final": final, "parameters": train.count_parameters(params),
              "seconds": train_seconds(run_dir), "curves": curves(run_dir, EXPERIMENTS[name][2])}
    if name == "causal_lm":
        result["samples"] = _samples(task, params)
    if name == "shifted_lm_unmasked":  # the same parameters, denied the view of the next token
        with config.unlocked():
            config.task = "causal_lm"
        result["as_forward_lm"] = _held_out(causal_lm.LanguageModelTask(config), params, config)
    return result


# --- downstream -----------------------------------------------------------------------------------------------
def _backbone(name: str, workdir: pathlib.Path, settings: Settings, trained: bool):
    """(model, params): the feature-giving part of a pretrained model (or of its architecture, untrained)."""
    model_config = _make_task(pretraining_config(name, workdir, settings)).model_config
    model = transfer.backbone(EXPERIMENTS[name][0], model_config)
    ids = np.ones((1, 8), np.int32)

    def init():
        return nn.meta.unbox(model.init(jax.random.PRNGKey(0), ids, ids, ids)["params"])

    return model, (runs.load_params(workdir / name, jax.eval_shape(init)) if trained else init())


def _finetune(name: str, workdir: pathlib.Path, settings: Settings, pretrained: bool, rate: float) -> dict:
    """Fine-tune `name`'s pretrained model (or its architecture from scratch) on stdlib at peak `rate`: final
    dev metrics."""
    config = finetune_config(name, workdir, settings, pretrained, rate)
    task = transfer.PooledClassificationTask(config, EXPERIMENTS[name][0])
    config.train.num_steps = _finetune_steps(task.num_train_examples(), settings)
    config.train.update(log_every=max(config.train.num_steps // 10, 1), checkpoint_every=config.train.num_steps)
    run_dir = workdir / "finetune" / f"lr_{rate:g}" / (name if pretrained else f"{name}_from_scratch")
    results = finetune.run(config, run_dir, task=task)
    return {**results["final"], "steps": config.train.num_steps, "seconds": train_seconds(run_dir)}


def _classification_data(workdir: pathlib.Path,
                         settings: Settings) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The stdlib task's train and dev splits as the fine-tuning runs read them: (ids, mask, labels)."""
    config = finetune_config("bert_mlm", workdir, settings, False, settings.finetune_learning_rates[0])
    task = transfer.PooledClassificationTask(config, "pretraining")
    splits = {}
    for split in ("train", "validation"):
        batches = list(task.dataset(split, batch_size=64, seed=0, train=False))
        keep = np.concatenate([batch["example_weight"] for batch in batches]) > 0
        splits[split] = tuple(np.concatenate([batch[key] for batch in batches])[keep]
                              for key in ("input_ids", "attention_mask", "label"))
    return splits


def _feature_based(model, params, data) -> dict:
    """Dev accuracy of the scalar-mix classifier over the frozen model's mean-pooled layers."""
    layers = {split: transfer.layer_states(model, params, ids, mask, pooled=True)
              for split, (ids, mask, _) in data.items()}
    predict, weights, gamma = transfer.fit_mix_classifier(layers["train"], data["train"][2],
                                                          len(glue.STDLIB_PACKAGES))
    accuracy = float(np.mean(predict(layers["validation"]) == data["validation"][2]))
    return {"accuracy": accuracy, "mix_weights": weights.round(3).tolist(), "gamma": round(gamma, 3)}


def _tagging_task(workdir: pathlib.Path, settings: Settings) -> ner.NerTask:
    paths = docstring_tags.prepare(workdir / "tagging")
    config = pretraining_config("bert_mlm", workdir, settings, lock=False)
    config.data.max_seq_length = TAGGING_LENGTH
    config.ner.update(train_file=str(paths["train"]), validation_file=str(paths["validation"]),
                      test_file=str(paths["test"]))
    return ner.NerTask(config)


def tagging_combinations(hidden_states: int) -> list[str]:
    """The table's rows that a model with `hidden_states` (embeddings + layers) can fill."""
    layers_needed = {"second_to_last": 2, "sum_last_four": 4, "concat_last_four": 4}
    return [how for how in TAGGING_ROWS if hidden_states - 1 >= layers_needed.get(how, 1)]


def _tagging(model, params, task: ner.NerTask, steps: int) -> dict[str, dict[str, float]]:
    """Dev entity F1 (overall and per type) of a BiLSTM tagger trained for `steps` on each layer combination
    of a frozen model's states, each hidden state standardised with the training sentences' statistics."""
    (_, train_features), (dev_sentences, dev_features) = task.split("train"), task.split("validation")
    states = {name: transfer.layer_states(model, params, features["input_ids"], features["attention_mask"],
                                          pooled=False)
              for name, features in (("train", train_features), ("validation", dev_features))}
    statistics = transfer.standardize(states["train"], train_features["attention_mask"])
    transfer.standardize(states["validation"], statistics=statistics)
    gold = [list(sentence.tags) for sentence in dev_sentences]
    results = {}
    for how in tagging_combinations(states["train"].shape[0]):
        tagger, tagger_params = ner.fit_feature_tagger(how, len(task.labels), states["train"], train_features,
                                                       steps=steps)
        tag_ids = ner.predict_feature_tags(tagger, tagger_params, states["validation"], dev_features)
        metrics = ner.entity_metrics(gold, ner.word_tags(tag_ids, dev_features, dev_sentences, task.labels))
        results[how] = {key: round(value, 4) for key, value in metrics.items() if key.endswith("f1")}
    return results


def _tagging_data_summary(task: ner.NerTask) -> dict:
    """Sizes and entity counts of the tagging data, and the dictionary baseline's dev F1."""
    sentences = {split: task.split(split)[0] for split in ("train", "validation", "test")}
    counts = {split: docstring_tags.entity_counts([(s.words, s.tags) for s in found])
              for split, found in sentences.items()}
    for split, found in sentences.items():
        counts[split]["sentences"] = len(found)
    dictionary = ner.entity_metrics([list(s.tags) for s in sentences["validation"]],
                                    ner.dictionary_tags(sentences["train"], sentences["validation"]))
    return {"counts": counts, "dictionary": {key: round(value, 4) for key, value in dictionary.items()
                                             if key.endswith("f1")}}


def pretraining_settings(name: str, settings: Settings) -> dict:
    """What a cached downstream result depends on besides its own settings: the pretrained model."""
    return {"model": EXPERIMENTS[name][1], "steps": settings.steps, "batch_size": settings.batch_size,
            "seq_length": settings.seq_length, "vocab_size": settings.vocab_size,
            "learning_rate": settings.learning_rate, "warmup_fraction": settings.warmup_fraction}


def cached(path: pathlib.Path, settings: dict, compute) -> dict:
    """`compute()`'s result, kept in `path` with the settings it was computed with; reused while they hold."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored["settings"] == settings:
            return stored["result"]
    start = time.perf_counter()
    result = {**compute(), "seconds": time.perf_counter() - start}
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, {"settings": settings, "result": result})
    return result


def downstream(names: list[str], workdir: pathlib.Path, settings: Settings) -> dict:
    """Fine-tuned (per learning rate), feature-based and tagging results per model, and their controls."""
    skip = set(settings.skip)
    out = {"finetuned": {}, "scratch": {}, "feature_based": {}, "feature_based_untrained": {}, "tagging": {}}
    controls = list(dict.fromkeys(CONTROL[name] for name in names))
    rates = settings.finetune_learning_rates
    if "finetune" not in skip:
        for name in names:
            out["finetuned"][name] = {f"{rate:g}": _finetune(name, workdir, settings, True, rate) for rate in rates}
        if "scratch" not in skip:
            for control in controls:
                out["scratch"][control] = {f"{rate:g}": _finetune(control, workdir, settings, False, rate)
                                           for rate in rates}
    if "features" not in skip:
        data = _classification_data(workdir, settings)
        for name, trained in [*[(name, True) for name in names], *[(control, False) for control in controls]]:
            key = "feature_based" if trained else "feature_based_untrained"
            cache_key = {"pretraining": pretraining_settings(name, settings), "length": settings.finetune_seq_length}
            out[key][name] = cached(workdir / "downstream" / f"{key}_{name}.json", cache_key,
                                    lambda: _feature_based(*_backbone(name, workdir, settings, trained), data))
    if "tagging" not in skip:
        task = _tagging_task(workdir, settings)
        out["tagging_data"] = _tagging_data_summary(task)
        steps = settings.scaled(settings.tagger_steps)
        for name, trained in [*[(name, True) for name in settings.tagging_models if name in names],
                              ("bert_mlm", False)]:
            label = name if trained else f"{name}_untrained"
            cache_key = {"pretraining": pretraining_settings(name, settings), "length": TAGGING_LENGTH,
                         "tagger_steps": steps}
            out["tagging"][label] = cached(workdir / "downstream" / f"tagging_{label}.json", cache_key,
                                           lambda: _tagging(*_backbone(name, workdir, settings, trained), task, steps))
    return out
