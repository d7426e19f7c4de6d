// The Circuits view in headless Chromium on both paths: a link opens an attribution graph of
// its prompt; the exported graph JSON equals the CLI's (`saeplay attribute`, the same model and
// SAEs) link by link; a node is chosen, verified by ablation, restored from a copied link and
// opened as a card; cross-layer graphs are built and thinned by the threshold; a graph file is
// opened. Same inputs as playground.test.mjs (SAEPLAY_DIST, SAEPLAY_BIN, SAEPLAY_MODEL,
// SAEPLAY_BROWSER_PATHS).
import test, { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { launch, openPage, printLogs, setValue, waitReady } from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const BIN = path.resolve(ROOT, process.env.SAEPLAY_BIN ?? 'target/debug/saeplay');
const MODEL = path.resolve(ROOT, process.env.SAEPLAY_MODEL ?? 'www/models/builtin');
const SELECTED = (process.env.SAEPLAY_BROWSER_PATHS ?? 'cpu,webgpu').split(',').map((s) => s.trim());
const TIMEOUT_MS = 300_000;
// WebGPU here is SwiftShader, ~25x slower than the CPU path: it attributes a shorter prompt.
const PATHS = [
  { name: 'cpu', webgpu: false, fragment: [], prompt: 'Once upon a time, a little cat named' },
  { name: 'webgpu', webgpu: true, fragment: ['backend=webgpu'], prompt: 'Mia saw a big dog' },
].filter((p) => SELECTED.includes(p.name));

let server;
let tmp;
const native = {};
before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html is missing: build the page first`);
  server = await serve(DIST);
  tmp = mkdtempSync(path.join(tmpdir(), 'saeplay-circuits-'));
  const saes = [0, 1, 2, 3].map((l) => path.join(MODEL, `saes/blocks.${l}.hook_resid_pre-topk16`)).join(',');
  for (const p of PATHS) {
    const out = path.join(tmp, `native-${p.name}.json`);
    execFileSync(BIN, ['attribute', '--model', MODEL, '--saes', saes, '--prompt', p.prompt, '--out', out]);
    native[p.name] = JSON.parse(readFileSync(out, 'utf8'));
  }
});
after(async () => {
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const status = (page) => page.evaluate(() => document.querySelector('#circuit-status')?.textContent ?? '');
const waitMade = (page) =>
  page.waitForFunction(() => /Made in|Opened/.test(document.querySelector('#circuit-status')?.textContent ?? ''), null, {
    timeout: TIMEOUT_MS,
    polling: 250,
  });
const drawn = (page) =>
  page.evaluate(() => ({
    nodes: document.querySelectorAll('#circuit-graph [data-node-id]').length,
    edges: document.querySelectorAll('#circuit-graph line.edge').length,
  }));

for (const p of PATHS) {
  test(`circuits on the ${p.name} path`, { timeout: 3 * TIMEOUT_MS }, async () => {
    const browser = await launch({ webgpu: p.webgpu });
    const fragment = [
      'view=circuits',
      'sae=blocks.2.hook_resid_pre-topk16',
      'graph=attribution',
      `prompt=${encodeURIComponent(p.prompt)}`,
      ...p.fragment,
    ];
    const opened = await openPage(browser, server.url + '#' + fragment.join('&'), { timeoutMs: TIMEOUT_MS });
    const { page } = opened;
    try {
      await waitReady(page, { timeoutMs: TIMEOUT_MS });
      const started = Date.now();
      await waitMade(page);
      console.log(`[measure] ${p.name}: attribution graph in the page: ${await status(page)} (waited ${Date.now() - started} ms after ready)`);
      const reads = await page.evaluate(() => document.querySelector('#circuit-saes').textContent);
      assert.equal(reads, `Reads: ${[0, 1, 2, 3].map((l) => `blocks.${l}.hook_resid_pre-topk16`).join(', ')}`);
      const picture = await drawn(page);
      assert.ok(picture.nodes > 20 && picture.edges > 20, JSON.stringify(picture));

      // The exported file equals the CLI's: the same target, nodes and links, weights within 1e-3.
      const file = path.join(tmp, `${p.name}.json`);
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#circuit-export')]);
      await download.saveAs(file);
      const graph = JSON.parse(readFileSync(file, 'utf8'));
      const reference = native[p.name];
      for (const key of ['metadata', 'qParams', 'nodes', 'links']) assert.ok(key in graph, key);
      const target = (g) => g.nodes.find((n) => n.is_target_logit).node_id;
      assert.equal(target(graph), target(reference));
      assert.deepEqual(graph.metadata.prompt_tokens, reference.metadata.prompt_tokens);
      const weights = new Map(reference.links.map((l) => [`${l.source}>${l.target}`, l.weight]));
      let shared = 0;
      for (const l of graph.links) {
        const w = weights.get(`${l.source}>${l.target}`);
        if (w === undefined) continue;
        shared += 1;
        assert.ok(Math.abs(w - l.weight) <= 1e-3 * Math.max(1, Math.abs(w)), `${l.source}>${l.target}: page ${l.weight}, CLI ${w}`);
      }
      assert.ok(shared >= 0.9 * reference.links.length, `${shared} of the CLI's ${reference.links.length} links are in the page's graph`);

      // Choose the strongest feature feeding the logit, verify it, and keep it in the link.
      const logit = target(graph);
      const strongest = graph.links
        .filter((l) => l.target === logit && !l.source.startsWith('E_') && !l.source.includes('_-1_'))
        .sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight))[0].source;
      await page.click(`#circuit-graph [data-node-id="${strongest}"]`);
      const layer = strongest.split('_')[0];
      await page.waitForFunction((l) => document.querySelector('#circuit-node')?.textContent.includes(`layer ${l} feature`), layer);
      await page.click('#circuit-verify');
      await page.waitForFunction(() => /Removing it moves/.test(document.querySelector('#circuit-check')?.textContent ?? ''), null, {
        timeout: TIMEOUT_MS,
      });
      const check = await page.evaluate(() => document.querySelector('#circuit-check').textContent);
      console.log(`[measure] ${p.name}: verify ${strongest}: ${check}`);
      const [ablated, attributed] = [...check.matchAll(/[-+]\d+\.\d+/g)].map((m) => Number(m[0]));
      assert.ok(Number.isFinite(ablated) && Number.isFinite(attributed) && Math.sign(ablated) === Math.sign(attributed), check);
      const link = await page.evaluate(() => location.hash);
      assert.match(link, new RegExp(`node=${strongest}`));
      const details = await page.evaluate(() => document.querySelector('#circuit-node').textContent);

      // The link in a fresh profile shows the same graph and node (on the CPU path: on
      // SwiftShader the graph would take minutes more).
      if (p.name === 'cpu') {
        const again = await openPage(browser, server.url + link, { timeoutMs: TIMEOUT_MS });
        try {
          await waitReady(again.page, { timeoutMs: TIMEOUT_MS });
          await waitMade(again.page);
          await again.page.waitForFunction((d) => document.querySelector('#circuit-node')?.textContent === d, details, { timeout: 60_000 });
        } catch (error) {
          printLogs('the copied circuits link', again.logs);
          throw error;
        } finally {
          await again.close();
        }
      }

      // The node opens its card in the Features view.
      await page.click('#circuit-open-card');
      const feature = strongest.split('_')[1];
      await page.waitForFunction(
        (f) => document.body.dataset.view === 'features' && (document.querySelector('#card-title')?.textContent ?? '').includes(f),
        feature,
        { timeout: TIMEOUT_MS },
      );
      assert.match(await page.evaluate(() => document.querySelector('#sae-select').value), new RegExp(`blocks\\.${layer}\\.`));

      // Cross-layer graphs on the CPU path (SwiftShader takes ~40 s for the cosine one):
      // decoder cosine, thinned by the threshold, and ablation.
      await page.click('#tab-circuits');
      if (p.name === 'cpu') {
        await setValue(page, '#circuit-kind', 'cosine');
        await page.click('#circuit-run');
        await waitMade(page);
        console.log(`[measure] ${p.name}: cosine graph: ${await status(page)}`);
        const loose = await drawn(page);
        await setValue(page, '#circuit-threshold', '0.9');
        const tight = await drawn(page);
        assert.ok(loose.edges > tight.edges && tight.edges > 0, `${JSON.stringify(loose)} then ${JSON.stringify(tight)}`);
        await setValue(page, '#circuit-kind', 'ablation');
        await page.click('#circuit-run');
        await waitMade(page);
        console.log(`[measure] ${p.name}: ablation graph: ${await status(page)}`);
        assert.ok((await drawn(page)).edges > 0);
      }

      // A graph file opens; a broken one is refused in words and the graph stays.
      await page.setInputFiles('#circuit-open', file);
      await page.waitForFunction(() => /Opened/.test(document.querySelector('#circuit-status')?.textContent ?? ''));
      assert.ok((await drawn(page)).nodes > 20);
      await page.setInputFiles('#circuit-open', { name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from('{"nodes": 1}') });
      await page.waitForFunction(() => /could not be opened/.test(document.querySelector('#error-text')?.textContent ?? ''));
      assert.ok((await drawn(page)).nodes > 20);
    } catch (error) {
      printLogs(`circuits on ${p.name}`, opened.logs);
      throw error;
    } finally {
      await opened.close();
      await browser.close();
    }
  });
}
