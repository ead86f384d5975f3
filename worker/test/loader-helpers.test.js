// The loader's pure helpers, table-driven: its bucket keys, the commits index parse,
// its configuration and the retry backoff, and the reason guard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import './harness.js'; // initialises the wasm module lib.js re-exports
import { indexKeys, ConfigError } from '../src/lib.js';
import { loaderConfig, retryDelaySeconds } from '../src/loader/config.js';
import { commitsDayPrefix, loaderKeys, parseCommitKey } from '../src/loader/keys.js';
import { classify, safeCode, safeReason } from '../src/loader/classify.js';
import { WarehouseError, isWarehouseError } from '../src/loader/errors.js';
import { S3Error } from '../src/s3.js';

const ID = '0123456789abcdef0123456789abcdef';

test('loader keys sit beside the staging layout', () => {
  const k = loaderKeys('staging/', ID);
  assert.equal(k.marker, `staging/batches/${ID}.json`);
  assert.equal(k.loaded, `staging/loads/${ID}.json`);
  assert.equal(k.failed, `staging/failures/${ID}.json`);
  assert.deepEqual(Object.keys(k.tables), ['stores', 'products', 'transactions', 'basket_items']);
  assert.equal(k.tables.basket_items, `staging/basket_items/${ID}.csv.gz`);
  assert.equal(loaderKeys('', ID).loaded, `loads/${ID}.json`);
});

test('a commits index key written at commit parses back to its batch and time', () => {
  for (const ms of [Date.UTC(2026, 11, 1, 20, 5, 3, 123), Date.UTC(2026, 0, 1, 0, 0, 0, 0), Date.UTC(2026, 11, 31, 23, 59, 59, 999)]) {
    for (const prefix of ['staging/', '']) {
      const key = indexKeys(prefix, 'leeds', ID, ms).commit;
      assert.ok(key.startsWith(commitsDayPrefix(prefix, ms)), key);
      assert.deepEqual(parseCommitKey(prefix, key), { batchId: ID, at: ms });
    }
  }
  for (const bad of [`staging/index/stores/leeds/9999-${ID}`, 'staging/index/commits/2026-12-01/20-05-03.123Z-xyz', '', 'staging/index/commits/2026-13-01/20-05-03.123Z-' + ID]) {
    assert.equal(parseCommitKey('staging/', bad), null, bad);
  }
});

test('loader configuration: defaults, values and refusals', () => {
  const d = loaderConfig({});
  assert.deepEqual(d, { warehouse: null, retryBaseSeconds: 5, retryCapSeconds: 300, sweepLookbackDays: 2, sweepMinAgeSeconds: 60, sweepMaxEntries: 10_000 });
  const cases = [
    [{ WAREHOUSE: 'postgresql' }, 'warehouse', 'postgresql'],
    [{ WAREHOUSE: ' Redshift ' }, 'warehouse', 'redshift'],
    [{ WAREHOUSE: '' }, 'warehouse', null],
    [{ SWEEP_LOOKBACK_DAYS: '7' }, 'sweepLookbackDays', 7],
    [{ SWEEP_MIN_AGE_SECONDS: '0' }, 'sweepMinAgeSeconds', 0],
    [{ LOAD_RETRY_BASE_SECONDS: '1' }, 'retryBaseSeconds', 1],
  ];
  for (const [env, field, want] of cases) assert.equal(loaderConfig(env)[field], want, JSON.stringify(env));
  for (const env of [{ WAREHOUSE: 'mysql' }, { SWEEP_LOOKBACK_DAYS: '0' }, { SWEEP_LOOKBACK_DAYS: '2.5' }, { LOAD_RETRY_CAP_SECONDS: '99999' }]) {
    assert.throws(() => loaderConfig(env), ConfigError, JSON.stringify(env));
  }
});

test('retry delays back off exponentially, capped, with full jitter', () => {
  const c = { retryBaseSeconds: 5, retryCapSeconds: 300 };
  const cases = [
    [1, 1, 5],
    [2, 1, 10],
    [3, 1, 20],
    [7, 1, 300],
    [40, 1, 300],
    [3, 0, 0],
    [3, 0.5, 10],
  ];
  for (const [attempts, r, want] of cases) assert.equal(retryDelaySeconds(attempts, c, () => r), want, `attempts ${attempts}, random ${r}`);
  assert.equal(retryDelaySeconds(5, { retryBaseSeconds: 0, retryCapSeconds: 300 }, () => 1), 0);
});

test('failures are classified transient or permanent with safe words', () => {
  const c = { cfg: { prefix: 'staging/', s3: { bucket: 'cafe-staging' } } };
  const cases = [
    [WarehouseError.permanent('copy_failed', 'a row breaks a constraint'), 'copy_failed', false],
    [WarehouseError.transient('connection_lost', 'the connection was lost'), 'connection_lost', true],
    [new S3Error(`GET staging/batches/${ID}.json: S3 answered 503`, { status: 503, key: `staging/batches/${ID}.json`, op: 'reading' }), 's3_error', true],
    [new ConfigError('WAREHOUSE_URL is not set'), 'misconfigured', true],
    [new TypeError('x is not a function'), 'internal_error', true],
  ];
  for (const [e, code, transient] of cases) {
    const w = classify(e, c);
    assert.ok(isWarehouseError(w));
    assert.deepEqual([w.code, w.transient], [code, transient], String(e.message));
    assert.ok(!w.message.includes('staging/') && !w.message.includes(ID), w.message);
  }
});

test('a reason never names the bucket, a key, a URL or a connection string', () => {
  const c = { cfg: { prefix: 'staging/', s3: { bucket: 'cafe-staging' } } };
  const cases = [
    [`COPY failed reading s3://cafe-staging/staging/manifests/x/transactions.manifest`, 'COPY failed reading <url>'],
    [`could not connect to postgres://user:pw@db:5432/cafe`, 'could not connect to <url>'],
    [`bucket cafe-staging refused`, 'bucket <bucket> refused'],
    [`object staging/transactions/${ID}.csv.gz\nis gone`, 'object <object> is gone'],
    [`reading loads/${ID}.json: 503`, 'reading <object>: 503'],
    // Only a batch's objects are keys to hide: a file name with no batch id stays.
    ['parsing conf/settings.json failed', 'parsing conf/settings.json failed'],
    [`reading x/${ID.toUpperCase()}.json`, `reading x/${ID.toUpperCase()}.json`],
    ['', 'the load failed'],
  ];
  for (const [text, want] of cases) assert.equal(safeReason(text, c), want);
  assert.equal(safeReason('x'.repeat(1000), c).length, 400);
});

test('WarehouseError takes both forms the loader uses, with the same fields', () => {
  const cases = [
    [new WarehouseError('copy_failed', 'a row breaks a constraint', { transient: false }), 'copy_failed', false, 'a row breaks a constraint'],
    [new WarehouseError('throttled', 'the Data API throttled', { transient: true }), 'throttled', true, 'the Data API throttled'],
    [new WarehouseError('the connection was lost', { code: 'connection', transient: true }), 'connection', true, 'the connection was lost'],
    [new WarehouseError('no code given'), 'error', false, 'no code given'],
    [WarehouseError.transient('timeout', 'no answer in time'), 'timeout', true, 'no answer in time'],
    [WarehouseError.permanent('missing_object', 'gone'), 'missing_object', false, 'gone'],
  ];
  for (const [e, code, transient, message] of cases) {
    assert.ok(e instanceof Error && isWarehouseError(e));
    assert.deepEqual(e.toJSON(), { code, transient, message });
  }
});

test('failure codes fit load_failures: lowercase letters, digits and _', () => {
  const cases = [
    ['23514', '23514'],
    ['P0001', 'p0001'],
    ['missing_object', 'missing_object'],
    ['Throttling-Exception', 'throttling_exception'],
    ['', 'error'],
    [undefined, 'error'],
    ['x'.repeat(80), 'x'.repeat(64)],
  ];
  for (const [code, want] of cases) assert.equal(safeCode(code), want, String(code));
});
