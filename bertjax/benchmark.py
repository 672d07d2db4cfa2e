"""Measuring training speed: timed train steps of the real pretraining task on synthetic batches of realistic
shape (padding, packing, masked positions). The FLOP counts and chip peaks it reports come from
`bertjax.flops`.
"""

import dataclasses
import itertools
import pathlib
import time
from typing import Any

import jax
import numpy as np

from bertjax import cli, flops, train
from bertjax.model import BertConfig
from bertjax.optim import make_optimizer
from bertjax.tasks.pretraining import PretrainingTask


def builtin_prepared_data(work: pathlib.Path, vocab_size: int = 2048) -> pathlib.Path:
    """The demo's data in `work`: a `vocab_size`-piece SentencePiece tokenizer trained on the built-in corpus
    and the corpus prepared with it (`make demo`'s runs/demo/data). Returns the prepared directory."""
    from bertjax.data import corpus, shards, tokenizer

    documents = list(corpus.read_builtin())
    model = work / "tokenizer" / "tokenizer.model"
    model.parent.mkdir(parents=True)
    tokenizer.train_sentencepiece(itertools.chain.from_iterable(documents), vocab_size).save(model)
    shards.prepare(iter(documents), model, work / "data", num_workers=2)
    return work / "data"


def synthetic_batch(config: BertConfig, batch: int, length: int, predictions: int, *, real_fraction: float = 1.0,
                    packed_examples: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """A pretraining batch of the pipeline's keys and shapes with random ids: rows right-padded to about
    `real_fraction` of `length` (0.6 is typical of unpacked text), or packed with `packed_examples` examples a
    row (then the packing keys: position_ids, cls_positions, per-example sentence labels)."""
    rng = np.random.default_rng(seed)
    real = np.clip(rng.normal(real_fraction * length, 0.1 * length, batch).astype(int), 8, length)
    columns = np.arange(length)[None, :]
    mask = (columns < real[:, None]).astype(np.int32)
    out = {"input_ids": (rng.integers(5, config.vocab_size, (batch, length)) * mask).astype(np.int32),
           "segment_ids": ((columns >= real[:, None] // 2) * mask).astype(np.int32)}
    if packed_examples > 1:
        bounds = np.linspace(0, real[:, None], packed_examples + 1, axis=-1).astype(int)[:, 0]  # B, E+1
        example = (columns[:, :, None] >= bounds[:, None, 1:-1]).sum(-1) + 1  # B, L: 1..E
        out["attention_mask"] = (example * mask).astype(np.int32)
        out["position_ids"] = (columns - np.take_along_axis(bounds, example - 1, axis=1)).astype(np.int32) * mask
        out["cls_positions"] = bounds[:, :-1].astype(np.int32)
        out["sentence_label"] = rng.integers(0, 2, (batch, packed_examples)).astype(np.int32)
        out["sentence_weights"] = np.ones((batch, packed_examples), np.float32)
    else:
        out["attention_mask"] = mask
        out["sentence_label"] = rng.integers(0, 2, batch).astype(np.int32)
    count = np.minimum(predictions, np.maximum(1, (0.15 * real).astype(int)))
    positions = np.stack([np.sort(rng.choice(np.arange(1, r), predictions, replace=predictions > r - 1))
                          for r in real]).astype(np.int32)
    weights = (np.arange(predictions)[None, :] < count[:, None]).astype(np.float32)
    out["masked_positions"] = positions * (weights > 0)
    out["masked_ids"] = (rng.integers(5, config.vocab_size, (batch, predictions)) * weights).astype(np.int32)
    out["masked_weights"] = weights
    return out


@dataclasses.dataclass
class StepTiming:
    seconds: list[float]  # each timed step, synchronised with the device
    compile_seconds: float
    xla_flops: float | None  # per device, from XLA's cost analysis of the compiled step
    peak_device_bytes: int | None  # the device's peak memory in use, where it reports one

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))


@dataclasses.dataclass
class CompiledStep:
    compiled: Any  # the real train step, compiled for one device and the batch's shapes
    state: train.TrainState  # a fresh train state
    optimizer: Any  # its optax optimizer (the schedule's length is immaterial here)
    compile_seconds: float


def compile_train_step(task, optim_config, batch, *, donate: bool = True) -> CompiledStep:
    """The real train step of `task` (one device) compiled for `batch`, and a fresh state to run it on."""
    optimizer = make_optimizer(optim_config, 10**9, task.model_config.num_layers)
    state = jax.jit(lambda: train.init_train_state(task, optimizer, 0, batch))()
    step_fn, _ = train.compile_steps(task, optimizer, 1, donate=donate)
    start = time.perf_counter()
    compiled = step_fn.lower(state, batch).compile()
    return CompiledStep(compiled, state, optimizer, time.perf_counter() - start)


def time_train_steps(task, optim_config, batch: dict[str, np.ndarray], *, steps: int = 10, warmup: int = 2,
                     donate: bool = True) -> StepTiming:
    """Compile the real train step for `task` (one device), then time `steps` updates after `warmup`."""
    batch = jax.device_put(batch)
    step = compile_train_step(task, optim_config, batch, donate=donate)
    compiled, state, compile_seconds = step.compiled, step.state, step.compile_seconds
    for _ in range(warmup):
        state, sums = compiled(state, batch)
    jax.block_until_ready(state)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        state, sums = compiled(state, batch)
        jax.block_until_ready((state, sums))
        seconds.append(time.perf_counter() - start)
    stats = jax.devices()[0].memory_stats() or {}
    return StepTiming(seconds, compile_seconds, flops.xla_flops(compiled), stats.get("peak_bytes_in_use"))


def synthetic_task(config, pad_vocab: bool = False) -> PretrainingTask:
    """The pretraining task's model and loss without a tokenizer or data, for timing on synthetic batches.
    `pad_vocab` rounds the model's vocabulary up to a multiple of 128, the logits of the extra ids masked out
    as for a tokenizer of the original size."""
    real_vocab = BertConfig.from_config(config.model).vocab_size
    if pad_vocab:
        config.model.vocab_size = -(-real_vocab // 128) * 128
    return PretrainingTask(config, data=False, real_vocab_size=real_vocab)


def measure(config, *, batch_size, length, predictions, real_fraction, packed_examples, pad_vocab, steps,
            warmup) -> dict:
    """Time the pretraining step of `config` on a synthetic batch; every figure bertjax benchmark reports."""
    task = synthetic_task(config, pad_vocab)
    model = task.model_config
    predictions = predictions or max(1, round(0.15 * length))
    batch = synthetic_batch(model, batch_size, length, predictions, real_fraction=real_fraction,
                            packed_examples=packed_examples)
    timing = time_train_steps(task, config.optim, batch, steps=steps, warmup=warmup, donate=config.train.donate_state)
    real = task.real_tokens(batch)
    flops_all = flops.analytic_flops(model, batch_size, length, predictions)
    flops_real = flops.analytic_flops(model, batch_size, length, predictions, tokens=real)
    peak_name, peak = flops.peak_flops(model.dtype)
    seconds = timing.median
    return {
        "device": jax.devices()[0].device_kind, "model": f"{model.num_layers}x{model.hidden_size}",
        "vocab_size": model.vocab_size, "dtype": model.dtype, "attention_impl": model.attention_impl,
        "remat": model.remat, "mlm_positions": config.train.mlm_positions, "donate": config.train.donate_state,
        "batch_size": batch_size, "seq_length": length, "predictions": predictions,
        "packed_examples": packed_examples, "real_tokens": real,
        "step_seconds": seconds, "step_seconds_all": timing.seconds, "compile_seconds": timing.compile_seconds,
        "sequences_per_second": batch_size * packed_examples / seconds, "tokens_per_second": real / seconds,
        "analytic_flops": flops_all, "xla_flops": timing.xla_flops,
        "peak": peak_name, "peak_flops": peak,
        "mfu": flops_all / seconds / peak, "mfu_real_tokens": flops_real / seconds / peak,
        "peak_device_bytes": timing.peak_device_bytes, "peak_host_mb": cli.peak_memory_mb(),
    }
