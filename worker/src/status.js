// What people see of loading: each batch's state (staged, loaded, failed) for the
// batch list, the backlog for /healthz, and when an upload is expected to be loaded.
//
// Everything is read from the objects the loader writes beside the staging layout
// (worker/README.md, *Loading*): `<prefix>loads/<batch_id>.json` once the warehouse
// has committed the batch, `<prefix>failures/<batch_id>.json` once it is quarantined.
// The loader itself (queue consumer and sweep) is src/loader/; this module only reads.

import { intVar } from './lib.js';
import { loaderConfig } from './loader/config.js';
import { commitsDayPrefix, loaderKeys, parseCommitKey } from './loader/keys.js';

/** Longest `reason` passed on from a failure object (the loader writes one plain sentence). */
const REASON_CHARS = 300;

function parseJson(obj) {
  try {
    return JSON.parse(new TextDecoder().decode(obj.body));
  } catch {
    return null;
  }
}

/**
 * A batch's state from the loader's objects: `{state: 'loaded', loaded_at}`,
 * `{state: 'failed', failed_at, code, reason}` or `{state: 'staged'}`. One GET when
 * the batch is loaded, two otherwise. An object that is not JSON still says what
 * happened (its time is then the object's own).
 */
export async function batchState(s3, prefix, batchId) {
  const keys = loaderKeys(prefix, batchId);
  const loaded = await s3.get(keys.loaded);
  if (loaded) {
    const j = parseJson(loaded) ?? {};
    return { state: 'loaded', loaded_at: isoTime(j.loaded_at) ?? httpTime(loaded.headers) };
  }
  const failed = await s3.get(keys.failed);
  if (failed) {
    const j = parseJson(failed) ?? {};
    return {
      state: 'failed',
      failed_at: isoTime(j.failed_at) ?? httpTime(failed.headers),
      code: typeof j.code === 'string' ? j.code.slice(0, 64) : null,
      reason: typeof j.reason === 'string' && j.reason.trim() ? j.reason.slice(0, REASON_CHARS) : 'the warehouse refused this batch',
    };
  }
  return { state: 'staged' };
}

function isoTime(v) {
  if (typeof v !== 'string') return null;
  const t = Date.parse(v);
  return Number.isFinite(t) ? new Date(t).toISOString() : null;
}

function httpTime(headers) {
  const t = Date.parse(headers?.get?.('last-modified') ?? '');
  return Number.isFinite(t) ? new Date(t).toISOString() : null;
}

// ---------------------------------------------------------------------------
// When a batch is loaded

/**
 * Loading as this worker is configured: the loader's own settings (`loaderConfig`:
 * `WAREHOUSE`, empty when this worker loads nothing, `SWEEP_LOOKBACK_DAYS`,
 * `SWEEP_MIN_AGE_SECONDS`) and the vars that repeat what a worker cannot read of
 * its own configuration: `LOAD_QUEUE_WAIT_SECONDS` (the consumer's
 * `max_batch_timeout`: the longest a message waits for its group) and
 * `SWEEP_EVERY_MINUTES` (the cron trigger's interval); plus
 * `HEALTH_BACKLOG_CACHE_SECONDS` (how long /healthz reuses its backlog).
 * Returns `{warehouse, expectedSeconds, latestSeconds, sweepMinutes, lookbackDays,
 * backlogCacheMs}`; the two expectations are null when nothing loads here. Throws
 * ConfigError naming a bad variable.
 */
export function loadingConfig(env) {
  const loader = loaderConfig(env);
  const wait = intVar(env, 'LOAD_QUEUE_WAIT_SECONDS', 30, 0, 60);
  const sweep = intVar(env, 'SWEEP_EVERY_MINUTES', 5, 1, 1440);
  const cache = intVar(env, 'HEALTH_BACKLOG_CACHE_SECONDS', BACKLOG_CACHE_SECONDS, 0, 3600);
  const on = loader.warehouse !== null;
  return {
    warehouse: loader.warehouse,
    // The group's wait, then the load itself (LOAD_RUN_SECONDS: a group of a few
    // batches loads in seconds on PostgreSQL, in tens of seconds on Redshift).
    expectedSeconds: on ? wait + LOAD_RUN_SECONDS : null,
    // A message lost: the next sweep, or the one after when the batch was
    // committed within SWEEP_MIN_AGE_SECONDS of it (its message may still be on
    // its way), then a group's wait and the load.
    latestSeconds: on ? sweep * 60 + loader.sweepMinAgeSeconds + wait + LOAD_RUN_SECONDS : null,
    sweepMinutes: sweep,
    lookbackDays: loader.sweepLookbackDays,
    backlogCacheMs: cache * 1000,
  };
}

/** The seconds allowed for one load once its group is formed, in the expectations. */
const LOAD_RUN_SECONDS = 30;


/** The `load` field of an upload's answer: what happens next to the batch. */
export function loadExpectation(loading) {
  if (!loading.warehouse) return { warehouse: null, expected_within_seconds: null, at_latest_seconds: null };
  return {
    warehouse: loading.warehouse,
    expected_within_seconds: loading.expectedSeconds,
    at_latest_seconds: loading.latestSeconds,
  };
}

// ---------------------------------------------------------------------------
// The backlog, for /healthz

/** Most commit index entries the backlog looks at; past it the answer says `truncated`. */
export const BACKLOG_SCAN_LIMIT = 2000;
/** One backlog per isolate at most this often (HEALTH_BACKLOG_CACHE_SECONDS): /healthz is open to anyone. */
export const BACKLOG_CACHE_SECONDS = 15;

/** The commit index's day prefixes from `lookbackDays` ago to today (UTC), oldest first. */
export function commitDays(prefix, now, lookbackDays) {
  const days = [];
  for (let d = lookbackDays; d >= 0; d--) {
    days.push(commitsDayPrefix(prefix, now - d * 86_400_000));
  }
  return days;
}

/**
 * Counts over the commits of the lookback window (numbers only: batch ids and store
 * names are the business's, and /healthz needs no token):
 * `{window_days, committed, loaded, failed, waiting, oldest_waiting_seconds,
 * last_load_at, last_load_seconds_ago, truncated, as_of}`.
 *
 * Cost: one LIST page per day of the window (more on a busy day), then one HEAD per
 * batch not yet known loaded (`known`, kept by the caller between calls: a loaded
 * batch stays loaded), a second HEAD for those not loaded (failed?), a third for
 * those neither (is the marker there, i.e. committed?). In a steady state that is
 * the LISTs and a few HEADs for the batches still waiting.
 */
export async function backlog(s3, prefix, { now, lookbackDays, known = new Map(), limit = BACKLOG_SCAN_LIMIT, pageKeys = 1000 }) {
  const since = now - lookbackDays * 86_400_000;
  const commits = new Map();
  let truncated = false;
  scan: for (const day of commitDays(prefix, now, lookbackDays)) {
    let next = null;
    do {
      if (commits.size >= limit) {
        // More to read, and enough read: the counts are of the oldest `limit`.
        truncated = true;
        break scan;
      }
      const page = await s3.list(day, next, pageKeys);
      next = page.truncated ? page.next : null;
      for (const o of page.objects) {
        const e = parseCommitKey(prefix, o.key);
        if (!e || e.at < since || e.at > now) continue;
        // A retried upload indexes its batch twice: the first commit counts.
        if (!commits.has(e.batchId) || commits.get(e.batchId) > e.at) commits.set(e.batchId, e.at);
      }
    } while (next);
  }
  for (const id of known.keys()) if (!commits.has(id)) known.delete(id);

  let loaded = 0;
  let failed = 0;
  let waiting = 0;
  let oldest = null;
  const unknown = [...commits].filter(([id]) => !known.has(id));
  for (let i = 0; i < unknown.length; i += 8) {
    await Promise.all(
      unknown.slice(i, i + 8).map(async ([id, at]) => {
        const keys = loaderKeys(prefix, id);
        const head = await s3.head(keys.loaded);
        if (head) {
          known.set(id, Date.parse(head.get('last-modified') ?? '') || at);
          return;
        }
        if (await s3.head(keys.failed)) {
          failed++;
          return;
        }
        // An index entry without its marker is an upload that failed before its
        // commit (or is committing now): not a batch.
        if (!(await s3.head(keys.marker))) return;
        waiting++;
        if (oldest === null || at < oldest) oldest = at;
      }),
    );
  }
  let lastLoad = null;
  for (const id of commits.keys()) {
    if (!known.has(id)) continue;
    loaded++;
    const t = known.get(id);
    if (lastLoad === null || t > lastLoad) lastLoad = t;
  }
  return {
    window_days: lookbackDays,
    committed: loaded + failed + waiting,
    loaded,
    failed,
    waiting,
    oldest_waiting_seconds: oldest === null ? null : Math.max(0, Math.round((now - oldest) / 1000)),
    last_load_at: lastLoad === null ? null : new Date(lastLoad).toISOString(),
    last_load_seconds_ago: lastLoad === null ? null : Math.max(0, Math.round((now - lastLoad) / 1000)),
    truncated,
    as_of: new Date(now).toISOString(),
  };
}
