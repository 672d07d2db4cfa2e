"""What every run of the experiments shares (`Settings`, one field per flag of `bertjax reproduce`) and the
models and tasks they compare: plain data, importable without JAX so that the command's `--help` answers at
once."""

import dataclasses

# name: (task, model overrides, what its loss curve shows). The transformers have BERT-tiny's width (hidden 128,
# 2 heads, feed-forward 512) and four layers; the forward+backward pair two such stacks of hidden 96; ELMo two
# 160-wide LSTM layers per direction. Parameter counts stay within 30% of each other.
TRANSFORMER = {"variant": "tiny", "num_layers": 4}
EXPERIMENTS = {
    "bert_mlm": ("pretraining", TRANSFORMER, "mlm_loss"),
    "causal_lm": ("causal_lm", {**TRANSFORMER, "type_vocab_size": 1}, "lm_loss"),
    "shifted_lm_unmasked": ("shifted_lm_unmasked", {**TRANSFORMER, "type_vocab_size": 1}, "lm_loss"),
    "elmo": ("elmo", {"variant": "tiny", "num_layers": 2, "hidden_size": 160}, "lm_loss"),
    "forward_backward": ("forward_backward", {**TRANSFORMER, "type_vocab_size": 1, "hidden_size": 96,
                                              "intermediate_size": 384}, "lm_loss"),
}
# What the claims need: the four first (forward_backward, two separate one-direction transformers, on --only).
DEFAULT_EXPERIMENTS = ("bert_mlm", "causal_lm", "shifted_lm_unmasked", "elmo")
CORPORA = ("builtin:environment", "builtin")  # --corpus: the standard library and installed packages, or the former
PARTS = ("curves", "calls", "tagging")  # what `Settings.skip` may leave out
# The learning curves' tasks (`bertjax.tasks.glue.BUILTIN_TASKS`): a single text and a sentence pair.
CURVE_TASKS = ("stdlib", "same_docstring")
TAGGING_ROWS = ("embeddings", "last", "second_to_last", "sum_last_four", "concat_last_four", "weighted_sum")
COMBINED_ROWS = ("sum_last_four", "concat_last_four", "weighted_sum")  # the combinations of several layers
TAGGING_LENGTH = 64  # tokens per tagged sentence (the data sets keep sentences of at most 40 words)
PROMPTS = ["Return the", "This module provides", "If the file", "Raise ValueError if"]
FULL_STEPS = 2000  # the pretraining budget the later runs' budgets are written for


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every run of the experiments shares; one field per flag of `bertjax reproduce`, of the same
    name (`experiments` is its --only, `DEFAULT_EXPERIMENTS` by default)."""
    steps: int = FULL_STEPS  # pretraining updates per model; fewer also shrink the later runs (see `scaled`)
    corpus: str = CORPORA[0]  # the pretraining corpus (the downstream tasks come from the standard library)
    batch_size: int = 16  # rows per pretraining update, for every model
    seq_length: int = 128  # tokens per pretraining row
    vocab_size: int = 2048  # SentencePiece vocabulary size
    learning_rate: float = 1e-3  # peak pretraining rate, for every model
    warmup_fraction: float = 0.1  # pretraining warmup, as a share of the updates
    finetune_epochs: float = 3.0  # over a task's training labels ...
    min_finetune_steps: int = 100  # ... but at least this many updates (a few labels take many epochs)
    finetune_batch_size: int = 32  # examples per fine-tuning update
    # each curve task's pretrained model and its control from scratch are fine-tuned on all labels at each;
    # the best on dev is used for every point of its curve
    finetune_learning_rates: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)
    finetune_seq_length: int = 64  # tokens per example (the rest is cut)
    curve_sizes: tuple[int, ...] = (32, 128, 512, 0)  # training labels per learning-curve point; 0: all
    seeds: tuple[int, ...] = (1, 2, 3)  # each point's fine-tuning seeds (and label draws)
    tagging_learning_rate: float = 1e-3  # fine-tuning on the calls task
    tagger_steps: int = 1000  # updates of each feature-based tagger
    tagging_models: tuple[str, ...] = ("bert_mlm",)  # whose layers the feature-layer table compares
    skip: tuple[str, ...] = ()  # parts to leave out, of `PARTS`
    experiments: tuple[str, ...] = DEFAULT_EXPERIMENTS

    def __post_init__(self):
        unknown = sorted(set(self.experiments) - set(EXPERIMENTS))
        if unknown:
            raise ValueError(f"--only: unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}.")
        unknown = sorted(set(self.skip) - set(PARTS))
        if unknown:
            raise ValueError(f"--skip: unknown part(s) {unknown}; choose from {', '.join(PARTS)}.")
        if self.corpus not in CORPORA:
            raise ValueError(f"--corpus={self.corpus!r}: choose one of {', '.join(CORPORA)}.")
        if not self.seeds:
            raise ValueError("--seeds: name at least one seed (three give a standard deviation to judge by).")
        if any(size < 0 for size in self.curve_sizes):
            raise ValueError(f"--curve_sizes={list(self.curve_sizes)}: label counts are positive, or 0 for all.")

    def scaled(self, updates: int) -> int:
        """A later run's updates, shrunk in proportion when `steps` is below `FULL_STEPS` (a smoke run)."""
        return max(1, round(updates * min(1.0, self.steps / FULL_STEPS)))


def parse_numbers(flag: str, values: list[str], kind=float) -> tuple:
    """A list flag's strings as numbers."""
    try:
        return tuple(kind(value) for value in values)
    except ValueError as error:
        raise ValueError(f"--{flag}={values}: expected numbers such as "
                         f"{'1e-4,3e-4,1e-3' if kind is float else '1,2,3'}.") from error
