// GET /v1/batches (the token's store's batches, newest first), GET
// /v1/batches/{batch_id} (one batch's report and load state), and the `loading`
// field of /healthz (the warehouse and the backlog).

import { authenticate } from './auth.js';
import { HttpError, json } from './http.js';
import { batchKeys, parseStoreIndexKey, indexKeys } from './lib.js';
import { markerStore, parseReport } from './marker.js';
import { S3 } from './s3.js';
import { backlog, batchState, loadExpectation } from './status.js';

/**
 * The token's store's batches, newest first, from the per-store index
 * (`index/stores/<slug>/<inverted time>-<batch_id>`, which a LIST returns newest
 * first): each entry's marker is read (eight at a time) for the report; an entry
 * without its marker (an upload that failed before committing) is skipped, and a
 * batch indexed twice (a retried upload) is listed once.
 */
export async function handleList(request, cfg, url, log) {
  const store = await authenticate(request, cfg);
  log.store = store;
  const limitParam = url.searchParams.get('limit');
  const limit = limitParam === null ? 50 : Number(limitParam);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
    throw new HttpError(400, 'bad_limit', 'limit must be a whole number from 1 to 500');
  }
  const s3 = new S3(cfg.s3, cfg.retry, log.s3);
  const indexPrefix = indexKeys(cfg.prefix, store, '', 0).store.replace(/[^/]*$/, '');
  const batches = [];
  const seen = new Set();
  let scanned = 0;
  let next = null;
  let more = true;
  while (more && batches.length < limit && scanned < cfg.listLimit) {
    const page = await s3.list(indexPrefix, next, Math.min(1000, limit - batches.length + 8));
    next = page.truncated ? page.next : null;
    more = next !== null;
    const ids = [];
    for (const o of page.objects) {
      const e = parseStoreIndexKey(o.key);
      if (e && !seen.has(e.batchId)) {
        seen.add(e.batchId);
        ids.push({ id: e.batchId, at: e.at });
      }
    }
    for (let i = 0; i < ids.length && batches.length < limit; i += 8) {
      const group = ids.slice(i, i + 8);
      scanned += group.length;
      // The marker and the loader's objects of each batch, eight batches at a time.
      const got = await Promise.all(
        group.map(({ id }) => Promise.all([s3.get(batchKeys(cfg.prefix, id).at(-1)), batchState(s3, cfg.prefix, id)])),
      );
      got.forEach(([obj, loadState], j) => {
        if (!obj || batches.length >= limit) return;
        const report = parseReport(obj);
        if (markerStore(obj, report) !== store) return;
        batches.push({ ...batchSummary(cfg, report, { key: obj.key, lastModified: group[j].at }, store), ...loadState });
      });
      if (batches.length >= limit && i + 8 < ids.length) more = true;
    }
  }
  log.outcome = 'listed';
  return json(200, {
    store,
    load: loadExpectation(cfg.loading),
    bucket: cfg.s3.bucket,
    prefix: cfg.prefix,
    batches,
    scanned,
    truncated: more,
  });
}

function batchSummary(cfg, r, marker, store) {
  return {
    batch_id: r.batch_id,
    store,
    key: marker.key,
    staged_at: marker.lastModified,
    source: r.source,
    format: r.format,
    bytes: r.bytes,
    rows_read: r.rows_read,
    rows_staged: r.rows_staged,
    rows_rejected: r.rows_rejected,
    errors: r.errors,
    warnings: r.warnings,
    revenue_pence: r.summary?.revenue_pence ?? 0,
    first_at: r.summary?.first_at ?? null,
    last_at: r.summary?.last_at ?? null,
    stores: (r.summary?.by_store ?? []).map((s) => s.store),
    tables: r.tables,
    keys: batchKeys(cfg.prefix, r.batch_id),
  };
}

export async function handleBatch(request, cfg, batchId, log) {
  const store = await authenticate(request, cfg);
  log.store = store;
  log.batch_id = batchId;
  const s3 = new S3(cfg.s3, cfg.retry, log.s3);
  const keys = batchKeys(cfg.prefix, batchId);
  const obj = await s3.get(keys[keys.length - 1]);
  if (!obj) throw new HttpError(404, 'not_found', `batch ${batchId} is not staged (no marker)`);
  const report = parseReport(obj);
  if (markerStore(obj, report) !== store) throw new HttpError(403, 'wrong_store', `batch ${batchId} is not one of store ${store}'s`);
  log.outcome = 'read';
  return json(200, { batch_id: batchId, store, report, keys, ...(await batchState(s3, cfg.prefix, batchId)) });
}

/**
 * The `loading` field of /healthz: the warehouse this worker loads (null: none) and,
 * from the commits index and the loader's objects, the backlog (numbers only, see
 * status.js `backlog`). Computed at most once per HEALTH_BACKLOG_CACHE_SECONDS per isolate, with
 * few quick S3 attempts: a health check must answer even when the bucket does not
 * (`backlog` is then null and `backlog_error` says so).
 */
export async function loadingHealth(cfg) {
  const loading = cfg.loading;
  const now = Date.now();
  if (!health.promise || now - health.at >= loading.backlogCacheMs) {
    health.at = now;
    const s3 = new S3(cfg.s3, { ...cfg.retry, attempts: 2, totalMs: 3_000, timeoutMs: 3_000 });
    health.promise = backlog(s3, cfg.prefix, { now, lookbackDays: loading.lookbackDays, known: health.known }).then(
      (b) => ({ backlog: b }),
      (e) => {
        console.error(JSON.stringify({ event: 'health', outcome: 'backlog_error', error: String(e?.message ?? e).slice(0, 300) }));
        health.at = 0; // the next call tries again
        return { backlog: null, backlog_error: 'the staging bucket could not be read' };
      },
    );
  }
  return {
    warehouse: loading.warehouse,
    expected_within_seconds: loading.expectedSeconds,
    at_latest_seconds: loading.latestSeconds,
    sweep_every_minutes: loading.sweepMinutes,
    ...(await health.promise),
  };
}

/** The isolate's last backlog (shared by concurrent health checks) and the batches known loaded. */
const health = { at: 0, promise: null, known: new Map() };

