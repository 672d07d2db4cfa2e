"""The runs behind `bertjax reproduce`: the configs built from `Settings`, the corpus, pretraining, and the
downstream uses of the pretrained models (learning curves against the same architecture from scratch, the
right-context `calls` task, the feature-layer table). The claims' verdicts are `bertjax.experiments.claims`',
the tables and plots `bertjax.experiments.report`'s.

Runs complete in the work directory are reused, and so are feature-based results computed with the same
settings (`cached`), so a rerun only redraws.
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
from bertjax.tasks.base import label_subset
from bertjax.tasks.pretraining import PretrainingTask
from bertjax.configs import common
from bertjax.experiments.settings import CURVE_TASKS, EXPERIMENTS, PROMPTS, TAGGING_LENGTH, TAGGING_ROWS, Settings


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


def finetune_steps(train_examples: int, settings: Settings) -> int:
    """The fine-tuning budget: `finetune_epochs` over the training labels, at least `min_finetune_steps` (less
    in a smoke run)."""
    steps = finetune.steps_for_epochs(train_examples, settings.finetune_epochs, settings.finetune_batch_size)
    return settings.scaled(max(steps, settings.min_finetune_steps))


def finetune_config(name: str, workdir: pathlib.Path, settings: Settings, pretrained: bool, rate: float, *,
                    task: str = "stdlib", train_examples: int = 0, seed: int = 0) -> config_dict.ConfigDict:
    """The same fine-tuning for every model: a built-in task (or the `calls` tagging task) on
    `train_examples` labels drawn by `seed` (0: all), AdamW at peak `rate`, warmup over 10%, linear decay,
    dropout as in pretraining, one evaluation at the end."""
    config = pretraining_config(name, workdir, settings, lock=False)
    config.seed = seed
    config.finetune.update(task=task, num_epochs=0.0, train_examples=train_examples)  # steps: `finetune_steps`
    config.data.max_seq_length = settings.finetune_seq_length
    if task == "calls":
        paths = docstring_tags.prepare(workdir / "calls", kind="calls")
        config.data.max_seq_length = TAGGING_LENGTH
        config.ner.update(train_file=str(paths["train"]), validation_file=str(paths["validation"]),
                          test_file=str(paths["test"]))
    config.train.update(global_batch_size=settings.finetune_batch_size, eval_batch_size=64, eval_every=0,
                        init_checkpoint=str(workdir / name) if pretrained else None)
    config.optim.update(learning_rate=rate, warmup_fraction=0.1)
    config.lock()
    return config


def _make_task(config):
    return PretrainingTask(config) if config.task == "pretraining" else causal_lm.LanguageModelTask(config)


def prepare(workdir: pathlib.Path, settings: Settings) -> dict:
    """The tokenizer and the prepared shards of `settings.corpus`, unless `workdir` has them; returns the
    data's metadata (with the corpus's size and fingerprint)."""
    model_path, data_dir = workdir / "tokenizer.model", workdir / "data"
    if not model_path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        sentences = (sentence for document in corpus.open_corpus(settings.corpus) for sentence in document)
        trained = tokenizer.train_sentencepiece(sentences, vocab_size=settings.vocab_size)
        with files.replacing(model_path) as partial:
            trained.save(partial)
    metadata_path = data_dir / "metadata.json"
    if not metadata_path.is_file() or json.loads(metadata_path.read_text()).get("source") != settings.corpus:
        shards.prepare(corpus.open_corpus(settings.corpus), model_path, data_dir, validation_fraction=0.02,
                       overwrite=True, source=settings.corpus)
    return json.loads(metadata_path.read_text())


def unigram_baseline(workdir: pathlib.Path) -> dict[str, float]:
    """What a model without context scores on the held-out tokens (specials aside): the accuracy of always
    guessing the training split's most frequent token, the cross entropy of its unigram distribution (add-one
    smoothed), that cross entropy's standard error, and the number of tokens."""
    data_dir = workdir / "data"
    special = tokenizer.load_tokenizer(str(workdir / "tokenizer.model")).special_ids
    counts = np.zeros(json.loads((data_dir / "metadata.json").read_text())["vocab_size"], np.int64)
    train_split = shards.DocumentSource(shards.split_paths(data_dir, "train"))
    for index in range(len(train_split)):
        counts += np.bincount(np.concatenate(train_split[index]), minlength=len(counts))
    counts[special] = 0
    log_probabilities = np.log((counts + 1) / (counts + 1).sum())
    validation = shards.DocumentSource(shards.split_paths(data_dir, "validation"))
    held_out = np.concatenate([np.concatenate(validation[index]) for index in range(len(validation))])
    held_out = held_out[~np.isin(held_out, special)]
    losses = -log_probabilities[held_out]
    return {"accuracy": float(np.mean(held_out == np.argmax(counts))), "loss": float(losses.mean()),
            "loss_standard_error": float(losses.std() / np.sqrt(len(losses))), "tokens": int(len(losses))}


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


def loss_curves(workdir: pathlib.Path, metric: str) -> dict[str, list[tuple[int, float]]]:
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
              "seconds": train_seconds(run_dir), "curves": loss_curves(run_dir, EXPERIMENTS[name][2])}
    if name == "causal_lm":
        result["samples"] = _samples(task, params)
    if name == "shifted_lm_unmasked":  # the same parameters, denied the view of the next token
        with config.unlocked():
            config.task = "causal_lm"
        result["as_forward_lm"] = _held_out(causal_lm.LanguageModelTask(config), params, config)
    return result


# --- downstream
def _backbone(name: str, workdir: pathlib.Path, settings: Settings, trained: bool):
    """(model, params): the feature-giving part of a pretrained model (or of its architecture, untrained)."""
    model_config = _make_task(pretraining_config(name, workdir, settings)).model_config
    model = transfer.backbone(EXPERIMENTS[name][0], model_config)
    ids = np.ones((1, 8), np.int32)

    def init():
        return nn.meta.unbox(model.init(jax.random.PRNGKey(0), ids, ids, ids)["params"])

    return model, (runs.load_params(workdir / name, jax.eval_shape(init)) if trained else init())


def finetune_run(name: str, workdir: pathlib.Path, settings: Settings, *, task: str, pretrained: bool,
                 rate: float, train_examples: int = 0, seed: int = 0) -> dict:
    """Fine-tune `name`'s pretrained model (or its architecture from scratch) on `task` with
    `train_examples` labels drawn by `seed`: final dev metrics, updates and time (a finished run is reused)."""
    config = finetune_config(name, workdir, settings, pretrained, rate, task=task, train_examples=train_examples,
                             seed=seed)
    objective = EXPERIMENTS[name][0]
    made = (transfer.TaggingTask(config, objective) if task == "calls"
            else transfer.PooledClassificationTask(config, objective))
    with config.unlocked():
        config.train.num_steps = finetune_steps(made.num_train_examples(), settings)
        config.train.update(log_every=max(config.train.num_steps // 5, 1), checkpoint_every=config.train.num_steps)
    run_dir = (workdir / "finetune" / task / f"labels_{train_examples or 'all'}" / f"lr_{rate:g}"
               / (name if pretrained else f"{name}_from_scratch") / f"seed_{seed}")
    results = finetune.run(config, run_dir, task=made)
    return {**results["final"], "steps": config.train.num_steps, "seconds": train_seconds(run_dir)}


def curve_baselines(task: str, settings: Settings) -> dict:
    """The bag-of-words baseline's dev accuracy at each curve point and seed (the same label draws as the
    models'), and the majority class's. A pair is represented by the words of each sentence and the words
    they share, so that overlap can count."""
    from sklearn.feature_extraction.text import CountVectorizer  # noqa: PLC0415 (a dependency; slow to import)
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from scipy import sparse  # noqa: PLC0415

    train, dev = glue.builtin_examples(task, "train"), glue.builtin_examples(task, "validation")
    vectorizer = CountVectorizer(binary=True, token_pattern=r"[A-Za-z_][A-Za-z0-9_]*").fit(
        [" ".join(example.texts) for example in train])

    def represent(examples):
        columns = [vectorizer.transform([example.texts[field] for example in examples])
                   for field in range(len(examples[0].texts))]
        return sparse.hstack(columns + ([columns[0].multiply(columns[1])] if len(columns) == 2 else [])).tocsr()

    dev_x, dev_y = represent(dev), np.array([example.label for example in dev])
    points = {}
    for size in settings.curve_sizes:
        points[str(size)] = []
        for seed in settings.seeds:
            chosen = label_subset(train, size, seed, task, [example.label for example in train])  # the models' draw
            labels = np.array([example.label for example in chosen])
            if len(set(labels)) < 2:  # too few labels to fit: the majority of the draw
                points[str(size)].append(float(np.mean(dev_y == labels[0])))
                continue
            model = LogisticRegression(max_iter=2000).fit(represent(chosen), labels)
            points[str(size)].append(float(np.mean(model.predict(dev_x) == dev_y)))
    majority = np.bincount([example.label for example in train]).argmax()
    return {"bag_of_words": points, "majority": float(np.mean(dev_y == majority)),
            "train_examples": len(train), "dev_examples": len(dev)}


def curves(workdir: pathlib.Path, settings: Settings) -> dict:
    """Per curve task: BERT's MLM model and its architecture from scratch fine-tuned at each peak rate on all
    labels (first seed), the best rate on dev kept for each; then every curve point at that rate for every
    seed: {"rates": {model: {rate: accuracy}}, "rate": {model: best}, "points": {model: {size: [accuracy per
    seed]}}, baselines}."""
    out = {}
    for task in CURVE_TASKS:
        entry = {"rates": {}, "rate": {}, "points": {}, "seconds": 0.0, **curve_baselines(task, settings)}
        for label, pretrained in (("pretrained", True), ("scratch", False)):
            grid = {rate: finetune_run("bert_mlm", workdir, settings, task=task, pretrained=pretrained, rate=rate,
                                       seed=settings.seeds[0]) for rate in settings.finetune_learning_rates}
            best = max(grid, key=lambda rate: grid[rate]["accuracy"])
            entry["rates"][label] = {f"{rate:g}": result["accuracy"] for rate, result in grid.items()}
            entry["rate"][label] = best
            entry["seconds"] += sum(result["seconds"] for result in grid.values())
            entry["points"][label] = {}
            for size in settings.curve_sizes:
                values = []
                for seed in settings.seeds:
                    if size == 0 and seed == settings.seeds[0]:
                        result = grid[best]
                    else:
                        result = finetune_run("bert_mlm", workdir, settings, task=task, pretrained=pretrained,
                                              rate=best, train_examples=size, seed=seed)
                        entry["seconds"] += result["seconds"]
                    values.append(result["accuracy"])
                entry["points"][label][str(size)] = values
        out[task] = entry
    return out


def _calls_task(workdir: pathlib.Path, settings: Settings) -> ner.NerTask:
    return ner.NerTask(finetune_config("bert_mlm", workdir, settings, False, settings.tagging_learning_rate,
                                       task="calls"))


def _elmo_features_f1(workdir: pathlib.Path, settings: Settings, task: ner.NerTask, seed: int) -> float:
    """Dev entity F1 of ELMo's use of its biLM: a BiLSTM tagger on the learned weighted sum of the frozen
    model's layers."""
    model, params = _backbone("elmo", workdir, settings, trained=True)
    return _tagging(model, params, task, settings.scaled(settings.tagger_steps), rows=("weighted_sum",),
                    seed=seed)["weighted_sum"]["f1"]


def calls(workdir: pathlib.Path, settings: Settings, names: list[str]) -> dict:
    """The right-context task: dev entity F1 per seed of BERT's MLM model, the left-to-right causal LM and
    BERT's architecture from scratch, each fine-tuned whole with a per-token classifier, and of ELMo's
    features under a BiLSTM tagger; the dictionary baseline; the data's size."""
    task = _calls_task(workdir, settings)
    runs_of = {"bert_mlm": ("bert_mlm", True), "causal_lm": ("causal_lm", True),
               "bert_mlm_from_scratch": ("bert_mlm", False)}
    out = {"f1": {}, "seconds": 0.0}
    for label, (name, pretrained) in runs_of.items():
        if name in names:
            results = [finetune_run(name, workdir, settings, task="calls", pretrained=pretrained,
                                    rate=settings.tagging_learning_rate, seed=seed) for seed in settings.seeds]
            out["f1"][label] = [result["f1"] for result in results]
            out["seconds"] += sum(result["seconds"] for result in results)
    if "elmo" in names:
        found = cached(workdir / "downstream" / "calls_elmo_features.json",
                       {"pretraining": pretraining_settings("elmo", settings), "seeds": list(settings.seeds),
                        "tagger_steps": settings.scaled(settings.tagger_steps)},
                       lambda: {"f1": [_elmo_features_f1(workdir, settings, task, seed) for seed in settings.seeds]})
        out["f1"]["elmo_features"] = found["f1"]
        out["seconds"] += found["seconds"]
    out.update(_tagging_data_summary(task, docstring_tags.CALL_TYPES))
    return out


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


def _tagging(model, params, task: ner.NerTask, steps: int, rows=TAGGING_ROWS, seed: int = 0) -> dict[str, dict]:
    """Dev entity F1 (overall and per type) of a BiLSTM tagger trained for `steps` on each layer combination
    of `rows` a frozen model's states allow, each hidden state standardised with the training sentences'
    statistics; with the number of gold dev entities."""
    (_, train_features), (dev_sentences, dev_features) = task.split("train"), task.split("validation")
    states = {name: transfer.layer_states(model, params, features["input_ids"], features["attention_mask"],
                                          pooled=False)
              for name, features in (("train", train_features), ("validation", dev_features))}
    statistics = transfer.standardize(states["train"], train_features["attention_mask"])
    transfer.standardize(states["validation"], statistics=statistics)
    gold = [list(sentence.tags) for sentence in dev_sentences]
    entities = sum(tag.startswith("B-") for tags in gold for tag in tags)
    results = {}
    for how in [how for how in tagging_combinations(states["train"].shape[0]) if how in rows]:
        tagger, tagger_params = ner.fit_feature_tagger(how, len(task.labels), states["train"], train_features,
                                                       steps=steps, seed=seed)
        tag_ids = ner.predict_feature_tags(tagger, tagger_params, states["validation"], dev_features)
        metrics = ner.entity_metrics(gold, ner.word_tags(tag_ids, dev_features, dev_sentences, task.labels))
        results[how] = {**{key: round(value, 4) for key, value in metrics.items() if key.endswith("f1")},
                        "entities": entities}
    return results


def _tagging_data_summary(task: ner.NerTask, types: tuple[str, ...] = docstring_tags.ENTITY_TYPES) -> dict:
    """Sizes and entity counts of a tagging data set, and the dictionary baseline's dev F1."""
    sentences = {split: task.split(split)[0] for split in ("train", "validation", "test")}
    counts = {split: docstring_tags.entity_counts([(s.words, s.tags) for s in found], types)
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
            "seq_length": settings.seq_length, "vocab_size": settings.vocab_size, "corpus": settings.corpus,
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
    """The learning curves, the calls task and the feature-layer table, each unless skipped."""
    skip = set(settings.skip)
    out = {}
    if "curves" not in skip and "bert_mlm" in names:
        out["curves"] = curves(workdir, settings)
    if "calls" not in skip:
        out["calls"] = calls(workdir, settings, names)
    if "tagging" not in skip:
        task = _tagging_task(workdir, settings)
        out["tagging_data"] = _tagging_data_summary(task)
        out["tagging"] = {}
        steps = settings.scaled(settings.tagger_steps)
        for name, trained in [*[(name, True) for name in settings.tagging_models if name in names],
                              ("bert_mlm", False)]:
            label = name if trained else f"{name}_untrained"
            cache_key = {"pretraining": pretraining_settings(name, settings), "length": TAGGING_LENGTH,
                         "tagger_steps": steps}
            out["tagging"][label] = cached(workdir / "downstream" / f"tagging_{label}.json", cache_key,
                                           lambda: _tagging(*_backbone(name, workdir, settings, trained), task, steps))
    return out
