// Browser storage and the worker's survival, in headless Chromium on the CPU path (storage does
// not depend on the backend): a stored SAE holds exactly its own bytes (and what the browser
// counts for it, against its zip); another tab sees what one keeps or removes; a corrupt entry
// is shown, exported as raw bytes and removed without stopping startup; a write that does not
// fit the quota is refused in words with the SAE still usable; an older tab holding the
// database cannot hang startup; a crashed worker is replaced; a hung one can be stopped and the next task starts a new
// one; closing while an SAE trains asks first.
//
// Inputs as the other browser tests: SAEPLAY_DIST (the built page).
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { errorText, launch, printLogs, waitForSae, waitReady } from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const TIMEOUT_MS = 180_000;
const SHIPPED = 'blocks.0.hook_resid_pre-topk16';

let site;
let browser;
let tmp;
let zipPath;
const measurements = [];
function measure(what, value) {
  measurements.push({ what, value });
  console.log(`[measure] storage: ${what} = ${value}`);
}

before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html is missing: build the page first`);
  site = await serve(DIST);
  browser = await launch({ webgpu: false });
  tmp = mkdtempSync(path.join(tmpdir(), 'saeplay-storage-'));
  // An SAE zip as the page exports it (a shipped SAE's files).
  const context = await browser.newContext();
  const { page, logs } = await openIn(context, `#sae=${SHIPPED}`);
  try {
    await waitReady(page, { timeoutMs: TIMEOUT_MS });
    await page.waitForFunction((id) => document.querySelector('#sae-select').value === id && /features/.test(document.querySelector('#sae-status').textContent), SHIPPED);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#sae-export')]);
    zipPath = path.join(tmp, 'sae.zip');
    await download.saveAs(zipPath);
  } catch (error) {
    printLogs('exporting a zip', logs);
    throw error;
  } finally {
    await context.close();
  }
});

after(async () => {
  await browser?.close();
  await site?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (measurements.length) {
    console.log('==== storage measurements ====');
    for (const m of measurements) console.log(`${m.what.padEnd(60)} ${m.value}`);
  }
});

/** A page in `context` at `fragment`, with its logs. */
async function openIn(context, fragment, { init } = {}) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  const logs = [];
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.stack ?? e.message}`));
  page.on('crash', () => logs.push('[crash]'));
  if (init) await page.addInitScript(init);
  await page.goto(site.url + fragment);
  return { page, logs };
}

const options = (page) => page.$$eval('#sae-select option', (os) => os.map((o) => o.value));

/** The value kept under `key` in the page's database, as {length, bufferLength}, or null. */
const storedValue = (page, key) => page.evaluate((key) => new Promise((resolve, reject) => {
  const open = indexedDB.open('saeplay');
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const db = open.result;
    const get = db.transaction('saes').objectStore('saes').get(key);
    get.onsuccess = () => {
      db.close();
      const v = get.result;
      resolve(v ? { length: v.byteLength, bufferLength: v.buffer ? v.buffer.byteLength : v.byteLength } : null);
    };
    get.onerror = () => reject(get.error);
  };
}), key);

/** The bytes of the entry whose name ends with `suffix` in a stored (uncompressed) zip. */
function zipEntry(zip, suffix) {
  let at = 0;
  while (at + 30 <= zip.length && zip.readUInt32LE(at) === 0x04034b50) {
    const size = zip.readUInt32LE(at + 18);
    const nameLength = zip.readUInt16LE(at + 26);
    const extraLength = zip.readUInt16LE(at + 28);
    const name = zip.subarray(at + 30, at + 30 + nameLength).toString();
    const start = at + 30 + nameLength + extraLength;
    if (name.endsWith(suffix)) return zip.subarray(start, start + size);
    at = start + size;
  }
  throw new Error(`no ${suffix} in the zip`);
}

const noPanic = (logs) => assert.ok(!/panicked|RuntimeError|unreachable/.test(logs.join('\n')), 'no panic');

describe('browser storage', () => {
  test('a stored SAE holds exactly its bytes; two tabs see what each keeps and removes', { timeout: TIMEOUT_MS * 3 }, async () => {
    const context = await browser.newContext();
    const one = await openIn(context, '');
    const two = await openIn(context, '');
    try {
      await waitReady(one.page, { timeoutMs: TIMEOUT_MS });
      await waitReady(two.page, { timeoutMs: TIMEOUT_MS });
      const zip = readFileSync(zipPath);
      const usage = () => one.page.evaluate(async () => (await navigator.storage.estimate()).usage);
      const before = await usage();
      await one.page.setInputFiles('#sae-import', zipPath);
      const id = await waitForSae(one.page, /^imported-/);
      const stored = await storedValue(one.page, id);
      // The zip as kept (its folder renamed to the new id), in a buffer of exactly its size.
      assert.equal(stored.bufferLength, stored.length, 'the stored value is its own bytes, not a view of wasm memory');
      assert.ok(Math.abs(stored.length - zip.length) < 1000, `kept ${stored.length} bytes for a ${zip.length}-byte zip`);
      const grew = (await usage()) - before;
      measure('SAE zip (bytes)', zip.length);
      measure('stored value (bytes)', stored.length);
      measure('site usage added by storing it (bytes, browser estimate)', grew);
      assert.ok(grew < zip.length * 3, `storing a ${zip.length}-byte zip added ${grew} bytes`);
      await one.page.waitForFunction(() => /SAEs kept here: 1\./.test(document.querySelector('#storage-quota').textContent));

      // The other tab lists it at once, and reads it from storage when chosen.
      await two.page.waitForFunction((id) => [...document.querySelectorAll('#sae-select option')].some((o) => o.value === id), id, { timeout: 30_000 });
      await two.page.selectOption('#sae-select', id);
      await two.page.waitForFunction(() => /features, kept in this browser/.test(document.querySelector('#sae-status').textContent));
      assert.equal(await errorText(two.page), '');

      // A reload lists it from its summary; choosing it reads the zip.
      await two.page.reload();
      await waitReady(two.page, { timeoutMs: TIMEOUT_MS });
      await two.page.waitForFunction((id) => [...document.querySelectorAll('#sae-select option')].some((o) => o.value === id), id);

      // Removed in the first tab: gone from the second.
      await one.page.click('#sae-forget');
      await two.page.waitForFunction((id) => ![...document.querySelectorAll('#sae-select option')].some((o) => o.value === id), id, { timeout: 30_000 });
      assert.equal(await storedValue(one.page, id), null);
      noPanic([...one.logs, ...two.logs]);
    } catch (error) {
      printLogs('tab one', one.logs);
      printLogs('tab two', two.logs);
      throw error;
    } finally {
      await context.close();
    }
  });

  test('a corrupt entry is shown, exported as its bytes and removed; startup goes on', { timeout: TIMEOUT_MS * 2 }, async () => {
    const context = await browser.newContext();
    const { page, logs } = await openIn(context, '');
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      await page.waitForFunction(() => /SAEs kept here/.test(document.querySelector('#storage-quota').textContent));
      const junk = [80, 75, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9];
      // Junk under two ids (one with a summary, so it is listed), and a real SAE zip under a
      // shipped SAE's id (it must not take that SAE's place).
      const zip = [...readFileSync(zipPath)];
      await page.evaluate(({ junk, zip }) => new Promise((resolve, reject) => {
        const open = indexedDB.open('saeplay');
        open.onsuccess = () => {
          const db = open.result;
          const tx = db.transaction(['saes', 'meta'], 'readwrite');
          tx.objectStore('saes').put(new Uint8Array(junk), 'broken-1');
          tx.objectStore('saes').put(new Uint8Array(junk), 'broken-2');
          tx.objectStore('meta').put('{"id": "broken-2", "hook_name": "blocks.0.hook_resid_pre"}', 'broken-2');
          tx.objectStore('saes').put(new Uint8Array(zip), 'blocks.1.hook_resid_pre-topk16');
          tx.oncomplete = () => { db.close(); resolve(); };
          tx.onerror = () => reject(tx.error);
        };
        open.onerror = () => reject(open.error);
      }), { junk, zip });
      await page.reload();
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      await page.waitForSelector('#stored-damaged:not([hidden])');
      const rows = await page.$$eval('#stored-damaged li', (ls) => ls.map((l) => l.textContent));
      assert.ok(rows.some((r) => /"broken-1" .*cannot be read/.test(r)), rows.join('\n'));
      assert.ok(rows.some((r) => /shipped with the page/.test(r)), `a stored entry under a shipped id is refused: ${rows.join('\n')}`);
      // broken-2 has a summary, so it is listed; choosing it reads the zip and finds it damaged.
      await page.selectOption('#sae-select', 'broken-2');
      await page.waitForFunction(() => /"broken-2" .*cannot be read/.test(document.querySelector('#stored-damaged').textContent));
      assert.match(await errorText(page), /broken-2 kept in this browser could not be read/);
      // The shipped SAE of that id is untouched, and the page works.
      await page.selectOption('#sae-select', 'blocks.1.hook_resid_pre-topk16');
      await page.waitForFunction(() => /features$/.test(document.querySelector('#sae-status').textContent));

      const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-damaged-export="broken-1"]')]);
      const raw = path.join(tmp, 'broken.raw');
      await download.saveAs(raw);
      assert.deepEqual([...readFileSync(raw)], junk, 'exported byte for byte');
      for (const id of ['broken-1', 'broken-2', 'blocks.1.hook_resid_pre-topk16']) {
        await page.click(`[data-damaged-remove="${id}"]`);
        await page.waitForFunction((id) => !document.querySelector(`[data-damaged-remove="${id}"]`), id);
        assert.equal(await storedValue(page, id), null);
      }
      assert.ok(await page.$eval('#stored-damaged', (e) => e.hidden));
      noPanic(logs);
    } catch (error) {
      printLogs('corrupt entry', logs);
      throw error;
    } finally {
      await context.close();
    }
  });

  test('a write past the quota is refused in words and the SAE stays usable and exportable', { timeout: TIMEOUT_MS * 2 }, async () => {
    const context = await browser.newContext();
    // The browser says almost nothing is left.
    const init = () => {
      const real = navigator.storage.estimate.bind(navigator.storage);
      navigator.storage.estimate = async () => ({ ...(await real()), usage: 999_000, quota: 1_000_000 });
    };
    const { page, logs } = await openIn(context, '', { init });
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      await page.setInputFiles('#sae-import', zipPath);
      const id = await waitForSae(page, /^imported-/);
      await page.waitForFunction(() => /browser storage is full/.test(document.querySelector('#error-text').textContent));
      const message = await errorText(page);
      assert.match(message, /999 kB of its 1\.0 MB/);
      assert.match(message, /stays usable in this tab/);
      assert.equal(await storedValue(page, id), null, 'nothing half-written');
      await page.waitForFunction(() => /features/.test(document.querySelector('#sae-status').textContent));
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#sae-export')]);
      assert.ok((await download.path()) !== null);
      noPanic(logs);
    } catch (error) {
      printLogs('quota', logs);
      throw error;
    } finally {
      await context.close();
    }
  });

  test('an older tab holding the database cannot hang startup', { timeout: TIMEOUT_MS * 2 }, async () => {
    const context = await browser.newContext();
    // A page of the same site holds version 1 open and ignores versionchange, as an old tab would.
    const holder = await context.newPage();
    await holder.goto(site.url + 'models/builtin/config.json');
    await holder.evaluate(() => new Promise((resolve, reject) => {
      const open = indexedDB.open('saeplay', 1);
      open.onupgradeneeded = () => open.result.createObjectStore('saes');
      open.onsuccess = () => { globalThis.held = open.result; resolve(); };
      open.onerror = () => reject(open.error);
    }));
    const { page, logs } = await openIn(context, '');
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      await page.waitForFunction(() => /held by another saeplay tab/.test(document.querySelector('#error-text').textContent), null, { timeout: 60_000 });
      // The page works meanwhile.
      assert.ok((await page.$$('#predictions li')).length > 0 || (await page.textContent('#predictions')).length > 0);
      // Once the old tab lets go, storage works here.
      await holder.evaluate(() => globalThis.held.close());
      await page.setInputFiles('#sae-import', zipPath);
      const id = await waitForSae(page, /^imported-/);
      await page.waitForFunction(() => /SAEs kept here: 1\./.test(document.querySelector('#storage-quota').textContent));
      assert.ok(await storedValue(page, id));
      noPanic(logs);
    } catch (error) {
      printLogs('blocked upgrade', logs);
      throw error;
    } finally {
      await context.close();
    }
  });
});

describe('the worker and unloading', () => {
  test('a crashed worker is started again and the page keeps working', { timeout: TIMEOUT_MS * 2 }, async () => {
    const context = await browser.newContext();
    const { page, logs } = await openIn(context, '#view=features&sae=blocks.2.hook_resid_pre-topk16');
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      const listed = () => page.waitForFunction(() => /features, read on/.test(document.querySelector('#feature-status').textContent), null, { timeout: TIMEOUT_MS });
      await listed();
      await page.evaluate(() => window.saeplay.crashWorker());
      await page.waitForFunction(() => document.querySelector('#feature-status').textContent === '', null, { timeout: TIMEOUT_MS });
      // Another SAE: its scan needs a worker, so a new one starts.
      await page.selectOption('#sae-select', 'blocks.1.hook_resid_pre-topk16');
      await listed();
      assert.equal(await errorText(page), '');
      assert.ok(!logs.some((l) => l.startsWith('[pageerror]')), 'the page itself never failed');
    } catch (error) {
      printLogs('worker crash', logs);
      throw error;
    } finally {
      await page.close();
      await context.close();
    }
  });
  test('a hung worker is shown, stopped by the person, and the next task starts a new one', { timeout: TIMEOUT_MS * 3 }, async () => {
    const context = await browser.newContext();
    const { page, logs } = await openIn(context, '#view=features&sae=blocks.2.hook_resid_pre-topk16');
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      const listed = () => page.waitForFunction(() => /features, read on/.test(document.querySelector('#feature-status').textContent), null, { timeout: TIMEOUT_MS });
      await listed();
      await page.evaluate(() => window.saeplay.hangWorker(3600));
      await page.selectOption('#sae-select', 'blocks.1.hook_resid_pre-topk16');
      await page.waitForSelector('#worker-busy:not([hidden])', { timeout: 60_000 });
      assert.match(await page.textContent('#worker-busy-text'), /has said nothing for \d+ s/);
      await page.click('#worker-stop');
      // The waiting scan hears why (and the page scans that SAE itself); the bar goes.
      await page.waitForSelector('#worker-busy', { state: 'hidden', timeout: 30_000 });
      await listed();
      assert.ok(logs.some((l) => /stopped by you/.test(l)), 'the scan was told the worker stopped');
      // The next scan starts a new worker, which answers.
      await page.selectOption('#sae-select', 'blocks.3.hook_resid_pre-topk16');
      await page.waitForFunction(() => window.saeplay.workerStarts() === 2, null, { timeout: 60_000 });
      await page.waitForFunction(() => !/features, read on/.test(document.querySelector('#feature-status').textContent), null, { timeout: 60_000, polling: 20 }).catch(() => {});
      await listed();
      assert.equal(await page.$eval('#sae-select', (s) => s.value), 'blocks.3.hook_resid_pre-topk16');
      assert.ok(!logs.some((l) => /scanning in the page/.test(l) && !/stopped by you/.test(l)), 'the new worker scanned it');
      noPanic(logs);
    } catch (error) {
      printLogs('hung worker', logs);
      throw error;
    } finally {
      await context.close();
    }
  });

  test('a reload mid-training offers to resume, and the resumed SAE equals an uninterrupted one', { timeout: TIMEOUT_MS * 5 }, async () => {
    // 384 steps of 64 vectors over 24,576 captured ones, 4,096 latents wide: a few seconds of
    // training on the CPU path (at 4x, 192 steps ended before the first checkpoint), with a
    // checkpoint every half second.
    const settings = { '#train-tokens': '24576', '#train-batch': '64', '#train-expansion': '32' };
    const trainedWeights = async (page) => {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#sae-export')]);
      const file = path.join(tmp, `${Date.now()}-${Math.random()}.zip`);
      await download.saveAs(file);
      return zipEntry(readFileSync(file), 'sae_weights.safetensors');
    };
    const start = async (page) => {
      await page.evaluate(() => window.saeplay.setCheckpointSeconds(0.5));
      for (const [selector, value] of Object.entries(settings)) await page.fill(selector, value);
      await page.click('#train-start');
    };
    const done = (page) => page.waitForFunction(() => /Done|Stopped/.test(document.querySelector('#train-status').textContent), null, { timeout: TIMEOUT_MS * 2 });

    const context = await browser.newContext();
    const { page, logs } = await openIn(context, '#view=train');
    page.on('dialog', (d) => d.accept());
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      await start(page);
      // Once a checkpoint is kept (some way in), the run is paused (so it cannot finish while
      // the tab reloads) and the tab reloads.
      await page.waitForFunction(() => /step \d+ of 384/.test(document.querySelector('#train-status').textContent), null, { timeout: TIMEOUT_MS, polling: 50 });
      const keptRun = () => page.evaluate(() => new Promise((resolve) => {
        const open = indexedDB.open('saeplay');
        open.onsuccess = () => {
          const get = open.result.transaction('runs').objectStore('runs').get('current');
          get.onsuccess = () => { open.result.close(); resolve(Boolean(get.result)); };
          get.onerror = () => { open.result.close(); resolve(false); };
        };
        open.onerror = () => resolve(false);
      }));
      const deadline = Date.now() + TIMEOUT_MS;
      while (!(await keptRun())) {
        assert.ok(Date.now() < deadline, 'a checkpoint was kept');
        await new Promise((r) => setTimeout(r, 100));
      }
      await page.click('#train-pause');
      await page.waitForFunction(() => document.querySelector('#train-pause').textContent === 'Resume');
      await page.reload();
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      await page.waitForSelector('#train-resume:not([hidden])');
      const offer = await page.textContent('#train-resume-text');
      assert.match(offer, /stopped at step ([1-9]\d*) of 384/);
      measure('resume offered at', offer);
      await page.click('#train-resume-go');
      await page.waitForFunction(() => /step \d+ of 384/.test(document.querySelector('#train-status').textContent), null, { timeout: TIMEOUT_MS });
      await done(page);
      await waitForSae(page, /^tab-/);
      const resumed = await trainedWeights(page);
      assert.equal(await page.evaluate(() => new Promise((resolve) => {
        const open = indexedDB.open('saeplay');
        open.onsuccess = () => {
          const get = open.result.transaction('runs').objectStore('runs').get('current');
          get.onsuccess = () => { open.result.close(); resolve(get.result ?? null); };
        };
      })), null, 'the kept run is dropped once it ends');
      await page.reload();
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      assert.ok(await page.$eval('#train-resume', (e) => e.hidden), 'nothing to resume after it ended');

      // The same settings, never interrupted, in a fresh profile.
      const fresh = await browser.newContext();
      const other = await openIn(fresh, '#view=train');
      try {
        await waitReady(other.page, { timeoutMs: TIMEOUT_MS });
        await start(other.page);
        await done(other.page);
        await waitForSae(other.page, /^tab-/);
        const whole = await trainedWeights(other.page);
        assert.ok(whole.length > 1000);
        assert.ok(Buffer.compare(resumed, whole) === 0, 'the resumed SAE has exactly the weights of the uninterrupted one');
      } finally {
        await fresh.close();
      }
      noPanic(logs);
    } catch (error) {
      printLogs('resume', logs);
      throw error;
    } finally {
      await context.close();
    }
  });

  test('closing while an SAE trains asks first; closing idle does not', { timeout: TIMEOUT_MS * 2 }, async () => {
    const context = await browser.newContext();
    const { page, logs } = await openIn(context, '#view=train');
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      const dialogs = [];
      page.on('dialog', async (d) => { dialogs.push(d.type()); await d.dismiss(); });
      await page.click('#train-start');
      await page.waitForFunction(() => /Capturing|Training|Starting/.test(document.querySelector('#train-status').textContent));
      await page.close({ runBeforeUnload: true });
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(dialogs, ['beforeunload'], 'the browser asked before leaving');
      assert.ok(!page.isClosed(), 'dismissing the question keeps the page');
      await page.click('#train-cancel');
      await page.waitForFunction(() => /Cancelled/.test(document.querySelector('#train-status').textContent), null, { timeout: TIMEOUT_MS });
      await page.close({ runBeforeUnload: true });
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(page.isClosed(), 'an idle page closes without asking');
      assert.deepEqual(dialogs, ['beforeunload']);
      noPanic(logs);
    } catch (error) {
      printLogs('unload', logs);
      throw error;
    } finally {
      await context.close();
    }
  });
});

// The page's WebGPU device is lost mid-training (destroyed on purpose, as a GPU reset would lose
// it): the page moves to the CPU path with a message, keeps working, and the training run goes
// on from its last checkpoint on the CPU.
const WEBGPU = (process.env.SAEPLAY_BROWSER_PATHS ?? 'cpu,webgpu').split(',').map((p) => p.trim()).includes('webgpu');
describe('WebGPU device loss', { skip: !WEBGPU && 'the WebGPU path is not selected' }, () => {
  test('a lost device moves the page to the CPU; training resumes from its checkpoint', { timeout: TIMEOUT_MS * 6 }, async () => {
    const gpuBrowser = await launch({ webgpu: true });
    const context = await gpuBrowser.newContext();
    // Keep every device the page asks for, so the test can destroy it.
    const init = () => {
      const request = GPUAdapter.prototype.requestDevice;
      globalThis.__gpuDevices = [];
      GPUAdapter.prototype.requestDevice = async function (...args) {
        const device = await request.apply(this, args);
        globalThis.__gpuDevices.push(device);
        return device;
      };
    };
    const { page, logs } = await openIn(context, '#backend=webgpu&view=train', { init });
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      assert.match(await page.textContent('#backend'), /WebGPU/);
      await page.evaluate(() => window.saeplay.setCheckpointSeconds(0.5));
      // 48 steps of 128 vectors: SwiftShader captures slowly, so the capture is kept short.
      for (const [selector, value] of Object.entries({ '#train-tokens': '6144', '#train-batch': '128', '#train-expansion': '4' })) {
        await page.fill(selector, value);
      }
      await page.click('#train-start');
      await page.waitForFunction(() => /step ([5-9]|[1-4]\d) of 48/.test(document.querySelector('#train-status').textContent), null, { timeout: TIMEOUT_MS * 2, polling: 50 });
      const destroyed = await page.evaluate(() => { globalThis.__gpuDevices.forEach((d) => d.destroy()); return globalThis.__gpuDevices.length; });
      assert.ok(destroyed >= 1, 'the page had a device to lose');
      await page.waitForFunction(() => /CPU/.test(document.querySelector('#backend').textContent), null, { timeout: TIMEOUT_MS });
      await page.waitForFunction(() => /WebGPU stopped working/.test(document.querySelector('#error-text').textContent), null, { timeout: TIMEOUT_MS });
      // The page works on the CPU: a new prompt gets predictions.
      await page.click('#tab-prompt');
      await page.fill('#prompt', 'Once upon a time, a little fox');
      await page.waitForFunction(() => document.querySelectorAll('#predictions li').length >= 3, null, { timeout: TIMEOUT_MS });
      // The run goes on from its checkpoint, now in the worker.
      await page.waitForSelector('#train-resume:not([hidden])', { timeout: TIMEOUT_MS });
      await page.click('#train-resume-go');
      await page.waitForFunction(() => /Done/.test(document.querySelector('#train-status').textContent), null, { timeout: TIMEOUT_MS * 2 });
      await waitForSae(page, /^tab-/);
      noPanic(logs);
    } catch (error) {
      printLogs('device loss', logs);
      throw error;
    } finally {
      await context.close();
      await gpuBrowser.close();
    }
  });
});

