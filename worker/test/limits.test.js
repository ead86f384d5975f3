// Size limits, with small limits configured: 413 past MAX_UPLOAD_BYTES even without a
// Content-Length (chunked bodies are counted as they stream), and 428 when a body too
// big to buffer comes without X-Content-SHA256; X-Content-SHA256 compared in all its
// 64 digits; a stranger's body read no further than 64 KiB.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { batchIdOf, cliGenerate, earlyAnswer, startStack, waitFor } from './harness.js';
import { mintToken } from '../src/lib.js';

const MAX = 300_000;
const BUFFER = 100_000;
let stack;
let token;
let small; // under BUFFER_LIMIT_BYTES
let medium; // between BUFFER_LIMIT_BYTES and MAX_UPLOAD_BYTES
let large; // over MAX_UPLOAD_BYTES

async function send(bytes, { sha256, name = 'chesterfield_25-08-2021_09-00-00.csv', stream = false, auth = token } = {}) {
  const headers = { authorization: `Bearer ${auth}`, 'content-type': 'text/csv' };
  if (typeof sha256 === 'string') headers['x-content-sha256'] = sha256;
  else if (sha256) headers['x-content-sha256'] = createHash('sha256').update(bytes).digest('hex');
  if (!stream) headers['content-length'] = String(bytes.length);
  return earlyAnswer(`${stack.url}/v1/uploads/${name}`, headers, bytes);
}

before(async () => {
  stack = await startStack({ MAX_UPLOAD_BYTES: String(MAX), BUFFER_LIMIT_BYTES: String(BUFFER) });
  token = await mintToken(stack.uploadSecret, 'chesterfield', Math.floor(Date.now() / 1000) + 3600);
  const dir = cliGenerate(['--stores', '1', '--days', '3', '--seed', '3', '--transactions-per-day', '1000', '--single', 'chesterfield_25-08-2021_09-00-00.csv']);
  const all = fs.readFileSync(path.join(dir, 'chesterfield_25-08-2021_09-00-00.csv'));
  const cut = (n) => all.subarray(0, all.lastIndexOf(10, n) + 1);
  assert.ok(all.length > MAX + 50_000, `generated ${all.length} bytes`);
  small = cut(BUFFER - 1000);
  medium = cut(MAX - 1000);
  large = cut(MAX + 40_000);
});

after(async () => {
  await stack?.stop();
});

test('a chunked body past MAX_UPLOAD_BYTES is cut off with 413 and nothing is staged', async () => {
  for (const sha256 of [true, false]) {
    const r = await send(large, { sha256, stream: true });
    assert.equal(r.status, sha256 ? 413 : 428, JSON.stringify(r.body));
  }
  const r = await send(large, { sha256: true, stream: true });
  assert.equal(r.body.error, 'too_large');
  assert.equal(r.body.max_upload_bytes, MAX);
  const declared = await send(large, { sha256: true });
  assert.equal(declared.status, 413, 'a declared Content-Length over the limit too');
  assert.deepEqual(await stack.s3.client.keys(stack.prefix), []);
});

test('without X-Content-SHA256, a body over BUFFER_LIMIT_BYTES gets 428 telling what to send', async () => {
  for (const stream of [false, true]) {
    const r = await send(medium, { stream });
    assert.equal(r.status, 428, JSON.stringify(r.body));
    assert.equal(r.body.error, 'sha256_required');
    assert.match(r.body.message, /X-Content-SHA256/);
    assert.equal(r.body.buffer_limit_bytes, BUFFER);
  }
  assert.deepEqual(await stack.s3.client.keys(stack.prefix), []);
});

test('the same body with X-Content-SHA256 streams and is staged; a small one is staged without it', async () => {
  const r = await send(medium, { sha256: true, stream: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.batch_id, await batchIdOf(medium));
  const s = await send(small, { name: 'chesterfield_small.csv', stream: true });
  assert.equal(s.status, 200, JSON.stringify(s.body));
  assert.equal(s.body.batch_id, await batchIdOf(small));
  const layout = (await stack.s3.client.keys(stack.prefix)).filter((k) => !k.startsWith(`${stack.prefix}index/`));
  assert.equal(layout.length, 12);
});

/** The SHA-256 of `bytes` with its last hex digit changed: the batch id (first 32) still matches. */
function wrongTail(bytes) {
  const h = createHash('sha256').update(bytes).digest('hex');
  return h.slice(0, 63) + (h[63] === '0' ? '1' : '0');
}

test('X-Content-SHA256 is compared in all 64 digits: a claim matching only the batch id is 400, nothing staged', async () => {
  const fresh = medium.subarray(0, medium.lastIndexOf(10, medium.length - 5000) + 1);
  const id = await batchIdOf(fresh);
  const r = await send(fresh, { sha256: wrongTail(fresh), stream: true });
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error, 'sha256_mismatch');
  assert.deepEqual((await stack.s3.client.keys(stack.prefix)).filter((k) => k.includes(id) && !k.includes('/index/')), []);
  // A batch already staged (medium, above): the marker keeps the whole SHA-256, so a
  // claim matching only its batch id is not answered as a duplicate.
  const dup = await send(medium, { sha256: wrongTail(medium), stream: true });
  assert.equal(dup.status, 400, JSON.stringify(dup.body));
  assert.equal(dup.body.error, 'sha256_mismatch');
  const again = await send(medium, { sha256: true, stream: true });
  assert.equal(again.status, 200);
  assert.equal(again.body.duplicate, true);
});

test('an unauthenticated upload is answered 401 after reading at most 64 KiB of its body', async () => {
  // A small body is read whole: the client sees the 401.
  const small401 = await send(small.subarray(0, 20_000), { sha256: true, auth: 'not-a-token' });
  assert.equal(small401.status, 401);
  assert.equal(small401.headers['x-content-type-options'], 'nosniff');
  for (const stream of [true, false]) {
    // A larger one is cut off after 64 KiB: the client sees the 401, or (when the
    // connection is closed while it is still sending) a reset.
    const uploads = () => stack.worker.logs.filter((l) => l.event === 'upload');
    const seen = uploads().length;
    const r = await send(large.subarray(0, MAX - 1000), { sha256: true, stream, auth: 'not-a-token' }).catch((e) => ({ reset: e.code }));
    if (!r.reset) assert.equal(r.status, 401, JSON.stringify(r.body));
    else assert.match(r.reset, /ECONNRESET|EPIPE/);
    // A reset can reach the client before the worker writes its log line: wait for it.
    const log = await waitFor('the upload log line', () => uploads().length > seen && uploads().at(-1), { timeoutMs: 10_000 });
    assert.equal(log.status, 401);
    assert.ok(log.body_read <= 64 * 1024, `read ${log.body_read} bytes of a stranger's body`);
  }
});
