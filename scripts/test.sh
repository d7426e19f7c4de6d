#!/usr/bin/env bash
# The whole test suite: native engine and CLI tests (CPU and wgpu on Mesa's lavapipe), then the
# page built with trunk and driven in headless Chromium on its WebGPU and CPU paths.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

echo "== native tests (release build) =="
# Built first, then run under a time limit: a test that hangs fails the run instead of stalling it.
cargo test --release --no-run
timeout --kill-after=30 "${NATIVE_TESTS_TIMEOUT:-1200}" cargo test --release

echo "== page build (trunk, release, no wasm-opt) =="
bash scripts/build-page.sh --fast

echo "== browser tests (headless Chromium) =="
SAEPLAY_DIST="$PWD/dist" SAEPLAY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/saeplay" \
  bash scripts/browser-tests.sh
