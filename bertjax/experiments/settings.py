"""What every run of the experiments shares (`Settings`, one field per flag of `bertjax reproduce`) and the
models they compare: plain data, importable without JAX so that the command's `--help` answers at once."""

import dataclasses

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
PARTS = ("finetune", "scratch", "features", "tagging")  # what `Settings.skip` may leave out
TAGGING_ROWS = ("embeddings", "last", "second_to_last", "sum_last_four", "concat_last_four", "weighted_sum")
TAGGING_LENGTH = 64  # tokens per tagged sentence (the data set keeps sentences of at most 40 words)
PROMPTS = ["Return the", "This module provides", "If the file", "Raise ValueError if"]
FULL_STEPS = 300  # the pretraining budget the later runs' budgets are written for


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every run of the experiments shares; one field per flag of `bertjax reproduce`, of the same
    name (`experiments` is its --only, all of `EXPERIMENTS` by default)."""
    steps: int = FULL_STEPS  # pretraining updates per model; fewer also shrink the later runs (see `scaled`)
    batch_size: int = 16  # rows per pretraining update, for every model
    seq_length: int = 128  # tokens per pretraining row
    vocab_size: int = 2048  # SentencePiece vocabulary size
    learning_rate: float = 1e-3  # peak pretraining rate, for every model
    warmup_fraction: float = 0.1  # pretraining warmup, as a share of the updates
    finetune_epochs: float = 3.0  # over the stdlib train split
    finetune_batch_size: int = 32  # docstrings per fine-tuning update
    # every model (and its control from scratch) is fine-tuned at each; the best on dev is reported
    finetune_learning_rates: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)
    finetune_seq_length: int = 64  # tokens per docstring (the rest is cut)
    tagger_steps: int = 1000  # updates of each feature-based tagger
    tagging_models: tuple[str, ...] = ("bert_mlm", "causal_lm", "elmo")  # whose layers the tagging table compares
    skip: tuple[str, ...] = ()  # parts to leave out, of `PARTS`
    experiments: tuple[str, ...] = tuple(EXPERIMENTS)

    def __post_init__(self):
        unknown = sorted(set(self.experiments) - set(EXPERIMENTS))
        if unknown:
            raise ValueError(f"--only: unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}.")
        unknown = sorted(set(self.skip) - set(PARTS))
        if unknown:
            raise ValueError(f"--skip: unknown part(s) {unknown}; choose from {', '.join(PARTS)}.")

    def scaled(self, updates: int) -> int:
        """A later run's updates, shrunk in proportion when `steps` is below `FULL_STEPS` (a smoke run)."""
        return max(1, round(updates * min(1.0, self.steps / FULL_STEPS)))


def parse_rates(values: list[str]) -> tuple[float, ...]:
    """--finetune_learning_rates' strings as numbers."""
    try:
        return tuple(float(rate) for rate in values)
    except ValueError as error:
        raise ValueError(f"--finetune_learning_rates={values}: expected numbers such as 1e-4,3e-4,1e-3.") from error
