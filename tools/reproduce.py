"""The experiments behind BERT's masked objective, on the built-in corpus at a small, equal budget.

    python tools/reproduce.py --workdir runs/experiments --output_dir docs/experiments

Trains, each for the same number of updates of the same batch of rows (same tokens seen):
BERT (masked LM + next-sentence prediction), a forward (GPT-style) causal LM, the unmasked shifted LM (predict
t+1 with full bidirectional attention), two separate forward and backward causal transformers, and ELMo (a
two-layer biLSTM LM), with parameter counts kept comparable. Then writes to --output_dir:
`loss_curves.png` (training and held-out loss of each model's forward prediction), `results.md` (a table
of parameters, time and held-out losses; the unmasked shifted LM scored again without sight of the future;
samples from the causal LM) and `results.json`. Runs already complete in --workdir are reused, so a rerun
only redraws; `--steps` small (say 20) is a smoke run.
"""

import hashlib
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags
from ml_collections import config_dict

from bertjax import checkpoint, cli, generate, train
from bertjax.data import corpus, shards, tokenizer
from bertjax.heads import BertForCausalLM
from bertjax.tasks import causal_lm
from bertjax.tasks.pretraining import PretrainingTask
from configs import common

_WORKDIR = flags.DEFINE_string("workdir", "runs/experiments", "Where the tokenizer, data and runs go.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "docs/experiments", "Where the plot and tables go.")
_STEPS = flags.DEFINE_integer("steps", 300, "Updates per model.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Rows per update, for every model.")
_SEQ_LENGTH = flags.DEFINE_integer("seq_length", 128, "Tokens per row.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 2048, "SentencePiece vocabulary size.")
_PROBE_CLASSES = flags.DEFINE_integer("probe_classes", 8, "Packages the feature-based probe tells apart.")
_ONLY = flags.DEFINE_list("only", None, "Run only these experiments (names in EXPERIMENTS).")

# name: (task, model overrides, what its loss curve shows). Sizes keep parameter counts comparable:
# BERT-tiny's stack (2 layers, hidden 128); the forward+backward pair two stacks of hidden 96; ELMo two
# 128-wide LSTM layers per direction.
EXPERIMENTS = {
    "bert_mlm": ("pretraining", {}, "mlm_loss"),
    "causal_lm": ("causal_lm", {"type_vocab_size": 1}, "lm_loss"),
    "shifted_lm_unmasked": ("shifted_lm_unmasked", {"type_vocab_size": 1}, "lm_loss"),
    "forward_backward": ("forward_backward", {"type_vocab_size": 1, "hidden_size": 96, "intermediate_size": 384},
                         "lm_loss"),
    "elmo": ("elmo", {}, "lm_loss"),
}
PROMPTS = ["Return the", "This module provides", "If the file", "Raise ValueError if"]


def _config(name: str, workdir: pathlib.Path) -> config_dict.ConfigDict:
    task, model, _ = EXPERIMENTS[name]
    config = common.get_config()
    config.task = task
    config.model.variant = "tiny"
    config.model.update(vocab_size=_VOCAB_SIZE.value, max_position_embeddings=_SEQ_LENGTH.value, **model)
    config.data.update(tokenizer=str(workdir / "tokenizer.model"), prepared_dir=str(workdir / "data"),
                       max_seq_length=_SEQ_LENGTH.value, packing=True)
    steps = _STEPS.value
    config.train.update(num_steps=steps, global_batch_size=_BATCH_SIZE.value, eval_batch_size=32,
                        log_every=max(steps // 30, 1), eval_every=max(steps // 6, 1), checkpoint_every=steps,
                        keep_checkpoints=1)
    config.optim.update(learning_rate=2e-3, warmup_steps=max(steps // 20, 1))
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


def _probe_data(tok, length: int, classes: int):
    """The feature-based probe's task: which standard-library package a docstring comes from, among the
    `classes` packages with the most docstrings (at most 150 each); one document in five is the test set,
    chosen by a hash of its text. Returns (ids, mask, labels, is_test, class names)."""
    documents = list(corpus.builtin_documents())
    counts = {}
    for package, _ in documents:
        counts[package] = counts.get(package, 0) + 1
    names = sorted((p for p in counts if p != "pydoc_topics"), key=lambda p: -counts[p])[:classes]
    chosen, taken = [], dict.fromkeys(names, 0)
    for package, document in documents:
        if package in taken and taken[package] < 150:
            taken[package] += 1
            chosen.append((names.index(package), document))
    ids = np.zeros((len(chosen), length), np.int32)
    for row, (_, document) in enumerate(chosen):
        tokens = [tok.cls_id, *[t for sentence in tok.encode_batch(document) for t in sentence][:length - 2],
                  tok.sep_id]
        ids[row, :len(tokens)] = tokens
    labels = np.array([label for label, _ in chosen])
    is_test = np.array([hash_bucket(" ".join(document)) == 0 for _, document in chosen])
    return ids, (ids > 0).astype(np.int32), labels, is_test, names


def hash_bucket(text: str, buckets: int = 5) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % buckets


def _layer_features(task, params, ids, mask) -> list[np.ndarray]:
    """Frozen features: each layer's hidden states (the embeddings first), averaged over real tokens (N, D)."""
    if isinstance(task, PretrainingTask):
        states = jax.jit(lambda ids, mask: task.model.apply({"params": params}, ids, None, mask).encoder.hidden_states)
    else:
        positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape[1:])
        states = jax.jit(lambda ids, mask: task.apply(
            params, {"input_ids": ids, "attention_mask": mask, "position_ids": jnp.broadcast_to(positions, ids.shape)}
        ).hidden_states)
    pooled = []
    for start in range(0, len(ids), 64):
        chunk_ids, chunk_mask = ids[start:start + 64], mask[start:start + 64]
        weights = chunk_mask[..., None] / chunk_mask.sum(-1, keepdims=True)[..., None]
        pooled.append([np.asarray(jnp.sum(layer * weights, axis=1)) for layer in states(chunk_ids, chunk_mask)])
    return [np.concatenate(layer) for layer in zip(*pooled)]


def _linear_probe(features: np.ndarray, labels, is_test, classes: int) -> float:
    """Test accuracy of a softmax regression on standardised frozen features (full-batch Adam, L2)."""
    train_x, test_x = features[~is_test], features[is_test]
    mean, scale = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / scale, (test_x - mean) / scale
    weights = {"w": jnp.zeros((features.shape[1], classes)), "b": jnp.zeros(classes)}
    optimizer = optax.adamw(1e-2, weight_decay=1e-2)

    def loss(weights):
        logits = train_x @ weights["w"] + weights["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[~is_test]).mean()

    @jax.jit
    def step(weights, state):
        grads = jax.grad(loss)(weights)
        updates, state = optimizer.update(grads, state, weights)
        return optax.apply_updates(weights, updates), state

    state = optimizer.init(weights)
    for _ in range(300):
        weights, state = step(weights, state)
    predictions = np.argmax(test_x @ weights["w"] + weights["b"], axis=-1)
    return float(np.mean(predictions == labels[is_test]))


def _probe(task, params, data) -> dict[str, float]:
    """Probe accuracies of one model's features: each layer, the mean of all (ELMo's scalar mix at its
    start), and all layers concatenated."""
    ids, mask, labels, is_test, names = data
    layers = _layer_features(task, params, ids, mask)
    classes = len(names)
    results = {f"layer {index}": _linear_probe(layer, labels, is_test, classes) for index, layer in enumerate(layers)}
    results["mean of all"] = _linear_probe(np.mean(layers, axis=0), labels, is_test, classes)
    results["concat of all"] = _linear_probe(np.concatenate(layers, axis=1), labels, is_test, classes)
    return results


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


def _report(results: dict, probe: dict | None, samples, seconds: float, probe_classes: int,
            untrained_probe: dict) -> str:
    lines = [f"Each model: {_STEPS.value} updates of {_BATCH_SIZE.value} rows x {_SEQ_LENGTH.value} tokens; "
             f"vocabulary {_VOCAB_SIZE.value}. Run time (training and evaluations) {seconds / 60:.1f} min in all on "
             f"{jax.device_count()} {jax.devices()[0].platform} device(s).", "",
             "| model | objective | parameters | run time | held-out loss | held-out accuracy |",
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
    layers = max(len(result["probe"]) for result in results.values())
    columns = next(list(result["probe"]) for result in results.values() if len(result["probe"]) == layers)
    lines += ["", f"Feature-based probe (frozen features averaged over each docstring's first 64 tokens, a linear "
                  f"classifier of its package among {probe_classes}; test accuracy; layer 0 is the embeddings):", "",
              "| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, result in [*results.items(), ("untrained transformer (control)", {"probe": untrained_probe})]:
        lines.append(f"| {name} | " + " | ".join(f"{result['probe'][c]:.1%}" if c in result["probe"] else "-"
                                                for c in columns) + " |")
    if probe:
        lines += ["", f"The unmasked shifted LM's parameters scored as a forward LM (causal attention, so it cannot "
                      f"see the token it predicts): held-out loss {probe['lm_loss']:.3f}, accuracy "
                      f"{probe['lm_accuracy']:.1%}."]
    if samples:
        lines += ["", "Samples from the causal LM (greedy, then temperature 0.8 with top-p 0.95, seed 0):", ""]
        for prompt, greedy, sampled in samples:
            lines += [f"- `{prompt}` ▸ greedy: `{greedy}`", f"  sampled: `{sampled}`"]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    workdir, output_dir = pathlib.Path(_WORKDIR.value), pathlib.Path(_OUTPUT_DIR.value)
    names = _ONLY.value or list(EXPERIMENTS)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"--only: unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}.")
    start = time.perf_counter()
    _prepare(workdir)
    results, probe_data = {}, None
    for name in names:
        config = _config(name, workdir)
        task = _make_task(config)
        run_dir = workdir / name
        final = train.train_and_evaluate(config, run_dir, task)
        params = _params(task, run_dir)
        if probe_data is None:
            probe_data = _probe_data(task.tokenizer, 64, _PROBE_CLASSES.value)
        results[name] = {"task": config.task, "final": final, "parameters": train.count_parameters(params),
                         "seconds": _train_seconds(run_dir),
                         "curves": _curves(run_dir, EXPERIMENTS[name][2]), "probe": _probe(task, params, probe_data)}
        if name == "causal_lm":
            results[name]["samples"] = _samples(task, params)
        if name == "shifted_lm_unmasked":  # the same parameters, denied the view of the next token
            with config.unlocked():
                config.task = "causal_lm"
            results[name]["as_forward_lm"] = _held_out(causal_lm.LanguageModelTask(config), params,
                                                       config.train.eval_batch_size)
    # The control: the causal LM's architecture with its initial, untrained parameters.
    untrained = causal_lm.LanguageModelTask(_config("causal_lm", workdir))
    untrained_params = untrained.init_params(jax.random.PRNGKey(0), untrained.example_batch(1))
    untrained_probe = _probe(untrained, untrained_params, probe_data)
    seconds = sum(result["seconds"] for result in results.values())
    print(f"this run took {(time.perf_counter() - start) / 60:.1f} min (training, evaluation, probes, plots)")
    output_dir.mkdir(parents=True, exist_ok=True)
    _plot(results, output_dir / "loss_curves.png")
    report = _report(results, results.get("shifted_lm_unmasked", {}).get("as_forward_lm"),
                     results.get("causal_lm", {}).get("samples"), seconds, _PROBE_CLASSES.value, untrained_probe)
    checkpoint.write_json(output_dir / "results.json", {"seconds": seconds, "results": results,
                                                        "untrained_probe": untrained_probe})
    (output_dir / "results.md").write_text(report)
    print(report)
    print(f"wrote {output_dir / 'loss_curves.png'}, {output_dir / 'results.md'}, {output_dir / 'results.json'}")


if __name__ == "__main__":
    cli.run(main)
