"""The effect of each speed switch on the training step, one at a time against a baseline, on this machine.

    python benchmarks/speed_switches.py --variant mini --batch_size 16 --seq_length 128

The baseline: float32, rows padded to 60% real tokens (typical of unpacked text), the MLM head on the masked
positions, the vocabulary as the config has it, donated state, no rematerialisation, the dense layers' input
gradients against an explicitly transposed kernel (`model.dense_backward`'s CPU default). Each row changes one
thing. The packing row puts two examples in each row (about full rows): compare real tokens/s. cuDNN's fused
attention needs a GPU (benchmarks/gpu_check.sh).
"""

import copy

from absl import app, flags

from bertjax import benchmark
from bertjax.configs import common

_VARIANT = flags.DEFINE_string("variant", "mini", "bertjax.model.VARIANTS row.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Rows per step.")
_LENGTH = flags.DEFINE_integer("seq_length", 128, "Tokens per row.")
_STEPS = flags.DEFINE_integer("steps", 8, "Timed steps per setting.")

SWITCHES = [  # (label, config changes, measure() changes)
    ("baseline", {}, {}),
    ("MLM head on every position", {"train.mlm_positions": "all"}, {}),
    ("vocabulary padded to a multiple of 128", {}, {"pad_vocab": True}),
    ("packing (2 examples a row, full rows)", {}, {"packed_examples": 2, "real_fraction": 1.0}),
    ("bfloat16 compute", {"model.dtype": "bfloat16"}, {}),
    ("state not donated", {"train.donate_state": False}, {}),
    ("input gradients as XLA forms them", {"model.dense_backward": "xla"}, {}),
    ("remat full", {"model.remat": "full"}, {}),
    ("remat dots", {"model.remat": "dots"}, {}),
]


def main(argv):
    del argv
    base = common.get_config()
    base.model.variant = _VARIANT.value
    print(f"BERT-{_VARIANT.value}, batch {_BATCH.value} x {_LENGTH.value}, median of {_STEPS.value} steps")
    print(f"{'setting':<42} {'step ms':>9} {'real tokens/s':>14} {'vs baseline':>12}")
    baseline = None
    for label, config_changes, measure_changes in SWITCHES:
        config = copy.deepcopy(base)
        for dotted, value in config_changes.items():
            group, key = dotted.split(".")
            config[group][key] = value
        options = dict(batch_size=_BATCH.value, length=_LENGTH.value, predictions=None, real_fraction=0.6,
                       packed_examples=1, pad_vocab=False, steps=_STEPS.value, warmup=2)
        options.update(measure_changes)
        result = benchmark.measure(config, **options)
        baseline = baseline or result
        print(f"{label:<42} {result['step_seconds'] * 1e3:>9.1f} {result['tokens_per_second']:>14,.0f} "
              f"{result['tokens_per_second'] / baseline['tokens_per_second']:>11.2f}x", flush=True)


if __name__ == "__main__":
    app.run(main)
