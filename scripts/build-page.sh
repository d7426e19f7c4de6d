#!/usr/bin/env bash
# Build the static page into dist/.
#   (no flag)  release build with wasm-opt -O3: what a static host should serve.
#   --fast     the same optimised cargo build without wasm-opt (about 3 minutes less on 2 cores),
#              for tests: trunk's debug mode skips wasm-opt; Trunk.toml keeps cargo's release profile.
#              This is the build `trunk serve` serves.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
# trunk runs cargo offline (Trunk.toml): fetch the wasm-only crates first (instant when present).
cargo fetch --target wasm32-unknown-unknown
if [ "${1:-}" = "--fast" ]; then
  trunk build index.html
else
  trunk build index.html --release
fi
ls -la dist/*.wasm
