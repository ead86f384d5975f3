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
  MIN_PART_BYTES,
  parseConfig,
  parseListObjects,
  reportStores,
  xmlTag,
} from '../src/lib.js';
import { wranglerVars } from './harness.js';

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
