"""Time the compiled pretraining step for a config and report throughput, FLOPs and MFU.

    bertjax benchmark --config bert_base --max_seq_length 128 --batch_size 32
    bertjax benchmark --config bert_base:model.dtype=bfloat16,model.attention_impl=cudnn \\
        --config.model.attention_dropout=0 --max_seq_length 128 --batch_size 256 --real_fraction 1
    bertjax benchmark --config bert_tiny --packed_examples 2 --pad_vocab --json out.json

Batches are synthetic (random ids) with the pipeline's shapes: rows padded to `--real_fraction` of the length,
or packed. Reported: the median step time over --steps after --warmup (synchronised with the device),
sequences/s and real tokens/s, model FLOPs per step counted by hand (bertjax.benchmark) and by XLA, MFU over
all positions and over real tokens only, against the chip's data-sheet bf16 peak (or, where none is known, a
measured matmul peak), compile time and peak device memory.
"""

import json

from absl import flags

from bertjax import cli

_CONFIG = cli.DEFINE_config()
_BATCH = flags.DEFINE_integer("batch_size", 32, "Rows per step (one device).", lower_bound=1)
_LENGTH = flags.DEFINE_integer("max_seq_length", 128, "Tokens per row.", lower_bound=3)
_PREDICTIONS = flags.DEFINE_integer("predictions", None, "Masked positions per row (default: 15% of the length).",
                                    lower_bound=1)
_REAL = flags.DEFINE_float("real_fraction", 1.0, "Mean share of each row that is real tokens, the rest padding.",
                           lower_bound=0, upper_bound=1)
_PACKED = flags.DEFINE_integer("packed_examples", 1, "Examples packed in each row (1: no packing).", lower_bound=1)
_PAD_VOCAB = flags.DEFINE_bool("pad_vocab", False, "Round the vocabulary up to a multiple of 128.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.", lower_bound=0)
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")


def main(argv):
    del argv
    from bertjax import benchmark

    result = benchmark.measure(_CONFIG.value, batch_size=_BATCH.value, length=_LENGTH.value, predictions=_PREDICTIONS.value,
                     real_fraction=_REAL.value, packed_examples=_PACKED.value, pad_vocab=_PAD_VOCAB.value,
                     steps=_STEPS.value, warmup=_WARMUP.value)
    xla = f"{result['xla_flops'] / 1e9:,.1f}" if result["xla_flops"] else "n/a"
    memory = (f"{result['peak_device_bytes'] / 2**30:.2f} GiB device" if result["peak_device_bytes"]
              else f"{result['peak_host_mb']:,.0f} MB host")
    print(f"{result['device']}: BERT {result['model']}, vocab {result['vocab_size']}, {result['dtype']}, attention "
          f"{result['attention_impl']}, remat {result['remat']}, MLM on {result['mlm_positions']} positions, "
          f"batch {result['batch_size']} x {result['seq_length']} ({result['packed_examples']} example(s) a row, "
          f"{result['real_tokens']:,} real tokens)")
    print(f"step {result['step_seconds'] * 1e3:.1f} ms (median of {len(result['step_seconds_all'])}), compile "
          f"{result['compile_seconds']:.1f} s; {result['sequences_per_second']:,.1f} sequences/s, "
          f"{result['tokens_per_second']:,.0f} real tokens/s")
    print(f"model FLOPs per step {result['analytic_flops'] / 1e9:,.1f} G (XLA: {xla} G); MFU {result['mfu']:.1%}, "
          f"counting real tokens {result['mfu_real_tokens']:.1%}, against {result['peak_flops'] / 1e12:,.2f} TFLOP/s "
          f"({result['peak']}); peak memory {memory}")
    if _JSON.value:
        with open(_JSON.value, "w") as file:
            json.dump(result, file, indent=2)

