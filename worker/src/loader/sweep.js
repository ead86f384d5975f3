// The cron sweep (scheduled(), every five minutes): a batch committed but never loaded
// nor quarantined (its message was lost, the queue was down, its retries ran out while
// the warehouse was away) is enqueued again. The commits index
// (`<prefix>index/commits/<yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>`, written with each
// commit before its marker) is listed for the last SWEEP_LOOKBACK_DAYS days only, so
// the sweep never lists the whole bucket. Enqueuing a batch whose message is in flight
// is harmless: the consumer skips a batch the ledger or `loads/` lists. Batches
// committed less than SWEEP_MIN_AGE_SECONDS ago are left to their own message.

import { parseConfig } from '../lib.js';
import { S3 } from '../s3.js';
import { loaderConfig } from './config.js';
import { commitsDayPrefix, loaderKeys, parseCommitKey } from './keys.js';

const DAY_MS = 86_400_000;
/** HEAD requests in flight while checking candidates. */
const CHECKS_IN_FLIGHT = 8;
/** Cloudflare Queues take at most 100 messages per sendBatch. */
const SEND_BATCH = 100;

/**
 * Runs one sweep at time `now` (Unix ms). Returns what it found:
 * `{scanned, candidates, young, loaded, quarantined, uncommitted, enqueued}` (also
 * the sweep's log line), or `{skipped: reason}`.
 */
export async function sweep(env, { now = Date.now() } = {}) {
  const t0 = Date.now();
  let cfg;
  let lcfg;
  try {
    cfg = parseConfig(env);
    lcfg = loaderConfig(env);
  } catch (e) {
    console.log(JSON.stringify({ event: 'sweep', outcome: 'misconfigured', error: String(e?.message ?? e) }));
    return { skipped: 'misconfigured' };
  }
  if (!lcfg.warehouse || !env.LOAD_QUEUE) {
    // Nothing loads batches here: enqueuing them would only be acked unread.
    console.log(JSON.stringify({ event: 'sweep', outcome: 'skipped', reason: !lcfg.warehouse ? 'no_warehouse' : 'no_queue' }));
    return { skipped: !lcfg.warehouse ? 'no_warehouse' : 'no_queue' };
  }
  const s3 = new S3(cfg.s3, cfg.retry);
  const since = now - lcfg.sweepLookbackDays * DAY_MS;
  const youngAfter = now - lcfg.sweepMinAgeSeconds * 1000;
  const out = { scanned: 0, candidates: 0, young: 0, loaded: 0, quarantined: 0, uncommitted: 0, enqueued: 0, truncated: false };
  const seen = new Map();
  // One LIST per day folder (and page), oldest day first; the window's first day is
  // cut at `since`.
  for (let day = since - (since % DAY_MS); day <= now && !out.truncated; day += DAY_MS) {
    let next = null;
    do {
      const page = await s3.list(commitsDayPrefix(cfg.prefix, day), next, 1000);
      next = page.truncated ? page.next : null;
      for (const o of page.objects) {
        if (out.scanned >= lcfg.sweepMaxEntries) {
          out.truncated = true;
          next = null;
          break;
        }
        out.scanned++;
        const e = parseCommitKey(cfg.prefix, o.key);
        if (!e || e.at < since || seen.has(e.batchId)) continue;
        seen.set(e.batchId, e.at);
      }
    } while (next);
  }
  const candidates = [];
  for (const [batchId, at] of seen) {
    if (at > youngAfter) out.young++;
    else candidates.push({ batchId, at });
  }
  out.candidates = candidates.length;
  const toSend = [];
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(CHECKS_IN_FLIGHT, candidates.length) }, async () => {
      while (i < candidates.length) {
        const cand = candidates[i++];
        const keys = loaderKeys(cfg.prefix, cand.batchId);
        if (await s3.head(keys.loaded)) {
          out.loaded++;
          continue;
        }
        if (await s3.head(keys.failed)) {
          out.quarantined++;
          continue;
        }
        // An index entry without its marker: an upload that failed before it committed.
        const marker = await s3.head(keys.marker);
        if (!marker) {
          out.uncommitted++;
          continue;
        }
        toSend.push({
          body: { batch_id: cand.batchId, store: marker.get('x-amz-meta-store') ?? '', committed_at: new Date(cand.at).toISOString() },
          contentType: 'json',
        });
      }
    }),
  );
  toSend.sort((a, b) => a.body.committed_at.localeCompare(b.body.committed_at));
  for (let j = 0; j < toSend.length; j += SEND_BATCH) {
    await env.LOAD_QUEUE.sendBatch(toSend.slice(j, j + SEND_BATCH));
    out.enqueued += Math.min(SEND_BATCH, toSend.length - j);
  }
  console.log(JSON.stringify({ event: 'sweep', outcome: 'swept', ...out, lookback_days: lcfg.sweepLookbackDays, duration_ms: Date.now() - t0 }));
  return out;
}
