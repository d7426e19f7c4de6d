#!/usr/bin/env bash
# Runs the browser tests (tests/browser/*.test.mjs) against an already built page.
#
# The caller builds first: the page into dist/ (trunk) and the native CLI into target/debug/saeplay (cargo build).
# Environment (all optional):
#   SAEPLAY_DIST            built page directory           (default dist)
#   SAEPLAY_BIN             native CLI for reference runs  (default target/debug/saeplay)
#   SAEPLAY_MODEL           model directory                (default www/models/builtin)
#   SAEPLAY_BROWSER_PATHS   cpu,webgpu or one of them      (default cpu,webgpu)
#   BROWSER_TESTS_TIMEOUT   seconds for the whole run      (default 2700)
# Exits with node's status (124 if the timeout killed it).
set -euo pipefail
cd "$(dirname "$0")/.."

dist="${SAEPLAY_DIST:-dist}"
bin="${SAEPLAY_BIN:-target/debug/saeplay}"
limit="${BROWSER_TESTS_TIMEOUT:-2700}"

missing=0
[ -f "$dist/index.html" ] || { echo "browser-tests: $dist/index.html not found: build the page first" >&2; missing=1; }
[ -x "$bin" ] || { echo "browser-tests: $bin not found: build the native CLI first" >&2; missing=1; }
[ -x /usr/bin/chromium ] || { echo "browser-tests: /usr/bin/chromium not found: run scripts/setup.sh" >&2; missing=1; }
[ -d node_modules/playwright-core ] || { echo "browser-tests: node_modules/playwright-core missing: run npm ci" >&2; missing=1; }
[ "$missing" -eq 0 ] || exit 2

# node and every Chromium it starts run in a process group of their own. When the run ends, or
# the time limit does, the whole group goes: a browser left behind would keep this script's
# output open, and whoever reads it (CI) would wait for it forever.
setsid node --test --test-concurrency=1 tests/browser/ &
group=$!
# The watchdog polls rather than sleeping through the limit, so it ends on its own soon after
# node does (a long sleep would itself hold the output open).
(
  deadline=$((SECONDS + limit))
  while kill -0 "$group" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "browser-tests: timed out after ${limit}s" >&2
      kill -TERM -- "-$group" 2>/dev/null; sleep 30; kill -KILL -- "-$group" 2>/dev/null
      break
    fi
    sleep 2
  done
) &
watchdog=$!
status=0
wait "$group" || status=$?
kill -KILL -- "-$group" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true
if [ "$status" -eq 143 ] || [ "$status" -eq 137 ]; then
  status=124
fi
exit "$status"
