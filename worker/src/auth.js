// Who is asking, and for which store: the branch token (the core's check,
// src/token.rs through wasm) and the store rule on a report's rows.

import { checkStores, verifyToken } from '../../pkg/cafe_etl.js';

import { wasm } from './core.js';
import { HttpError } from './http.js';
import { ConfigError } from './lib.js';

/**
 * The store of the request's branch token (`Authorization: Bearer <token>`), checked
 * by the core; 401 without one or with one the core refuses (its code as `reason`).
 */
export async function authenticate(request, cfg) {
  const header = request.headers.get('authorization') ?? '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) {
    throw new HttpError(401, 'unauthorized', 'an Authorization: Bearer <token> header is required (mint one with `cafe-etl token --store <slug>`)');
  }
  wasm();
  try {
    // The core's check (src/token.rs): form, key id, signature, expiry, lifetime cap,
    // the store's revocation time.
    return verifyToken(m[1], cfg.access, Math.floor(Date.now() / 1000)).store;
  } catch (e) {
    if (e?.code === 'config') throw new ConfigError(e.message);
    if (typeof e?.code !== 'string') throw e;
    throw new HttpError(401, 'unauthorized', e.message, { reason: e.code });
  }
}

/**
 * One branch, one store: every staged row must spell the token's store as STORE_NAMES
 * registers it (the core's rule, src/token.rs), else 403 with one sentence naming only
 * the token's store and the spelling found.
 */
export function checkStoreRule(cfg, store, report, batchId) {
  try {
    checkStores(cfg.access, store, report.summary?.by_store ?? []);
  } catch (e) {
    if (e?.code === 'config') throw new ConfigError(e.message);
    if (typeof e?.code !== 'string') throw e;
    throw new HttpError(403, e.code, e.message, { batch_id: batchId, store });
  }
}

