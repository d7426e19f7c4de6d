#!/usr/bin/env bash
# The whole test suite (every tier, docs/testing.md): the native engine and CLI tests, slow ones
# included (GPT-2-scale, SmolLM2, wgpu on Mesa's lavapipe), then the page built with trunk and
# driven in headless Chromium on its WebGPU and CPU paths, and the README's serve command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
started=$SECONDS
elapsed() { echo "   ($(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s since the start)"; }

echo "== native tests (cargo test, every tier) =="
# Built first, then run under a time limit: a test that hangs fails the run instead of stalling it.
cargo test --no-run
elapsed
timeout --kill-after=30 "${NATIVE_TESTS_TIMEOUT:-1200}" cargo test -- --include-ignored
elapsed

echo "== page build (trunk, release, no wasm-opt) =="
bash scripts/build-page.sh --fast
elapsed

echo "== browser tests (headless Chromium) =="
SAEPLAY_DIST="$PWD/dist" SAEPLAY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/saeplay" \
  bash scripts/browser-tests.sh
elapsed
