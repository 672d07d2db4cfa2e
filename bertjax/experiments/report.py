"""The report of `bertjax.experiments.running`'s results: the loss-curve and learning-curve plots and the
markdown tables (the claims with their verdicts, pretraining, the learning curves, the right-context task,
the feature-layer tagging table)."""

import pathlib
import statistics

import jax

from bertjax import files
from bertjax.experiments.settings import TAGGING_ROWS, Settings

TAGGING_NAMES = {"embeddings": "embeddings (first layer)", "last": "last hidden",
                 "second_to_last": "second-to-last hidden", "sum_last_four": "sum of last four hidden",
                 "concat_last_four": "concat of last four hidden", "weighted_sum": "weighted sum of all (learned)"}


def plot(results: dict, path: pathlib.Path) -> None:
    """Every model's training and held-out loss curves, side by side, written to `path`."""
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
    with files.replacing(path, keep_suffix=True) as partial:  # matplotlib reads the format from the suffix
        figure.savefig(partial, dpi=110)


def pretraining_table(results: dict) -> list[str]:
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


def mean_sd(values: list[float]) -> str:
    """A point over seeds: mean ± sample standard deviation, in percent."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1%} ± {spread:.1%}"


def _size(size: str, total: int) -> str:
    return f"all ({total:,})" if size == "0" else f"{int(size):,}"


def curves_table(curves: dict, settings: Settings) -> list[str]:
    """Per task, dev accuracy (mean ± sd over seeds) at each number of labels: pretrained, scratch, bag of
    words; then the rate grids."""
    lines = [f"Fine-tuned: BERT's MLM model whole plus a linear classifier on its mean-pooled top layer, for "
             f"{settings.finetune_epochs:g} epochs over the labels drawn (at least {settings.min_finetune_steps} "
             f"updates of {settings.finetune_batch_size}), {settings.finetune_seq_length} tokens per example; from "
             "scratch: the same architecture and training from random parameters. Each seed draws its own labels "
             "(the same draw for every model) and its own initialisation. Bag of words: a logistic regression on "
             "the words present (for a pair: each sentence's and the words they share), on the same draws. Dev "
             "accuracy, mean ± standard deviation over seeds " + ", ".join(map(str, settings.seeds)) + "."]
    for task, curve in curves.items():
        lines += ["", f"`{task}` ({curve['train_examples']:,} training and {curve['dev_examples']:,} dev examples; "
                      f"always answering the most frequent class scores {curve['majority']:.1%}; fine-tuning rate "
                      f"{curve['rate']['pretrained']:g} pretrained, {curve['rate']['scratch']:g} from scratch, the "
                      "best of the grid below on all labels):", "",
                  "| labels | pretrained | from scratch | bag of words |", "|---|---:|---:|---:|"]
        for size in curve["points"]["pretrained"]:
            lines.append(f"| {_size(size, curve['train_examples'])} | {mean_sd(curve['points']['pretrained'][size])} "
                         f"| {mean_sd(curve['points']['scratch'][size])} | {mean_sd(curve['bag_of_words'][size])} |")
        rates = list(curve["rates"]["pretrained"])
        lines += ["", "| all labels, first seed, at peak rate | " + " | ".join(rates) + " |",
                  "|---|" + "---:|" * len(rates)]
        lines += [f"| {label} | " + " | ".join(f"{curve['rates'][label][rate]:.1%}" for rate in rates) + " |"
                  for label in ("pretrained", "scratch")]
    return lines


CALLS_NAMES = {"bert_mlm": "BERT's MLM model, fine-tuned", "causal_lm": "left-to-right causal LM, fine-tuned",
               "bert_mlm_from_scratch": "BERT's architecture from scratch",
               "elmo_features": "ELMo's features (frozen), BiLSTM tagger"}


def calls_table(calls: dict, settings: Settings) -> list[str]:
    counts, dictionary = calls["counts"], calls["dictionary"]
    lines = ["The right-context task `calls` (`bertjax.data.docstring_tags`: in docstring sentences with a "
             "parenthesis, the names written right before \"(\", dotted prefix included; the tag of `os` in "
             "`os.path.join(` is told only by what follows). Fine-tuned: the whole model plus a linear classifier "
             f"on every position of its top layer, at peak rate {settings.tagging_learning_rate:g}, "
             f"{settings.finetune_epochs:g} epochs; ELMo: the frozen biLM's learned mix of layers under a BiLSTM "
             f"tagger of 64 units per direction ({settings.scaled(settings.tagger_steps)} updates). Dev entity F1, "
             "mean ± standard deviation over seeds " + ", ".join(map(str, settings.seeds)) + ".", "",
             "| split | sentences | words | CALL entities |", "|---|---:|---:|---:|"]
    lines += [f"| {split} | {c['sentences']:,} | {c['words']:,} | {c['CALL']:,} |" for split, c in counts.items()]
    lines += ["", f"Dictionary baseline (each dev word tagged as it is most often in train): F1 {dictionary['f1']:.1%}.",
              "", "| model | dev entity F1 |", "|---|---:|"]
    lines += [f"| {CALLS_NAMES[name]} | {mean_sd(values)} |" for name, values in calls["f1"].items()]
    return lines


def claims_table(claims: list) -> list[str]:
    from bertjax.experiments.claims import RULE  # noqa: PLC0415

    lines = [f"Each verdict is computed from the numbers by one rule: {RULE}.", "",
             "| # | claim | evidence | verdict |", "|---|---|---|---|"]
    lines += [f"| {claim.number} | {claim.claim} | {claim.evidence} | **{claim.verdict}** |" for claim in claims]
    return lines


def tagging_table(downstream: dict, settings: Settings) -> list[str]:
    data, tagging = downstream["tagging_data"], downstream["tagging"]
    counts = data["counts"]
    lines = ["Feature-based tagging (the BERT paper's feature table): the docstring tagging data "
             "(`bertjax.data.docstring_tags`), a frozen model, a layer combination, a BiLSTM tagger of 64 units per "
             f"direction trained for {settings.scaled(settings.tagger_steps)} updates of 32 sentences (Adam, 3e-3); "
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


def corpus_line(metadata: dict) -> str:
    found = metadata.get("corpus", {})
    splits = metadata["splits"]
    return (f"Corpus `{metadata['source']}`: {found.get('documents', 0):,} documents, "
            f"{found.get('bytes', 0) / 1e6:.1f} MB of text (sha256 {found.get('sha256', '?')[:16]}...), "
            f"{splits['train']['tokens']:,} training and {splits['validation']['tokens']:,} held-out tokens.")


def report(results: dict, downstream: dict, claims: list, metadata: dict, baseline: dict, seconds: dict,
           command: str, settings: Settings) -> str:
    """The whole markdown report: how it was made, the claims, then every table, the probe and the samples."""
    parts = ", ".join(f"{part} {value / 60:.1f} min" for part, value in seconds.items() if part != "invocation")
    lines = [f"Command: `{command}`; it took {seconds['invocation'] / 60:.1f} min on {jax.device_count()} "
             f"{jax.devices()[0].platform} device(s), reusing whatever runs and results --workdir held. Compute "
             f"of each part, as first done: {parts}.", "", corpus_line(metadata), "",
             "## Claims", "", *claims_table(claims), "",
             "## Pretraining", "",
             f"Each model: {settings.steps} updates of {settings.batch_size} rows x {settings.seq_length} tokens; "
             f"vocabulary {settings.vocab_size}. A context-free guess (the training split's unigram distribution) "
             f"scores {baseline['loss']:.3f} nats per held-out token, {baseline['accuracy']:.1%} accuracy.", "",
             *pretraining_table(results)]
    if downstream.get("curves"):
        lines += ["", "## Learning curves", "", *curves_table(downstream["curves"], settings)]
    if downstream.get("calls"):
        lines += ["", "## The right-context task", "", *calls_table(downstream["calls"], settings)]
    if downstream.get("tagging"):
        lines += ["", "## The feature-layer table", "", *tagging_table(downstream, settings)]
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


def part_seconds(results: dict, downstream: dict) -> dict[str, float]:
    """Compute time of each part as first done (a reused run or result keeps its original time)."""
    return {"pretraining": sum(result["seconds"] for result in results.values()),
            "learning curves": sum(curve["seconds"] for curve in downstream.get("curves", {}).values()),
            "calls": downstream.get("calls", {}).get("seconds", 0.0),
            "feature-layer table": sum(result["seconds"] for result in downstream.get("tagging", {}).values())}


def plot_curves(curves: dict, path: pathlib.Path) -> None:
    """Dev accuracy against training labels (log scale), per task: pretrained, scratch, bag of words, with
    each point's standard deviation over seeds as a bar."""
    import matplotlib  # noqa: PLC0415 (an extra: pip install -e '.[experiments]')
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), squeeze=False)
    for axis, (task, curve) in zip(axes[0], curves.items()):
        sizes = list(curve["points"]["pretrained"])
        x = [curve["train_examples"] if size == "0" else int(size) for size in sizes]
        for label, points in (("pretrained", curve["points"]["pretrained"]),
                              ("from scratch", curve["points"]["scratch"]), ("bag of words", curve["bag_of_words"])):
            means = [statistics.fmean(points[size]) for size in sizes]
            spreads = [statistics.stdev(points[size]) if len(points[size]) > 1 else 0.0 for size in sizes]
            axis.errorbar(x, means, yerr=spreads, marker="o", capsize=3, label=label)
        axis.axhline(curve["majority"], color="grey", linestyle=":", label="most frequent class")
        axis.set_xscale("log")
        axis.set_title(task)
        axis.set_xlabel("training labels")
        axis.set_ylabel("dev accuracy")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    with files.replacing(path, keep_suffix=True) as partial:
        figure.savefig(partial, dpi=110)
