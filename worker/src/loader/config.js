// The loader's settings from the worker's environment (wrangler.toml [vars] and
// secrets), checked once per event. The S3 settings are the upload's (lib.js's
// parseConfig); this adds the warehouse, the retry backoff and the sweep window.

import { ConfigError, intVar } from '../lib.js';

/** The warehouses a consumer can load (WAREHOUSE); empty: no loading. */
export const WAREHOUSES = ['postgresql', 'redshift'];


/**
 * `{warehouse, retryBaseSeconds, retryCapSeconds, sweepLookbackDays, sweepMinAgeSeconds,
 * sweepMaxEntries}`. `warehouse` is `postgresql`, `redshift`, or null (WAREHOUSE empty:
 * the consumer acks without loading and the sweep does nothing).
 */
export function loaderConfig(env) {
  const raw = String(env.WAREHOUSE ?? '').trim().toLowerCase();
  if (raw !== '' && !WAREHOUSES.includes(raw)) {
    throw new ConfigError(`WAREHOUSE is ${JSON.stringify(raw)}, expected postgresql, redshift or nothing`);
  }
  return {
    warehouse: raw === '' ? null : raw,
    // Cloudflare Queues accept a retry delay of at most 12 hours.
    retryBaseSeconds: intVar(env, 'LOAD_RETRY_BASE_SECONDS', 5, 0, 43_200),
    retryCapSeconds: intVar(env, 'LOAD_RETRY_CAP_SECONDS', 300, 0, 43_200),
    sweepLookbackDays: intVar(env, 'SWEEP_LOOKBACK_DAYS', 2, 1, 31),
    sweepMinAgeSeconds: intVar(env, 'SWEEP_MIN_AGE_SECONDS', 60, 0, 86_400),
    // One sweep reads at most this many index entries (a bound on its work).
    sweepMaxEntries: intVar(env, 'SWEEP_MAX_ENTRIES', 10_000, 1, 1_000_000),
  };
}

/**
 * The delay of a transient failure's retry: full jitter over an exponential step,
 * `random() * min(cap, base * 2^(attempts - 1))` seconds, whole, at least 0.
 * `attempts` is the message's (1 on its first delivery).
 */
export function retryDelaySeconds(attempts, { retryBaseSeconds, retryCapSeconds }, random = Math.random) {
  const step = Math.min(retryCapSeconds, retryBaseSeconds * 2 ** Math.max(0, Math.min(30, attempts - 1)));
  return Math.max(0, Math.round(random() * step));
}
