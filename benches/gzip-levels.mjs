#!/usr/bin/env node
// The measurement behind the table files' default zlib level
// (stage::DEFAULT_GZIP_LEVEL): for each level, the staged size and the
// transform's MB/s on the real exports (../shared/data/real, 7-85 KB each)
// and on the generated 100 MB export, natively (the CLI, one job) and
// through WebAssembly in Node (pkg/, one-shot transform()). Speed is MB per
// second of CPU time (user + system), not of wall time: on a machine shared
// with other work the wall clock measures the neighbours, the CPU time much
// less so. The native CLI runs with one job, so CPU time is its time.
// Usage: node benches/gzip-levels.mjs   (BENCH_LEVELS="1 2 3 4 6 9", BENCH_RUNS=3,
//        BENCH_WASM=0 to skip WebAssembly; needs target/release and pkg/ built)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { benchFile, cli, median, root, RUNS } from './wasm-bench-common.mjs';

const LEVELS = (process.env.BENCH_LEVELS || '0 1 2 3 4 5 6 9').split(/\s+/).filter(Boolean).map(Number);
const corpusDir = path.resolve(root, process.env.BENCH_CORPUS || '../shared/data/real');

function csvFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return csvFiles(p);
    return e.name.toLowerCase().endsWith('.csv') ? [p] : [];
  }).sort();
}

function dirBytes(dir) {
  return readdirSync(dir, { withFileTypes: true }).reduce((n, e) => {
    const p = path.join(dir, e.name);
    return n + (e.isDirectory() ? dirBytes(p) : (e.name.endsWith('.csv.gz') ? statSync(p).size : 0));
  }, 0);
}

/** The native CLI at one level over `inputs`: median CPU seconds and staged gzip bytes. */
function native(inputs, level) {
  const times = [];
  let size = 0;
  for (let i = 0; i < RUNS; i += 1) {
    const out = mkdtempSync(path.join(tmpdir(), 'cafe-gzip-'));
    const timing = path.join(out, 'time.txt');
    const args = ['-o', timing, '-f', '%U %S', cli(), 'transform', '--jobs', '1', '--gzip-level', String(level), '--out', path.join(out, 'stage'), ...inputs];
    const r = spawnSync('/usr/bin/time', args, { stdio: 'ignore' });
    if (r.status !== 0 && r.status !== 1) throw new Error(`cafe-etl transform: exit ${r.status}`);
    const [user, sys] = readFileSync(timing, 'utf8').trim().split('\n').pop().split(' ').map(Number);
    times.push(user + sys);
    size = dirBytes(path.join(out, 'stage'));
    rmSync(out, { recursive: true, force: true });
  }
  return { s: median(times), size };
}

/** WebAssembly in Node at one level over in-memory files: median CPU seconds and gzip bytes. */
function wasm(api, files, level) {
  const times = [];
  let size = 0;
  for (let i = 0; i < RUNS + 1; i += 1) {
    let n = 0;
    const t0 = process.cpuUsage();
    for (const { name, bytes } of files) {
      const { files: staged } = api.transform(bytes, { source: name, gzipLevel: level });
      for (const [key, b] of Object.entries(staged)) {
        if (key.endsWith('.csv.gz')) n += b.length;
      }
    }
    const cpu = process.cpuUsage(t0);
    if (i > 0) times.push((cpu.user + cpu.system) / 1e6); // the first run warms up
    size = n;
  }
  return { s: median(times), size };
}

const corpus = csvFiles(corpusDir);
const big = benchFile();
const sets = [
  { name: `real exports (${corpus.length} files)`, inputs: corpus, mb: corpus.reduce((n, f) => n + statSync(f).size, 0) / 1e6 },
  { name: 'generated 100 MB export', inputs: [big], mb: statSync(big).size / 1e6 },
];
let api = null;
if (process.env.BENCH_WASM !== '0') {
  api = await import(path.join(root, 'pkg', 'cafe_etl.js'));
  api.initSync({ module: readFileSync(path.join(root, 'pkg', 'cafe_etl_bg.wasm')) });
}
console.log(`gzip level of the table files: staged MB and transform MB per CPU second, median of ${RUNS} runs`);
for (const set of sets) {
  console.log(`\n${set.name}, ${set.mb.toFixed(1)} MB of CSV`);
  console.log('level  staged MB  ratio   native MB/s' + (api ? '   wasm (Node) MB/s' : ''));
  const files = api ? set.inputs.map((f) => ({ name: path.basename(f), bytes: new Uint8Array(readFileSync(f)) })) : [];
  for (const level of LEVELS) {
    const n = native(set.inputs, level);
    const w = api ? wasm(api, files, level) : null;
    const line = `${String(level).padStart(5)}  ${(n.size / 1e6).toFixed(2).padStart(9)}  ${(n.size / 1e6 / set.mb).toFixed(3)}  ${(set.mb / n.s).toFixed(1).padStart(11)}`
      + (w ? `   ${(set.mb / w.s).toFixed(1).padStart(16)}${w.size === n.size ? '' : ` (wasm size ${(w.size / 1e6).toFixed(2)})`}` : '');
    console.log(line);
  }
}
