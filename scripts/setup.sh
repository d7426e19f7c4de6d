#!/usr/bin/env bash
# Installs what building, serving and testing saeplay needs on a fresh machine of this kind.
# Idempotent: each step checks first and does nothing when its tool is already there at the right version.
# Only the package registries are used (Debian, crates.io, npm); nothing else is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
log() { echo "[setup] $*" >&2; }

# The wasm-bindgen CLI must equal the wasm-bindgen crate that Cargo.lock pins.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
# Mesa's lavapipe: the Vulkan device for native wgpu tests on machines with no GPU.
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers libvulkan1)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]; then
  log "cargo install trunk $TRUNK_VERSION (about 6 minutes)"
  cargo install --locked "trunk@$TRUNK_VERSION"
fi

WB_VERSION="$(wasm_bindgen_version)"
if [ -z "$WB_VERSION" ]; then
  log "Cargo.lock has no wasm-bindgen; run 'cargo generate-lockfile' first"; exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  log "cargo install wasm-bindgen-cli $WB_VERSION"
  # --locked fails: a dependency it pins is no longer on the registry.
  cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

# wasm-opt from npm (Debian's binaryen 108 emits a wasm that fails to load) and the Playwright driver.
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ]; then
  log "npm ci (binaryen, playwright-core)"
  npm ci --no-audit --no-fund --silent
fi
log "ready"
