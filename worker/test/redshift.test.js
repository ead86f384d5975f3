// The Redshift runner (src/loader/redshift.js): its pure parts under Node, then the
// runner itself on workerd against the Data API stand-in (tests/redshift-data-api),
// which checks every request's SigV4 signature and shape and parses every statement
// with sqlparser's Redshift dialect. No Redshift runs here; see the stand-in's README
// for what this proves and what it cannot.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { dataApiLimits, ledgerQuery, loadPlan, quarantineStatements, warehouseSchema } from '../../pkg/cafe_etl.js';
import { batchSqls, classifyAnswer, createRedshift, decodeRecords, errorType, redshiftConfig, safeErrorText } from '../src/loader/redshift.js';
import { cliTransform, realFiles, secret } from './harness.js';
import { startRunnerWorker, startStandin } from './standin.js';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-2:123456789012:secret:cafe-loader-AbCdEf';
const ROLE_ARN = 'arn:aws:iam::123456789012:role/cafe-copy';

const base = {
  ENVIRONMENT: 'development',
  REDSHIFT_REGION: 'eu-west-2',
  REDSHIFT_DATABASE: 'dev',
  REDSHIFT_WORKGROUP: 'cafe',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE0000',
  AWS_SECRET_ACCESS_KEY: 'not-a-real-secret',
};

// ---------------------------------------------------------------------------
// Pure parts

test('redshiftConfig: serverless or provisioned, Secrets Manager or IAM, checked', () => {
  const cases = [
    [{}, { workgroup: 'cafe', clusterId: null, secretArn: null, dbUser: null, endpoint: 'https://redshift-data.eu-west-2.amazonaws.com' }],
    [{ REDSHIFT_SECRET_ARN: SECRET_ARN }, { workgroup: 'cafe', secretArn: SECRET_ARN }],
    [{ REDSHIFT_WORKGROUP: '', REDSHIFT_CLUSTER_ID: 'cafe-dw', REDSHIFT_DB_USER: 'loader' }, { workgroup: null, clusterId: 'cafe-dw', dbUser: 'loader' }],
    [{ REDSHIFT_WORKGROUP: '', REDSHIFT_CLUSTER_ID: 'cafe-dw' }, { clusterId: 'cafe-dw', dbUser: null, secretArn: null }],
    [{ REDSHIFT_DATA_API_URL: 'http://127.0.0.1:9999/' }, { endpoint: 'http://127.0.0.1:9999' }],
    [{ REDSHIFT_WAIT_MS: '1500' }, { waitMs: 1500 }],
    [{ REDSHIFT_CLUSTER_ID: 'cafe-dw' }, /not both/],
    [{ REDSHIFT_WORKGROUP: '' }, /REDSHIFT_WORKGROUP \(serverless\) or REDSHIFT_CLUSTER_ID/],
    [{ REDSHIFT_DB_USER: 'loader' }, /REDSHIFT_DB_USER is for a provisioned cluster/],
    [{ REDSHIFT_DB_USER: 'loader', REDSHIFT_SECRET_ARN: SECRET_ARN }, /not both/],
    [{ REDSHIFT_SECRET_ARN: 'my-secret' }, /not a Secrets Manager secret ARN/],
    [{ REDSHIFT_WORKGROUP: '', REDSHIFT_CLUSTER_ID: 'Cafe_DW' }, /not a cluster identifier/],
    [{ REDSHIFT_DATABASE: '' }, /REDSHIFT_DATABASE is not set/],
    [{ REDSHIFT_REGION: 'mars' }, /REDSHIFT_REGION/],
    [{ AWS_SECRET_ACCESS_KEY: '' }, /AWS_SECRET_ACCESS_KEY is not set/],
    [{ ENVIRONMENT: 'production', REDSHIFT_DATA_API_URL: 'http://127.0.0.1:9999' }, /https:\/\/ URL outside local development/],
    [{ REDSHIFT_WAIT_MS: 'soon' }, /REDSHIFT_WAIT_MS is "soon"/],
  ];
  for (const [vars, want] of cases) {
    const env = { ...base, ...vars };
    if (want instanceof RegExp) {
      assert.throws(
        () => redshiftConfig(env),
        (e) => e.name === 'WarehouseError' && e.code === 'misconfigured' && e.transient === true && want.test(e.message) && !e.message.includes('not-a-real-secret'),
        JSON.stringify(vars),
      );
    } else {
      const cfg = redshiftConfig(env);
      for (const [k, v] of Object.entries(want)) assert.equal(cfg[k], v, `${JSON.stringify(vars)}: ${k}`);
    }
  }
});

test('Data API errors: throttling and 5xx retried and transient, refusals of the request permanent', () => {
  const cases = [
    [400, 'ThrottlingException', 'throttled', true, true],
    [400, 'com.amazonaws.redshiftdata#ThrottlingException', 'throttled', true, true],
    [400, 'ActiveStatementsExceededException', 'throttled', true, true],
    [429, '', 'throttled', true, true],
    [500, 'InternalServerException', 'unavailable', true, true],
    [500, 'BatchExecuteStatementException', 'unavailable', true, true],
    [503, '', 'unavailable', true, true],
    [400, 'ValidationException', 'invalid_request', false, false],
    [400, 'ResourceNotFoundException', 'invalid_request', false, false],
    [403, 'InvalidSignatureException', 'access_denied', true, false],
    [400, 'AccessDeniedException', 'access_denied', true, false],
    [400, 'ExpiredTokenException', 'access_denied', true, true],
  ];
  for (const [status, type, code, transient, retry] of cases) {
    assert.deepEqual(classifyAnswer(status, type), { code, transient, retry }, `${status} ${type}`);
  }
  assert.equal(errorType('SerializationException:http://internal.amazon.com/coral/'), 'SerializationException');
});

test("Redshift's error text is kept short, without S3 URLs, ARNs or credentials", () => {
  const cases = [
    ["Load into table 'tmp_copy_transactions' failed. Check 'sys_load_error_detail' system table for details.", /^Load into table 'tmp_copy_transactions' failed/],
    ["S3ServiceException:Access Denied,Status 403 for s3://cafe-staging/staging/manifests/x/transactions.manifest", /s3:\/\/…$/],
    [`Not authorized to get credentials of role ${ROLE_ARN}`, /role arn:…$/],
    ["CREDENTIALS 'aws_access_key_id=AKIAABCDEFGHIJKLMNOP;aws_secret_access_key=abc'", /^CREDENTIALS=…;aws_secret_access_key=…$/],
    ['x'.repeat(1000), /^x{299}…$/],
  ];
  for (const [text, want] of cases) {
    const safe = safeErrorText(text);
    assert.match(safe, want, text.slice(0, 60));
    assert.ok(!/cafe-staging|123456789012|AKIAABCDEFGHIJKLMNOP|secret_access_key=abc/.test(safe), safe);
    assert.ok(safe.length <= 300);
  }
});

test('createRedshift reads the environment itself when given no parsed configuration', () => {
  assert.equal(createRedshift({ env: base }).dialect, 'redshift');
  assert.equal(createRedshift({ cfg: base }).dialect, 'redshift');
  assert.throws(() => createRedshift({ env: { ...base, REDSHIFT_DATABASE: '' } }), /REDSHIFT_DATABASE is not set/);
});

test('safeErrorText, on random texts around URLs, ARNs and keys: none survives, never longer than 300', () => {
  // A seeded generator (mulberry32), so a failure repeats.
  let seed = 0x9e3779b9;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (xs) => xs[Math.floor(rand() * xs.length)];
  const words = ['Load', 'into', 'table', "'transactions'", 'failed.', 'Check', "'sys_load_error_detail'", '\n', '\t', ',', ';', '(', ')', "'", '"'];
  const secrets = ['s3://cafe-staging/staging/x.manifest', ROLE_ARN, SECRET_ARN, 'AKIAABCDEFGHIJKLMNOP', 'ASIAABCDEFGHIJKLMNOP'];
  for (let i = 0; i < 500; i++) {
    const parts = [];
    const n = 1 + Math.floor(rand() * 60);
    for (let j = 0; j < n; j++) parts.push(rand() < 0.15 ? pick(secrets) : pick(words));
    const text = parts.join(rand() < 0.5 ? ' ' : '');
    const safe = safeErrorText(text);
    assert.ok(safe.length <= 300, `${safe.length}`);
    assert.doesNotMatch(safe, /cafe-staging|123456789012|AKIAABCDEFGHIJKLMNOP|ASIAABCDEFGHIJKLMNOP|\s\s/, `${text} -> ${safe}`);
  }
});

test("GetStatementResult's typed records become plain objects", () => {
  const meta = [{ name: 'batch_id', typeName: 'varchar' }, { name: 'loaded_at', typeName: 'timestamp' }, { name: 'n' }, { name: 'f' }, { name: 'ok' }, { name: 'b' }];
  const rows = decodeRecords(meta, [
    [{ stringValue: 'abc' }, { stringValue: '2026-12-01 23:00:00' }, { longValue: 7 }, { doubleValue: 1.5 }, { booleanValue: true }, { blobValue: btoa('hi') }],
    [{ stringValue: 'def' }, { isNull: true }, { longValue: 0 }, { isNull: true }, { booleanValue: false }, { isNull: true }],
  ]);
  assert.deepEqual(rows, [
    { batch_id: 'abc', loaded_at: '2026-12-01 23:00:00', n: 7, f: 1.5, ok: true, b: new Uint8Array([104, 105]) },
    { batch_id: 'def', loaded_at: null, n: 0, f: null, ok: false, b: null },
  ]);
  assert.deepEqual(decodeRecords([], []), []);
});

test("a load that cannot go in one Data API batch is refused before any call, with the core's limits", () => {
  const limits = dataApiLimits();
  assert.equal(limits.maxBatchStatements, 40);
  assert.ok(limits.maxStatementBytes >= 64 * 1024 && limits.maxStatementBytes <= 100 * 1024, `${limits.maxStatementBytes}`);
  const cases = [
    [['SELECT 1', { kind: 'sql', sql: 'SELECT 2' }], null],
    [Array.from({ length: limits.maxBatchStatements + 1 }, () => 'SELECT 1'), /41 statements; one Data API batch \(one transaction\) takes at most 40/],
    [['SELECT 1', `SELECT '${'x'.repeat(limits.maxStatementBytes)}'`], /statement 2 of 2 \(SELECT\) is \d+ bytes; the Data API takes at most/],
    [[{ kind: 'copy', table: 'transactions', sql: 'COPY x FROM y' + ' '.repeat(limits.maxStatementBytes) }], /the COPY into transactions/],
    [['BEGIN', 'SELECT 1'], /transaction control/],
    [['SELECT 1', ''], /statement 2 of 2 has no SQL/],
  ];
  for (const [statements, want] of cases) {
    if (want === null) assert.deepEqual(batchSqls(statements, limits), ['SELECT 1', 'SELECT 2']);
    else assert.throws(() => batchSqls(statements, limits), (e) => e.code !== undefined && e.transient === false && want.test(e.message));
  }
});

// ---------------------------------------------------------------------------
// On workerd, against the stand-in

/** Real batches staged by the CLI: their markers and table sizes, as the consumer reads them. */
function stagedBatches(n) {
  const files = realFiles('current').slice(0, n);
  const customerKey = secret();
  return files.map((file) => {
    const out = cliTransform(file, customerKey);
    const [marker] = fs.readdirSync(path.join(out, 'batches'));
    const report = JSON.parse(fs.readFileSync(path.join(out, 'batches', marker), 'utf8'));
    const id = marker.replace(/\.json$/, '');
    const sizes = Object.fromEntries(['stores', 'products', 'transactions', 'basket_items'].map((t) => [t, fs.statSync(path.join(out, t, `${id}.csv.gz`)).size]));
    return { marker: report, sizes, id };
  });
}

function redshiftPlan(batches) {
  return loadPlan({
    batches: batches.map(({ marker, sizes }) => ({ marker, sizes })),
    dialect: 'redshift',
    s3: { url: 's3://cafe-staging/staging', iamRole: ROLE_ARN, region: 'eu-west-2' },
  });
}

/** The Data API requests the stand-in saw, by action. */
function byAction(log, action) {
  return log.requests.filter((r) => r.action === action);
}

test('the Redshift runner on workerd against the Data API stand-in', async (t) => {
  const standin = await startStandin({ region: 'eu-west-2' });
  const bindings = {
    ...base,
    REDSHIFT_DATA_API_URL: standin.endpoint,
    AWS_ACCESS_KEY_ID: standin.accessKeyId,
    AWS_SECRET_ACCESS_KEY: standin.secretAccessKey,
    REDSHIFT_SECRET_ARN: SECRET_ARN,
    REDSHIFT_POLL_MS: '20',
    REDSHIFT_POLL_CAP_MS: '200',
    REDSHIFT_RETRY_BASE_MS: '10',
    REDSHIFT_RETRY_CAP_MS: '50',
  };
  const worker = await startRunnerWorker(bindings);
  t.after(async () => {
    await worker.stop();
    await standin.stop();
  });
  const batches = stagedBatches(3);
  const plan = redshiftPlan(batches);
  const ids = batches.map((b) => b.id).sort();

  await t.test("a real plan's statements arrive signed, well-formed, all parsed, in one batch; the ledger query then lists its batches", async () => {
    await standin.reset();
    const out = await worker.run(plan.statements, { planId: plan.planId });
    assert.equal(out.ok, true, JSON.stringify(out.error));
    assert.deepEqual(out.rows, [], 'the plan ends with a statement without rows');
    const logged = JSON.stringify(out.logs);
    assert.ok(out.logs.some((l) => l.msg === 'redshift batch finished'));
    for (const s of [standin.secretAccessKey, standin.accessKeyId, SECRET_ARN, ROLE_ARN]) assert.ok(!logged.includes(s), 'no credential or ARN in the log lines');
    const log = await standin.log();
    assert.ok(log.requests.length >= 2);
    for (const r of log.requests) assert.equal(r.signature, 'ok', `${r.action}: ${r.signature}`);
    const submits = byAction(log, 'BatchExecuteStatement');
    assert.equal(submits.length, 1, 'one BatchExecuteStatement: one transaction');
    const body = submits[0].body;
    assert.deepEqual(body.Sqls, plan.statements.map((s) => s.sql));
    assert.equal(body.Database, 'dev');
    assert.equal(body.WorkgroupName, 'cafe');
    assert.equal(body.SecretArn, SECRET_ARN);
    assert.equal(body.ClusterIdentifier, undefined);
    assert.equal(body.DbUser, undefined);
    assert.equal(body.StatementName, `cafe-etl load ${plan.planId}`);
    assert.ok(body.ClientToken.length >= 1 && body.ClientToken.length <= 64);
    assert.ok(body.ClientToken.startsWith(plan.planId.slice(0, 27)));
    assert.ok(byAction(log, 'DescribeStatement').length >= 1, 'polled');
    const [batch] = log.batches;
    assert.equal(batch.status, 'FINISHED');
    for (const s of batch.subs) assert.equal(s.parse_error, null, `sqlparser's Redshift dialect refused: ${s.sql.slice(0, 200)}`);
    assert.ok(batch.subs.some((s) => s.kind === 'Copy'), 'the COPYs are among them');
    assert.deepEqual(Object.keys(log.ledger).sort(), ids, "the stand-in's ledger holds the plan's batches");

    const ledger = await worker.run([ledgerQuery(ids, 'redshift')]);
    assert.equal(ledger.ok, true, JSON.stringify(ledger.error));
    assert.deepEqual(ledger.rows.map((r) => r.batch_id).sort(), ids);
    for (const r of ledger.rows) assert.match(r.loaded_at, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
    const after = await standin.log();
    assert.equal(byAction(after, 'GetStatementResult').length, 1);
    assert.match(byAction(after, 'GetStatementResult')[0].body.Id, /^[0-9a-f-]{36}:1$/, "the sub-statement's id");
  });

  await t.test("the schema and a quarantine go through the runner too, every statement parsing", async () => {
    await standin.reset();
    const schema = await worker.run(warehouseSchema('redshift'));
    assert.equal(schema.ok, true, JSON.stringify(schema.error));
    const failure = { batch_id: ids[0], store: 'Leeds', code: 'copy_failed', reason: 'the COPY into transactions failed' };
    const quarantine = await worker.run(quarantineStatements(failure, 'redshift'));
    assert.equal(quarantine.ok, true, JSON.stringify(quarantine.error));
    const log = await standin.log();
    assert.equal(log.batches.length, 2);
    for (const b of log.batches) {
      assert.equal(b.status, 'FINISHED');
      for (const s of b.subs) assert.equal(s.parse_error, null, `sqlparser's Redshift dialect refused: ${s.sql.slice(0, 200)}`);
    }
  });

  await t.test('results come back page by page', async () => {
    await standin.reset();
    assert.equal((await worker.run(plan.statements, { planId: plan.planId })).ok, true);
    await standin.faults({ page_rows: 1 });
    const ledger = await worker.run([ledgerQuery(ids, 'redshift')]);
    assert.equal(ledger.ok, true, JSON.stringify(ledger.error));
    assert.equal(ledger.rows.length, ids.length);
    const log = await standin.log();
    assert.equal(byAction(log, 'GetStatementResult').slice(-ids.length).filter((r) => r.status === 200).length, ids.length);
  });

  await t.test('throttling and 500s are retried with backoff, then the load goes through', async () => {
    await standin.reset();
    await standin.faults({ throttle_next: 3, internal_error_next: 1 });
    const out = await worker.run(plan.statements, { planId: plan.planId });
    assert.equal(out.ok, true, JSON.stringify(out.error));
    const log = await standin.log();
    assert.equal(log.requests.filter((r) => r.error === 'ThrottlingException').length, 3);
    assert.equal(log.requests.filter((r) => r.error === 'InternalServerException').length, 1);
    assert.equal(log.batches.length, 1, 'the retried call started the batch once');
    assert.ok(out.stats.retries >= 4);
  });

  await t.test('throttling that never ends is a transient error', async () => {
    await standin.reset();
    await standin.faults({ throttle_next: 100 });
    const out = await worker.run(plan.statements, { planId: plan.planId, vars: { REDSHIFT_RETRY_ATTEMPTS: '3' } });
    assert.equal(out.ok, false);
    assert.deepEqual([out.error.name, out.error.code, out.error.transient], ['WarehouseError', 'throttled', true]);
    assert.match(out.error.message, /refused BatchExecuteStatement: ThrottlingException: Rate exceeded/);
    assert.equal((await standin.log()).batches.length, 0);
  });

  await t.test('a failing COPY is a permanent error with its statement and Redshift\'s words, and nothing is committed', async () => {
    await standin.reset();
    const copy = plan.statements.findIndex((s) => s.kind === 'copy' && s.table === 'transactions');
    assert.ok(copy >= 0);
    await standin.faults({
      fail_marker: plan.statements[copy].sql,
      fail_error: `Load into table 'tmp_copy_transactions' failed. Check 'sys_load_error_detail' system table for details. (s3://cafe-staging/staging/manifests/${plan.planId}/transactions.manifest)`,
    });
    const out = await worker.run(plan.statements, { planId: plan.planId });
    assert.equal(out.ok, false);
    assert.deepEqual([out.error.code, out.error.transient], ['copy_failed', false]);
    assert.match(out.error.message, new RegExp(`^statement ${copy + 1} of ${plan.statements.length} \\(the COPY into transactions\\) failed: ERROR: Load into table 'tmp_copy_transactions' failed`));
    assert.doesNotMatch(out.error.message, /cafe-staging|123456789012/, 'no bucket, key or account');
    const log = await standin.log();
    assert.equal(log.batches[0].status, 'FAILED');
    assert.deepEqual(log.ledger, {}, 'nothing committed');
  });

  await t.test('a load still running past REDSHIFT_WAIT_MS is cancelled and transient', async () => {
    await standin.reset();
    await standin.faults({ hang_marker: 'MERGE INTO transactions' });
    const out = await worker.run(plan.statements, { planId: plan.planId, vars: { REDSHIFT_WAIT_MS: '800' } });
    assert.equal(out.ok, false);
    assert.deepEqual([out.error.code, out.error.transient], ['timeout', true]);
    assert.match(out.error.message, /still running after 1 s and was cancelled; a rerun is safe: batches already in loaded_batches are skipped/);
    const log = await standin.log();
    assert.equal(byAction(log, 'CancelStatement').length, 1);
    assert.equal(byAction(log, 'CancelStatement')[0].body.Id, log.batches[0].id);
    assert.equal(log.batches[0].status, 'ABORTED');
    assert.deepEqual(log.ledger, {});
  });

  await t.test('a call refused after the load was submitted is transient: the batches are not at fault', async () => {
    await standin.reset();
    await standin.faults({ refuse_next: 1, refuse_action: 'DescribeStatement' });
    const out = await worker.run(plan.statements, { planId: plan.planId });
    assert.equal(out.ok, false);
    assert.deepEqual([out.error.code, out.error.transient], ['invalid_request', true]);
    assert.match(out.error.message, /refused DescribeStatement: ValidationException: .*\(after the load was submitted; it will be tried again\)$/);
    // The message retried: the same plan is submitted again (a new ClientToken) and goes through.
    await new Promise((r) => setTimeout(r, 300));
    const again = await worker.run(plan.statements, { planId: plan.planId });
    assert.equal(again.ok, true, JSON.stringify(again.error));
    const log = await standin.log();
    assert.equal(log.batches.length, 2);
    assert.notEqual(log.batches[0].request.ClientToken, log.batches[1].request.ClientToken);
    assert.deepEqual(Object.keys(log.ledger).sort(), ids);
  });

  await t.test('provisioned cluster with a database user, and serverless with the IAM identity, are shaped right', async () => {
    const cases = [
      [{ REDSHIFT_WORKGROUP: '', REDSHIFT_CLUSTER_ID: 'cafe-dw', REDSHIFT_SECRET_ARN: '', REDSHIFT_DB_USER: 'loader' }, { ClusterIdentifier: 'cafe-dw', DbUser: 'loader' }],
      [{ REDSHIFT_WORKGROUP: '', REDSHIFT_CLUSTER_ID: 'cafe-dw' }, { ClusterIdentifier: 'cafe-dw', SecretArn: SECRET_ARN }],
      [{ REDSHIFT_SECRET_ARN: '' }, { WorkgroupName: 'cafe' }],
    ];
    for (const [vars, want] of cases) {
      await standin.reset();
      const out = await worker.run(['SELECT 1'], { vars });
      assert.equal(out.ok, true, JSON.stringify(out.error));
      const [submit] = byAction(await standin.log(), 'BatchExecuteStatement');
      const auth = Object.fromEntries(['WorkgroupName', 'ClusterIdentifier', 'SecretArn', 'DbUser'].filter((k) => k in submit.body).map((k) => [k, submit.body[k]]));
      assert.deepEqual(auth, want, JSON.stringify(vars));
    }
  });

  await t.test('a wrong secret fails the signature check at the stand-in: nothing runs', async () => {
    await standin.reset();
    const out = await worker.run(['SELECT 1'], { vars: { AWS_SECRET_ACCESS_KEY: secret(20) } });
    assert.equal(out.ok, false);
    assert.deepEqual([out.error.code, out.error.transient], ['access_denied', true]);
    assert.match(out.error.message, /InvalidSignatureException: The request signature we calculated does not match/);
    const log = await standin.log();
    assert.equal(log.requests.length, 1, 'not retried');
    assert.match(log.requests[0].signature, /does not match/);
    assert.equal(log.batches.length, 0);
    const unknown = await worker.run(['SELECT 1'], { vars: { AWS_ACCESS_KEY_ID: 'AKIAUNKNOWN0000000' } });
    assert.match(unknown.error.message, /UnrecognizedClientException/);
  });

  await t.test('a statement the Redshift dialect cannot parse fails the batch at the stand-in', async () => {
    await standin.reset();
    const out = await worker.run(['SELECT 1', 'SELEC batch_id FROM loaded_batches']);
    assert.equal(out.ok, false);
    assert.deepEqual([out.error.code, out.error.transient], ['statement_failed', false]);
    assert.match(out.error.message, /^statement 2 of 2 \(SELEC\) failed: ERROR: syntax error \(sqlparser, Redshift dialect/);
    const [batch] = (await standin.log()).batches;
    assert.notEqual(batch.subs[1].parse_error, null);
  });
});
