// The upload's side of the loader's queue, on workerd with real local Queues
// (Miniflare) and a real S3 server (s3s-fs): a committed batch is announced with
// {batch_id, store, committed_at}, a repeat upload announces it again, a worker
// without the binding still stages, and with WAREHOUSE empty the consumer acks with a log
// line and the sweep enqueues nothing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { batchIdOf, realFiles, startStack, upload, waitFor, wranglerQueues } from './harness.js';
import { mintToken } from '../src/lib.js';
import { committedAt } from '../src/loader/producer.js';

const leeds = realFiles('current').find((f) => /^leeds_/.test(path.basename(f)));
const NO_FILE = leeds ? false : 'no real Leeds export (tests/data/real/ or ../shared/data/real/)';

let stack;

before(async () => {
  // WAREHOUSE stays empty (wrangler.toml's top level): the consumer logs and acks.
  stack = await startStack({}, { queues: { consumers: { 'cafe-loads': { maxBatchTimeout: 1 } } } });
});

after(async () => {
  await stack?.stop();
});

const token = () => mintToken(stack.uploadSecret, 'leeds', Math.floor(Date.now() / 1000) + 3600);

test('wrangler.toml declares the loader queue, its dead-letter queue and the cron', () => {
  const q = wranglerQueues();
  assert.deepEqual(q.queueProducers, { LOAD_QUEUE: { queueName: 'cafe-loads' }, DEAD_LETTERS: { queueName: 'cafe-loads-dlq' } });
  const c = q.queueConsumers['cafe-loads'];
  assert.equal(c.deadLetterQueue, 'cafe-loads-dlq');
  for (const k of ['maxBatchSize', 'maxBatchTimeout', 'maxRetries']) assert.ok(Number.isInteger(c[k]) && c[k] > 0, k);
  assert.deepEqual(q.crons, ['*/5 * * * *']);
  const toml = fs.readFileSync(new URL('../wrangler.toml', import.meta.url), 'utf8');
  for (const t of ['[[env.production.queues.producers]]', '[[env.production.queues.consumers]]', '[env.production.triggers]']) {
    assert.ok(toml.includes(t), `production has ${t}`);
  }
});

test('an upload announces its batch once committed, and a repeat announces it again', { skip: NO_FILE }, async () => {
  const bytes = fs.readFileSync(leeds);
  const id = await batchIdOf(bytes);
  const t0 = Date.now();
  const r = await upload(stack.url, token(), path.basename(leeds), bytes);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.duplicate, false);
  const line = stack.worker.logs.find((l) => l.event === 'upload' && l.batch_id === id);
  assert.equal(line.queued, 'sent');
  // The consumer (this worker's queue()) received it: WAREHOUSE is empty, so it acks.
  const got = await waitFor('the consumer', () => stack.worker.logs.find((l) => l.event === 'load' && l.outcome === 'no_warehouse' && l.batch_ids.includes(id)), { timeoutMs: 15_000 });
  assert.deepEqual(got.batch_ids, [id]);
  const again = await upload(stack.url, token(), path.basename(leeds), bytes);
  assert.equal(again.body.duplicate, true);
  assert.equal(stack.worker.logs.filter((l) => l.event === 'upload' && l.batch_id === id && l.queued === 'sent').length, 2);
  await waitFor('the second message', () => stack.worker.logs.filter((l) => l.event === 'load' && l.batch_ids?.includes(id)).length === 2, { timeoutMs: 15_000 });
  // The message names ids only: no row, no name reached the log lines of the loader.
  for (const l of stack.worker.logs.filter((x) => x.event === 'load')) assert.deepEqual(Object.keys(l).sort(), ['batch_ids', 'batches', 'event', 'outcome']);
  assert.ok(Date.now() - t0 < 15_000);
});

test('with WAREHOUSE empty the sweep enqueues nothing', async () => {
  await stack.worker.scheduled();
  const line = await waitFor('the sweep line', () => stack.worker.logs.find((l) => l.event === 'sweep'), { timeoutMs: 15_000 });
  assert.deepEqual([line.outcome, line.reason], ['skipped', 'no_warehouse']);
});

test('a worker without a queue binding still stages (the sweep finds the batch)', { skip: NO_FILE }, async () => {
  const w = await stack.startSibling();
  try {
    const bytes = Buffer.concat([fs.readFileSync(leeds), Buffer.from('\n')]);
    const r = await upload(w.url, token(), 'leeds-again.csv', bytes);
    assert.equal(r.status, 200, r.text);
    assert.equal(w.logs.find((l) => l.event === 'upload').queued, 'no_queue');
  } finally {
    await w.stop();
  }
});

test('committed_at of a repeat is the marker\'s Last-Modified', () => {
  const h = new Headers({ 'last-modified': 'Tue, 01 Dec 2026 20:05:03 GMT' });
  assert.equal(committedAt(h), '2026-12-01T20:05:03.000Z');
  assert.ok(Math.abs(Date.parse(committedAt(new Headers())) - Date.now()) < 5000);
});
