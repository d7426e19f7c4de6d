// The playground in headless Chromium, doing what a person does: the prompt heatmap, a feature
// card, the feature list, steering, a copied link in a fresh profile, training an SAE from
// scratch (charts, pause and resume, cancel, metrics), reload, export and import, and hostile or
// remote links. Same inputs as page.test.mjs (SAEPLAY_DIST, SAEPLAY_BIN, SAEPLAY_MODEL,
// SAEPLAY_BROWSER_PATHS); every browser context is a fresh profile.
import test, { after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { errorText, launch, openPage, printLogs, readCard, setValue, waitForSae, waitReady } from './harness.mjs';
import { serve } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.resolve(ROOT, process.env.SAEPLAY_DIST ?? 'dist');
const BIN = path.resolve(ROOT, process.env.SAEPLAY_BIN ?? 'target/debug/saeplay');
const MODEL = path.resolve(ROOT, process.env.SAEPLAY_MODEL ?? 'www/models/builtin');
const SELECTED = (process.env.SAEPLAY_BROWSER_PATHS ?? 'cpu,webgpu').split(',').map((s) => s.trim());

const READY_TIMEOUT_MS = 180_000;
const ACTION_TIMEOUT_MS = 300_000;
const SHIPPED = 'blocks.2.hook_resid_pre-topk16';

const PATHS = [
  { name: 'cpu', webgpu: false, fragment: [], backend: 'cpu' },
  { name: 'webgpu', webgpu: true, fragment: ['backend=webgpu'], backend: 'webgpu' },
].filter((p) => SELECTED.includes(p.name));

const measurements = [];
function measure(pathName, what, value) {
  measurements.push({ path: pathName, what, value });
  console.log(`[measure] ${pathName}: ${what} = ${value}`);
}

let server;
let tmp;
before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html is missing: build the page first`);
  server = await serve(DIST);
  tmp = mkdtempSync(path.join(tmpdir(), 'saeplay-playground-'));
});
after(async () => {
  await server?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  if (measurements.length) {
    console.log('==== playground measurements ====');
    for (const m of measurements) console.log(`${m.path.padEnd(7)} ${m.what.padEnd(60)} ${m.value}`);
  }
});

const fragmentOf = (parts) => (parts.length ? `#${parts.join('&')}` : '');

/** A fresh profile at `fragment`, ready (model loaded); logs printed if it fails. */
async function open(browser, fragment, { ready = true, init } = {}) {
  const opened = await openPage(browser, server.url, { timeoutMs: ACTION_TIMEOUT_MS, goto: false });
  try {
    if (init) await init(opened.page);
    const started = Date.now();
    await opened.page.goto(server.url + fragment, { timeout: READY_TIMEOUT_MS });
    if (ready) await waitReady(opened.page, { timeoutMs: READY_TIMEOUT_MS });
    opened.readyMs = Date.now() - started;
    return opened;
  } catch (error) {
    printLogs('opening the page', opened.logs);
    await opened.close().catch(() => {});
    throw error;
  }
}

async function step(label, opened, body) {
  try {
    return await body();
  } catch (error) {
    printLogs(label, opened.logs);
    throw error;
  }
}

/** The message in #error while it is shown ('' when hidden). */
const steerRows = (page) =>
  page.evaluate(() => [...document.querySelectorAll('.steer-row')].map((row) => ({
    feature: row.querySelector('.steer-feature').value,
    mode: row.querySelector('.steer-mode').value,
    value: row.querySelector('.steer-value').value,
  })));

/** `saeplay generate` at temperature 0, with or without steering (`--steer F:S`, or another
 * mode's flag and value): the continuation only. */
function nativeGreedy(prompt, maxTokens, steer, flag = '--steer') {
  const args = ['generate', '--model', MODEL, '--prompt', prompt, '--max-tokens', String(maxTokens), '--temperature', '0'];
  if (steer) args.push('--sae', path.join(MODEL, 'saes', SHIPPED), flag, steer);
  const out = execFileSync(BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 }).replace(/\n$/, '');
  assert.ok(out.startsWith(prompt), `native generate did not echo the prompt: ${JSON.stringify(out)}`);
  return out.slice(prompt.length);
}

for (const spec of PATHS) {
  describe(`${spec.name} path: the playground`, () => {
    let browser;
    before(async () => { browser = await launch({ webgpu: spec.webgpu }); });
    after(async () => { await browser?.close(); });

    test('h. heatmap, feature card, feature list, steering, and a copied link in a fresh profile', { timeout: ACTION_TIMEOUT_MS * 3 }, async () => {
      const opened = await open(browser, fragmentOf([...spec.fragment, `sae=${SHIPPED}`]));
      const { page } = opened;
      try {
        await step(`${spec.name} h`, opened, async () => {
          const started = Date.now();
          await page.waitForSelector('#heatmap .heat-cell', { timeout: ACTION_TIMEOUT_MS });
          measure(spec.name, 'page ready to SAE heatmap on the prompt (ms)', Date.now() - started);
          const lit = await page.$$eval('#heatmap .heat-cell', (cells) => cells.filter((c) => !/, 0\.000?\)/.test(c.getAttribute('style'))).length);
          assert.ok(lit > 0, 'the heatmap has no shaded cell');

          // Click a token: its features are listed; click one: its card opens.
          await page.click('#tokens [data-token="3"]');
          await page.waitForSelector('#token-features [data-feature]');
          const feature = Number(await page.getAttribute('#token-features [data-feature]', 'data-feature'));
          const cardStarted = Date.now();
          await page.click('#token-features [data-feature]');
          // How long the page is blocked at a stretch while it scans (the scan runs in the page).
          const stall = await page.evaluate(async (timeoutMs) => {
            const channel = new MessageChannel();
            const freshTask = () => new Promise((resolve) => { channel.port1.onmessage = resolve; channel.port2.postMessage(0); });
            const start = performance.now();
            let max = 0;
            while (!document.querySelector('#card-title') && performance.now() - start < timeoutMs) {
              await freshTask();
              const t = performance.now();
              await new Promise((resolve) => setTimeout(resolve, 0));
              max = Math.max(max, performance.now() - t);
            }
            return max;
          }, ACTION_TIMEOUT_MS);
          await page.waitForSelector('#card-title', { timeout: ACTION_TIMEOUT_MS });
          measure(spec.name, 'feature card, first open with the scan of held-out stories (ms)', Date.now() - cardStarted);
          measure(spec.name, 'longest stall of the page during that scan (ms)', Math.round(stall));
          const card = await readCard(page);
          console.log(`${spec.name} h: card ${JSON.stringify(card)}`);
          assert.equal(card.title, `Feature #${feature}`);
          assert.ok(card.top > 0 && card.shaded > 0, 'top examples with shaded tokens');
          assert.ok(card.bands > 0, 'quantile examples');
          assert.ok(card.histogramBars > 0, 'activation histogram');
          assert.equal(card.promoted, 10, 'logit lens: promoted tokens');
          assert.equal(card.suppressed, 10, 'logit lens: suppressed tokens');
          assert.equal(card.nearest, 8, 'nearest features');
          assert.match(card.concept, /AUROC 0\.\d{3}|AUROC 1\.000/, 'the best concept and its AUROC');
          // The card's automatic explanation and its held-out score; then a person's, scored in
          // the worker on the same scan, equal to `saeplay score` on the same held-out windows.
          // Explanations are made in the worker's background after the list; the card shows its own when it comes.
          await page.waitForFunction(() => /^Explanation \(from/.test(document.querySelector('#card-explanation')?.textContent ?? ''), null, { timeout: ACTION_TIMEOUT_MS });
          measure(spec.name, 'the card\'s explanation (made in the background), from the click (ms)', Date.now() - cardStarted);
          const explanation = await page.textContent('#card-explanation');
          assert.match(explanation, /^Explanation \(from [^)]+\): .+ — simulation -?\d\.\d\d, detection/, explanation);
          const scanned = Number((await page.textContent('#feature-status')).match(/read on (\d+) held-out tokens/)[1]);
          await page.fill('#card-explain-input', 'concept:animal');
          await page.click('#card-explain-run');
          await page.waitForFunction(() => /simulation|Not scored/.test(document.querySelector('#card-explain-result')?.textContent ?? ''), null, { timeout: ACTION_TIMEOUT_MS });
          const scoredText = await page.textContent('#card-explain-result');
          console.log(`${spec.name} h: explanation ${JSON.stringify(explanation)}; scored ${JSON.stringify(scoredText)}`);
          const pageSimulation = Number(scoredText.match(/simulation (-?\d\.\d\d)/)?.[1]);
          assert.ok(Number.isFinite(pageSimulation), scoredText);
          if (existsSync(BIN)) {
            const native = JSON.parse(execFileSync(BIN, ['score', '--model', MODEL, '--sae', path.join(MODEL, 'saes', SHIPPED), '--feature', String(feature),
              '--explanation', 'concept:animal', '--windows', String(scanned / 128), '--context', '128', '--json'], { encoding: 'utf8', timeout: 300_000 }));
            console.log(`${spec.name} h: native score ${JSON.stringify(native.score)}`);
            assert.ok(Math.abs(native.score.simulation - pageSimulation) <= 0.011, `page ${pageSimulation} vs native ${native.score.simulation}`);
          }
          await page.fill('#card-explain-input', 'concept:unicorns');
          await page.click('#card-explain-run');
          await page.waitForFunction(() => /Not scored: unknown concept/.test(document.querySelector('#card-explain-result')?.textContent ?? ''), null, { timeout: ACTION_TIMEOUT_MS });
          assert.equal(await page.getAttribute('body', 'data-view'), 'features');
          assert.match(page.url(), new RegExp(`feature=${feature}(&|$)`));

          // The list: search narrows by concept, sorting orders the column.
          const rows = await page.$$eval('#feature-rows tr', (trs) => trs.length);
          assert.ok(rows > 0, 'the feature list is empty');
          await setValue(page, '#feature-search', 'animal');
          const concepts = await page.$$eval('#feature-rows tr td:nth-child(4)', (tds) => tds.map((td) => td.textContent));
          assert.ok(concepts.length > 0 && concepts.every((c) => c.startsWith('animal')), `search "animal": ${concepts.slice(0, 5)}`);
          await setValue(page, '#feature-search', '');
          await setValue(page, '#feature-sort', 'max');
          const maxes = await page.$$eval('#feature-rows tr td:nth-child(3)', (tds) => tds.map((td) => Number(td.textContent)));
          assert.ok(maxes.every((v, i) => i === 0 || v <= maxes[i - 1]), 'sorted by max activation');
          await setValue(page, '#feature-sort', 'score');
          // The explanations are made in the background after the list: wait for the first ten.
          await page.waitForFunction(() => {
            const tds = [...document.querySelectorAll('#feature-rows tr td:nth-child(5)')].slice(0, 10);
            return tds.length === 10 && tds.every((td) => /\((-?[\d.]+)\)$/.test(td.textContent));
          }, null, { timeout: ACTION_TIMEOUT_MS });
          const scores = await page.$$eval('#feature-rows tr td:nth-child(5)', (tds) => tds.map((td) => Number(td.textContent.match(/\((-?[\d.]+)\)$/)?.[1])));
          assert.ok(scores.length > 10 && scores.slice(0, 10).every(Number.isFinite), `explanation scores: ${scores.slice(0, 10)}`);
          assert.ok(scores.filter(Number.isFinite).every((v, i, all) => i === 0 || v <= all[i - 1]), 'sorted by explanation score');

          // Steer with the card's feature, greedy, against the default continuation.
          await page.click('#feature-card [data-steer-feature]');
          assert.equal(await page.getAttribute('body', 'data-view'), 'steer');
          await setValue(page, '#steer-rows .steer-value', '30');
          await setValue(page, '#temperature', '0');
          await setValue(page, '#max-tokens', '16');
          const steerStarted = Date.now();
          await page.click('#steer-run');
          await page.waitForSelector('#steer-steered[data-done="true"]', { timeout: ACTION_TIMEOUT_MS });
          measure(spec.name, 'steer: default and steered 16 tokens each (ms)', Date.now() - steerStarted);
          const texts = await page.evaluate(() => ({
            plain: document.querySelector('#steer-default').textContent,
            steered: document.querySelector('#steer-steered').textContent,
            shifts: document.querySelectorAll('#steer-shift li').length,
          }));
          console.log(`${spec.name} h: default ${JSON.stringify(texts.plain)} / steered ${JSON.stringify(texts.steered)}`);
          assert.equal(await errorText(page), '');
          assert.ok(texts.plain.length > 0 && texts.steered.length > 0);
          assert.notEqual(texts.steered, texts.plain, 'steering changed nothing');
          assert.equal(texts.shifts, 10, 'ten next-token probability changes');
          if (existsSync(BIN)) {
            const prompt = await page.inputValue('#prompt');
            const nativePlain = nativeGreedy(prompt, 16);
            const nativeSteered = nativeGreedy(prompt, 16, `${feature}:30`);
            const same = texts.plain === nativePlain && texts.steered === nativeSteered;
            console.log(`${spec.name} h: native CLI greedy ${same ? 'agrees' : 'DIFFERS'}: ${JSON.stringify(nativePlain)} / ${JSON.stringify(nativeSteered)}`);
            // Greedy decoding on the CPU path is the same arithmetic as the CLI's.
            if (!spec.webgpu) {
              assert.equal(texts.plain, nativePlain, 'default continuation = saeplay generate');
              assert.equal(texts.steered, nativeSteered, 'steered continuation = saeplay generate --steer');
            }
          }

          // Neuronpedia's orthogonal mode on the same row: the feature's component flipped and
          // doubled; on the CPU path the continuation equals the CLI's.
          await setValue(page, '#steer-rows .steer-mode', 'orthogonal');
          await setValue(page, '#steer-rows .steer-value', '-2');
          await page.click('#steer-run');
          await page.waitForFunction(() => document.querySelector('#steer-steered')?.dataset.done !== 'true', null, { timeout: 10_000 }).catch(() => {});
          await page.waitForSelector('#steer-steered[data-done="true"]', { timeout: ACTION_TIMEOUT_MS });
          const orthogonal = await page.textContent('#steer-steered');
          assert.equal(await errorText(page), '');
          assert.match(page.url(), new RegExp(`steer=${feature}%3Aorthogonal%3A-2|steer=${feature}:orthogonal:-2`));
          if (existsSync(BIN) && !spec.webgpu) {
            const prompt = await page.inputValue('#prompt');
            assert.equal(orthogonal, nativeGreedy(prompt, 16, `${feature}:-2`, '--orthogonal'), 'orthogonal = saeplay generate --orthogonal');
          }

          // The copied link opens the same view in a fresh profile.
          await page.click('#copy-link');
          const link = await page.inputValue('#share-link');
          assert.match(link, /view=steer/);
          const want = { sae: await page.inputValue('#sae-select'), prompt: await page.inputValue('#prompt'), rows: await steerRows(page) };
          const other = await open(browser, link.slice(server.url.length));
          try {
            await step(`${spec.name} h (link)`, other, async () => {
              assert.equal(await waitForSae(other.page, /./), want.sae);
              assert.equal(await other.page.getAttribute('body', 'data-view'), 'steer');
              assert.equal(await other.page.inputValue('#prompt'), want.prompt);
              assert.deepEqual(await steerRows(other.page), want.rows);
              await other.page.click('#tab-features');
              await other.page.waitForSelector('#card-title', { timeout: ACTION_TIMEOUT_MS });
              assert.equal(await other.page.textContent('#card-title'), card.title);
              assert.equal(await errorText(other.page), '');
            });
          } finally {
            await other.close();
          }
          assert.deepEqual(opened.pageErrors.map((e) => e.message), []);
        });
      } finally {
        await opened.close();
      }
    });

    test('i. train an SAE from scratch: live charts, pause and resume, metrics, reload, export, import, cancel', { timeout: ACTION_TIMEOUT_MS * 6 }, async () => {
      const opened = await open(browser, fragmentOf(spec.fragment));
      const { page } = opened;
      try {
        await step(`${spec.name} i`, opened, async () => {
          await page.click('#tab-train');
          // SwiftShader is a software GPU (~100 vectors/s): a small SAE there; the default on CPU.
          if (spec.webgpu) {
            await setValue(page, '#train-tokens', 2048);
            await setValue(page, '#train-batch', 256);
            await setValue(page, '#train-expansion', 2);
            await setValue(page, '#train-k', 8);
          }
          // How late a click's handler runs while the page trains: pointer events carry the
          // time the browser received them.
          await page.evaluate(() => {
            window.__delays = [];
            document.addEventListener('pointerdown', (e) => window.__delays.push(performance.now() - e.timeStamp), true);
          });
          const started = Date.now();
          await page.click('#train-start');
          const status = () => page.textContent('#train-status');
          const stepOf = async () => Number((await status()).match(/step (\d+) of/)?.[1] ?? -1);
          const points = () => page.evaluate(() => Number(document.querySelector('#train-charts polyline.line')?.getAttribute('data-points') ?? 0));
          await page.waitForFunction(() => /step [3-9]\d* of|step \d\d+ of/.test(document.querySelector('#train-status').textContent), null, { timeout: ACTION_TIMEOUT_MS, polling: 100 });
          const early = await points();
          const charts = await page.$$eval('#train-charts figcaption', (c) => c.map((x) => x.textContent));
          assert.ok(charts.some((c) => /Loss/.test(c)) && charts.some((c) => /L0/.test(c)) && charts.some((c) => /Explained variance/.test(c)) && charts.some((c) => /Dead/.test(c)), `charts: ${charts}`);
          assert.ok(await page.evaluate(() => Number(document.querySelector('#train-progress').value) > 0.3), 'the progress bar moved');
          assert.match(await status(), /s left/);

          // Pause: the step count holds; resume: it moves again.
          await page.click('#train-pause');
          await page.waitForFunction(() => document.querySelector('#train-pause').textContent === 'Resume');
          // A step under way when the pause arrives still reports (on a loaded machine its
          // message can land seconds later); after that the count holds.
          let paused = await stepOf();
          for (let i = 0; i < 8; i++) {
            await page.waitForTimeout(1500);
            const now = await stepOf();
            if (now === paused) break;
            paused = now;
          }
          await page.waitForTimeout(2000);
          assert.equal(await stepOf(), paused, 'training went on while paused');
          await page.click('#train-pause');

          // Clicks while it trains, then wait for the end.
          const clicks = [];
          while (!/Done|Stopped|Cancelled/.test(await status())) {
            assert.ok(Date.now() - started < ACTION_TIMEOUT_MS * 3, `training did not finish: ${await status()}`);
            const t = Date.now();
            await page.click('#tab-train');
            clicks.push(Date.now() - t);
            await page.waitForTimeout(400);
          }
          const trainMs = Date.now() - started;
          assert.match(await status(), /Done/, await errorText(page));
          assert.ok(await points() > early, 'the charts moved');
          const delays = (await page.evaluate(() => window.__delays)).sort((a, b) => a - b);
          const pct = (q) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))];
          measure(spec.name, `train ${spec.webgpu ? 'a small SAE (2x, 2048 tokens, batch 256)' : 'the default SAE (TopK k16 8x, 196608 tokens)'} from Train to Done (ms)`, trainMs);
          measure(spec.name, 'click handler delay while training: median / p95 / max (ms)', `${pct(0.5).toFixed(0)} / ${pct(0.95).toFixed(0)} / ${delays.at(-1).toFixed(0)} (${delays.length} clicks)`);
          const result = await page.textContent('#train-result');
          const id = result.match(/tab-[0-9a-f]{8}/)?.[0];
          assert.ok(id, `no SAE id in "${result}"`);
          assert.equal(await waitForSae(page, new RegExp(id)), id);

          // Its metrics appear, beside the shipped SAEs in the table and the chart.
          await page.click('#tab-evaluate');
          const metrics = async (p) => p.$$eval('#eval-metrics dd', (dds) => dds.map((d) => d.textContent));
          await page.waitForSelector('#eval-metrics');
          const shown = await metrics(page);
          console.log(`${spec.name} i: metrics ${JSON.stringify(shown)}`);
          measure(spec.name, 'trained SAE: L0 / explained variance / loss recovered', `${shown[0]} / ${shown[1]} / ${shown[2].split(' ')[0]}`);
          assert.equal(shown.length, 13);
          assert.ok(shown.some((v) => /tokens per window/.test(v)), 'the consistent-activation heuristic');
          assert.ok(Number(shown[0]) > 0, 'L0');
          if (!spec.webgpu) {
            assert.ok(Number(shown[1]) > 0.7, `explained variance ${shown[1]}`);
            assert.ok(Number(shown[2].split(' ')[0]) > 0.9, `loss recovered ${shown[2]}`);
          }
          assert.equal(await page.$$eval('#eval-rows tr', (r) => r.length), 6, 'five shipped SAEs and the new one');
          // Every SAE with both figures is a dot (on SwiftShader loss recovered can be n/a, see the page's note).
          const plottable = await page.$$eval('#eval-rows tr', (rows) => rows.filter((r) => /^\d/.test(r.children[6].textContent) && /^\d/.test(r.children[4].textContent)).length);
          assert.ok(plottable >= 5, `shipped SAEs have both figures: ${plottable}`);
          assert.equal(await page.$$eval('#eval-pareto circle', (c) => c.length), plottable, 'every SAE with L0 and loss recovered on the Pareto chart');
          if (!spec.webgpu) assert.equal(plottable, 6, 'the new SAE is on the chart');
          assert.ok(await page.$$eval('#eval-density rect.bar', (r) => r.length) > 0, 'density histogram');
          assert.ok(await page.$$eval('#eval-concepts li', (r) => r.length) > 10, 'concept recovery');
          assert.ok(await page.$$eval('#eval-probing li', (r) => r.length) > 10, 'sparse probing per concept');
          assert.ok(await page.$$eval('#eval-absorption li', (r) => r.length) > 5, 'absorption per concept');
          // Other axes: only SAEs whose metrics have both figures are dots (the new one does).
          await setValue(page, '#eval-pareto-x', 'cossim');
          await setValue(page, '#eval-pareto-y', 'mean_absorption_fraction_score');
          assert.match(await page.textContent('#eval-pareto figcaption'), /cosine of reconstruction against mean absorption fraction/);
          // The shipped SAEs' index lists every figure, so they are dots on any axes.
          if (!spec.webgpu) assert.ok(await page.$$eval('#eval-pareto circle', (c) => c.length) >= 5, 'the shipped SAEs on the chosen axes');
          await setValue(page, '#eval-pareto-x', 'l0');
          await setValue(page, '#eval-pareto-y', 'loss_recovered');

          // Reload: the SAE is still here, and so is the view.
          await page.reload();
          await waitReady(page, { timeoutMs: READY_TIMEOUT_MS });
          assert.equal(await waitForSae(page, new RegExp(id)), id);
          await page.waitForSelector('#eval-metrics');
          assert.deepEqual(await metrics(page), shown);

          // Export, then import into a fresh profile with the file picker and by dropping.
          const [download] = await Promise.all([page.waitForEvent('download'), page.click('#sae-export')]);
          const file = path.join(tmp, `${spec.name}-${id}.zip`);
          await download.saveAs(file);
          const bytes = readFileSync(file);
          assert.equal(bytes.subarray(0, 2).toString(), 'PK');
          for (const name of ['cfg.json', 'sae_weights.safetensors', 'sparsity.safetensors', 'saeplay.json']) {
            assert.ok(bytes.includes(Buffer.from(`${id}/${name}`)), `the zip holds ${name}`);
          }
          measure(spec.name, 'exported SAE zip (bytes)', bytes.length);
          const fresh = await open(browser, fragmentOf([...spec.fragment, 'view=evaluate']));
          try {
            await step(`${spec.name} i (import)`, fresh, async () => {
              await fresh.page.setInputFiles('#sae-import', file);
              const imported = await waitForSae(fresh.page, /^imported-/);
              await fresh.page.waitForSelector('#eval-metrics');
              assert.deepEqual(await metrics(fresh.page), shown, 'the imported SAE carries the same metrics');
              await fresh.page.evaluate(async (b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const data = new DataTransfer();
                data.items.add(new File([bytes], 'dropped.zip', { type: 'application/zip' }));
                document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
              }, bytes.toString('base64'));
              await fresh.page.waitForFunction((first) => {
                const v = document.querySelector('#sae-select').value;
                return v.startsWith('imported-') && v !== first;
              }, imported, { timeout: ACTION_TIMEOUT_MS });
              assert.equal(await errorText(fresh.page), '');
            });
          } finally {
            await fresh.close();
          }

          // Cancel: a run stopped early keeps nothing.
          await page.click('#tab-train');
          await page.click('#train-start');
          await page.waitForFunction(() => /Capturing|Training/.test(document.querySelector('#train-status').textContent));
          await page.click('#train-cancel');
          await page.waitForFunction(() => /Cancelled/.test(document.querySelector('#train-status').textContent), null, { timeout: ACTION_TIMEOUT_MS });
          assert.equal(await page.$$eval('#sae-select option', (o) => o.filter((x) => x.value.startsWith('tab-')).length), 1);
          assert.deepEqual(opened.pageErrors.map((e) => e.message), []);
        });
      } finally {
        await opened.close();
      }
    });

    if (!spec.webgpu) {
      test('j. hostile links show their text inertly and open the default view', { timeout: ACTION_TIMEOUT_MS * 2 }, async () => {
        const markup = '<img src=x onerror=alert(1)><script>alert(2)</script>';
        const enc = encodeURIComponent(markup);
        const links = [
          ['every field', `#view=${enc}&sae=${enc}&feature=${enc}&steer=${enc}&recipe=${enc}&model=${enc}&backend=${enc}&${enc}=${enc}`],
          ['markup prompt', `#prompt=${enc}`],
          ['huge', `#prompt=${'a'.repeat(20_000)}`],
          ['truncated', `#sae=${SHIPPED.slice(0, 10)}%E0%A4&steer=12:add:%4&feature=1e99`],
          ['javascript model', '#model=javascript:alert(3)&sae=data:text/html,hi'],
        ];
        const watch = (page) => page.addInitScript(() => {
          window.__inserted = [];
          new MutationObserver((records) => {
            for (const r of records) for (const n of r.addedNodes) {
              if (n.nodeType !== Node.ELEMENT_NODE) continue;
              for (const el of [n, ...n.querySelectorAll('*')]) {
                if (el.tagName === 'SCRIPT' || el.tagName === 'IMG' || [...el.attributes].some((a) => a.name.startsWith('on'))) window.__inserted.push(el.outerHTML.slice(0, 200));
              }
            }
          }).observe(document, { childList: true, subtree: true });
        });
        for (const [label, fragment] of links) {
          const opened = await open(browser, fragment, { init: watch });
          try {
            await step(`j ${label}`, opened, async () => {
              await opened.page.waitForTimeout(300);
              const seen = await opened.page.evaluate(() => ({
                inserted: window.__inserted.filter((html) => /alert/.test(html)), // the page's own module script aside
                predictions: document.querySelectorAll('#predictions li').length,
                prompt: document.querySelector('#prompt').value,
                view: document.body.dataset.view,
                error: document.querySelector('#error').hidden ? '' : document.querySelector('#error-text').textContent,
              }));
              console.log(`j ${label}: view ${seen.view}; error ${JSON.stringify(seen.error.slice(0, 300))}`);
              assert.deepEqual(opened.dialogs, [], `${label}: a dialog fired`);
              assert.deepEqual(seen.inserted, [], `${label}: markup became elements`);
              assert.equal(seen.predictions, 10, `${label}: the page works`);
              if (label === 'markup prompt') {
                assert.equal(seen.prompt, markup, 'the prompt is the text of the link');
                assert.equal(seen.error, '');
                const tokens = await opened.page.$$eval('#tokens .token', (t) => t.map((x) => x.textContent).join(''));
                assert.equal(tokens.replace(/\s/g, ''), markup.replace(/\s/g, ''), 'tokens show the markup as text'); // token pieces leave spaces out
              } else {
                assert.equal(seen.view, 'prompt', `${label}: the default view`);
                assert.ok(seen.error.length > 0, `${label}: a message explains the bad link`);
              }
              if (label === 'every field') assert.ok(seen.error.includes(markup.slice(0, 20)) || seen.error.includes('<img'), 'the bad value is quoted as text');
              assert.deepEqual(opened.pageErrors.map((e) => e.message), []);
            });
          } finally {
            await opened.close();
          }
        }
      });

      test('k. links naming a URL ask before fetching; an SAE from another tab says what to do', { timeout: ACTION_TIMEOUT_MS * 2 }, async () => {
        // A remote SAE (served here, but named by URL like any other site's).
        const remote = `${server.url}models/builtin/saes/blocks.1.hook_resid_pre-topk16/`;
        const requests = [];
        const opened = await open(browser, `#sae=${encodeURIComponent(remote)}`, { init: (page) => page.on('request', (r) => requests.push(r.url())) });
        try {
          await step('k sae url', opened, async () => {
            const { page } = opened;
            await page.waitForSelector('#consent:not([hidden])');
            assert.ok((await page.textContent('#consent-text')).includes(remote), 'the question names the URL');
            await page.waitForTimeout(500);
            assert.ok(!requests.some((u) => u.startsWith(remote)), 'fetched before asking');
            await page.click('#consent-yes');
            await waitForSae(page, /^fetched-/);
            assert.ok(requests.some((u) => u === `${remote}cfg.json`));
            assert.match(page.url(), /sae=http/, 'the link keeps naming the URL');
          });
        } finally {
          await opened.close();
        }
        const model = 'https://example.invalid/gpt2';
        const declined = await open(browser, `#model=${encodeURIComponent(model)}`, { ready: false, init: (page) => page.on('request', (r) => requests.push(r.url())) });
        try {
          await step('k model url', declined, async () => {
            const { page } = declined;
            await page.waitForSelector('#consent:not([hidden])', { timeout: READY_TIMEOUT_MS });
            assert.ok((await page.textContent('#consent-text')).includes(model));
            await page.click('#consent-no');
            await waitReady(page, { timeoutMs: READY_TIMEOUT_MS });
            assert.ok(!requests.some((u) => u.startsWith('https://example.invalid')), 'fetched a declined URL');
            assert.equal(await page.$$eval('#predictions li', (l) => l.length), 10, 'the built-in model runs');
          });
        } finally {
          await declined.close();
        }
        const recipe = 'arch:batchtopk;k:8;x:2;hook:blocks.1.hook_resid_pre;tokens:4096;batch:256;lr:0.001;seed:3;corpus:tinytales';
        const orphan = await open(browser, `#sae=tab-deadbeef&recipe=${encodeURIComponent(recipe)}&feature=3`);
        try {
          await step('k tab sae', orphan, async () => {
            const { page } = orphan;
            await page.waitForSelector('#notice:not([hidden])');
            const notice = await page.textContent('#notice');
            assert.match(notice, /another browser tab/);
            assert.match(notice, /recipe/);
            assert.match(notice, /[Ii]mport/);
            assert.equal(await page.getAttribute('body', 'data-view'), 'train');
            assert.equal(await page.inputValue('#train-arch'), 'batchtopk');
            assert.equal(await page.inputValue('#train-k'), '8');
            assert.equal(await page.inputValue('#train-hook'), 'blocks.1.hook_resid_pre');
            assert.equal(await page.inputValue('#train-tokens'), '4096');
          });
        } finally {
          await orphan.close();
        }
      });

      test('l. an uploaded text file trains an SAE; bad settings are named in words', { timeout: ACTION_TIMEOUT_MS * 2 }, async () => {
        const opened = await open(browser, '#view=train');
        try {
          await step('l', opened, async () => {
            const { page } = opened;
            // A bad setting: a plain message, nothing starts.
            await setValue(page, '#train-lr', '-1');
            await page.click('#train-start');
            await page.waitForSelector('#error:not([hidden])');
            assert.match(await errorText(page), /Learning rate must be above 0/);
            await page.click('#dismiss-error');
            await setValue(page, '#train-lr', '0.001');
            // The text corpus, from a file.
            const file = path.join(tmp, 'my-notes.txt');
            const text = 'The quick brown fox jumps over the lazy dog. A little cat sat on a red mat.\n'.repeat(40);
            (await import('node:fs')).writeFileSync(file, text);
            await page.setInputFiles('#train-file', file);
            await page.waitForFunction(() => /my-notes\.txt/.test(document.querySelector('#train-file-status').textContent));
            assert.equal(await page.inputValue('#train-corpus'), 'text');
            assert.equal(await page.inputValue('#train-text'), text);
            await setValue(page, '#train-tokens', 2048);
            await setValue(page, '#train-batch', 256);
            await setValue(page, '#train-expansion', 2);
            // Matryoshka BatchTopK, saved for inference as JumpReLU (as SAELens saves it).
            await setValue(page, '#train-arch', 'matryoshka_batchtopk');
            await page.click('#train-start');
            await page.waitForFunction(() => /Done|Stopped/.test(document.querySelector('#train-status').textContent), null, { timeout: ACTION_TIMEOUT_MS });
            assert.match(await page.textContent('#train-status'), /Done/, await errorText(page));
            assert.match(page.url(), /corpus:text/, 'the recipe says it trained on a text');
            assert.match(page.url(), /matryoshka_batchtopk/, 'the recipe names the architecture');
            assert.equal(await errorText(page), '');
          });
        } finally {
          await opened.close();
        }
      });
    }
  });
}
