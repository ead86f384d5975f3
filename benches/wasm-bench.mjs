#!/usr/bin/env node
// MB/s of check and transform through the WebAssembly build (pkg/) in Node,
// against PapaParse's parse-only speed and DuckDB-wasm doing transform's
// work in SQL (benches/peers/transform.sql) in the same runtime, and the
// native CLI, on the 100 MB generated export (see wasm-bench-common.mjs).
// Usage: node benches/wasm-bench.mjs   (BENCH_RUNS=5, BENCH_FILE=..., CAFE_ETL_BIN=...,
//        BENCH_DUCKDB=0 leaves DuckDB-wasm out)
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import Papa from 'papaparse';
import {
  benchFile, duckdbStatements, measure, nativeMBps, print, root, RUNS, TABLES,
} from './wasm-bench-common.mjs';

const api = await import(path.join(root, 'pkg', 'cafe_etl.js'));
api.initSync({ module: readFileSync(path.join(root, 'pkg', 'cafe_etl_bg.wasm')) });
const file = benchFile();
const bytes = readFileSync(file);
const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);

// DuckDB-wasm's blocking API: the database on this thread, as our module
// runs here; its files loaded from node_modules.
let duck = null;
let duckdbVersion = '';
if (process.env.BENCH_DUCKDB !== '0') {
  const require = createRequire(import.meta.url);
  const duckdb = require('@duckdb/duckdb-wasm/blocking');
  const dist = path.dirname(require.resolve('@duckdb/duckdb-wasm'));
  const db = await duckdb.createDuckDB({
    mvp: { mainModule: path.join(dist, 'duckdb-mvp.wasm'), mainWorker: path.join(dist, 'duckdb-node-mvp.worker.cjs') },
    eh: { mainModule: path.join(dist, 'duckdb-eh.wasm'), mainWorker: path.join(dist, 'duckdb-node-eh.worker.cjs') },
  }, new duckdb.VoidLogger(), duckdb.NODE_RUNTIME);
  await db.instantiate();
  db.registerFileBuffer('bench.csv', view);
  duckdbVersion = db.getVersion();
  const dir = mkdtempSync(path.join(tmpdir(), 'cafe-bench-duckdb-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  duck = {
    db,
    statements: duckdbStatements('bench.csv'),
    tables: TABLES,
    open: (name) => path.join(dir, name),
    close: (file) => { const n = statSync(file).size; rmSync(file); return n; },
  };
}

const r = await measure(api, view, Papa, RUNS, duck);
r.duckdbVersion = duckdbVersion;
print(`Node ${process.version}`, r, process.env.BENCH_NATIVE === '0' ? null : nativeMBps(file));
