"""GPU check of the attention paths: cuDNN's fused kernel, XLA's and the hand-written one give the same
BERT outputs (bf16, padded rows, bidirectional and causal), and how fast each trains.

    PYTHONPATH=. python benchmarks/gpu_attention_check.py [--variant base --batch 32 --length 128]
"""

import argparse
import dataclasses
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bertjax.model import BertConfig, BertModel


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")

    rng = np.random.default_rng(0)
    base = BertConfig.from_variant(args.variant, dtype="bfloat16", hidden_dropout=0.0, attention_dropout=0.0)
    lengths = rng.integers(args.length // 4, args.length + 1, args.batch)
    lengths[0] = args.length
    mask = jnp.asarray(np.arange(args.length)[None] < lengths[:, None], jnp.int32)
    input_ids = jnp.asarray(rng.integers(5, base.vocab_size, (args.batch, args.length)), jnp.int32) * mask
    segment_ids = jnp.zeros_like(input_ids)
    real = np.asarray(mask, bool)
    params = jax.jit(lambda key: nn.meta.unbox(BertModel(base).init(key, input_ids[:1])["params"]))(jax.random.key(0))

    failures = 0
    for causal in (False, True):
        outputs, timings = {}, {}
        for impl in ("manual", "xla", "cudnn"):
            config = dataclasses.replace(base, attention_impl=impl, causal=causal)
            model = BertModel(config)
            forward = jax.jit(lambda p: model.apply({"params": p}, input_ids, segment_ids, mask).last_hidden_state)
            outputs[impl] = np.asarray(forward(params), np.float32)

            grad_step = jax.jit(jax.grad(lambda p: jnp.mean(
                model.apply({"params": p}, input_ids, segment_ids, mask).last_hidden_state.astype(jnp.float32) ** 2)))
            jax.block_until_ready(grad_step(params))
            samples = []
            for _ in range(args.steps):
                start = time.perf_counter()
                jax.block_until_ready(grad_step(params))
                samples.append(time.perf_counter() - start)
            timings[impl] = float(np.median(samples))
        reference = outputs["manual"]
        for impl in ("xla", "cudnn"):
            difference = float(np.abs(outputs[impl][real] - reference[real]).max())
            scale = float(np.abs(reference[real]).max())
            ok = difference <= 0.02 * scale
            failures += not ok
            print(f"causal={causal} {impl:6s} vs manual: max |diff| {difference:.4f} (max |x| {scale:.2f}) "
                  f"{'OK' if ok else 'MISMATCH'}")
        tokens = int(lengths.sum())
        for impl, seconds in timings.items():
            print(f"causal={causal} {impl:6s} forward+backward {seconds * 1e3:7.2f} ms  {tokens / seconds:12,.0f} real tokens/s")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
