// What people see of loading, on workerd against s3s-fs: each batch's state in
// GET /v1/batches and /v1/batches/{id}, the backlog in /healthz, the load expectation
// in an upload's answer. The loader's objects (`loads/<id>.json`, `failures/<id>.json`)
// are written here as the loader writes them (the PREAMBLE's contract; the loader's own
// tests and tests/e2e/loading.test.mjs run the real consumer).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { batchIdOf, cliGenerate, startStack, upload, WORKER_DIR, wranglerQueues, wranglerVars } from './harness.js';
import { mintToken } from '../src/lib.js';
import { S3 } from '../src/s3.js';
import { loaderKeys } from '../src/loader/keys.js';
import { backlog, commitDays, loadingConfig } from '../src/status.js';

let stack;
const ids = [];

before(async () => {
  // No queues: the loader's objects are this test's to write (a consumer would load
  // or quarantine the batches under it).
  stack = await startStack(
    { WAREHOUSE: 'postgresql', LOAD_QUEUE_WAIT_SECONDS: '20', SWEEP_EVERY_MINUTES: '5', HEALTH_BACKLOG_CACHE_SECONDS: '0' },
    { queues: false },
  );
});
after(async () => {
  await stack?.stop();
});

const token = () => mintToken(stack.uploadSecret, 'chesterfield', Math.floor(Date.now() / 1000) + 3600);

async function put(key, body) {
  const r = await stack.s3.client.fetch('PUT', key, '', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 200, `PUT ${key}`);
}

async function health() {
  const res = await fetch(`${stack.url}/healthz`);
  assert.equal(res.status, 200);
  return { body: await res.json() };
}

describe('batch states', () => {
  test('an upload answers when its batch is expected to be loaded, from the worker\'s configuration', async () => {
    const dir = cliGenerate(['--stores', '1', '--days', '3', '--seed', '41']);
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.csv')).sort();
    assert.ok(files.length >= 3);
    for (const f of files.slice(0, 3)) {
      const bytes = fs.readFileSync(path.join(dir, f));
      const r = await upload(stack.url, token(), f, bytes);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.batch_id, await batchIdOf(bytes));
      // 20 s of queue wait (LOAD_QUEUE_WAIT_SECONDS) and 30 s for the load itself; at the
      // latest a sweep 5 minutes on, or 60 s more (SWEEP_MIN_AGE_SECONDS), then the same.
      assert.deepEqual(r.body.load, { warehouse: 'postgresql', expected_within_seconds: 50, at_latest_seconds: 410 });
      ids.push(r.body.batch_id);
    }
  });

  test('the backlog counts committed batches not yet loaded, in numbers only', async () => {
    const { body } = await health();
    assert.equal(body.ok, true);
    const l = body.loading;
    assert.equal(l.warehouse, 'postgresql');
    assert.equal(l.sweep_every_minutes, 5);
    assert.equal(l.backlog.committed, 3);
    assert.equal(l.backlog.waiting, 3);
    assert.equal(l.backlog.loaded, 0);
    assert.equal(l.backlog.failed, 0);
    assert.ok(l.backlog.oldest_waiting_seconds >= 0 && l.backlog.oldest_waiting_seconds < 600);
    assert.equal(l.backlog.last_load_at, null);
    assert.equal(l.backlog.truncated, false);
    const text = JSON.stringify(body);
    assert.doesNotMatch(text, /[0-9a-f]{32}/, 'no batch id in /healthz');
    assert.doesNotMatch(text, /chesterfield/i, 'no store in /healthz');
  });

  test('loaded (when) and failed (why) are read from the loader\'s objects; the rest is staged', async () => {
    const [loaded, failed, staged] = ids;
    const loadedAt = new Date(Date.now() - 1000).toISOString();
    await put(loaderKeys(stack.prefix, loaded).loaded, {
      batch_id: loaded, store: 'chesterfield', state: 'loaded', loaded_at: loadedAt, plan_id: 'p1', warehouse: 'postgresql',
    });
    await put(loaderKeys(stack.prefix, failed).failed, {
      batch_id: failed, store: 'chesterfield', state: 'failed', failed_at: loadedAt, code: 'copy_failed',
      reason: 'the warehouse refused a row of the transactions table',
    });
    const res = await fetch(`${stack.url}/v1/batches`, { headers: { authorization: `Bearer ${token()}` } });
    assert.equal(res.status, 200);
    const list = await res.json();
    assert.equal(list.load.warehouse, 'postgresql');
    const by = Object.fromEntries(list.batches.map((b) => [b.batch_id, b]));
    assert.equal(by[loaded].state, 'loaded');
    assert.equal(by[loaded].loaded_at, loadedAt);
    assert.equal(by[failed].state, 'failed');
    assert.equal(by[failed].reason, 'the warehouse refused a row of the transactions table');
    assert.equal(by[failed].code, 'copy_failed');
    assert.equal(by[staged].state, 'staged');
    assert.equal(by[staged].loaded_at, undefined);

    for (const [id, state] of [[loaded, 'loaded'], [failed, 'failed'], [staged, 'staged']]) {
      const one = await (await fetch(`${stack.url}/v1/batches/${id}`, { headers: { authorization: `Bearer ${token()}` } })).json();
      assert.equal(one.state, state, `GET /v1/batches/${id}`);
    }

    const { body } = await health();
    const b = body.loading.backlog;
    assert.deepEqual([b.committed, b.loaded, b.failed, b.waiting], [3, 1, 1, 1]);
    assert.ok(b.last_load_at && b.last_load_seconds_ago >= 0 && b.last_load_seconds_ago < 600);
  });

  test('a duplicate upload answers with its batch\'s state', async () => {
    const dir = cliGenerate(['--stores', '1', '--days', '3', '--seed', '41']);
    const f = fs.readdirSync(dir).filter((n) => n.endsWith('.csv')).sort()[0];
    const r = await upload(stack.url, token(), f, fs.readFileSync(path.join(dir, f)));
    assert.equal(r.body.duplicate, true);
    assert.equal(r.body.state, 'loaded');
  });

  test('an index entry without its marker (an upload that failed before its commit) is no backlog', async () => {
    const orphan = 'f'.repeat(32);
    const iso = new Date().toISOString();
    await put(`${stack.prefix}index/commits/${iso.slice(0, 10)}/${iso.slice(11, 23).replace(/:/g, '-')}Z-${orphan}`, { batch_id: orphan });
    const { body } = await health();
    assert.equal(body.loading.backlog.committed, 3);
  });
});

test('/healthz still answers while the bucket does not, and says the backlog is unknown', async () => {
  await stack.proxy.pause();
  try {
    const t0 = Date.now();
    const { body } = await health();
    assert.equal(body.ok, true);
    assert.equal(body.loading.backlog, null);
    assert.equal(body.loading.backlog_error, 'the staging bucket could not be read');
    assert.ok(Date.now() - t0 < 10_000, 'answered within seconds');
  } finally {
    await stack.proxy.resume();
  }
});

describe('helpers', () => {
  test('loading configuration: defaults, each var checked, nothing expected without a warehouse', () => {
    const table = [
      [{}, { warehouse: null, expectedSeconds: null, latestSeconds: null, sweepMinutes: 5, lookbackDays: 2, backlogCacheMs: 15000 }],
      [{ WAREHOUSE: 'postgresql' }, { warehouse: 'postgresql', expectedSeconds: 60, latestSeconds: 420, sweepMinutes: 5, lookbackDays: 2, backlogCacheMs: 15000 }],
      [{ WAREHOUSE: 'redshift', LOAD_QUEUE_WAIT_SECONDS: '0', SWEEP_EVERY_MINUTES: '1', SWEEP_MIN_AGE_SECONDS: '0' }, { warehouse: 'redshift', expectedSeconds: 30, latestSeconds: 90, sweepMinutes: 1, lookbackDays: 2, backlogCacheMs: 15000 }],
    ];
    for (const [env, want] of table) assert.deepEqual(loadingConfig(env), want, JSON.stringify(env));
    for (const [env, msg] of [
      [{ WAREHOUSE: 'mysql' }, /WAREHOUSE is "mysql", expected postgresql, redshift or nothing/],
      [{ LOAD_QUEUE_WAIT_SECONDS: '61' }, /LOAD_QUEUE_WAIT_SECONDS is "61", expected a whole number from 0 to 60/],
      [{ SWEEP_EVERY_MINUTES: 'often' }, /SWEEP_EVERY_MINUTES/],
      [{ SWEEP_LOOKBACK_DAYS: '0' }, /SWEEP_LOOKBACK_DAYS/],
    ]) assert.throws(() => loadingConfig(env), msg);
  });

  test('the days of a window, oldest first', () => {
    assert.deepEqual(commitDays('staging/', Date.parse('2026-12-01T00:30:00Z'), 2), [
      'staging/index/commits/2026-11-29/',
      'staging/index/commits/2026-11-30/',
      'staging/index/commits/2026-12-01/',
    ]);
  });

  test("the vars that repeat the queue's wait and the cron's interval equal them, locally and in production", () => {
    const toml = fs.readFileSync(path.join(WORKER_DIR, 'wrangler.toml'), 'utf8');
    const top = wranglerQueues();
    const vars = wranglerVars();
    assert.equal(Number(vars.LOAD_QUEUE_WAIT_SECONDS), top.queueConsumers['cafe-loads'].maxBatchTimeout);
    assert.deepEqual(top.crons, [`*/${vars.SWEEP_EVERY_MINUTES} * * * *`]);
    const prod = toml.slice(toml.indexOf('\n[env.production]'));
    const consumer = /\[\[env\.production\.queues\.consumers\]\]([\s\S]*?)\n\[/.exec(prod)[1];
    const prodVars = prod.slice(prod.indexOf('[env.production.vars]'));
    assert.equal(/^LOAD_QUEUE_WAIT_SECONDS = "(\d+)"/m.exec(prodVars)[1], /^max_batch_timeout = (\d+)/m.exec(consumer)[1]);
    assert.equal(`*/${/^SWEEP_EVERY_MINUTES = "(\d+)"/m.exec(prodVars)[1]} * * * *`, /\[env\.production\.triggers\]\ncrons = \["([^"]+)"\]/.exec(prod)[1]);
  });

  test('the backlog reads at most its limit of commits, and says so', async () => {
    // The worker's own S3 client, under Node, on the stack's s3s-fs: a window of
    // twelve index entries under a prefix of their own, read five keys a page.
    const s3 = new S3(
      { endpoint: stack.s3.endpoint, bucket: stack.s3.bucket, region: 'us-east-1', accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey },
      { attempts: 2, baseMs: 10, capMs: 100, totalMs: 2000, timeoutMs: 2000 },
    );
    const now = Date.now();
    for (let i = 0; i < 12; i++) {
      const t = new Date(now - 60_000 + i * 1000).toISOString();
      await put(`limit/index/commits/${t.slice(0, 10)}/${t.slice(11, 23).replace(/:/g, '-')}Z-${i.toString(16).padStart(32, '0')}`, {});
    }
    const capped = await backlog(s3, 'limit/', { now, lookbackDays: 1, limit: 8, pageKeys: 5 });
    assert.equal(capped.truncated, true);
    assert.equal(capped.committed, 0, 'entries without markers: nothing committed');
    const whole = await backlog(s3, 'limit/', { now, lookbackDays: 1, limit: 100, pageKeys: 5 });
    assert.equal(whole.truncated, false);
  });
});
