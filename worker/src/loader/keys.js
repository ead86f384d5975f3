// The loader's objects in the bucket, beside the staging layout (issue 9's contract):
//   <prefix>loads/<batch_id>.json      written after the warehouse commit
//   <prefix>failures/<batch_id>.json   a quarantined batch, with its reason
//   <prefix>manifests/<plan_id>/<table>.manifest   Redshift COPY manifests (keys from
//                                      the core's loadPlan, relative to the prefix)

/** A batch id: 32 lowercase hex digits (the first half of the file's SHA-256). */
export const BATCH_ID = /^[0-9a-f]{32}$/;

/** The tables a load reads, in the core's order (rejects are never loaded). */
export const LOADED_TABLES = ['stores', 'products', 'transactions', 'basket_items'];

/** The keys of one batch the loader reads and writes. */
export function loaderKeys(prefix, batchId) {
  return {
    marker: `${prefix}batches/${batchId}.json`,
    loaded: `${prefix}loads/${batchId}.json`,
    failed: `${prefix}failures/${batchId}.json`,
    tables: Object.fromEntries(LOADED_TABLES.map((t) => [t, `${prefix}${t}/${batchId}.csv.gz`])),
  };
}

/** The commits index folder of one UTC day (lib.js's indexKeys writes its entries). */
export function commitsDayPrefix(prefix, ms) {
  return `${prefix}index/commits/${new Date(ms).toISOString().slice(0, 10)}/`;
}

/**
 * A commits index key's batch id and commit time (Unix ms), or null for another key:
 * `<prefix>index/commits/<yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>`.
 */
export function parseCommitKey(key) {
  const m = /index\/commits\/(\d{4}-\d{2}-\d{2})\/(\d{2})-(\d{2})-(\d{2})\.(\d{3})Z-([0-9a-f]{32})$/.exec(key);
  if (!m) return null;
  const at = Date.parse(`${m[1]}T${m[2]}:${m[3]}:${m[4]}.${m[5]}Z`);
  return Number.isFinite(at) ? { batchId: m[6], at } : null;
}
