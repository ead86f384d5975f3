// S3 failures between the worker (on workerd) and the real S3 server, injected by a
// proxy of our own: 5xx, timeouts, dropped and refused connections, flapping, and
// failures in the middle of a multipart upload. Retries are bounded (short budgets
// here), the answer is 502 when S3 stays down, and no marker is ever written then.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { assertLargeSameAsCli, batchIdOf, cliGenerate, cliTransform, gzDigest, startStack, upload } from './harness.js';
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

/** The batch's objects of the staging layout (tables and marker; not its index entries). */
async function keysOf(id) {
  return (await stack.s3.client.keys(stack.prefix)).filter((k) => k.includes(id) && !k.startsWith(`${stack.prefix}index/`));
}

const isMarkerPut = (req) => req.method === 'PUT' && req.url.includes('/batches/');

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

  test('S3 failing on the marker after the tables: 502 naming no key, no marker, the tables stay; the next upload commits', async () => {
    const f = await freshFile();
    stack.proxy.failNext(Infinity, ['503', 'drop'], isMarkerPut);
    const r = await upload(stack.url, f.token, f.name, f.bytes);
    stack.proxy.set('pass');
    assert.equal(r.status, 502, r.text);
    assert.match(r.body.message, /the batch marker/);
    for (const named of [stack.s3.bucket, stack.prefix, 'batches/', f.id + '.']) {
      assert.ok(!r.text.includes(named), `the error body names ${named}: ${r.text}`);
    }
    assert.match(lastLog().error, /batches\//, 'the log line names the key');
    // Content-addressed: the committed tables are what any upload of this file writes.
    const tables = batchKeys(stack.prefix, f.id).slice(0, -1);
    assert.deepEqual(await keysOf(f.id), [...tables].sort(), 'the tables stay, without a marker (invisible to the loader)');
    const again = await upload(stack.url, f.token, f.name, f.bytes);
    assert.equal(again.status, 200, again.text);
    await assertLargeSameAsCli(assert, stack, f.file, f.id);
  });

  test('a table object S3 acknowledged but lost: the HEAD before the marker finds it missing, 502, no marker', async () => {
    const f = await freshFile();
    stack.proxy.failNext(1, ['swallow'], (req) => req.method === 'PUT' && req.url.includes('/products/'));
    const r = await upload(stack.url, f.token, f.name, f.bytes);
    assert.equal(r.status, 502, r.text);
    assert.match(r.body.message, /checking the products table file: the object is missing after its commit/);
    assert.ok(!r.text.includes(stack.prefix), r.text);
    assert.equal(await stack.s3.client.get(`${stack.prefix}batches/${f.id}.json`), null, 'no marker over a missing table');
    const again = await upload(stack.url, f.token, f.name, f.bytes);
    assert.equal(again.status, 200, again.text);
    await assertLargeSameAsCli(assert, stack, f.file, f.id);
  });
});

describe('lost answers and races at commit', () => {
  test('a marker PUT that times out but lands: the retry finds it (If-None-Match) and the upload is staged', async () => {
    const f = await freshFile();
    stack.proxy.failNext(1, ['land-then-hang'], isMarkerPut);
    const r = await upload(stack.url, f.token, f.name, f.bytes);
    stack.proxy.set('pass');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.duplicate, false);
    const log = lastLog();
    assert.equal(log.outcome, 'staged');
    assert.equal(log.marker, 'present', 'the retried conditional PUT found the marker the first attempt wrote');
    assert.deepEqual(await keysOf(f.id), batchKeys(stack.prefix, f.id).sort());
    await assertLargeSameAsCli(assert, stack, f.file, f.id);
  });

  test('two identical uploads racing, one failing at its marker: the other commits a whole batch', async () => {
    const f = await freshFile();
    // The same bytes under two names, so the two markers (whose report names the
    // source) differ and the proxy can tell the uploads apart by the payload hash.
    // The first marker PUT's upload (A) fails for good; the other's (B) first marker
    // PUT hangs past A's failure, so B commits after A gave up.
    let a = null;
    const hash = (req) => req.headers['x-amz-content-sha256'];
    stack.proxy.failNext(Infinity, ['503'], (req) => isMarkerPut(req) && (a ??= hash(req)) === hash(req));
    stack.proxy.failNext(1, ['hang'], isMarkerPut);
    const [ra, rb] = await Promise.all([
      upload(stack.url, f.token, f.name, f.bytes),
      upload(stack.url, f.token, `copy-of-${f.name}`, f.bytes),
    ]);
    stack.proxy.set('pass');
    assert.deepEqual([ra.status, rb.status].sort(), [200, 502], `${ra.text}\n${rb.text}`);
    const [winner, name] = ra.status === 200 ? [ra, f.name] : [rb, `copy-of-${f.name}`];
    assert.deepEqual(await keysOf(f.id), batchKeys(stack.prefix, f.id).sort(), 'all five tables under the marker');
    const marker = JSON.parse(Buffer.from(await stack.s3.client.get(`${stack.prefix}batches/${f.id}.json`)).toString('utf8'));
    assert.equal(marker.source, name, "the marker is the winner's");
    assert.deepEqual(marker, winner.body.report);
    // The tables are whole: row for row what the CLI stages from the same bytes.
    const out = cliTransform(f.file, stack.customerKeySecret);
    for (const t of ['stores', 'products', 'transactions', 'basket_items', 'rejects']) {
      const staged = await stack.s3.client.get(`${stack.prefix}${t}/${f.id}.csv.gz`);
      assert.ok(staged, `${t} is there`);
      assert.deepEqual(await gzDigest(staged), await gzDigest(path.join(out, t, `${f.id}.csv.gz`)), t);
    }
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

  test('a completion whose answer is lost: the retry meets NoSuchUpload, a HEAD finds the object, the batch is staged', async () => {
    const bytes = Buffer.concat([fs.readFileSync(big), Buffer.from('\n\n\n')]);
    const id = await batchIdOf(bytes);
    const token = await mintToken(stack.uploadSecret, 'chesterfield', Math.floor(Date.now() / 1000) + 3600);
    stack.proxy.failNext(1, ['drop-mid-answer'], (req) => req.method === 'POST' && req.url.includes('uploadId='));
    const r = await upload(stack.url, token, 'chesterfield_big.csv', bytes);
    const rules = stack.proxy.rules;
    stack.proxy.set('pass');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(rules.map((rule) => rule.left), [0], 'the completion answer was dropped');
    assert.equal(lastLog().outcome, 'staged');
    assert.deepEqual(await keysOf(id), batchKeys(stack.prefix, id).sort());
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
    assert.match(r.body.message, /upload part 2 of the (transactions|basket_items) table file/);
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
