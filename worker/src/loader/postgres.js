// The PostgreSQL runner of the loader: runs a load plan's statements (from the
// core, through wasm: `loadPlan`, `warehouseSchema`, ...) in one transaction over
// one TCP connection from the worker, streaming each staged table object from S3,
// gunzipped, into `COPY ... FROM STDIN`. The same statements and the same
// streaming as the native `cafe-etl load` (src/warehouse/postgres.rs).
//
// The driver is node-postgres (`pg`), which reaches PostgreSQL through
// `cloudflare:sockets` (its `pg-cloudflare` module) under the `nodejs_compat`
// flag, with `pg-copy-streams` for COPY FROM STDIN; why these, and Hyperdrive in
// production, are in worker/README.md ("PostgreSQL from the worker").

import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { S3Error } from '../s3.js';
import { WarehouseError } from './errors.js';
import { PacedSocket } from './socket.js';

/**
 * The connection string of the warehouse from the worker's environment: the
 * Hyperdrive binding's (production: `HYPERDRIVE`, a pooled, nearby connection to
 * the database) or else the `WAREHOUSE_URL` secret (the local stack). Null when
 * neither is set.
 */
export function postgresConnectionString(env) {
  const hyperdrive = env.HYPERDRIVE?.connectionString;
  if (typeof hyperdrive === 'string' && hyperdrive !== '') return hyperdrive;
  const url = env.WAREHOUSE_URL;
  return typeof url === 'string' && url !== '' ? url : null;
}

// SQLSTATE classes and codes after which the same load may succeed later: the
// connection (08), a transaction that lost a race (40001 serialization, 40P01
// deadlock), resources (53: too many connections, out of memory, disk full),
// an operator or a timeout (57: shutdown, cannot connect now, query canceled),
// a lock not available (55P03), system errors (58). Also the warehouse's own
// set-up (28: authentication; 3D000: no such database): not the batch's fault,
// so never a reason to quarantine it; the retries and the dead-letter queue
// bound them. Everything else (22 data, 23 constraints, 42 syntax or a missing
// table, ...) fails the same way every time.
const TRANSIENT_CLASSES = new Set(['08', '53', '57', '58', '28']);
const TRANSIENT_CODES = new Set(['40001', '40P01', '55P03', '3D000']);

/** Whether a SQLSTATE names a failure that may go away. */
export function transientSqlState(code) {
  if (typeof code !== 'string' || code.length !== 5) return false;
  return TRANSIENT_CODES.has(code) || TRANSIENT_CLASSES.has(code.slice(0, 2));
}

/**
 * A message with the connection's secrets taken out: the connection string,
 * its password (as written and decoded) and its user:password part. Every
 * message the runner gives passes through this, whatever made it.
 */
export function redactor(connectionString) {
  const secrets = new Set();
  if (connectionString) {
    secrets.add(connectionString);
    try {
      const u = new URL(connectionString);
      if (u.password) {
        secrets.add(`${u.username}:${u.password}`);
        secrets.add(u.password);
        secrets.add(decodeURIComponent(u.password));
      }
    } catch {
      /* not a URL (key=value form): the whole string is still taken out */
    }
    const kv = /(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/i.exec(connectionString);
    if (kv) secrets.add(kv[1].replace(/^'|'$/g, ''));
  }
  const list = [...secrets].filter((s) => s.length >= 1).sort((a, b) => b.length - a.length);
  return (text) => {
    let out = String(text ?? '');
    for (const s of list) out = out.split(s).join('***');
    return out;
  };
}

/** A connection-level failure, in words (no address, no credentials). */
function connectionReason(e) {
  const code = e?.code;
  const text = String(e?.message ?? e ?? '');
  if (code === 'ECONNREFUSED' || /refused|cannot connect/i.test(text)) return 'the connection was refused';
  if (code === 'ECONNRESET' || /reset/i.test(text)) return 'the connection was reset';
  if (/timeout|timed out/i.test(text)) return 'no answer in time';
  if (/terminated|closed|ended|end of stream|not queryable/i.test(text)) return 'the connection was lost';
  return 'the connection failed';
}

/** A statement named for a message: its first words (`merge into stores`). */
export function statementLabel(sql) {
  const words = [];
  for (const w of String(sql).trim().split(/\s+/)) {
    const word = w.replace(/[,;(].*$/, '');
    if (!word) break;
    words.push(word.toLowerCase());
    if (/[a-z]/.test(word) || words.length >= 4) break;
  }
  return words.join(' ');
}

/**
 * Any failure of a load as a WarehouseError: the server's errors by their
 * SQLSTATE, S3's and the connection's by their kind. `context` says what was
 * being done (`copying transactions`).
 */
export function classify(e, context, redact = (s) => s) {
  if (e instanceof WarehouseError) return e;
  if (e instanceof S3Error) {
    // Still failing after the S3 client's retries (5xx, timeouts), or refused
    // (credentials): the object is there, so the load may succeed later.
    return new WarehouseError(redact(`${context}: reading a staged object: ${e.reason}`), { code: 's3', transient: true });
  }
  const sqlstate = typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : null;
  if (sqlstate && e?.severity) {
    let text = e.message;
    if (e.detail) text += ` (${e.detail})`;
    if (e.where) text += `; ${e.where}`;
    if (e.hint) text += `; hint: ${e.hint}`;
    return new WarehouseError(redact(`${context}: ${text} [${sqlstate}]`), { code: sqlstate, transient: transientSqlState(sqlstate) });
  }
  if (e?.code === 'Z_DATA_ERROR' || e?.code === 'Z_BUF_ERROR' || e?.code === 'ERR_ZLIB_INITIALIZATION_FAILED' || /incorrect header check|invalid (block|stored|distance)|unexpected end of file/i.test(String(e?.message))) {
    return new WarehouseError(redact(`${context}: a staged object is not valid gzip`), { code: 'corrupt_object', transient: false });
  }
  return new WarehouseError(redact(`${context}: ${connectionReason(e)}`), { code: 'connection', transient: true });
}

/**
 * The runner. `connectionString`: postgres://user:password@host:port/db (see
 * `postgresConnectionString`); `s3`: the worker's S3 client (src/s3.js) the
 * staged objects are read with, and `prefix` the staging root inside the bucket
 * (both may also be given to each `apply`); `log`: takes one object per event
 * worth a log line. One connection, opened by the first `apply` and closed by
 * `close()`: one load.
 */
export function createPostgres({ connectionString, s3 = null, prefix = '', log = () => {}, connectTimeoutMs = 10_000 } = {}) {
  const redact = redactor(connectionString);
  let client = null;
  // The connection's own failure, reported by pg as an 'error' event (a socket
  // closed between queries); the next query fails with it too.
  let broken = null;

  async function connect() {
    if (client && !broken) return client;
    if (client) await drop();
    if (!connectionString) {
      throw new WarehouseError('no PostgreSQL connection string: set WAREHOUSE_URL, or bind HYPERDRIVE', {
        code: 'config',
        transient: true,
      });
    }
    const c = new pg.Client({
      connectionString,
      connectionTimeoutMillis: connectTimeoutMs,
      application_name: 'cafe-etl-worker',
      // pg-cloudflare's socket with backpressure and failed writes reported
      // (src/loader/socket.js).
      stream: (config) => new PacedSocket(config.ssl),
    });
    c.on('error', (e) => {
      broken = e;
    });
    broken = null;
    try {
      await c.connect();
    } catch (e) {
      await c.end().catch(() => {});
      throw classify(e, 'connecting to PostgreSQL', redact);
    }
    client = c;
    return c;
  }

  async function drop() {
    const c = client;
    client = null;
    if (c) await c.end().catch(() => {});
  }

  /**
   * Streams the `keys` objects (relative to the staging root), gunzipped one
   * after the other, into one COPY. pipeline() carries the backpressure from
   * the socket back to the S3 response: at most a few chunks of each are held.
   * Returns the rows copied.
   */
  async function copy(c, statement, store, root) {
    const keys = statement.keys ?? [];
    const table = statement.table ?? 'a table';
    const stream = c.query(copyFrom(statement.sql));
    async function* objects() {
      for (const key of keys) {
        const obj = await store.open(root + key);
        if (obj === null) {
          const [kind, file] = key.split('/');
          throw new WarehouseError(
            `copying ${table}: the staged ${kind ?? table} file of batch ${String(file ?? '').replace(/\..*$/, '')} is missing`,
            { code: 'missing_object', transient: false },
          );
        }
        // Multi-member gzip (several streams back to back) is one file, as the
        // native runner's MultiGzDecoder reads it; DecompressionStream stops
        // at the first member's end.
        // pipeline(), not pipe(): a connection lost mid-object errors the
        // gunzip stream, and so this generator and the COPY.
        const gunzip = createGunzip();
        const piped = pipeline(Readable.fromWeb(obj.body), gunzip);
        piped.catch(() => {}); // surfaces through the iteration below
        yield* gunzip;
        await piped;
      }
    }
    await pipeline(Readable.from(objects(), { objectMode: false }), stream);
    return stream.rowCount ?? 0;
  }

  return {
    dialect: 'postgresql',

    /**
     * Runs `statements` (the load plan's `{kind: 'sql', sql}` and `{kind:
     * 'copy', table, sql, keys}`, or plain SQL strings) in order inside one
     * transaction, and commits. Returns `{rows, copied}`: the rows of the last
     * statement as objects, and the rows each COPY took, by table. On any
     * failure the transaction is rolled back and a WarehouseError is thrown.
     */
    async apply(statements, opts = {}) {
      const store = opts.s3 ?? s3;
      const root = opts.prefix ?? prefix;
      const c = await connect();
      const copied = {};
      let rows = [];
      let context = 'starting the transaction';
      try {
        await c.query('BEGIN');
        for (const raw of statements) {
          const statement = typeof raw === 'string' ? { kind: 'sql', sql: raw } : raw;
          if (statement.kind === 'copy') {
            context = `copying ${statement.table ?? statementLabel(statement.sql)}`;
            if (!store) throw new WarehouseError(`${context}: no S3 client to read the staged objects with`, { code: 'config', transient: true });
            const n = await copy(c, statement, store, root);
            copied[statement.table] = (copied[statement.table] ?? 0) + n;
            rows = [];
          } else {
            context = statementLabel(statement.sql);
            const result = await c.query(statement.sql);
            // Several statements in one string give one result each.
            const last = Array.isArray(result) ? result[result.length - 1] : result;
            rows = last?.rows ?? [];
          }
          if (broken) throw broken;
        }
        context = 'committing';
        await c.query('COMMIT');
        return { rows, copied };
      } catch (e) {
        const error = classify(broken && !(e instanceof WarehouseError) ? broken : e, context, redact);
        if (client && !broken) {
          try {
            await c.query('ROLLBACK');
          } catch (r) {
            log({ msg: 'postgres rollback failed', reason: classify(r, 'rolling back', redact).message });
            await drop();
          }
        } else {
          // A lost connection: the server rolls the transaction back itself.
          await drop();
        }
        throw error;
      }
    },

    /** Closes the connection (a load's end); the runner may connect again. */
    async close() {
      await drop();
    },
  };
}
