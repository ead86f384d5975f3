// The loop from staged to loaded with WAREHOUSE=redshift: real exports uploaded to the
// worker on workerd (real local Queues), s3s-fs as the bucket, the consumer loading
// through the Redshift runner into the Data API stand-in (tests/redshift-data-api:
// it checks every SigV4 signature and request shape, parses every statement with
// sqlparser's Redshift dialect and keeps a ledger; it runs no SQL, so the COPYs'
// manifests are checked here, in the bucket the consumer wrote them to).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { batchIdOf, cliGenerate, cliTransform, putObject, realFiles, startStack, storeOf, upload, waitFor } from './harness.js';
import { startStandin } from './standin.js';
import { mintToken } from '../src/lib.js';

const ROLE_ARN = 'arn:aws:iam::123456789012:role/cafe-copy';
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:cafe-loader-AbCdEf';
const TABLES = ['stores', 'products', 'transactions', 'basket_items'];

let standin;
let stack;
const files = {};
const ids = {};

describe('from staged to loaded, Redshift through the consumer', () => {
  before(async () => {
    standin = await startStandin({ region: 'eu-west-2' });
    stack = await startStack(
      {
        WAREHOUSE: 'redshift',
        REDSHIFT_REGION: 'eu-west-2',
        REDSHIFT_DATABASE: 'dev',
        REDSHIFT_WORKGROUP: 'cafe',
        REDSHIFT_SECRET_ARN: SECRET_ARN,
        REDSHIFT_IAM_ROLE: ROLE_ARN,
        REDSHIFT_DATA_API_URL: standin.endpoint,
        AWS_ACCESS_KEY_ID: standin.accessKeyId,
        AWS_SECRET_ACCESS_KEY: standin.secretAccessKey,
        REDSHIFT_POLL_MS: '20',
        REDSHIFT_POLL_CAP_MS: '200',
        LOAD_RETRY_BASE_SECONDS: '1',
        LOAD_RETRY_CAP_SECONDS: '2',
      },
      { queues: { consumers: { 'cafe-loads': { maxBatchTimeout: 1 } }, deadLetterConsumer: true } },
    );
    const real = realFiles('current');
    for (const [i, n] of ['A', 'B'].entries()) {
      files[n] = real[i * Math.max(1, Math.floor(real.length / 2))];
      ids[n] = await batchIdOf(fs.readFileSync(files[n]));
    }
    assert.notEqual(ids.A, ids.B);
  });

  after(async () => {
    await stack?.stop();
    await standin?.stop();
  });

  const send = (n) => {
    const token = mintToken(stack.uploadSecret, storeOf(files[n]), Math.floor(Date.now() / 1000) + 3600);
    return upload(stack.url, token, path.basename(files[n]), fs.readFileSync(files[n]));
  };
  const json = async (key) => {
    const b = await stack.s3.client.get(key);
    return b === null ? null : JSON.parse(Buffer.from(b).toString('utf8'));
  };
  const s3Url = (key) => `s3://${stack.s3.bucket}/${key}`;

  test('an upload reaches the stand-in as one signed batch whose COPYs read manifests the consumer put in the bucket; loads/ follows the ledger', async () => {
    assert.equal((await send('A')).status, 200);
    const rec = await waitFor('loads/ of A', () => json(`${stack.prefix}loads/${ids.A}.json`));
    const log = await standin.log();
    for (const r of log.requests) assert.equal(r.signature, 'ok', `${r.action}: ${r.signature}`);
    // The load: one BatchExecuteStatement holding every COPY (one transaction).
    const loads = log.requests.filter((r) => r.action === 'BatchExecuteStatement' && r.body.Sqls.some((s) => /^COPY /.test(s)));
    assert.equal(loads.length, 1, 'one batch with the COPYs');
    const body = loads[0].body;
    assert.equal(body.WorkgroupName, 'cafe');
    assert.equal(body.SecretArn, SECRET_ARN);
    assert.equal(body.StatementName, `cafe-etl load ${rec.plan_id}`);
    const batch = log.batches.find((b) => b.request.ClientToken === body.ClientToken);
    assert.equal(batch.status, 'FINISHED');
    for (const s of batch.subs) assert.equal(s.parse_error, null, s.sql.slice(0, 200));
    const copies = body.Sqls.filter((s) => /^COPY /.test(s));
    assert.equal(copies.length, TABLES.length);
    for (const sql of copies) {
      assert.ok(sql.includes(`IAM_ROLE '${ROLE_ARN}'`), sql);
      assert.match(sql, /MANIFEST/);
      const url = /FROM '(s3:\/\/[^']+)'/.exec(sql)[1];
      const table = TABLES.find((t) => url.endsWith(`/${t}.manifest`));
      assert.ok(table, url);
      assert.equal(url, s3Url(`${stack.prefix}manifests/${rec.plan_id}/${table}.manifest`));
      // The manifest is in the bucket and lists the batch's object of that table.
      const manifest = await json(`${stack.prefix}manifests/${rec.plan_id}/${table}.manifest`);
      assert.ok(manifest, `the ${table} manifest is in the bucket`);
      const key = `${stack.prefix}${table}/${ids.A}.csv.gz`;
      assert.deepEqual(
        manifest.entries.map((e) => e.url),
        [s3Url(key)],
      );
      const head = await stack.s3.client.head(key);
      assert.ok(head, `${key} exists`);
      assert.equal(manifest.entries[0].mandatory, true);
      assert.equal(manifest.entries[0].meta.content_length, Number(head.get('content-length')));
    }
    // loads/<id>.json after the stand-in's ledger listed the batch, with its time.
    assert.deepEqual(Object.keys(rec).sort(), ['batch_id', 'loaded_at', 'plan_id', 'state', 'store', 'warehouse']);
    assert.equal(rec.state, 'loaded');
    assert.equal(rec.warehouse, 'redshift');
    assert.equal(rec.store, storeOf(files.A));
    assert.ok(ids.A in log.ledger, "the stand-in's ledger holds the batch");
    assert.ok(Number.isFinite(Date.parse(rec.loaded_at)), rec.loaded_at);
    // The warehouse's customer key ids were read (the core's query) before the plan.
    const keyReads = log.requests.filter((r) => r.action === 'BatchExecuteStatement' && r.body.Sqls.length === 1 && /^SELECT DISTINCT customer_key_id FROM loaded_batches/.test(r.body.Sqls[0]));
    assert.ok(keyReads.length >= 1, 'the key ids query was sent');
    assert.ok(log.requests.indexOf(keyReads[0]) < log.requests.indexOf(loads[0]), 'before the load');
    const ledgerReads = log.requests.filter((r) => r.action === 'BatchExecuteStatement' && r.body.Sqls.length === 1 && r.body.Sqls[0].includes(ids.A) && /^SELECT batch_id, loaded_at FROM loaded_batches/.test(r.body.Sqls[0]));
    assert.ok(ledgerReads.length >= 2, 'the ledger was read before and after the load');
    const logged = stack.worker.stdout.join('\n');
    for (const s of [standin.secretAccessKey, SECRET_ARN, ROLE_ARN]) assert.ok(!logged.includes(s), 'no credential or ARN in the log');
  });

  test('a batch staged with another customer-key secret than the warehouse\'s is quarantined, not loaded', async () => {
    // M: staged by the CLI under another secret, put in the bucket, announced by a message.
    const dir = cliGenerate(['--stores', '1', '--days', '1', '--seed', '978', '--transactions-per-day', '100']);
    files.M = path.join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.csv')));
    ids.M = await batchIdOf(fs.readFileSync(files.M));
    const out = cliTransform(files.M, 'another demo secret, not the worker\'s');
    for (const t of TABLES) await putObject(stack.s3, `${stack.prefix}${t}/${ids.M}.csv.gz`, path.join(out, t, `${ids.M}.csv.gz`));
    await putObject(stack.s3, `${stack.prefix}batches/${ids.M}.json`, path.join(out, 'batches', `${ids.M}.json`));
    const producer = await stack.worker.mf.getQueueProducer('LOAD_QUEUE');
    await producer.send({ batch_id: ids.M, store: storeOf(files.M), committed_at: new Date().toISOString() });
    const failure = await waitFor('failures/ of M', () => json(`${stack.prefix}failures/${ids.M}.json`));
    assert.equal(failure.code, 'mixed_customer_keys', JSON.stringify(failure));
    assert.match(failure.reason, /staged with another customer-key secret/);
    const log = await standin.log();
    assert.ok(!(ids.M in log.ledger));
    assert.ok(!log.requests.some((r) => r.action === 'BatchExecuteStatement' && r.body.Sqls.some((q) => q.includes(ids.M) && /^COPY |^INSERT INTO tmp_plan_batches/.test(q))), 'no load of M was submitted');
    // The stand-in answered the key-id query with A's key: the warehouse's.
    assert.deepEqual(new Set(Object.values(log.key_ids ?? {})).size, 1);
  });

  test('a failing COPY quarantines the batch: failures/, load_failures statements, the dead-letter queue', async () => {
    await standin.faults({
      fail_marker: 'COPY tmp_copy_transactions',
      fail_error: `Load into table 'tmp_copy_transactions' failed. Check 'sys_load_error_detail' system table for details. (${s3Url('staging/x')})`,
    });
    assert.equal((await send('B')).status, 200);
    const failure = await waitFor('failures/ of B', () => json(`${stack.prefix}failures/${ids.B}.json`));
    assert.deepEqual(Object.keys(failure).sort(), ['batch_id', 'code', 'failed_at', 'reason', 'state', 'store']);
    assert.equal(failure.state, 'failed');
    assert.equal(failure.code, 'copy_failed');
    assert.equal(failure.store, storeOf(files.B));
    assert.match(failure.reason, /the COPY into transactions\) failed: ERROR: Load into table 'tmp_copy_transactions' failed/);
    for (const s of [stack.s3.bucket, 's3://', '123456789012']) assert.ok(!failure.reason.includes(s), failure.reason);
    assert.equal(await stack.s3.client.head(`${stack.prefix}loads/${ids.B}.json`), null);
    const log = await standin.log();
    assert.ok(!(ids.B in log.ledger), 'nothing of B committed');
    // The quarantine's statements went to the warehouse too (load_failures).
    const recorded = log.batches.filter((b) => b.status === 'FINISHED' && b.request.Sqls.some((s) => s.includes('load_failures') && s.includes(ids.B)));
    assert.ok(recorded.length >= 1, 'load_failures statements ran');
    await waitFor('the dead-letter queue', () => stack.worker.logs.some((l) => l.event === 'dead_letter' && l.batch_id === ids.B && l.code === 'copy_failed'));
    const line = stack.worker.logs.find((l) => l.event === 'load' && l.outcome === 'quarantined' && l.batch_id === ids.B);
    assert.equal(line.dead_letter, 'sent');
  });
});
