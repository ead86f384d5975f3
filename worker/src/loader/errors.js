// The loader's one error type, shared by the consumer (worker/src/loader/consumer.js)
// and the warehouse runners (postgres.js, redshift.js). The consumer decides what to
// do with a failed load from `transient` alone: retry the message later, or quarantine
// the batch. Keeping that decision in one field means a runner never needs to know
// about queues, and the consumer never parses a driver's error text.

/**
 * A warehouse (or bucket) step of a load that failed.
 *
 * - `code`: a short stable word for logs, the `load_failures` table and
 *   `failures/<batch_id>.json` (e.g. `copy_failed`, `constraint_violation`,
 *   `connection_lost`, `throttled`, `timeout`, `missing_object`, `bad_marker`,
 *   `s3_error`, `misconfigured`).
 * - `transient`: true when the same statements may succeed later unchanged
 *   (a connection lost, throttling, a timeout, S3 5xx): the message is retried
 *   with backoff. False when they never will (a COPY error, a missing object, a
 *   constraint the rows break): the batch is quarantined.
 * - `message`: plain words safe to show and store; never a password, a connection
 *   string, a bucket or key name, or a row's personal data.
 */
export class WarehouseError extends Error {
  /**
   * `new WarehouseError(code, message, {transient})`, or the runners' form
   * `new WarehouseError(message, {code, transient})` (both are in use; one class).
   */
  constructor(code, message, { transient = false, cause } = {}) {
    if (typeof message !== 'string') {
      const opts = message ?? {};
      message = code;
      code = opts.code ?? 'error';
      transient = opts.transient ?? false;
      cause = opts.cause;
    }
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'WarehouseError';
    this.code = String(code);
    this.transient = Boolean(transient);
  }

  /** A transient failure: the message is retried later. */
  static transient(code, message, opts = {}) {
    return new WarehouseError(code, message, { ...opts, transient: true });
  }

  /** A permanent failure: the batch is quarantined. */
  static permanent(code, message, opts = {}) {
    return new WarehouseError(code, message, { ...opts, transient: false });
  }

  /** The fields that go in logs and `failures/<batch_id>.json`. */
  toJSON() {
    return { code: this.code, transient: this.transient, message: this.message };
  }
}

/** True when `err` is a WarehouseError (also across module copies in tests). */
export function isWarehouseError(err) {
  return err instanceof WarehouseError || (err != null && err.name === 'WarehouseError' && typeof err.transient === 'boolean');
}
