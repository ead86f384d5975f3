// The loader's objects in the bucket, beside the staging layout (issue 9's contract):
//   <prefix>loads/<batch_id>.json      written after the warehouse commit
//   <prefix>failures/<batch_id>.json   a quarantined batch, with its reason
//   <prefix>manifests/<plan_id>/<table>.manifest   Redshift COPY manifests (keys from
//                                      the core's loadPlan, relative to the prefix)

import * as core from '../../../pkg/cafe_etl.js';
import { indexEntryOf } from '../lib.js';

/** Whether `id` is a batch id (the core's rule). */
export function isBatchId(id) {
  return typeof id === 'string' && core.isBatchId(id);
}

/** The tables a load reads, in the core's order (rejects are never loaded). */
export function loadedTables() {
  return core.loadedTables();
}

/**
 * The keys of one batch the loader reads and writes: the staging layout's
 * from the core (its marker and loaded tables), the loader's own beside them.
 */
export function loaderKeys(prefix, batchId) {
  const staged = {};
  for (const key of core.stagingKeys(batchId)) staged[core.stagedObject(key)] = prefix + key;
  return {
    marker: staged.marker,
    loaded: `${prefix}loads/${batchId}.json`,
    failed: `${prefix}failures/${batchId}.json`,
    tables: Object.fromEntries(loadedTables().map((t) => [t, staged[t]])),
  };
}

/** The commits index folder of one UTC day, under the prefix (the core's layout). */
export function commitsDayPrefix(prefix, ms) {
  return prefix + core.commitsDayPrefix(ms);
}

/**
 * A commits index key's batch id and commit time (Unix ms), or null for another key:
 * `<prefix>index/commits/<yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>` (lib.js's indexKeys
 * writes it; the core reads it).
 */
export function parseCommitKey(prefix, key) {
  const e = indexEntryOf(prefix, key);
  return e?.kind === 'commit' ? { batchId: e.batchId, at: e.unixMs } : null;
}
