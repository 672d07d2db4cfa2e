"""Optimizers and learning-rate schedules, from the config's `optim` group.

AdamW with BERT's settings (b1=0.9, b2=0.999, eps=1e-6, weight decay 0.01) or LAMB (You et al., for large
batches), both with LayerNorm parameters and biases excluded from weight decay; global-norm clipping first.
Schedules: `linear` (warmup, then linear decay to `end_lr_ratio`: BERT's), `cosine`, `wsd` (warmup, stable,
then linear decay over the last `decay_fraction` of training) and `constant` (after warmup).
"""

import optax
from flax import traverse_util

SCHEDULES = ("linear", "cosine", "wsd", "constant")
OPTIMIZERS = ("adamw", "lamb")


def learning_rate_schedule(optim, total_steps: int) -> optax.Schedule:
    peak, warmup = optim.learning_rate, optim.warmup_steps
    end = peak * optim.end_lr_ratio
    if optim.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule={optim.schedule!r}: choose one of {SCHEDULES}.")
    if not 0 <= warmup <= total_steps:
        raise ValueError(f"optim.warmup_steps={warmup} must lie between 0 and the {total_steps} training steps.")
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


def make_optimizer(optim, total_steps: int) -> optax.GradientTransformation:
    """The optimizer of the config's `optim` group, for a run of `total_steps` updates."""
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"optim.name={optim.name!r}: choose one of {OPTIMIZERS}.")
    schedule = learning_rate_schedule(optim, total_steps)
    if optim.name == "adamw":
        update = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
                             mask=decay_mask)
    else:
        update = optax.lamb(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay,
                            mask=decay_mask)
    if optim.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(optim.clip_norm), update)
    return update
