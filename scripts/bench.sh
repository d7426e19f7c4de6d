#!/usr/bin/env bash
# Speed side by side, in one command: saeplay's CLI and page against PyTorch and onnxruntime
# (node and web) on the same model, shapes and token ids, on this machine, in one session.
#
#   bash scripts/bench.sh            # the whole table (about 20 minutes on 2 cores)
#   bash scripts/bench.sh --quick    # the built-in model's forward rows only
#
# Peers come from the registries into SAEPLAY_BENCH_DIR (default ~/.cache/saeplay/bench): torch,
# transformers, onnx and onnxruntime from PyPI (scripts/bench/requirements.txt) in a venv, and
# onnxruntime-node and onnxruntime-web from npm. The ONNX files are exported from the model's own
# weights and checked against saeplay's logits first (scripts/bench/peers.py). Results: one JSON
# file per peer and table.md under $SAEPLAY_BENCH_DIR/results/<time>/. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
BENCH_DIR="${SAEPLAY_BENCH_DIR:-$HOME/.cache/saeplay/bench}"
OUT="$BENCH_DIR/results/$(date +%Y%m%d-%H%M%S)"
MODEL="${SAEPLAY_BENCH_MODEL:-www/models/builtin}"
SHAPES=1x64,8x64,1x128,16x128
PAGE_SHAPES=1x64,8x64,1x128
GEN=64
ORT_VERSION=1.30.0
log() { echo "[bench] $*" >&2; }

bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/saeplay-ci/target}"
mkdir -p "$OUT"

if [ ! -x "$BENCH_DIR/venv/bin/python" ] || ! cmp -s scripts/bench/requirements.txt "$BENCH_DIR/venv/requirements.txt"; then
  log "pip install the Python peers (torch is a few GB)"
  python3 -m venv "$BENCH_DIR/venv"
  "$BENCH_DIR/venv/bin/pip" install -q -r scripts/bench/requirements.txt
  cp scripts/bench/requirements.txt "$BENCH_DIR/venv/requirements.txt"
fi
PY="$BENCH_DIR/venv/bin/python"
export SAEPLAY_BENCH_NPM="$BENCH_DIR/npm"
if [ ! -d "$SAEPLAY_BENCH_NPM/node_modules/onnxruntime-web" ] || ! grep -q "\"$ORT_VERSION\"" "$SAEPLAY_BENCH_NPM/node_modules/onnxruntime-web/package.json"; then
  log "npm install onnxruntime-node and onnxruntime-web $ORT_VERSION"
  mkdir -p "$SAEPLAY_BENCH_NPM"
  [ -f "$SAEPLAY_BENCH_NPM/package.json" ] || echo '{"private": true}' > "$SAEPLAY_BENCH_NPM/package.json"
  # The CPU build of onnxruntime-node is in the package; its install script would fetch CUDA
  # libraries from outside the registry.
  (cd "$SAEPLAY_BENCH_NPM" && npm install --no-audit --no-fund --silent --onnxruntime-node-install=skip \
    "onnxruntime-node@$ORT_VERSION" "onnxruntime-web@$ORT_VERSION")
fi

log "cargo build --release"
cargo build --release --quiet
BIN="$CARGO_TARGET_DIR/release/saeplay"
if [ ! -f dist/index.html ] || [ -n "$(find src www index.html -newer dist/index.html -print -quit)" ]; then
  log "page build"
  bash scripts/build-page.sh --fast
fi

log "ONNX export of $MODEL, checked against saeplay's logits"
"$PY" scripts/bench/peers.py export "$MODEL" "$BIN" "$OUT/onnx" >&2   # writes onnx/export.json

log "forward and generation: saeplay CLI (host path, then burn ops), PyTorch, onnxruntime-node"
"$BIN" bench --model "$MODEL" --shapes "$SHAPES" --generate "$GEN" --json > "$OUT/saeplay-cli.json"
"$BIN" bench --model "$MODEL" --shapes "$SHAPES" --generate "$GEN" --json --burn-forward > "$OUT/saeplay-cli-burn.json"
"$PY" scripts/bench/peers.py torch "$MODEL" "$SHAPES" --gen "$GEN" > "$OUT/pytorch.json"
node scripts/bench/ort.mjs node "$OUT/onnx" "$SHAPES" --threads 1 --gen "$GEN" > "$OUT/ort-node-1.json"
node scripts/bench/ort.mjs node "$OUT/onnx" "$SHAPES" --threads 0 > "$OUT/ort-node-all.json"

log "in headless Chromium: saeplay's page (CPU path) and onnxruntime-web, 1 thread"
SAEPLAY_DIST="$PWD/dist" SAEPLAY_BENCH_CPU_SHAPES="$PAGE_SHAPES" \
  node tests/browser/bench.mjs --paths cpu --runs 20 --generate "$GEN" --sae --json "$OUT/saeplay-page.json" >&2
node scripts/bench/ort.mjs web "$OUT/onnx" "$PAGE_SHAPES" --threads 1 --gen "$GEN" > "$OUT/ort-web-1.json"

if [ "$QUICK" = 0 ]; then
  log "SAE training, d_in 128, batch 4096: saeplay and PyTorch, every architecture"
  for arch in topk batchtopk matryoshka_batchtopk standard jumprelu gated; do
    "$BIN" bench-sae --d-in 128 --d-sae 1024,4096,8192 --architecture "$arch" --seconds 4 --json > "$OUT/saeplay-sae-$arch.json"
  done
  "$PY" tests/sae/pytorch_bench.py --d-in 128 --d-sae 1024,4096,8192 --arch topk,batchtopk,matryoshka,relu,jumprelu,gated --no-matmul --json > "$OUT/pytorch-sae.json"

  log "GPT-2-small sizes (random weights, 124M parameters): saeplay CLI and PyTorch"
  SMALL="$BENCH_DIR/gpt2-small-random"
  [ -f "$SMALL/model.safetensors" ] || "$BIN" make-test-model --preset gpt2-small --out "$SMALL"
  "$BIN" bench --model "$SMALL" --shapes 1x64,8x64,1x128 --generate 32 --json > "$OUT/saeplay-cli-gpt2-small.json"
  "$PY" scripts/bench/peers.py torch "$SMALL" 1x64,8x64,1x128 --gen 32 > "$OUT/pytorch-gpt2-small.json"

  log "SmolLM2-135M (the Q4_1 GGUF setup.sh fetched): saeplay CLI and PyTorch (transformers dequantises it to float32)"
  SMOL="${SAEPLAY_MODELS_DIR:-$HOME/.cache/saeplay/models}/SmolLM2-135M-Instruct.Q4_1.gguf"
  "$BIN" bench --model "$SMOL" --shapes 1x64,8x64 --generate 32 --json > "$OUT/saeplay-cli-smollm2.json"
  "$PY" scripts/bench/peers.py torch "$SMOL" 1x64,8x64 --gen 32 > "$OUT/pytorch-smollm2.json"
  # The same values as float32 safetensors, the usual Hugging Face download: the peers' numbers
  # above are already on these float32 values.
  SMOL_F32="$BENCH_DIR/smollm2-f32"
  [ -f "$SMOL_F32/model.safetensors" ] || "$PY" scripts/bench/peers.py float32 "$SMOL" "$SMOL_F32" >&2
  "$BIN" bench --model "$SMOL_F32" --shapes 1x64,8x64 --generate 32 --json > "$OUT/saeplay-cli-smollm2-f32.json"

  # Both real models in the tab, forward and generation with the key/value cache: saeplay's
  # page opens the model by URL as a person would; onnxruntime runs the same weights exported
  # to ONNX.
  for name in gpt2-small smollm2; do
    model="$SMALL"; [ "$name" = smollm2 ] && model="$SMOL"
    log "$name: ONNX export, onnxruntime-node (generation) and -web, the page"
    "$PY" scripts/bench/peers.py export "$model" "$BIN" "$OUT/onnx-$name" >&2
    node scripts/bench/ort.mjs node "$OUT/onnx-$name" '' --threads 1 --gen 32 > "$OUT/ort-node-1-$name.json"
    node scripts/bench/ort.mjs web "$OUT/onnx-$name" 1x64,8x64 --threads 1 --gen 32 > "$OUT/ort-web-1-$name.json"
    SAEPLAY_DIST="$PWD/dist" SAEPLAY_BENCH_CPU_SHAPES=1x64,8x64 \
      node tests/browser/bench.mjs --paths cpu --runs 3 --generate 32 --model "$model" --json "$OUT/saeplay-page-$name.json" >&2
    rm -f "$OUT/onnx-$name"/*.onnx   # 1.5 GB each; export.json stays
  done
  SAEPLAY_DIST="$PWD/dist" SAEPLAY_BENCH_CPU_SHAPES=1x64,8x64 \
    node tests/browser/bench.mjs --paths cpu --runs 3 --generate 32 --model "$SMOL_F32" --json "$OUT/saeplay-page-smollm2-f32.json" >&2
fi

"$PY" scripts/bench/table.py "$OUT" | tee "$OUT/table.md"
log "results in $OUT"
