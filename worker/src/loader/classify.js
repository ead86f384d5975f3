// What the consumer makes of a failure: transient (retry the message later) or
// permanent (quarantine the batch), with a code `load_failures` accepts and a reason
// safe to store and show. Pure: no I/O, no runner (the tests import it under Node).

import { ConfigError } from '../lib.js';
import { S3Error } from '../s3.js';
import { isWarehouseError, WarehouseError } from './errors.js';
import { isBatchId } from './keys.js';

/** Longest reason kept in `load_failures` and `failures/<batch_id>.json`. */
const MAX_REASON_CHARS = 400;

/**
 * Transient or not, with a code and words safe to store and show. A WarehouseError is
 * taken as it is; S3 still failing after its retries, and the worker's own
 * configuration, are transient (no batch is at fault); anything else (a bug) too, so
 * that the queue's retries and dead-letter queue, not a quarantine, deal with it.
 */
export function classify(e, c) {
  if (isWarehouseError(e)) return new WarehouseError(safeCode(e.code), safeReason(e.message, c), { transient: e.transient });
  if (e instanceof S3Error) return WarehouseError.transient('s3_error', safeReason(`the bucket failed ${e.publicMessage(c.cfg.prefix)}`, c));
  if (e instanceof ConfigError) return WarehouseError.transient('misconfigured', safeReason(`the worker is misconfigured: ${e.message}`, c));
  return WarehouseError.transient('internal_error', safeReason(`the loader failed: ${String(e?.message ?? e)}`, c));
}

/**
 * A code as `load_failures` keeps it: lowercase letters, digits and `_`, 1 to 64
 * (a SQLSTATE such as `P0001` becomes `p0001`).
 */
export function safeCode(code) {
  const s = String(code ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .slice(0, 64);
  return s || 'error';
}

/**
 * A reason with no bucket, prefix, key, URL or connection string in it, on one line,
 * at most MAX_REASON_CHARS. (Runners already give messages without personal data or
 * secrets; this is the last guard before the text is stored.)
 */
export function safeReason(text, c) {
  let s = String(text ?? '').replace(/\s+/g, ' ').trim();
  s = s.replace(/\b(?:s3|postgres(?:ql)?|https?):\/\/\S+/gi, '<url>');
  const bucket = c?.cfg?.s3?.bucket;
  if (bucket) s = s.split(bucket).join('<bucket>');
  // A staged or loader object's key: a folder, then a batch id (the core's rule).
  s = s.replace(/\S*\/(\w+)\.(?:csv\.gz|json)\b/g, (key, id) => (isBatchId(id) ? '<object>' : key));
  if (s.length > MAX_REASON_CHARS) s = s.slice(0, MAX_REASON_CHARS - 1) + '…';
  return s || 'the load failed';
}
