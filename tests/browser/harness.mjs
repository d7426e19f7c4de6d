// Shared helpers for driving the saeplay page in headless Chromium (playwright-core + Debian chromium).
//
// WebGPU in headless Chromium here: `--enable-unsafe-webgpu` alone gives an adapter, which is
// SwiftShader (info.architecture "swiftshader", isFallbackAdapter true); without it
// `navigator.gpu` exists but `requestAdapter()` resolves to null. `--enable-features=Vulkan` made no
// difference in our probe (same SwiftShader adapter), but is kept as the brief asks: it does no harm
// and lets Chromium use a real Vulkan GPU where one exists.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.SAEPLAY_CHROMIUM ?? '/usr/bin/chromium';

/** Flags for every launch: no sandbox (containers), and no background traffic of any kind. */
export const BASE_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Extra flags that give WebGPU an adapter in headless Chromium. */
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan'];

/**
 * Launches headless Debian Chromium, with WebGPU (`webgpu: true`) or without it (no adapter).
 * @param {{webgpu?: boolean}} options
 */
export async function launch({ webgpu = false } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...BASE_ARGS, ...(webgpu ? WEBGPU_ARGS : [])],
  });
}

/**
 * Parses a safetensors file holding F32 tensors.
 * Layout: u64 little-endian header length N, N bytes of JSON header
 * (`{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`), then the data,
 * with offsets relative to the end of the header.
 * @param {string} path
 * @returns {Record<string, {shape: number[], data: Float32Array}>}
 */
export function readSafetensors(path) {
  const bytes = readFileSync(path);
  if (bytes.length < 8) throw new Error(`${path}: too short for a safetensors file`);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  if (8 + headerLen > bytes.length) throw new Error(`${path}: header length ${headerLen} past end of file`);
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
  const dataStart = 8 + headerLen;
  const tensors = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: [begin, end] } = entry;
    if (dtype !== 'F32') throw new Error(`${path}: tensor ${name} is ${dtype}, only F32 is supported`);
    const count = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== count * 4) throw new Error(`${path}: tensor ${name} has ${end - begin} bytes for shape [${shape}]`);
    // Copy into a fresh, aligned buffer (the data in the file need not be 4-byte aligned).
    // Float32Array uses the host's byte order, which is little-endian on every machine we run on.
    const raw = bytes.subarray(dataStart + begin, dataStart + end);
    const data = new Float32Array(count);
    new Uint8Array(data.buffer).set(raw);
    tensors[name] = { shape, data };
  }
  return tensors;
}

/**
 * Opens `url` in a fresh browser context and collects everything the page says.
 * `logs` gets one line per console message, uncaught page error, failed request, dialog and crash,
 * so a failing test can print them. `pageErrors` holds uncaught exceptions only, and `dialogs` every
 * alert/confirm/prompt the page opened (each is dismissed at once).
 * @param {import('playwright-core').Browser} browser
 * @param {string} url
 * @param {{timeoutMs?: number, goto?: boolean}} options goto: false opens the page without navigating.
 */
export async function openPage(browser, url, { timeoutMs = 60_000, goto = true } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(timeoutMs);
  const logs = [];
  const pageErrors = [];
  const dialogs = [];
  const started = Date.now();
  const stamp = () => `+${((Date.now() - started) / 1000).toFixed(1)}s`;
  page.on('console', (msg) => logs.push(`${stamp()} [console.${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (error) => {
    pageErrors.push(error);
    logs.push(`${stamp()} [pageerror] ${error.stack ?? error.message}`);
  });
  page.on('requestfailed', (req) => logs.push(`${stamp()} [requestfailed] ${req.url()} ${req.failure()?.errorText ?? ''}`));
  page.on('response', (res) => {
    if (res.status() >= 400) logs.push(`${stamp()} [http ${res.status()}] ${res.url()}`);
  });
  page.on('crash', () => logs.push(`${stamp()} [crash] the page crashed`));
  page.on('dialog', async (dialog) => {
    dialogs.push({ type: dialog.type(), message: dialog.message() });
    logs.push(`${stamp()} [dialog.${dialog.type()}] ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  if (goto) await page.goto(url, { timeout: timeoutMs });
  return { page, logs, pageErrors, dialogs, context, close: () => context.close() };
}

/**
 * Waits until `document.body.dataset.state` is "ready" (resolves with the milliseconds waited) or
 * "error" (throws with the text of `#error`).
 */
export async function waitReady(page, { timeoutMs = 180_000 } = {}) {
  const started = Date.now();
  const handle = await page.waitForFunction(
    () => {
      const state = document.body?.dataset.state;
      return state === 'ready' || state === 'error' ? state : false;
    },
    null,
    { timeout: timeoutMs, polling: 100 },
  );
  const state = await handle.jsonValue();
  if (state === 'error') {
    // The message without the error box's buttons (a "Dismiss" button, say).
    const message = await page
      .evaluate(() => {
        const copy = document.querySelector('#error')?.cloneNode(true);
        copy?.querySelectorAll('button').forEach((b) => b.remove());
        return copy?.textContent.trim() ?? '(no #error element)';
      })
      .catch(() => '');
    throw new Error(`page reached state "error": ${message}`);
  }
  return Date.now() - started;
}

/** The error box's message, trimmed; empty while it is hidden. */
export const errorText = (page) => page.evaluate(() => {
  const el = document.querySelector('#error');
  return el && !el.hidden ? document.querySelector('#error-text').textContent.trim() : '';
});

/** Prints the collected page logs (the last `limit` lines) under a heading. */
export function printLogs(title, logs, limit = 200) {
  const shown = logs.slice(-limit);
  console.log(`---- ${title}: ${logs.length} page log lines${logs.length > limit ? ` (last ${limit})` : ''} ----`);
  for (const line of shown) console.log(line);
  console.log(`---- end of ${title} ----`);
}

/**
 * Runs `saeplay.logits(ids)` in the page and returns the result as a Float32Array. The array
 * crosses over as base64 of its bytes: exact, and much faster than a JSON list of numbers.
 */
export async function pageLogits(page, ids) {
  const { length, base64 } = await page.evaluate(async (ids) => {
    const array = await window.saeplay.logits(ids);
    if (!(array instanceof Float32Array)) throw new Error(`saeplay.logits returned ${Object.prototype.toString.call(array)}, not a Float32Array`);
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { length: array.length, base64: btoa(binary) };
  }, Array.from(ids));
  const buf = Buffer.from(base64, 'base64');
  const out = new Float32Array(length);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

/** `saeplay.encode(text)` in the page, as a plain array of numbers. */
export async function pageEncode(page, text) {
  return page.evaluate(async (text) => Array.from(await window.saeplay.encode(text)), text);
}

/** Softmax of row `row` of a row-major [rows, width] array, in float64. */
export function softmaxRow(data, width, row) {
  const logits = data.subarray(row * width, (row + 1) * width);
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** The `k` most probable ids of a probability vector, most probable first: [{id, prob}]. */
export function topK(probs, k) {
  return probs
    .map((prob, id) => ({ id, prob }))
    .sort((a, b) => b.prob - a.prob || a.id - b.id)
    .slice(0, k);
}

/** Set a form field's value as a person would, firing input and change. */
export async function setValue(page, selector, value) {
  await page.evaluate(({ selector, value }) => {
    const el = document.querySelector(selector);
    el.value = value;
    el.dispatchEvent(new Event('input', { bubbles: true }));
    el.dispatchEvent(new Event('change', { bubbles: true }));
  }, { selector, value: String(value) });
}

/** The chosen SAE's id, once the picker shows one matching `pattern`. */
export async function waitForSae(page, pattern, timeout = 300_000) {
  const handle = await page.waitForFunction((source) => {
    const value = document.querySelector('#sae-select')?.value ?? '';
    return new RegExp(source).test(value) && /features/.test(document.querySelector('#sae-status')?.textContent ?? '') ? value : false;
  }, pattern.source, { timeout, polling: 200 });
  return handle.jsonValue();
}

/** What the feature card shows. */
export const readCard = (page) =>
  page.evaluate(() => ({
    title: document.querySelector('#card-title')?.textContent ?? null,
    concept: document.querySelector('#card-concept')?.textContent ?? '',
    top: document.querySelectorAll('#card-top .example').length,
    shaded: [...document.querySelectorAll('#card-top .tok')].filter((t) => !/, 0\.000?\)/.test(t.getAttribute('style'))).length,
    bands: document.querySelectorAll('#card-bands .example').length,
    histogramBars: document.querySelectorAll('#card-histogram rect.bar').length,
    promoted: document.querySelectorAll('#card-lens-promoted li').length,
    suppressed: document.querySelectorAll('#card-lens-suppressed li').length,
    nearest: document.querySelectorAll('#card-nearest [data-feature]').length,
  }));
