// S3 failures between the worker (on workerd) and the real S3 server, injected by a
// proxy of our own: 5xx, timeouts, dropped and refused connections, flapping, and
// failures in the middle of a multipart upload. Retries are bounded (short budgets
// here), the answer is 502 when S3 stays down, and no marker is ever written then.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { assertLargeSameAsCli, batchIdOf, cliGenerate, startStack, upload } from './harness.js';
import { batchKeys, mintToken, storeSlug } from '../src/lib.js';

const BUDGET_MS = 6000;
// Generous enough for a loaded 2-core CI machine: a request that times out after S3
// did the work (e.g. CreateMultipartUpload) is retried, and its first result orphaned.
const ATTEMPT_TIMEOUT_MS = 2000;
let stack;
let files;
let next = 0;

/** A generated export not uploaded yet, with a token for its store. */
async function freshFile() {
  const file = files[next++];
  const store = storeSlug(path.basename(file).split('_')[0]);
  const token = await mintToken(stack.uploadSecret, store, Math.floor(Date.now() / 1000) + 3600);
  const bytes = fs.readFileSync(file);
  return { file, name: path.basename(file), token, bytes, id: await batchIdOf(bytes) };
}

async function keysOf(id) {
  return (await stack.s3.client.keys(stack.prefix)).filter((k) => k.includes(id));
}

const lastLog = () => stack.worker.logs.filter((l) => l.event === 'upload').at(-1);

before(async () => {
  stack = await startStack({
    S3_RETRY_ATTEMPTS: '5',
    S3_RETRY_BASE_MS: '50',
    S3_RETRY_CAP_MS: '400',
    S3_RETRY_TOTAL_MS: String(BUDGET_MS),
    S3_ATTEMPT_TIMEOUT_MS: String(ATTEMPT_TIMEOUT_MS),
  });
  const dir = cliGenerate(['--stores', '4', '--days', '5', '--seed', '11', '--transactions-per-day', '300']);
  files = fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
});

after(async () => {
  await stack?.stop();
});

describe('S3 down', () => {
  for (const [mode, what] of [
    ['503', 'answering 503'],
    ['500', 'answering 500'],
    ['drop', 'dropping connections'],
    ['drop-mid-answer', 'dropping connections mid-answer'],
    ['hang', 'never answering'],
    ['refused', 'refusing connections'],
  ]) {
    test(`S3 ${what}: 502 within the retry budget, no marker; the same upload succeeds once S3 is back`, async () => {
      const f = await freshFile();
      if (mode === 'refused') await stack.proxy.pause();
      else stack.proxy.set(mode);
      const t0 = performance.now();
      const r = await upload(stack.url, f.token, f.name, f.bytes);
      const ms = performance.now() - t0;
      if (mode === 'refused') await stack.proxy.resume();
      stack.proxy.set('pass');
      assert.equal(r.status, 502, r.text);
      assert.equal(r.body.error, 's3_error');
      assert.match(r.body.message, /nothing was committed/);
      assert.ok(ms < BUDGET_MS + 3000, `answered in ${ms.toFixed(0)} ms`);
      const log = lastLog();
      assert.equal(log.outcome, 's3_error');
      assert.ok(log.s3_retries >= 1 && log.s3_requests <= 5, JSON.stringify(log));
      if (mode === 'hang') assert.ok(ms >= ATTEMPT_TIMEOUT_MS, 'waited for at least one attempt timeout');
      assert.deepEqual(await keysOf(f.id), []);
      const again = await upload(stack.url, f.token, f.name, f.bytes);
      assert.equal(again.status, 200, again.text);
      assert.equal(again.body.duplicate, false);
      assert.equal((await keysOf(f.id)).length, 6);
    });
  }

  test('S3 failing on the marker after the tables: 502, the table objects are removed, no marker', async () => {
    const f = await freshFile();
    stack.proxy.failNext(Infinity, ['503', 'drop'], (req) => req.method === 'PUT' && req.url.includes('/batches/'));
    const r = await upload(stack.url, f.token, f.name, f.bytes);
    stack.proxy.set('pass');
    assert.equal(r.status, 502, r.text);
    assert.match(r.body.message, /batches\//);
    assert.deepEqual(await keysOf(f.id), [], 'no marker, and the committed tables deleted');
  });
});

describe('S3 flapping', () => {
  test('failures in every phase (lookup, table PUTs, marker) are retried and the batch is staged as the CLI stages it', async () => {
    const f = await freshFile();
    const retriesBefore = stack.proxy.seen.faulted;
    stack.proxy.failNext(2, ['503', 'drop'], (req) => req.method === 'GET');
    stack.proxy.failNext(2, ['500', 'drop-mid-answer'], (req) => req.method === 'PUT' && req.url.includes('/transactions/'));
    stack.proxy.failNext(1, ['hang'], (req) => req.method === 'PUT' && req.url.includes('/batches/'));
    const r = await upload(stack.url, f.token, f.name, f.bytes);
    stack.proxy.set('pass');
    assert.equal(r.status, 200, r.text);
    assert.equal(stack.proxy.seen.faulted - retriesBefore, 5, 'every injected fault was hit');
    const log = lastLog();
    assert.equal(log.outcome, 'staged');
    // Each fault cost a retry (a connection the runtime found closed may cost one more).
    assert.ok(log.s3_retries >= 5, JSON.stringify(log));
    assert.deepEqual((await keysOf(f.id)).sort(), batchKeys(stack.prefix, f.id).sort());
    await assertLargeSameAsCli(assert, stack, f.file, f.id);
  });

  test('flapping through a whole upload (every other request fails for a while) still stages it', async () => {
    const f = await freshFile();
    stack.proxy.flap(3, ['503', 'drop', '500']);
    const r = await upload(stack.url, f.token, f.name, f.bytes);
    stack.proxy.set('pass');
    assert.equal(r.status, 200, r.text);
    assert.ok(lastLog().s3_retries >= 3);
    await assertLargeSameAsCli(assert, stack, f.file, f.id);
  });
});

describe('multipart uploads under faults', () => {
  let big;
  before(() => {
    // About 40 MB: the transactions and basket_items files pass 5 MiB compressed.
    const dir = cliGenerate(['--stores', '1', '--days', '40', '--seed', '5', '--transactions-per-day', '7000', '--single', 'chesterfield_big.csv']);
    big = path.join(dir, 'chesterfield_big.csv');
  });

  test('failed part uploads, a failed start and a failed completion are retried; the files are whole', async () => {
    const bytes = fs.readFileSync(big);
    const id = await batchIdOf(bytes);
    const token = await mintToken(stack.uploadSecret, 'chesterfield', Math.floor(Date.now() / 1000) + 3600);
    stack.proxy.failNext(1, ['drop'], (req) => req.method === 'POST' && req.url.includes('?uploads'));
    stack.proxy.failNext(2, ['503', 'drop'], (req) => req.url.includes('partNumber=2'));
    stack.proxy.failNext(1, ['500'], (req) => req.method === 'POST' && req.url.includes('uploadId='));
    const r = await upload(stack.url, token, 'chesterfield_big.csv', bytes);
    const rules = stack.proxy.rules;
    stack.proxy.set('pass');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(rules.map((rule) => rule.left), [0, 0, 0], 'every injected fault was hit');
    const log = lastLog();
    assert.ok(log.multipart_tables >= 2, JSON.stringify(log));
    assert.ok(log.s3_retries >= 4, JSON.stringify(log));
    const { tables } = await assertLargeSameAsCli(assert, stack, big, id);
    assert.ok(tables.transactions.gz > 5 * 1024 * 1024 && tables.basket_items.gz > 5 * 1024 * 1024);
    assert.deepEqual(stack.s3.openUploads(), [], 'no multipart upload left open');
  });

  test('S3 failing for good mid-upload: 502, every multipart upload aborted, nothing staged', async () => {
    const bytes = Buffer.concat([fs.readFileSync(big), Buffer.from('\n')]);
    const id = await batchIdOf(bytes);
    const token = await mintToken(stack.uploadSecret, 'chesterfield', Math.floor(Date.now() / 1000) + 3600);
    stack.proxy.failNext(Infinity, ['503'], (req) => req.url.includes('partNumber=2'));
    const r = await upload(stack.url, token, 'chesterfield_big.csv', bytes);
    stack.proxy.set('pass');
    assert.equal(r.status, 502, r.text);
    assert.match(r.body.message, /upload part 2/);
    assert.deepEqual(await keysOf(id), []);
    assert.deepEqual(stack.s3.openUploads(), [], 'multipart uploads aborted');
  });

  test('a large file of another store: 403 after streaming, multipart uploads aborted, nothing staged', async () => {
    const bytes = Buffer.concat([fs.readFileSync(big), Buffer.from('\n\n')]);
    const id = await batchIdOf(bytes);
    const token = await mintToken(stack.uploadSecret, 'leeds', Math.floor(Date.now() / 1000) + 3600);
    const r = await upload(stack.url, token, 'chesterfield_big.csv', bytes);
    assert.equal(r.status, 403, r.text);
    assert.equal(r.body.error, 'wrong_store');
    assert.doesNotMatch(r.text, /chesterfield/i, 'the other store is not named');
    assert.ok(lastLog().s3_requests > 4, 'parts had gone up before the store was known');
    assert.deepEqual(await keysOf(id), []);
    assert.deepEqual(stack.s3.openUploads(), [], 'multipart uploads aborted');
  });
});
