"""The experiments behind BERT's masked objective, on the built-in corpus at a small, equal budget (what they
compare: `bertjax.experiments`).

    bertjax reproduce --workdir runs/experiments --output_dir docs/experiments

Writes to --output_dir: `loss_curves.png`, `results.md` (the tables, the unmasked shifted LM scored again
without sight of the future, samples from the causal LM, the command and its time) and `results.json`.
Pretraining and fine-tuning runs complete in --workdir are reused, and so are feature-based and tagging
results computed with the same settings, so a rerun only redraws. A `--steps` below its default of 300 shrinks
the fine-tuning and tagger updates in proportion: `--steps 20` is a smoke run of everything.
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
_FINETUNE_EPOCHS = flags.DEFINE_float("finetune_epochs", _DEFAULT.finetune_epochs,
                                      "Fine-tuning epochs over the stdlib train split.", lower_bound=0)
_FINETUNE_BATCH = flags.DEFINE_integer("finetune_batch_size", _DEFAULT.finetune_batch_size,
                                       "Docstrings per fine-tuning update.", lower_bound=1)
_FINETUNE_RATES = flags.DEFINE_list("finetune_learning_rates", ["1e-4", "3e-4", "1e-3", "3e-3"],
                                    "Peak fine-tuning learning rates: every model (and its control from scratch) "
                                    "is fine-tuned at each, and the best on dev is reported, as in BERT's paper.")
_FINETUNE_LENGTH = flags.DEFINE_integer("finetune_max_seq_length", _DEFAULT.finetune_seq_length,
                                        "Tokens per docstring (the rest is cut).", lower_bound=3)
_TAGGER_STEPS = flags.DEFINE_integer("tagger_steps", _DEFAULT.tagger_steps, "Updates of each feature-based tagger.",
                                     lower_bound=1)
_TAGGING_MODELS = flags.DEFINE_list("tagging_models", list(_DEFAULT.tagging_models),
                                    "Models whose layers the tagging table compares.")
_SKIP = flags.DEFINE_list("skip", [], f"Parts to leave out: {', '.join(experiment_settings.PARTS)}.")
_ONLY = flags.DEFINE_list("only", None, "Run only these experiments (names in EXPERIMENTS).")


def main(argv):
    del argv
    from bertjax import experiments

    settings = experiments.Settings(
        steps=_STEPS.value, batch_size=_BATCH_SIZE.value, seq_length=_MAX_SEQ_LENGTH.value,
        vocab_size=_VOCAB_SIZE.value, learning_rate=_LEARNING_RATE.value, warmup_fraction=_WARMUP.value,
        finetune_epochs=_FINETUNE_EPOCHS.value, finetune_batch_size=_FINETUNE_BATCH.value,
        finetune_learning_rates=experiment_settings.parse_rates(_FINETUNE_RATES.value),
        finetune_seq_length=_FINETUNE_LENGTH.value, tagger_steps=_TAGGER_STEPS.value,
        tagging_models=tuple(_TAGGING_MODELS.value), skip=tuple(_SKIP.value),
        experiments=tuple(_ONLY.value or experiments.EXPERIMENTS))
    command = " ".join(cli.invocation)
    experiments.reproduce(settings, pathlib.Path(_WORKDIR.value), pathlib.Path(_OUTPUT_DIR.value), command)

