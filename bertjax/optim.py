"""Optimizers and learning-rate schedules, from the config's `optim` group.

AdamW with BERT's settings (b1=0.9, b2=0.999, eps=1e-6, weight decay 0.01) or LAMB (You et al., for large
batches), both with LayerNorm parameters and biases excluded from weight decay; global-norm clipping first.
Schedules: `linear` (warmup, then linear decay to `end_lr_ratio`: BERT's), `cosine`, `wsd` (warmup, stable,
then linear decay over the last `decay_fraction` of training) and `constant` (after warmup).

Fine-tuning options: `warmup_fraction` (warmup as a share of training, BERT's 0.1, instead of
`warmup_steps`) and `layer_decay` (layer-wise learning-rate decay: the encoder's layer i of N learns at
`layer_decay ** (N - i)` times the rate of the heads, the embeddings at `layer_decay ** (N + 1)`).
"""

import re

import jax
import jax.numpy as jnp
import optax
from absl import logging
from flax import traverse_util

SCHEDULES = ("linear", "cosine", "wsd", "constant")
OPTIMIZERS = ("adamw", "lamb")


def warmup_steps(optim, total_steps: int) -> int:
    """The warmup's length in updates; a warmup longer than the run is clamped to it, with a warning (a short
    run of a long recipe, say), as other trainers do."""
    if optim.get("warmup_fraction") is not None:
        if not 0 <= optim.warmup_fraction <= 1:
            raise ValueError(f"optim.warmup_fraction={optim.warmup_fraction} must lie between 0 and 1.")
        return int(round(optim.warmup_fraction * total_steps))
    if optim.warmup_steps < 0:
        raise ValueError(f"optim.warmup_steps={optim.warmup_steps} must be at least 0.")
    if optim.warmup_steps > total_steps:
        logging.warning("optim.warmup_steps=%d is more than the %d training steps (train.num_steps): clamped to %d, "
                        "so the peak learning rate is reached at the last step.", optim.warmup_steps, total_steps,
                        total_steps)
        return total_steps
    return optim.warmup_steps


def learning_rate_schedule(optim, total_steps: int) -> optax.Schedule:
    peak, warmup = optim.learning_rate, warmup_steps(optim, total_steps)
    end = peak * optim.end_lr_ratio
    if optim.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule={optim.schedule!r}: choose one of {SCHEDULES}.")
    decay_steps = max(total_steps - warmup, 1)
    if optim.schedule == "linear":
        after = optax.linear_schedule(peak, end, decay_steps)
    elif optim.schedule == "cosine":
        after = optax.cosine_decay_schedule(peak, decay_steps, alpha=optim.end_lr_ratio)
    elif optim.schedule == "wsd":
        cooldown = max(int(round(total_steps * optim.decay_fraction)), 1)
        stable = max(decay_steps - cooldown, 0)
        after = optax.join_schedules([optax.constant_schedule(peak), optax.linear_schedule(peak, end, cooldown)],
                                     [stable])
    else:
        after = optax.constant_schedule(peak)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def decay_mask(params) -> dict:
    """True for the parameters weight decay applies to: every kernel and embedding table; not biases,
    LayerNorm scales or the MLM output bias (as google-research/bert excludes "LayerNorm" and "bias")."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({path: path[-1] in ("kernel", "embedding") for path in flat})


def _layer_depth(path: tuple[str, ...], num_layers: int):
    """How deep a parameter lies: 0 for the embeddings, i + 1 for encoder layer i (an array over the leading
    axis of scanned layers), num_layers + 1 for everything above the encoder (pooler, heads)."""
    joined = "/".join(path)
    if "/embeddings/" in f"/{joined}/":
        return 0
    match = re.search(r"encoder/layer_(\d+)/", joined)
    if match:
        return int(match.group(1)) + 1
    if "encoder/layers/" in joined:
        return jnp.arange(1, num_layers + 1)
    return num_layers + 1


def layerwise_decay(decay: float, num_layers: int) -> optax.GradientTransformation:
    """Scale each update by `decay ** (num_layers + 1 - depth)`: lower layers move less (ELECTRA, BEiT)."""

    def scale(path, update):
        factor = decay ** (num_layers + 1 - _layer_depth(tuple(getattr(k, "key", str(k)) for k in path),
                                                         num_layers))
        factor = jnp.asarray(factor, update.dtype)
        return update * factor.reshape(factor.shape + (1,) * (update.ndim - factor.ndim))

    def update_fn(updates, state, params=None):
        del params
        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(optim, total_steps: int, num_layers: int | None = None, *,
                   schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
    """The optimizer of the config's `optim` group, for a run of `total_steps` updates. `schedule`: its
    `learning_rate_schedule`, when the caller built one already (the train loop logs it), so that building
    it, and any warning about it, happens once."""
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"optim.name={optim.name!r}: choose one of {OPTIMIZERS}.")
    schedule = learning_rate_schedule(optim, total_steps) if schedule is None else schedule
    if optim.name == "adamw":
        update = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
                             mask=decay_mask)
    else:
        update = optax.lamb(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
                            mask=decay_mask)
    layer_decay = optim.get("layer_decay", 1.0)
    if layer_decay != 1.0:
        if not 0 < layer_decay <= 1:
            raise ValueError(f"optim.layer_decay={layer_decay} must lie in (0, 1]; 1 turns it off.")
        if num_layers is None:
            raise ValueError("optim.layer_decay needs the model's number of layers.")
        update = optax.chain(update, layerwise_decay(layer_decay, num_layers))
    if optim.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(optim.clip_norm), update)
    return update
