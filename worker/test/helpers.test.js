// The worker's pure helpers: configuration, request checks, retry timing, S3 XML, CORS.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  backoffDelay,
  batchKeys,
  checkFileName,
  ConfigError,
  contentTypeAllowed,
  corsHeaders,
  describeKey,
  indexKeys,
  MIN_PART_BYTES,
  parseConfig,
  parseListObjects,
  parseStoreIndexKey,
  storeIndexPrefix,
  reportStores,
  xmlTag,
} from '../src/lib.js';
import fs from 'node:fs';
import path from 'node:path';
import { batchIdOfSha256, isBatchId, Pipeline, refusalMessage, stagingTables, transform } from '../../pkg/cafe_etl.js';
import { createHash } from 'node:crypto';
import { WORKER_DIR, wranglerVars } from './harness.js';

/** A table of wrangler.toml (`[env.production.vars]`, ...) as {NAME: "value"}. */
function wranglerTable(name) {
  const toml = fs.readFileSync(path.join(WORKER_DIR, 'wrangler.toml'), 'utf8');
  const at = toml.indexOf(`\n[${name}]\n`);
  if (at < 0) return null;
  const body = toml.slice(at + name.length + 4).split(/\n\[/)[0];
  const out = {};
  for (const m of body.matchAll(/^([A-Za-z0-9_]+)\s*=\s*"?([^"\n]*)"?\s*$/gm)) out[m[1]] = m[2];
  return out;
}

const secrets = {
  S3_ACCESS_KEY_ID: 'AKTEST',
  S3_SECRET_ACCESS_KEY: 'not-a-real-secret',
  UPLOAD_SECRET: 'upload-secret-0123456789',
  CUSTOMER_KEY_SECRET: 'customer-key-secret',
};

test("wrangler.toml's [vars] with the secrets make a valid configuration", () => {
  const cfg = parseConfig({ ...wranglerVars(), ...secrets });
  assert.equal(cfg.s3.bucket, 'cafe-staging');
  assert.equal(cfg.prefix, 'staging/');
  assert.equal(cfg.partBytes, MIN_PART_BYTES);
  assert.equal(cfg.maxUploadBytes, 200_000_000);
  assert.ok(cfg.bufferLimitBytes <= cfg.maxUploadBytes);
  assert.ok(cfg.retry.attempts > 1 && cfg.retry.totalMs > cfg.retry.capMs);
  assert.deepEqual(cfg.allowedOrigins, ['http://127.0.0.1:8080', 'http://localhost:8080']);
});

test("wrangler.toml's production environment: HTTPS S3, at most 100 MB, a CPU limit, no localhost origin", () => {
  const vars = wranglerTable('env.production.vars');
  assert.ok(vars, 'an [env.production.vars] table');
  const cfg = parseConfig({ ...vars, ...secrets });
  assert.equal(cfg.development, false);
  assert.match(cfg.s3.endpoint, /^https:\/\//);
  assert.ok(cfg.maxUploadBytes <= 100_000_000, `MAX_UPLOAD_BYTES ${cfg.maxUploadBytes}`);
  assert.ok(cfg.bufferLimitBytes <= 4 * 1024 * 1024);
  assert.equal(cfg.pipelines, 2);
  assert.ok(cfg.allowedOrigins.length > 0);
  for (const o of cfg.allowedOrigins) assert.doesNotMatch(o, /localhost|127\.|\[::1\]|^http:|\*/, o);
  const limits = wranglerTable('env.production.limits');
  assert.ok(Number(limits?.cpu_ms) > 0, 'a CPU limit');
  for (const name of Object.keys(secrets)) assert.equal(vars[name], undefined, name);
});

test('plain-HTTP S3 only in local development', () => {
  const base = { ...wranglerVars(), ...secrets };
  assert.equal(base.ENVIRONMENT, 'development', 'the top level is the local stack');
  assert.equal(parseConfig(base).s3.endpoint, 'http://127.0.0.1:9000');
  for (const env of [undefined, 'production', 'staging', 'Development']) {
    assert.throws(() => parseConfig({ ...base, ENVIRONMENT: env }), (e) => e instanceof ConfigError && /https:\/\//.test(e.message), String(env));
    assert.equal(parseConfig({ ...base, ENVIRONMENT: env, S3_ENDPOINT: 'https://s3.example.com' }).s3.endpoint, 'https://s3.example.com');
  }
});

test('the defaults bound memory: a 4 MiB buffer, two pipelines at once', () => {
  const { BUFFER_LIMIT_BYTES, MAX_PIPELINES, PIPELINE_WAIT_MS, ...rest } = wranglerVars();
  const cfg = parseConfig({ ...rest, ...secrets });
  assert.equal(cfg.bufferLimitBytes, 4 * 1024 * 1024);
  assert.equal(cfg.pipelines, 2);
  assert.ok(cfg.pipelineWaitMs > 0);
  assert.equal(parseConfig({ ...wranglerVars(), ...secrets }).bufferLimitBytes, 4 * 1024 * 1024);
});

test('index keys: per store newest first by key order, all commits by day and time', () => {
  const id = (n) => String(n).repeat(32);
  const t = Date.parse('2026-12-01T20:05:03.123Z');
  const k = indexKeys('staging/', 'leeds', id(1), t);
  // The inverted time: 10^13 - 1 less the commit time, in 13 digits.
  const [, inverted] = /^staging\/index\/stores\/leeds\/(\d{13})-/.exec(k.store);
  assert.equal(Number(inverted) + t, 9_999_999_999_999);
  assert.ok(k.store.endsWith(`-${id(1)}`));
  assert.equal(k.commit, `staging/index/commits/2026-12-01/20-05-03.123Z-${id(1)}`);
  assert.deepEqual(parseStoreIndexKey('staging/', k.store), { batchId: id(1), at: '2026-12-01T20:05:03.123Z' });
  assert.equal(parseStoreIndexKey('staging/', `staging/batches/${id(1)}.json`), null);
  assert.equal(parseStoreIndexKey('staging/', k.commit), null);
  assert.equal(parseStoreIndexKey('other/', k.store), null);
  assert.ok(k.store.startsWith(storeIndexPrefix('staging/', 'leeds')));
  assert.equal(storeIndexPrefix('staging/', 'leeds'), 'staging/index/stores/leeds/');
  // Later commits sort first under the store, last under the day.
  const times = [t - 86_400_000, t - 1, t, t + 1, t + 3_600_000, Date.parse('2030-01-01T00:00:00Z')];
  const keys = times.map((ms, i) => indexKeys('', 'leeds', id(i), ms));
  const byStore = keys.map((x) => x.store);
  assert.deepEqual([...byStore].sort(), [...byStore].reverse());
  const byCommit = keys.map((x) => x.commit);
  assert.deepEqual([...byCommit].sort(), byCommit);
  assert.equal(indexKeys('', 'leeds', id(0), 0).store, `index/stores/leeds/${'9'.repeat(13)}-${id(0)}`);
});

test('S3 keys in error bodies are words: no bucket, prefix or key', () => {
  const id = '0123456789abcdef0123456789abcdef';
  assert.equal(describeKey('p/q/', `p/q/batches/${id}.json`), 'the batch marker');
  assert.equal(describeKey('p/q/', `p/q/basket_items/${id}.csv.gz`), 'the basket_items table file');
  for (const k of Object.values(indexKeys('p/q/', 'leeds', id, 1))) assert.equal(describeKey('p/q/', k), 'the batch index');
  assert.equal(describeKey('p/q/', null), 'the bucket listing');
  assert.equal(describeKey('', 'elsewhere/x'), 'an object');
});

test("the worker's keys and key words are the core's layout, not a copy", () => {
  // The files the core stages for a real batch are the keys the worker writes.
  const csv = Buffer.from('25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n');
  const { report, files } = transform(csv, { source: 'leeds_25-08-2021.csv' });
  const keys = batchKeys('p/q/', report.batch_id);
  assert.deepEqual(keys, Object.keys(files).map((k) => `p/q/${k}`), 'tables in commit order, then the marker');
  assert.equal(keys.length, stagingTables().length + 1);
  assert.deepEqual(
    keys.map((k) => describeKey('p/q/', k)),
    [...stagingTables().map((t) => `the ${t} table file`), 'the batch marker'],
  );
});

test("a batch id is the core's: from a SHA-256 made elsewhere, and in a URL", () => {
  const csv = Buffer.from('25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n');
  const sha = createHash('sha256').update(csv).digest('hex');
  const { report } = transform(csv, {});
  assert.equal(batchIdOfSha256(sha), report.batch_id);
  assert.equal(batchIdOfSha256(sha.toUpperCase()), report.batch_id);
  assert.equal(batchIdOfSha256(sha.slice(1)), null);
  assert.equal(isBatchId(report.batch_id), true);
  for (const bad of [sha, report.batch_id.toUpperCase(), '', '../x']) assert.equal(isBatchId(bad), false, bad);
});

test("a refused file's message is the core's refusal", () => {
  const { report } = transform(Buffer.alloc(0), { source: 'empty.csv' });
  assert.equal(report.refused, true);
  assert.match(refusalMessage(report), /^empty\.csv is empty \(0 bytes\)/);
  const ok = transform(Buffer.from('25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n'), {});
  assert.equal(refusalMessage(ok.report), null);
});

test('the core throws Errors with stable codes, which the worker matches', () => {
  const thrown = (f) => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof Error);
      return [e.code, e.message];
    }
    assert.fail('nothing thrown');
  };
  const [badId, badIdText] = thrown(() => new Pipeline({ batchId: 'not-an-id' }));
  assert.equal(badId, 'bad_batch_id');
  assert.match(badIdText, /^config error: batch id "not-an-id" is not 32 lowercase hex digits$/);
  const p = new Pipeline({ source: 'leeds.csv', batchId: '0'.repeat(32) });
  p.push(Buffer.from('25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n'));
  const [mismatch, mismatchText] = thrown(() => p.finish());
  assert.equal(mismatch, 'batch_id_mismatch');
  assert.match(mismatchText, /^stage error: the bytes have batch id [0-9a-f]{32}, not the 0{32}/);
  assert.deepEqual(thrown(() => p.push(Buffer.from('x'))), ['finished', 'config error: the pipeline is finished']);
  assert.equal(thrown(() => new Pipeline({ maxIssues: 'many' }))[0], 'config');
  // The worker's upload path matches the code, never the text.
  const src = fs.readFileSync(path.join(WORKER_DIR, 'src', 'upload.js'), 'utf8');
  assert.match(src, /e\?\.code === 'batch_id_mismatch'/);
  assert.doesNotMatch(src, /message\)?\.includes\(|msg\.includes\(/);
});

test('wrangler.toml holds no secret', () => {
  const vars = wranglerVars();
  for (const name of [...Object.keys(secrets), 'UPLOAD_SECRETS']) assert.equal(vars[name], undefined, name);
});

test('configuration mistakes name the variable and never echo a secret', () => {
  const base = { ...wranglerVars(), ...secrets };
  const bad = (patch, pattern) => {
    assert.throws(() => parseConfig({ ...base, ...patch }), (e) => e instanceof ConfigError && pattern.test(e.message));
  };
  bad({ S3_ENDPOINT: '' }, /S3_ENDPOINT is not set/);
  bad({ S3_ENDPOINT: 'ftp://x' }, /S3_ENDPOINT must be/);
  bad({ S3_ENDPOINT: 'http://s3.example.com', ENVIRONMENT: 'production' }, /S3_ENDPOINT must be an https/);
  bad({ S3_BUCKET: 'Not_A_Bucket' }, /S3_BUCKET/);
  bad({ UPLOAD_SECRET: undefined }, /^UPLOAD_SECRETS is not set/);
  bad({ UPLOAD_SECRET: 'short' }, /^UPLOAD_SECRET must hold at least 16 bytes$/);
  bad({ UPLOAD_SECRETS: 'k2=0123456789abcdef-new,k1' }, /^UPLOAD_SECRETS entry 2 is not kid=secret$/);
  bad({ STORE_NAMES: 'leeds=Leeds,leeds=LEEDS' }, /^STORE_NAMES names the store leeds twice$/);
  bad({ REVOKED_BEFORE: 'Leeds=1' }, /^REVOKED_BEFORE entry 1/);
  bad({ CUSTOMER_KEY_SECRET: '' }, /CUSTOMER_KEY_SECRET is not set/);
  bad({ MULTIPART_PART_BYTES: '1000' }, /MULTIPART_PART_BYTES .* from 5242880/);
  bad({ MAX_UPLOAD_BYTES: '12abc' }, /MAX_UPLOAD_BYTES/);
  assert.equal(parseConfig({ ...base, S3_PREFIX: '/a/b/' }).prefix, 'a/b/');
  assert.equal(parseConfig({ ...base, S3_PREFIX: '' }).prefix, '');
  assert.equal(parseConfig({ ...base, BUFFER_LIMIT_BYTES: '999', MAX_UPLOAD_BYTES: '500' }).bufferLimitBytes, 500);
});

test('content types: CSV and what clients send for it pass, plainly-not-CSV types do not', () => {
  for (const t of [null, '', 'text/csv', 'text/csv; charset=utf-8', 'TEXT/PLAIN', 'application/vnd.ms-excel', 'application/octet-stream', 'application/x-www-form-urlencoded', 'application/csv']) {
    assert.equal(contentTypeAllowed(t), true, String(t));
  }
  for (const t of ['image/png', 'application/pdf', 'application/zip', 'application/json', 'multipart/form-data; boundary=x', 'video/mp4', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet']) {
    assert.equal(contentTypeAllowed(t), false, t);
  }
});

test('file names', () => {
  assert.equal(checkFileName('leeds_28-08-2021_09-00-00.csv'), null);
  assert.equal(checkFileName('Café export (1).csv'), null);
  assert.match(checkFileName(''), /missing/);
  assert.match(checkFileName(null), /missing/);
  assert.match(checkFileName('a/b.csv'), /slash/);
  assert.match(checkFileName('a\\b.csv'), /slash/);
  assert.match(checkFileName('a\nb.csv'), /control/);
  assert.match(checkFileName('..'), /not a file name/);
  assert.match(checkFileName('x'.repeat(256)), /255/);
});

test('backoff is exponential, capped, and jittered over the whole range', () => {
  const r = { baseMs: 100, capMs: 2000 };
  assert.equal(backoffDelay(0, r, () => 0), 0);
  assert.equal(backoffDelay(0, r, () => 0.999999), 99);
  assert.equal(backoffDelay(3, r, () => 0.5), 400);
  assert.equal(backoffDelay(10, r, () => 0.999999), 1999);
  const seen = new Set(Array.from({ length: 200 }, () => backoffDelay(4, r)));
  assert.ok(seen.size > 50, 'jitter spreads the delays');
  for (const d of seen) assert.ok(d >= 0 && d < 1600);
});

test('batch keys: the five tables, then the marker, under the prefix', () => {
  const id = '0123456789abcdef0123456789abcdef';
  assert.deepEqual(batchKeys('staging/', id), [
    `staging/stores/${id}.csv.gz`,
    `staging/products/${id}.csv.gz`,
    `staging/transactions/${id}.csv.gz`,
    `staging/basket_items/${id}.csv.gz`,
    `staging/rejects/${id}.csv.gz`,
    `staging/batches/${id}.json`,
  ]);
});

test("a report's stores are slugged and deduplicated", () => {
  const report = { summary: { by_store: [{ store: 'Isle of Wight' }, { store: 'Leeds' }, { store: 'isle of wight' }] } };
  assert.deepEqual(reportStores(report), ['isle-of-wight', 'leeds']);
  assert.deepEqual(reportStores({ summary: { by_store: [] } }), []);
});

test('S3 XML answers', () => {
  const xml = `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><IsTruncated>true</IsTruncated>
    <Contents><Key>staging/batches/a.json</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><Size>12</Size></Contents>
    <Contents><Key>staging/batches/b&amp;c.json</Key><LastModified>2026-01-02T00:00:00.000Z</LastModified><Size>3</Size></Contents>
    <NextContinuationToken>tok&amp;en</NextContinuationToken></ListBucketResult>`;
  assert.deepEqual(parseListObjects(xml), {
    objects: [
      { key: 'staging/batches/a.json', lastModified: '2026-01-01T00:00:00.000Z', size: 12 },
      { key: 'staging/batches/b&c.json', lastModified: '2026-01-02T00:00:00.000Z', size: 3 },
    ],
    truncated: true,
    next: 'tok&en',
  });
  assert.equal(xmlTag('<InitiateMultipartUploadResult><UploadId>x&lt;y</UploadId></InitiateMultipartUploadResult>', 'UploadId'), 'x<y');
  assert.equal(xmlTag('<a></a>', 'UploadId'), null);
});

test('CORS: only the configured origins', () => {
  const allowed = ['http://127.0.0.1:8080'];
  const h = corsHeaders('http://127.0.0.1:8080', allowed);
  assert.equal(h['access-control-allow-origin'], 'http://127.0.0.1:8080');
  assert.match(h['access-control-allow-headers'], /authorization/);
  assert.match(h['access-control-allow-headers'], /x-content-sha256/);
  assert.equal(h.vary, 'Origin');
  assert.deepEqual(corsHeaders('http://evil.example', allowed), {});
  assert.deepEqual(corsHeaders(null, allowed), {});
  assert.equal(corsHeaders('http://any.example', ['*'])['access-control-allow-origin'], '*');
});
