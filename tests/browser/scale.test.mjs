// GPT-2 small's scale in a tab: a checkpoint with GPT-2 small's real shapes (12 layers, 768 wide,
// 50,257 tokens, 1,024 positions; random weights the CLI generates, ~500 MB) and a 24,576-latent
// SAE (~150 MB), served by a stand-in Hugging Face Hub over HTTP (the Hub's code path), then again
// from the browser's cache. A person's loop on it: the first prediction, the SAE heatmap on the
// prompt, a feature card (scan, logit lens over 50,257 tokens), steering; with the time each
// takes and the page's wasm memory.
//
// The CPU path only: on this machine WebGPU is SwiftShader, a software GPU about 25x slower than
// the CPU path, where this model would take many minutes per step.
//
// Inputs: SAEPLAY_DIST (the built page), SAEPLAY_BIN (the native CLI, which writes the files).
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { BASE_ARGS, CHROMIUM, printLogs, waitReady } from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const BIN = path.resolve(ROOT, process.env.SAEPLAY_BIN ?? 'target/debug/saeplay');
const TIMEOUT_MS = 600_000;
const MODEL_REPO = 'saeplay-test/gpt2-small-shaped';
const HOOK = 'blocks.8.hook_resid_pre';

let site;
let hub;
let tmp;
let context;
const measurements = [];
function measure(what, value) {
  measurements.push({ what, value });
  console.log(`[measure] scale: ${what} = ${value}`);
}

before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html is missing: build the page first`);
  assert.ok(existsSync(BIN), `the native CLI ${BIN} is missing (SAEPLAY_BIN)`);
  tmp = mkdtempSync(path.join(tmpdir(), 'saeplay-scale-'));
  const root = path.join(tmp, 'hub');
  const started = Date.now();
  execFileSync(BIN, ['make-test-model', '--preset', 'gpt2-small', '--out', path.join(root, MODEL_REPO, 'resolve/main')], { stdio: 'inherit' });
  execFileSync(BIN, ['make-test-sae', '--d-in', '768', '--d-sae', '24576', '--hook', HOOK, '--k', '32', '--out', path.join(root, 'saes/gpt2-small-24576')], { stdio: 'inherit' });
  measure('writing the checkpoint and the SAE (native)', `${Date.now() - started} ms`);
  site = await serve(DIST);
  hub = await serve(root, { hub: true });
  // A profile on disk, as a person's browser has: an in-memory (incognito) context's storage
  // quota is too small to keep a 500 MB download.
  context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: BASE_ARGS,
  });
});

after(async () => {
  await context?.close();
  await site?.close();
  await hub?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (measurements.length) {
    console.log('==== scale measurements (GPT-2-small-shaped checkpoint, 24,576-latent SAE, CPU path) ====');
    for (const m of measurements) console.log(`${m.what.padEnd(60)} ${m.value}`);
  }
});

const memoryMb = (page) => page.evaluate(() => Math.round(window.saeplay.memoryBytes() / 1e6));

describe('GPT-2 small scale in the tab', () => {
  test('load, predict, heatmap, card and steering on a 124M-parameter model with a 24,576-latent SAE', { timeout: TIMEOUT_MS * 2 }, async () => {
    const sae = `${hub.url}saes/gpt2-small-24576/`;
    const fragment = `#model=hf:${MODEL_REPO}&sae=${encodeURIComponent(sae)}&view=features&feature=5`;
    for (const visit of ['first', 'cached']) {
      const page = await context.newPage();
      page.setDefaultTimeout(TIMEOUT_MS);
      const logs = [];
      page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[pageerror] ${e.stack ?? e.message}`));
      page.on('crash', () => logs.push('[crash]'));
      await page.addInitScript((endpoint) => { globalThis.SAEPLAY_HF_ENDPOINT = endpoint; }, hub.url.replace(/\/$/, ''));
      try {
        await page.goto(site.url + fragment);
        await page.waitForSelector('#consent:not([hidden])');
        const before = hub.requests.length;
        let started = Date.now();
        await page.click('#consent-yes');
        await waitReady(page, { timeoutMs: TIMEOUT_MS });
        measure(`${visit}: model load to first prediction`, `${Date.now() - started} ms`);
        assert.equal(await page.$$eval('#predictions li', (l) => l.length), 10);
        await page.waitForSelector('#consent:not([hidden])'); // the SAE's URL
        started = Date.now();
        await page.click('#consent-yes');
        await page.waitForSelector('#card-title', { timeout: TIMEOUT_MS });
        measure(`${visit}: SAE load, feature scan and card`, `${Date.now() - started} ms`);
        const card = await page.evaluate(() => ({
          title: document.querySelector('#card-title').textContent,
          promoted: document.querySelectorAll('#card-lens-promoted li').length,
        }));
        assert.match(card.title, /#5/);
        assert.equal(card.promoted, 10, 'the logit lens over 50,257 tokens');
        if (visit === 'cached') {
          // Only a missing optional file (sparsity.safetensors) may be asked for again.
          const again = hub.requests.slice(before).filter((r) => !r.endsWith('/sparsity.safetensors'));
          assert.deepEqual(again, [], 'the second visit downloads nothing');
        }
        // The heatmap on the prompt.
        started = Date.now();
        await page.click('#tab-prompt');
        await page.waitForSelector('#heatmap .heat-cell', { timeout: TIMEOUT_MS });
        measure(`${visit}: prompt heatmap`, `${Date.now() - started} ms`);
        if (visit === 'first') {
          // Steering: 8 tokens default and steered, greedy.
          await page.click('#tab-features');
          await page.waitForSelector('#feature-card [data-steer-feature]');
          await page.click('#feature-card [data-steer-feature]');
          await page.evaluate(() => {
            for (const [id, value] of [['#temperature', '0'], ['#max-tokens', '8']]) {
              const el = document.querySelector(id);
              el.value = value;
              el.dispatchEvent(new Event('input', { bubbles: true }));
            }
          });
          started = Date.now();
          await page.click('#steer-run');
          await page.waitForSelector('#steer-steered[data-done="true"]', { timeout: TIMEOUT_MS });
          measure('steering: default and steered, 8 tokens each', `${Date.now() - started} ms`);
          // Random weights mostly predict ids past the 257-token tokenizer (no text): the
          // next-token shift still lists what steering moved.
          assert.ok((await page.$$eval('#steer-shift li', (l) => l.length)) > 0, 'the next-token shift is shown');
        }
        measure(`${visit}: the page's wasm memory (peak)`, `${await memoryMb(page)} MB`);
        const error = await page.evaluate(() => (document.querySelector('#error').hidden ? '' : document.querySelector('#error-text').textContent));
        assert.equal(error, '');
      } catch (error) {
        printLogs(`scale, ${visit} visit`, logs);
        throw error;
      } finally {
        await page.close();
      }
    }
    const usage = await (async () => {
      const page = await context.newPage();
      await page.goto(site.url);
      await page.waitForFunction(() => document.querySelector('#storage-text').textContent !== '', null, { timeout: TIMEOUT_MS });
      const text = await page.textContent('#storage-text');
      await page.close();
      return text;
    })();
    measure('download cache', usage);
  });
});
