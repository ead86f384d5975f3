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
import { WarehouseError } from './errors.js';
import { classify, redactor, statementLabel } from './postgres-errors.js';
import { PacedSocket } from './socket.js';

export { postgresConnectionString } from './postgres-errors.js';

/** How long closing a connection may take before it is left to the runtime. */
const END_WAIT_MS = 2_000;

/** Ends a client; a connection that died may never acknowledge it: wait a little, no more. */
async function endQuietly(c) {
  let timer;
  const waited = new Promise((resolve) => (timer = setTimeout(resolve, END_WAIT_MS)));
  await Promise.race([c.end().catch(() => {}), waited]);
  clearTimeout(timer);
}

/**
 * The runner. `connectionString`: postgres://user:password@host:port/db (see
 * `postgresConnectionString`); `s3`: the worker's S3 client (src/s3.js) the
 * staged objects are read with, and `prefix` the staging root inside the bucket
 * (both may also be given to each `apply`); `log`: takes one object per event
 * worth a log line; `connectTimeoutMs`: the wait for a connection; `stallMs`: how
 * long a COPY may go without a byte moving before the load fails (transient,
 * `timeout`). One connection, opened by the first `apply` and closed by `close()`:
 * one load.
 */
export function createPostgres({ connectionString, s3 = null, prefix = '', log = () => {}, connectTimeoutMs = 10_000, stallMs = 60_000 } = {}) {
  const redact = redactor(connectionString);
  let client = null;
  // The connection's own failure, reported by pg as an 'error' event (a socket
  // closed between queries); the next query fails with it too.
  let broken = null;
  // A COPY that stopped moving: the connection cannot be used again.
  let stuck = false;

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
      await endQuietly(c);
      throw classify(e, 'connecting to PostgreSQL', redact);
    }
    client = c;
    return c;
  }

  async function drop() {
    const c = client;
    client = null;
    if (c) await endQuietly(c);
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
        for await (const chunk of gunzip) {
          progressed = Date.now();
          yield chunk;
        }
        await piped;
      }
    }
    // A connection that neither moves nor closes (a network that drops packets
    // silently, a server that stopped reading) and an S3 body that stops coming
    // would hold the load for ever: no byte in `stallMs` fails it. The COPY
    // cannot be cancelled on such a connection (its CopyFail waits for an answer
    // that will not come), so the connection is dropped: the server rolls back
    // when it notices.
    let progressed = Date.now();
    let watchdog;
    const stalled = new Promise((_, reject) => {
      const check = () => {
        if (Date.now() - progressed >= stallMs) {
          reject(new WarehouseError(`copying ${table}: no progress for ${Math.round(stallMs / 1000)} s`, { code: 'timeout', transient: true }));
        } else {
          watchdog = setTimeout(check, Math.min(1_000, stallMs));
        }
      };
      watchdog = setTimeout(check, Math.min(1_000, stallMs));
    });
    const copied = pipeline(Readable.from(objects(), { objectMode: false }), stream);
    copied.catch(() => {}); // when the watchdog wins, the pipeline's end is nobody's
    try {
      await Promise.race([copied, stalled]);
    } catch (e) {
      if (e instanceof WarehouseError && e.code === 'timeout') stuck = true;
      throw e;
    } finally {
      clearTimeout(watchdog);
    }
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
        if (client && !broken && !stuck) {
          try {
            await c.query('ROLLBACK');
          } catch (r) {
            log({ msg: 'postgres rollback failed', reason: classify(r, 'rolling back', redact).message });
            await drop();
          }
        } else {
          // A lost or stuck connection: the server rolls the transaction back itself.
          stuck = false;
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
