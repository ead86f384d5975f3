// The loader's queue consumer: messages `{batch_id, store, committed_at}` (sent by the
// upload once a batch's marker is written, or by the cron sweep) come in groups; the
// group's batches are loaded into the warehouse in ONE transaction with the statements
// the Rust core makes (wasm `loadPlan`, the same ones `cafe-etl load` runs), then each
// loaded batch gets `loads/<batch_id>.json` in the bucket and its message is acked.
//
// Failures: a group that fails for a reason that will not go away is retried batch by
// batch, so one bad batch is isolated; a batch that still fails is quarantined (a row
// in the warehouse's `load_failures`, `failures/<batch_id>.json` in the bucket, a
// message to the dead-letter queue) and acked, and the others keep loading. A failure
// that may go away (a connection lost, throttling, S3 5xx, a timeout) retries the
// message with exponential backoff; after the queue's max_retries it is dead-lettered
// by the queue itself and the sweep enqueues it again later. worker/README.md tells
// the whole loop.

import * as core from '../../../pkg/cafe_etl.js';
import { encoder, parseConfig } from '../lib.js';
import { S3 } from '../s3.js';
import { loaderConfig, retryDelaySeconds } from './config.js';
import { classify } from './classify.js';
import { WarehouseError } from './errors.js';
import { isBatchId, loadedTables, loaderKeys } from './keys.js';
import { openRunner } from './runners.js';

/** S3 reads of a group's markers and sizes run this many at a time. */
const READS_IN_FLIGHT = 8;

/** Warehouses whose schema this isolate has applied (once per isolate). */
const schemaApplied = new Set();

function logLine(fields) {
  // Ids, counts, codes and plain-words reasons only: never a row, a name or a secret.
  console.log(JSON.stringify(fields));
}

/**
 * The queue() handler. `batch` is a Workers MessageBatch; every message ends acked or
 * retried. Messages of the dead-letter queue (when a consumer of it is configured, as
 * in the tests) are logged and acked.
 */
export async function consume(batch, env) {
  if (isDeadLetterQueue(batch.queue)) {
    for (const m of batch.messages) {
      const b = m.body ?? {};
      logLine({ event: 'dead_letter', batch_id: isBatchId(b.batch_id) ? b.batch_id : null, code: b.code ?? 'retries_exhausted', reason: b.reason ?? null });
      m.ack();
    }
    return;
  }
  let cfg;
  let lcfg;
  try {
    cfg = parseConfig(env);
    lcfg = loaderConfig(env);
  } catch (e) {
    // The worker's own configuration: no batch is at fault, so none is quarantined.
    logLine({ event: 'load', outcome: 'misconfigured', error: String(e?.message ?? e), messages: batch.messages.length });
    batch.retryAll({ delaySeconds: 60 });
    return;
  }
  const items = groupMessages(batch.messages);
  if (!lcfg.warehouse) {
    logLine({ event: 'load', outcome: 'no_warehouse', batches: items.length, batch_ids: items.map((i) => i.batchId) });
    batch.ackAll();
    return;
  }
  const c = {
    cfg,
    lcfg,
    env,
    dialect: lcfg.warehouse,
    stats: { requests: 0, retries: 0 },
    s3: null,
    runner: null,
  };
  c.s3 = new S3(cfg.s3, cfg.retry, c.stats);
  try {
    c.runner = await openRunner(lcfg.warehouse, env);
    if (!schemaApplied.has(c.dialect)) {
      await c.runner.apply(core.warehouseSchema(c.dialect), { s3: c.s3, prefix: cfg.prefix });
      schemaApplied.add(c.dialect);
    }
  } catch (e) {
    const err = classify(e, c);
    logLine({ event: 'load', outcome: 'warehouse_unavailable', code: err.code, error: err.message, batches: items.length });
    for (const item of items) retry(c, item, err);
    await c.runner?.close().catch(() => {});
    return;
  }
  try {
    await loadItems(c, items);
  } finally {
    await c.runner.close().catch(() => {});
  }
}

/** The dead-letter queue's name ends so (wrangler.toml: `cafe-loads-dlq`). */
function isDeadLetterQueue(name) {
  return typeof name === 'string' && name.endsWith('-dlq');
}

/**
 * The messages by batch id (a batch announced twice in one group is loaded once and
 * all its messages settle together). A message that is not a load message is acked
 * with a log line: retrying it could never help.
 */
function groupMessages(messages) {
  const byId = new Map();
  for (const m of messages) {
    const b = m.body;
    if (!b || typeof b !== 'object' || !isBatchId(b.batch_id)) {
      logLine({ event: 'load', outcome: 'bad_message', message_id: m.id ?? null });
      m.ack();
      continue;
    }
    let item = byId.get(b.batch_id);
    if (!item) {
      item = { batchId: b.batch_id, store: typeof b.store === 'string' ? b.store : '', committedAt: b.committed_at, messages: [] };
      byId.set(b.batch_id, item);
    }
    item.messages.push(m);
  }
  return [...byId.values()];
}

async function inTurns(items, n, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

async function loadItems(c, items) {
  // 1. What each batch is: loaded or quarantined already (acked), or its marker and sizes.
  const ready = [];
  await inTurns(items, READS_IN_FLIGHT, async (item) => {
    try {
      const state = await prepare(c, item);
      if (state) {
        logLine({ event: 'load', outcome: state, batch_id: item.batchId });
        ack(item);
      } else {
        ready.push(item);
      }
    } catch (e) {
      await fail(c, item, e);
    }
  });
  if (ready.length === 0) return;
  // 2. Batches the warehouse already has (a load committed, and its loads/ record was
  //    not written, or a message redelivered): recorded and acked, never loaded again.
  let inLedger;
  try {
    inLedger = await ledger(c, ready.map((i) => i.batchId));
  } catch (e) {
    for (const item of ready) await fail(c, item, e);
    return;
  }
  const rest = [];
  for (const item of ready) {
    if (inLedger.has(item.batchId)) {
      try {
        await recordLoaded(c, item, inLedger.get(item.batchId), null);
        logLine({ event: 'load', outcome: 'already_loaded', batch_id: item.batchId });
        ack(item);
      } catch (e) {
        await fail(c, item, e);
      }
    } else {
      rest.push(item);
    }
  }
  // 3. The rest in one transaction; batch by batch if that fails for good.
  await loadGroup(c, rest);
}

/**
 * Reads what the load needs of a batch. Returns `already_loaded` or `quarantined` when
 * the bucket says so, else null with `item.marker` and `item.sizes` set. Throws a
 * permanent WarehouseError for a batch that can never load (no marker, an unreadable
 * one, a table object missing), an S3Error when S3 fails.
 */
async function prepare(c, item) {
  const keys = loaderKeys(c.cfg.prefix, item.batchId);
  if (await c.s3.head(keys.loaded)) return 'already_loaded';
  if (await c.s3.head(keys.failed)) return 'quarantined';
  const obj = await c.s3.get(keys.marker);
  if (!obj) throw WarehouseError.permanent('missing_marker', 'the batch marker is missing: the batch was never committed, or it was deleted');
  let marker;
  try {
    marker = JSON.parse(new TextDecoder().decode(obj.body));
  } catch {
    throw WarehouseError.permanent('bad_marker', 'the batch marker is not readable JSON');
  }
  if (!marker || typeof marker !== 'object' || marker.batch_id !== item.batchId) {
    throw WarehouseError.permanent('bad_marker', 'the batch marker does not describe this batch');
  }
  // The store the upload recorded on the marker is the one that counts.
  item.store = obj.headers.get('x-amz-meta-store') || item.store;
  item.marker = marker;
  const tables = loadedTables();
  const heads = await Promise.all(tables.map((t) => c.s3.head(keys.tables[t])));
  const missing = tables.filter((t, i) => !heads[i]);
  if (missing.length) {
    throw WarehouseError.permanent('missing_object', `the ${missing.join(', ')} table file${missing.length > 1 ? 's' : ''} of the batch ${missing.length > 1 ? 'are' : 'is'} missing from the bucket`);
  }
  item.sizes = Object.fromEntries(tables.map((t, i) => [t, Number(heads[i].get('content-length') ?? 0)]));
  return null;
}

/** `batch_id → loaded_at (ISO)` of those of `ids` the warehouse's ledger lists. */
async function ledger(c, ids) {
  const { rows } = await c.runner.apply([core.ledgerQuery(ids, c.dialect)], { s3: c.s3, prefix: c.cfg.prefix });
  const out = new Map();
  for (const r of rows ?? []) {
    const at = r.loaded_at instanceof Date ? r.loaded_at : new Date(String(r.loaded_at).replace(' ', 'T').replace(/(T[\d:.]+)$/, '$1Z'));
    out.set(String(r.batch_id), Number.isFinite(at.getTime()) ? at.toISOString() : String(r.loaded_at));
  }
  return out;
}

/** The distinct customer key ids of the warehouse's ledger (the core's query). */
async function loadedKeyIds(c) {
  const { rows } = await c.runner.apply([core.loadedKeyIdsQuery(c.dialect)], { s3: c.s3, prefix: c.cfg.prefix });
  return (rows ?? []).map((r) => String(r.customer_key_id ?? '')).filter((k) => k !== '');
}

async function loadGroup(c, items) {
  if (items.length === 0) return;
  try {
    await load(c, items);
    for (const item of items) ack(item);
  } catch (e) {
    const err = classify(e, c);
    if (items.length > 1 && !err.transient) {
      // Isolate the bad batch: each alone, in its own transaction.
      logLine({ event: 'load', outcome: 'group_failed', code: err.code, reason: err.message, batches: items.length, batch_ids: items.map((i) => i.batchId) });
      for (const item of items) await loadGroup(c, [item]);
      return;
    }
    for (const item of items) await fail(c, item, err);
  }
}

/**
 * One load: the core's plan for the group, its manifests (Redshift) in the bucket, the
 * statements through the runner in one transaction, then `loads/<id>.json` for each
 * batch the ledger now lists. One log line.
 */
async function load(c, items) {
  const t0 = Date.now();
  const input = {
    batches: items.map((i) => ({ marker: i.marker, sizes: i.sizes })),
    dialect: c.dialect,
  };
  if (c.dialect === 'redshift') {
    input.s3 = {
      url: `s3://${c.cfg.s3.bucket}/${c.cfg.prefix}`,
      iamRole: c.env.REDSHIFT_IAM_ROLE || undefined,
      region: c.env.REDSHIFT_REGION || c.cfg.s3.region,
    };
  }
  // The warehouse's customer key ids, read afresh for each plan (a load alone after a
  // group failed may be the first keyed one): the core refuses batches of another
  // secret with the rule `cafe-etl load` applies (keys::check).
  input.loadedKeyIds = await loadedKeyIds(c);
  let plan;
  try {
    plan = core.loadPlan(input);
  } catch (e) {
    // The core refuses the group (a broken batch, customer keys of another secret):
    // that will not change by retrying it.
    if (e?.code === 'mixed_customer_keys') {
      // Plain words for the stored reason (the core's text names files and the CLI
      // command; the batch's own failure record needs neither). A group is retried
      // batch by batch, so only the batches of another secret end with this.
      throw WarehouseError.permanent(
        'mixed_customer_keys',
        items.length === 1
          ? "the batch was staged with another customer-key secret than the warehouse's batches: restage it with the warehouse's secret (the worker's CUSTOMER_KEY_SECRET)"
          : 'the batches were staged with different customer-key secrets',
      );
    }
    throw WarehouseError.permanent(typeof e?.code === 'string' ? e.code : 'plan_refused', String(e?.message ?? e));
  }
  for (const m of plan.manifests ?? []) {
    await c.s3.put(`${c.cfg.prefix}${m.key}`, encoder.encode(m.body), { 'content-type': 'application/json' });
  }
  await c.runner.apply(plan.statements, { s3: c.s3, prefix: c.cfg.prefix, planId: plan.planId });
  const inLedger = await ledger(c, items.map((i) => i.batchId));
  const notListed = items.filter((i) => !inLedger.has(i.batchId));
  if (notListed.length) {
    throw WarehouseError.transient('not_in_ledger', 'the load committed but the ledger does not list the batch');
  }
  for (const item of items) await recordLoaded(c, item, inLedger.get(item.batchId), plan.planId);
  const rows = Object.fromEntries(loadedTables().map((t) => [t, items.reduce((n, i) => n + Number(i.marker.tables?.[t] ?? 0), 0)]));
  const lags = items
    .map((i) => Date.now() - Date.parse(i.committedAt))
    .filter(Number.isFinite)
    .sort((a, b) => a - b);
  logLine({
    event: 'load',
    outcome: 'loaded',
    warehouse: c.dialect,
    plan_id: plan.planId,
    batches: items.length,
    batch_ids: items.map((i) => i.batchId),
    rows,
    duration_ms: Date.now() - t0,
    lag_ms_max: lags.length ? lags[lags.length - 1] : null,
    lag_ms_median: lags.length ? lags[Math.floor(lags.length / 2)] : null,
    s3_requests: c.stats.requests,
  });
}

/** `loads/<batch_id>.json`: the bucket's record that the warehouse holds the batch. */
async function recordLoaded(c, item, loadedAt, planId) {
  const body = {
    batch_id: item.batchId,
    store: item.store,
    state: 'loaded',
    loaded_at: loadedAt,
    plan_id: planId,
    warehouse: c.dialect,
  };
  await c.s3.put(loaderKeys(c.cfg.prefix, item.batchId).loaded, encoder.encode(JSON.stringify(body)), { 'content-type': 'application/json' });
}

function ack(item) {
  for (const m of item.messages) m.ack();
}

function retry(c, item, err) {
  const attempts = Math.max(...item.messages.map((m) => m.attempts ?? 1));
  const delaySeconds = retryDelaySeconds(attempts, c.lcfg);
  logLine({ event: 'load', outcome: 'retry', batch_id: item.batchId, code: err.code, reason: err.message, attempts, delay_seconds: delaySeconds });
  for (const m of item.messages) m.retry({ delaySeconds });
}

/** A batch's failure: retried when transient, else quarantined. */
async function fail(c, item, e) {
  const err = classify(e, c);
  if (err.transient) {
    retry(c, item, err);
    return;
  }
  await quarantine(c, item, err);
}

/**
 * A batch that will never load: its failure in the warehouse (`load_failures`, the
 * core's statements) and in the bucket (`failures/<batch_id>.json`), its message to
 * DEAD_LETTERS, then acked. Where the warehouse or the bucket cannot record it now,
 * the message is retried instead, so the quarantine is never half done silently.
 */
async function quarantine(c, item, err) {
  const failedAt = new Date().toISOString();
  const record = { batch_id: item.batchId, store: item.store, code: err.code, reason: err.message };
  try {
    await c.runner.apply(core.quarantineStatements(record, c.dialect), { s3: c.s3, prefix: c.cfg.prefix });
    const body = { batch_id: item.batchId, store: item.store, state: 'failed', failed_at: failedAt, code: err.code, reason: err.message };
    await c.s3.put(loaderKeys(c.cfg.prefix, item.batchId).failed, encoder.encode(JSON.stringify(body)), { 'content-type': 'application/json' });
  } catch (e) {
    const again = classify(e, c);
    retry(c, item, WarehouseError.transient(again.code, `recording the quarantine failed: ${again.message}`));
    return;
  }
  let dead = 'no_queue';
  if (c.env.DEAD_LETTERS && typeof c.env.DEAD_LETTERS.send === 'function') {
    try {
      await c.env.DEAD_LETTERS.send({ batch_id: item.batchId, store: item.store, committed_at: item.committedAt ?? null, failed_at: failedAt, code: err.code, reason: err.message }, { contentType: 'json' });
      dead = 'sent';
    } catch {
      dead = 'failed';
    }
  }
  logLine({ event: 'load', outcome: 'quarantined', batch_id: item.batchId, store: item.store, code: err.code, reason: err.message, dead_letter: dead });
  ack(item);
}
