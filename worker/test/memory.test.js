// Memory against many large uploads at once: five concurrent 30 MB uploads to one
// workerd. At most two pipelines run at once (MAX_PIPELINES); the others wait their
// turn (holding none of their body) or get 503 with Retry-After. Every upload is
// either staged exactly once or refused with that clear status, and workerd's
// resident memory stays under 128 MB above idle (a Workers isolate's limit).
// (Throughput: benches/worker-bench.mjs; this checks a bound and reports the figure.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { batchIdOf, generatedExport, memoryOf, resetPeak, startStack, uploadFile, workerdPids } from './harness.js';
import { batchKeys, mintToken } from '../src/lib.js';

const MB = 1000 * 1000;
const MiB = 2 ** 20;
let stack;
let files;

before(async () => {
  stack = await startStack();
  files = [1, 2, 3, 4, 5].map((seed) => generatedExport(30 * MB, { seed: 100 + seed }));
});

after(async () => {
  await stack?.stop();
});

test('five concurrent 30 MB uploads: each staged once or refused 503; workerd stays under 128 MB above idle', async () => {
  const token = await mintToken(stack.uploadSecret, 'chesterfield', Math.floor(Date.now() / 1000) + 3600);
  const pids = workerdPids();
  assert.ok(pids.length > 0, 'workerd runs under this process');
  const rss = () => pids.reduce((n, p) => n + memoryOf(p).rss, 0);
  const peak = () => pids.reduce((n, p) => n + memoryOf(p).hwm, 0);
  // Idle: the worker loaded and answering, no upload in flight.
  assert.equal((await fetch(`${stack.url}/healthz`)).status, 200);
  const idle = rss();
  for (const p of pids) resetPeak(p);
  const peakBefore = peak();

  const t0 = performance.now();
  const results = await Promise.all(files.map((f) => uploadFile(stack.url, token, f)));
  const seconds = (performance.now() - t0) / 1000;
  const top = Math.max(peak(), peakBefore);
  const ids = await Promise.all(files.map((f) => batchIdOf(fs.readFileSync(f))));

  const logs = stack.worker.logs.filter((l) => l.event === 'upload');
  const staged = [];
  for (let i = 0; i < files.length; i++) {
    const r = results[i];
    if (r.status === 503) {
      assert.equal(r.body.error, 'busy', r.text);
      assert.match(r.body.message, /send the file again/);
      assert.ok(Number(r.headers['retry-after']) > 0, 'Retry-After');
      assert.equal(await stack.s3.client.get(`${stack.prefix}batches/${ids[i]}.json`), null, 'a refused upload commits nothing');
      continue;
    }
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.batch_id, ids[i]);
    assert.equal(r.body.duplicate, false);
    staged.push(i);
    // Staged exactly once: one log line says so, one index entry, and the tables hold
    // every row once.
    assert.equal(logs.filter((l) => l.batch_id === ids[i] && l.outcome === 'staged').length, 1);
    const entries = await stack.s3.client.keys(`${stack.prefix}index/stores/chesterfield/`);
    assert.equal(entries.filter((k) => k.endsWith(ids[i])).length, 1);
    const report = r.body.report;
    assert.equal(report.rows_read, report.rows_staged + report.rows_rejected);
    for (const k of batchKeys(stack.prefix, ids[i])) assert.ok(await stack.s3.client.head(k), `${k} is there`);
    const tx = gunzipSync(await stack.s3.client.get(`${stack.prefix}transactions/${ids[i]}.csv.gz`));
    let lines = 0;
    for (let at = tx.indexOf(10); at >= 0; at = tx.indexOf(10, at + 1)) lines++;
    assert.equal(lines, report.rows_staged);
  }
  assert.ok(staged.length >= 2, `${staged.length} of 5 staged`);
  // At most two pipelines at once: the other uploads waited for a turn (or were refused).
  const mine = logs.filter((l) => ids.includes(l.batch_id));
  assert.ok(mine.filter((l) => l.waited_ms === 0).length <= 2, JSON.stringify(mine.map((l) => l.waited_ms)));

  const above = top - idle;
  console.log(
    `# five concurrent 30 MB uploads: ${staged.length} staged, ${5 - staged.length} refused 503, in ${seconds.toFixed(1)} s ` +
      `(${((staged.length * 30) / seconds).toFixed(1)} MB/s staged); workerd RSS ${(idle / MiB).toFixed(0)} MiB idle, ` +
      `peak ${(top / MiB).toFixed(0)} MiB: ${(above / MiB).toFixed(0)} MiB above idle`,
  );
  assert.ok(above < 128 * MiB, `workerd peaked ${(above / MiB).toFixed(0)} MiB above idle`);
});
