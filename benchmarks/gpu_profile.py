"""A `jax.profiler` trace of a few real pretraining steps, and what the device spent them on.

    python benchmarks/gpu_profile.py --config bert_base --batch_size 256 --max_seq_length 128 \\
        --trace_dir OUT/trace model.dtype=bfloat16 model.attention_impl=cudnn model.attention_dropout=0

The step is `bertjax benchmark`'s (the real pretraining train step on a synthetic batch already on the
device), run --steps times back to back inside the trace after compilation and warm-up. From the trace's
device planes (GPU or TPU; this machine's host plane where there is none) it prints, per step: the step's
time on the device (the "XLA Modules" events), the time inside its kernels and the rest (idle between
kernels: launch gaps, waits), the number of kernels, the 20 kernels that take the most time and the time by
kind of kernel (matrix products, attention, fusions, copies, random bits, ...). The trace itself stays in
--trace_dir for TensorBoard's profile plugin or Perfetto.
"""

import argparse
import collections
import pathlib
import time

import jax

from bertjax import benchmark
from bertjax.configs import load

_KINDS = (  # the first kind whose words appear in a kernel's name, lower-cased
    ("attention (cuDNN)", ("cudnn", "fmha", "flash")),
    ("matrix products", ("gemm", "cublas", "dot", "matmul", "sm90_xmma", "cutlass", "convolution")),
    ("random bits", ("threefry", "rng", "philox")),
    ("copies and transposes", ("copy", "transpose", "memcpy", "memset")),
    ("collectives", ("all-reduce", "all-gather", "reduce-scatter", "nccl")),
    ("reductions", ("reduce",)),
    ("other fusions", ("fusion", "loop_", "input_", "triton")),
)


def kind_of(name: str) -> str:
    lower = name.lower()
    return next((kind for kind, words in _KINDS if any(word in lower for word in words)), "other")


def device_lines(profile):
    """(plane name, line name, events) of the device planes, else (a CPU run) of the host's."""
    planes = [plane for plane in profile.planes if plane.name.startswith(("/device:GPU", "/device:TPU"))]
    if not planes:
        planes = [plane for plane in profile.planes if plane.name.startswith("/host:CPU")]
    for plane in planes:
        for line in plane.lines:
            yield plane.name, line.name, [(event.name, event.start_ns, event.duration_ns) for event in line.events]


def summarize(trace_dir: pathlib.Path, steps: int) -> None:
    from jax.profiler import ProfileData

    files = sorted(trace_dir.rglob("*.xplane.pb"))
    if not files:
        raise SystemExit(f"no *.xplane.pb under {trace_dir}")
    profile = ProfileData.from_file(str(files[-1]))
    modules, ops, kernels = [], [], []
    for plane, line, events in device_lines(profile):
        if line == "XLA Modules":
            modules += [event for event in events if "train_step" in event[0]]
        elif line == "XLA Ops":
            ops += events
        elif line.startswith(("Stream", "tf_XLA")):  # raw kernels (GPU streams; XLA:CPU's threads)
            kernels += events
    ops = ops or kernels
    if not ops:
        lines = sorted({f"{plane}: {line}" for plane, line, _ in device_lines(profile)})
        raise SystemExit("the trace has no device kernels; its lines: " + "; ".join(lines))
    if modules:
        count = len(modules)
        step_ns = sum(duration for _, _, duration in modules) / count
    else:  # no module events: the span of the kernels, over the steps run
        count = steps
        step_ns = (max(start + duration for _, start, duration in ops) - min(start for _, start, _ in ops)) / count
    op_ns = sum(duration for _, _, duration in ops) / count
    print(f"{count} steps ({'XLA module events' if modules else 'kernel span over the steps run'}): "
          f"{step_ns / 1e6:.2f} ms a step on the device, {op_ns / 1e6:.2f} ms of it in {len(ops) / count:,.0f} "
          f"kernels, {max(step_ns - op_ns, 0) / 1e6:.2f} ms between them ({max(step_ns - op_ns, 0) / step_ns:.0%}; "
          "kernels on several streams or threads overlap, and then the sum exceeds the step)")
    if len(modules) > 1:
        starts = sorted(start for _, start, _ in modules)
        period = (starts[-1] - starts[0]) / (len(starts) - 1)
        print(f"one step started every {period / 1e6:.2f} ms: the device idles {max(period - step_ns, 0) / 1e6:.2f} ms "
              "between steps (host-bound if large)")
    by_kind, by_name = collections.Counter(), collections.defaultdict(lambda: [0, 0])
    for name, _, duration in ops:
        by_kind[kind_of(name)] += duration
        by_name[name][0] += duration
        by_name[name][1] += 1
    print("time by kind of kernel, per step:")
    for kind, total in by_kind.most_common():
        print(f"  {kind:24s} {total / count / 1e6:8.2f} ms  {total / count / step_ns:6.1%}")
    print("the 20 kernels that take the most time, per step:")
    for name, (total, calls) in sorted(by_name.items(), key=lambda item: -item[1][0])[:20]:
        print(f"  {total / count / 1e6:8.3f} ms  x{calls / count:<5.0f} {name[:110]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="bert_base")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--trace_dir", default="trace")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    config = load(args.config, args.overrides)
    task = benchmark.synthetic_task(config)
    predictions = max(1, round(0.15 * args.max_seq_length))
    batch = jax.device_put(benchmark.synthetic_batch(task.model_config, args.batch_size, args.max_seq_length,
                                                     predictions))
    compiled = benchmark.compile_train_step(task, config.optim, batch)
    step, state = compiled.compiled, compiled.state
    for _ in range(3):
        state, sums = step(state, batch)
    jax.block_until_ready(sums)
    trace_dir = pathlib.Path(args.trace_dir)
    start = time.perf_counter()
    with jax.profiler.trace(str(trace_dir)):
        for _ in range(args.steps):
            state, sums = step(state, batch)
        jax.block_until_ready(sums)
    print(f"{jax.devices()[0].device_kind}: {args.steps} steps of {args.batch_size} x {args.max_seq_length} in "
          f"{(time.perf_counter() - start) * 1e3 / args.steps:.1f} ms each, wall clock, traced")
    summarize(trace_dir, args.steps)


if __name__ == "__main__":
    main()
