"""The report of `bertjax.experiments.running`'s results: the loss-curve plot and the markdown tables (the
pretraining table, the `stdlib` classification tables, the feature-layer tagging table)."""

import pathlib

import jax

from bertjax import files
from bertjax.experiments.settings import CONTROL, TAGGING_ROWS, Settings
from bertjax.tasks import glue

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


def best_rate(by_rate: dict | None) -> str:
    """The best dev accuracy over the fine-tuning rates, and the rate that gave it."""
    if not by_rate:
        return "-"
    rate, result = max(by_rate.items(), key=lambda item: item[1]["accuracy"])
    return f"{result['accuracy']:.1%} ({rate})"


def _classification_intro(steps: int, rates: list[str], settings: Settings) -> str:
    train_examples = len(glue.stdlib_examples("train"))
    return (f"Downstream, the `stdlib` task (which of {len(glue.STDLIB_PACKAGES)} packages a docstring comes from; "
            f"trained on its {train_examples:,} train docstrings, accuracy on its "
            f"{len(glue.stdlib_examples('validation'))} dev docstrings, each cut to {settings.finetune_seq_length} "
            f"tokens). Fine-tuned: the whole model plus a linear classifier on its mean-pooled top layer, {steps} "
            f"updates of {settings.finetune_batch_size} docstrings "
            f"({steps * settings.finetune_batch_size / train_examples:.1f} "
            f"epochs) at each peak rate of {', '.join(rates)}, the same for every model, the best on dev reported "
            f"with its rate; from scratch: the same architecture and training from random parameters. "
            f"Feature-based: the frozen model's layers, each mean-pooled, ELMo's learned scalar mix, a linear "
            f"classifier; untrained: the same on the architecture's random parameters.")


def classification_table(names: list[str], downstream: dict, settings: Settings) -> list[str]:
    finetuned, scratch = downstream["finetuned"], downstream["scratch"]
    first = next(iter(finetuned.values()), {})  # one model's results by rate: every model has the same rates
    rates = list(first)
    steps = next(iter(first.values()))["steps"] if first else 0
    lines = [_classification_intro(steps, rates, settings), "",
             "| model | fine-tuned | same architecture from scratch | feature-based | feature-based, untrained "
             "| learned mix weights (embeddings first) |", "|---|---:|---:|---:|---:|---|"]
    for name in names:
        feature = downstream["feature_based"].get(name)
        weights = ", ".join(f"{w:.2f}" for w in feature["mix_weights"]) if feature else "-"
        lines.append(f"| {name} | {best_rate(finetuned.get(name))} | {best_rate(scratch.get(CONTROL[name]))} | "
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


def report(results: dict, downstream: dict, seconds: dict, command: str, settings: Settings) -> str:
    """The whole markdown report: how it was made, then every table, the probe and the samples."""
    parts = ", ".join(f"{part} {value / 60:.1f} min" for part, value in seconds.items() if part != "invocation")
    lines = [f"Command: `{command}`; it took {seconds['invocation'] / 60:.1f} min on {jax.device_count()} "
             f"{jax.devices()[0].platform} device(s), reusing whatever runs and results --workdir held. Compute "
             f"of each part, as first done: {parts}.", "",
             f"Pretraining, each model: {settings.steps} updates of {settings.batch_size} rows x "
             f"{settings.seq_length} tokens; vocabulary {settings.vocab_size}.", "", *pretraining_table(results)]
    names = list(results)
    if downstream["finetuned"] or downstream["feature_based"]:
        lines += ["", *classification_table(names, downstream, settings)]
    if downstream["tagging"]:
        lines += ["", *tagging_table(downstream, settings)]
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
    def total(*groups):
        return sum(result["seconds"] for group in groups for result in group.values())

    finetuning = [by_rate for group in ("finetuned", "scratch") for by_rate in downstream[group].values()]
    return {"pretraining": total(results), "fine-tuning": total(*finetuning),
            "feature-based": total(downstream["feature_based"], downstream["feature_based_untrained"]),
            "tagging": total(downstream["tagging"])}
