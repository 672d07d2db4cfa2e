"""ELMo (Peters et al., 2018), the baseline BERT argues against: a two-layer bidirectional LSTM language model
on token inputs, and its features for downstream use.

A forward LSTM LM reads left to right and predicts token t+1; a backward LSTM LM reads right to left and
predicts token t-1. They share the token embedding and the softmax (here tied to the embedding, plus an
output bias), are trained together on the sum of both log likelihoods, and never see each other: each
direction alone is a proper language model. As in ELMo, a residual connection joins the LSTM layers.

ELMo's features for a downstream task are its layers, each the concatenation of both directions (B, L, 2D),
the token layer being the embedding twice, combined by a learned scalar mix: gamma * sum_j softmax(s)_j h_j
(`bertjax.heads.ScalarMix`), trained with the downstream model.

The sizes come from the `model` group: `vocab_size`, `hidden_size` (embedding and LSTM width),
`num_layers` (LSTM layers per direction), `hidden_dropout`, `initializer_range`. Rows packed with several
documents run through the LSTMs whole (ELMo, too, carried its state across sentences); predictions never
cross a document boundary.

Shape letters: B batch, L length, D hidden, V vocab, N layers.
"""

import flax.linen as nn
import jax.numpy as jnp

from bertjax.heads import LMOutput
from bertjax.model import BertConfig, logical_normal, logical_zeros, make_dropout


class ElmoLM(nn.Module):
    """The biLSTM LM: `embed` (shared), `forward_i` and `backward_i` LSTM layers, `output_bias` (shared)."""

    config: BertConfig

    def setup(self):
        cfg = self.config
        self.embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, param_dtype=cfg.param_dtype,
                              embedding_init=logical_normal(cfg, ("vocab", "embed")))

        def lstm(reverse, index):
            cell = nn.OptimizedLSTMCell(cfg.hidden_size, param_dtype=cfg.param_dtype)
            return nn.RNN(cell, reverse=reverse, keep_order=True,
                          name=f"{'backward' if reverse else 'forward'}_{index}")

        self.forward_layers = [lstm(False, index) for index in range(cfg.num_layers)]
        self.backward_layers = [lstm(True, index) for index in range(cfg.num_layers)]
        self.dropout = make_dropout(cfg, cfg.hidden_dropout)
        self.output_bias = self.param("output_bias", logical_zeros(("vocab",)), (cfg.vocab_size,), cfg.param_dtype)

    def __call__(self, input_ids, attention_mask, position_ids=None, *, deterministic: bool = True) -> LMOutput:
        """`position_ids` is unused (an LSTM knows where it is); it keeps the objectives' common signature."""
        del position_ids
        # Rows are right-padded: the backward LSTMs start at each row's last real token.
        lengths = jnp.sum(attention_mask > 0, axis=-1, dtype=jnp.int32)  # B
        tokens = self.embed(input_ids)  # B, L, D
        layers = [jnp.concatenate([tokens, tokens], axis=-1)]  # the token layer, as ELMo: both halves the same
        forward = backward = self.dropout(tokens, deterministic=deterministic)
        for index, (forward_lstm, backward_lstm) in enumerate(zip(self.forward_layers, self.backward_layers)):
            new_forward = forward_lstm(forward, seq_lengths=lengths)
            new_backward = backward_lstm(backward, seq_lengths=lengths)
            if index > 0:  # the residual connection between LSTM layers
                new_forward, new_backward = new_forward + forward, new_backward + backward
            layers.append(jnp.concatenate([new_forward, new_backward], axis=-1))  # B, L, 2D
            forward = self.dropout(new_forward, deterministic=deterministic)
            backward = self.dropout(new_backward, deterministic=deterministic)
        next_logits = self.embed.attend(forward) + self.output_bias  # B, L, V
        previous_logits = self.embed.attend(backward) + self.output_bias
        return LMOutput(next_logits, previous_logits, tuple(layers))
