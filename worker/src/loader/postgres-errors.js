// The PostgreSQL runner's rules that need no connection: where the connection
// string comes from, which failures are transient, how a failure is worded, and the
// redaction of the connection's secrets. Apart from postgres.js so that Node's tests
// (test/helpers.test.js) run them without cloudflare:sockets.

import { S3Error } from '../s3.js';
import { WarehouseError } from './errors.js';

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

