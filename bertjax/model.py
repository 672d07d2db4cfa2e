"""The BERT encoder: embeddings, self-attention blocks and the pooler, in Flax Linen.

Parameter names mirror HuggingFace BERT's (`embeddings/word_embeddings`, `encoder/layer_3/intermediate`,
`pooler`, ...) so that `convert.py` is a table of renames, and every parameter carries logical axis
names (`vocab`, `embed`, `heads`, `head_dim`, `mlp`) that `sharding.py` maps onto a device mesh.

Shape letters: B batch, L length, D hidden, H heads, K head size, F feed-forward, V vocab.
"""

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=False),  # BERT's exact (erf) GELU
    "gelu_tanh": functools.partial(nn.gelu, approximate=True),
    "relu": nn.relu,
    "silu": nn.silu,  # with gated_mlp: SwiGLU
}

POSITION_EMBEDDINGS = ("learned", "rotary")
POOLERS = ("tanh", "prediction_head")
POOLINGS = ("cls", "mean")

# "manual" is the hand-written path and the only one with attention-probability dropout (BERT's 0.1);
# "xla" and "cudnn" are jax.nn.dot_product_attention's implementations; "auto" takes "manual" while
# attention dropout is active and "xla" otherwise (evaluation, or attention_dropout=0).
ATTENTION_IMPLS = ("auto", "manual", "xla", "cudnn")

# Rematerialisation of each layer in the backward pass: "none" keeps every activation; "full" keeps only
# each layer's input and recomputes the rest; "dots" keeps the matrix-multiplication outputs.
REMAT_POLICIES = {"none": None, "full": None, "dots": jax.checkpoint_policies.checkpoint_dots}

# How the backward pass of a dense layer computes the input gradient dy @ W^T. "xla" leaves it to the
# compiler; "transposed_kernel" first copies W^T (a small array) so that the large product is a plain
# row-major matrix multiplication, which XLA:CPU's kernels run about 20% faster than the transposed form
# (docs/performance.md). "auto" is "transposed_kernel" on CPU and "xla" elsewhere.
DENSE_BACKWARDS = ("auto", "xla", "transposed_kernel")

# Dropout's random bits: "bits16" (`Dropout`: 16 random bits per element, half the threefry work) or "flax"
# (flax's `nn.Dropout`: a 32-bit uniform number per element). The same expected output; other masks.
DROPOUT_IMPLS = ("bits16", "flax")

# BERT sizes: tiny..medium are Turc et al.'s compact models (google-research/bert), base and large the
# paper's. Heads are 64 wide and the feed-forward layer 4x the hidden size throughout.
VARIANTS = {
    "tiny": dict(num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024),
    "small": dict(num_layers=4, hidden_size=512, num_heads=8, intermediate_size=2048),
    "medium": dict(num_layers=8, hidden_size=512, num_heads=8, intermediate_size=2048),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072),
    "large": dict(num_layers=24, hidden_size=1024, num_heads=16, intermediate_size=4096),
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Every size and switch of the encoder. Defaults are BERT-base with the uncased 30,522 vocab."""

    vocab_size: int = 30522  # token ids; unset in a config: the tokenizer's size
    hidden_size: int = 768  # D, the width of every layer
    num_layers: int = 12  # Transformer blocks
    num_heads: int = 12  # attention heads per block; hidden_size / num_heads is the head size
    intermediate_size: int = 3072  # F, the feed-forward layer's inner width (BERT: 4 D)
    hidden_act: str = "gelu"  # the feed-forward activation: see ACTIVATIONS
    hidden_dropout: float = 0.1  # dropout on embeddings and on each sub-layer's output
    attention_dropout: float = 0.1  # dropout on the attention probabilities
    max_position_embeddings: int = 512  # the longest row the learned positions cover
    type_vocab_size: int = 2  # segment ids (sentence A and B)
    layer_norm_eps: float = 1e-12  # added to the variance in every LayerNorm
    initializer_range: float = 0.02  # standard deviation of the truncated-normal initial weights
    pre_layer_norm: bool = False  # False: the original post-LN BERT
    causal: bool = False  # True: each position sees only itself and earlier ones (GPT-style)
    dtype: str = "float32"  # compute dtype of matrix multiplications
    param_dtype: str = "float32"  # dtype of the stored parameters
    attention_impl: str = "auto"  # auto | manual | xla | cudnn (ATTENTION_IMPLS)
    remat: str = "none"  # rematerialise in the backward pass: none | full | dots (REMAT_POLICIES)
    scan_layers: bool = False  # one scanned layer (parameters stacked on a leading "layers" axis): fast compiles
    dense_backward: str = "auto"  # the dense layers' backward pass: auto | xla | transposed_kernel (DENSE_BACKWARDS)
    dropout_impl: str = "bits16"  # how dropout masks are drawn: bits16 | flax (DROPOUT_IMPLS)
    # The modern-encoder switches (ModernBERT's recipe sets them all; BERT's defaults leave them off).
    position_embedding: str = "learned"  # learned (a table of max_position_embeddings rows) | rotary (RoPE)
    rope_theta: float = 10000.0  # RoPE's base in the global-attention layers
    local_rope_theta: float = 10000.0  # RoPE's base in the local (sliding-window) layers
    gated_mlp: bool = False  # feed-forward act(x W_in) * (x W_gate) -> W_out: GeGLU with gelu, SwiGLU with silu
    dense_bias: bool = True  # biases in the attention, feed-forward and head-transform dense layers
    norm_bias: bool = True  # the LayerNorms' offsets (False: scale only)
    first_layer_attention_norm: bool = True  # pre-LN only; False: layer 0's attention reads the embeddings' LayerNorm
    global_attention_every: int = 1  # layer i attends to the whole row when i % k == 0, else within a local window
    local_attention_window: int = 128  # a local layer's query sees keys at most window // 2 positions away
    pooler: str = "tanh"  # sentence summary: tanh (BERT's dense + tanh) | prediction_head (dense, act, LayerNorm)
    pooling: str = "cls"  # what the pooler reads: cls (the first position) | mean (of the row's tokens)

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; "
                "choose sizes where hidden_size = num_heads x head size.")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}.")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl={self.attention_impl!r} is not one of {ATTENTION_IMPLS}.")
        if self.dense_backward not in DENSE_BACKWARDS:
            raise ValueError(f"dense_backward={self.dense_backward!r} is not one of {DENSE_BACKWARDS}.")
        if self.dropout_impl not in DROPOUT_IMPLS:
            raise ValueError(f"dropout_impl={self.dropout_impl!r} is not one of {DROPOUT_IMPLS}.")
        for name, choices in (("position_embedding", POSITION_EMBEDDINGS), ("pooler", POOLERS),
                              ("pooling", POOLINGS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {choices}.")
        if self.position_embedding == "rotary" and self.head_dim % 2:
            raise ValueError(f"Rotary positions rotate pairs of head dimensions; head size {self.head_dim} is odd.")
        if self.global_attention_every < 1 or self.local_attention_window < 2:
            raise ValueError(f"global_attention_every={self.global_attention_every} must be >= 1 and "
                             f"local_attention_window={self.local_attention_window} >= 2.")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r} is not one of {sorted(REMAT_POLICIES)}.")
        if self.attention_impl in ("xla", "cudnn") and self.attention_dropout > 0:
            raise ValueError(
                f"attention_impl={self.attention_impl!r} has no attention dropout, but "
                f"attention_dropout={self.attention_dropout}; set attention_dropout=0 or use "
                "attention_impl='manual' (or 'auto').")
        for name in ("dtype", "param_dtype"):
            try:
                jnp.dtype(getattr(self, name))
            except TypeError:
                raise ValueError(f"{name}={getattr(self, name)!r} is not a dtype name "
                                 "(float32, bfloat16, float16).") from None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def has_local_layers(self) -> bool:
        return self.global_attention_every > 1

    def is_global_layer(self, index):
        """Whether layer `index` (an int, or a traced array in scanned layers) attends to the whole row."""
        return index % self.global_attention_every == 0

    @classmethod
    def from_variant(cls, variant: str, **overrides: Any) -> "BertConfig":
        if variant not in VARIANTS:
            raise ValueError(f"Unknown model variant {variant!r}; choose one of {list(VARIANTS)}.")
        return cls(**{**VARIANTS[variant], **overrides})

    @classmethod
    def from_config(cls, model_config: Mapping[str, Any]) -> "BertConfig":
        """From a config's `model` group: a `variant` name plus fields that override it (None = keep)."""
        values = {key: value for key, value in dict(model_config).items() if value is not None}
        variant = values.pop("variant", None)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown model config key(s) {unknown}; known keys: {sorted(known)}.")
        return cls.from_variant(variant, **values) if variant else cls(**values)


def logical_normal(config: BertConfig, axes: tuple[str | None, ...]):
    """BERT's truncated-normal initialiser, annotated with logical axis names."""
    return nn.with_logical_partitioning(nn.initializers.truncated_normal(config.initializer_range), axes)


def logical_zeros(axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def make_layer_norm(config: BertConfig, name: str | None = None) -> nn.LayerNorm:
    # LayerNorm statistics stay in float32 whatever the compute dtype.
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=jnp.float32, param_dtype=config.param_dtype, use_bias=config.norm_bias,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
        bias_init=logical_zeros(("embed",)), name=name)


@jax.custom_vjp
def _matmul_transposed_kernel_backward(inputs: jax.Array, kernel: jax.Array) -> jax.Array:
    """(N, I) @ (I, O), whose backward multiplies by an explicit copy of kernel^T."""
    return inputs @ kernel


def _matmul_forward(inputs, kernel):
    return inputs @ kernel, (inputs, kernel)


def _matmul_backward(residuals, output_grad):
    inputs, kernel = residuals
    # The barrier keeps XLA from folding the transpose back into the product.
    kernel_t = jax.lax.optimization_barrier(kernel.T)
    return output_grad @ kernel_t, jnp.einsum("ni,no->io", inputs, output_grad)


_matmul_transposed_kernel_backward.defvjp(_matmul_forward, _matmul_backward)


def dense_product(config: BertConfig, inputs: jax.Array, kernel: jax.Array, contracting: int) -> jax.Array:
    """inputs (..., *C) times kernel (*C, *O) over the `contracting` trailing input axes -> (..., *O)."""
    choice = config.dense_backward
    if choice == "auto":
        choice = "transposed_kernel" if jax.default_backend() == "cpu" else "xla"
    if choice == "xla":
        return jax.lax.dot_general(
            inputs, kernel, ((tuple(range(inputs.ndim - contracting, inputs.ndim)), tuple(range(contracting))),
                             ((), ())))
    batch_shape, inner = inputs.shape[:inputs.ndim - contracting], inputs.shape[inputs.ndim - contracting:]
    outer = kernel.shape[contracting:]
    flat = _matmul_transposed_kernel_backward(inputs.reshape(-1, math.prod(inner)),
                                              kernel.reshape(math.prod(inner), -1))
    return flat.reshape(*batch_shape, *outer)


def make_dense(config: BertConfig, features: int, axes: tuple[str | None, ...],
               name: str | None = None, bias: bool | None = None) -> nn.Dense:
    """A dense layer; with a bias when `bias` says so (None: `config.dense_bias`; output layers pass True)."""
    def dot_general(inputs, kernel, dimension_numbers, precision=None, **unused):
        del dimension_numbers, precision, unused  # always Dense's: last input axis with the kernel's first
        return dense_product(config, inputs, kernel, 1)

    return nn.Dense(features, dtype=config.dtype, param_dtype=config.param_dtype, dot_general=dot_general,
                    use_bias=config.dense_bias if bias is None else bias, kernel_init=logical_normal(config, axes), bias_init=logical_zeros(axes[1:]), name=name)


def attention_allowed(attention_mask: jax.Array, causal: bool, window: int | None = None) -> jax.Array:
    """Which key each query may attend to: (B, L) ids -> (B, 1, L, L) booleans.

    `attention_mask` holds 0 for padding and a positive id per example: 1 everywhere for ordinary
    rows; 1, 2, 3, ... for rows packed with several examples, which must not see each other. With a
    `window` (local attention) a query sees only keys at most window // 2 positions away.
    """
    same_example = attention_mask[:, :, None] == attention_mask[:, None, :]  # B, Lq, Lk
    allowed = same_example & (attention_mask[:, None, :] > 0)
    index = jnp.arange(attention_mask.shape[-1])
    if causal:
        allowed &= index[:, None] >= index[None, :]
    if window is not None:
        allowed &= jnp.abs(index[:, None] - index[None, :]) <= window // 2
    return allowed[:, None]


def select(flag, if_true, if_false):
    """`if_true` or `if_false` by a Python bool, or elementwise by a traced one (scanned layers)."""
    if isinstance(flag, bool):
        return if_true if flag else if_false
    return jnp.where(flag, if_true, if_false)


def rotary_angles(position_ids: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """RoPE's (cos, sin) for (B, L) positions -> each (B, L, 1, K) in float32: the pair (i, i + K/2) of a
    head is rotated by the angle position / theta^(2i / K)."""
    inverse_frequency = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)  # K/2
    angles = position_ids[..., None].astype(jnp.float32) * inverse_frequency  # B, L, K/2
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # B, L, 1, K
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """(B, L, H, K) queries or keys rotated by `rotary_angles`, computed in float32."""
    first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([-second, first], axis=-1)
    return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


class ShapedDense(nn.Module):
    """A dense layer over whole-shaped kernels ((D, H, K) for query/key/value, (H, K, D) for the attention
    output), contracting the kernel's leading axes that the bias does not have: flax's DenseGeneral
    initialises a flattened kernel, which its logical axis names do not fit."""

    config: BertConfig
    kernel_shape: tuple[int, ...]
    kernel_axes: tuple[str, ...]
    bias_axes: tuple[str, ...]

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        cfg = self.config
        kernel = self.param("kernel", logical_normal(cfg, self.kernel_axes), self.kernel_shape, cfg.param_dtype)
        contracting = len(self.kernel_shape) - len(self.bias_axes)
        if not cfg.dense_bias:
            inputs, kernel = nn.dtypes.promote_dtype(inputs, kernel, dtype=cfg.dtype)
            return dense_product(cfg, inputs, kernel, contracting)
        bias_shape = self.kernel_shape[-len(self.bias_axes):]
        bias = self.param("bias", logical_zeros(self.bias_axes), bias_shape, cfg.param_dtype)
        inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=cfg.dtype)
        return dense_product(cfg, inputs, kernel, contracting) + bias


class SelfAttention(nn.Module):
    """Multi-head self-attention with query/key/value kernels shaped (D, H, K) for head sharding.

    `is_global` (a Python bool, or a traced one in scanned layers) says whether this layer sees the whole
    row or a local window (`config.local_attention_window`), and which RoPE base it uses."""

    config: BertConfig

    @nn.compact
    def __call__(self, hidden: jax.Array, attention_mask: jax.Array, deterministic: bool,
                 position_ids: jax.Array, is_global=True, decode: bool = False) -> jax.Array:
        cfg = self.config
        heads, head_dim = (cfg.num_heads, cfg.head_dim), ("heads", "head_dim")

        def projection(name):
            return ShapedDense(cfg, (cfg.hidden_size, *heads), ("embed", *head_dim), head_dim, name=name)

        query = projection("query")(hidden)  # B, L, H, K
        key = projection("key")(hidden)
        value = projection("value")(hidden)
        if cfg.position_embedding == "rotary":
            cos, sin = rotary_angles(position_ids, cfg.head_dim, cfg.rope_theta)
            if cfg.has_local_layers and cfg.local_rope_theta != cfg.rope_theta:
                local_cos, local_sin = rotary_angles(position_ids, cfg.head_dim, cfg.local_rope_theta)
                cos, sin = select(is_global, cos, local_cos), select(is_global, sin, local_sin)
            query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        output = ShapedDense(cfg, (*heads, cfg.hidden_size), (*head_dim, "embed"), ("embed",), name="output")

        if decode:
            return output(self._cached_attention(query, key, value, position_ids, is_global))

        dropout_active = not deterministic and cfg.attention_dropout > 0
        impl = cfg.attention_impl
        if impl == "auto":
            impl = "manual" if dropout_active else "xla"
        if impl in ("manual", "xla"):
            allowed = attention_allowed(attention_mask, cfg.causal)
            if cfg.has_local_layers:
                local = attention_allowed(attention_mask, cfg.causal, cfg.local_attention_window)
                allowed = select(is_global, allowed, local)
            if impl == "manual":
                context = self._manual_attention(query, key, value, allowed, deterministic)
            else:
                context = jax.nn.dot_product_attention(query, key, value, mask=allowed, implementation="xla")
        else:
            # cuDNN's fused kernel takes padding as lengths: right-padded rows, no packed examples.
            if not isinstance(is_global, bool):
                raise ValueError("attention_impl='cudnn' takes its local window as a Python number, which "
                                 "scanned layers with local attention do not have; set scan_layers=False.")
            half = cfg.local_attention_window // 2
            window = None if is_global else (half, 0 if cfg.causal else half)
            lengths = jnp.sum(attention_mask > 0, axis=-1, dtype=jnp.int32)
            context = jax.nn.dot_product_attention(
                query, key, value, query_seq_lengths=lengths, key_value_seq_lengths=lengths,
                is_causal=cfg.causal, local_window_size=window, implementation="cudnn")
        return output(context)

    def _cached_attention(self, query, key, value, cache_positions, is_global):
        """Decoding with a key/value cache (Flax's `cache` collection): the new tokens' keys and values are
        written at their `cache_positions` (B, L) of cache arrays (B, C, H, K), and each new token attends
        to the cache up to its own position. Positions may differ between rows (prompts of different
        lengths); a slot past a row's position may hold stale values but is never attended to. The first
        call (`init`) only creates the cache: its input's length C is the longest sequence it can hold."""
        cfg = self.config
        if not cfg.causal:
            raise ValueError("Decoding with a key/value cache needs a causal model (model.causal=True): a "
                             "bidirectional model's earlier positions change with every new token.")
        initialised = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        if not initialised:
            return jnp.zeros_like(query)
        rows = jnp.arange(key.shape[0])[:, None]  # B, 1
        cached_key.value = cached_key.value.at[rows, cache_positions].set(key)
        cached_value.value = cached_value.value.at[rows, cache_positions].set(value)
        slots = jnp.arange(cached_key.value.shape[1])[None, None, :]
        allowed = slots <= cache_positions[:, :, None]  # B, L, C
        if cfg.has_local_layers:
            local = allowed & (slots >= cache_positions[:, :, None] - cfg.local_attention_window // 2)
            allowed = select(is_global, allowed, local)
        return self._manual_attention(query, cached_key.value, cached_value.value, allowed[:, None], True)

    def _manual_attention(self, query, key, value, allowed, deterministic):
        """Attention where `allowed` (B, 1, Lq, Lk) says which key each query may see."""
        cfg = self.config
        # Scores and softmax in float32 whatever the compute dtype.
        scores = jnp.einsum("bqhk,bshk->bhqs", query, key, preferred_element_type=jnp.float32)
        scores = scores / math.sqrt(cfg.head_dim)  # B, H, Lq, Lk
        scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1)
        probs = make_dropout(cfg, cfg.attention_dropout)(probs, deterministic=deterministic)
        return jnp.einsum("bhqs,bshk->bqhk", probs.astype(value.dtype), value)  # B, L, H, K


class Dropout(nn.Module):
    """Inverted dropout, drawing 16 random bits per element.

    flax's nn.Dropout draws a 32-bit uniform number per element; here every 32-bit threefry draw serves
    two elements, which halves the random-number work (docs/performance.md). The keep probability is
    round((1 - rate) * 2^16) / 2^16, within 2^-17 of 1 - rate, and kept values are scaled by exactly its
    inverse, so the expected output equals the input."""

    rate: float

    @nn.compact
    def __call__(self, inputs: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return inputs
        if self.rate >= 1.0:  # no threshold keeps anything (and 2^16 / 0 has no value)
            return jnp.zeros_like(inputs)
        threshold = round((1.0 - self.rate) * 2**16)
        *lead, last = inputs.shape
        words = jax.random.bits(self.make_rng("dropout"), (*lead, (last + 1) // 2), jnp.uint32)
        halves = (words[..., None] >> jnp.array([0, 16], jnp.uint32)) & 0xFFFF
        keep = halves.reshape(*lead, -1)[..., :last] < threshold
        return jnp.where(keep, inputs * (2**16 / threshold), jnp.zeros_like(inputs))


def make_dropout(config: BertConfig, rate: float) -> nn.Module:
    """The dropout `config.dropout_impl` chooses, called as `dropout(x, deterministic=...)`."""
    return Dropout(rate) if config.dropout_impl == "bits16" else nn.Dropout(rate)


class BertLayer(nn.Module):
    """One transformer block: self-attention, then the position-wise feed-forward network.

    `layer_index` places the block in the stack (which attention kind it has; whether it is the first);
    scanned layers pass it traced, as `scan_index`, instead."""

    config: BertConfig
    layer_index: int = 0

    @nn.compact
    def __call__(self, hidden: jax.Array, attention_mask: jax.Array, deterministic: bool,
                 position_ids: jax.Array, decode: bool = False, scan_index: jax.Array | None = None) -> jax.Array:
        cfg = self.config
        index = self.layer_index if scan_index is None else scan_index
        dropout = make_dropout(cfg, cfg.hidden_dropout)
        attention = SelfAttention(cfg, name="attention")
        # ModernBERT's first layer reads the embeddings' LayerNorm directly: unrolled, it has no attention norm;
        # scanned, every layer has one and the first skips it.
        has_attention_norm = cfg.first_layer_attention_norm or not cfg.pre_layer_norm or scan_index is not None \
            or self.layer_index > 0
        attention_norm = make_layer_norm(cfg, "attention_layer_norm") if has_attention_norm else None
        width = cfg.intermediate_size * (2 if cfg.gated_mlp else 1)
        intermediate = make_dense(cfg, width, ("embed", "mlp"), "intermediate")
        output = make_dense(cfg, cfg.hidden_size, ("mlp", "embed"), "output")
        output_norm = make_layer_norm(cfg, "output_layer_norm")
        activation = ACTIVATIONS[cfg.hidden_act]

        def feed_forward(x):
            inner = intermediate(x)
            if cfg.gated_mlp:  # the first half activated, times the second (HF ModernBERT's Wi layout)
                inner, gate = jnp.split(inner, 2, axis=-1)
                return output(activation(inner) * gate)
            return output(activation(inner))

        def attend(x):
            return attention(x, attention_mask, deterministic, position_ids, cfg.is_global_layer(index), decode)

        if cfg.pre_layer_norm:
            normed = hidden
            if attention_norm is not None:
                normed = attention_norm(hidden)
                if not cfg.first_layer_attention_norm:
                    normed = select(index > 0, normed, hidden)
            hidden = hidden + dropout(attend(normed), deterministic=deterministic)
            hidden = hidden + dropout(feed_forward(output_norm(hidden)), deterministic=deterministic)
        else:
            hidden = attention_norm(hidden + dropout(attend(hidden), deterministic=deterministic))
            hidden = output_norm(hidden + dropout(feed_forward(hidden), deterministic=deterministic))
        # Block boundary: the batch split over data x fsdp (a no-op outside a mesh).
        return nn.with_logical_constraint(hidden, ("activation_batch", "activation_length", "activation_embed"))


class BertEmbeddings(nn.Module):
    """Word + learned position + segment embeddings, then LayerNorm and dropout. Rotary models have no
    position table (positions rotate queries and keys instead), and `type_vocab_size=0` no segments."""

    config: BertConfig

    def setup(self):
        cfg = self.config

        def embed(count, axes):
            return nn.Embed(count, cfg.hidden_size, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                            embedding_init=logical_normal(cfg, axes))

        self.word_embeddings = embed(cfg.vocab_size, ("vocab", "embed"))
        if cfg.position_embedding == "learned":
            self.position_embeddings = embed(cfg.max_position_embeddings, (None, "embed"))
        if cfg.type_vocab_size:
            self.token_type_embeddings = embed(cfg.type_vocab_size, (None, "embed"))
        self.layer_norm = make_layer_norm(cfg)
        self.dropout = make_dropout(cfg, cfg.hidden_dropout)

    def __call__(self, input_ids, segment_ids, position_ids, deterministic: bool) -> jax.Array:
        embedded = self.word_embeddings(input_ids)  # B, L, D
        if self.config.position_embedding == "learned":
            embedded += self.position_embeddings(position_ids)
        if self.config.type_vocab_size:
            embedded += self.token_type_embeddings(segment_ids)
        return self.dropout(self.layer_norm(embedded), deterministic=deterministic)


def _layer_class(config: BertConfig):
    """BertLayer, rematerialised as `config.remat` says (`deterministic` and `decode`, arguments 3 and 5
    counting self, are Python bools)."""
    if config.remat == "none":
        return BertLayer
    return nn.remat(BertLayer, static_argnums=(3, 5), policy=REMAT_POLICIES[config.remat])


class _ScannedLayer(nn.Module):
    """A layer in `nn.scan`'s (carry, input) -> (carry, output) form; its output is stacked per layer and
    its input is the layer's index."""

    config: BertConfig
    deterministic: bool
    decode: bool

    @nn.compact
    def __call__(self, hidden, index, attention_mask, position_ids):
        hidden = _layer_class(self.config)(self.config, name="layer")(
            hidden, attention_mask, self.deterministic, position_ids, self.decode, index)
        return hidden, hidden


class BertEncoder(nn.Module):
    """The stack of layers; returns the input and every layer's output. With `scan_layers` the layers are
    one `nn.scan` (parameters under `layers/layer`, stacked on a leading axis): XLA compiles one layer."""

    config: BertConfig

    @nn.compact
    def __call__(self, hidden, attention_mask, deterministic: bool, position_ids: jax.Array,
                 decode: bool = False) -> tuple[jax.Array, ...]:
        cfg = self.config
        if cfg.scan_layers:
            scanned = nn.scan(_ScannedLayer, variable_axes={"params": 0, "cache": 0},
                              split_rngs={"params": True, "dropout": True}, in_axes=(0, nn.broadcast, nn.broadcast),
                              length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
            layers = scanned(cfg, deterministic, decode, name="layers")
            _, outputs = layers(hidden, jnp.arange(cfg.num_layers), attention_mask, position_ids)  # N, B, L, D
            return (hidden, *[outputs[index] for index in range(cfg.num_layers)])
        layer = _layer_class(cfg)
        hidden_states = [hidden]
        for index in range(cfg.num_layers):
            hidden = layer(cfg, index, name=f"layer_{index}")(hidden, attention_mask, deterministic, position_ids,
                                                             decode)
            hidden_states.append(hidden)
        return tuple(hidden_states)


def stack_layers(params: dict, num_layers: int) -> dict:
    """Parameters of an unrolled encoder (`encoder/layer_i`) -> those of a scanned one (`encoder/layers/layer`).
    A first layer without an attention LayerNorm (`first_layer_attention_norm=False`) gets an identity one,
    which the scanned first layer skips."""
    encoder = params["encoder"]
    layers = [encoder[f"layer_{i}"] for i in range(num_layers)]
    if num_layers > 1 and "attention_layer_norm" not in layers[0]:
        identity = jax.tree.map(jnp.ones_like, layers[1]["attention_layer_norm"])
        if "bias" in identity:
            identity["bias"] = jnp.zeros_like(identity["bias"])
        layers[0] = {**layers[0], "attention_layer_norm": identity}
    stacked = jax.tree.map(lambda *layers: jnp.stack(layers), *layers)
    return {**params, "encoder": {"layers": {"layer": stacked}}}


def unstack_layers(params: dict, num_layers: int, first_layer_attention_norm: bool = True) -> dict:
    """The inverse of `stack_layers` (`first_layer_attention_norm=False` drops the first layer's unused norm)."""
    stacked = params["encoder"]["layers"]["layer"]
    layers = {f"layer_{i}": jax.tree.map(lambda x: x[i], stacked) for i in range(num_layers)}
    if not first_layer_attention_norm:
        layers["layer_0"] = {name: value for name, value in layers["layer_0"].items()
                             if name != "attention_layer_norm"}
    return {**params, "encoder": layers}


class EncoderOutput(NamedTuple):
    last_hidden_state: jax.Array  # B, L, D
    pooled_output: jax.Array  # B, D: dense + tanh over the first ([CLS]) position
    hidden_states: tuple[jax.Array, ...]  # num_layers + 1 entries of (B, L, D), the embeddings first


class BertModel(nn.Module):
    """The BERT encoder (HF's `BertModel`): embeddings, encoder, pooler.

    Inputs are (B, L) integer arrays. `attention_mask` is 0 on padding and a positive example id
    elsewhere (see `attention_allowed`); `position_ids` default to 0..L-1.

    With `pre_layer_norm`, `hidden_states` hold the raw residual stream and `last_hidden_state` is
    that of the last layer after the final LayerNorm.
    """

    config: BertConfig

    def setup(self):
        cfg = self.config
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        if cfg.pre_layer_norm:
            self.final_layer_norm = make_layer_norm(cfg)
        if cfg.pooler == "tanh":
            self.pooler = make_dense(cfg, cfg.hidden_size, ("embed", None))
        else:  # ModernBERT's prediction head, which its task models put before their classifiers
            self.head = make_dense(cfg, cfg.hidden_size, ("embed", None))
            self.head_layer_norm = make_layer_norm(cfg)

    def __call__(self, input_ids, segment_ids=None, attention_mask=None, position_ids=None, *,
                 deterministic: bool = True, decode: bool = False) -> EncoderOutput:
        """`decode=True` (a causal model only) runs the new tokens `input_ids` at `position_ids` against the
        key/value cache in the mutable `cache` collection; `attention_mask` is then unused."""
        batch_size, length = input_ids.shape
        if length > self.config.max_position_embeddings and not decode:
            raise ValueError(f"Sequence length {length} exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}; truncate the inputs.")
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(length), (batch_size, length))

        hidden = self.embeddings(input_ids, segment_ids, position_ids, deterministic)
        hidden_states = self.encoder(hidden, attention_mask, deterministic, position_ids, decode)
        last = hidden_states[-1]
        if self.config.pre_layer_norm:
            last = self.final_layer_norm(last)
        if self.config.pooling == "mean" and not decode:
            weights = (attention_mask > 0).astype(last.dtype)[..., None]  # B, L, 1
            summary = jnp.sum(last * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)
        else:
            summary = last[:, 0]
        return EncoderOutput(last, self.pool(summary), hidden_states)

    def pool(self, summary: jax.Array) -> jax.Array:
        """The pooler over (..., D) sentence summaries ([CLS] states, or means): BERT's dense + tanh, or
        ModernBERT's prediction head (`transform`)."""
        if self.config.pooler == "tanh":
            return jnp.tanh(self.pooler(summary))
        return self.transform(summary)

    def transform(self, hidden: jax.Array) -> jax.Array:
        """ModernBERT's prediction head (dense, activation, LayerNorm) over (..., D) states; BERT's encoder
        (`pooler="tanh"`) has none and returns them as they are. Its token and span heads read these."""
        if self.config.pooler == "tanh":
            return hidden
        return self.head_layer_norm(ACTIVATIONS[self.config.hidden_act](self.head(hidden)))
