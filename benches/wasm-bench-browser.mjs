#!/usr/bin/env node
// The same measurement as benches/wasm-bench.mjs, in headless Debian
// Chromium driven by playwright-core: the page's origin (scripts/serve-www)
// imports pkg/ as the page does, PapaParse is loaded into the same page, the
// 100 MB file is handed over through a file input. Also times the page's
// own path: drop the file, File.stream() into the Pipeline in the Web
// Worker, until the report is drawn.
// Usage: node benches/wasm-bench-browser.mjs   (BENCH_RUNS, BENCH_FILE, CAFE_ETL_BIN, CHROMIUM)
import { statSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, startServer } from '../tests/e2e/helpers.mjs';
import { benchFile, measure, nativeMBps, print, root, RUNS } from './wasm-bench-common.mjs';

const file = benchFile();
const server = await startServer();
const browser = await launchBrowser();
try {
  const page = await browser.context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(server.url);
  await page.waitForFunction(() => document.documentElement.dataset.engine, null, { timeout: 30_000 });

  // The page's own path, end to end (reading included): from the file
  // input's change event to the card turning 'done', timed in the page.
  await page.evaluate(() => {
    document.querySelector('[data-testid="file-input"]').addEventListener('change', () => {
      window.benchStart = performance.now();
    }, { capture: true, once: true });
    new MutationObserver(() => {
      if (!window.benchEnd && document.querySelector('[data-testid="file-card"][data-phase="done"]')) window.benchEnd = performance.now();
    }).observe(document.body, { subtree: true, attributes: true, attributeFilter: ['data-phase'] });
  });
  await page.setInputFiles('[data-testid="file-input"]', file);
  await page.locator('[data-testid="file-card"][data-phase="done"]').waitFor({ timeout: 600_000 });
  const seconds = await page.evaluate(() => (window.benchEnd - window.benchStart) / 1000);
  const pageMBps = statSync(file).size / 1e6 / seconds;
  await page.reload();

  // The measurement, on the bytes in memory.
  await page.addScriptTag({ path: path.join(root, 'node_modules', 'papaparse', 'papaparse.min.js') });
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'bench-file';
    document.body.append(input);
  });
  await page.setInputFiles('#bench-file', file);
  const r = await page.evaluate(async ({ src, runs }) => {
    const api = await import('./pkg/cafe_etl.js');
    await api.default();
    const bytes = new Uint8Array(await document.getElementById('bench-file').files[0].arrayBuffer());
    // eslint-disable-next-line no-new-func
    const measureIn = new Function(`return (${src})`)();
    return measureIn(api, bytes, window.Papa, runs);
  }, { src: measure.toString(), runs: RUNS });
  const version = await browser.context.browser()?.version() ?? 'Chromium';
  print(`Headless Chromium ${version}`, r, process.env.BENCH_NATIVE === '0' ? null : nativeMBps(file));
  console.log(`  the page end to end (drop -> File.stream() -> Pipeline in the Web Worker -> report drawn): ${pageMBps.toFixed(1)} MB/s`);
} finally {
  await browser.close();
  await server.stop();
}
