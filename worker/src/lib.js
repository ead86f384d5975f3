// Pure helpers of the edge worker: configuration, request checks, retry timing, S3
// XML, CORS. No I/O here, so the tests import this module directly under Node. The
// branch tokens, the store slug and the store rule are the core's (src/token.rs),
// called through the wasm module: whoever calls parseConfig or reportStores has
// initialised it first (src/core.js's wasm(); under Node, test/harness.js).

import * as core from '../../pkg/cafe_etl.js';
import { checkAccessConfig, indexEntry, stagedObject, stagingKeys, storeSlug } from '../../pkg/cafe_etl.js';

/** The core's slug rule and a token minter (for tests and tools), re-exported. */
export { mintToken, storeSlug } from '../../pkg/cafe_etl.js';

const MiB = 1024 * 1024;
/** S3's smallest part (all but the last part of a multipart upload). */
export const MIN_PART_BYTES = 5 * MiB;

// ---------------------------------------------------------------------------
// Configuration

/** A mistake in the worker's own configuration: answered 500, never retried. */
export class ConfigError extends Error {}

/** A whole-number setting from `min` to `max`, `fallback` when unset; ConfigError otherwise. */
export function intVar(env, name, fallback, min, max) {
  const raw = env[name];
  if (raw === undefined || raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} is ${JSON.stringify(String(raw))}, expected a whole number from ${min} to ${max}`);
  }
  return n;
}

function requiredVar(env, name) {
  const v = env[name];
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${name} is not set`);
  return v;
}

/**
 * The worker's settings from its environment (wrangler.toml [vars] and secrets),
 * checked. Throws ConfigError naming the first bad variable (never its value
 * when it is a secret).
 */
export function parseConfig(env) {
  const endpoint = requiredVar(env, 'S3_ENDPOINT').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+(\/.*)?$/.test(endpoint)) {
    throw new ConfigError('S3_ENDPOINT must be an http(s) URL such as https://s3.eu-west-2.amazonaws.com');
  }
  // Plain HTTP would carry the staged tables and the signed requests in the clear:
  // only the local stack (ENVIRONMENT = "development", wrangler.toml's top level) may.
  const development = env.ENVIRONMENT === 'development';
  if (!development && !endpoint.startsWith('https://')) {
    throw new ConfigError('S3_ENDPOINT must be an https:// URL outside local development (ENVIRONMENT = "development")');
  }
  const bucket = requiredVar(env, 'S3_BUCKET');
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError('S3_BUCKET is not a valid bucket name');
  }
  const prefix = String(env.S3_PREFIX ?? '').replace(/^\/+|\/+$/g, '');
  const access = accessConfig(env);
  const maxUpload = intVar(env, 'MAX_UPLOAD_BYTES', 200 * 1000 * 1000, 1, 2 ** 40);
  const partBytes = intVar(env, 'MULTIPART_PART_BYTES', MIN_PART_BYTES, MIN_PART_BYTES, 5 * 1024 * MiB);
  return {
    s3: {
      endpoint,
      bucket,
      region: env.S3_REGION || 'us-east-1',
      accessKeyId: requiredVar(env, 'S3_ACCESS_KEY_ID'),
      secretAccessKey: requiredVar(env, 'S3_SECRET_ACCESS_KEY'),
    },
    prefix: prefix === '' ? '' : prefix + '/',
    access,
    customerKeySecret: requiredVar(env, 'CUSTOMER_KEY_SECRET'),
    maxUploadBytes: maxUpload,
    bufferLimitBytes: Math.min(intVar(env, 'BUFFER_LIMIT_BYTES', 4 * MiB, 0, 1024 * MiB), maxUpload),
    partBytes,
    partsInFlight: intVar(env, 'MULTIPART_PARTS_IN_FLIGHT', 2, 1, 16),
    retry: {
      attempts: intVar(env, 'S3_RETRY_ATTEMPTS', 6, 1, 20),
      baseMs: intVar(env, 'S3_RETRY_BASE_MS', 100, 1, 60_000),
      capMs: intVar(env, 'S3_RETRY_CAP_MS', 2_000, 1, 60_000),
      totalMs: intVar(env, 'S3_RETRY_TOTAL_MS', 15_000, 1, 600_000),
      timeoutMs: intVar(env, 'S3_ATTEMPT_TIMEOUT_MS', 10_000, 1, 600_000),
    },
    allowedOrigins: String(env.ALLOWED_ORIGINS ?? '')
      .split(',')
      .map((s) => s.trim().replace(/\/+$/, ''))
      .filter(Boolean),
    listLimit: intVar(env, 'LIST_SCAN_LIMIT', 1000, 1, 100_000),
    development,
    pipelines: intVar(env, 'MAX_PIPELINES', 2, 1, 16),
    pipelineWaitMs: intVar(env, 'PIPELINE_WAIT_MS', 20_000, 0, 600_000),
  };
}

/**
 * The access settings as the core reads them (`AccessConfig` of the wasm module):
 * the token secrets (UPLOAD_SECRETS `kid=secret,...`, current first; or UPLOAD_SECRET,
 * key id k1), REVOKED_BEFORE, TOKEN_MAX_DAYS and STORE_NAMES, checked by the core.
 * Throws ConfigError naming the first bad variable, never a secret.
 */
export function accessConfig(env) {
  const text = (name) => (env[name] === undefined || env[name] === null ? '' : String(env[name]));
  const access = {
    uploadSecrets: text('UPLOAD_SECRETS'),
    uploadSecret: text('UPLOAD_SECRET'),
    revokedBefore: text('REVOKED_BEFORE'),
    tokenMaxDays: text('TOKEN_MAX_DAYS'),
    storeNames: text('STORE_NAMES'),
  };
  try {
    checkAccessConfig(access);
  } catch (e) {
    throw new ConfigError(e.message);
  }
  return access;
}

export const encoder = new TextEncoder();

export function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------
// Small pure helpers

/**
 * Whether a Content-Type is acceptable for a CSV body: absent, text/*, the CSV types,
 * application/vnd.ms-excel (what Windows browsers call a .csv file), application/octet-stream,
 * and application/x-www-form-urlencoded (what `curl --data-binary` sends by default).
 * Anything else (images, PDF, zip, JSON, multipart forms, ...) is plainly not CSV: 415.
 */
export function contentTypeAllowed(header) {
  if (header == null || header.trim() === '') return true;
  const type = header.split(';')[0].trim().toLowerCase();
  return (
    type.startsWith('text/') ||
    [
      'application/csv',
      'application/x-csv',
      'application/vnd.ms-excel',
      'application/octet-stream',
      'application/x-www-form-urlencoded',
    ].includes(type)
  );
}

/** A file name fit to be the batch's `source`: one path segment, printable, ≤ 255 bytes. */
export function checkFileName(name) {
  if (typeof name !== 'string' || name.trim() === '') return 'the file name is missing';
  if (encoder.encode(name).length > 255) return 'the file name is longer than 255 bytes';
  if (/[\u0000-\u001f\u007f/\\]/.test(name)) return 'the file name holds a slash or a control character';
  if (name === '.' || name === '..') return 'the file name is not a file name';
  return null;
}

/** Exponential backoff with full jitter: a random delay in [0, min(cap, base·2^attempt)). */
export function backoffDelay(attempt, { baseMs, capMs }, random = Math.random) {
  return Math.floor(random() * Math.min(capMs, baseMs * 2 ** attempt));
}

/** The object keys of a batch under the prefix, in commit order (marker last): the core's layout. */
export function batchKeys(prefix, batchId) {
  return stagingKeys(batchId).map((k) => prefix + k);
}

/**
 * The index entries written with a batch's commit, before its marker (so every batch
 * whose marker exists has both; an entry whose marker is missing is an upload that
 * failed or is still committing, and readers skip it), under the prefix: the core's
 * layout (`indexKeys`, src/stage.rs), `{store, commit}`:
 *
 * - `<prefix>index/stores/<slug>/<inverted ms>-<batch_id>`: one store's batches, a
 *   LIST with the prefix returns them newest first;
 * - `<prefix>index/commits/<yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>`: every commit by
 *   UTC day and time, oldest first, for a loader's sweep.
 *
 * A retried upload writes new entries for the same batch: readers dedupe by batch id.
 */
export function indexKeys(prefix, store, batchId, ms) {
  const keys = core.indexKeys(store, batchId, ms);
  return { store: prefix + keys.store, commit: prefix + keys.commit };
}

/** The folder a store's index entries are listed from, under the prefix (the core's layout). */
export function storeIndexPrefix(prefix, store) {
  return prefix + core.storeIndexPrefix(store);
}

/**
 * What an index key under the prefix records, `{kind: 'store' | 'commit', batchId,
 * unixMs}` (the core's reading, `indexEntry`), or null for any other key.
 */
export function indexEntryOf(prefix, key) {
  return typeof key === 'string' && key.startsWith(prefix) ? indexEntry(key.slice(prefix.length)) : null;
}

/** A per-store index key's batch id and commit time (ISO), or null for another key. */
export function parseStoreIndexKey(prefix, key) {
  const e = indexEntryOf(prefix, key);
  return e?.kind === 'store' ? { batchId: e.batchId, at: new Date(e.unixMs).toISOString() } : null;
}

/**
 * What an S3 key is, in words that name no bucket, prefix or key (error bodies go to
 * clients; the log line keeps the key).
 */
export function describeKey(prefix, key) {
  if (key === null) return 'the bucket listing';
  const rest = key.startsWith(prefix) ? key.slice(prefix.length) : key;
  if (indexEntry(rest)) return 'the batch index';
  const what = stagedObject(rest); // the core's layout: a table's name, 'marker' or null
  if (what === 'marker') return 'the batch marker';
  return what ? `the ${what} table file` : 'an object';
}

/** The store slugs a report's staged rows belong to. */
export function reportStores(report) {
  return [...new Set((report?.summary?.by_store ?? []).map((s) => storeSlug(s.store)))].sort();
}

function xmlUnescape(s) {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&amp;/g, '&');
}

/** The text of the first `<tag>` in an S3 XML answer, or null. */
export function xmlTag(xml, tag) {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m ? xmlUnescape(m[1]) : null;
}

/** Parses a ListObjectsV2 answer: `{objects: [{key, lastModified, size}], truncated, next}`. */
export function parseListObjects(xml) {
  const objects = [];
  for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    objects.push({
      key: xmlTag(m[1], 'Key'),
      lastModified: xmlTag(m[1], 'LastModified'),
      size: Number(xmlTag(m[1], 'Size') ?? 0),
    });
  }
  return {
    objects,
    truncated: xmlTag(xml, 'IsTruncated') === 'true',
    next: xmlTag(xml, 'NextContinuationToken'),
  };
}

/** CORS headers for an allowed origin (ALLOWED_ORIGINS: comma-separated, or `*`). */
export function corsHeaders(origin, allowedOrigins) {
  if (!origin) return {};
  const any = allowedOrigins.includes('*');
  if (!any && !allowedOrigins.includes(origin.replace(/\/+$/, ''))) return {};
  return {
    'access-control-allow-origin': any ? '*' : origin,
    'access-control-allow-methods': 'GET, PUT, POST, OPTIONS',
    'access-control-allow-headers': 'authorization, content-type, x-content-sha256, x-file-name',
    'access-control-expose-headers': 'x-batch-id',
    'access-control-max-age': '600',
    vary: 'Origin',
  };
}
