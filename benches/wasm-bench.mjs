#!/usr/bin/env node
// MB/s of check and transform through the WebAssembly build (pkg/) in Node,
// against PapaParse's parse-only speed in the same runtime and the native
// CLI, on the 100 MB generated export (see wasm-bench-common.mjs).
// Usage: node benches/wasm-bench.mjs   (BENCH_RUNS=5, BENCH_FILE=..., CAFE_ETL_BIN=...)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Papa from 'papaparse';
import { benchFile, measure, nativeMBps, print, root, RUNS } from './wasm-bench-common.mjs';

const api = await import(path.join(root, 'pkg', 'cafe_etl.js'));
api.initSync({ module: readFileSync(path.join(root, 'pkg', 'cafe_etl_bg.wasm')) });
const file = benchFile();
const bytes = readFileSync(file);
const r = await measure(api, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), Papa, RUNS);
print(`Node ${process.version}`, r, process.env.BENCH_NATIVE === '0' ? null : nativeMBps(file));
