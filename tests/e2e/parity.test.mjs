// The WebAssembly build (pkg/, as the page and the edge worker load it)
// writes the same staging layout as the native CLI, row for row, on every
// real export we have: the copies in tests/data/real/, the e2e fixtures and,
// when it sits beside the clone, the whole shared corpus ../shared/data/real/.
// gzip bytes may legitimately differ between builds (SIMD match finders), so
// the tables are compared decompressed, and the reports as JSON.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { root } from './helpers.mjs';
import { cliBinary } from './cli.mjs';
import { initSync, transform, Pipeline, batchId } from '../../pkg/cafe_etl.js';

initSync({ module: readFileSync(path.join(root, 'pkg', 'cafe_etl_bg.wasm')) });

const SECRET = 'parity-test-secret';

function csvFiles(dir, recursive) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return recursive ? csvFiles(p, true) : [];
    return name.endsWith('.csv') ? [p] : [];
  });
}

// tests/data/real/native/ holds the CLI's *output* for the wasm tests: not inputs.
const inputs = [
  ...csvFiles(path.join(root, 'tests', 'data', 'real'), false),
  ...csvFiles(path.join(root, 'tests', 'data', 'e2e'), false),
  ...csvFiles(path.join(root, '..', 'shared', 'data', 'real'), true),
];

/** Native CLI output for every input: Map<absolute input, {files: Map<path, Buffer>}> */
function nativeLayouts() {
  const byDir = new Map();
  for (const f of inputs) {
    const d = path.dirname(f);
    if (!byDir.has(d)) byDir.set(d, []);
    byDir.get(d).push(path.basename(f));
  }
  const out = mkdtempSync(path.join(tmpdir(), 'cafe-etl-parity-'));
  const reports = new Map();
  try {
    let n = 0;
    for (const [dir, names] of byDir) {
      const dest = path.join(out, String(n++));
      // Names relative to their folder: the report's `source` is what was given.
      const run = spawnSync(cliBinary(), ['transform', '--json', '--customer-key-secret-env', 'PARITY_SECRET', '--out', dest, ...names], {
        cwd: dir, env: { ...process.env, PARITY_SECRET: SECRET }, maxBuffer: 1 << 28,
      });
      const lines = run.stdout.toString().trim().split('\n').filter(Boolean);
      // Exit 1 exactly when a row was rejected or a file refused, else 0.
      const rejected = lines.some((l) => { const r = JSON.parse(l); return r.refused || r.rows_rejected > 0; });
      assert.equal(run.status, rejected ? 1 : 0, `cafe-etl transform exited ${run.status}: ${run.stderr}`);
      for (const line of lines) {
        const report = JSON.parse(line);
        const files = new Map();
        for (const table of ['stores', 'products', 'transactions', 'basket_items', 'rejects']) {
          const p = path.join(dest, table, `${report.batch_id}.csv.gz`);
          if (existsSync(p)) files.set(`${table}/${report.batch_id}.csv.gz`, gunzipSync(readFileSync(p)).toString('utf8'));
        }
        const marker = path.join(dest, 'batches', `${report.batch_id}.json`);
        reports.set(path.join(dir, report.source), { report, files, marker: existsSync(marker) ? JSON.parse(readFileSync(marker, 'utf8')) : null });
      }
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  return reports;
}

test(`wasm transform equals the native CLI on ${inputs.length} real and fixture exports`, () => {
  assert.ok(inputs.length >= 8, 'the committed copies alone are more than 8 files');
  const native = nativeLayouts();
  assert.equal(native.size, inputs.length, 'the CLI reported on every input');
  let rows = 0;
  for (const file of inputs) {
    const name = path.basename(file);
    const bytes = readFileSync(file);
    const expected = native.get(file);
    assert.ok(expected, `native output for ${file}`);
    const { report, files } = transform(bytes, { source: name, customerKeySecret: SECRET });
    assert.deepEqual(report, expected.report, `${name}: report`);
    if (report.refused) {
      assert.deepEqual(Object.keys(files), [], `${name}: a refused file stages nothing`);
      continue;
    }
    const keys = Object.keys(files);
    assert.equal(keys.at(-1), `batches/${report.batch_id}.json`, `${name}: marker last`);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(files[keys.at(-1)])), expected.marker, `${name}: marker`);
    for (const [key, text] of expected.files) {
      assert.ok(files[key], `${name}: ${key} written by wasm`);
      const mine = gunzipSync(files[key]).toString('utf8');
      assert.equal(mine, text, `${name}: ${key} rows`);
      if (key.startsWith('transactions/')) rows += mine.split('\n').filter(Boolean).length;
    }
    assert.equal(keys.length, expected.files.size + 1, `${name}: same set of files`);
  }
  assert.ok(rows > 1000, `compared ${rows} transaction rows`);
});

test('the streaming Pipeline in 4 KiB chunks with drain() gives the same files as transform()', () => {
  for (const file of inputs.slice(0, 12)) {
    const bytes = readFileSync(file);
    const source = path.basename(file);
    const whole = transform(bytes, { source });
    if (whole.report.refused) continue;
    const p = new Pipeline({ source, batchId: batchId(bytes) });
    const parts = {};
    const add = (files) => {
      for (const [k, v] of Object.entries(files)) (parts[k] ||= []).push(Buffer.from(v));
    };
    for (let i = 0; i < bytes.length; i += 4096) {
      p.push(bytes.subarray(i, i + 4096));
      if ((i / 4096) % 3 === 2) add(p.drain());
    }
    const end = p.finish();
    add(end.files);
    p.free();
    assert.deepEqual(end.report, whole.report, `${source}: report`);
    for (const [k, v] of Object.entries(whole.files)) {
      const mine = Buffer.concat(parts[k]);
      if (k.endsWith('.gz')) assert.equal(gunzipSync(mine).toString(), gunzipSync(Buffer.from(v)).toString(), `${source}: ${k}`);
      else assert.equal(mine.toString(), Buffer.from(v).toString(), `${source}: ${k}`);
    }
  }
});
