// Models and SAEs from another site, as from the Hugging Face Hub: a second local server stands in
// for huggingface.co (the page is pointed at it with globalThis.SAEPLAY_HF_ENDPOINT, as
// huggingface_hub's HF_ENDPOINT points it at a mirror), with the Hub's layout
// (`REPO/resolve/main/FILE`) and CORS. Nothing leaves this machine.
//
// Checked: one consent for a published SAE link (`sae=RELEASE/SAE_ID`) that brings its model; the
// release table's overrides reach the page (the model is reprocessed with center_writing_weights,
// and the card links to Neuronpedia); the link round-trips; the second visit opens from the
// browser's cache without downloading; the cache can be freed; a missing file (404), a site that
// refuses other pages (CORS), a cut-off download and a cancelled one each end in a plain message.
//
// A sharded Llama checkpoint (`saeplay make-test-model --family llama --shards 3`, with its
// `model.safetensors.index.json`) opens from the stand-in Hub and from picked shards, with the
// logits `saeplay forward` gives on the same folder.
//
// Inputs as the other browser tests: SAEPLAY_DIST (the built page), SAEPLAY_BIN (the CLI),
// SAEPLAY_MODEL (the model the stand-in Hub serves; default www/models/builtin). The CPU path only: downloads do not depend on
// the backend.
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { errorText, launch, openPage, pageLogits, printLogs, readSafetensors, waitReady } from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const MODEL = path.resolve(ROOT, process.env.SAEPLAY_MODEL ?? 'www/models/builtin');
const BIN = path.resolve(ROOT, process.env.SAEPLAY_BIN ?? 'target/release/saeplay');
const SHARDED_DIR = 'tiny/llama-sharded/resolve/main';
const TIMEOUT_MS = 180_000;
const RELEASE = 'gpt2-small-res-jb';
const SAE_ID = 'blocks.1.hook_resid_pre';
const MODEL_DIR = 'openai-community/gpt2/resolve/main';
const SAE_DIR = `jbloom/GPT2-Small-SAEs-Reformatted/resolve/main/${SAE_ID}`;

let site;
let hub;
let tmp;
let browser;
const measurements = [];
function measure(what, value) {
  measurements.push({ what, value });
  console.log(`[measure] hub: ${what} = ${value}`);
}

before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html is missing: build the page first`);
  tmp = mkdtempSync(path.join(tmpdir(), 'saeplay-hub-'));
  // The stand-in Hub: the model at the Hub path of GPT-2, and an SAE at the path of
  // gpt2-small-res-jb's layer-1 SAE (shipped weights; the release table supplies the rest).
  const mirror = path.join(tmp, 'hub');
  mkdirSync(path.join(mirror, MODEL_DIR), { recursive: true });
  for (const file of ['config.json', 'model.safetensors', 'tokenizer.json']) {
    cpSync(path.join(MODEL, file), path.join(mirror, MODEL_DIR, file));
  }
  mkdirSync(path.join(mirror, SAE_DIR), { recursive: true });
  const shipped = path.join(MODEL, 'saes', `${SAE_ID}-topk16`);
  for (const file of ['cfg.json', 'sae_weights.safetensors', 'sparsity.safetensors']) {
    cpSync(path.join(shipped, file), path.join(mirror, SAE_DIR, file));
  }
  execFileSync(BIN, ['make-test-model', '--family', 'llama', '--shards', '3', '--seed', '5', '--out', path.join(mirror, SHARDED_DIR)], { stdio: 'inherit' });
  site = await serve(DIST);
  hub = await serve(mirror, { hub: true });
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  await site?.close();
  await hub?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (measurements.length) {
    console.log('==== hub measurements ====');
    for (const m of measurements) console.log(`${m.what.padEnd(50)} ${m.value}`);
  }
});

/** A page in `context` at `fragment`, pointed at the stand-in Hub. */
async function openIn(context, fragment) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  const logs = [];
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.stack ?? e.message}`));
  await page.addInitScript((endpoint) => { globalThis.SAEPLAY_HF_ENDPOINT = endpoint; }, hub.url.replace(/\/$/, ''));
  await page.goto(site.url + fragment);
  return { page, logs };
}

async function consent(page, needle) {
  await page.waitForSelector('#consent:not([hidden])', { timeout: TIMEOUT_MS });
  const question = await page.textContent('#consent-text');
  if (needle) assert.ok(question.includes(needle), `the question names ${needle}: ${question}`);
  await page.click('#consent-yes');
  return question;
}

async function expectFailure(context, fragment, pattern) {
  const { page, logs } = await openIn(context, fragment);
  try {
    await consent(page);
    await page.waitForFunction(() => document.body.dataset.state === 'error' || !document.querySelector('#error').hidden, null, { timeout: TIMEOUT_MS });
    const message = await errorText(page);
    assert.match(message, pattern);
    assert.ok(!/panicked|RuntimeError|unreachable/.test(logs.join('\n')), 'no panic');
  } catch (error) {
    printLogs(fragment, logs);
    throw error;
  } finally {
    await page.close();
  }
}

describe('models and SAEs from the Hub', () => {
  test('a published SAE link asks once, reprocesses the model, links to Neuronpedia, and opens from the cache the second time', { timeout: TIMEOUT_MS * 3 }, async () => {
    const context = await browser.newContext();
    const fragment = `#view=features&sae=${RELEASE}/${SAE_ID}&feature=3`;
    let opened = await openIn(context, fragment);
    try {
      const { page } = opened;
      const started = Date.now();
      const question = await consent(page, `${hub.url}${MODEL_DIR}/`);
      assert.ok(question.includes(`${RELEASE}/${SAE_ID}`), question);
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      measure('first visit: consent to ready (download + load)', `${Date.now() - started} ms`);
      await page.waitForFunction((id) => document.querySelector('#sae-select').value === id, `${RELEASE}/${SAE_ID}`, { timeout: TIMEOUT_MS });
      await page.waitForSelector('#card-neuronpedia', { timeout: TIMEOUT_MS });
      measure('first visit: consent to feature card', `${Date.now() - started} ms`);
      assert.equal(await page.getAttribute('#card-neuronpedia', 'href'), 'https://neuronpedia.org/gpt2-small/1-res-jb/3');
      assert.equal(await page.$$eval('#consent:not([hidden])', (e) => e.length), 0, 'one question only');
      assert.match(await page.textContent('#model-processing-text'), /center_writing_weights/, 'the release asks for center_writing_weights');
      assert.equal(await page.isChecked('#processing-center-writing-weights'), true);
      assert.match(page.url(), new RegExp(`sae=${RELEASE}/${SAE_ID.replace(/\./g, '\\.')}`), 'the link names the release');
      assert.match(page.url(), /feature=3/);
      assert.equal(await errorText(page), '');
      assert.ok(hub.requests.includes(`/${MODEL_DIR}/model.safetensors`));
      assert.ok(hub.requests.includes(`/${SAE_DIR}/sae_weights.safetensors`));
      await page.waitForFunction(() => /Downloads kept in this browser: \d+ files/.test(document.querySelector('#storage-text').textContent));
      measure('cache after the first visit', await page.textContent('#storage-text'));
      // A published SAE's files carry no metrics: Evaluate measures it on held-out text.
      await page.click('#tab-evaluate');
      assert.match(await page.textContent('#eval-detail'), /carry no metrics/);
      const evalStarted = Date.now();
      await page.click('#eval-run');
      await page.waitForFunction(() => /Evaluated in/.test(document.querySelector('#eval-status').textContent), null, { timeout: TIMEOUT_MS });
      measure('Evaluate on held-out text (built-in model in the worker)', `${Date.now() - evalStarted} ms`);
      const row = await page.$$eval('#eval-rows tr', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
      const mine = row.find((cells) => cells[0] === `${RELEASE}/${SAE_ID}`);
      assert.ok(mine, 'the SAE is in the table');
      const [l0, ev, lossRecovered] = [Number(mine[4]), Number(mine[5]), Number(mine[6])];
      assert.ok(l0 > 0 && l0 <= 16.01, `L0 of a k=16 TopK SAE: ${l0}`);
      assert.ok(Number.isFinite(ev) && ev <= 1, `explained variance ${ev}`);
      assert.ok(Number.isFinite(lossRecovered), `loss recovered ${lossRecovered}`);
    } catch (error) {
      printLogs('first visit', opened.logs);
      throw error;
    } finally {
      await opened.page.close();
    }
    // The second visit (same browser profile): asked again, but nothing is downloaded.
    const before = hub.requests.length;
    opened = await openIn(context, fragment);
    try {
      const { page } = opened;
      const started = Date.now();
      await consent(page);
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      measure('second visit: consent to ready (from the cache)', `${Date.now() - started} ms`);
      await page.waitForSelector('#card-neuronpedia', { timeout: TIMEOUT_MS });
      assert.deepEqual(hub.requests.slice(before), [], 'nothing fetched from the Hub on the second visit');
      // Freeing the cache: the next visit would download again.
      await page.click('#storage-free');
      await page.waitForFunction(() => document.querySelector('#storage-text').textContent === '');
      assert.equal(await page.isHidden('#storage-free'), true);
    } catch (error) {
      printLogs('second visit', opened.logs);
      throw error;
    } finally {
      await opened.page.close();
      await context.close();
    }
  });

  test('hf:REPO links load a model from the Hub, and each way a download fails is said in words', { timeout: TIMEOUT_MS * 5 }, async () => {
    const context = await browser.newContext();
    try {
      const { page, logs } = await openIn(context, '#model=hf:openai-community/gpt2');
      try {
        await consent(page, `${hub.url}${MODEL_DIR}/`);
        await waitReady(page, { timeoutMs: TIMEOUT_MS });
        assert.match(await page.textContent('#status'), new RegExp(`${MODEL_DIR}/`));
        assert.match(page.url(), /model=hf:openai-community\/gpt2/);
        assert.equal(await page.$$eval('#predictions li', (l) => l.length), 10);
      } catch (error) {
        printLogs('hf model', logs);
        throw error;
      } finally {
        await page.close();
      }
      await expectFailure(context, '#model=hf:nobody/missing', /404.*no such file/);
      await expectFailure(context, `#model=${encodeURIComponent(`${hub.url}__nocors/${MODEL_DIR}/`)}`, /CORS/);
      await expectFailure(context, `#model=${encodeURIComponent(`${hub.url}__truncated/${MODEL_DIR}/`)}`, /cut off|broke off/);
      // Cancel: the slow download shows its progress, and the button stops it.
      const { page: slow, logs: slowLogs } = await openIn(context, `#model=${encodeURIComponent(`${hub.url}__slow/${MODEL_DIR}/`)}`);
      try {
        await consent(slow);
        await slow.waitForFunction(() => /model\.safetensors: .* of .*MB/.test(document.querySelector('#download-text').textContent), null, { timeout: TIMEOUT_MS });
        assert.equal(await slow.isVisible('#download'), true);
        await slow.click('#download-cancel');
        await slow.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: TIMEOUT_MS });
        assert.match(await errorText(slow), /cancelled/);
        assert.equal(await slow.isHidden('#download'), true);
      } catch (error) {
        printLogs('cancel', slowLogs);
        throw error;
      } finally {
        await slow.close();
      }
    } finally {
      await context.close();
    }
  });
});

describe('a sharded Llama checkpoint', () => {
  test('opens from the Hub through its index and from picked shards, with the CLI\'s logits', { timeout: TIMEOUT_MS * 2 }, async () => {
    const dir = path.join(tmp, 'hub', SHARDED_DIR);
    const shards = readdirSync(dir).filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f)).sort();
    assert.equal(shards.length, 3);
    const ids = [5, 17, 42, 101, 7, 250];
    const out = path.join(tmp, 'sharded-forward.safetensors');
    execFileSync(BIN, ['forward', '--model', dir, '--ids', ids.join(','), '--out', out], { stdio: 'inherit' });
    const expected = readSafetensors(out).logits.data;
    const check = async (page, label) => {
      assert.match(await page.textContent('#status'), /Llama: 2 layers/, label);
      const got = await pageLogits(page, ids);
      assert.equal(got.length, expected.length, label);
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - expected[i]));
      assert.ok(worst < 1e-4, `${label}: logits differ from saeplay forward by ${worst}`);
    };
    const context = await browser.newContext();
    try {
      const { page, logs } = await openIn(context, '#model=hf:tiny/llama-sharded');
      try {
        await consent(page, `${hub.url}${SHARDED_DIR}/`);
        await waitReady(page, { timeoutMs: TIMEOUT_MS });
        for (const file of ['model.safetensors.index.json', ...shards]) {
          assert.ok(hub.requests.includes(`/${SHARDED_DIR}/${file}`), `${file} was fetched`);
        }
        await check(page, 'from the Hub');
        // The shards picked from disk (no index): kept in this browser with one, and reopened.
        await page.setInputFiles('#model-files', ['config.json', 'tokenizer.json', ...shards].map((f) => path.join(dir, f)));
        await page.waitForURL(/model=local:files-[0-9a-f]+/, { timeout: TIMEOUT_MS });
        await waitReady(page, { timeoutMs: TIMEOUT_MS });
        await check(page, 'from picked shards');
        assert.equal(await errorText(page), '');
      } catch (error) {
        printLogs('sharded', logs);
        throw error;
      } finally {
        await page.close();
      }
    } finally {
      await context.close();
    }
  });
});

describe('a model from local files', () => {
  test('picked files open the page on that model; an incomplete set is named', { timeout: TIMEOUT_MS * 2 }, async () => {
    const context = await browser.newContext();
    const { page, logs } = await openIn(context, '');
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      // Only config.json: refused in words, the page keeps running.
      await page.setInputFiles('#model-files', [path.join(MODEL, 'config.json')]);
      await page.waitForSelector('#error:not([hidden])');
      assert.match(await errorText(page), /model\.safetensors is missing/);
      await page.click('#dismiss-error');
      // The three files: the page starts again on them, with no question (nothing is fetched).
      await page.setInputFiles('#model-files', ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => path.join(MODEL, f)));
      await page.waitForURL(/model=local:files-[0-9a-f]+/, { timeout: TIMEOUT_MS });
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      assert.match(await page.textContent('#status'), /your files/);
      assert.equal(await page.$$eval('#predictions li', (l) => l.length), 10);
      assert.equal(await page.isHidden('#consent'), true);
    } catch (error) {
      printLogs('local files', logs);
      throw error;
    } finally {
      await page.close();
      await context.close();
    }
  });
});
