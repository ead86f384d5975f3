#!/usr/bin/env node
// CPU per MB of the worst files a hostile branch can build within the row
// limits (64 KiB or 512 fields a row, 200 items a basket, 200 bytes a product
// name or flavour), against a real-export-shaped file (`cafe-etl generate`),
// natively (the release CLI, one process, user + system CPU seconds from
// /usr/bin/time) and through WebAssembly in Node (pkg/, process.cpuUsage).
// A benchmark, not a test: it prints the figures and the ratio to the real
// export (the target is at most 3x); it fails nothing.
//
// Usage: node benches/hostile.mjs     (BENCH_MB=10 per file, BENCH_RUNS=3,
//        CAFE_ETL_BIN=target/release/cafe-etl; build pkg/ with scripts/build-wasm)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MB = Number(process.env.BENCH_MB || 10);
const RUNS = Number(process.env.BENCH_RUNS || 3);
const bin = process.env.CAFE_ETL_BIN || path.join(root, 'target', 'release', 'cafe-etl');
const dir = path.join(root, 'target', 'bench', 'hostile');
mkdirSync(dir, { recursive: true });
if (!existsSync(bin)) throw new Error(`${bin} is missing: cargo build --release`);

const pad2 = (n) => String(n).padStart(2, '0');
/** A valid timestamp for row n (one a minute over a day). */
const ts = (n) => `25/08/2021 ${pad2(Math.floor(n / 60) % 24)}:${pad2(n % 60)}`;

/** Lines from `make(n)` until the file holds `MB` megabytes. */
function build(name, make) {
  const file = path.join(dir, name);
  if (existsSync(file)) return file;
  const parts = [];
  let size = 0;
  for (let n = 0; size < MB * 1e6; n++) {
    const line = make(n) + '\n';
    parts.push(line);
    size += line.length;
  }
  writeFileSync(file, parts.join(''));
  return file;
}

// A 200-byte run of letters, distinct for each n and k.
const word = (n, k, len) => (`P${n}x${k}` + 'abcdefghij'.repeat(Math.ceil(len / 10))).slice(0, len);

const files = {
  // What a till writes: `cafe-etl generate` (menu, sizes, flavours, peak hours).
  real: (() => {
    const file = path.join(dir, 'real.csv');
    if (!existsSync(file)) {
      const days = Math.max(1, Math.round(MB / 1.1));
      const r = spawnSync(bin, ['generate', '--stores', '1', '--days', String(days), '--seed', '7', '--transactions-per-day', '7000', '--single', 'real.csv', '--out', dir]);
      if (r.status !== 0) throw new Error(`generate: ${r.stderr}`);
    }
    return file;
  })(),
  // 64 KiB rows of 200 distinct items (the most a basket may hold), names and
  // flavours of ~150 bytes: every item new to the menu, every row staged.
  wide: build('wide.csv', (n) => {
    const items = [];
    for (let k = 0; k < 200; k++) items.push(`Large ${word(n, k, 150)} - ${word(k, n, 150)} - 0.01`);
    const line = `${ts(n)},Leeds,Ann Example,"${items.join(', ')}",2.00,CARD,4111111111111111`;
    if (line.length > 65_000) throw new Error(`wide row of ${line.length} bytes`);
    return line;
  }),
  // One item a row whose name and flavour are 200 bytes (the limit), all distinct.
  long_names: build('long_names.csv', (n) => `${ts(n)},Leeds,Ann Example,Large ${word(n, 1, 200)} - ${word(n, 2, 200)} - 2.45,2.45,CASH,`),
  // The smallest valid rows: every byte is row overhead (id hashes, four tables).
  tiny_valid: build('tiny_valid.csv', (n) => `${ts(n % 1440)},A,,B - 0.${pad2(n % 100)},0.${pad2(n % 100)},CASH,`),
  // The smallest rows there are: one byte and a line end, each a rejected row
  // with its issue and reject line (refused as too_many_rejects at row 10,000:
  // reading stops there).
  tiny_junk: build('tiny_junk.csv', (n) => String.fromCharCode(97 + (n % 26))),
  // The same one-byte rows between the smallest valid rows, one after
  // every four: as many as a file may hold without being refused as
  // too_many_rejects (128 bytes of the file per rejected row at least).
  mixed_junk: build('mixed_junk.csv', (n) =>
    n % 5 < 4 ? `${ts(n % 1440)},A,,B - 0.${pad2(n % 100)},0.${pad2(n % 100)},CASH,` : String.fromCharCode(97 + (n % 26)),
  ),
  // 512 empty fields a row (the field limit): a field_count reject each.
  many_fields: build('many_fields.csv', (n) => `${ts(n)}` + ','.repeat(511)),
};

const mbOf = (file) => readFileSync(file).length / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Native CPU seconds (user + system) of one CLI run, median of RUNS. */
function nativeCpu(args) {
  const times = [];
  for (let r = 0; r < RUNS; r++) {
    rmSync(path.join(dir, 'out'), { recursive: true, force: true });
    const t = spawnSync('/usr/bin/time', ['-f', '%U %S', bin, ...args], { encoding: 'utf8' });
    if (t.status !== 0 && t.status !== 1) throw new Error(`${args.join(' ')}: ${t.stderr}`);
    const [u, s] = t.stderr.trim().split('\n').pop().split(' ').map(Number);
    times.push(u + s);
  }
  return median(times);
}

let api = null;
const wasm = path.join(root, 'pkg', 'cafe_etl_bg.wasm');
if (existsSync(wasm)) {
  api = await import(path.join(root, 'pkg', 'cafe_etl.js'));
  api.initSync({ module: readFileSync(wasm) });
} else {
  console.log('# pkg/ is missing (scripts/build-wasm): WebAssembly figures skipped');
}

/** WebAssembly CPU seconds of one streaming run (1 MiB chunks), median of RUNS. */
function wasmCpu(bytes, mode) {
  const id = api.batchId(bytes);
  const run = () => {
    const p = new api.Pipeline(mode === 'transform' ? { source: 'x.csv', batchId: id } : { source: 'x.csv' });
    for (let i = 0; i < bytes.length; i += 1 << 20) {
      p.push(bytes.subarray(i, i + (1 << 20)));
      if (mode === 'transform') p.drain();
    }
    p.finish();
    p.free();
  };
  run(); // warm-up
  const times = [];
  for (let r = 0; r < RUNS; r++) {
    const c = process.cpuUsage();
    run();
    const d = process.cpuUsage(c);
    times.push((d.user + d.system) / 1e6);
  }
  return median(times);
}

const rows = [];
for (const [name, file] of Object.entries(files)) {
  const mb = mbOf(file);
  const r = { name, mb };
  r.nativeCheck = nativeCpu(['check', file]) / mb;
  r.nativeTransform = nativeCpu(['transform', '--jobs', '1', '--out', path.join(dir, 'out'), file]) / mb;
  if (api) {
    const b = readFileSync(file);
    const bytes = new Uint8Array(b.buffer, b.byteOffset, b.length);
    r.wasmCheck = wasmCpu(bytes, 'check') / mb;
    r.wasmTransform = wasmCpu(bytes, 'transform') / mb;
  }
  rows.push(r);
}
const real = rows[0];
const cols = ['nativeCheck', 'nativeTransform', 'wasmCheck', 'wasmTransform'].filter((c) => real[c] !== undefined);
console.log(`CPU ms per MB (median of ${RUNS}), and the ratio to the real export (target: at most 3x)`);
console.log(['file'.padEnd(12), 'MB'.padStart(6), ...cols.map((c) => c.padStart(22))].join(' '));
for (const r of rows) {
  const cells = cols.map((c) => `${(r[c] * 1000).toFixed(1)} ms ${(r[c] / real[c]).toFixed(2)}x`.padStart(22));
  console.log([r.name.padEnd(12), r.mb.toFixed(1).padStart(6), ...cells].join(' '));
}
