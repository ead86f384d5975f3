// The worker on workerd, staging into a real S3 server (s3s-fs), checked against the
// native CLI's output for the same files and the same customer-key secret.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  batchIdOf,
  cliGenerate,
  cliToken,
  cliTransform,
  earlyAnswer,
  personalData,
  readLayout,
  realDataDir,
  realFiles,
  startStack,
  storeOf,
  tmpDir,
  upload,
} from './harness.js';
import { batchKeys, mintToken, storeSlug } from '../src/lib.js';

const CORPUS = realDataDir();
const NO_CORPUS = CORPUS
  ? false
  : 'no real exports: neither ../shared/data/real/ (beside the repository) nor tests/data/real/ is there';
if (!CORPUS) console.log(`# ${NO_CORPUS}; the tests over real files are skipped`);
else console.log(`# real exports from ${CORPUS}`);

const current = realFiles('current');
const legacy = realFiles('legacy-2020');
const pick = (list, re) => list.find((f) => re.test(path.basename(f)));
const leeds = pick(current, /^leeds_28-08-2021/) ?? pick(current, /^leeds_/);
const chesterfield = pick(current, /^chesterfield_/);
const isleOfWight = pick(legacy, /^isle-of-wight_2020-10-01/) ?? legacy[0];

let stack;
const uploadsMade = []; // every upload request sent, to match the log lines
const filesSent = []; // every file body sent, to prove none of its personal data leaves

async function put(token, name, bytes, opts) {
  uploadsMade.push(name);
  filesSent.push(bytes);
  return upload(stack.url, token, name, bytes, opts);
}

async function tokenFor(store, expiresIn = 3600) {
  return mintToken(stack.uploadSecret, store, Math.floor(Date.now() / 1000) + expiresIn);
}

/** Every key the bucket holds under the staging prefix. */
const allKeys = () => stack.s3.client.keys(stack.prefix);

/**
 * The batch in S3 against `cafe-etl transform` of the same bytes with the same
 * customer-key secret: each table row for row, and the report.
 */
async function assertSameAsCli(file, name, batchId) {
  const dir = path.join(tmpDir('cmp-'), name);
  fs.copyFileSync(file, dir);
  const cli = readLayout(cliTransform(dir, stack.customerKeySecret));
  const keys = batchKeys(stack.prefix, batchId);
  for (const key of keys.slice(0, -1)) {
    const rel = key.slice(stack.prefix.length);
    assert.ok(rel in cli, `the CLI wrote ${rel}`);
    const staged = await stack.s3.client.text(key);
    assert.notEqual(staged, null, `${key} is in S3`);
    const a = staged.split('\n');
    const b = cli[rel].split('\n');
    assert.equal(a.length, b.length, `${rel}: as many rows as the CLI`);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.equal(a[i], b[i], `${rel} row ${i + 1}`);
  }
  const marker = JSON.parse(Buffer.from(await stack.s3.client.get(keys.at(-1))).toString('utf8'));
  assert.deepEqual(marker, JSON.parse(cli[`batches/${batchId}.json`]), 'the report is the CLI report');
  return { marker, cli };
}

before(async () => {
  stack = await startStack();
});

after(async () => {
  await stack?.stop();
});

test('GET /healthz answers without S3 or a token', async () => {
  const res = await fetch(`${stack.url}/healthz`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.ok, true);
  assert.equal(body.max_upload_bytes, 200_000_000);
  assert.equal(body.buffer_limit_bytes, 4 * 1024 * 1024);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
});

describe('staging real exports', { skip: NO_CORPUS }, () => {
  test('a current export streamed with X-Content-SHA256 is staged as the native CLI stages it', async () => {
    const bytes = fs.readFileSync(leeds);
    const name = path.basename(leeds);
    const id = await batchIdOf(bytes);
    const before = stack.proxy.seen.total;
    const r = await put(cliToken(stack.uploadSecret, 'Leeds'), name, bytes);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.duplicate, false);
    assert.equal(r.body.batch_id, id);
    assert.equal(r.body.store, 'leeds');
    assert.equal(r.headers.get('x-batch-id'), id);
    assert.deepEqual(r.body.keys, batchKeys(stack.prefix, id));
    assert.equal(r.body.report.rows_read, r.body.report.rows_staged);
    assert.ok(r.body.report.rows_read > 100);
    const { marker } = await assertSameAsCli(leeds, name, id);
    assert.deepEqual(r.body.report, marker, 'the answer carries the staged report');
    // The customer key is there (the worker holds the secret), 64 hex digits per row.
    const tx = (await stack.s3.client.text(`${stack.prefix}transactions/${id}.csv.gz`)).trim().split('\n');
    assert.ok(tx.every((row) => /^[0-9a-f]{64}$/.test(row.split(',')[6]) && row.split(',')[7] === id));
    // A marker lookup, five table PUTs, five HEADs checking them, two index entries and
    // the marker: 14 requests, no more.
    assert.equal(stack.proxy.seen.total - before, 14);
    const index = await stack.s3.client.keys(`${stack.prefix}index/`);
    assert.equal(index.filter((k) => k.endsWith(`-${id}`)).length, 2, 'one entry per index');
  });

  test('a legacy export with header lines is staged as the CLI stages it', async () => {
    const bytes = fs.readFileSync(isleOfWight);
    const id = await batchIdOf(bytes);
    const r = await put(await tokenFor('isle-of-wight'), path.basename(isleOfWight), bytes);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.report.format, 'legacy-2020');
    await assertSameAsCli(isleOfWight, path.basename(isleOfWight), id);
  });

  test('rejected rows go to the rejects file, as with the CLI, and the answer lists their issues', async () => {
    const lines = fs.readFileSync(chesterfield, 'utf8').split('\n');
    // Break two rows: a total that does not add up, and a row without its payment method.
    const plain = lines.map((l, i) => [l, i]).filter(([l, i]) => i > 3 && /^\d/.test(l) && !l.includes('"'))[0][1];
    lines[3] = lines[3].replace(/,(\d+(?:\.\d+)?),(CASH|CARD),/, ',999.99,$2,');
    lines[plain] = lines[plain].replace(/,(CASH|CARD),/, ',');
    const tmp = path.join(tmpDir('bad-'), path.basename(chesterfield));
    fs.writeFileSync(tmp, lines.join('\n'));
    const bytes = fs.readFileSync(tmp);
    const id = await batchIdOf(bytes);
    const r = await put(await tokenFor(storeOf(chesterfield)), path.basename(tmp), bytes);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.report.rows_rejected, 2);
    assert.deepEqual(
      r.body.report.issues.filter((i) => i.severity === 'error').map((i) => i.line),
      [4, plain + 1],
    );
    const { cli } = await assertSameAsCli(tmp, path.basename(tmp), id);
    assert.equal(cli[`rejects/${id}.csv.gz`].trim().split('\n').length >= 2, true);
  });

  test('without X-Content-SHA256 a small body is buffered, hashed and staged the same way (POST with X-File-Name)', async () => {
    const file = current.find((f) => f !== leeds && storeOf(f) === 'leeds') ?? leeds;
    const bytes = fs.readFileSync(file);
    const id = await batchIdOf(bytes);
    const r = await put(await tokenFor('leeds'), path.basename(file), bytes, { sha256: false, method: 'POST' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.batch_id, id);
    if (file !== leeds) await assertSameAsCli(file, path.basename(file), id);
  });

  test('uploading the same bytes again answers duplicate and writes nothing', async () => {
    const bytes = fs.readFileSync(leeds);
    const id = await batchIdOf(bytes);
    const mtimes = () =>
      batchKeys('', id).map((k) => fs.statSync(path.join(stack.s3.dir, stack.s3.bucket, stack.prefix, k)).mtimeMs);
    const before = mtimes();
    const keysBefore = await allKeys();
    for (const sha256 of [true, false]) {
      const requests = stack.proxy.seen.total;
      const r = await put(await tokenFor('leeds'), path.basename(leeds), bytes, { sha256 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.duplicate, true);
      assert.equal(r.body.batch_id, id);
      assert.deepEqual(r.body.keys, []);
      assert.ok(r.body.report.rows_staged > 0, 'the staged report comes back');
      assert.equal(stack.proxy.seen.total - requests, 1, 'one marker lookup, nothing else');
    }
    assert.deepEqual(mtimes(), before, 'no object rewritten');
    assert.deepEqual(await allKeys(), keysBefore);
    // Another branch re-sending a file of Leeds learns nothing of it.
    const r = await put(await tokenFor('york'), path.basename(leeds), bytes);
    assert.equal(r.status, 403);
    assert.equal(r.body.error, 'wrong_store');
    assert.equal(r.body.report, undefined);
  });

  test('rows of a store other than the token\'s → 403, nothing staged', async () => {
    const bytes = fs.readFileSync(chesterfield);
    const id = await batchIdOf(bytes);
    const r = await put(await tokenFor('leeds'), path.basename(chesterfield), bytes);
    assert.equal(r.status, 403, r.text);
    assert.equal(r.body.error, 'wrong_store');
    // Another branch's rows are counted, never named: not its store, not its rows.
    assert.match(r.body.message, /rows? of another branch, and this token is for branch leeds only/);
    assert.doesNotMatch(r.text, /chesterfield/i);
    // A file mixing the token's store with another: refused whole.
    const mixed = Buffer.concat([fs.readFileSync(leeds), bytes]);
    const m = await put(await tokenFor('leeds'), 'leeds_28-08-2021_09-00-00.csv', mixed);
    assert.equal(m.status, 403, m.text);
    assert.equal(m.body.error, 'wrong_store');
    assert.doesNotMatch(m.text, /chesterfield/i);
    const keys = await allKeys();
    for (const bid of [id, await batchIdOf(mixed)]) assert.equal(keys.filter((k) => k.includes(bid)).length, 0);
  });
});

describe('refusals', () => {
  const csv = Buffer.from('28/08/2021 09:00,Leeds,Ann Example,Regular Filter coffee - 1.50,1.5,CARD,4111111111111111\n');

  test('no token, a malformed one, a bad signature, an expired one → 401, and S3 is not touched', async () => {
    const requests = stack.proxy.seen.total;
    const good = await tokenFor('leeds');
    const cases = [
      [null, 'Authorization: Bearer'],
      ['leeds.123', 'four dot-separated parts'],
      [good.slice(0, -1) + (good.endsWith('0') ? '1' : '0'), 'signature does not match'],
      [await mintToken('a-different-upload-secret-0123', 'leeds', 4102444800), 'signature does not match'],
      [await tokenFor('leeds', -10), 'expired'],
    ];
    for (const [token, message] of cases) {
      const r = await put(token, 'leeds_28-08-2021.csv', csv);
      assert.equal(r.status, 401, `${token}: ${r.text}`);
      assert.equal(r.body.error, 'unauthorized');
      assert.ok(r.body.message.includes(message), `${r.body.message} mentions ${message}`);
      assert.match(r.headers.get('www-authenticate'), /^Bearer/);
    }
    const expired = await put(await tokenFor('leeds', -10), 'x.csv', csv);
    assert.equal(expired.body.reason, 'expired');
    const list = await fetch(`${stack.url}/v1/batches`, { headers: { authorization: 'Bearer nope' } });
    assert.equal(list.status, 401);
    assert.equal(stack.proxy.seen.total, requests);
  });

  test('415 for a body that is plainly not text/csv', async () => {
    const token = await tokenFor('leeds');
    for (const type of ['image/png', 'application/pdf', 'application/json']) {
      const r = await put(token, 'x.csv', csv, { headers: { 'content-type': type } });
      assert.equal(r.status, 415, type);
      assert.equal(r.body.error, 'unsupported_media_type');
      assert.ok(r.body.message.includes(type));
    }
    const form = await put(token, 'x.csv', csv, { headers: { 'content-type': 'multipart/form-data; boundary=x' } });
    assert.equal(form.status, 415);
    assert.match(form.body.message, /not a multipart form/);
    // What Windows browsers and curl send for a CSV file is fine.
    for (const type of ['application/vnd.ms-excel', 'application/x-www-form-urlencoded']) {
      const r = await put(token, 'leeds_28-08-2021.csv', csv, { headers: { 'content-type': type } });
      assert.equal(r.status, 200, `${type}: ${r.text}`);
    }
  });

  test('400 for empty and binary bodies, with the core\'s message, and nothing staged', async () => {
    const token = await tokenFor('leeds');
    const keysBefore = await allKeys();
    const png = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n\0\0\0\rIHDR', 'latin1'), Buffer.alloc(2000, 7)]);
    const zip = Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(3000, 1)]);
    const cases = [
      ['empty.csv', Buffer.alloc(0), /empty\.csv is empty \(0 bytes\)/],
      ['photo.csv', png, /binary data/],
      ['export.csv', zip, /Excel/],
      ['notes.csv', Buffer.from('hello\nno commas here\n'), /no line with the comma-separated columns/],
    ];
    for (const [name, bytes, message] of cases) {
      for (const sha256 of [true, false]) {
        const r = await put(token, name, bytes, { sha256 });
        assert.equal(r.status, 400, `${name}: ${r.text}`);
        assert.equal(r.body.error, 'refused');
        assert.match(r.body.message, message);
        assert.equal(r.body.report.refused, true);
      }
    }
    assert.deepEqual(await allKeys(), keysBefore);
  });

  test('400 when the body does not hash to X-Content-SHA256, and nothing staged', async () => {
    const keysBefore = await allKeys();
    const r = await put(await tokenFor('leeds'), 'leeds_28-08-2021.csv', csv, { sha256: 'ab'.repeat(32) });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.body.error, 'sha256_mismatch');
    assert.match(r.body.message, /does not match X-Content-SHA256/);
    const bad = await put(await tokenFor('leeds'), 'leeds_28-08-2021.csv', csv, { sha256: 'xyz' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'bad_sha256');
    assert.deepEqual(await allKeys(), keysBefore);
  });

  test('413 when Content-Length is far above MAX_UPLOAD_BYTES, answered before the body is read', async () => {
    const token = await tokenFor('leeds');
    uploadsMade.push('huge.csv');
    const { status, body } = await earlyAnswer(
      `${stack.url}/v1/uploads/huge.csv`,
      { authorization: `Bearer ${token}`, 'content-type': 'text/csv', 'content-length': String(1000 * 1000 * 1000) },
      csv,
      { firstOnly: true },
    );
    assert.equal(status, 413);
    assert.equal(body.error, 'too_large');
    assert.equal(body.max_upload_bytes, 200_000_000);
  });

  test('unknown routes and wrong methods', async () => {
    assert.equal((await fetch(`${stack.url}/v1/nope`)).status, 404);
    const r = await fetch(`${stack.url}/v1/uploads/x.csv`, { method: 'GET' });
    assert.equal(r.status, 405);
    assert.match(r.headers.get('allow'), /PUT/);
  });
});

describe('reading back', { skip: NO_CORPUS }, () => {
  test("GET /v1/batches lists the token's store's batches only; GET /v1/batches/{id} gives one", async () => {
    const res = await fetch(`${stack.url}/v1/batches`, { headers: { authorization: `Bearer ${await tokenFor('leeds')}` } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.store, 'leeds');
    assert.ok(body.batches.length >= 2);
    const leedsId = await batchIdOf(fs.readFileSync(leeds));
    const entry = body.batches.find((b) => b.batch_id === leedsId);
    assert.ok(entry, 'the Leeds batch is listed');
    assert.equal(entry.store, 'leeds');
    assert.equal(entry.key, `${stack.prefix}batches/${leedsId}.json`);
    assert.deepEqual(entry.keys, batchKeys(stack.prefix, leedsId));
    assert.equal(entry.source, path.basename(leeds));
    assert.ok(entry.rows_staged > 0 && entry.revenue_pence > 0 && /^\d{4}-/.test(entry.staged_at));
    for (const b of body.batches) assert.deepEqual(b.stores.map(storeSlug), ['leeds']);
    const times = body.batches.map((b) => b.staged_at);
    assert.deepEqual([...times].sort().reverse(), times, 'newest first');

    const other = await (
      await fetch(`${stack.url}/v1/batches`, { headers: { authorization: `Bearer ${await tokenFor('isle-of-wight')}` } })
    ).json();
    assert.deepEqual(other.batches.map((b) => b.source), [path.basename(isleOfWight)]);

    const one = await fetch(`${stack.url}/v1/batches/${leedsId}`, { headers: { authorization: `Bearer ${await tokenFor('leeds')}` } });
    assert.equal(one.status, 200);
    assert.equal((await one.json()).report.batch_id, leedsId);
    const foreign = await fetch(`${stack.url}/v1/batches/${leedsId}`, { headers: { authorization: `Bearer ${await tokenFor('york')}` } });
    assert.equal(foreign.status, 403);
    const missing = await fetch(`${stack.url}/v1/batches/${'0'.repeat(32)}`, { headers: { authorization: `Bearer ${await tokenFor('leeds')}` } });
    assert.equal(missing.status, 404);
  });
});

test('CORS for the configured origin only', async () => {
  const pre = await fetch(`${stack.url}/v1/uploads/x.csv`, {
    method: 'OPTIONS',
    headers: { origin: 'http://127.0.0.1:8080', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'authorization,x-content-sha256' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), 'http://127.0.0.1:8080');
  assert.match(pre.headers.get('access-control-allow-methods'), /PUT/);
  assert.match(pre.headers.get('access-control-allow-headers'), /x-content-sha256/);
  const denied = await fetch(`${stack.url}/v1/uploads/x.csv`, { method: 'OPTIONS', headers: { origin: 'http://elsewhere.example' } });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers.get('access-control-allow-origin'), null);
  // Error answers carry the header too, so the page can read them.
  uploadsMade.push('x.csv');
  const r = await fetch(`${stack.url}/v1/uploads/x.csv`, { method: 'PUT', body: 'a', headers: { origin: 'http://localhost:8080' } });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('access-control-allow-origin'), 'http://localhost:8080');
});

describe('concurrency', { skip: NO_CORPUS }, () => {
  test('20 concurrent uploads of different files: every marker present, every row counted once', async () => {
    const used = new Set([leeds, chesterfield].map((f) => path.basename(f)));
    // 20 files of several stores not uploaded yet (the shared corpus has 153).
    let files = current.filter((f) => !used.has(path.basename(f)) && !/^leeds_/.test(path.basename(f))).filter((_, i) => i % 7 === 0).slice(0, 20);
    if (files.length < 20) {
      console.log(`# only ${current.length} real current exports in ${CORPUS}: 20 generated ones instead`);
      const dir = cliGenerate(['--stores', '5', '--days', '4', '--seed', '21']);
      files = fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
    }
    assert.equal(files.length, 20);
    assert.ok(new Set(files.map(storeOf)).size >= 5, 'several stores');
    const bodies = files.map((f) => fs.readFileSync(f));
    const ids = await Promise.all(bodies.map(batchIdOf));
    const tokens = await Promise.all(files.map((f) => tokenFor(storeOf(f))));
    const t0 = performance.now();
    const results = await Promise.all(files.map((f, i) => put(tokens[i], path.basename(f), bodies[i])));
    const seconds = (performance.now() - t0) / 1000;
    console.log(`# 20 concurrent uploads in ${seconds.toFixed(2)} s: ${(20 / seconds).toFixed(1)} uploads/s`);
    results.forEach((r, i) => assert.equal(r.status, 200, `${files[i]}: ${r.text}`));
    const keys = new Set(await allKeys());
    for (const id of ids) for (const k of batchKeys(stack.prefix, id)) assert.ok(keys.has(k), `${k} is there`);
    // Row for row as the CLI, for each file; every transaction once, in its own batch.
    let rowsRead = 0;
    let txRows = 0;
    const txIds = new Set();
    for (let i = 0; i < files.length; i++) {
      const { marker } = await assertSameAsCli(files[i], path.basename(files[i]), ids[i]);
      rowsRead += marker.rows_read;
      const tx = (await stack.s3.client.text(`${stack.prefix}transactions/${ids[i]}.csv.gz`)).trim().split('\n');
      txRows += tx.length;
      for (const row of tx) {
        const [txId, , , , , , , batch] = row.split(',');
        assert.equal(batch, ids[i]);
        txIds.add(txId);
      }
      assert.equal(tx.length, marker.rows_staged);
    }
    const expected = bodies.reduce((n, b) => n + b.toString('utf8').split('\n').filter((l) => l.trim()).length, 0);
    assert.equal(rowsRead, expected, 'rows read = data lines sent');
    assert.equal(txIds.size, txRows, 'no transaction twice');
  });
});

describe('the same bytes twice at once', { skip: NO_CORPUS }, () => {
  test('two concurrent uploads of one file both succeed and leave one complete batch', async () => {
    let file = current.find((f) => /^leeds_/.test(path.basename(f)) && f !== leeds && !uploadsMade.includes(path.basename(f)));
    if (!file) {
      const dir = cliGenerate(['--stores', '2', '--days', '1', '--seed', '33']);
      file = path.join(dir, fs.readdirSync(dir).find((f) => f.startsWith('leeds_')));
    }
    const bytes = fs.readFileSync(file);
    const id = await batchIdOf(bytes);
    const token = await tokenFor('leeds');
    const [a, b] = await Promise.all([put(token, path.basename(file), bytes), put(token, path.basename(file), bytes)]);
    assert.equal(a.status, 200, a.text);
    assert.equal(b.status, 200, b.text);
    assert.ok([a, b].some((r) => !r.body.duplicate), 'at least one staged it');
    await assertSameAsCli(file, path.basename(file), id);
  });
});

test('one JSON log line per upload, with ids and counts and no personal data', async () => {
  const lines = stack.worker.logs.filter((l) => l.event === 'upload');
  assert.equal(lines.length, uploadsMade.length, 'one line per upload request');
  for (const l of lines) {
    for (const k of ['batch_id', 'store', 'bytes', 'rows_read', 'rows_staged', 'rows_rejected', 'duration_ms', 'outcome', 'status']) {
      assert.ok(k in l, `${k} in ${JSON.stringify(l)}`);
    }
  }
  const staged = lines.filter((l) => l.outcome === 'staged');
  assert.ok(staged.length >= (CORPUS ? 25 : 2));
  for (const l of staged) assert.ok(l.rows_read > 0 && l.bytes > 0 && /^[0-9a-f]{32}$/.test(l.batch_id));
  assert.ok(lines.some((l) => l.outcome === 'duplicate'));
  assert.ok(lines.some((l) => l.outcome === 'unauthorized' && l.status === 401));
  // Nothing personal in the logs, in any object, or in the bodies of the answers.
  const logText = stack.worker.stdout.join('\n');
  // Read 16 at a time: one by one, the corpus's thousand-odd objects took most of the test.
  const keys = await allKeys();
  const objects = [];
  for (let i = 0; i < keys.length; i += 16) {
    const chunk = keys.slice(i, i + 16);
    const bodies = await Promise.all(chunk.map((key) => stack.s3.client.get(key)));
    chunk.forEach((key, j) => objects.push(key.endsWith('.gz') ? gunzipSync(bodies[j]).toString('utf8') : Buffer.from(bodies[j]).toString('utf8')));
  }
  const everything = logText + '\n' + objects.join('\n');
  // A name is made of letters, spaces, dots, apostrophes and hyphens, a card of
  // digits, so each occurrence lies inside one maximal run of those characters:
  // searching the distinct runs is the same search as searching everything, on a
  // far smaller text (the tables repeat their stores, products and ids).
  const distinctRuns = (re) => [...new Set(everything.match(re) ?? [])].join('\n');
  const nameText = distinctRuns(/[A-Za-z' .-]+/g);
  const cardText = distinctRuns(/[0-9]+/g);
  let checked = 0;
  for (const bytes of filesSent) {
    const tmp = path.join(tmpDir('pii-'), 'sent.csv');
    fs.writeFileSync(tmp, bytes);
    const { names, cards } = personalData(tmp);
    for (const n of names) {
      assert.ok(!nameText.includes(n), `a customer name leaked: ${n} in ${everything.split('\n').find((l) => l.includes(n))}`);
      checked++;
    }
    for (const c of cards) {
      assert.ok(!cardText.includes(c), 'a card number leaked');
      checked++;
    }
  }
  if (CORPUS) assert.ok(checked > 1000, `${checked} names and card numbers checked`);
});

describe('generated exports', () => {
  test('a generated export (no corpus needed) is staged as the CLI stages it', async () => {
    const dir = cliGenerate(['--stores', '1', '--days', '1', '--seed', '7', '--transactions-per-day', '500']);
    const file = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.csv')));
    const bytes = fs.readFileSync(file);
    const r = await put(await tokenFor(storeOf(file)), path.basename(file), bytes);
    assert.equal(r.status, 200, r.text);
    await assertSameAsCli(file, path.basename(file), await batchIdOf(bytes));
  });
});
