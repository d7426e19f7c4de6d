// End-to-end tests of the built saeplay page in headless Chromium, on both paths:
//   cpu:    Chromium without WebGPU flags (no adapter), no fragment: the page must choose CPU itself.
//   webgpu: Chromium with WebGPU flags (SwiftShader here), `#backend=webgpu` forces WebGPU.
//
// Inputs (relative paths are taken from the repository root):
//   SAEPLAY_DIST   the built page (default dist)
//   SAEPLAY_BIN    the native CLI, for reference logits and greedy text (default target/debug/saeplay)
//   SAEPLAY_MODEL  the model directory the page embeds (default www/models/builtin)
//   SAEPLAY_BROWSER_PATHS  which paths to run, comma-separated (default cpu,webgpu)
//
// Run: node --test --test-concurrency=1 tests/browser/   (or scripts/browser-tests.sh)
// Measurements are printed with console.log and summarised at the end.
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  launch, openPage, pageEncode, pageLogits, printLogs, readSafetensors, softmaxRow, topK, waitReady,
} from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const BIN = path.resolve(ROOT, process.env.SAEPLAY_BIN ?? 'target/debug/saeplay');
const MODEL = path.resolve(ROOT, process.env.SAEPLAY_MODEL ?? 'www/models/builtin');
const SELECTED = (process.env.SAEPLAY_BROWSER_PATHS ?? 'cpu,webgpu').split(',').map((s) => s.trim());

/** Loading the model and first predictions; WebGPU on SwiftShader compiles shaders slowly. */
const READY_TIMEOUT_MS = 180_000;
/** One action or wait in the page (a generation, a logits call). */
const ACTION_TIMEOUT_MS = 120_000;

/** The two paths under test. */
const PATHS = [
  {
    name: 'cpu',
    webgpu: false, // no WebGPU adapter at all
    fragment: '', // automatic choice
    backend: 'cpu',
    logitsTolerance: 1e-4,
  },
  {
    name: 'webgpu',
    webgpu: true,
    fragment: '#backend=webgpu', // forced: SwiftShader would otherwise lose to CPU
    backend: 'webgpu',
    logitsTolerance: 1e-3,
  },
].filter((p) => SELECTED.includes(p.name));

const PROMPT = 'Once upon a time';
const LOGITS_TEXT = 'Once upon a time, a little cat named Tom found a red ball.';
const BAD_FRAGMENT = '#backend=<script>alert(1)</script><img src=x onerror=alert(2)>';

/** Measurements, printed as they are taken and again together at the end. */
const measurements = [];
function measure(pathName, what, value) {
  measurements.push({ path: pathName, what, value });
  console.log(`[measure] ${pathName}: ${what} = ${value}`);
}

let server;
let tmp;

before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html is missing: build the page first (SAEPLAY_DIST)`);
  server = await serve(DIST);
  tmp = mkdtempSync(path.join(tmpdir(), 'saeplay-browser-'));
  console.log(`serving ${DIST} at ${server.url}`);
});

after(async () => {
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (measurements.length) {
    console.log('==== browser test measurements ====');
    for (const m of measurements) console.log(`${m.path.padEnd(7)} ${m.what.padEnd(44)} ${m.value}`);
  }
});

// ---------------------------------------------------------------------------------------------
// The native engine (memoised: the same answers serve both paths).

const nativeCache = new Map();
function memo(key, compute) {
  if (!nativeCache.has(key)) nativeCache.set(key, compute());
  return nativeCache.get(key);
}

function requireBin() {
  assert.ok(existsSync(BIN), `native CLI ${BIN} is missing: build it first (SAEPLAY_BIN)`);
  assert.ok(existsSync(MODEL), `model directory ${MODEL} is missing (SAEPLAY_MODEL)`);
}

/** `saeplay forward` for `--text` or `--ids`: the `logits` tensor, {shape: [T, vocab], data}. */
function nativeLogits(kind, value) {
  return memo(`forward:${kind}:${value}`, () => {
    requireBin();
    const out = path.join(tmp, `forward-${nativeCache.size}.safetensors`);
    execFileSync(BIN, ['forward', '--model', MODEL, `--${kind}`, String(value), '--out', out], {
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 300_000,
    });
    const { logits } = readSafetensors(out);
    assert.ok(logits, `${out} has no "logits" tensor`);
    return logits;
  });
}

/**
 * `saeplay generate` (no top-k, no top-p): the continuation only (the CLI prints the prompt first).
 */
function nativeGenerate(prompt, { maxTokens, temperature, seed = 0 }) {
  return memo(`generate:${prompt}:${maxTokens}:${temperature}:${seed}`, () => {
    requireBin();
    const stdout = execFileSync(
      BIN,
      ['generate', '--model', MODEL, '--prompt', prompt, '--max-tokens', String(maxTokens),
        '--temperature', String(temperature), '--seed', String(seed)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 },
    );
    const text = stdout.replace(/\n$/, '');
    assert.ok(text.startsWith(prompt), `native generate did not echo the prompt: ${JSON.stringify(text)}`);
    return text.slice(prompt.length);
  });
}

/** Whether the page's #output text is the native continuation (with or without the prompt). */
const sameAsNative = (pageText, prompt, native) => [native, prompt + native].some((want) => want.trim() === pageText.trim());

// ---------------------------------------------------------------------------------------------
// Reading and driving the page.

/** Everything the tests look at in the page's view, in one round trip. */
async function readView(page) {
  return page.evaluate(() => {
    const text = (sel) => document.querySelector(sel)?.textContent?.trim() ?? null;
    return {
      state: document.body.dataset.state,
      backend: document.querySelector('#backend')?.getAttribute('data-backend') ?? null,
      backendText: text('#backend'),
      reason: text('#backend-reason'),
      // The message shown in #error: its text without buttons (e.g. "Dismiss"), and only while
      // #error is visible (the page may keep an old message in a hidden #error).
      error: (() => {
        const el = document.querySelector('#error');
        if (!el) return null;
        if (el.hidden || !el.checkVisibility()) return '';
        const copy = el.cloneNode(true);
        copy.querySelectorAll('button').forEach((b) => b.remove());
        return copy.textContent.trim();
      })(),
      prompt: document.querySelector('#prompt')?.value ?? null,
      tokens: [...document.querySelectorAll('#tokens span.token')].map((s) => s.getAttribute('data-id')),
      predictions: [...document.querySelectorAll('#predictions li.prediction')].map((li) => ({
        id: li.getAttribute('data-id'),
        prob: li.getAttribute('data-prob'),
        text: li.textContent.trim(),
      })),
    };
  });
}

/** Parses a data-* id, which must be a non-negative integer. */
function asId(value, what) {
  assert.match(String(value), /^\d+$/, `${what}: data-id ${JSON.stringify(value)} is not an integer`);
  return Number(value);
}

/** Checks the shape of the prediction list: 10 items, valid distinct ids, sorted probabilities. */
function checkPredictions(predictions, vocab) {
  assert.equal(predictions.length, 10, `expected 10 predictions, got ${predictions.length}`);
  const ids = predictions.map((p, i) => asId(p.id, `prediction ${i}`));
  const probs = predictions.map((p) => Number(p.prob));
  for (const [i, id] of ids.entries()) {
    assert.ok(id < vocab, `prediction ${i}: id ${id} >= vocab ${vocab}`);
    assert.ok(Number.isFinite(probs[i]) && probs[i] >= 0 && probs[i] <= 1, `prediction ${i}: data-prob ${predictions[i].prob}`);
    if (i > 0) assert.ok(probs[i] <= probs[i - 1], `predictions not sorted: ${probs.join(', ')}`);
  }
  assert.equal(new Set(ids).size, ids.length, `prediction ids repeat: ${ids.join(', ')}`);
  const sum = probs.reduce((a, b) => a + b, 0);
  assert.ok(sum <= 1 + 1e-6, `prediction probabilities sum to ${sum} > 1`);
  return { ids, probs };
}

/**
 * Whether the shown predictions are the top 10 of softmax(logits of the last position) for `ids`:
 * each shown probability matches its id's probability, and the sorted shown probabilities match
 * the 10 largest (so ties in order do not matter). `tol` absorbs backend error and display rounding.
 */
function predictionsMismatch(predictions, expectedProbs, tol = 2e-3) {
  if (predictions.length !== 10) return `${predictions.length} predictions`;
  const top = topK(expectedProbs, 10);
  for (const [i, p] of predictions.entries()) {
    const id = Number(p.id);
    const want = expectedProbs[id];
    if (want === undefined || Math.abs(Number(p.prob) - want) > tol) {
      return `prediction ${i} (id ${p.id}) shows p=${p.prob}, softmax of the logits gives ${want}`;
    }
    if (Math.abs(Number(p.prob) - top[i].prob) > tol) {
      return `prediction ${i} shows p=${p.prob}, the ${i + 1}th largest probability is ${top[i].prob} (id ${top[i].id})`;
    }
  }
  return null;
}

/** The next-token distribution for `ids`, from the page's own logits API. */
async function nextTokenProbs(page, ids, vocab) {
  const logits = await pageLogits(page, ids);
  assert.equal(logits.length, ids.length * vocab, 'saeplay.logits length is not T * vocab');
  return softmaxRow(logits, vocab, ids.length - 1);
}

/** Sets an input's value the way a person would, for any input type (text, number, range). */
async function setInput(page, selector, value) {
  await page.locator(selector).waitFor({ state: 'attached' });
  await page.evaluate(
    ({ selector, value }) => {
      const el = document.querySelector(selector);
      el.value = value;
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    },
    { selector, value: String(value) },
  );
}

/**
 * Runs one generation with the given settings and returns {text, status, ms, responsiveness}.
 * While it runs, the page measures how late a `setTimeout(0)` callback fires, over and over; the
 * maximum is how long the main thread was blocked at a stretch. Each probe starts from a fresh
 * task (a MessageChannel message) so the browser's 4 ms clamp for nested timers does not apply.
 */
async function generate(page, { temperature, maxTokens, seed }) {
  await setInput(page, '#temperature', temperature);
  await setInput(page, '#max-tokens', maxTokens);
  if (seed !== undefined) await setInput(page, '#seed', seed);
  // Clear the previous run's marker so a stale "true" cannot end the wait early.
  await page.evaluate(() => document.querySelector('#output').removeAttribute('data-done'));
  const started = Date.now();
  await page.click('#generate');
  const probe = await page.evaluate(async (timeoutMs) => {
    const output = document.querySelector('#output');
    const channel = new MessageChannel();
    const freshTask = () => new Promise((resolve) => { channel.port1.onmessage = resolve; channel.port2.postMessage(0); });
    const start = performance.now();
    let max = 0, sum = 0, count = 0;
    while (output.getAttribute('data-done') !== 'true') {
      if (performance.now() - start > timeoutMs) return { timedOut: true, max, count };
      await freshTask();
      const t = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 0));
      const delay = performance.now() - t;
      max = Math.max(max, delay);
      sum += delay;
      count += 1;
    }
    return { timedOut: false, max, mean: count ? sum / count : 0, count };
  }, ACTION_TIMEOUT_MS);
  const ms = Date.now() - started;
  assert.ok(!probe.timedOut, `generation did not finish (#output data-done) within ${ACTION_TIMEOUT_MS} ms`);
  const { text, status } = await page.evaluate(() => ({
    text: document.querySelector('#output').textContent,
    status: document.querySelector('#generation-status')?.textContent?.trim() ?? '',
  }));
  return { text, status, ms, responsiveness: probe };
}

/** Opens the page at `fragment` and waits until ready; prints the page's logs if that fails. */
async function openReady(browser, fragment, label, { beforeGoto } = {}) {
  const opened = await openPage(browser, server.url, { timeoutMs: ACTION_TIMEOUT_MS, goto: false });
  try {
    if (beforeGoto) await beforeGoto(opened.page);
    const started = Date.now();
    await opened.page.goto(server.url + fragment, { timeout: READY_TIMEOUT_MS });
    await waitReady(opened.page, { timeoutMs: READY_TIMEOUT_MS });
    opened.readyMs = Date.now() - started;
    return opened;
  } catch (error) {
    printLogs(`${label} (loading)`, opened.logs);
    await opened.close().catch(() => {});
    throw error;
  }
}

/** Runs `body`, printing the page's logs if it throws. */
async function withLogs(label, opened, body) {
  try {
    return await body();
  } catch (error) {
    if (opened) printLogs(label, opened.logs);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// The tests, once per path. Tests a-d share one loaded page per path (loading on SwiftShader is slow).

for (const spec of PATHS) {
  describe(`${spec.name} path`, () => {
    let browser;
    let shared; // Promise of the opened page, made by the first test that needs it

    before(async () => {
      browser = await launch({ webgpu: spec.webgpu });
    });
    after(async () => {
      const opened = await shared?.catch(() => null);
      await opened?.close().catch(() => {});
      await browser?.close();
    });

    const ready = () => (shared ??= openReady(browser, spec.fragment, `${spec.name} page`));

    test('a. loads, chooses its backend, shows tokens and 10 sorted predictions', { timeout: READY_TIMEOUT_MS + 60_000 }, async () => {
      const opened = await ready();
      await withLogs(`${spec.name} a`, opened, async () => {
        const { page } = opened;
        measure(spec.name, 'navigation to ready (ms)', opened.readyMs);
        const view = await readView(page);
        const info = await page.evaluate(() => window.saeplay.info());
        console.log(`${spec.name}: #backend "${view.backendText}", reason "${view.reason}", info ${JSON.stringify(info)}`);

        assert.equal(view.backend, spec.backend, `#backend data-backend (reason: ${view.reason})`);
        assert.equal(info.backend, spec.backend, 'saeplay.info().backend');
        assert.ok(view.backendText, '#backend text is empty');
        if (spec.name === 'cpu') assert.ok(view.reason, '#backend-reason must say why CPU was chosen');
        assert.equal(view.error, '', `#error should be empty, shows: ${view.error}`);
        assert.ok(Number.isInteger(info.vocab) && info.vocab > 0, `info().vocab ${info.vocab}`);
        assert.ok(Number.isInteger(info.nPositions) && info.nPositions > 0, `info().nPositions ${info.nPositions}`);

        // Tokens for the default prompt, exactly as the tokenizer splits it.
        assert.ok(view.prompt, '#prompt has no default text');
        assert.ok(view.tokens.length > 0, '#tokens shows no span.token');
        const ids = await pageEncode(page, view.prompt);
        assert.deepEqual(view.tokens.map((id, i) => asId(id, `token ${i}`)), ids, '#tokens ids != saeplay.encode(prompt)');

        // Ten predictions, sorted, sum <= 1, and equal to softmax of the last position's logits.
        checkPredictions(view.predictions, info.vocab);
        const probs = await nextTokenProbs(page, ids, info.vocab);
        const mismatch = predictionsMismatch(view.predictions, probs);
        assert.equal(mismatch, null, `#predictions disagree with saeplay.logits: ${mismatch}`);
        assert.deepEqual(opened.pageErrors.map((e) => e.message), [], 'uncaught errors in the page');
      });
    });

    test('b. a new prompt updates #tokens and #predictions', { timeout: ACTION_TIMEOUT_MS * 2 }, async () => {
      const opened = await ready();
      await withLogs(`${spec.name} b`, opened, async () => {
        const { page } = opened;
        const info = await page.evaluate(() => window.saeplay.info());
        const beforeView = await readView(page);
        const ids = await pageEncode(page, PROMPT);
        const probs = await nextTokenProbs(page, ids, info.vocab);

        const started = Date.now();
        await page.fill('#prompt', PROMPT);
        await page.waitForFunction(
          (want) => [...document.querySelectorAll('#tokens span.token')].map((s) => s.getAttribute('data-id')).join(',') === want,
          ids.join(','),
          { timeout: ACTION_TIMEOUT_MS, polling: 50 },
        );
        // Predictions may follow the tokens a little later: poll until they match the new prompt.
        let mismatch = 'not checked';
        let view;
        while (Date.now() - started < ACTION_TIMEOUT_MS) {
          view = await readView(page);
          mismatch = predictionsMismatch(view.predictions, probs);
          if (mismatch === null) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        measure(spec.name, 'prompt edit to updated predictions (ms)', Date.now() - started);
        assert.equal(mismatch, null, `#predictions for "${PROMPT}": ${mismatch}`);
        checkPredictions(view.predictions, info.vocab);
        if (beforeView.prompt !== PROMPT) {
          assert.notDeepEqual(view.tokens, beforeView.tokens, '#tokens did not change');
        }
        assert.equal(view.error, '', `#error shows: ${view.error}`);
      });
    });

    test('c. logits agree with the native engine', { timeout: ACTION_TIMEOUT_MS + 600_000 }, async () => {
      const opened = await ready();
      await withLogs(`${spec.name} c`, opened, async () => {
        const { page } = opened;
        const info = await page.evaluate(() => window.saeplay.info());
        const ids = await pageEncode(page, LOGITS_TEXT);
        assert.ok(ids.length > 1, `encode gave ${ids.length} ids`);

        // The native tokenizer must split the text the same way: forward by --text and by the
        // page's --ids must give the same logits (the CLI does not print its ids).
        const byText = nativeLogits('text', LOGITS_TEXT);
        const byIds = nativeLogits('ids', ids.join(','));
        assert.deepEqual(byText.shape, [ids.length, info.vocab], 'native logits shape vs page ids and vocab');
        assert.deepEqual(byIds.shape, byText.shape);
        assert.ok(maxAbsDiff(byText.data, byIds.data) === 0, 'native --text and --ids (page encoding) disagree: tokenizers differ');

        const started = Date.now();
        const logits = await pageLogits(page, ids);
        measure(spec.name, `saeplay.logits, ${ids.length} tokens (ms)`, Date.now() - started);
        assert.equal(logits.length, ids.length * info.vocab, 'saeplay.logits length');
        const diff = maxAbsDiff(logits, byText.data);
        measure(spec.name, 'max |logits page - native|', diff.toExponential(3));
        assert.ok(diff < spec.logitsTolerance, `max abs logits diff ${diff} >= ${spec.logitsTolerance}`);
      });
    });

    test('d. generation: deterministic, seeded, and the page stays responsive', { timeout: ACTION_TIMEOUT_MS * 8 }, async () => {
      const opened = await ready();
      await withLogs(`${spec.name} d`, opened, async () => {
        const { page } = opened;
        await page.fill('#prompt', PROMPT);

        // Greedy twice: the same text, and (on CPU) the native engine's text.
        const first = await generate(page, { temperature: 0, maxTokens: 12 });
        console.log(`${spec.name}: greedy -> ${JSON.stringify(first.text)} (${first.status}; ${first.ms} ms)`);
        measure(spec.name, 'greedy 12 tokens (ms)', first.ms);
        measure(
          spec.name,
          'max setTimeout(0) delay while generating (ms)',
          `${first.responsiveness.max.toFixed(1)} (mean ${first.responsiveness.mean?.toFixed(1)}, ${first.responsiveness.count} probes)`,
        );
        assert.ok(first.text.trim().length > 0, '#output is empty after generating');
        assert.ok(first.status, '#generation-status is empty after generating');
        const second = await generate(page, { temperature: 0, maxTokens: 12 });
        assert.equal(second.text, first.text, 'greedy generation is not deterministic');

        if (existsSync(BIN)) {
          const native = nativeGenerate(PROMPT, { maxTokens: 12, temperature: 0 });
          const same = sameAsNative(first.text, PROMPT, native);
          console.log(`${spec.name}: native greedy -> ${JSON.stringify(native)} (${same ? 'same' : 'DIFFERENT'})`);
          // WebGPU may flip a near-tie in argmax; there we only report.
          if (spec.name === 'cpu') assert.ok(same, `page greedy ${JSON.stringify(first.text)} != native ${JSON.stringify(native)}`);
        }

        // Sampling at temperature 1: the same seed gives the same text. Top-k and top-p are
        // cleared (off), as in the CLI's defaults, so the texts can be compared with it.
        await setInput(page, '#top-k', '');
        await setInput(page, '#top-p', '');
        const texts = {};
        for (const seed of [1, 2]) {
          const a = await generate(page, { temperature: 1, maxTokens: 12, seed });
          const b = await generate(page, { temperature: 1, maxTokens: 12, seed });
          console.log(`${spec.name}: seed ${seed} -> ${JSON.stringify(a.text)} (${a.status})`);
          assert.ok(a.text.trim().length > 0, `#output is empty (seed ${seed})`);
          assert.equal(b.text, a.text, `seed ${seed} gave two different texts`);
          texts[seed] = a.text;
        }
        console.log(`${spec.name}: seeds 1 and 2 ${texts[1] === texts[2] ? 'gave the SAME text' : 'differ'}`);
        if (existsSync(BIN)) {
          // Reported, not asserted: the contract does not (yet) promise the CLI's sampler in the page.
          const native = nativeGenerate(PROMPT, { maxTokens: 12, temperature: 1, seed: 1 });
          console.log(`${spec.name}: native seed 1 -> ${JSON.stringify(native)} (${sameAsNative(texts[1], PROMPT, native) ? 'same as the page' : 'DIFFERENT from the page'})`);
        }
        assert.deepEqual(opened.pageErrors.map((e) => e.message), [], 'uncaught errors in the page');
      });
    });

    test('g. TopK and BatchTopK SAEs train in the page on its backend', { timeout: ACTION_TIMEOUT_MS * 8 }, async () => {
      const opened = await ready();
      await withLogs(`${spec.name} g`, opened, async () => {
        const { page } = opened;
        // SwiftShader is a software GPU: keep the WebGPU run small.
        const size = spec.webgpu
          ? { tokens: 2048, batchSize: 256, expansion: 2 }
          : { tokens: 65536, batchSize: 1024, expansion: 8 };
        for (const architecture of ['topk', 'batchtopk']) {
          const k = 8;
          // While it trains, measure how late setTimeout(0) callbacks fire (as in test d).
          const result = await page.evaluate(async (options) => {
            const channel = new MessageChannel();
            const freshTask = () => new Promise((resolve) => { channel.port1.onmessage = resolve; channel.port2.postMessage(0); });
            let done = false, max = 0, count = 0;
            const training = window.saeplay.trainSae(options).finally(() => { done = true; });
            while (!done) {
              await freshTask();
              const t = performance.now();
              await new Promise((resolve) => setTimeout(resolve, 0));
              max = Math.max(max, performance.now() - t);
              count += 1;
            }
            return { ...(await training), maxDelayMs: max, probes: count };
          }, { architecture, k, ...size });
          console.log(`${spec.name} ${architecture}: ${JSON.stringify(result)}`);
          measure(spec.name, `${architecture} SAE training vectors/s (x${size.expansion}, batch ${size.batchSize})`, Math.round(result.vectorsPerSecond));
          measure(spec.name, `${architecture}: max setTimeout(0) delay while capturing and training (ms)`, `${result.maxDelayMs.toFixed(1)} (${result.probes} probes)`);
          assert.equal(result.steps, size.tokens / size.batchSize, 'every step ran');
          assert.ok(Number.isFinite(result.loss), `loss ${result.loss}`);
          if (architecture === 'topk') {
            assert.ok(Math.abs(result.trainL0 - k) < 1e-6, `TopK keeps exactly k per token in training: ${result.trainL0}`);
            assert.ok(result.encodeL0 <= k + 1e-6 && result.encodeL0 > 0, `TopK encode keeps at most k: ${result.encodeL0}`);
          } else {
            assert.ok(Math.abs(result.trainL0 - k) < 1e-6, `BatchTopK keeps k x batch in training: ${result.trainL0}`);
            assert.ok(result.encodeL0 > 0 && result.encodeL0 < 8 * k, `BatchTopK's threshold keeps a sparse code: ${result.encodeL0}`);
          }
          // The CPU run (64 steps) is long enough to learn something real; BatchTopK starts
          // slower (measured 0.38 against TopK's 0.61 at this length).
          const bar = architecture === 'topk' ? 0.5 : 0.3;
          if (!spec.webgpu) assert.ok(result.explainedVariance > bar, `explained variance ${result.explainedVariance}`);
        }
        assert.deepEqual(opened.pageErrors.map((e) => e.message), [], 'uncaught errors in the page');
      });
    });

    if (spec.webgpu) {
      test('e. without a fragment, a software adapter loses to CPU', { timeout: READY_TIMEOUT_MS + 60_000 }, async () => {
        const opened = await openReady(browser, '', `${spec.name} e`);
        try {
          await withLogs(`${spec.name} e`, opened, async () => {
            const { page } = opened;
            const adapter = await page.evaluate(async () => {
              const a = await navigator.gpu?.requestAdapter();
              return a && { architecture: a.info?.architecture, vendor: a.info?.vendor, isFallbackAdapter: a.info?.isFallbackAdapter };
            });
            const view = await readView(page);
            measure(spec.name, 'automatic choice: navigation to ready (ms)', opened.readyMs);
            console.log(`${spec.name} e: adapter ${JSON.stringify(adapter)}; chose ${view.backend}; reason "${view.reason}"`);
            const software = !adapter || adapter.isFallbackAdapter || adapter.architecture === 'swiftshader';
            if (software) {
              assert.equal(view.backend, 'cpu', 'the page should prefer CPU over a software WebGPU adapter');
              assert.match(view.reason ?? '', /software|swiftshader|fallback/i, '#backend-reason should name the software adapter');
            } else {
              assert.equal(view.backend, 'webgpu', 'a hardware adapter should be used');
            }
            assert.equal(view.error, '', `#error shows: ${view.error}`);
          });
        } finally {
          await opened.close();
        }
      });
    } else {
      test('f. a hostile fragment is shown as text and the page still works on CPU', { timeout: READY_TIMEOUT_MS + 60_000 }, async () => {
        // Record every <script> or on* attribute added to the document from the very start.
        const watch = (page) =>
          page.addInitScript(() => {
            window.__inserted = [];
            new MutationObserver((records) => {
              for (const record of records) {
                for (const node of record.addedNodes) {
                  if (node.nodeType !== Node.ELEMENT_NODE) continue;
                  for (const el of [node, ...node.querySelectorAll('*')]) {
                    if (el.tagName === 'SCRIPT' || [...el.attributes].some((a) => a.name.startsWith('on'))) {
                      window.__inserted.push(el.outerHTML.slice(0, 300));
                    }
                  }
                }
              }
            }).observe(document, { childList: true, subtree: true });
          });
        const opened = await openReady(browser, BAD_FRAGMENT, `${spec.name} f`, { beforeGoto: watch });
        try {
          await withLogs(`${spec.name} f`, opened, async () => {
            const { page } = opened;
            await page.waitForTimeout(500); // let a broken <img onerror> fire, if one was inserted
            const view = await readView(page);
            const found = await page.evaluate(() => ({
              inserted: window.__inserted.filter((html) => /alert/.test(html)),
              scripts: [...document.querySelectorAll('script')].filter((s) => /alert/.test(s.textContent)).length,
              errorMarkup: document.querySelector('#error')?.querySelectorAll('script, img, iframe, [onerror], [onload]').length,
            }));
            console.log(`${spec.name} f: #error "${view.error}"; backend ${view.backend}`);
            assert.deepEqual(opened.dialogs, [], 'a dialog fired: the fragment ran as script');
            assert.deepEqual(found.inserted, [], 'markup from the fragment was inserted');
            assert.equal(found.scripts, 0, 'a <script> with the fragment text is in the document');
            assert.equal(found.errorMarkup, 0, '#error contains markup');
            assert.ok(view.error, '#error should explain the bad fragment');
            assert.equal(view.backend, 'cpu');
            assert.ok(view.prompt, 'the default prompt is missing');
            assert.ok(view.tokens.length > 0, 'no tokens shown');
            assert.equal(view.predictions.length, 10, 'predictions missing');
          });
        } finally {
          await opened.close();
        }
      });
    }
  });
}

/** The largest absolute difference between two equal-length arrays (Infinity on NaN). */
function maxAbsDiff(a, b) {
  assert.equal(a.length, b.length, 'arrays differ in length');
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}
