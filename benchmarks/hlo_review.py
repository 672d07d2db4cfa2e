"""What the compiled training step holds besides the model's arithmetic: the real pretraining step (forward,
backward, optimizer update) traced and compiled for this machine, searched for work that does not grow with
the model and would cost a fixed time on an accelerator.

    python benchmarks/hlo_review.py [--config bert_base] [--batch_size 32] [--max_seq_length 128] [KEY=VALUE ...]
    python benchmarks/hlo_review.py model.dense_backward=transposed_kernel   # what "auto" picks on a CPU

The model is traced with `model.dense_backward=xla` (what "auto" picks on a GPU or TPU) unless an override
says otherwise; `attention_impl=auto` is what the config's backend picks. Reported, from the step's jaxpr (the same
on every backend):
- host callbacks (pure_callback, io_callback, debug callbacks): each one stops the device and waits on Python;
- random numbers: the draws of random bits (dropout masks) and the 32-bit words they make, and the key
  derivations (fold_in, split) around them;
- transposes, optimization barriers (the transposed_kernel backward's), copies and dtype conversions;
and, from XLA's optimized HLO for this backend:
- the instructions of the entry computation left outside fusions (on a GPU each is a kernel launch or a
  copy), by opcode, and the bytes its copies move;
- the state buffers the step aliases from its inputs to its outputs (donation: no copy of the state), of all.
"""

import argparse
import collections
import functools
import math
import re

import jax

from bertjax import benchmark, train
from bertjax.configs import load

_CALLBACKS = ("pure_callback", "io_callback", "debug_callback", "callback")


def _walk(jaxpr, visit):
    for equation in jaxpr.eqns:
        visit(equation)
        for value in equation.params.values():
            for inner in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(inner, jax.extend.core.ClosedJaxpr):
                    _walk(inner.jaxpr, visit)
                elif isinstance(inner, jax.extend.core.Jaxpr):
                    _walk(inner, visit)


def jaxpr_review(step, state, batch) -> dict:
    closed = jax.make_jaxpr(step)(state, batch)
    counts, random_words, transposed_bytes = collections.Counter(), [], 0

    def visit(equation):
        nonlocal transposed_bytes
        name = equation.primitive.name
        counts[name] += 1
        aval = equation.outvars[0].aval if equation.outvars else None
        if name == "random_bits":
            random_words.append(math.prod(aval.shape) * aval.dtype.itemsize // 4)
        elif name == "transpose":
            transposed_bytes += math.prod(aval.shape) * aval.dtype.itemsize

    _walk(closed.jaxpr, visit)
    return {"primitives": counts, "random_words": random_words, "transpose_bytes": transposed_bytes}


_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?[\w.\-]+ = (.*?) ([\w\-]+)\(")  # shape (maybe a tuple), opcode
_SHAPE = re.compile(r"^(\w+)\[([\d,]*)\]")


def _bytes(shape: str) -> int:
    match = _SHAPE.match(shape)
    if not match:  # a tuple
        return 0
    dims = [int(size) for size in match.group(2).split(",") if size]
    kind = match.group(1)
    bits = 8 if kind == "pred" else int(re.sub(r"\D", "", kind) or 8)  # f32, s32, u32, bf16, pred
    return math.prod(dims) * bits // 8


def hlo_review(compiled) -> dict:
    """The instructions of the entry computation that are not inside a fusion, by opcode; the bytes its
    copies move; how many state buffers the step aliases from input to output."""
    text = compiled.as_text()
    entry, inside = [], False
    for line in text.splitlines():
        if line.startswith("ENTRY "):
            inside = True
        elif inside and line.startswith("}"):
            break
        elif inside:
            entry.append(line)
    opcodes, copied = collections.Counter(), []
    for line in entry:
        match = _INSTRUCTION.match(line)
        if match:
            opcodes[match.group(2)] += 1
            if match.group(2) == "copy":
                copied.append(_bytes(match.group(1)))
    header = text.splitlines()[0]
    aliased = len(re.findall(r"\(\d+, \{[\d, ]*\}, (?:may|must)-alias\)", header))
    return {"opcodes": opcodes, "copied": copied, "aliased": aliased}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="bert_base", help="a shipped config's name or a config file")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. model.remat=full")
    args = parser.parse_args()
    config = load(args.config, ["model.dense_backward=xla", *args.overrides])
    task = benchmark.synthetic_task(config)
    model = task.model_config
    predictions = max(1, round(0.15 * args.max_seq_length))
    batch = jax.device_put(benchmark.synthetic_batch(model, args.batch_size, args.max_seq_length, predictions))
    compiled = benchmark.compile_train_step(task, config.optim, batch)
    state = compiled.state
    review = jaxpr_review(functools.partial(train.train_step, task=task, optimizer=compiled.optimizer), state, batch)
    hlo = hlo_review(compiled.compiled)

    print(f"{jax.devices()[0].device_kind}: BERT {model.num_layers}x{model.hidden_size}, batch {args.batch_size} x "
          f"{args.max_seq_length}, dropout {model.hidden_dropout}/{model.attention_dropout} ({model.dropout_impl}), "
          f"dense_backward {model.dense_backward}, attention {model.attention_impl}")
    primitives = review["primitives"]
    print(f"host callbacks: {sum(primitives[name] for name in _CALLBACKS)}")
    words = review["random_words"]
    print(f"random bits: {len(words)} draws, {sum(words) / 1e6:,.2f} M 32-bit words "
          f"({sum(words) / (args.batch_size * args.max_seq_length):,.0f} per token; largest "
          f"{max(words, default=0):,}); key derivations: fold_in {primitives['random_fold_in']}, "
          f"split {primitives['random_split']}")
    print(f"transposes: {primitives['transpose']} ({review['transpose_bytes'] / 2**20:,.1f} MiB); optimization "
          f"barriers: {primitives['optimization_barrier']}; copies: {primitives['copy'] + primitives['copy_p']}; "
          f"dtype conversions: {primitives['convert_element_type']}")
    print(f"jaxpr: {sum(primitives.values()):,} equations; most frequent: "
          + ", ".join(f"{name} {count}" for name, count in primitives.most_common(12)))
    opcodes, copied = hlo["opcodes"], hlo["copied"]
    print(f"optimized HLO ({jax.default_backend()}), entry computation outside fusions: "
          f"{sum(opcodes.values()):,} instructions: "
          + ", ".join(f"{name} {count}" for name, count in opcodes.most_common(10)))
    print(f"copies there: {len(copied)}, {sum(copied) / 2**20:,.2f} MiB in all, the largest {max(copied, default=0):,} "
          f"bytes; while loops (XLA:CPU runs threefry's rounds as one): {opcodes['while']}")
    print(f"donation: {hlo['aliased']} of {len(jax.tree.leaves(state))} state buffers aliased input -> output")


if __name__ == "__main__":
    main()
