"""Training parity with HF transformers, as Levanter tests it: beside the forward parity of test_convert, the
same weights and batch (padding included, dropout off) give transformers' pretraining loss and the gradient of
every parameter, and one AdamW step (bertjax's optimizer against torch's, the same decay mask as param groups)
gives the same updated parameters."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import transformers
from flax import traverse_util

from bertjax import convert, losses, optim
from bertjax.heads import BertForPretraining
from bertjax.configs import common

LENGTHS = (12, 7, 3)  # one full row, two padded
MASKED = ((1, 4, 6, 10), (2, 5, 0, 0), (1, 0, 0, 0))  # positions scored per row; 0 past the row's count is padding
MASKED_COUNTS = (4, 2, 1)
VOCAB_SIZE = 99

# Float32 on the CPU, three layers: the two sides sum in other orders, which leaves a relative difference of
# about 1e-7 on the loss and, on each gradient, up to 2e-6 of the tensor's largest entry (measured). The bounds
# keep a margin of ten. Padding ignored on one side fails the loss; every parameter decayed, or torch's eps at
# 1e-8, fails the AdamW step by 50 to 8,000 times its tolerance.
LOSS_RTOL = 1e-6
GRAD_RTOL = 2e-5  # of the largest gradient of the same tensor
# The attention key bias adds q . b_k to every score of a query alike, which softmax ignores: its gradient is 0,
# and both sides give rounding noise of about 1e-8 (2e-8 of the largest gradient) instead. It is checked to be
# that small on both sides, not compared.
ZERO_GRADIENT = re.compile(r"bert\.encoder\.layer\.\d+\.attention\.self\.key\.bias")
ZERO_GRADIENT_BOUND = 1e-6  # of the model's largest gradient


def _hf_model():
    """A small `BertForPreTraining` with every parameter random (LayerNorms and biases too), dropout off."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        attn_implementation="eager")
    model = transformers.BertForPreTraining(config).train()  # train mode: dropout is off by its rates alone
    with torch.no_grad():
        for parameter in model.parameters():  # shared (tied) tensors appear once
            parameter.add_(torch.randn_like(parameter) * 0.2)
    return model


def _batch():
    """A pretraining batch in bertjax's layout; padded rows and padded prediction slots (weight 0)."""
    rng = np.random.default_rng(1)
    length = max(LENGTHS)
    mask = (np.arange(length)[None, :] < np.array(LENGTHS)[:, None]).astype(np.int32)
    segment_ids = ((np.arange(length)[None, :] >= np.array(LENGTHS)[:, None] // 2) * mask).astype(np.int32)
    input_ids = rng.integers(1, VOCAB_SIZE, size=mask.shape).astype(np.int32) * mask
    slots = len(MASKED[0])
    masked_weights = (np.arange(slots)[None, :] < np.array(MASKED_COUNTS)[:, None]).astype(np.float32)
    masked_ids = rng.integers(1, VOCAB_SIZE, size=masked_weights.shape).astype(np.int32) * (masked_weights > 0)
    return {"input_ids": input_ids, "segment_ids": segment_ids, "attention_mask": mask,
            "masked_positions": np.array(MASKED, np.int32), "masked_ids": masked_ids,
            "masked_weights": masked_weights, "sentence_label": np.array([0, 1, 1], np.int32)}


def _hf_loss(model, batch):
    """HF's loss on the same batch: labels -100 everywhere but the real prediction slots."""
    labels = np.full(batch["input_ids"].shape, -100, np.int64)
    for row, (positions, ids, weights) in enumerate(
            zip(batch["masked_positions"], batch["masked_ids"], batch["masked_weights"])):
        labels[row, positions[weights > 0]] = ids[weights > 0]
    return model(torch.tensor(batch["input_ids"], dtype=torch.long),
                 attention_mask=torch.tensor(batch["attention_mask"], dtype=torch.long),
                 token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long),
                 labels=torch.tensor(labels), next_sentence_label=torch.tensor(batch["sentence_label"],
                                                                               dtype=torch.long)).loss


def _bertjax_side(hf_model):
    config = convert.config_from_hf(hf_model.config.to_dict())
    assert config.hidden_dropout == config.attention_dropout == 0.0
    tensors = {name: tensor.detach().numpy() for name, tensor in hf_model.state_dict().items()}
    params, _ = convert.params_from_hf(tensors, config)
    model = BertForPretraining(config)

    def loss_fn(params, batch):
        inputs = {name: batch[name] for name in ("input_ids", "segment_ids", "attention_mask", "masked_positions")}
        return losses.pretraining_loss(model.apply({"params": params}, **inputs), batch)[0]

    return config, jax.tree.map(jnp.asarray, params), loss_fn


def _assert_gradients_close(ours: dict, theirs: dict):
    """Each gradient within GRAD_RTOL of its own largest entry (the key biases' near 0); every failure named."""
    assert sorted(ours) == sorted(theirs), f"names differ: {sorted(set(ours) ^ set(theirs))}"
    largest = max(float(np.max(np.abs(value))) for value in theirs.values())
    failures = []
    for name, their_value in theirs.items():
        our_value = np.asarray(ours[name])
        if ZERO_GRADIENT.fullmatch(name):
            size = max(float(np.max(np.abs(our_value))), float(np.max(np.abs(their_value)))) / largest
            if size > ZERO_GRADIENT_BOUND:
                failures.append(f"{name}: {size:.2e} of the largest gradient, where 0 is exact")
            continue
        scale = float(np.max(np.abs(their_value)))
        error = float(np.max(np.abs(our_value - their_value))) / scale
        if error > GRAD_RTOL:
            failures.append(f"{name}: {error:.2e} of its largest entry {scale:.2e}")
    assert not failures, "Gradients differ from transformers':\n  " + "\n  ".join(failures)


@pytest.fixture(scope="module")
def gradients():
    """Both sides' loss and gradients on the same weights and batch; torch's as numpy, by HF name (tied
    tensors once, by their first name: the decoder matrix is the word embeddings)."""
    hf_model, batch = _hf_model(), _batch()
    config, params, loss_fn = _bertjax_side(hf_model)
    their_loss = _hf_loss(hf_model, batch)
    their_loss.backward()
    theirs = {name: parameter.grad.numpy().copy() for name, parameter in hf_model.named_parameters()}
    our_loss, ours = jax.jit(jax.value_and_grad(loss_fn))(params, batch)
    return {"config": config, "params": params, "their_loss": their_loss.item(), "theirs": theirs,
            "our_loss": float(our_loss), "ours": ours}


def test_loss_and_every_gradient_match_hf(gradients):
    np.testing.assert_allclose(gradients["our_loss"], gradients["their_loss"], rtol=LOSS_RTOL)
    # The tied decoder matrix's gradient lands on the word embeddings on both sides.
    _assert_gradients_close(convert.hf_tensors(gradients["ours"], gradients["config"], "pretraining"),
                            gradients["theirs"])


def _optim_config():
    optim_config = common.optim_config()  # BERT's b1, b2 and eps
    optim_config.learning_rate = 1e-2
    optim_config.schedule, optim_config.warmup_steps = "constant", 0
    optim_config.weight_decay = 0.5  # large, so that a parameter decayed on one side only stands out
    optim_config.clip_norm = 0.5  # below the gradients' global norm (about 3): clipping acts
    return optim_config


@jax.jit
def _bertjax_adamw_step(grads, params):
    optimizer = optim.make_optimizer(_optim_config(), total_steps=1)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    return optax.apply_updates(params, updates)


def _torch_adamw_step(hf_model, params, grads, optim_config):
    """One step of torch's AdamW on `grads` (by HF name) with bertjax's hyper-parameters: bertjax's decay mask
    as two param groups, and the same global-norm clipping first. Returns the clipped gradients."""
    decayed = {convert.hf_name(path)[0] for path, decay in
               traverse_util.flatten_dict(optim.decay_mask(params)).items() if decay}
    named = dict(hf_model.named_parameters())
    for name, parameter in named.items():
        parameter.grad = torch.tensor(grads[name])
    assert torch.nn.utils.clip_grad_norm_(hf_model.parameters(), optim_config.clip_norm) > optim_config.clip_norm
    groups = [{"params": [named[name] for name in named if name in decayed],
               "weight_decay": optim_config.weight_decay},
              {"params": [named[name] for name in named if name not in decayed], "weight_decay": 0.0}]
    assert groups[0]["params"] and groups[1]["params"]
    # torch adds eps to sqrt(v_hat), as optax's eps does (not eps_root); both correct the bias of m and v, and
    # both decay decoupled from the gradient, by lr * weight_decay * weight.
    torch.optim.AdamW(groups, lr=optim_config.learning_rate, betas=(optim_config.b1, optim_config.b2),
                      eps=optim_config.eps).step()
    return {name: parameter.grad.numpy() for name, parameter in named.items()}


@pytest.mark.parametrize("source", ["the same gradients", "each side's own gradients"])
def test_one_adamw_step_matches_torch(gradients, source):
    """bertjax's AdamW (optim.make_optimizer) and torch's take one step from the same weights.

    A first Adam step moves each weight by lr * g / (|g| + eps) (m_hat / sqrt(v_hat) is g / |g|), plus
    lr * weight_decay * weight where decayed. From the same gradients the two steps differ by rounding alone:
    1e-4 lr is allowed. From each side's own gradients, a gradient difference d moves a weight differently by up
    to lr * d * eps / (|g| + eps)^2, most where |g| is near eps: each weight is allowed that, with d the bound
    the gradient test holds (GRAD_RTOL of the tensor's largest clipped gradient; for the key biases, whose step
    is their noise over eps, twice the bound on that noise), plus the same 1e-4 lr. A parameter decayed on one
    side only would differ by lr * 0.5 * |weight|, some 1e-1 lr."""
    config, params = gradients["config"], gradients["params"]
    optim_config = _optim_config()
    learning_rate, eps = optim_config.learning_rate, optim_config.eps

    hf_model = _hf_model()  # a fresh copy: the step changes it in place
    clipped = _torch_adamw_step(hf_model, params, gradients["theirs"], optim_config)
    theirs = {name: tensor.detach().numpy() for name, tensor in hf_model.named_parameters()}

    if source == "the same gradients":
        grads, _ = convert.params_from_hf(gradients["theirs"], config)
    else:
        grads = gradients["ours"]
    ours = convert.hf_tensors(_bertjax_adamw_step(grads, params), config, "pretraining")

    largest = max(np.max(np.abs(value)) for value in clipped.values())
    failures = []
    for name, their_value in theirs.items():
        tolerance = 1e-4 * learning_rate
        if source != "the same gradients":  # a key bias's gradients are both rounding noise (see above)
            grad_error = (2 * ZERO_GRADIENT_BOUND * largest if ZERO_GRADIENT.fullmatch(name)
                          else GRAD_RTOL * np.max(np.abs(clipped[name])))
            tolerance = tolerance + learning_rate * grad_error * eps / (np.abs(clipped[name]) + eps) ** 2
        excess = np.abs(ours[name] - their_value) / tolerance
        if np.max(excess) > 1:
            failures.append(f"{name}: {np.max(excess):.1f} times the tolerance")
    assert not failures, f"AdamW steps from {source} differ from torch's:\n  " + "\n  ".join(failures)
