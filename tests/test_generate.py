"""Generation: the key/value cache gives what recomputing the whole sequence gives, sampling is reproducible
and stays inside its top-k / top-p set, one compiled decode step serves every token, and the tool runs."""

import dataclasses
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bertjax import generate
from bertjax.heads import BertForCausalLM
from bertjax.model import BertConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = BertConfig.from_variant("tiny", vocab_size=60, hidden_size=32, num_heads=2, intermediate_size=64,
                                 max_position_embeddings=40, causal=True, hidden_dropout=0.0, attention_dropout=0.0)
PROMPTS = [[2, 7, 9], [2, 11, 12, 13, 14, 15], [2]]


@pytest.fixture(scope="module")
def model_and_params():
    model = BertForCausalLM(CONFIG)
    params = nn.meta.unbox(model.init(jax.random.key(3), jnp.ones((1, 4), jnp.int32))["params"])
    # Sharpen the random model so that greedy choices are not near-ties that rounding could flip.
    params = jax.tree.map(lambda x: x * 4 if x.ndim > 1 else x, params)
    return model, params


def _greedy_by_recomputing(model, params, prompts, new_tokens):
    """The reference: run the whole sequence through the model (no cache) for every new token."""
    sequences = [list(prompt) for prompt in prompts]
    length = max(map(len, prompts)) + new_tokens  # one padded shape: one compilation
    forward = jax.jit(lambda ids, mask: model.apply({"params": params}, ids, None, mask).logits)
    for _ in range(new_tokens):
        ids = np.zeros((len(sequences), length), np.int32)
        mask = np.zeros_like(ids)
        for row, sequence in enumerate(sequences):
            ids[row, :len(sequence)], mask[row, :len(sequence)] = sequence, 1
        logits = forward(ids, mask)
        for row, sequence in enumerate(sequences):
            sequence.append(int(np.argmax(logits[row, len(sequence) - 1])))
    return [sequence[len(prompt):] for sequence, prompt in zip(sequences, prompts)]


def test_cached_greedy_generation_equals_recomputing_every_step(model_and_params):
    model, params = model_and_params
    cached = generate.generate(model, params, PROMPTS, max_new_tokens=15)
    assert cached == _greedy_by_recomputing(model, params, PROMPTS, 15)
    assert len({tuple(row) for row in cached}) == 3  # the rows really differ


def test_scanned_layers_decode_like_unrolled_ones(model_and_params):
    from bertjax.model import stack_layers

    model, params = model_and_params
    scanned = BertForCausalLM(BertConfig(**{**CONFIG.__dict__, "scan_layers": True}))
    scanned_params = {**params, "bert": stack_layers(params["bert"], CONFIG.num_layers)}
    assert generate.generate(scanned, scanned_params, PROMPTS, max_new_tokens=8) == \
        generate.generate(model, params, PROMPTS, max_new_tokens=8)


# The modern switches: rotary positions (other bases in local layers), local windows shorter than the rows, GLU.
MODERN = BertConfig(vocab_size=60, hidden_size=32, num_layers=3, num_heads=2, intermediate_size=48,
                    max_position_embeddings=40, causal=True, hidden_dropout=0.0, attention_dropout=0.0,
                    position_embedding="rotary", rope_theta=160000.0, type_vocab_size=0, pre_layer_norm=True,
                    first_layer_attention_norm=False, gated_mlp=True, dense_bias=False, norm_bias=False,
                    global_attention_every=2, local_attention_window=4)


@pytest.mark.parametrize("scan_layers", [False, True], ids=["unrolled", "scanned"])
def test_rotary_model_with_local_layers_decodes_as_it_recomputes(scan_layers):
    model = BertForCausalLM(dataclasses.replace(MODERN, scan_layers=scan_layers))
    params = nn.meta.unbox(model.init(jax.random.key(3), jnp.ones((1, 4), jnp.int32))["params"])
    params = jax.tree.map(lambda x: x * 4 if x.ndim > 1 else x, params)
    cached = generate.generate(model, params, PROMPTS, max_new_tokens=12)
    assert cached == _greedy_by_recomputing(model, params, PROMPTS, 12)
    assert len({tuple(row) for row in cached}) == 3


def test_one_compiled_decode_step_serves_every_token(model_and_params):
    model, params = model_and_params
    sampling = generate.Sampling(temperature=0.7, top_k=7)  # a setting no other test compiles
    before = generate.decode_step._cache_size()
    generate.generate(model, params, PROMPTS, max_new_tokens=12, sampling=sampling)
    assert generate.decode_step._cache_size() == before + 1


def test_stop_token_ends_a_row_and_the_length_limit_holds(model_and_params):
    model, params = model_and_params
    free = generate.generate(model, params, PROMPTS, max_new_tokens=15)
    stop = free[0][4]
    stopped = generate.generate(model, params, PROMPTS, max_new_tokens=15, stop_ids=(stop,))
    for row, full in zip(stopped, free):
        assert row == (full[:full.index(stop)] if stop in full else full)
    # A row may grow only to max_position_embeddings (40): the 6-token prompt leaves 34.
    assert max(map(len, generate.generate(model, params, PROMPTS, max_new_tokens=100))) == 40 - 6


def test_sampling_with_a_seed_is_reproducible(model_and_params):
    model, params = model_and_params
    sampling = generate.Sampling(temperature=1.5, top_p=0.95)
    first = generate.generate(model, params, PROMPTS, max_new_tokens=10, sampling=sampling, seed=7)
    assert generate.generate(model, params, PROMPTS, max_new_tokens=10, sampling=sampling, seed=7) == first
    assert generate.generate(model, params, PROMPTS, max_new_tokens=10, sampling=sampling, seed=8) != first


def _allowed_by_hand(logits, temperature, top_k, top_p):
    order = np.argsort(-logits)
    allowed = set(order[:top_k].tolist()) if top_k else set(order.tolist())
    kept = np.array([token for token in order if token in allowed])
    probabilities = np.exp(logits[kept] / temperature - np.max(logits[kept] / temperature))
    probabilities /= probabilities.sum()
    cut = np.searchsorted(np.cumsum(probabilities), top_p) + 1  # the smallest prefix reaching top_p
    return set(kept[:cut].tolist())


@pytest.mark.parametrize("top_k, top_p", [(5, 1.0), (0, 0.6), (8, 0.8)])
def test_top_k_and_top_p_never_leave_their_set(top_k, top_p):
    logits = np.random.default_rng(0).normal(0, 2, 50).astype(np.float32)
    sampling = generate.Sampling(temperature=1.3, top_k=top_k, top_p=top_p)
    expected = _allowed_by_hand(logits, 1.3, top_k, top_p)
    assert set(np.flatnonzero(generate.allowed_tokens(jnp.asarray(logits)[None], sampling)[0])) == expected
    keys = jax.random.split(jax.random.key(0), 4000)
    samples = jax.vmap(lambda key: generate.choose_tokens(jnp.asarray(logits)[None], key, sampling)[0])(keys)
    assert set(np.asarray(samples).tolist()) == expected  # never outside, and every allowed token is reached


def test_bad_settings_are_refused(model_and_params):
    model, params = model_and_params
    with pytest.raises(ValueError, match="top_p=0"):
        generate.Sampling(temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="max_position_embeddings=40"):
        generate.generate(model, params, [list(range(1, 41))], max_new_tokens=3)
    bidirectional = BertForCausalLM(BertConfig(**{**CONFIG.__dict__, "causal": False}))
    with pytest.raises(ValueError, match="causal"):
        generate.generate(bidirectional, params, PROMPTS, max_new_tokens=3)


@pytest.mark.slow
def test_generate_tool_continues_prompts_from_a_run(prepared_dir, sp_tokenizer_path, tmp_path):
    from bertjax import train
    from bertjax.tasks import causal_lm
    from bertjax.configs import common

    config = common.get_config()
    config.task = "causal_lm"
    config.model.update(variant="tiny", vocab_size=4000, hidden_size=32, num_heads=2, intermediate_size=64,
                        max_position_embeddings=64)
    config.data.update(tokenizer=str(sp_tokenizer_path), prepared_dir=str(prepared_dir), max_seq_length=64)
    config.optim.warmup_steps = 0
    config.train.update(num_steps=1, global_batch_size=8, eval_batch_size=8, eval_every=0, checkpoint_every=1)
    train.train_and_evaluate(config, tmp_path, causal_lm.LanguageModelTask(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's bertjax, whatever is installed
    result = subprocess.run(
        [sys.executable, "tools/generate.py", f"--checkpoint={tmp_path}", "--prompt=Return the", "--prompt=A",
         "--max_new_tokens=5", "--temperature=0.8", "--top_k=20", "--seed=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Return the") == 1 and result.stdout.count("\n") >= 2
    result = subprocess.run([sys.executable, "tools/generate.py", f"--checkpoint={tmp_path / 'none'}", "--prompt=A"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1 and "config.json" in result.stderr and "Traceback" not in result.stderr
