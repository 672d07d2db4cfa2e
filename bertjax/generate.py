"""Text generation from a forward (causal) language model, with a key/value cache.

A batch of prompts of different lengths is right-padded and run once (the prefill), which fills each
layer's cache with the prompts' keys and values and gives each row's first new token from its last real
position. Then one jitted decode step, compiled once for the batch's shapes, runs the newest token of every
row at that row's own position against the cache and picks the next: greedy (temperature 0), or sampled at
a temperature from the top-k and/or top-p (nucleus) set. A row ends at a stop token (say [SEP]) or at the
length limit; generation ends when every row has.

Shape letters: B batch, P longest prompt, C cache length (prompt + new tokens), V vocab.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bertjax.heads import BertForCausalLM


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen from the logits."""

    temperature: float = 0.0  # 0: greedy (the arg-max); else logits / temperature are sampled
    top_k: int = 0  # > 0: only the k most likely tokens
    top_p: float = 1.0  # < 1: only the smallest set of most likely tokens whose probability reaches top_p

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature}: expected 0 (greedy) or more.")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k}: expected 0 (no limit) or more.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p}: expected a probability in (0, 1].")


def allowed_tokens(logits: jax.Array, sampling: Sampling) -> jax.Array:
    """(B, V) logits -> (B, V) booleans: the tokens top-k and top-p leave to sample from (the temperature is
    applied before top-p, as in HF's samplers). The most likely token is always allowed."""
    logits = logits.astype(jnp.float32) / max(sampling.temperature, 1e-6)
    allowed = jnp.ones(logits.shape, bool)
    if sampling.top_k > 0 and sampling.top_k < logits.shape[-1]:
        kth_largest = jax.lax.top_k(logits, sampling.top_k)[0][..., -1:]  # B, 1
        allowed &= logits >= kth_largest
    if sampling.top_p < 1.0:
        ordered = jnp.sort(jnp.where(allowed, logits, -jnp.inf), axis=-1)[..., ::-1]  # B, V descending
        probabilities = jax.nn.softmax(ordered, axis=-1)
        before = jnp.cumsum(probabilities, axis=-1) - probabilities  # probability of the more likely tokens
        kept = before < sampling.top_p  # the first is always kept
        smallest_kept = jnp.min(jnp.where(kept, ordered, jnp.inf), axis=-1, keepdims=True)
        allowed &= logits >= smallest_kept
    return allowed


def choose_tokens(logits: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
    """(B, V) logits -> (B,) next tokens."""
    if sampling.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits.astype(jnp.float32) / sampling.temperature
    scaled = jnp.where(allowed_tokens(logits, sampling), scaled, -jnp.inf)
    return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)


def empty_cache(model: BertForCausalLM, batch_size: int, cache_length: int):
    """Zeroed key/value caches of every layer for `batch_size` rows of up to `cache_length` tokens."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((batch_size, cache_length), jnp.int32),
                                               decode=True))["cache"]
    return jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes)


def _run(model, params, cache, input_ids, positions):
    output, variables = model.apply({"params": params, "cache": cache}, input_ids, position_ids=positions,
                                    decode=True, mutable=["cache"])
    return variables["cache"], output.logits  # B, L, V


@functools.partial(jax.jit, static_argnames=("model", "sampling"), donate_argnames=("cache",))
def prefill(params, cache, prompt_ids, lengths, key, *, model: BertForCausalLM, sampling: Sampling):
    """Right-padded prompts (B, P) with their lengths (B,) -> the filled cache and each row's first new token."""
    positions = jnp.broadcast_to(jnp.arange(prompt_ids.shape[1]), prompt_ids.shape)
    cache, logits = _run(model, params, cache, prompt_ids, positions)
    last = jnp.take_along_axis(logits, (lengths - 1)[:, None, None], axis=1)[:, 0]  # B, V
    return cache, choose_tokens(last, key, sampling)


@functools.partial(jax.jit, static_argnames=("model", "sampling"), donate_argnames=("cache",))
def decode_step(params, cache, tokens, positions, key, *, model: BertForCausalLM, sampling: Sampling):
    """Every row's newest token (B,) at its position (B,) -> the cache with it, and each row's next token."""
    cache, logits = _run(model, params, cache, tokens[:, None], positions[:, None])
    return cache, choose_tokens(logits[:, 0], key, sampling)


def generate(model: BertForCausalLM, params, prompts: list[list[int]], *, max_new_tokens: int,
             sampling: Sampling = Sampling(), seed: int = 0, stop_ids: tuple[int, ...] = ()) -> list[list[int]]:
    """The tokens generated after each prompt (a stop token ends a row and is not included).

    A row stops at a stop token, after `max_new_tokens`, or when it fills the model's
    `max_position_embeddings`. The same seed gives the same samples.
    """
    config = model.config
    if not config.causal:
        raise ValueError("Generation needs a causal model (model.causal=True).")
    if not prompts or any(len(prompt) == 0 for prompt in prompts):
        raise ValueError("Every prompt needs at least one token (start it with [CLS]).")
    longest = max(map(len, prompts))
    if longest >= config.max_position_embeddings:
        raise ValueError(f"A prompt of {longest} tokens leaves no room for new ones within "
                         f"max_position_embeddings={config.max_position_embeddings}; shorten it.")
    max_new_tokens = min(max_new_tokens, config.max_position_embeddings - longest)
    batch_size = len(prompts)
    prompt_ids = np.zeros((batch_size, longest), np.int32)
    for row, prompt in enumerate(prompts):
        prompt_ids[row, :len(prompt)] = prompt
    lengths = np.array([len(prompt) for prompt in prompts], np.int32)

    cache = empty_cache(model, batch_size, longest + max_new_tokens)
    key = jax.random.key(seed)
    cache, tokens = prefill(params, cache, prompt_ids, lengths, jax.random.fold_in(key, 0), model=model,
                            sampling=sampling)
    generated = [np.asarray(tokens)]
    positions = jnp.asarray(lengths)
    finished = np.isin(generated[-1], stop_ids)
    for step in range(1, max_new_tokens):
        if finished.all():
            break
        cache, tokens = decode_step(params, cache, tokens, positions, jax.random.fold_in(key, step), model=model,
                                    sampling=sampling)
        positions = positions + 1
        generated.append(np.asarray(tokens))
        finished |= np.isin(generated[-1], stop_ids)
    generated = np.stack(generated, axis=1)  # B, new tokens
    results = []
    for row in generated:
        stops = np.flatnonzero(np.isin(row, stop_ids))
        results.append(row[:stops[0]].tolist() if len(stops) else row.tolist())
    return results
