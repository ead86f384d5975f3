#!/usr/bin/env node
// Edge worker throughput and memory, on the real local stack: the worker bundle on
// workerd (Miniflare's API) staging into s3s-fs on 127.0.0.1 (no fault proxy).
//
//   MB/s per upload     a 100 MB generated export PUT with X-Content-SHA256, timed
//                       from the first byte sent to the answer (hashing not counted;
//                       multipart upload of the table files included)
//   uploads/s           20 concurrent uploads of 20 different real exports (generated
//                       ones when ../shared/data/real/ is absent), several rounds
//   peak memory         the workerd process's peak RSS (VmHWM, reset before) while the
//                       100 MB upload goes through, next to its idle RSS
//
// Needs what scripts/test-worker builds (worker/node_modules, pkg/, the release CLI).
// Usage: node benches/worker-bench.mjs [--runs 3] [--rounds 5] [--json out.json]
import fs from 'node:fs';
import path from 'node:path';
import {
  batchIdOf,
  generatedExport,
  memoryOf,
  realFiles,
  resetPeak,
  startStack,
  uploadFile,
  workerdPids,
} from '../worker/test/harness.js';
import { mintToken, storeSlug } from '../worker/src/lib.js';

process.env.CLOUDFLARE_CF_FETCH_ENABLED = 'false';
process.env.WRANGLER_SEND_METRICS = 'false';
process.env.WRANGLER_HIDE_BANNER = 'true';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const RUNS = Number(opt('--runs', 3));
const ROUNDS = Number(opt('--rounds', 5));
const MB = 1e6;
const MiB = 2 ** 20;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const stack = await startStack({}, { direct: true });
const results = { machine: { cpus: (await import('node:os')).cpus().length, node: process.version } };
try {
  const pids = workerdPids();
  const rss = () => pids.reduce((n, p) => n + memoryOf(p).rss, 0);
  const peak = () => pids.reduce((n, p) => n + memoryOf(p).hwm, 0);
  await fetch(`${stack.url}/healthz`);
  const token = async (store) => mintToken(stack.uploadSecret, store, Math.floor(Date.now() / 1000) + 3600);
  const clear = () => stack.s3.client.deleteAll(stack.prefix);

  // 1. One 100 MB upload at a time.
  const big = generatedExport(100 * MB, { seed: 42 });
  const size = fs.statSync(big).size;
  const single = [];
  let memory = null;
  for (let i = 0; i < RUNS; i++) {
    await clear();
    const idle = rss();
    const reset = pids.every(resetPeak);
    const r = await uploadFile(stack.url, await token('chesterfield'), big);
    if (r.status !== 200) throw new Error(`100 MB upload: ${r.status} ${r.text}`);
    single.push(size / MB / r.seconds);
    const p = peak();
    if (i === 0) memory = { idle_rss_mib: idle / MiB, peak_rss_mib: p / MiB, peak_reset_before_upload: reset };
    console.error(`100 MB upload ${i + 1}/${RUNS}: ${(size / MB / r.seconds).toFixed(1)} MB/s, workerd peak RSS ${(p / MiB).toFixed(0)} MiB`);
  }
  results.single_upload = {
    bytes: size,
    mb_per_s_median: median(single),
    mb_per_s_runs: single,
    multipart_tables: stack.worker.logs.filter((l) => l.outcome === 'staged').at(-1).multipart_tables,
  };
  results.memory_100mb = memory;

  // 2. 20 concurrent uploads of different files.
  let files = realFiles('current');
  let source = 'real exports from ../shared/data/real/current';
  if (files.length < 20) {
    const { cliGenerate } = await import('../worker/test/harness.js');
    const dir = cliGenerate(['--stores', '5', '--days', '4', '--seed', '9']);
    files = fs.readdirSync(dir).map((f) => path.join(dir, f));
    source = 'generated exports (no real corpus found)';
  }
  files = files.filter((_, i) => i % Math.floor(files.length / 20) === 0).slice(0, 20);
  const bodies = files.map((f) => fs.readFileSync(f));
  const storeOf = (b) => storeSlug(b.toString('utf8', 0, 200).split('\n')[0].split(',')[1]);
  const tokens = await Promise.all(bodies.map((b) => token(storeOf(b))));
  const ids = await Promise.all(bodies.map(batchIdOf));
  const { createHash } = await import('node:crypto');
  const shas = bodies.map((b) => createHash('sha256').update(b).digest('hex'));
  const rates = [];
  for (let round = 0; round < ROUNDS; round++) {
    await clear();
    const t0 = performance.now();
    const answers = await Promise.all(
      files.map((f, i) =>
        fetch(`${stack.url}/v1/uploads/${encodeURIComponent(path.basename(f))}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${tokens[i]}`, 'content-type': 'text/csv', 'x-content-sha256': shas[i] },
          body: bodies[i],
        }).then(async (r) => ({ status: r.status, body: await r.json() })),
      ),
    );
    const s = (performance.now() - t0) / 1000;
    answers.forEach((a, i) => {
      if (a.status !== 200 || a.body.duplicate || a.body.batch_id !== ids[i]) throw new Error(`${files[i]}: ${a.status}`);
    });
    rates.push(20 / s);
    console.error(`20 concurrent uploads, round ${round + 1}/${ROUNDS}: ${s.toFixed(2)} s, ${(20 / s).toFixed(1)} uploads/s`);
  }
  const totalBytes = bodies.reduce((n, b) => n + b.length, 0);
  results.concurrent = {
    source,
    files: 20,
    mean_file_bytes: Math.round(totalBytes / 20),
    uploads_per_s_median: median(rates),
    uploads_per_s_rounds: rates,
    mb_per_s_aggregate_median: (median(rates) * totalBytes) / 20 / MB,
  };
} finally {
  await stack.stop();
}

const out = opt('--json', null);
if (out) fs.writeFileSync(out, JSON.stringify(results, null, 2) + '\n');
const r = results;
console.log(`worker: ${r.single_upload.mb_per_s_median.toFixed(1)} MB/s per upload (100 MB, median of ${RUNS}, ${r.single_upload.multipart_tables} tables multipart)`);
console.log(
  `worker: ${r.concurrent.uploads_per_s_median.toFixed(1)} uploads/s with 20 concurrent (${r.concurrent.source}, ` +
    `${(r.concurrent.mean_file_bytes / 1000).toFixed(0)} kB each; ${r.concurrent.mb_per_s_aggregate_median.toFixed(1)} MB/s in all)`,
);
console.log(
  `worker: workerd peak RSS ${r.memory_100mb.peak_rss_mib.toFixed(0)} MiB on the 100 MB upload (idle ${r.memory_100mb.idle_rss_mib.toFixed(0)} MiB)`,
);
