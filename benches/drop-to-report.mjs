#!/usr/bin/env node
// Drop to report, and drop to upload, on the browser page in headless
// Chromium: the page of BEFORE_REF (default `main`, taken with `git show`
// into a temporary directory) against the page of this working tree, both
// with this tree's WebAssembly build (pkg/), so only the page differs.
//
// For a generated 10 MB and the 100 MB export (as benches/wasm-bench*.mjs),
// each page gets the file through its real file input and, timed in the page
// from the input's change event:
//   report  the card turns 'done' (the summary is drawn);
//   ready   the upload button is enabled (the script clicks it at once);
//   put     the upload's XMLHttpRequest is sent, with X-Content-SHA256 known
//           (stopped there: nothing is uploaded).
// A page that hashes when the button is pressed is "ready" with its report
// and pays the hash between the click and the send; a page that hashes
// beside the check is ready when both are done and sends at once. So `put`
// is the figure to compare for the upload, `report` for what staff see.
// Median of BENCH_RUNS (default 3) rounds; each round runs every size and
// both pages in turn on a fresh tab (interleaved: load from elsewhere on the
// machine falls on both alike). Prints ratios before / after.
// Usage: node benches/drop-to-report.mjs   (BEFORE_REF, BENCH_RUNS, CAFE_ETL_BIN, CHROMIUM)
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchBrowser } from '../tests/e2e/helpers.mjs';
import { benchFile, cli, median, root, RUNS } from './wasm-bench-common.mjs';

const BEFORE_REF = process.env.BEFORE_REF || 'main';

/** A generated export of about 10 MB (a tenth of the 100 MB one: 2 stores instead of 20), cached. */
function tenMB() {
  const dir = path.join(root, 'test-output', 'bench');
  const file = path.join(dir, 'drop-10mb.csv');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    execFileSync(cli(), ['generate', '--stores', '2', '--days', '56', '--seed', '42', '--transactions-per-day', '600',
      '--single', 'drop-10mb.csv', '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return file;
}

/** www/ of `ref` (git show) or of the working tree (ref null) into `dir`, with pkg/. */
function page(ref, dir) {
  mkdirSync(path.join(dir, 'pkg'), { recursive: true });
  const files = ref
    ? execFileSync('git', ['ls-tree', '--name-only', `${ref}:www/`], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean)
    : readdirSync(path.join(root, 'www')).filter((f) => statSync(path.join(root, 'www', f)).isFile());
  for (const f of files) {
    if (ref) writeFileSync(path.join(dir, f), execFileSync('git', ['show', `${ref}:www/${f}`], { cwd: root }));
    else copyFileSync(path.join(root, 'www', f), path.join(dir, f));
  }
  for (const f of readdirSync(path.join(root, 'pkg'))) copyFileSync(path.join(root, 'pkg', f), path.join(dir, 'pkg', f));
}

/** Serves `dir` on 127.0.0.1 (the pages under /before/ and /after/), no caching. */
function serve(dir) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json' };
  const server = http.createServer((req, res) => {
    let rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (rel.endsWith('/')) rel += 'index.html';
    const file = path.resolve(dir, `.${rel}`);
    if (!file.startsWith(dir + path.sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}`,
      stop: () => new Promise((r) => server.close(r)),
    }));
  });
}

/**
 * In the page, before its scripts: upload settings (an address nothing is
 * sent to), the clock started by the file input's change event (capture, so
 * before the page's own listener), the report and ready times from the DOM,
 * a click on the upload button as soon as it is enabled, and the time the
 * upload request is sent (and stopped there).
 */
function instrument() {
  localStorage.setItem('cafe-etl.workerUrl', 'http://127.0.0.1:9');
  localStorage.setItem('cafe-etl.token', 'bench.4102444800.0000');
  const bench = {};
  window.bench = bench;
  document.addEventListener('change', (e) => {
    if (e.target.matches && e.target.matches('[data-testid="file-input"]')) bench.start = performance.now();
  }, true);
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function sendOnce() {
    if (bench.start !== undefined && bench.put === undefined) {
      bench.put = performance.now();
      this.abort();
      return undefined;
    }
    return send.apply(this, arguments);
  };
  const observe = () => {
    const card = document.querySelector('[data-testid="file-card"]');
    if (!card || bench.start === undefined) return;
    if (bench.report === undefined && card.dataset.phase === 'done') bench.report = performance.now();
    if (card.dataset.phase === 'error') bench.error = card.querySelector('[data-role="error"]').textContent;
    const button = card.querySelector('[data-testid="upload-button"]');
    if (bench.report !== undefined && bench.ready === undefined && button && !button.disabled) {
      bench.ready = performance.now();
      button.click();
    }
  };
  new MutationObserver(observe).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-phase', 'data-hash', 'disabled'] });
}

const files = [['10 MB', tenMB()], ['100 MB', benchFile()]];
const beforeCommit = execFileSync('git', ['rev-parse', '--short', BEFORE_REF], { cwd: root, encoding: 'utf8' }).trim();
const afterCommit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
const dir = mkdtempSync(path.join(tmpdir(), 'cafe-drop-bench-'));
page(BEFORE_REF, path.join(dir, 'before'));
page(null, path.join(dir, 'after'));
const server = await serve(dir);
const browser = await launchBrowser();
const times = {};
let version = 'Chromium';
try {
  for (let r = 0; r < RUNS; r += 1) {
    for (const [size, file] of files) {
      for (const variant of ['before', 'after']) {
        const tab = await browser.context.newPage();
        tab.on('pageerror', (e) => console.error(`${variant} page error:`, e.message));
        await tab.addInitScript(instrument);
        await tab.goto(`${server.url}/${variant}/`);
        await tab.waitForFunction(() => document.documentElement.dataset.engine, null, { timeout: 60_000 });
        await tab.waitForTimeout(500); // every worker's module compiled (the second one answers nothing at load)
        await tab.setInputFiles('[data-testid="file-input"]', file);
        await tab.waitForFunction(() => window.bench.put !== undefined || window.bench.error, null, { timeout: 900_000, polling: 100 });
        const b = await tab.evaluate(() => window.bench);
        version = (await tab.evaluate(() => navigator.userAgent)).match(/HeadlessChrome\/\S+|Chrome\/\S+/)?.[0] ?? version;
        if (b.error) throw new Error(`${variant}, ${size}: ${b.error}`);
        const key = `${size} ${variant}`;
        times[key] ||= { report: [], ready: [], put: [] };
        for (const k of ['report', 'ready', 'put']) times[key][k].push((b[k] - b.start) / 1000);
        console.error(`round ${r + 1} ${key}: report ${((b.report - b.start) / 1000).toFixed(2)} s, ready ${((b.ready - b.start) / 1000).toFixed(2)} s, put ${((b.put - b.start) / 1000).toFixed(2)} s`);
        await tab.close();
      }
    }
  }
} finally {
  await browser.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}

const lines = [`${version}, the page of ${BEFORE_REF} (${beforeCommit}) before, this tree (HEAD ${afterCommit}) after, median of ${RUNS}, seconds from the file input's change:`];
for (const [size, file] of files) {
  const mb = statSync(file).size / 1e6;
  const m = (variant, k) => median(times[`${size} ${variant}`][k]);
  lines.push(`  ${size} (${mb.toFixed(1)} MB)`);
  for (const [k, what] of [['report', 'drop to report drawn'], ['ready', 'drop to upload button enabled'], ['put', 'drop to upload sent (SHA-256 known)']]) {
    const before = m('before', k);
    const after = m('after', k);
    lines.push(`    ${what.padEnd(38)} before ${before.toFixed(2).padStart(6)} s   after ${after.toFixed(2).padStart(6)} s   before/after ${(before / after).toFixed(2)}x`);
  }
}
console.log(lines.join('\n'));
