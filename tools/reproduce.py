"""The experiments behind BERT's masked objective, on the built-in corpus at a small, equal budget.

    python tools/reproduce.py --workdir runs/experiments --output_dir docs/experiments

Pretrains, each for the same number of updates of the same batch of rows (same tokens seen): BERT (masked LM
+ next-sentence prediction), a forward (GPT-style) causal LM, the unmasked shifted LM (predict t+1 with full
bidirectional attention), two separate forward and backward causal transformers, and ELMo (a two-layer biLSTM
LM), with parameter counts kept comparable; the transformers have four layers, so that "the last four" exist.
Then uses them downstream (`bertjax.tasks.transfer`), every model pooled alike (the mean of a layer over real
tokens):

- fine-tuned: each pretrained model whole, plus a linear classifier on its mean-pooled top layer, trained on
  the `stdlib` task's train split (which package a docstring comes from) and scored on its dev split, the
  same budget for each, at each of a few peak rates (the best on dev reported, as in BERT's paper, so that no
  model is judged at a rate chosen for another); each architecture trained the same way from scratch is the
  control;
- feature-based: the frozen model's layers, mean-pooled, combined by ELMo's learned scalar mix under a linear
  classifier, on the same task; each architecture untrained is the control;
- the BERT paper's feature-layer table on a tagging task made from the corpus (`bertjax.data.docstring_tags`:
  parameter and module-definition names in function docstrings, labelled from the code): a small BiLSTM
  tagger on a frozen model's embeddings, last, second-to-last, sum or concatenation of the last four layers,
  or a learned weighted sum of all; dev entity F1, beside a dictionary baseline and an untrained encoder.

Writes to --output_dir: `loss_curves.png`, `results.md` (the tables, the unmasked shifted LM scored again
without sight of the future, samples from the causal LM, the command and its time) and `results.json`.
Pretraining and fine-tuning runs complete in --workdir are reused, and so are feature-based and tagging
results computed with the same settings, so a rerun only redraws. A `--steps` below its default of 300 shrinks
the fine-tuning and tagger updates in proportion: `--steps 20` is a smoke run of everything.
"""

import json
import pathlib
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from ml_collections import config_dict

from bertjax import checkpoint, cli, finetune, generate, train
from bertjax.data import corpus, docstring_tags, shards, tokenizer
from bertjax.heads import BertForCausalLM
from bertjax.tasks import causal_lm, glue, ner, transfer
from bertjax.tasks.pretraining import PretrainingTask
from configs import common

_WORKDIR = flags.DEFINE_string("workdir", "runs/experiments", "Where the tokenizer, data and runs go.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "docs/experiments", "Where the plot and tables go.")
_STEPS = flags.DEFINE_integer("steps", 300, "Pretraining updates per model; fewer also shrink the later runs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Rows per pretraining update, for every model.")
_SEQ_LENGTH = flags.DEFINE_integer("seq_length", 128, "Tokens per pretraining row.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 2048, "SentencePiece vocabulary size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Peak pretraining learning rate, for every model.")
_WARMUP = flags.DEFINE_float("warmup_fraction", 0.1, "Pretraining warmup, as a share of the updates.")
_FINETUNE_EPOCHS = flags.DEFINE_float("finetune_epochs", 3.0, "Fine-tuning epochs over the stdlib train split.")
_FINETUNE_BATCH = flags.DEFINE_integer("finetune_batch_size", 32, "Docstrings per fine-tuning update.")
_FINETUNE_RATES = flags.DEFINE_list("finetune_learning_rates", ["1e-4", "3e-4", "1e-3", "3e-3"],
                                     "Peak fine-tuning learning rates: every model (and its control from scratch) "
                                     "is fine-tuned at each, and the best on dev is reported, as in BERT's paper.")
_FINETUNE_LENGTH = flags.DEFINE_integer("finetune_seq_length", 64, "Tokens per docstring (the rest is cut).")
_TAGGER_STEPS = flags.DEFINE_integer("tagger_steps", 1000, "Updates of each feature-based tagger.")
_TAGGING_MODELS = flags.DEFINE_list("tagging_models", ["bert_mlm", "causal_lm", "elmo"],
                                    "Models whose layers the tagging table compares.")
_SKIP = flags.DEFINE_list("skip", [], "Parts to leave out: finetune, scratch, features, tagging.")
_ONLY = flags.DEFINE_list("only", None, "Run only these experiments (names in EXPERIMENTS).")

# name: (task, model overrides, what its loss curve shows). The transformers have BERT-tiny's width (hidden 128,
# 2 heads, feed-forward 512) and four layers; the forward+backward pair two such stacks of hidden 96; ELMo two
# 160-wide LSTM layers per direction. Parameter counts stay within 30% of each other.
TRANSFORMER = {"variant": "tiny", "num_layers": 4}
EXPERIMENTS = {
    "bert_mlm": ("pretraining", TRANSFORMER, "mlm_loss"),
    "causal_lm": ("causal_lm", {**TRANSFORMER, "type_vocab_size": 1}, "lm_loss"),
    "shifted_lm_unmasked": ("shifted_lm_unmasked", {**TRANSFORMER, "type_vocab_size": 1}, "lm_loss"),
    "forward_backward": ("forward_backward", {**TRANSFORMER, "type_vocab_size": 1, "hidden_size": 96,
                                              "intermediate_size": 384}, "lm_loss"),
    "elmo": ("elmo", {"variant": "tiny", "num_layers": 2, "hidden_size": 160}, "lm_loss"),
}
# Each model's control, of the same architecture, fine-tuned from scratch or its features taken untrained (the
# unmasked shifted LM's architecture is BERT's bidirectional stack, less the segment embeddings).
CONTROL = {"bert_mlm": "bert_mlm", "shifted_lm_unmasked": "bert_mlm", "causal_lm": "causal_lm",
           "forward_backward": "forward_backward", "elmo": "elmo"}
TAGGING_ROWS = ("embeddings", "last", "second_to_last", "sum_last_four", "concat_last_four", "weighted_sum")
TAGGING_LENGTH = 64  # tokens per tagged sentence (the data set keeps sentences of at most 40 words)
PROMPTS = ["Return the", "This module provides", "If the file", "Raise ValueError if"]


# --- configs ------------------------------------------------------------------------------------------------
def _config(name: str, workdir: pathlib.Path, lock: bool = True) -> config_dict.ConfigDict:
    task, model, _ = EXPERIMENTS[name]
    config = common.get_config()
    config.task = task
    config.model.update(vocab_size=_VOCAB_SIZE.value, max_position_embeddings=_SEQ_LENGTH.value, **model)
    config.data.update(tokenizer=str(workdir / "tokenizer.model"), prepared_dir=str(workdir / "data"),
                       max_seq_length=_SEQ_LENGTH.value, packing=True)
    steps = _STEPS.value
    config.train.update(num_steps=steps, global_batch_size=_BATCH_SIZE.value, eval_batch_size=32,
                        log_every=max(steps // 30, 1), eval_every=max(steps // 6, 1), checkpoint_every=steps,
                        keep_checkpoints=1)
    config.optim.update(learning_rate=_LEARNING_RATE.value, warmup_steps=max(round(steps * _WARMUP.value), 1))
    if lock:
        config.lock()
    return config


def _scaled(updates: int) -> int:
    """A later run's updates, shrunk in proportion when --steps is below its default (a smoke run)."""
    return max(1, round(updates * min(1.0, _STEPS.value / _STEPS.default)))


def _finetune_steps(train_examples: int) -> int:
    """The fine-tuning budget: --finetune_epochs over the train split (less in a smoke run)."""
    return _scaled(finetune.steps_for_epochs(train_examples, _FINETUNE_EPOCHS.value, _FINETUNE_BATCH.value))


def _finetune_rates() -> list[float]:
    try:
        return [float(rate) for rate in _FINETUNE_RATES.value]
    except ValueError as error:
        raise ValueError(f"--finetune_learning_rates={_FINETUNE_RATES.value}: expected numbers such as "
                         "1e-4,3e-4,1e-3.") from error


def _finetune_config(name: str, workdir: pathlib.Path, pretrained: bool, rate: float) -> config_dict.ConfigDict:
    """The same fine-tuning for every model: the stdlib task, AdamW at peak `rate`, warmup over 10%, linear
    decay, dropout as in pretraining, one evaluation at the end."""
    config = _config(name, workdir, lock=False)
    config.finetune.update(task="stdlib", num_epochs=0.0)  # num_steps set below, from the epochs
    config.data.max_seq_length = _FINETUNE_LENGTH.value
    config.train.update(global_batch_size=_FINETUNE_BATCH.value, eval_batch_size=64, eval_every=0,
                        init_checkpoint=str(workdir / name) if pretrained else None)
    config.optim.update(learning_rate=rate, warmup_fraction=0.1)
    config.lock()
    return config


def _make_task(config):
    return PretrainingTask(config) if config.task == "pretraining" else causal_lm.LanguageModelTask(config)


def _prepare(workdir: pathlib.Path) -> None:
    model_path, data_dir = workdir / "tokenizer.model", workdir / "data"
    if not model_path.is_file():
        workdir.mkdir(parents=True, exist_ok=True)
        sentences = (sentence for document in corpus.read_builtin() for sentence in document)
        trained = tokenizer.train_sentencepiece(sentences, vocab_size=_VOCAB_SIZE.value)
        partial = model_path.with_name(model_path.name + ".partial")
        trained.save(partial)
        partial.replace(model_path)
    if not (data_dir / "metadata.json").is_file():
        shards.prepare(corpus.read_builtin(), model_path, data_dir, validation_fraction=0.02, overwrite=True,
                       source="builtin")


# --- pretraining --------------------------------------------------------------------------------------------
def _held_out(task, params, batch_size: int) -> dict[str, float]:
    """A task's metrics over the validation split (one jitted step, no mesh)."""
    step = jax.jit(lambda params, batch: task.loss(params, batch, None)[1])
    totals = None
    for batch in task.dataset("validation", batch_size=batch_size, seed=0, train=False):
        sums = step(params, batch)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    return task.summarize(jax.device_get(totals))


def _params(task, workdir: pathlib.Path):
    abstract = jax.eval_shape(lambda: task.init_params(jax.random.PRNGKey(0), task.example_batch(1)))
    return checkpoint.load_params(workdir, abstract)


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


def _train_seconds(workdir: pathlib.Path) -> float:
    """A run's wall time (evaluations included), from the clock times of its logged training records; the
    first window, before any record, is counted at the run's average pace. Also right for a reused run."""
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["split"] == "train"]
    first, last = train_records[0], train_records[-1]
    if last["step"] == first["step"]:
        return 0.0
    return (last["time"] - first["time"]) * last["step"] / (last["step"] - first["step"])


def _curves(workdir: pathlib.Path, metric: str) -> dict[str, list[tuple[int, float]]]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    curves = {}
    for split in ("train", "eval"):
        for key in (metric, f"backward_{metric}"):
            points = [(r["step"], r[key]) for r in records if r["split"] == split and key in r]
            if points:
                curves[f"{split}/{key}"] = points
    return curves


def _pretrain(name: str, workdir: pathlib.Path) -> dict:
    config = _config(name, workdir)
    task = _make_task(config)
    run_dir = workdir / name
    final = train.train_and_evaluate(config, run_dir, task)
    params = _params(task, run_dir)
    result = {"task": config.task, "final": final, "parameters": train.count_parameters(params),
              "seconds": _train_seconds(run_dir), "curves": _curves(run_dir, EXPERIMENTS[name][2])}
    if name == "causal_lm":
        result["samples"] = _samples(task, params)
    if name == "shifted_lm_unmasked":  # the same parameters, denied the view of the next token
        with config.unlocked():
            config.task = "causal_lm"
        result["as_forward_lm"] = _held_out(causal_lm.LanguageModelTask(config), params, config.train.eval_batch_size)
    return result


# --- downstream -----------------------------------------------------------------------------------------------
def _backbone(name: str, workdir: pathlib.Path, trained: bool):
    """(model, params): the feature-giving part of a pretrained model (or of its architecture, untrained)."""
    model = transfer.backbone(EXPERIMENTS[name][0], _make_task(_config(name, workdir)).model_config)
    ids = np.ones((1, 8), np.int32)

    def init():
        return nn.meta.unbox(model.init(jax.random.PRNGKey(0), ids, ids, ids)["params"])

    return model, (checkpoint.load_params(workdir / name, jax.eval_shape(init)) if trained else init())


def _finetune(name: str, workdir: pathlib.Path, pretrained: bool, rate: float) -> dict:
    """Fine-tune `name`'s pretrained model (or its architecture from scratch) on stdlib at peak `rate`: final
    dev metrics."""
    config = _finetune_config(name, workdir, pretrained, rate)
    task = transfer.PooledClassificationTask(config, EXPERIMENTS[name][0])
    config.train.num_steps = _finetune_steps(task.num_train_examples())
    config.train.update(log_every=max(config.train.num_steps // 10, 1), checkpoint_every=config.train.num_steps)
    run_dir = workdir / "finetune" / f"lr_{rate:g}" / (name if pretrained else f"{name}_from_scratch")
    results = finetune.run(config, run_dir, task=task)
    return {**results["final"], "steps": config.train.num_steps, "seconds": _train_seconds(run_dir)}


def _classification_data(workdir: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The stdlib task's train and dev splits as the fine-tuning runs read them: (ids, mask, labels)."""
    config = _finetune_config("bert_mlm", workdir, False, _finetune_rates()[0])
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


def _tagging_task(workdir: pathlib.Path) -> ner.NerTask:
    paths = docstring_tags.prepare(workdir / "tagging")
    config = _config("bert_mlm", workdir, lock=False)
    config.data.max_seq_length = TAGGING_LENGTH
    config.ner.update(train_file=str(paths["train"]), validation_file=str(paths["validation"]),
                      test_file=str(paths["test"]))
    return ner.NerTask(config)


def _tagging_combinations(hidden_states: int) -> list[str]:
    """The table's rows that a model with `hidden_states` (embeddings + layers) can fill."""
    layers_needed = {"second_to_last": 2, "sum_last_four": 4, "concat_last_four": 4}
    return [how for how in TAGGING_ROWS if hidden_states - 1 >= layers_needed.get(how, 1)]


def _tagging(model, params, task: ner.NerTask) -> dict[str, dict[str, float]]:
    """Dev entity F1 (overall and per type) of a BiLSTM tagger on each layer combination of a frozen model's
    states, each hidden state standardised with the training sentences' statistics."""
    (_, train_features), (dev_sentences, dev_features) = task.split("train"), task.split("validation")
    states = {name: transfer.layer_states(model, params, features["input_ids"], features["attention_mask"],
                                          pooled=False)
              for name, features in (("train", train_features), ("validation", dev_features))}
    statistics = transfer.standardize(states["train"], train_features["attention_mask"])
    transfer.standardize(states["validation"], statistics=statistics)
    gold = [list(sentence.tags) for sentence in dev_sentences]
    results = {}
    for how in _tagging_combinations(states["train"].shape[0]):
        tagger, tagger_params = ner.fit_feature_tagger(how, len(task.labels), states["train"], train_features,
                                                       steps=_scaled(_TAGGER_STEPS.value))
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


def _pretraining_settings(name: str) -> dict:
    """What a cached downstream result depends on besides its own settings: the pretrained model."""
    return {"model": EXPERIMENTS[name][1], "steps": _STEPS.value, "batch_size": _BATCH_SIZE.value,
            "seq_length": _SEQ_LENGTH.value, "vocab_size": _VOCAB_SIZE.value,
            "learning_rate": _LEARNING_RATE.value, "warmup_fraction": _WARMUP.value}


def _cached(path: pathlib.Path, settings: dict, compute) -> dict:
    """`compute()`'s result, kept in `path` with the settings it was computed with; reused while they hold."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored["settings"] == settings:
            return stored["result"]
    start = time.perf_counter()
    result = {**compute(), "seconds": time.perf_counter() - start}
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json(path, {"settings": settings, "result": result})
    return result


def _downstream(names: list[str], workdir: pathlib.Path) -> dict:
    """Fine-tuned (per learning rate), feature-based and tagging results per model, and their controls."""
    skip = set(_SKIP.value)
    out = {"finetuned": {}, "scratch": {}, "feature_based": {}, "feature_based_untrained": {}, "tagging": {}}
    controls = list(dict.fromkeys(CONTROL[name] for name in names))
    rates = _finetune_rates()
    if "finetune" not in skip:
        for name in names:
            out["finetuned"][name] = {f"{rate:g}": _finetune(name, workdir, True, rate) for rate in rates}
        if "scratch" not in skip:
            for control in controls:
                out["scratch"][control] = {f"{rate:g}": _finetune(control, workdir, False, rate) for rate in rates}
    if "features" not in skip:
        data = _classification_data(workdir)
        for name, trained in [*[(name, True) for name in names], *[(control, False) for control in controls]]:
            key = "feature_based" if trained else "feature_based_untrained"
            settings = {"pretraining": _pretraining_settings(name), "length": _FINETUNE_LENGTH.value}
            out[key][name] = _cached(workdir / "downstream" / f"{key}_{name}.json", settings,
                                     lambda: _feature_based(*_backbone(name, workdir, trained), data))
    if "tagging" not in skip:
        task = _tagging_task(workdir)
        out["tagging_data"] = _tagging_data_summary(task)
        for name, trained in [*[(name, True) for name in _TAGGING_MODELS.value if name in names],
                              ("bert_mlm", False)]:
            label = name if trained else f"{name}_untrained"
            settings = {"pretraining": _pretraining_settings(name), "length": TAGGING_LENGTH,
                        "tagger_steps": _scaled(_TAGGER_STEPS.value)}
            out["tagging"][label] = _cached(workdir / "downstream" / f"tagging_{label}.json", settings,
                                            lambda: _tagging(*_backbone(name, workdir, trained), task))
    return out


# --- report -----------------------------------------------------------------------------------------------------
def _plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib  # noqa: PLC0415 (an extra: pip install -e '.[experiments]')
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for color, (name, result) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], results.items()):
        for axis, split in zip(axes, ("train", "eval")):
            for key, points in result["curves"].items():
                if not key.startswith(split):
                    continue
                steps, values = zip(*points)
                backward = "backward" in key
                axis.plot(steps, values, color=color, linestyle="--" if backward else "-",
                          marker="o" if split == "eval" else None, markersize=3,
                          label=f"{name} ({'backward' if backward else key.split('/')[1].split('_')[0]})")
    axes[0].set_title("training loss (per logging window)")
    axes[1].set_title("held-out loss")
    for axis in axes:
        axis.set_xlabel("update")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("cross entropy (nats per predicted token)")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    partial = path.with_name(path.stem + ".partial.png")
    figure.savefig(partial, dpi=110)
    partial.replace(path)


def _pretraining_table(results: dict) -> list[str]:
    lines = ["| model | objective | parameters | run time | held-out loss | held-out accuracy |",
             "|---|---|---:|---:|---:|---:|"]
    for name, result in results.items():
        final = result["final"]
        prefix = "mlm" if result["task"] == "pretraining" else "lm"
        loss = f"{final[f'{prefix}_loss']:.3f}"
        accuracy = f"{final[f'{prefix}_accuracy']:.1%}"
        if "backward_lm_loss" in final:
            loss += f" (backward {final['backward_lm_loss']:.3f})"
            accuracy += f" (backward {final['backward_lm_accuracy']:.1%})"
        lines.append(f"| {name} | {result['task']} ({prefix.upper()} targets) | {result['parameters']:,} | "
                     f"{result['seconds'] / 60:.1f} min | {loss} | {accuracy} |")
    return lines


def _percent(result: dict | None, key: str = "accuracy") -> str:
    return f"{result[key]:.1%}" if result else "-"


def _best_rate(by_rate: dict | None) -> str:
    """The best dev accuracy over the fine-tuning rates, and the rate that gave it."""
    if not by_rate:
        return "-"
    rate, result = max(by_rate.items(), key=lambda item: item[1]["accuracy"])
    return f"{result['accuracy']:.1%} ({rate})"


def _classification_table(names: list[str], downstream: dict) -> list[str]:
    finetuned, scratch = downstream["finetuned"], downstream["scratch"]
    first = next(iter(finetuned.values()), {})  # one model's results by rate: every model has the same rates
    rates = list(first)
    steps = next(iter(first.values()))["steps"] if first else 0
    train_examples = len(glue.stdlib_examples("train"))
    lines = [f"Downstream, the `stdlib` task (which of {len(glue.STDLIB_PACKAGES)} packages a docstring comes from; "
             f"trained on its {train_examples:,} train docstrings, accuracy on its "
             f"{len(glue.stdlib_examples('validation'))} dev docstrings, each cut to {_FINETUNE_LENGTH.value} "
             f"tokens). Fine-tuned: the whole model plus a linear classifier on its mean-pooled top layer, {steps} "
             f"updates of {_FINETUNE_BATCH.value} docstrings ({steps * _FINETUNE_BATCH.value / train_examples:.1f} "
             f"epochs) at each peak rate of {', '.join(rates)}, the same for every model, the best on dev reported "
             f"with its rate; from scratch: the same architecture and training from random parameters. "
             f"Feature-based: the frozen model's layers, each mean-pooled, ELMo's learned scalar mix, a linear "
             f"classifier; untrained: the same on the architecture's random parameters.", "",
             "| model | fine-tuned | same architecture from scratch | feature-based | feature-based, untrained "
             "| learned mix weights (embeddings first) |", "|---|---:|---:|---:|---:|---|"]
    for name in names:
        feature = downstream["feature_based"].get(name)
        weights = ", ".join(f"{w:.2f}" for w in feature["mix_weights"]) if feature else "-"
        lines.append(f"| {name} | {_best_rate(finetuned.get(name))} | {_best_rate(scratch.get(CONTROL[name]))} | "
                     f"{_percent(feature)} | "
                     f"{_percent(downstream['feature_based_untrained'].get(CONTROL[name]))} | {weights} |")
    if finetuned:
        rows = [(name, finetuned[name]) for name in names if name in finetuned]
        rows += [(f"{control} from scratch", by_rate) for control, by_rate in scratch.items()]
        lines += ["", "Fine-tuning dev accuracy at each peak rate:", "",
                  "| model | " + " | ".join(rates) + " |", "|---|" + "---:|" * len(rates)]
        lines += [f"| {label} | " + " | ".join(_percent(by_rate.get(rate)) for rate in rates) + " |"
                  for label, by_rate in rows]
    return lines


TAGGING_NAMES = {"embeddings": "embeddings (first layer)", "last": "last hidden",
                 "second_to_last": "second-to-last hidden", "sum_last_four": "sum of last four hidden",
                 "concat_last_four": "concat of last four hidden", "weighted_sum": "weighted sum of all (learned)"}


def _tagging_table(downstream: dict) -> list[str]:
    data, tagging = downstream["tagging_data"], downstream["tagging"]
    counts = data["counts"]
    lines = ["Feature-based tagging (the BERT paper's feature table): the docstring tagging data "
             "(`bertjax.data.docstring_tags`), a frozen model, a layer combination, a BiLSTM tagger of 64 units per "
             f"direction trained for {_scaled(_TAGGER_STEPS.value)} updates of 32 sentences (Adam, 3e-3); "
             "dev entity F1. \"-\": the model has too few layers.", "",
             "| split | sentences | words | ARG entities | DEF entities |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {split} | {c['sentences']:,} | {c['words']:,} | {c['ARG']:,} | {c['DEF']:,} |"
              for split, c in counts.items()]
    dictionary = data["dictionary"]
    lines += ["", f"Dictionary baseline (each dev word tagged as it is most often in train): F1 "
                  f"{dictionary['f1']:.1%} (ARG {dictionary['ARG_f1']:.1%}, DEF {dictionary['DEF_f1']:.1%}); "
                  "tagging every word O scores 0.", "",
              "| layers | " + " | ".join(tagging) + " |", "|---|" + "---:|" * len(tagging)]
    for how in TAGGING_ROWS:
        lines.append(f"| {TAGGING_NAMES[how]} | " + " | ".join(_percent(result.get(how), "f1")
                                                                 for result in tagging.values()) + " |")
    return lines


def _report(results: dict, downstream: dict, seconds: dict, command: str) -> str:
    parts = ", ".join(f"{part} {value / 60:.1f} min" for part, value in seconds.items() if part != "invocation")
    lines = [f"Command: `{command}`; it took {seconds['invocation'] / 60:.1f} min on {jax.device_count()} "
             f"{jax.devices()[0].platform} device(s), reusing whatever runs and results --workdir held. Compute "
             f"of each part, as first done: {parts}.", "",
             f"Pretraining, each model: {_STEPS.value} updates of {_BATCH_SIZE.value} rows x {_SEQ_LENGTH.value} "
             f"tokens; vocabulary {_VOCAB_SIZE.value}.", "", *_pretraining_table(results)]
    names = list(results)
    if downstream["finetuned"] or downstream["feature_based"]:
        lines += ["", *_classification_table(names, downstream)]
    if downstream["tagging"]:
        lines += ["", *_tagging_table(downstream)]
    probe = results.get("shifted_lm_unmasked", {}).get("as_forward_lm")
    if probe:
        lines += ["", f"The unmasked shifted LM's parameters scored as a forward LM (causal attention, so it cannot "
                      f"see the token it predicts): held-out loss {probe['lm_loss']:.3f}, accuracy "
                      f"{probe['lm_accuracy']:.1%}."]
    samples = results.get("causal_lm", {}).get("samples")
    if samples:
        lines += ["", "Samples from the causal LM (greedy, then temperature 0.8 with top-p 0.95, seed 0):", ""]
        for prompt, greedy, sampled in samples:
            lines += [f"- `{prompt}` ▸ greedy: `{greedy}`", f"  sampled: `{sampled}`"]
    return "\n".join(lines) + "\n"


def _part_seconds(results: dict, downstream: dict) -> dict[str, float]:
    """Compute time of each part as first done (a reused run or result keeps its original time)."""
    def total(*groups):
        return sum(result["seconds"] for group in groups for result in group.values())

    finetuning = [by_rate for group in ("finetuned", "scratch") for by_rate in downstream[group].values()]
    return {"pretraining": total(results), "fine-tuning": total(*finetuning),
            "feature-based": total(downstream["feature_based"], downstream["feature_based_untrained"]),
            "tagging": total(downstream["tagging"])}


def main(argv):
    del argv
    workdir, output_dir = pathlib.Path(_WORKDIR.value), pathlib.Path(_OUTPUT_DIR.value)
    names = _ONLY.value or list(EXPERIMENTS)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"--only: unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}.")
    unknown = sorted(set(_SKIP.value) - {"finetune", "scratch", "features", "tagging"})
    if unknown:
        raise ValueError(f"--skip: unknown part(s) {unknown}; choose from finetune, scratch, features, tagging.")
    start = time.perf_counter()
    _prepare(workdir)
    results = {name: _pretrain(name, workdir) for name in names}
    downstream = _downstream(names, workdir)
    seconds = {**_part_seconds(results, downstream), "invocation": time.perf_counter() - start}
    print(f"this run took {seconds['invocation'] / 60:.1f} min (training, evaluation, downstream, plots)")
    output_dir.mkdir(parents=True, exist_ok=True)
    _plot(results, output_dir / "loss_curves.png")
    command = " ".join(["python tools/reproduce.py", *sys.argv[1:]])
    report = _report(results, downstream, seconds, command)
    checkpoint.write_json(output_dir / "results.json", {"command": command, "seconds": seconds, "results": results,
                                                        "downstream": downstream})
    (output_dir / "results.md").write_text(report)
    print(report)
    print(f"wrote {output_dir / 'loss_curves.png'}, {output_dir / 'results.md'}, {output_dir / 'results.json'}")


if __name__ == "__main__":
    cli.run(main)
