"""The experiments behind BERT's masked objective, on a corpus read offline from the installed packages, at a
small, equal budget (what they compare: `bertjax.experiments`).

    bertjax reproduce --workdir runs/experiments --output_dir docs/experiments

Writes to --output_dir: `results.md` (every claim as a line with its evidence and a verdict computed from the
numbers, then the tables, samples from the causal LM, the command and its time), `loss_curves.png`,
`learning_curves.png` and `results.json`. Runs complete in --workdir are reused, and so are feature-based
results computed with the same settings, so a rerun only redraws. A `--steps` below its default of 2000
shrinks the fine-tuning and tagger updates in proportion: `--steps 20` is a smoke run of everything.
"""

import pathlib

from absl import flags

from bertjax import cli
from bertjax.experiments import settings as experiment_settings

_DEFAULT = experiment_settings.Settings()
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the tokenizer, data and runs go (runs/experiments, say).",
                               required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the plot and tables go (docs/experiments, say).",
                                  required=True)
_STEPS = flags.DEFINE_integer("steps", _DEFAULT.steps,
                              "Pretraining updates per model; fewer also shrink the later runs.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _DEFAULT.batch_size, "Rows per pretraining update, for every model.",
                                   lower_bound=1)
_MAX_SEQ_LENGTH = flags.DEFINE_integer("max_seq_length", _DEFAULT.seq_length, "Tokens per pretraining row.",
                                       lower_bound=5)
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", _DEFAULT.vocab_size, "SentencePiece vocabulary size.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", _DEFAULT.learning_rate,
                                    "Peak pretraining learning rate, for every model.", lower_bound=0)
_WARMUP = flags.DEFINE_float("warmup_fraction", _DEFAULT.warmup_fraction,
                             "Pretraining warmup, as a share of the updates.", lower_bound=0, upper_bound=1)
_CORPUS = flags.DEFINE_enum("corpus", _DEFAULT.corpus, experiment_settings.CORPORA,
                            "Pretraining corpus: the standard library's and the installed packages' documentation, "
                            "or the standard library's alone.")
_FINETUNE_EPOCHS = flags.DEFINE_float("finetune_epochs", _DEFAULT.finetune_epochs,
                                      "Fine-tuning epochs over a task's training labels.", lower_bound=0)
_MIN_FINETUNE_STEPS = flags.DEFINE_integer("min_finetune_steps", _DEFAULT.min_finetune_steps,
                                           "Fine-tuning updates at the least, however few the labels.", lower_bound=1)
_FINETUNE_BATCH = flags.DEFINE_integer("finetune_batch_size", _DEFAULT.finetune_batch_size,
                                       "Examples per fine-tuning update.", lower_bound=1)
_FINETUNE_RATES = flags.DEFINE_list("finetune_learning_rates", [f"{rate:g}" for rate in _DEFAULT.finetune_learning_rates],
                                    "Peak fine-tuning learning rates: on each learning-curve task, BERT's model and "
                                    "its architecture from scratch are fine-tuned on all labels at each, and the "
                                    "best on dev serves every point of its curve.")
_FINETUNE_LENGTH = flags.DEFINE_integer("finetune_max_seq_length", _DEFAULT.finetune_seq_length,
                                        "Tokens per example (the rest is cut).", lower_bound=3)
_CURVE_SIZES = flags.DEFINE_list("curve_sizes", [str(size) for size in _DEFAULT.curve_sizes],
                                 "Training labels at each learning-curve point; 0 = all.")
_SEEDS = flags.DEFINE_list("seeds", [str(seed) for seed in _DEFAULT.seeds],
                           "Seeds of every fine-tuning point (each draws its own labels).")
_TAGGING_RATE = flags.DEFINE_float("tagging_learning_rate", _DEFAULT.tagging_learning_rate,
                                   "Peak fine-tuning rate on the right-context calls task.", lower_bound=0)
_TAGGER_STEPS = flags.DEFINE_integer("tagger_steps", _DEFAULT.tagger_steps, "Updates of each feature-based tagger.",
                                     lower_bound=1)
_TAGGING_MODELS = flags.DEFINE_list("tagging_models", list(_DEFAULT.tagging_models),
                                    "Models whose layers the feature-layer table compares.")
_SKIP = flags.DEFINE_list("skip", [], f"Parts to leave out: {', '.join(experiment_settings.PARTS)}.")
_ONLY = flags.DEFINE_list("only", None, "Run only these experiments (names in EXPERIMENTS; default: "
                                        f"{', '.join(experiment_settings.DEFAULT_EXPERIMENTS)}).")


def main(argv):
    del argv
    from bertjax import experiments

    numbers = experiment_settings.parse_numbers
    settings = experiments.Settings(
        steps=_STEPS.value, corpus=_CORPUS.value, batch_size=_BATCH_SIZE.value, seq_length=_MAX_SEQ_LENGTH.value,
        vocab_size=_VOCAB_SIZE.value, learning_rate=_LEARNING_RATE.value, warmup_fraction=_WARMUP.value,
        finetune_epochs=_FINETUNE_EPOCHS.value, min_finetune_steps=_MIN_FINETUNE_STEPS.value,
        finetune_batch_size=_FINETUNE_BATCH.value,
        finetune_learning_rates=numbers("finetune_learning_rates", _FINETUNE_RATES.value),
        finetune_seq_length=_FINETUNE_LENGTH.value, curve_sizes=numbers("curve_sizes", _CURVE_SIZES.value, int),
        seeds=numbers("seeds", _SEEDS.value, int), tagging_learning_rate=_TAGGING_RATE.value,
        tagger_steps=_TAGGER_STEPS.value, tagging_models=tuple(_TAGGING_MODELS.value), skip=tuple(_SKIP.value),
        experiments=tuple(_ONLY.value or experiment_settings.DEFAULT_EXPERIMENTS))
    command = " ".join(cli.invocation)
    experiments.reproduce(settings, pathlib.Path(_WORKDIR.value), pathlib.Path(_OUTPUT_DIR.value), command)
