// Forward-pass throughput of the built page on both paths (a script, not a test).
//
//   node tests/browser/bench.mjs [--paths cpu,webgpu] [--runs N] [--generate N] [--sae] [--json FILE]
//                                [--model DIR_OR_GGUF]
//
// Opens the page in headless Chromium on the CPU path (no WebGPU flags, automatic choice) and on
// the WebGPU path (flags, `#backend=webgpu`), then calls `saeplay.benchForward(batch, seq, runs)`
// for each shape and prints a table of tokens/s with the time from navigation to ready. With
// `--model` the page opens that model (a Hugging Face directory or a GGUF file, served from this
// machine as another site would serve it: by `#model=URL`, after the page's consent).
// SwiftShader is about 25x slower than the CPU path, so WebGPU gets fewer shapes unless
// SAEPLAY_BENCH_WEBGPU_SHAPES says otherwise. Env: SAEPLAY_DIST (default dist).
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { launch, openPage, printLogs, waitReady } from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const READY_TIMEOUT_MS = 180_000;
const BENCH_TIMEOUT_MS = 600_000;
/** How long each path runs its first shape before timing anything. */
const WARM_UP_MS = 3_000;

const { values: opts } = parseArgs({
  options: {
    paths: { type: 'string', default: 'cpu,webgpu' },
    runs: { type: 'string', default: '5' },
    'webgpu-runs': { type: 'string', default: '2' },
    generate: { type: 'string', default: '0' },
    sae: { type: 'boolean', default: false },
    json: { type: 'string' },
    model: { type: 'string' },
  },
});

/** Parses "1x1,1x64" into [[1, 1], [1, 64]]. */
const parseShapes = (text) => text.split(',').filter((s) => s.trim()).map((s) => s.trim().split('x').map(Number));

const PATHS = [
  { name: 'cpu', webgpu: false, fragment: '', shapes: process.env.SAEPLAY_BENCH_CPU_SHAPES ?? '1x1,1x64,8x64,1x128', runs: Number(opts.runs) },
  { name: 'webgpu', webgpu: true, fragment: '#backend=webgpu', shapes: process.env.SAEPLAY_BENCH_WEBGPU_SHAPES ?? '1x1,1x64', runs: Number(opts['webgpu-runs']) },
].filter((p) => opts.paths.split(',').includes(p.name));

const rows = [];
const server = await serve(DIST);
// The model, from its own "site" (CORS headers, as the Hugging Face Hub sends).
let modelSite = null;
let modelFragment = '';
if (opts.model) {
  const model = path.resolve(opts.model);
  modelSite = await serve(path.dirname(model), { hub: true });
  const url = modelSite.url + encodeURIComponent(path.basename(model)) + (statSync(model).isDirectory() ? '/' : '');
  modelFragment = `model=${encodeURIComponent(url)}`;
}
let failed = false;
try {
  for (const spec of PATHS) {
    const browser = await launch({ webgpu: spec.webgpu });
    const opened = await openPage(browser, server.url, { timeoutMs: BENCH_TIMEOUT_MS, goto: false });
    try {
      const started = Date.now();
      const fragment = [spec.fragment.replace('#', ''), modelFragment].filter(Boolean).join('&');
      await opened.page.goto(server.url + (fragment ? `#${fragment}` : ''), { timeout: READY_TIMEOUT_MS });
      if (modelFragment) {
        await opened.page.waitForSelector('#consent:not([hidden])', { timeout: READY_TIMEOUT_MS });
        await opened.page.click('#consent-yes');
      }
      await waitReady(opened.page, { timeoutMs: READY_TIMEOUT_MS });
      const readyMs = Date.now() - started;
      const info = await opened.page.evaluate(() => window.saeplay.info());
      console.log(`${spec.name}: ready in ${readyMs} ms; backend ${info.backend}; adapter ${JSON.stringify(info.adapter)}`);
      rows.push({ path: spec.name, backend: info.backend, shape: 'ready', firstMs: readyMs });
      // Warm up first: right after loading, the browser is still compiling the module's
      // optimised tier in the background, which slowed whichever shape came first (the peers'
      // loops run for seconds per shape, so theirs is amortised).
      const [warmBatch, warmSeq] = parseShapes(spec.shapes)[0] ?? [1, 16];
      const warmUntil = Date.now() + WARM_UP_MS;
      do {
        await opened.page.evaluate(([b, s]) => window.saeplay.benchForward(b, s, 1), [warmBatch, warmSeq]);
      } while (Date.now() < warmUntil);

      for (const [batch, seq] of parseShapes(spec.shapes)) {
        if (seq > info.nPositions) {
          console.log(`${spec.name}: skipping ${batch}x${seq} (context is ${info.nPositions})`);
          continue;
        }
        const r = await opened.page.evaluate(
          ([b, s, n]) => window.saeplay.benchForward(b, s, n),
          [batch, seq, spec.runs],
        );
        const row = { path: spec.name, backend: info.backend, shape: `${batch}x${seq}`, ...r };
        console.log(`${spec.name} ${row.shape}: ${JSON.stringify(r)}`);
        rows.push(row);
      }
      if (Number(opts.generate) > 0) {
        const steps = Number(opts.generate);
        const r = await opened.page.evaluate(([n, runs]) => window.saeplay.benchGenerate(n, runs), [steps, spec.runs]);
        const row = { path: spec.name, backend: info.backend, shape: `16+${steps}`, work: 'generate', ...r };
        console.log(`${spec.name} generate ${row.shape}: ${JSON.stringify(r)}`);
        rows.push(row);
      }
      if (opts.sae) {
        // The page's default SAE (TopK k16, 8x, blocks.2.hook_resid_pre, 196,608 tokens in
        // batches of 1024), captured and trained on the page's thread.
        const options = { architecture: 'topk', k: 16, expansion: 8, tokens: 196608, batchSize: 1024, hook: 'blocks.2.hook_resid_pre' };
        const r = await opened.page.evaluate((o) => window.saeplay.trainSae(o), options);
        console.log(`${spec.name} default SAE: ${JSON.stringify(r)}`);
        rows.push({ path: spec.name, backend: info.backend, shape: 'sae', work: 'default SAE', meanMs: r.totalMs, captureMs: r.captureMs, trainSeconds: r.trainSeconds, explainedVariance: r.explainedVariance });
      }
    } catch (error) {
      failed = true;
      console.error(`${spec.name}: ${error.message}`);
      printLogs(`${spec.name} page`, opened.logs);
    } finally {
      await opened.close().catch(() => {});
      await browser.close();
    }
  }
} finally {
  await server.close();
  await modelSite?.close();
}

// The table: one line per path and shape; the "ready" line gives navigation-to-ready time.
const fmt = (v, digits = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-');
console.log('');
console.log(['path', 'backend', 'shape', 'first ms', 'mean ms', 'tokens/s'].map((h, i) => (i < 3 ? h.padEnd(8) : h.padStart(12))).join(' '));
for (const r of rows) {
  console.log(
    [r.path.padEnd(8), r.backend.padEnd(8), r.shape.padEnd(8), fmt(r.firstMs).padStart(12), fmt(r.meanMs).padStart(12), fmt(r.tokensPerSecond, 0).padStart(12)].join(' '),
  );
}
if (opts.json) {
  // scripts/bench.sh's records: one per path and shape, generation per token.
  const records = rows
    .filter((r) => r.shape !== 'ready' && r.shape !== 'sae')
    .map((r) => ({ peer: `saeplay-page-${r.path}`, work: r.work ?? 'forward', shape: r.shape, ms: r.meanMs, tokens_per_s: r.tokensPerSecond }));
  const sae = rows.find((r) => r.shape === 'sae');
  if (sae) records.push({ peer: `saeplay-page-${sae.path}`, work: 'default SAE', shape: '196608 tokens', ms: sae.meanMs, capture_ms: sae.captureMs, train_s: sae.trainSeconds, explained_variance: sae.explainedVariance });
  writeFileSync(opts.json, JSON.stringify(records));
}
process.exit(failed ? 1 : 0);
