// The loop from staged to loaded, all real parts: real exports uploaded through the
// worker on workerd (Miniflare, real local Queues and the cron handler), s3s-fs as
// the bucket, the worker's consumer loading a real PostgreSQL through its runner. The
// warehouse is checked against `cafe-etl transform` + `cafe-etl load` of the same
// files into another schema: the same rows, table for table, once; after duplicate
// uploads, a redelivered message, a connection killed between COPY and commit, a
// sweep run while messages are in flight; and with a poison batch (a table object
// removed; a row the warehouse refuses) quarantined with its reason while the
// batches around it load, and the dead-letter queue receiving it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  batchIdOf,
  cliGenerate,
  cliLoad,
  cliTransform,
  cliTransformAll,
  personalData,
  psql,
  psqlSession,
  realFiles,
  startPostgres,
  startStack,
  storeOf,
  waitFor,
  putObject,
  upload,
} from './harness.js';
import { indexKeys, mintToken } from '../src/lib.js';

const SKIP = process.env.CAFE_ETL_WORKER_POSTGRES ? false : 'CAFE_ETL_WORKER_POSTGRES is not set: run scripts/test-worker, which starts PostgreSQL';

/** A fresh database of its own (harness startPostgres), spoken to with psql. */
async function database() {
  const db = await startPostgres();
  return { ...db, sql: (text) => psql(db.url, text) };
}
const TABLES = ['stores', 'products', 'transactions', 'basket_items'];

/** Twelve exports of different branches and days: real ones first, generated ones to fill. */
function pickFiles(n) {
  const real = [...realFiles('current'), ...realFiles('legacy-2020')];
  // Spread over the corpus (sorted by branch, then day): many branches, no day twice.
  const step = Math.max(1, Math.floor(real.length / n));
  const files = [];
  for (let i = 0; i < real.length && files.length < n; i += step) files.push(real[i]);
  for (let seed = 1; files.length < n; seed++) {
    const dir = cliGenerate(['--stores', '1', '--days', '1', '--seed', String(100 + seed), '--transactions-per-day', '300']);
    files.push(path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.csv'))));
  }
  return files;
}

let stack;
let wh; // the worker's database
let quiet; // a second worker on the same bucket with no queue: a batch whose message is lost
const files = {};
const ids = {};
const loadedFiles = []; // the files the warehouse must hold, in upload order

describe('from staged to loaded', { skip: SKIP }, () => {
  before(async () => {
    wh = await database();
    stack = await startStack(
      {
        WAREHOUSE: 'postgresql',
        WAREHOUSE_URL: wh.url,
        LOAD_RETRY_BASE_SECONDS: '1',
        LOAD_RETRY_CAP_SECONDS: '2',
        SWEEP_MIN_AGE_SECONDS: '0',
      },
      { queues: { consumers: { 'cafe-loads': { maxBatchTimeout: 1 } }, deadLetterConsumer: true } },
    );
    quiet = await stack.startSibling();
    const names = 'ABCDEFGHIJKL'.split('');
    const picked = pickFiles(names.length);
    for (const [i, n] of names.entries()) {
      files[n] = picked[i];
      ids[n] = await batchIdOf(fs.readFileSync(picked[i]));
    }
    assert.equal(new Set(Object.values(ids)).size, names.length, 'twelve different files');
  });

  after(async () => {
    await quiet?.stop();
    await stack?.stop();
    await wh?.stop();
  });

  const token = (file) => mintToken(stack.uploadSecret, storeOf(file), Math.floor(Date.now() / 1000) + 3600);
  const send = (url, n) => upload(url, token(files[n]), path.basename(files[n]), fs.readFileSync(files[n]));
  const loadsKey = (n) => `${stack.prefix}loads/${ids[n]}.json`;
  const failuresKey = (n) => `${stack.prefix}failures/${ids[n]}.json`;
  const json = async (key) => {
    const b = await stack.s3.client.get(key);
    return b === null ? null : JSON.parse(Buffer.from(b).toString('utf8'));
  };
  const loaded = (...names) => waitFor(`loads/ of ${names}`, async () => (await Promise.all(names.map((n) => stack.s3.client.head(loadsKey(n))))).every(Boolean));
  const ledgerCount = (n) => Number(wh.sql(`SELECT count(*) FROM loaded_batches WHERE batch_id = '${ids[n]}'`)[0][0]);
  const logs = () => stack.worker.logs;

  /** Table by table: row count and a digest of every row, in a database. */
  function digest(schema) {
    const out = {};
    for (const t of TABLES) {
      const [[count, md5]] = schema.sql(`SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM ${t} x`);
      out[t] = { count: Number(count), md5 };
    }
    out.ledger = schema.sql('SELECT batch_id FROM loaded_batches ORDER BY 1').map((r) => r[0]);
    return out;
  }

  /** The worker's warehouse holds exactly what the CLI's staging and load of the same files give. */
  async function assertSameAsCli() {
    const cli = await database();
    try {
      const root = cliTransformAll(loadedFiles.map((n) => files[n]), stack.customerKeySecret);
      cliLoad(root, cli.url);
      const want = digest(cli);
      const got = digest(wh);
      assert.deepEqual(got, want);
      assert.deepEqual(got.ledger, loadedFiles.map((n) => ids[n]).sort());
      assert.ok(got.transactions.count > 0);
      return got;
    } finally {
      await cli.stop();
    }
  }

  test('uploaded exports are loaded with no further command: the CLI load\'s rows, once', async () => {
    const answers = await Promise.all(['A', 'B', 'C'].map((n) => send(stack.url, n)));
    for (const a of answers) assert.equal(a.status, 200, a.text);
    await loaded('A', 'B', 'C');
    loadedFiles.push('A', 'B', 'C');
    const got = await assertSameAsCli();
    const rec = await json(loadsKey('A'));
    assert.deepEqual(Object.keys(rec).sort(), ['batch_id', 'loaded_at', 'plan_id', 'state', 'store', 'warehouse']);
    assert.equal(rec.state, 'loaded');
    assert.equal(rec.store, storeOf(files.A));
    assert.equal(rec.warehouse, 'postgresql');
    assert.ok(Number.isFinite(Date.parse(rec.loaded_at)));
    // One log line per load, rows per table and the lag from commit.
    const lines = logs().filter((l) => l.event === 'load' && l.outcome === 'loaded');
    assert.deepEqual(lines.flatMap((l) => l.batch_ids).sort(), [ids.A, ids.B, ids.C].sort());
    for (const l of lines) {
      assert.ok(l.duration_ms >= 0 && l.lag_ms_max >= l.lag_ms_median && l.lag_ms_median >= 0);
      assert.deepEqual(Object.keys(l.rows), TABLES);
    }
    assert.equal(lines.reduce((s, l) => s + l.rows.transactions, 0), got.transactions.count);
  });

  test('duplicate uploads, a redelivered message and a lost loads/ record load nothing twice', async () => {
    const before = digest(wh);
    assert.equal((await send(stack.url, 'A')).body.duplicate, true);
    const producer = await stack.worker.mf.getQueueProducer('LOAD_QUEUE');
    await producer.send({ batch_id: ids.B, store: storeOf(files.B), committed_at: new Date().toISOString() });
    // A load that committed and then lost its loads/ record (the isolate died): the
    // ledger says it is loaded, the record is written again, nothing is copied twice.
    await stack.s3.client.fetch('DELETE', loadsKey('C'));
    await producer.send({ batch_id: ids.C, store: storeOf(files.C), committed_at: new Date().toISOString() });
    const skipped = (id) => logs().some((l) => l.event === 'load' && l.outcome === 'already_loaded' && l.batch_id === id);
    await waitFor('the three messages', () => skipped(ids.A) && skipped(ids.B) && skipped(ids.C));
    await loaded('C');
    assert.deepEqual(digest(wh), before);
    for (const n of ['A', 'B', 'C']) assert.equal(ledgerCount(n), 1);
  });

  test('a connection killed between COPY and commit leaves nothing, and the retry loads the batch', async (t) => {
    // The ledger insert (after every COPY and MERGE) waits on this lock; the test
    // kills the worker's connection there, as a crash would end it.
    const session = psqlSession(wh.url);
    await session.run('BEGIN; LOCK TABLE loaded_batches IN SHARE MODE;');
    const waiting = (not = 0) =>
      psql(wh.url, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE 'insert into loaded_batches%' AND pid <> ${not}`)[0]?.[0];
    const transactionsBefore = Number(wh.sql('SELECT count(*) FROM transactions')[0][0]);
    let retry;
    try {
      assert.equal((await send(stack.url, 'D')).status, 200);
      const pid = await waitFor('the load waiting at its ledger insert', () => waiting());
      assert.deepEqual(psql(wh.url, `SELECT pg_terminate_backend(${pid})`), [['t']]);
      retry = await waitFor('the retry line', () => logs().find((l) => l.event === 'load' && l.outcome === 'retry' && l.batch_id === ids.D));
      // The retry is held at the same place: what the killed load did is gone.
      await waitFor('the retry waiting at its ledger insert', () => waiting(pid));
      assert.equal(Number(wh.sql(`SELECT count(*) FROM transactions WHERE batch_id = '${ids.D}'`)[0][0]), 0);
      assert.equal(Number(wh.sql('SELECT count(*) FROM transactions')[0][0]), transactionsBefore);
      assert.equal(ledgerCount('D'), 0);
    } finally {
      await session.run('COMMIT;');
      await session.close();
    }
    t.diagnostic(`retry: ${JSON.stringify(retry)}`);
    assert.equal(retry.attempts, 1);
    assert.ok(retry.delay_seconds <= 1);
    for (const s of [stack.s3.bucket, 'postgres://', 'cafe_etl_test:']) assert.ok(!JSON.stringify(retry).includes(s), JSON.stringify(retry));
    await loaded('D');
    loadedFiles.push('D');
    await assertSameAsCli();
    assert.equal(ledgerCount('D'), 1);
  });

  test('a sweep run while messages are in flight enqueues them again and they load once', async (t) => {
    // Loads wait on the load lock (the plan's first statement) while the sweep runs.
    const session = psqlSession(wh.url);
    await session.run('BEGIN; LOCK TABLE load_lock IN ACCESS EXCLUSIVE MODE;');
    let sweepLine;
    try {
      const answers = await Promise.all(['E', 'F'].map((n) => send(stack.url, n)));
      for (const a of answers) assert.equal(a.status, 200, a.text);
      // The worker's connection waits on the lock: at the plan's LOCK TABLE, or at the
      // schema's load_lock row when this isolate applies the schema first.
      const held = await waitFor('a load waiting on the load lock', () => psql(wh.url, `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name = 'cafe-etl-worker'`)[0]);
      t.diagnostic(`held at: ${held[0].slice(0, 60)}`);
      const before = logs().length;
      await stack.worker.scheduled();
      sweepLine = await waitFor('the sweep line', () => logs().slice(before).find((l) => l.event === 'sweep'));
    } finally {
      await session.run('COMMIT;');
      await session.close();
    }
    assert.equal(sweepLine.outcome, 'swept');
    assert.equal(sweepLine.enqueued, 2, JSON.stringify(sweepLine));
    assert.equal(sweepLine.loaded, 4); // A to D
    await loaded('E', 'F');
    await waitFor('the sweep\'s messages', () => [ids.E, ids.F].every((id) => logs().filter((l) => l.event === 'load' && (l.batch_id === id || l.batch_ids?.includes(id))).length >= 2));
    loadedFiles.push('E', 'F');
    await assertSameAsCli();
    for (const n of ['E', 'F']) assert.equal(ledgerCount(n), 1);
    // A sweep now finds nothing to do.
    const before = logs().length;
    await stack.worker.scheduled();
    const again = await waitFor('the sweep line', () => logs().slice(before).find((l) => l.event === 'sweep'));
    assert.equal(again.enqueued, 0);
  });

  test('a batch whose message was lost is found by the sweep; one with a table object removed is quarantined while the others load', async () => {
    for (const n of ['G', 'H', 'I']) {
      const r = await send(quiet.url, n);
      assert.equal(r.status, 200, r.text);
      assert.equal(quiet.logs.find((l) => l.event === 'upload' && l.batch_id === ids[n]).queued, 'no_queue');
    }
    assert.equal((await stack.s3.client.fetch('DELETE', `${stack.prefix}transactions/${ids.G}.csv.gz`)).status, 204);
    const before = logs().length;
    await stack.worker.scheduled();
    const sweepLine = await waitFor('the sweep line', () => logs().slice(before).find((l) => l.event === 'sweep'));
    assert.equal(sweepLine.enqueued, 3);
    await loaded('H', 'I');
    loadedFiles.push('H', 'I');
    const failure = await waitFor('failures/ of G', () => json(failuresKey('G')));
    assert.deepEqual(Object.keys(failure).sort(), ['batch_id', 'code', 'failed_at', 'reason', 'state', 'store']);
    assert.equal(failure.state, 'failed');
    assert.equal(failure.code, 'missing_object');
    assert.equal(failure.store, storeOf(files.G));
    assert.match(failure.reason, /transactions table file/);
    for (const secretish of [stack.s3.bucket, stack.prefix, ids.G + '.csv.gz']) assert.ok(!failure.reason.includes(secretish), failure.reason);
    assert.deepEqual(wh.sql(`SELECT code, reason FROM load_failures WHERE batch_id = '${ids.G}'`), [[failure.code, failure.reason]]);
    await waitFor('the dead-letter queue', () => logs().some((l) => l.event === 'dead_letter' && l.batch_id === ids.G && l.code === 'missing_object'));
    assert.equal(ledgerCount('G'), 0);
    await assertSameAsCli();
  });

  test('a batch with a row the warehouse refuses is quarantined with its reason, and the batch in its group loads', async () => {
    // A constraint no real warehouse has: the transactions of batch J are refused.
    wh.sql(`ALTER TABLE transactions ADD CONSTRAINT test_refuses_one_batch CHECK (batch_id <> '${ids.J}')`);
    try {
      for (const n of ['J', 'K']) assert.equal((await send(quiet.url, n)).status, 200);
      const before = logs().length;
      await stack.worker.scheduled();
      const sweepLine = await waitFor('the sweep line', () => logs().slice(before).find((l) => l.event === 'sweep'));
      assert.equal(sweepLine.enqueued, 2);
      assert.equal(sweepLine.quarantined, 1); // G stays quarantined: never enqueued again
      await loaded('K');
      loadedFiles.push('K');
      const failure = await waitFor('failures/ of J', () => json(failuresKey('J')));
      assert.equal(failure.code, '23514', JSON.stringify(failure));
      assert.match(failure.reason, /check constraint/);
      assert.deepEqual(wh.sql(`SELECT code FROM load_failures WHERE batch_id = '${ids.J}'`), [['23514']]);
      await waitFor('the dead-letter queue', () => logs().some((l) => l.event === 'dead_letter' && l.batch_id === ids.J));
      assert.equal(ledgerCount('J'), 0);
      // J and K came in one group (one sendBatch): the group failed, then each was
      // loaded alone, which isolated J.
      const split = logs().find((l) => l.event === 'load' && l.outcome === 'group_failed' && l.batch_ids.includes(ids.J));
      assert.ok(split, 'the group of J and K failed as a whole first');
      assert.deepEqual([...split.batch_ids].sort(), [ids.J, ids.K].sort());
      assert.equal(split.code, '23514');
    } finally {
      wh.sql('ALTER TABLE transactions DROP CONSTRAINT IF EXISTS test_refuses_one_batch');
    }
    await assertSameAsCli();
  });

  test('a sweep leaves a batch committed less than SWEEP_MIN_AGE_SECONDS ago to its own message', async () => {
    // A worker with wrangler.toml's own sweep settings (60 s), loading the same warehouse.
    const w = await stack.startSibling({ vars: { WAREHOUSE: 'postgresql', WAREHOUSE_URL: wh.url }, queues: {} });
    try {
      assert.equal((await send(quiet.url, 'L')).status, 200);
      await w.scheduled();
      const line = await waitFor('the sweep line', () => w.logs.find((l) => l.event === 'sweep'));
      // L is neither loaded nor quarantined, yet not enqueued: it is young. Older
      // batches (this file's run may be shorter than a minute) are all loaded or
      // quarantined, so nothing else is enqueued either.
      assert.equal(line.enqueued, 0, JSON.stringify(line));
      assert.ok(line.young >= 1);
      assert.equal(line.young + line.candidates, 12);
      assert.equal(line.candidates, line.loaded + line.quarantined + line.uncommitted);
      assert.equal(await stack.s3.client.head(loadsKey('L')), null);
    } finally {
      await w.stop();
    }
  });

  test('a batch staged with another customer-key secret is quarantined, and the batch in its group loads', async () => {
    // M: staged by the CLI under a secret that is not the worker's, its objects, marker
    // and commits index entry put into the bucket as an upload would leave them.
    const dir = cliGenerate(['--stores', '1', '--days', '1', '--seed', '977', '--transactions-per-day', '200']);
    files.M = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.csv')));
    ids.M = await batchIdOf(fs.readFileSync(files.M));
    const out = cliTransform(files.M, 'another demo secret, not the worker\'s');
    const marker = JSON.parse(fs.readFileSync(path.join(out, 'batches', `${ids.M}.json`), 'utf8'));
    const ours = wh.sql('SELECT DISTINCT customer_key_id FROM loaded_batches').map((r) => r[0]);
    assert.equal(ours.length, 1);
    assert.notEqual(marker.customer_key_id, ours[0], 'staged with another secret');
    for (const t of TABLES) await putObject(stack.s3, `${stack.prefix}${t}/${ids.M}.csv.gz`, path.join(out, t, `${ids.M}.csv.gz`));
    await putObject(stack.s3, indexKeys(stack.prefix, storeOf(files.M), ids.M, Date.now() - 1000).commit, Buffer.alloc(0));
    await putObject(stack.s3, `${stack.prefix}batches/${ids.M}.json`, path.join(out, 'batches', `${ids.M}.json`));
    // L (left young by the test before) is swept with M: one group, refused as a
    // whole, then each alone: L loads, M is quarantined.
    const before = logs().length;
    await stack.worker.scheduled();
    const sweepLine = await waitFor('the sweep line', () => logs().slice(before).find((l) => l.event === 'sweep'));
    assert.equal(sweepLine.enqueued, 2, JSON.stringify(sweepLine));
    await loaded('L');
    loadedFiles.push('L');
    const failure = await waitFor('failures/ of M', () => json(failuresKey('M')));
    assert.equal(failure.code, 'mixed_customer_keys', JSON.stringify(failure));
    assert.match(failure.reason, /staged with another customer-key secret/);
    assert.match(failure.reason, /restage it with the warehouse's secret/);
    assert.deepEqual(wh.sql(`SELECT code, reason FROM load_failures WHERE batch_id = '${ids.M}'`), [[failure.code, failure.reason]]);
    await waitFor('the dead-letter queue', () => logs().some((l) => l.event === 'dead_letter' && l.batch_id === ids.M && l.code === 'mixed_customer_keys'));
    assert.equal(ledgerCount('M'), 0);
    assert.equal(Number(wh.sql(`SELECT count(*) FROM transactions WHERE batch_id = '${ids.M}'`)[0][0]), 0);
    // Still one secret's keys in the warehouse, and the CLI load's rows.
    assert.deepEqual(wh.sql('SELECT DISTINCT customer_key_id FROM loaded_batches').map((r) => r[0]), ours);
    await assertSameAsCli();
  });

  test('no name or card number of the uploaded files is in any log line or loader object', async () => {
    const text = [stack.worker.stdout.join('\n'), quiet.stdout.join('\n')];
    for (const k of await stack.s3.client.keys(stack.prefix)) {
      if (/\/(loads|failures|manifests)\//.test(k)) text.push(Buffer.from(await stack.s3.client.get(k)).toString('utf8'));
    }
    text.push(wh.sql('SELECT reason FROM load_failures').flat().join('\n'));
    const all = text.join('\n');
    let checked = 0;
    for (const f of Object.values(files)) {
      const { names, cards } = personalData(f);
      for (const v of [...names, ...cards]) {
        checked++;
        assert.ok(!all.includes(v), 'a name or card number leaked');
      }
    }
    assert.ok(checked > 0);
  });
});
