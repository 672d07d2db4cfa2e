"""Output heads over the encoder: the pretraining model, the causal (forward) language model, and the
fine-tuning models (sequence classification, multiple choice, span prediction, token tagging) named as HF
names them; and the language models the objectives of `bertjax.tasks.causal_lm` train (`TransformerLM`,
`ForwardBackwardLM`, all returning `LMOutput`; ELMo's biLSTM is `bertjax.elmo`); and the models over an
encoder's layer states (`PooledClassifier` on any objective's model, ELMo's `ScalarMix`, the feature-based
`MixClassifier` and `FeatureTagger`).

Shape letters: B batch, L length, P predicted positions per sequence, D hidden, V vocab, N choices.
"""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from bertjax import features
from bertjax.model import (ACTIVATIONS, BertConfig, BertModel, EncoderOutput, logical_zeros, make_dense,
                           make_dropout, make_layer_norm)


def gather_positions(hidden: jax.Array, positions: jax.Array) -> jax.Array:
    """(B, L, D) hidden states at (B, P) positions -> (B, P, D)."""
    return jnp.take_along_axis(hidden, positions[:, :, None], axis=1)


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense + activation + LayerNorm, then the decoder tied to the word embeddings.

    The decoder matrix is the embedding table (`word_embeddings.attend`); only its output bias is new.
    """

    config: BertConfig

    @nn.compact
    def __call__(self, hidden: jax.Array, word_embeddings: nn.Embed) -> jax.Array:
        cfg = self.config
        hidden = make_dense(cfg, cfg.hidden_size, ("embed", None), name="transform")(hidden)
        hidden = make_layer_norm(cfg, name="transform_layer_norm")(ACTIVATIONS[cfg.hidden_act](hidden))
        logits = word_embeddings.attend(hidden.astype(cfg.dtype))  # ..., V
        output_bias = self.param("output_bias", logical_zeros(("vocab",)), (cfg.vocab_size,), cfg.param_dtype)
        return logits + output_bias.astype(logits.dtype)


class PretrainingOutput(NamedTuple):
    mlm_logits: jax.Array  # B, P, V at `masked_positions` (B, L, V when scoring every position)
    sentence_logits: jax.Array  # B, 2 (B, E, 2 for packed rows): next-sentence or sentence-order prediction
    encoder: EncoderOutput


class BertForPretraining(nn.Module):
    """The encoder with BERT's two pretraining heads (HF's `BertForPreTraining`).

    Given `masked_positions` (B, P) the MLM head scores only those positions, which saves the
    (B, L, V) logits a full-sequence head would compute; without it every position is scored.
    Given `cls_positions` (B, E) (rows packed with E examples) the sentence head scores each example's
    [CLS]; without it, the first position of each row.
    """

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config)
        self.mlm_head = MaskedLMHead(self.config)
        self.sentence_head = make_dense(self.config, 2, ("embed", None), bias=True)

    def __call__(self, input_ids, segment_ids=None, attention_mask=None, position_ids=None,
                 masked_positions=None, cls_positions=None, *, deterministic: bool = True) -> PretrainingOutput:
        encoder = self.bert(input_ids, segment_ids, attention_mask, position_ids, deterministic=deterministic)
        hidden = encoder.last_hidden_state
        if masked_positions is not None:
            hidden = gather_positions(hidden, masked_positions)
        mlm_logits = self.mlm_head(hidden, self.bert.embeddings.word_embeddings)
        pooled = encoder.pooled_output  # B, D from position 0
        if cls_positions is not None:  # packed rows: each example's [CLS] -> B, E, D
            pooled = self.bert.pool(gather_positions(encoder.last_hidden_state, cls_positions))
        return PretrainingOutput(mlm_logits, self.sentence_head(pooled), encoder)


class BertForCausalLM(nn.Module):
    """A forward language model: the encoder (causal when `config.causal`) and an LM head tied to the word
    embeddings (BERT's MLM head, under `lm_head`) scoring every position: logits (B, L, V) at position t
    predict token t+1. With `decode=True` it runs new tokens against the key/value cache (see
    `BertModel`)."""

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config)
        self.lm_head = MaskedLMHead(self.config)

    def __call__(self, input_ids, segment_ids=None, attention_mask=None, position_ids=None, *,
                 deterministic: bool = True, decode: bool = False) -> "HeadOutput":
        encoder = self.bert(input_ids, segment_ids, attention_mask, position_ids, deterministic=deterministic,
                            decode=decode)
        return HeadOutput(self.lm_head(encoder.last_hidden_state, self.bert.embeddings.word_embeddings), encoder)


class HeadOutput(NamedTuple):
    logits: jax.Array  # B, C (sequence); B, N (choices); B, L, 2 (span: start, end); B, L, C (tokens)
    encoder: EncoderOutput


class BertForSequenceClassification(nn.Module):
    """A classifier (or, with one label, a regressor) on the pooled [CLS] output (HF's
    `BertForSequenceClassification`: dropout, then `classifier`)."""

    config: BertConfig
    num_labels: int

    def setup(self):
        self.bert = BertModel(self.config)
        self.dropout = make_dropout(self.config, self.config.hidden_dropout)
        self.classifier = make_dense(self.config, self.num_labels, ("embed", None), bias=True)

    def __call__(self, input_ids, segment_ids=None, attention_mask=None, position_ids=None, *,
                 deterministic: bool = True) -> HeadOutput:
        encoder = self.bert(input_ids, segment_ids, attention_mask, position_ids, deterministic=deterministic)
        pooled = self.dropout(encoder.pooled_output, deterministic=deterministic)
        return HeadOutput(self.classifier(pooled).astype(jnp.float32), encoder)


class BertForMultipleChoice(nn.Module):
    """A score for each of N candidate sequences per example (HF's `BertForMultipleChoice`): every choice
    through the encoder as a row of its own, dropout on its pooled [CLS], a one-output `classifier`, and
    the scores of an example's choices side by side, to be softmaxed over. The encoder output it returns
    is the flattened (B * N, ...) one."""

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config)
        self.dropout = make_dropout(self.config, self.config.hidden_dropout)
        self.classifier = make_dense(self.config, 1, ("embed", None), bias=True)

    def __call__(self, input_ids, segment_ids=None, attention_mask=None, position_ids=None, *,
                 deterministic: bool = True) -> HeadOutput:
        """(B, N, L) inputs -> (B, N) logits."""
        num_choices = input_ids.shape[1]

        def rows(value):  # B, N, L -> B * N, L
            return None if value is None else value.reshape(-1, value.shape[-1])

        encoder = self.bert(rows(input_ids), rows(segment_ids), rows(attention_mask), rows(position_ids),
                            deterministic=deterministic)
        pooled = self.dropout(encoder.pooled_output, deterministic=deterministic)  # B * N, D
        scores = self.classifier(pooled).astype(jnp.float32)  # B * N, 1
        return HeadOutput(scores.reshape(-1, num_choices), encoder)  # B, N


class BertForQuestionAnswering(nn.Module):
    """Start and end logits at every position (HF's `BertForQuestionAnswering`: `qa_outputs`, no dropout)."""

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config)
        self.qa_outputs = make_dense(self.config, 2, ("embed", None), bias=True)

    def __call__(self, input_ids, segment_ids=None, attention_mask=None, position_ids=None, *,
                 deterministic: bool = True) -> HeadOutput:
        encoder = self.bert(input_ids, segment_ids, attention_mask, position_ids, deterministic=deterministic)
        hidden = self.bert.transform(encoder.last_hidden_state)
        return HeadOutput(self.qa_outputs(hidden).astype(jnp.float32), encoder)


class BertForTokenClassification(nn.Module):
    """A label for every position (HF's `BertForTokenClassification`: dropout, then `classifier`)."""

    config: BertConfig
    num_labels: int

    def setup(self):
        self.bert = BertModel(self.config)
        self.dropout = make_dropout(self.config, self.config.hidden_dropout)
        self.classifier = make_dense(self.config, self.num_labels, ("embed", None), bias=True)

    def __call__(self, input_ids, segment_ids=None, attention_mask=None, position_ids=None, *,
                 deterministic: bool = True) -> HeadOutput:
        encoder = self.bert(input_ids, segment_ids, attention_mask, position_ids, deterministic=deterministic)
        hidden = self.dropout(self.bert.transform(encoder.last_hidden_state), deterministic=deterministic)
        return HeadOutput(self.classifier(hidden).astype(jnp.float32), encoder)


# --- language models: the objectives of bertjax.tasks.causal_lm ---------------------------------------
class LMOutput(NamedTuple):
    next_logits: jax.Array  # B, L, V: position t scores token t+1
    previous_logits: jax.Array | None  # B, L, V: position t scores token t-1 (two-direction models)
    hidden_states: tuple[jax.Array, ...]  # per layer (B, L, D), the input embeddings first


def reverse_rows(input_ids: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each row read right to left: ids, document ids, and positions restarting per (reversed) document."""
    input_ids, attention_mask = input_ids[:, ::-1], attention_mask[:, ::-1]
    index = jnp.arange(input_ids.shape[1])
    starts = jnp.concatenate([jnp.ones_like(attention_mask[:, :1], bool),
                              attention_mask[:, 1:] != attention_mask[:, :-1]], axis=1)
    first = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)  # B, L: where each position's document starts
    return input_ids, attention_mask, index - first


class TransformerLM(BertForCausalLM):
    """`BertForCausalLM` (the same parameters) called as every objective's model is: (ids, document ids,
    positions) -> `LMOutput`."""

    def __call__(self, input_ids, attention_mask, position_ids, *, deterministic: bool = True) -> LMOutput:
        output = super().__call__(input_ids, None, attention_mask, position_ids, deterministic=deterministic)
        return LMOutput(output.logits, None, output.encoder.hidden_states)


class ForwardBackwardLM(nn.Module):
    """Bidirectionality from two one-directional models: a causal transformer LM reading left to right
    (`forward`) and another reading each row right to left (`backward`), trained side by side. Their
    features at each position and layer are concatenated (B, L, 2D), as ELMo concatenates its LSTMs'."""

    config: BertConfig

    def setup(self):
        self.forward = BertForCausalLM(self.config)
        self.backward = BertForCausalLM(self.config)

    def __call__(self, input_ids, attention_mask, position_ids, *, deterministic: bool = True) -> LMOutput:
        ahead = self.forward(input_ids, None, attention_mask, position_ids, deterministic=deterministic)
        reversed_ids, reversed_mask, reversed_positions = reverse_rows(input_ids, attention_mask)
        behind = self.backward(reversed_ids, None, reversed_mask, reversed_positions, deterministic=deterministic)
        hidden_states = tuple(jnp.concatenate([forward, backward[:, ::-1]], axis=-1)
                              for forward, backward in zip(ahead.encoder.hidden_states, behind.encoder.hidden_states))
        return LMOutput(ahead.logits, behind.logits[:, ::-1], hidden_states)


# --- models over an encoder's layer states: fine-tuning any objective's model, the feature-based use ---------
class Encoder(nn.Module):
    """A single transformer stack under the name its pretraining model gives it (`bert`), called as the LM
    objectives' models are: (ids, attention mask, positions) -> `EncoderOutput`."""

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config)

    def __call__(self, input_ids, attention_mask, position_ids, *, deterministic: bool = True):
        return self.bert(input_ids, None, attention_mask, position_ids, deterministic=deterministic)


def row_positions(input_ids: jax.Array) -> jax.Array:
    """(B, L) -> each position's index in its row."""
    return jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)  # B, L


def normalize(pooled: jax.Array) -> jax.Array:
    """Each pooled vector (..., D) to zero mean and unit variance over its D features: a LayerNorm without
    parameters (the classifier after it is affine anyway). Models differ in the scale of their states (a
    post-LN transformer's are about 1, an LSTM's far smaller), which would otherwise set how fast the same
    classifier learns at the same rate."""
    return jax.nn.standardize(pooled, axis=-1, epsilon=1e-6)


class PooledClassifier(nn.Module):
    """A backbone, whose parameters keep their own names (no prefix: `nn.share_scope`), and a classifier on
    the mean of its top layer over real tokens (`attention_mask` > 0), normalized, after dropout."""

    backbone: nn.Module
    num_labels: int
    dropout_rate: float = 0.1

    def setup(self):
        nn.share_scope(self, self.backbone)
        self.pooled_dropout = make_dropout(self.backbone.config, self.dropout_rate)
        self.classifier = make_dense(self.backbone.config, self.num_labels, ("embed", None), bias=True)

    def __call__(self, input_ids, attention_mask, *, deterministic: bool = True) -> jax.Array:
        """(B, L) ids and mask -> (B, C) logits."""
        output = self.backbone(input_ids, attention_mask, row_positions(input_ids), deterministic=deterministic)
        pooled = normalize(features.pool(output.hidden_states[-1], attention_mask, "mean"))  # B, D
        return self.classifier(self.pooled_dropout(pooled, deterministic=deterministic)).astype(jnp.float32)


class PooledTagger(nn.Module):
    """A backbone (its parameters under their own names, as `PooledClassifier`'s) and a label for every
    position from its top layer, after dropout: token tagging on top of any objective's model. A causal
    backbone tags each token from its left context alone."""

    backbone: nn.Module
    num_labels: int
    dropout_rate: float = 0.1

    def setup(self):
        nn.share_scope(self, self.backbone)
        self.tag_dropout = make_dropout(self.backbone.config, self.dropout_rate)
        self.classifier = make_dense(self.backbone.config, self.num_labels, ("embed", None), bias=True)

    def __call__(self, input_ids, attention_mask, *, deterministic: bool = True) -> HeadOutput:
        """(B, L) ids and mask -> (B, L, C) logits."""
        output = self.backbone(input_ids, attention_mask, row_positions(input_ids), deterministic=deterministic)
        hidden = self.tag_dropout(output.hidden_states[-1], deterministic=deterministic)
        return HeadOutput(self.classifier(hidden).astype(jnp.float32), output)


class ScalarMix(nn.Module):
    """ELMo's task-specific combination of layers: gamma * sum_j softmax(s)_j h_j, with s (N,) starting
    equal (an average) and gamma (the task's scale) at 1."""

    @nn.compact
    def __call__(self, layers: Sequence[jax.Array]) -> jax.Array:
        scores = self.param("scores", nn.initializers.zeros_init(), (len(layers),))
        gamma = self.param("gamma", nn.initializers.ones_init(), ())
        weights = jax.nn.softmax(scores)  # N
        return gamma * jnp.einsum("n,n...->...", weights, jnp.stack(layers))


class MixClassifier(nn.Module):
    """ELMo's feature-based classifier: `ScalarMix` over the (S, N, D) pooled layers, then a linear layer."""

    num_labels: int

    @nn.compact
    def __call__(self, layers: jax.Array) -> jax.Array:
        return nn.Dense(self.num_labels, name="classifier")(ScalarMix(name="mix")(list(layers)))  # N, C


TAGGER_COMBINATIONS = ("embeddings", "first", "last", "second_to_last", "sum_last_four", "concat_last_four",
                      "weighted_sum")


def combine_stacked_layers(hidden_states: jax.Array, how: str, layer_weights: jax.Array | None = None) -> jax.Array:
    """(S, B, L, D) stacked hidden states (the embeddings output, then each layer's) -> (B, L, D) or, for
    "concat_last_four", (B, L, 4D): `bertjax.features.combine_layers`, plus "weighted_sum", ELMo's learned mix
    of every layer with (S,) `layer_weights` (softmax-normalised here)."""
    if how not in TAGGER_COMBINATIONS:
        raise ValueError(f"Layer combination {how!r}: choose one of {TAGGER_COMBINATIONS}.")
    if how != "weighted_sum":
        return features.combine_layers(list(hidden_states), how)
    if layer_weights is None:
        raise ValueError("'weighted_sum' needs layer_weights.")
    return jnp.einsum("s,sbld->bld", jax.nn.softmax(layer_weights), hidden_states)


class FeatureTagger(nn.Module):
    """A small tagger over a frozen encoder's features: the chosen layer combination, a bidirectional LSTM,
    and a linear classifier (the BERT paper used two BiLSTM layers of 768 units)."""

    num_labels: int
    how: str
    hidden_size: int = 64

    @nn.compact
    def __call__(self, hidden_states: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """(S, B, L, D) hidden states and (B, L) mask -> (B, L, C) logits."""
        weights = None
        if self.how == "weighted_sum":
            weights = self.param("layer_weights", nn.initializers.zeros, (hidden_states.shape[0],))
        combined = combine_stacked_layers(hidden_states, self.how, weights)
        if self.how == "weighted_sum":  # ELMo's scale on the mix
            combined = combined * self.param("scale", nn.initializers.ones, ())
        lengths = jnp.sum(attention_mask > 0, axis=-1)
        recurrent = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(self.hidden_size)),
                                     nn.RNN(nn.OptimizedLSTMCell(self.hidden_size)))
        return nn.Dense(self.num_labels)(recurrent(combined, seq_lengths=lengths))  # B, L, C
