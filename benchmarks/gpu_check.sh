#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, as one script: on one NVIDIA GPU with a CUDA build of JAX and
# the project installed (pip install -e . ; pip install -U "jax[cuda12]").
#
#     bash benchmarks/gpu_check.sh [OUTPUT_DIR]        # GPU_CHECK_BUDGET=540: seconds before parts are skipped
#
# The parts, run in order of value (each with its own time limit, so that a slow part cannot starve the rest;
# numbered here by topic):
#  1. the device: nvidia-smi's name, MIG mode and clocks (a MIG slice has a fraction of the chip's peak), JAX's view;
#  2. a jax.profiler trace of 5 steps of BERT-base at 256 x 128, bf16, cuDNN attention, and what the device
#     spent them on (benchmarks/gpu_profile.py): step time, kernel time and the gaps, the top kernels;
#  3. the bare step (bertjax benchmark): BERT-base 256 x 128 and BERT-large 32 x 512, bf16, full rows, with
#     cuDNN, XLA and the hand-written attention; MFU counts model FLOPs of real tokens over the bf16 dense peak;
#  4. dropout's cost: BERT-base with BERT's dropout (0.1 and 0.1, hand-written attention) under each of JAX's
#     random-bit generators (threefry2x32, the default and layout-independent; rbg; unsafe_rbg), and without;
#  5. the compiled GPU step's instructions outside fusions and its copies (benchmarks/hlo_review.py);
#  6. the real loop: bertjax pretrain of BERT-base at 128 on the built-in corpus through the real input pipeline
#     (8 grain workers), 60 steps; its logged tokens/s, MFU and input wait, to compare with (3).
# OUTPUT_DIR (default gpu_check/) gets a log per part, one JSON per benchmark and the trace. A part that would
# start after GPU_CHECK_BUDGET seconds is skipped and named, so the script fits a lease of the device.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import jax; d = jax.devices()[0]; assert d.platform == 'gpu', f'no GPU: {d}'" || exit 1
part() {  # name, seconds, command...: run one part with a limit, its output to the console and OUTPUT_DIR/name.log
  local name="$1" limit="$2"; shift 2
  if (( SECONDS > ${GPU_CHECK_BUDGET:-540} )); then echo "== $name: skipped (budget of ${GPU_CHECK_BUDGET:-540} s spent)"; return; fi
  echo "== $name (at ${SECONDS} s)"
  timeout "$limit" "$@" > >(tee "$out/$name.log") 2>"$out/$name.err" || echo "   ($name: exit $?; see $out/$name.err)"
}
bench() {  # name, config, batch, length, extra overrides
  part "$1" 150 python3 -m bertjax benchmark --config "$2" --batch_size "$3" --max_seq_length "$4" \
    --steps 20 --warmup 3 --json "$out/$1.json" $5
}
bf16="--config.model.dtype=bfloat16"
nodrop="--config.model.attention_dropout=0"

part device 60 bash -c "nvidia-smi -L; nvidia-smi --query-gpu=name,mig.mode.current,clocks.sm,clocks.max.sm,power.limit \
  --format=csv; python3 -c 'import jax; print(jax.__version__, jax.devices())'"
part profile 180 python3 benchmarks/gpu_profile.py --config bert_base --batch_size 256 --max_seq_length 128 \
  --trace_dir "$out/trace" model.dtype=bfloat16 model.attention_impl=cudnn model.attention_dropout=0
bench base_128_cudnn bert_base 256 128 "$bf16 $nodrop --config.model.attention_impl=cudnn"
bench large_512_cudnn bert_large 32 512 "$bf16 $nodrop --config.model.attention_impl=cudnn"
data="$out/data"
part prepare 180 bash -c "python3 -m bertjax train_tokenizer --output_dir '$out/tokenizer' --vocab_size 8192 && \
  python3 -m bertjax prepare_data --tokenizer '$out/tokenizer' --output_dir '$data' --overwrite"
part loop 240 python3 -m bertjax pretrain --config bert_base --workdir "$out/loop" --log_format plain \
  --config.data.prepared_dir="$data" --config.data.max_seq_length=128 --config.data.max_predictions_per_seq=20 \
  --config.data.num_workers=8 $bf16 $nodrop --config.model.attention_impl=cudnn --config.train.global_batch_size=256 \
  --config.train.num_steps=60 --config.train.log_every=20 --config.train.eval_every=0 \
  --config.train.checkpoint_every=0 --config.train.eval_batch_size=256
bench base_128_xla bert_base 256 128 "$bf16 $nodrop --config.model.attention_impl=xla"
bench base_128_manual bert_base 256 128 "$bf16 $nodrop --config.model.attention_impl=manual"
bench large_512_xla bert_large 32 512 "$bf16 $nodrop --config.model.attention_impl=xla"
for rng in threefry2x32 rbg unsafe_rbg; do
  JAX_DEFAULT_PRNG_IMPL=$rng bench "base_128_dropout_$rng" bert_base 256 128 "$bf16 --config.model.attention_impl=manual"
done
bench base_128_no_dropout bert_base 256 128 "$bf16 $nodrop --config.model.hidden_dropout=0 --config.model.attention_impl=manual"
part hlo 180 python3 benchmarks/hlo_review.py --config bert_base --batch_size 256 --max_seq_length 128 \
  model.dtype=bfloat16 model.attention_impl=cudnn model.attention_dropout=0
echo "== the loop's logged windows (the first holds step 1's wait)"
grep '"split": "train"' "$out/loop/metrics.jsonl" 2>/dev/null | python3 -c "
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(f\"step {r['step']}: {r['tokens_per_second']:,.0f} tokens/s, {r['steps_per_second']:.2f} steps/s, \"
          f\"mfu {r.get('mfu', float('nan')):.1%}, input wait {r['input_wait_fraction']:.1%}\")"
