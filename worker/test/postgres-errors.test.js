// The PostgreSQL runner's rules that need no connection (src/loader/postgres-errors.js):
// which failures are transient, how they are worded, and that the connection's
// secrets never reach a message. Table-driven; the runner itself is tested on
// workerd in postgres.test.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classify, postgresConnectionString, redactor, statementLabel, transientSqlState } from '../src/loader/postgres-errors.js';
import { WarehouseError } from '../src/loader/errors.js';
import { S3Error } from '../src/s3.js';

test('SQLSTATEs: transient for connection, races, resources, operator and set-up; permanent for the data', () => {
  for (const [code, transient] of [
    ['08006', true], // connection failure
    ['08001', true],
    ['40001', true], // serialization failure
    ['40P01', true], // deadlock
    ['55P03', true], // lock not available
    ['53300', true], // too many connections
    ['53100', true], // disk full
    ['57P01', true], // admin shutdown
    ['57014', true], // query canceled (statement timeout)
    ['58030', true], // I/O error
    ['28P01', true], // wrong password: the set-up's fault, not the batch's
    ['3D000', true], // no such database
    ['22P02', false], // invalid text representation
    ['22007', false], // invalid datetime
    ['23505', false], // unique violation
    ['23503', false], // foreign key violation
    ['42P01', false], // undefined table
    ['42601', false], // syntax error
    ['XX000', false], // internal error
    ['', false],
    [undefined, false],
    ['ECONNREFUSED', false],
  ]) {
    assert.equal(transientSqlState(code), transient, String(code));
  }
});

/** A server error as node-postgres gives it. */
function dbError(code, message, extra = {}) {
  return Object.assign(new Error(message), { code, severity: 'ERROR', ...extra });
}

test('failures become WarehouseErrors with a code, a kind and a message in words', () => {
  for (const [error, context, want] of [
    [
      dbError('22P02', 'invalid input syntax for type integer: "x"', { where: 'COPY t, line 3, column id: "x"' }),
      'copying t',
      { code: '22P02', transient: false, message: 'copying t: invalid input syntax for type integer: "x"; COPY t, line 3, column id: "x" [22P02]' },
    ],
    [
      dbError('23505', 'duplicate key value violates unique constraint "p"', { detail: 'Key (id)=(1) already exists.' }),
      'insert into t',
      { code: '23505', transient: false, message: 'insert into t: duplicate key value violates unique constraint "p" (Key (id)=(1) already exists.) [23505]' },
    ],
    [dbError('40P01', 'deadlock detected'), 'merge into stores', { code: '40P01', transient: true, message: 'merge into stores: deadlock detected [40P01]' }],
    [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'connecting to PostgreSQL', { code: 'connection', transient: true, message: 'connecting to PostgreSQL: the connection was refused' }],
    [new Error('proxy request failed, cannot connect to the specified address'), 'connecting to PostgreSQL', { code: 'connection', transient: true, message: 'connecting to PostgreSQL: the connection was refused' }],
    [new Error('Connection terminated unexpectedly'), 'copying t', { code: 'connection', transient: true, message: 'copying t: the connection was lost' }],
    [new Error('Connection terminated due to connection timeout'), 'connecting to PostgreSQL', { code: 'connection', transient: true, message: 'connecting to PostgreSQL: no answer in time' }],
    [Object.assign(new Error('incorrect header check'), { code: 'Z_DATA_ERROR' }), 'copying t', { code: 'corrupt_object', transient: false, message: 'copying t: a staged object is not valid gzip' }],
    [
      new S3Error('GET staging/t/x.csv.gz: S3 answered 503', { status: 503, key: 'staging/t/x.csv.gz', reason: 'S3 answered 503 (gave up after retrying)' }),
      'copying t',
      { code: 's3', transient: true, message: 'copying t: reading a staged object: S3 answered 503 (gave up after retrying)' },
    ],
  ]) {
    const e = classify(error, context);
    assert.ok(e instanceof WarehouseError);
    assert.deepEqual({ code: e.code, transient: e.transient, message: e.message }, want);
  }
  const already = new WarehouseError('the staged transactions file of batch x is missing', { code: 'missing_object', transient: false });
  assert.equal(classify(already, 'copying t'), already, 'a WarehouseError passes as it is');
});

test('the connection string, its password and its user:password never stay in a message', () => {
  for (const [url, text, want] of [
    ['postgres://loader:s3cr%21t@db.example.com:5432/w', 'auth failed for s3cr!t and s3cr%21t', 'auth failed for *** and ***'],
    ['postgres://loader:pw-9@db:5432/w', 'postgres://loader:pw-9@db:5432/w refused', '*** refused'],
    ['postgres://loader:pw-9@db:5432/w', 'loader:pw-9 here', '*** here'],
    ['host=db user=loader password=hunter22 dbname=w', 'bad password hunter22', 'bad password ***'],
    ['postgres://loader@db/w', 'no password in it: loader', 'no password in it: loader'],
  ]) {
    assert.equal(redactor(url)(text), want, text);
  }
  // Through classify: whatever made the message.
  const url = 'postgres://loader:Zq9-secret@db:5432/w';
  const e = classify(dbError('28P01', 'password authentication failed (sent Zq9-secret)'), 'connecting to PostgreSQL', redactor(url));
  assert.ok(!e.message.includes('Zq9-secret'), e.message);
});

test('the connection string: the Hyperdrive binding first, else WAREHOUSE_URL, else none', () => {
  for (const [env, want] of [
    [{ HYPERDRIVE: { connectionString: 'postgres://h@hd/db' }, WAREHOUSE_URL: 'postgres://u@w/db' }, 'postgres://h@hd/db'],
    [{ WAREHOUSE_URL: 'postgres://u@w/db' }, 'postgres://u@w/db'],
    [{ HYPERDRIVE: {}, WAREHOUSE_URL: 'postgres://u@w/db' }, 'postgres://u@w/db'],
    [{ WAREHOUSE_URL: '' }, null],
    [{}, null],
  ]) {
    assert.equal(postgresConnectionString(env), want, JSON.stringify(env));
  }
});

test('statements are named by their first words for messages', () => {
  for (const [sql, want] of [
    ['MERGE INTO transactions t USING tmp_copy_transactions s ON x', 'merge into transactions'],
    ['LOCK TABLE load_lock', 'lock table load_lock'],
    ["UPDATE load_lock SET plan_id = 'ab'", 'update load_lock'],
    ['  SELECT 1', 'select 1'],
    ['CREATE TEMP TABLE tmp_copy_stores (LIKE stores)', 'create temp table tmp_copy_stores'],
  ]) {
    assert.equal(statementLabel(sql), want, sql);
  }
});
