// The onnxruntime peers of `scripts/bench.sh`: the ONNX files `peers.py export` wrote, run by
// onnxruntime-node natively and by onnxruntime-web (wasm SIMD) in headless Chromium, on the same
// shapes and token ids as saeplay's benchmarks. Prints a JSON list of records.
//
//   node scripts/bench/ort.mjs node|web ONNX_DIR SHAPES [--threads 1] [--gen 64] [--seconds 2]
//
// SHAPES may be '' (generation only, for an export made with `peers.py export --no-forward`).
//
// Env: SAEPLAY_BENCH_NPM, the folder where bench.sh installed onnxruntime-node and -web.
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string', default: '1' },
    gen: { type: 'string', default: '0' },
    seconds: { type: 'string', default: '2' },
  },
});
const [where, onnxDir, shapes] = positionals;
const NPM = process.env.SAEPLAY_BENCH_NPM;
if (!['node', 'web'].includes(where) || !onnxDir || shapes === undefined || !NPM) {
  console.error('usage: SAEPLAY_BENCH_NPM=DIR node scripts/bench/ort.mjs node|web ONNX_DIR SHAPES [--threads N] [--gen N]');
  process.exit(2);
}
const { config } = JSON.parse(readFileSync(path.join(onnxDir, 'export.json'), 'utf8'));
const settings = {
  shapes: shapes.split(',').filter(Boolean).map((s) => s.split('x').map(Number)),
  threads: Number(opts.threads),
  gen: Number(opts.gen),
  seconds: Number(opts.seconds),
  vocab: config.vocab_size,
};

// Runs in node and in the page alike: `ort` is the library, `load(name)` the model's bytes.
async function bench(ort, load, s, threads) {
  const options = { executionProviders: [typeof window === 'undefined' ? 'cpu' : 'wasm'], intraOpNumThreads: threads, graphOptimizationLevel: 'all' };
  const now = () => performance.now();
  const time = async (fn, seconds, minRuns = 3) => {
    await fn();
    const start = now();
    let runs = 0;
    while (runs < minRuns || now() - start < seconds * 1000) {
      await fn();
      runs += 1;
    }
    return (now() - start) / runs;
  };
  const ids = (b, t) => BigInt64Array.from({ length: b * t }, (_, k) => BigInt(((Math.floor(k / t) * 31 + (k % t) * 7) % 250) % s.vocab));
  const records = [];
  if (s.shapes.length > 0) {
    const forward = await ort.InferenceSession.create(await load('forward.onnx'), options);
    for (const [b, t] of s.shapes) {
      const feeds = { input_ids: new ort.Tensor('int64', ids(b, t), [b, t]) };
      const ms = await time(() => forward.run(feeds), s.seconds);
      records.push({ work: 'forward', shape: `${b}x${t}`, ms, tokens_per_s: (b * t * 1000) / ms, threads });
    }
    // A real model's weights are hundreds of MB in each session, in a 4 GB wasm memory.
    await forward.release();
  }
  if (s.gen > 0) {
    const prefill = await ort.InferenceSession.create(await load('prefill.onnx'), options);
    const decode = await ort.InferenceSession.create(await load('decode.onnx'), options);
    const prompt = { input_ids: new ort.Tensor('int64', ids(1, 16), [1, 16]) };
    const argmax = (logits) => {
      const v = s.vocab;
      const row = logits.data.subarray(logits.data.length - v);
      let best = 0;
      for (let i = 1; i < v; i += 1) if (row[i] > row[best]) best = i;
      return best;
    };
    const prefillMs = await time(() => prefill.run(prompt), s.seconds / 2);
    const generate = async () => {
      let out = await prefill.run(prompt);
      for (let i = 0; i < s.gen; i += 1) {
        const token = new ort.Tensor('int64', BigInt64Array.from([BigInt(argmax(out.logits))]), [1, 1]);
        out = await decode.run({ input_ids: token, past_keys: out.present_keys, past_values: out.present_values });
      }
    };
    const total = await time(generate, s.seconds, 2);
    const ms = (total - prefillMs) / s.gen;
    records.push({ work: 'generate', shape: `16+${s.gen}`, ms, tokens_per_s: 1000 / ms, threads });
  }
  return records;
}

let records;
if (where === 'node') {
  const ort = createRequire(path.join(NPM, 'package.json'))('onnxruntime-node');
  records = await bench(ort, async (name) => readFileSync(path.join(onnxDir, name)), settings, settings.threads);
  records = records.map((r) => ({ peer: 'onnxruntime-node', ...r }));
} else {
  const { launch, openPage, printLogs } = await import(path.join(ROOT, 'tests/browser/harness.mjs'));
  const { serve } = await import(path.join(ROOT, 'tests/browser/serve.mjs'));
  const site = mkdtempSync(path.join(os.tmpdir(), 'saeplay-ort-web-'));
  const dist = path.join(NPM, 'node_modules/onnxruntime-web/dist');
  for (const file of ['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']) {
    cpSync(path.join(dist, file), path.join(site, file));
  }
  for (const name of config.graphs ?? ['forward', 'prefill', 'decode']) cpSync(path.join(onnxDir, `${name}.onnx`), path.join(site, `${name}.onnx`));
  cpSync(path.join(ROOT, 'scripts/bench/ort-web.html'), path.join(site, 'index.html'));
  const server = await serve(site);
  const browser = await launch({ webgpu: false });
  const opened = await openPage(browser, server.url, { timeoutMs: 600_000 });
  try {
    await opened.page.waitForFunction(() => window.ortReady === true, null, { timeout: 60_000 });
    records = await opened.page.evaluate(
      async ([source, s]) => {
        const run = new Function(`return (${source})`)();
        const load = async (name) => new Uint8Array(await (await fetch(name)).arrayBuffer());
        window.ort.env.wasm.numThreads = s.threads;
        window.ort.env.wasm.simd = true;
        return run(window.ort, load, s, s.threads);
      },
      [bench.toString(), settings],
    );
    records = records.map((r) => ({ peer: 'onnxruntime-web', ...r }));
  } catch (error) {
    printLogs('onnxruntime-web page', opened.logs);
    throw error;
  } finally {
    await opened.close().catch(() => {});
    await browser.close();
    await server.close();
    rmSync(site, { recursive: true, force: true });
  }
}
console.log(JSON.stringify(records));
