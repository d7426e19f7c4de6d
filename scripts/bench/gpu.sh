#!/usr/bin/env bash
# GPU rows of the speed table, on a machine with an NVIDIA GPU, Vulkan and PyTorch with CUDA:
# saeplay's native wgpu path against PyTorch on CUDA, on the built-in model and on GPT-2-small
# sizes (random weights), forward, generation and TopK SAE training; and the CPU rows on that
# machine's cores. Not run by bash scripts/bench.sh (this machine has no GPU).
#
#   BIN=path/to/release/saeplay OUT=DIR [PY=python3] bash scripts/bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN="${BIN:-target/release/saeplay}"
OUT="${OUT:-/tmp/saeplay-gpu-bench}"
PY="${PY:-python3}"
mkdir -p "$OUT"
SHAPES=1x64,8x64,1x128,16x128
SMALL=/tmp/gpt2-small-random
run() { echo "+ $*" >&2; timeout 150 "$@"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt"
nproc >> "$OUT/gpu.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' >> "$OUT/gpu.txt"
[ -f "$SMALL/model.safetensors" ] || run "$BIN" make-test-model --preset gpt2-small --out "$SMALL" >&2

for pair in builtin:www/models/builtin gpt2-small:$SMALL; do
  name="${pair%%:*}"; model="${pair#*:}"
  run "$BIN" bench --backend wgpu --model "$model" --shapes "$SHAPES" --generate 32 --json > "$OUT/saeplay-wgpu-$name.json"
  run "$PY" scripts/bench/peers.py torch "$model" "$SHAPES" --gen 32 --device cuda > "$OUT/pytorch-cuda-$name.json"
  run "$BIN" bench --model "$model" --shapes "$SHAPES" --generate 32 --json > "$OUT/saeplay-cpu-$name.json"
  run "$PY" scripts/bench/peers.py torch "$model" "$SHAPES" --gen 32 > "$OUT/pytorch-cpu-$name.json"
done
for arch in topk standard; do
  run "$BIN" bench-sae --backend wgpu --d-in 128 --d-sae 1024,4096,8192 --architecture "$arch" --seconds 2 --json > "$OUT/saeplay-wgpu-sae-$arch-128.json"
  run "$BIN" bench-sae --backend wgpu --d-in 768 --d-sae 24576 --architecture "$arch" --seconds 2 --json > "$OUT/saeplay-wgpu-sae-$arch-768.json"
done
run "$PY" tests/sae/pytorch_bench.py --device cuda --d-in 128 --d-sae 1024,4096,8192 --arch topk,relu --no-matmul --seconds-per-config 2 --json > "$OUT/pytorch-cuda-sae-128.json"
run "$PY" tests/sae/pytorch_bench.py --device cuda --d-in 768 --d-sae 24576 --arch topk,relu --no-matmul --seconds-per-config 2 --json > "$OUT/pytorch-cuda-sae-768.json"
echo "done" >&2
