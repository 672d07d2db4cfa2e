"""Model FLOPs counted by hand, XLA's count of a compiled step, and the peak FLOP/s of the chips: what MFU is
computed from, by the train loop and by the benchmark harness alike.

Model FLOPs of one pretraining step (forward + backward = 3 x forward; a multiply-add is 2 FLOPs), for B rows of
L tokens with P predicted positions each, hidden size D, N layers, vocabulary V:

    6 x (parameters of the N encoder layers) x tokens          the dense layers: every token through every layer
  + 12 x N x B x L^2 x D                                        attention scores (Q K^T) and the weighted sum (P V)
                                                                (a local layer: L x min(L, window + 1) keys)
  + 6 x B x P x (D^2 + D x V)                                   the MLM head on the predicted positions
  + 6 x B x (D^2 + 2 D)                                         pooler and sentence head

"Tokens" are all B x L positions for the hardware's work, or only the real ones for MFU counting real tokens.
"""

import time

import jax
import jax.numpy as jnp

from bertjax.model import BertConfig

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets (NVIDIA SXM parts, without sparsity).
PEAK_FLOPS = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12,
}


def encoder_layer_parameters(config: BertConfig) -> int:
    d, f = config.hidden_size, config.intermediate_size
    bias = int(config.dense_bias)
    attention = 4 * d * d + 4 * d * bias  # query, key, value, output kernels and biases
    inner = 2 * f if config.gated_mlp else f  # a GLU's input and gate
    feed_forward = d * inner + f * d + (inner + d) * bias
    layer_norms = 2 * d * (1 + int(config.norm_bias))
    return config.num_layers * (attention + feed_forward + layer_norms)


def analytic_flops(config: BertConfig, batch: int, length: int, predictions: int, tokens: int | None = None) -> float:
    """Model FLOPs of one training step (see the module docstring). `tokens` (default B x L) counts the
    positions that go through the dense layers; attention always spans the whole rows."""
    d, v = config.hidden_size, config.vocab_size
    tokens = batch * length if tokens is None else tokens
    dense = 6 * encoder_layer_parameters(config) * tokens
    local_keys = min(length, config.local_attention_window // 2 * 2 + 1)
    global_layers = sum(bool(config.is_global_layer(index)) for index in range(config.num_layers))
    keys = global_layers * length + (config.num_layers - global_layers) * local_keys  # summed over the layers
    attention = 12 * batch * length * keys * d
    mlm_head = 6 * batch * predictions * (d * d + d * v)
    sentence = 6 * batch * (d * d + 2 * d)
    return float(dense + attention + mlm_head + sentence)


def known_peak(device=None) -> tuple[str, float] | None:
    """(name, bf16 peak FLOP/s) of a chip in `PEAK_FLOPS`, matched on its device kind; None if unknown."""
    kind = (device or jax.devices()[0]).device_kind
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return name, flops
    return None


def measured_peak(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large jitted matrix multiplication on this device: the practical peak where none is
    known (a CPU). The best of `repeats` timings."""
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = min(_timed(lambda: matmul(a).block_until_ready()) for _ in range(repeats))
    return 2 * size ** 3 / best


def peak_flops(dtype: str = "float32") -> tuple[str, float]:
    """The peak to compute MFU against: the data sheet's for known chips, else measured."""
    known = known_peak()
    if known:
        return f"{known[0]} bf16 data sheet", known[1]
    return f"measured {dtype} matmul on {jax.devices()[0].device_kind}", measured_peak(dtype)


def xla_flops(compiled) -> float | None:
    """FLOPs per device of a compiled computation, from XLA's cost analysis (None where it gives none)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
