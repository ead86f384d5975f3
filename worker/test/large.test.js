// A 100 MB upload through the worker on workerd: streamed through the wasm Pipeline,
// table files sent as S3 multipart uploads while the body is still coming in, staged
// exactly as the CLI stages the same file, with the runtime's memory staying flat.
// (Throughput figures: benches/worker-bench.mjs; this only checks and reports.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  assertLargeSameAsCli,
  batchIdOf,
  generatedExport,
  memoryOf,
  startStack,
  uploadFile,
  workerdPids,
} from './harness.js';
import { mintToken } from '../src/lib.js';

const MB = 1000 * 1000;
let stack;
let file;
let small;

before(async () => {
  stack = await startStack();
  file = generatedExport(100 * MB, { seed: 1 });
  small = generatedExport(25 * MB, { seed: 2 });
});

after(async () => {
  await stack?.stop();
});

test('a 100 MB export streams through, goes up in parts, is staged as the CLI stages it, and memory stays flat', async () => {
  const size = fs.statSync(file).size;
  assert.ok(size > 99 * MB && size <= 100 * MB, `${size} bytes`);
  const token = await mintToken(stack.uploadSecret, 'chesterfield', Math.floor(Date.now() / 1000) + 3600);
  const pids = workerdPids();
  assert.ok(pids.length > 0, 'workerd runs under this process');
  const rss = () => Math.max(...pids.map((p) => memoryOf(p).rss));
  const peak = () => Math.max(...pids.map((p) => memoryOf(p).hwm));
  const MiB = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const idle = rss();

  // First a quarter of the size: the runtime's own working set (V8 heap, body buffers).
  const warm = await uploadFile(stack.url, token, small);
  assert.equal(warm.status, 200, warm.text);
  const peakSmall = peak();

  const r = await uploadFile(stack.url, token, file);
  assert.equal(r.status, 200, r.text);
  const peakLarge = peak();
  const id = await batchIdOf(fs.readFileSync(file));
  assert.equal(r.body.batch_id, id);
  assert.equal(r.body.report.bytes, size);
  const log = stack.worker.logs.filter((l) => l.event === 'upload').at(-1);
  assert.equal(log.outcome, 'staged');
  assert.equal(log.multipart_tables, 2, 'transactions and basket_items went up in parts');
  console.log(
    `# 100 MB upload: ${(size / MB / r.seconds).toFixed(1)} MB/s (${r.seconds.toFixed(1)} s); workerd RSS ${MiB(idle)} idle, ` +
      `peak ${MiB(peakSmall)} after a 25 MB upload, ${MiB(peakLarge)} after the 100 MB one`,
  );
  // Flat: four times the bytes cost next to nothing more. Were the body (or the
  // staged files) held, the peak would grow by about 75 MB or more.
  assert.ok(peakLarge - peakSmall < 48 * 2 ** 20, `the peak grew by ${MiB(peakLarge - peakSmall)}`);

  const { marker, tables } = await assertLargeSameAsCli(assert, stack, file, id);
  assert.equal(marker.rows_read, marker.rows_staged);
  assert.equal(tables.transactions.lines, marker.rows_staged);
});
