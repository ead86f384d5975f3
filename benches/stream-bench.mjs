#!/usr/bin/env node
// What the one stream reader in the binding costs: MB/s of `check` and of
// staging (with a drain per chunk, as the edge worker) on the 100 MB
// generated export read from a ReadableStream, through the core's
// `Pipeline.pushStream` against a chunk loop written in JavaScript (the
// page's former `eachChunk`, the edge worker's former `for await` loop),
// interleaved run by run, medians; and the process's peak memory.
// Usage: node benches/stream-bench.mjs   (BENCH_RUNS=5, BENCH_FILE=...,
//        BENCH_CHUNK=65536: the stream's chunk size; Chromium reads a file
//        on disk in 64 KiB chunks, the edge worker pushes 256 KiB)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { benchFile, median, root } from './wasm-bench-common.mjs';

const api = await import(path.join(root, 'pkg', 'cafe_etl.js'));
api.initSync({ module: readFileSync(path.join(root, 'pkg', 'cafe_etl_bg.wasm')) });
const bytes = new Uint8Array(readFileSync(benchFile()));
const runs = Number(process.env.BENCH_RUNS || 5);
const CHUNK = Number(process.env.BENCH_CHUNK || 65536);
const source = 'bench-100mb.csv';
const id = api.batchId(bytes);
const mb = bytes.length / 1e6;

/** The file as a stream of CHUNK-byte views, one chunk per pull. */
function stream() {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) c.close();
      else c.enqueue(bytes.subarray(at, (at += CHUNK)));
    },
  }, { highWaterMark: 0 });
}

/** The page's progress: posted at most every 100 ms (here: counted). */
function throttled() {
  let last = 0;
  let posts = 0;
  return {
    tick() {
      const now = performance.now();
      if (now - last >= 100) {
        last = now;
        posts += 1;
      }
    },
    get posts() { return posts; },
  };
}

let peak = 0;
const sample = () => { peak = Math.max(peak, process.memoryUsage().rss); };

const cases = {
  async checkLoop() {
    const p = new api.Pipeline({ source });
    const progress = throttled();
    const reader = stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      p.push(value);
      progress.tick(p.rowsRead);
    }
    const rows = p.finish().report.rows_read;
    p.free();
    return rows;
  },
  async checkPushStream() {
    const p = new api.Pipeline({ source });
    const progress = throttled();
    await p.pushStream(stream(), { progressEveryBytes: 0, onProgress: () => progress.tick() });
    const rows = p.finish().report.rows_read;
    p.free();
    return rows;
  },
  async stageLoop() {
    const p = new api.Pipeline({ source, batchId: id });
    let out = 0;
    const forward = async (files) => { for (const b of Object.values(files)) out += b.length; };
    for await (const chunk of stream()) {
      p.push(chunk);
      await forward(p.drain());
    }
    const rows = p.finish().report.rows_read;
    p.free();
    return rows + (out > 0 ? 0 : NaN);
  },
  async stagePushStream() {
    const p = new api.Pipeline({ source, batchId: id });
    let out = 0;
    await p.pushStream(stream(), {
      onDrain: async (files) => { for (const b of Object.values(files)) out += b.length; },
    });
    const rows = p.finish().report.rows_read;
    p.free();
    return rows + (out > 0 ? 0 : NaN);
  },
};

const times = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
const rows = {};
for (let i = 0; i < runs; i += 1) {
  // Interleaved, the order flipped every run: a loaded machine's drift
  // falls on both sides alike.
  const names = Object.keys(cases);
  for (const name of i % 2 ? names.reverse() : names) {
    const t0 = performance.now();
    rows[name] = await cases[name]();
    times[name].push((performance.now() - t0) / 1000);
    sample();
  }
}
const rate = (name) => mb / median(times[name]);
const same = new Set(Object.values(rows));
if (same.size !== 1 || !(Object.values(rows)[0] > 0)) throw new Error(`the cases read different rows: ${JSON.stringify(rows)}`);
console.log(`Node ${process.version}, ${mb.toFixed(1)} MB, ${Object.values(rows)[0]} rows, ${CHUNK}-byte chunks, median of ${runs} interleaved runs`);
for (const [loop, binding, what] of [['checkLoop', 'checkPushStream', 'check'], ['stageLoop', 'stagePushStream', 'stage + drain']]) {
  console.log(`${what.padEnd(14)} JS loop ${rate(loop).toFixed(1)} MB/s   pushStream ${rate(binding).toFixed(1)} MB/s   ratio ${(rate(binding) / rate(loop)).toFixed(3)}`);
}
console.log(`peak RSS ${(peak / 1e6).toFixed(0)} MB`);
