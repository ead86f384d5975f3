// The PostgreSQL runner (src/loader/postgres.js) on workerd, through
// cloudflare:sockets, against a real PostgreSQL and a real S3 (s3s-fs): a test-only
// entry (test/postgres-entry.js) runs each load as the queue consumer does. Real
// batches staged by the CLI, planned by the core (wasm `loadPlan`), load into the
// same rows as `cafe-etl load` gives; a
// large table object streams with bounded memory; failures roll back and come out
// as WarehouseErrors of the right kind, never with the password.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { gzipSync, gunzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import {
  cliPath,
  freePort,
  memoryOf,
  putObject,
  realFiles,
  resetPeak,
  secret,
  startEntry,
  startPostgres,
  startS3,
  TcpProxy,
  tmpDir,
  workerdPids,
} from './harness.js';
import { ledgerQuery, loadPlan, warehouseSchema } from '../../pkg/cafe_etl.js';

const MiB = 2 ** 20;
const PREFIX = 'staging/';
const TABLES = ['stores', 'products', 'transactions', 'basket_items'];

let s3;
let pg;
let proxy;
let worker;
let password;

before(async () => {
  s3 = await startS3();
  pg = await startPostgres();
  password = new URL(pg.url).password;
  proxy = await new TcpProxy({ host: pg.host, port: pg.port }).listen();
  worker = await startEntry('test/postgres-entry.js', {
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: s3.bucket,
    S3_ACCESS_KEY_ID: s3.accessKeyId,
    S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    S3_PREFIX: 'staging',
    WAREHOUSE_URL: pg.via(proxy.port),
  });
});

after(async () => {
  await worker?.stop();
  await proxy?.close();
  await pg?.stop();
  await s3?.stop();
});

/** Runs one load in workerd; returns {status, body}. */
async function load(statements, extra = {}) {
  const r = await fetch(worker.url, { method: 'POST', body: JSON.stringify({ statements, ...extra }), signal: AbortSignal.timeout(120_000) });
  const body = await r.json();
  if (body.error) {
    // Whatever failed, the password is not in what the runner says.
    assert.ok(!body.error.message.includes(password), `the password leaked: ${body.error.message}`);
    assert.equal(body.error.name, 'WarehouseError');
  }
  return { status: r.status, body };
}

/** Stages real exports with the CLI (one customer-key secret) and puts the layout into the bucket. */
async function stageReal(files) {
  const root = tmpDir('stage-');
  const r = spawnSync(cliPath(), ['transform', '--customer-key-secret-env', 'K', '--out', root, ...files], {
    env: { ...process.env, K: secret() },
    encoding: 'utf8',
  });
  const ids = fs.readdirSync(path.join(root, 'batches')).map((f) => f.replace(/\.json$/, ''));
  // The CLI's exit code is 1 exactly when a staged file had a rejected row.
  const rejected = markers(root).some((m) => m.rows_rejected > 0);
  assert.equal(r.status, rejected ? 1 : 0, r.stderr);
  for (const sub of [...TABLES, 'rejects', 'batches']) {
    for (const f of fs.readdirSync(path.join(root, sub))) await putObject(s3, `${PREFIX}${sub}/${f}`, path.join(root, sub, f));
  }
  return { root, ids };
}

/** Every row of the four tables, as text, in a fixed order. */
async function tableRows(url) {
  const { default: pgClient } = await import('pg');
  const c = new pgClient.Client({ connectionString: url });
  await c.connect();
  try {
    const out = {};
    for (const t of TABLES) {
      const { rows } = await c.query(`SELECT * FROM ${t} ORDER BY 1, 2`);
      out[t] = rows.map((r) => JSON.stringify(r));
    }
    return out;
  } finally {
    await c.end();
  }
}

const copyInto = (table, keys) => ({
  kind: 'copy',
  table,
  sql: `COPY ${table} FROM STDIN WITH (FORMAT csv)`,
  keys,
});

/** The markers of a staged folder, as the consumer reads them from the bucket. */
function markers(root) {
  const dir = path.join(root, 'batches');
  return fs.readdirSync(dir).sort().map((f) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));
}

/** The ledger's rows without their load time. */
async function ledgerRows(url) {
  const { default: pgClient } = await import('pg');
  const c = new pgClient.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query('SELECT * FROM loaded_batches ORDER BY batch_id');
    return rows.map(({ loaded_at, ...rest }) => JSON.stringify(rest));
  } finally {
    await c.end();
  }
}

test('real batches load with the core\'s statements (wasm loadPlan) into the same rows as `cafe-etl load` gives, once', async () => {
  const files = realFiles('current').filter((f, i, all) => i % Math.max(1, Math.floor(all.length / 4)) === 0).slice(0, 4);
  assert.ok(files.length >= 2, 'real exports are there');
  const { root, ids } = await stageReal(files);
  const schema = await load(warehouseSchema('postgresql'));
  assert.equal(schema.status, 200, JSON.stringify(schema.body));
  const plan = loadPlan({ batches: markers(root).map((marker) => ({ marker })), dialect: 'postgresql' });
  assert.deepEqual([...plan.batchIds].sort(), [...ids].sort());
  assert.ok(plan.statements.some((st) => st.kind === 'copy'), 'the plan copies');
  const r = await load(plan.statements);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  for (const t of TABLES) {
    let lines = 0;
    for (const id of ids) lines += gunzipSync(fs.readFileSync(path.join(root, t, `${id}.csv.gz`))).toString('utf8').split('\n').filter(Boolean).length;
    assert.equal(r.body.copied[t], lines, `${t}: every staged row copied`);
  }

  // The native loader, on the same staged folder, into another database.
  const native = await startPostgres();
  try {
    const cli = spawnSync(cliPath(), ['load', '--root', root], { env: { ...process.env, CAFE_ETL_POSTGRES: native.url }, encoding: 'utf8' });
    assert.equal(cli.status, 0, cli.stderr);
    const cliTables = await tableRows(native.url);
    assert.ok(cliTables.transactions.length > 0);
    assert.deepEqual(await tableRows(pg.url), cliTables);
    assert.deepEqual(await ledgerRows(pg.url), await ledgerRows(native.url));

    // The same plan again (a redelivered message): nothing is loaded twice.
    const again = await load([...warehouseSchema('postgresql'), ...plan.statements]);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.deepEqual(await tableRows(pg.url), cliTables);
    assert.deepEqual(await ledgerRows(pg.url), await ledgerRows(native.url));
  } finally {
    await native.stop();
  }

  // The ledger query's rows come back as objects.
  const ledger = await load([ledgerQuery([...ids, '0'.repeat(32)], 'postgresql')]);
  assert.equal(ledger.status, 200, JSON.stringify(ledger.body));
  assert.deepEqual(ledger.body.rows.map((row) => row.batch_id.trim()).sort(), [...ids].sort());
  assert.ok(ledger.body.rows.every((row) => row.loaded_at), 'each with its load time');
});

test('a real plan whose one batch has a row the warehouse refuses loads nothing of any batch', async () => {
  const files = realFiles('current').slice(-3);
  const { root, ids } = await stageReal(files);
  assert.equal((await load(warehouseSchema('postgresql'))).status, 200);
  // A staged transactions object whose last row has a time PostgreSQL refuses (as a
  // hand-edited or damaged object would).
  const victim = ids[ids.length - 1];
  const text = gunzipSync(fs.readFileSync(path.join(root, 'transactions', `${victim}.csv.gz`))).toString('utf8');
  const rows = text.split('\n').filter(Boolean);
  const cells = rows[rows.length - 1].split(',');
  cells[2] = '2021-13-45 25:61:00';
  rows[rows.length - 1] = cells.join(',');
  await putObject(s3, `${PREFIX}transactions/${victim}.csv.gz`, gzipSync(rows.join('\n') + '\n'));
  const before = await tableRows(pg.url);
  const ledgerBefore = await ledgerRows(pg.url);
  const plan = loadPlan({ batches: markers(root).map((marker) => ({ marker })), dialect: 'postgresql' });
  const r = await load(plan.statements);
  assert.equal(r.status, 500);
  assert.equal(r.body.error.transient, false, r.body.error.message);
  assert.match(r.body.error.code, /^22/);
  assert.match(r.body.error.message, /^copying transactions: /);
  assert.deepEqual(await tableRows(pg.url), before, 'no row of any batch of the plan');
  assert.deepEqual(await ledgerRows(pg.url), ledgerBefore, 'no batch in the ledger');
});

/** A gzip CSV object of `n` rows `i,label` from `start`, put at `key`; returns its bytes. */
async function numbers(key, start, n, { members = 1 } = {}) {
  const parts = [];
  const per = Math.ceil(n / members);
  for (let m = 0; m < members; m++) {
    let text = '';
    for (let i = start + m * per; i < Math.min(start + n, start + (m + 1) * per); i++) text += `${i},row ${i}\n`;
    parts.push(gzipSync(text));
  }
  const bytes = Buffer.concat(parts);
  await putObject(s3, PREFIX + key, bytes);
  return bytes;
}

async function freshTable(name) {
  await pg.query(`DROP TABLE IF EXISTS ${name}; CREATE TABLE ${name} (id integer PRIMARY KEY, label text NOT NULL)`);
}

test('several objects stream into one COPY, multi-member gzip included, and plain SQL strings run as they are', async () => {
  await freshTable('nums');
  await numbers('nums/a.csv.gz', 0, 1000);
  await numbers('nums/b.csv.gz', 1000, 3000, { members: 3 });
  const r = await load([copyInto('nums', ['nums/a.csv.gz', 'nums/b.csv.gz']), 'SELECT 1 AS one; SELECT count(*)::int AS n, max(id) AS top FROM nums']);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.copied, { nums: 4000 });
  assert.deepEqual(r.body.rows, [{ n: 4000, top: 3999 }]);
});

test('a row the warehouse refuses mid-COPY rolls the whole load back: a permanent error naming the line', async () => {
  await freshTable('refuse');
  await numbers('refuse/good.csv.gz', 0, 5000);
  await putObject(s3, `${PREFIX}refuse/bad.csv.gz`, gzipSync('9000,fine\nnot-a-number,oops\n'));
  const r = await load([
    "INSERT INTO refuse VALUES (-1, 'before the copy')",
    copyInto('refuse', ['refuse/good.csv.gz', 'refuse/bad.csv.gz']),
  ]);
  assert.equal(r.status, 500);
  assert.equal(r.body.error.code, '22P02');
  assert.equal(r.body.error.transient, false);
  assert.match(r.body.error.message, /^copying refuse: invalid input syntax for type integer/);
  // The line counts through the COPY's whole stream: 5000 rows of the first object, then the second's.
  assert.match(r.body.error.message, /COPY refuse, line 5002, column id/);
  assert.deepEqual(await pg.query('SELECT count(*)::int AS n FROM refuse'), [{ n: 0 }], 'nothing of the load is left');
  // The connection was handed back clean: the next load on the table works.
  const again = await load([copyInto('refuse', ['refuse/good.csv.gz'])]);
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.deepEqual(await pg.query('SELECT count(*)::int AS n FROM refuse'), [{ n: 5000 }]);
});

test('a missing table object is a permanent error naming the batch, not the bucket; nothing is left', async () => {
  await freshTable('gone');
  await numbers('transactions/aaaa.csv.gz', 0, 100);
  const r = await load([
    "INSERT INTO gone VALUES (-1, 'before the copy')",
    copyInto('gone', ['transactions/aaaa.csv.gz', 'transactions/0123456789abcdef0123456789abcdef.csv.gz']),
  ]);
  assert.equal(r.status, 500);
  assert.deepEqual(
    { code: r.body.error.code, transient: r.body.error.transient },
    { code: 'missing_object', transient: false },
  );
  assert.match(r.body.error.message, /staged transactions file of batch 0123456789abcdef0123456789abcdef is missing/);
  assert.ok(!r.body.error.message.includes(s3.bucket) && !r.body.error.message.includes(PREFIX), r.body.error.message);
  assert.deepEqual(await pg.query('SELECT count(*)::int AS n FROM gone'), [{ n: 0 }]);
});

test('a corrupt object is a permanent error', async () => {
  await freshTable('corrupt');
  await putObject(s3, `${PREFIX}corrupt/x.csv.gz`, Buffer.from('this is not gzip at all\n'));
  const r = await load([copyInto('corrupt', ['corrupt/x.csv.gz'])]);
  assert.equal(r.status, 500);
  assert.deepEqual({ code: r.body.error.code, transient: r.body.error.transient }, { code: 'corrupt_object', transient: false });
});

test('a connection lost mid-COPY is transient, and the server rolls the load back', async () => {
  await freshTable('cut');
  await numbers('cut/big.csv.gz', 0, 200_000);
  proxy.forwarded = 0;
  proxy.cutAfterBytes = 1 * MiB;
  try {
    const r = await load(["INSERT INTO cut VALUES (-1, 'before the copy')", copyInto('cut', ['cut/big.csv.gz'])]);
    assert.equal(r.status, 500);
    assert.deepEqual({ code: r.body.error.code, transient: r.body.error.transient }, { code: 'connection', transient: true }, r.body.error.message);
  } finally {
    proxy.cutAfterBytes = Infinity;
  }
  // The server notices the lost client and rolls back; give it a moment.
  let left;
  for (let i = 0; i < 50; i++) {
    left = await pg.query('SELECT count(*)::int AS n FROM cut');
    if (left[0].n === 0) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.deepEqual(left, [{ n: 0 }]);
});

test('a connection that stops moving without closing fails the load as transient, within the stall limit', async () => {
  await freshTable('stall');
  await numbers('stall/big.csv.gz', 0, 300_000);
  proxy.forwarded = 0;
  proxy.stallAfterBytes = 256 * 1024;
  const t0 = performance.now();
  let r;
  try {
    r = await load(["INSERT INTO stall VALUES (-1, 'before the copy')", copyInto('stall', ['stall/big.csv.gz'])], { stallMs: 3_000 });
  } finally {
    proxy.resume();
    proxy.cut(); // the stalled connection, as the network would end it some day
  }
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(r.status, 500);
  assert.deepEqual({ code: r.body.error.code, transient: r.body.error.transient }, { code: 'timeout', transient: true }, r.body.error.message);
  assert.match(r.body.error.message, /^copying stall: no progress for 3 s/);
  assert.ok(seconds < 15, `failed after ${seconds.toFixed(1)} s`);
  let left;
  for (let i = 0; i < 50; i++) {
    left = await pg.query('SELECT count(*)::int AS n FROM stall');
    if (left[0].n === 0) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.deepEqual(left, [{ n: 0 }], 'nothing of the load is left');
  // The runner connects afresh for the next load.
  assert.equal((await load(['SELECT 1'])).status, 200);
});

test('a refused connection and a wrong password are transient, and neither message holds the password', async () => {
  const closed = await freePort();
  const refused = await load(['SELECT 1'], { connectionString: pg.via(closed) });
  assert.equal(refused.status, 500);
  assert.deepEqual({ code: refused.body.error.code, transient: refused.body.error.transient }, { code: 'connection', transient: true });
  assert.match(refused.body.error.message, /^connecting to PostgreSQL: the connection was refused/);

  const wrong = new URL(pg.url);
  const bad = `pw-${randomBytes(8).toString('hex')}`;
  wrong.password = bad;
  const denied = await load(['SELECT 1'], { connectionString: wrong.toString() });
  assert.equal(denied.status, 500);
  assert.equal(denied.body.error.code, '28P01');
  assert.equal(denied.body.error.transient, true, 'a set-up fault, not the batch\'s: retried, never quarantined');
  assert.ok(!denied.body.error.message.includes(bad), denied.body.error.message);
});

test('a table object of 40 MiB streams into COPY with workerd\'s memory bounded', async () => {
  await freshTable('big');
  // Random labels: gzip cannot shrink them much, so the object itself is large.
  const rows = 1_520_000;
  let text = '';
  const parts = [];
  for (let i = 0; i < rows; i++) {
    text += `${i},${randomBytes(24).toString('base64')}\n`;
    if (text.length > 1 << 20) parts.push(Buffer.from(text)), (text = '');
  }
  parts.push(Buffer.from(text));
  const plain = Buffer.concat(parts);
  const gz = gzipSync(plain, { level: 1 });
  assert.ok(gz.length > 40 * MiB, `${gz.length} bytes`);
  await putObject(s3, `${PREFIX}big/one.csv.gz`, gz);

  const pids = workerdPids();
  assert.ok(pids.length > 0, 'workerd runs under this process');
  const rss = () => pids.reduce((n, p) => n + memoryOf(p).rss, 0);
  const peak = () => pids.reduce((n, p) => n + memoryOf(p).hwm, 0);
  assert.equal((await load(['SELECT 1'])).status, 200); // warm: the driver loaded
  const idle = rss();
  for (const p of pids) resetPeak(p);
  const t0 = performance.now();
  const r = await load([copyInto('big', ['big/one.csv.gz']), 'SELECT count(*)::int AS n FROM big']);
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.rows, [{ n: rows }]);
  const above = peak() - idle;
  console.log(
    `# ${(gz.length / MiB).toFixed(1)} MiB object (${(plain.length / MiB).toFixed(1)} MiB of CSV) copied in ${seconds.toFixed(1)} s ` +
      `(${(plain.length / MiB / seconds).toFixed(1)} MiB/s of CSV); workerd ${(idle / MiB).toFixed(0)} MiB idle, peak ${(above / MiB).toFixed(0)} MiB above idle`,
  );
  // Holding the object and its CSV would take 100 MiB and more. What the peak does
  // hold is garbage V8 has not collected yet (each byte passes through the S3
  // response's chunks, gunzip's and the socket's): 48 to 60 MiB measured here, and
  // reading the object alone, without COPY or gunzip, lifts it by about 28 MiB.
  assert.ok(above < 80 * MiB, `workerd peaked ${(above / MiB).toFixed(0)} MiB above idle`);
});
