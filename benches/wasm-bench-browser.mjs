#!/usr/bin/env node
// The same measurement as benches/wasm-bench.mjs, in headless Debian
// Chromium driven by playwright-core, in a bench page served from
// 127.0.0.1 by this script (benchServer below): it imports pkg/ as the page
// does, PapaParse and DuckDB-wasm (its Web Worker, its wasm, apache-arrow
// through an import map) from node_modules; no CDN. The 100 MB file is
// handed over through a file input. Also times the page's own path
// (scripts/serve-www): drop the file, File.stream() into the Pipeline in the
// Web Worker, until the report is drawn.
// Usage: node benches/wasm-bench-browser.mjs   (BENCH_RUNS, BENCH_FILE, CAFE_ETL_BIN, CHROMIUM,
//        BENCH_DUCKDB=0 leaves DuckDB-wasm out)
import { createReadStream, existsSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { launchBrowser, startServer } from '../tests/e2e/helpers.mjs';
import {
  benchFile, duckdbStatements, measure, nativeMBps, print, root, RUNS, TABLES,
} from './wasm-bench-common.mjs';

/**
 * A static server on 127.0.0.1 for the bench page: `/` the page (an import
 * map for DuckDB-wasm's bare imports of apache-arrow and its own), `/pkg/`
 * the WebAssembly build, `/node_modules/` the packages the page loads.
 */
function benchServer() {
  const page = `<!doctype html><meta charset="utf-8"><title>cafe-etl bench</title>
<script type="importmap">${JSON.stringify({
    imports: {
      'apache-arrow': '/node_modules/apache-arrow/Arrow.dom.mjs',
      tslib: '/node_modules/tslib/tslib.es6.mjs',
      flatbuffers: '/node_modules/flatbuffers/mjs/flatbuffers.js',
    },
  })}</script>
<script src="/node_modules/papaparse/papaparse.min.js"></script>
<input type="file" id="bench-file">`;
  const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.map': 'application/json' };
  const server = http.createServer((req, res) => {
    const url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      return;
    }
    const file = path.join(root, path.normalize(url));
    const allowed = ['pkg', 'node_modules'].some((d) => file.startsWith(path.join(root, d) + path.sep));
    if (!allowed || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({
      url: `http://127.0.0.1:${server.address().port}/`,
      stop: () => new Promise((r) => server.close(r)),
    }));
  });
}

const file = benchFile();
const server = await startServer();
const bench = await benchServer();
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

  // The measurement, on the bytes in memory, in the bench page.
  await page.goto(bench.url);
  await page.setInputFiles('#bench-file', file);
  const r = await page.evaluate(async ({ src, runs, statements, tables, withDuckdb }) => {
    const api = await import('/pkg/cafe_etl.js');
    await api.default();
    const bytes = new Uint8Array(await document.getElementById('bench-file').files[0].arrayBuffer());
    let duck = null;
    let duckdbVersion = '';
    if (withDuckdb) {
      // DuckDB-wasm as its documentation sets it up: the database in its
      // own Web Worker (the exception-handling build), the page awaiting it.
      const duckdb = await import('/node_modules/@duckdb/duckdb-wasm/dist/duckdb-browser.mjs');
      const dist = '/node_modules/@duckdb/duckdb-wasm/dist';
      const worker = new Worker(`${dist}/duckdb-browser-eh.worker.js`);
      const db = new duckdb.AsyncDuckDB(new duckdb.VoidLogger(), worker);
      await db.instantiate(`${dist}/duckdb-eh.wasm`);
      // A copy: the buffer is handed over to the worker.
      await db.registerFileBuffer('bench.csv', bytes.slice());
      duckdbVersion = await db.getVersion();
      duck = {
        db,
        statements,
        tables,
        open: async (name) => { await db.registerEmptyFileBuffer(name); return name; },
        close: async (name) => {
          const n = (await db.copyFileToBuffer(name)).length;
          await db.dropFile(name);
          return n;
        },
      };
    }
    // eslint-disable-next-line no-new-func
    const measureIn = new Function(`return (${src})`)();
    const out = await measureIn(api, bytes, window.Papa, runs, duck);
    out.duckdbVersion = duckdbVersion;
    return out;
  }, {
    src: measure.toString(),
    runs: RUNS,
    statements: duckdbStatements('bench.csv'),
    tables: TABLES,
    withDuckdb: process.env.BENCH_DUCKDB !== '0',
  });
  const version = await browser.context.browser()?.version() ?? 'Chromium';
  print(`Headless Chromium ${version}`, r, process.env.BENCH_NATIVE === '0' ? null : nativeMBps(file));
  console.log(`  the page end to end (drop -> File.stream() -> Pipeline in the Web Worker -> report drawn): ${pageMBps.toFixed(1)} MB/s`);
} finally {
  await browser.close();
  await server.stop();
  await bench.stop();
}
