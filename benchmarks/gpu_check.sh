#!/usr/bin/env bash
# On one NVIDIA GPU: the training step's throughput and MFU for BERT-base at sequence length 128 and
# BERT-large at 512, bf16 compute, cuDNN fused attention (attention dropout 0, as modern recipes set it),
# full rows. Needs the project's dependencies (pip install -e .) and a CUDA build of JAX; about 5 minutes.
#
#     bash benchmarks/gpu_check.sh [OUTPUT_DIR]
#
# Each line of the output names the step time, tokens/s and MFU against the chip's data-sheet bf16 peak
# (bertjax.benchmark.PEAK_FLOPS); OUTPUT_DIR (default: .) gets one JSON file per run.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import jax; d = jax.devices()[0]; assert d.platform == 'gpu', f'no GPU: {d}'; print(d.device_kind)"
common="model.dtype=bfloat16,model.attention_dropout=0.0"
run() {  # name, config, batch, length, predictions, attention
  echo "== $1 ($6 attention)"
  timeout 240 python3 tools/benchmark.py --config "$2:$common,model.attention_impl=$6" \
    --batch_size "$3" --max_seq_length "$4" --predictions "$5" --steps 20 --warmup 3 \
    --json "$out/$1_$6.json" | tail -2
}
run base_128 bert_base 256 128 20 cudnn
run base_128 bert_base 256 128 20 xla
run large_512 bert_large 32 512 80 cudnn
