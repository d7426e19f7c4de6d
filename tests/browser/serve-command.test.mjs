// The README's serve command, as a newcomer runs it: `trunk serve` starts, serves the page, the
// page reaches "ready", and Ctrl-C stops trunk and everything it started. While it serves, cargo's
// kind of churn (directories made and removed at once) happens in the repository's target/: that
// is what crashed trunk 0.21's watcher (notify-rs/notify #678) when it watched the whole folder.
//
// Runs after scripts/build-page.sh --fast, whose cargo build `trunk serve` reuses (same profile,
// same target directory), so the serve here only runs wasm-bindgen and copies the assets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launch, openPage, printLogs, waitReady } from './harness.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BUILD_TIMEOUT_MS = Number(process.env.SERVE_SMOKE_BUILD_TIMEOUT_MS ?? 900_000);

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether any process of the group `pgid` is still alive. */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    if (error.code === 'ESRCH') return false;
    throw error;
  }
}

/** Makes and removes `count` nested directories under `dir`, as a cargo build does in target/. */
async function churn(dir, count) {
  for (let i = 0; i < count; i++) {
    const deep = path.join(dir, `churn-${i}`, 'deps', 'incremental');
    mkdirSync(deep, { recursive: true });
    rmSync(path.join(dir, `churn-${i}`), { recursive: true, force: true });
    if (i % 50 === 0) await sleep(5);
  }
}

test("the README's serve command serves the page and stops cleanly", { timeout: BUILD_TIMEOUT_MS + 300_000 }, async () => {
  const port = await freePort();
  const dist = mkdtempSync(path.join(tmpdir(), 'saeplay-serve-'));
  const output = [];
  const trunk = spawn('trunk', ['serve', '--port', String(port), '--dist', dist], {
    cwd: ROOT,
    detached: true, // its own process group: cargo and wasm-bindgen too, checked at the end
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trunk.stdout.on('data', (chunk) => output.push(chunk.toString()));
  trunk.stderr.on('data', (chunk) => output.push(chunk.toString()));
  const exited = new Promise((resolve) => trunk.on('exit', (code, signal) => resolve({ code, signal })));
  let browser;
  try {
    const url = `http://127.0.0.1:${port}/`;
    const deadline = Date.now() + BUILD_TIMEOUT_MS;
    let served = false;
    while (!served) {
      assert.equal(trunk.exitCode, null, `trunk serve exited before serving:\n${output.join('')}`);
      assert.ok(Date.now() < deadline, `trunk serve served nothing in ${BUILD_TIMEOUT_MS / 1000} s:\n${output.join('')}`);
      served = await fetch(url).then((res) => res.ok, () => false);
      if (!served) await sleep(1000);
    }

    // cargo's kind of churn in target/, inside the repository, while trunk watches.
    const churnDir = path.join(ROOT, 'target', 'serve-smoke-churn');
    await churn(churnDir, 400);
    rmSync(churnDir, { recursive: true, force: true });

    browser = await launch();
    const { page, logs, close } = await openPage(browser, url);
    try {
      await waitReady(page);
    } catch (error) {
      printLogs('served page', logs);
      throw error;
    }
    await close();
    await sleep(1500); // the watcher's events from the churn reach the debouncer
    assert.equal(trunk.exitCode, null, `trunk serve died while serving:\n${output.join('')}`);
  } finally {
    await browser?.close();
    if (trunk.exitCode === null) process.kill(-trunk.pid, 'SIGINT');
    const stopped = await Promise.race([exited, sleep(30_000).then(() => null)]);
    const alive = groupAlive(trunk.pid);
    if (alive) process.kill(-trunk.pid, 'SIGKILL');
    rmSync(dist, { recursive: true, force: true });
    const text = output.join('');
    assert.ok(stopped, `trunk serve did not stop within 30 s of Ctrl-C:\n${text}`);
    assert.ok(!alive, `trunk serve left processes running after Ctrl-C:\n${text}`);
    assert.doesNotMatch(text, /panicked|Aborted/, `trunk serve panicked:\n${text}`);
  }
});
