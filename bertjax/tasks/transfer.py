"""Downstream use of a model pretrained with any objective: BERT's (`pretraining`) or a language-model objective
of `bertjax.tasks.causal_lm` (causal_lm, shifted_lm_unmasked, forward_backward, elmo).

    backbone(objective)        the part of the pretraining model that gives features, under its pretraining
                               parameter names (a pretraining run loads into it as `train.init_checkpoint`)
    PooledClassificationTask   fine-tuning the whole backbone plus a linear classifier, for the one train loop
    TaggingTask                the same for token tagging: a linear classifier on every position of the top layer
    layer_states               a frozen backbone's hidden states: every layer, per token or mean-pooled
    fit_mix_classifier         the feature-based use ELMo proposed: a learned scalar mix of the frozen layers
                               (`bertjax.heads.ScalarMix`), then a linear classifier

Every model is pooled the same way: the mean of a layer's hidden states over the real tokens. A causal model's
first position ([CLS]) has seen nothing else, so BERT's [CLS] pooling would not be fair to it. A layer of the
two-direction models (forward+backward transformers, ELMo) is both directions' states side by side (2D).
Shape letters: S hidden states (embeddings, then each layer), N examples, B batch, L length, D hidden, C classes.
"""

import dataclasses
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bertjax import features, heads, train
from bertjax.model import BertConfig
from bertjax.tasks import causal_lm, glue, ner

OBJECTIVES = ("pretraining", *causal_lm.OBJECTIVES)


def backbone(objective: str, model_config: BertConfig) -> nn.Module:
    """The feature-giving part of `objective`'s model, called (input_ids, attention_mask, position_ids,
    deterministic=) and returning an output whose `hidden_states` are the embeddings, then every layer.
    The LM heads of the forward+backward pair and ELMo stay in (they share parameters with the embeddings
    or are cheap, and what nothing uses is not computed under jit)."""
    if objective in ("pretraining", "causal_lm", "shifted_lm_unmasked"):
        return heads.Encoder(dataclasses.replace(model_config, causal=objective == "causal_lm"))
    if objective in causal_lm.OBJECTIVES:
        return causal_lm.make_model(objective, model_config)
    raise ValueError(f"objective={objective!r}: choose one of {OBJECTIVES}.")


class PooledClassificationTask(glue.ClassificationTask):
    """A sentence or sentence-pair `ClassificationTask` (the built-in `stdlib` and `same_docstring`, or a
    GLUE task) fine-tuned on top of any objective's model: `PooledClassifier`, the backbone loaded from
    `train.init_checkpoint` (a pretraining run of `objective`), the classifier new. A pair is one row,
    [CLS] A [SEP] B [SEP]; segment ids are not used: the language-model objectives have no segment
    embeddings."""

    head = "mean_pooled_classification"

    def __init__(self, config, objective: str):
        super().__init__(config)
        if self.regression:
            raise ValueError(f"{self.name}: mean-pooled fine-tuning takes classification tasks only.")
        self.objective = objective
        self.model = heads.PooledClassifier(backbone(objective, self.model_config), self.spec.num_labels,
                                      self.model_config.hidden_dropout)
        self.identity = {**self.identity, "head": self.head, "objective": objective}

    model_inputs = ("input_ids", "attention_mask")

    def _outputs(self, params, batch, rng):
        return self.apply(params, batch, rng)  # PooledClassifier gives the logits themselves


class TaggingTask(ner.NerTask):
    """CoNLL tagging (`ner.NerTask`'s files, labels and entity F1) fine-tuned on top of any objective's model:
    `PooledTagger`, the backbone from `train.init_checkpoint` (a pretraining run of `objective`), the
    classifier new. A causal backbone tags from the left context alone."""

    def __init__(self, config, objective: str):
        super().__init__(config)
        self.objective = objective
        self.model = heads.PooledTagger(backbone(objective, self.model_config), len(self.labels),
                                        self.model_config.hidden_dropout)
        self.identity = {**self.identity, "head": "tokens_on_backbone", "objective": objective}

    model_inputs = ("input_ids", "attention_mask")


# --- frozen features ----------------------------------------------------------------------------------------
def layer_states(model: nn.Module, params, input_ids: np.ndarray, attention_mask: np.ndarray, *,
                 pooled: bool, batch_size: int = 64) -> np.ndarray:
    """A frozen backbone's hidden states over (N, L) rows: (S, N, L, D) per token, or with `pooled` the mean
    over each row's real tokens, (S, N, D)."""

    @jax.jit
    def run(input_ids, attention_mask):
        states = model.apply({"params": params}, input_ids, attention_mask, heads.row_positions(input_ids)).hidden_states
        if pooled:
            return jnp.stack([features.pool(state, attention_mask, "mean") for state in states])  # S, B, D
        return jnp.stack(states)  # S, B, L, D

    return np.concatenate([np.asarray(run(input_ids[start:start + batch_size],
                                          attention_mask[start:start + batch_size]))
                           for start in range(0, len(input_ids), batch_size)], axis=1)


def standardize(states: np.ndarray, attention_mask: np.ndarray | None = None,
                statistics: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Standardise each hidden state's features, in place: (S, N, D) pooled or (S, N, L, D) per-token states
    (then with the (N, L) `attention_mask`, whose padding does not count). With `statistics` (mean, scale),
    those (a training set's); else the states' own, which are returned. A fixed affine map per feature, which
    a downstream model could learn itself; without it, the scale of each model's states (a post-LN
    transformer's about 1, an LSTM's and a raw embedding's far smaller) decides how fast it does."""
    if statistics is None:
        if attention_mask is None:
            mean, scale = states.mean(axis=1, keepdims=True), states.std(axis=1, keepdims=True)
        else:  # one hidden state at a time: the per-token states are large
            real = attention_mask > 0  # N, L
            mean = np.stack([state[real].mean(axis=0) for state in states])[:, None, None]  # S, 1, 1, D
            scale = np.stack([state[real].std(axis=0) for state in states])[:, None, None]
        statistics = mean.astype(np.float32), (scale + 1e-6).astype(np.float32)
    for state, mean, scale in zip(states, *statistics):
        state -= mean
        state /= scale
    return statistics


def fit_mix_classifier(train_layers: np.ndarray, train_labels: np.ndarray, num_labels: int, *, steps: int = 300,
                       learning_rate: float = 1e-2, l2: float = 1e-3, seed: int = 0):
    """Train a `MixClassifier` on frozen pooled layers (S, N, D): each layer standardised with the training
    set's statistics first (ELMo's optional layer normalisation), full-batch Adam, an L2 penalty on the
    classifier's weights. Returns (predict: (S, M, D) layers -> (M,) labels, the mix's softmax weights (S,),
    its scale gamma)."""
    inputs = train_layers.copy()
    statistics = standardize(inputs)
    inputs = jnp.asarray(inputs)
    model = heads.MixClassifier(num_labels)
    params = model.init(jax.random.PRNGKey(seed), inputs[:, :1])["params"]

    def loss(params):
        logits = model.apply({"params": params}, inputs)
        penalty = l2 * jnp.sum(params["classifier"]["kernel"] ** 2)
        return optax.softmax_cross_entropy_with_integer_labels(logits, train_labels).mean() + penalty

    params = train.fit(loss, params, optax.adam(learning_rate), itertools.repeat((), steps))

    def predict(layers: np.ndarray) -> np.ndarray:
        layers = layers.copy()
        standardize(layers, statistics=statistics)
        return np.asarray(jnp.argmax(model.apply({"params": params}, layers), axis=-1))

    return predict, np.asarray(jax.nn.softmax(params["mix"]["scores"])), float(params["mix"]["gamma"])
