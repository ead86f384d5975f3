// Shared by benches/wasm-bench.mjs (Node) and benches/wasm-bench-browser.mjs
// (headless Chromium): the input file and the measurement itself.
//
// The input is the same 100 MB generated export as the native benchmark:
//   cafe-etl generate --stores 20 --days 56 --seed 42 --transactions-per-day 600 \
//     --single bench-100mb.csv --out test-output/bench
// (56 days of 20 stores at ~600 sales a day come to 100.3 MB.)

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const GENERATE = ['--stores', '20', '--days', '56', '--seed', '42', '--transactions-per-day', '600'];
export const RUNS = Number(process.env.BENCH_RUNS || 3);

export function cli() {
  const bin = process.env.CAFE_ETL_BIN
    || path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'release', 'cafe-etl');
  if (!existsSync(bin)) throw new Error(`no native CLI at ${bin}: cargo build --release (or set CAFE_ETL_BIN)`);
  return bin;
}

/** The benchmark file, generated once (BENCH_FILE overrides it). */
export function benchFile() {
  if (process.env.BENCH_FILE) return process.env.BENCH_FILE;
  const dir = path.join(root, 'test-output', 'bench');
  const file = path.join(dir, 'bench-100mb.csv');
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    execFileSync(cli(), ['generate', ...GENERATE, '--single', 'bench-100mb.csv', '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return file;
}

/** The native CLI on the same file (whole process, file in the page cache), median of RUNS. */
export function nativeMBps(file) {
  const mb = statSync(file).size / 1e6;
  const time = (args) => {
    const t = [];
    for (let i = 0; i < RUNS; i += 1) {
      const out = mkdtempSync(path.join(tmpdir(), 'cafe-bench-'));
      const t0 = process.hrtime.bigint();
      const r = spawnSync(cli(), args(out), { stdio: 'ignore' });
      t.push(Number(process.hrtime.bigint() - t0) / 1e9);
      rmSync(out, { recursive: true, force: true });
      if (r.status !== 0 && r.status !== 1) throw new Error(`cafe-etl ${args(out).join(' ')}: exit ${r.status}`);
    }
    return mb / median(t);
  };
  return {
    check: time(() => ['check', file]),
    transform: time((out) => ['transform', '--jobs', '1', '--out', out, file]),
  };
}

/**
 * The DuckDB peer's SQL (benches/peers/transform.sql, shared with the native
 * peer), as single statements for DuckDB-wasm: comments dropped, split at
 * the semicolons that end a line, the input named `inputName`.
 */
export function duckdbStatements(inputName) {
  const text = readFileSync(path.join(root, 'benches', 'peers', 'transform.sql'), 'utf8')
    .split('\n').filter((l) => !l.trimStart().startsWith('--')).join('\n')
    .replaceAll('@INPUT@', `'${inputName}'`);
  return text.split(/;\s*\n/).map((s) => s.trim().replace(/;$/, '')).filter(Boolean);
}

/** The four tables the peer writes, as `transform` stages them. */
export const TABLES = ['stores', 'products', 'transactions', 'basket_items'];

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * The measurement, self-contained so that it can run in Node and be sent to
 * a page as source. `api` is the wasm module (Pipeline, check, transform,
 * batchId); `Papa` is PapaParse; `duck` (optional) is DuckDB-wasm:
 * `db` its database (the blocking API in Node, the Web Worker one in the
 * page: every call is awaited, so either serves) with the file registered
 * under the name `statements` (from duckdbStatements()) read, `tables`,
 * and `open(name)` / `close(name)` that give the path a table is written to
 * and take its bytes back (resolving to their count). Returns MB/s
 * (1 MB = 10^6 bytes), medians.
 */
export async function measure(api, bytes, Papa, runs, duck) {
  const now = () => performance.now();
  const mb = bytes.length / 1e6;
  const CHUNK = 1 << 20;
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const source = 'bench-100mb.csv';
  const id = api.batchId(bytes);
  const text = new TextDecoder().decode(bytes);
  const out = { rows: 0, papaRows: 0, mb };
  const cases = {
    // Streaming, as the page's worker and the edge worker run it: 1 MiB chunks.
    check() {
      const p = new api.Pipeline({ source });
      for (let i = 0; i < bytes.length; i += CHUNK) p.push(bytes.subarray(i, i + CHUNK));
      out.rows = p.finish().report.rows_read;
      p.free();
    },
    // The same without the batch id's SHA-256 (what a caller that hashes
    // only what it uploads pays): WebAssembly has no SHA instructions.
    checkNoHash() {
      const p = new api.Pipeline({ source, skipBatchId: true });
      for (let i = 0; i < bytes.length; i += CHUNK) p.push(bytes.subarray(i, i + CHUNK));
      p.finish();
      p.free();
    },
    transform() {
      const p = new api.Pipeline({ source, batchId: id });
      for (let i = 0; i < bytes.length; i += CHUNK) {
        p.push(bytes.subarray(i, i + CHUNK));
        p.drain();
      }
      p.finish();
      p.free();
    },
    // One-shot helpers on the whole buffer.
    checkOneShot() { api.check(bytes, { source }); },
    transformOneShot() { api.transform(bytes, { source }); },
    // PapaParse, parse only: rows of strings from the text (decoding the
    // bytes to a string is not counted: its best case), both its ways.
    papaAll() { out.papaRows = Papa.parse(text, { delimiter: ',', newline: '\n' }).data.length; },
    papaStep() {
      let n = 0;
      Papa.parse(text, { delimiter: ',', newline: '\n', step: () => { n += 1; } });
    },
  };
  if (duck) {
    // DuckDB-wasm doing transform's work in SQL (benches/peers/transform.sql:
    // read, validate, split baskets, the four tables as gzip CSV), the file
    // already in its memory (registered once, not timed: its best case), the
    // tables written to files and taken back (in the page: in-memory files
    // copied out, as transform's drain hands its bytes out; in Node: files
    // in the temporary directory, NODE_RUNTIME's way). One thread: the
    // default WebAssembly build.
    cases.duckdb = async () => {
      const conn = await duck.db.connect();
      for (const sql of duck.statements) await conn.query(sql);
      let staged = 0;
      for (const table of duck.tables) {
        const name = await duck.open(`${table}.csv.gz`);
        await conn.query(`COPY (SELECT * EXCLUDE (part) FROM out_${table}) TO '${name}' (FORMAT csv, HEADER false, COMPRESSION gzip)`);
        staged += await duck.close(name);
      }
      const count = async (q) => Number((await conn.query(q)).getChildAt(0).get(0));
      out.duckdbRows = await count('SELECT count(*) FROM raw');
      out.duckdbRejected = await count('SELECT count(*) FROM rejected');
      out.duckdbStagedMB = staged / 1e6;
      await conn.close();
    };
  }
  const times = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (const fn of Object.values(cases)) await fn(); // warm-up: JIT, wasm tier-up, memory growth
  // Interleaved rounds, so that load from elsewhere on the machine falls on
  // every case alike and the ratios stay fair.
  for (let r = 0; r < runs; r += 1) {
    for (const [k, fn] of Object.entries(cases)) {
      const t0 = now();
      await fn();
      times[k].push((now() - t0) / 1000);
    }
  }
  for (const k of Object.keys(cases)) out[k] = mb / med(times[k]);
  out.papaparse = Math.max(out.papaAll, out.papaStep);
  out.papaparseWay = out.papaAll >= out.papaStep ? 'whole string to rows' : 'row by row, step';
  return out;
}

export function print(runtime, r, native) {
  const f = (x) => x.toFixed(1).padStart(7);
  const lines = [
    `${runtime}: ${r.mb.toFixed(1)} MB, ${r.rows} rows (PapaParse saw ${r.papaRows} lines), median of ${RUNS} runs, MB/s`,
    `  wasm check     (Pipeline, 1 MiB chunks) ${f(r.check)}   one-shot check()     ${f(r.checkOneShot)}`,
    `  wasm check without batch id's SHA-256   ${f(r.checkNoHash)}`,
    `  wasm transform (Pipeline + drain)       ${f(r.transform)}   one-shot transform() ${f(r.transformOneShot)}`,
    `  PapaParse parse only (${r.papaparseWay}) ${f(r.papaparse)}`,
    `  ratios: wasm check / PapaParse ${(r.check / r.papaparse).toFixed(2)}x (without SHA-256 ${(r.checkNoHash / r.papaparse).toFixed(2)}x), wasm transform / PapaParse ${(r.transform / r.papaparse).toFixed(2)}x (target >= 2x)`,
  ];
  if (r.duckdb) {
    lines.push(`  DuckDB-wasm ${r.duckdbVersion || ''} transform in SQL (4 gzip tables) ${f(r.duckdb)}   ${r.duckdbRows} rows, ${r.duckdbRejected} rejected, staged ${r.duckdbStagedMB.toFixed(1)} MB`);
    lines.push(`  ratios: wasm transform / DuckDB-wasm ${(r.transform / r.duckdb).toFixed(2)}x, wasm check / DuckDB-wasm ${(r.check / r.duckdb).toFixed(2)}x`);
  }
  if (native) {
    lines.push(`  native CLI (whole process, 1 job)       check ${f(native.check)}   transform ${f(native.transform)}`);
    lines.push(`  ratios: wasm / native check ${(r.check / native.check).toFixed(2)}, transform ${(r.transform / native.transform).toFixed(2)} (target >= 0.67)`);
  }
  console.log(lines.join('\n'));
}
