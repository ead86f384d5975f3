// The edge worker: a branch's daily till export goes in (PUT /v1/uploads/{file_name}),
// runs through the same WebAssembly core as the browser page, and comes out as the
// staging layout in an S3 bucket for Redshift COPY: five gzip CSV table files first,
// then the batch report `batches/<batch_id>.json` last, as the commit marker.
//
// The raw body (customer names, card numbers) is never written anywhere and never
// logged: only the cleaned table files the core produces leave this worker.
//
// Routes, configuration and the protocol are described in worker/README.md. The S3
// client is src/s3.js, the table files on their way up src/commit.js, the pure
// helpers (configuration, tokens, keys) src/lib.js.

import wasmModule from '../../pkg/cafe_etl_bg.wasm';
import {
  initSync,
  Pipeline,
  BatchHasher,
  batchIdOfSha256,
  checkStores,
  isBatchId,
  refusalMessage,
  verifyToken,
  version as coreVersion,
} from '../../pkg/cafe_etl.js';

import {
  batchKeys,
  checkFileName,
  ConfigError,
  contentTypeAllowed,
  corsHeaders,
  encoder,
  hex,
  parseStoreIndexKey,
  indexKeys,
  parseConfig,
  reportStores,
} from './lib.js';
import { Limiter, TableObject } from './commit.js';
import { concat, S3, S3Error } from './s3.js';
import { backlog, batchState, loadExpectation, loadingConfig } from './status.js';
import { announce, committedAt } from './loader/producer.js';
import { consume } from './loader/consumer.js';
import { sweep } from './loader/sweep.js';

export { S3, S3Error } from './s3.js';

let wasmReady = false;
function wasm() {
  if (!wasmReady) {
    initSync({ module: wasmModule });
    wasmReady = true;
  }
}

// ---------------------------------------------------------------------------
// HTTP

/** An answer decided on the way (401, 413, ...): carries the status and JSON body. */
class HttpError extends Error {
  constructor(status, error, message, extra = {}, headers = {}) {
    super(message);
    this.status = status;
    this.error = error;
    this.extra = extra;
    this.headers = headers;
  }
}

/** On every answer: no browser takes a JSON answer (or an error) for a script or a page. */
const SAFE_HEADERS = { 'x-content-type-options': 'nosniff' };

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body, null, 0), {
    status,
    headers: { ...SAFE_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers },
  });
}

function errorBody(e) {
  return { error: e.error, message: e.message, ...e.extra };
}

async function authenticate(request, cfg) {
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
function checkStoreRule(cfg, store, report, batchId) {
  try {
    checkStores(cfg.access, store, report.summary?.by_store ?? []);
  } catch (e) {
    if (e?.code === 'config') throw new ConfigError(e.message);
    if (typeof e?.code !== 'string') throw e;
    throw new HttpError(403, e.code, e.message, { batch_id: batchId, store });
  }
}

/**
 * The request body, read in chunks and counted (413 past `max` bytes in all).
 *
 * When the answer is decided before the body is read to its end (401, 403, 428, a
 * duplicate, a refusal), `discardRest()` reads the rest and drops it, up to `max` in
 * all: a server that closes a connection with unread bytes in it resets it, and the
 * client (a browser's XHR in particular) then reports a network error instead of our
 * answer. A client that sent `Expect: 100-continue` may not have sent the body yet,
 * so nothing is read of it (the local stack sends no interim 100, and curl sends the
 * body anyway after a second: worker/README.md gives the curl line without the wait). A body over `max` (413) is still drained up to twice `max`, so a file a
 * little too big gets its 413 too; past that, or when the declared Content-Length is
 * past that, or when the client stalls for 30 s, it is cancelled (and the client may
 * see a reset).
 *
 * An unauthenticated request (401), and one turned away because the worker is busy
 * (503), get `discardRest(UNREAD_LIMIT_BYTES)`: at most 64 KiB more is read, then the
 * body is cancelled and the connection closed; a stranger cannot make the worker
 * read up to twice the upload limit.
 */
class Body {
  constructor(request, max) {
    this.stream = request.body;
    this.max = max;
    this.total = 0;
    this.done = !request.body;
    this.abandon = false;
    this.reader = null;
    this.expectContinue = /100-continue/i.test(request.headers.get('expect') ?? '');
  }

  /** A reader of our own buffers (BYOB) where the runtime has one, else its chunks. */
  open() {
    if (this.reader) return;
    try {
      this.reader = this.stream.getReader({ mode: 'byob' });
      this.byob = true;
    } catch {
      this.reader = this.stream.getReader();
      this.byob = false;
    }
  }

  /**
   * The body in chunks of `size` bytes (the last may be less). With a BYOB reader
   * they are read into ONE buffer, reused: a chunk is valid only until the next one
   * is asked for (copy it to keep it). The runtime then allocates nothing per chunk,
   * which keeps workerd's memory from growing with the body as garbage piles up.
   */
  async *chunks(size = PUSH_BYTES) {
    if (this.done) return;
    this.open();
    if (!this.byob) {
      yield* coalesce(this.runtimeChunks(), size);
      return;
    }
    let buffer = new ArrayBuffer(size);
    for (;;) {
      let filled = 0;
      while (filled < size && !this.done) {
        const { done, value } = await this.reader.read(new Uint8Array(buffer, filled, size - filled));
        if (value) {
          buffer = value.buffer;
          filled += value.length;
          this.total += value.length;
          if (this.total > this.max) throw tooLarge(this.max);
        }
        if (done) this.done = true;
      }
      if (filled > 0) yield new Uint8Array(buffer, 0, filled);
      if (this.done) return;
    }
  }

  async *runtimeChunks() {
    for (;;) {
      const { done, value } = await this.reader.read();
      if (done) {
        this.done = true;
        return;
      }
      this.total += value.length;
      if (this.total > this.max) throw tooLarge(this.max);
      yield value;
    }
  }

  async discardRest(limit = 2 * this.max, timeoutMs = 30_000) {
    if (this.done) return;
    if (!this.reader && this.expectContinue) return;
    const until = Math.min(this.total + limit, 2 * this.max);
    // With a reader of our own buffers (BYOB) nothing past `until` is read; the
    // runtime's own chunks could overshoot it by one.
    this.open();
    const byob = this.byob;
    let timer;
    const stalled = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ stalled: true }), timeoutMs);
    });
    try {
      while (!this.abandon && this.total < until) {
        const read = byob ? this.reader.read(new Uint8Array(Math.min(16 * 1024, until - this.total))) : this.reader.read();
        const r = await Promise.race([read, stalled]);
        if (r.stalled) break;
        if (r.done) {
          this.done = true;
          return;
        }
        this.total += r.value.length;
      }
      await this.reader.cancel();
    } catch {
      // The client went away: nothing to answer.
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Most bytes of a body read before answering a stranger (401) or a busy 503. */
const UNREAD_LIMIT_BYTES = 64 * 1024;

function tooLarge(max) {
  return new HttpError(413, 'too_large', `the body is larger than the ${max} bytes this worker accepts (MAX_UPLOAD_BYTES)`, {
    max_upload_bytes: max,
  });
}

/** The core's product and store caches per pipeline (its default is 16 MiB): two
 *  pipelines at once must fit a 128 MB isolate with their bodies and parts. Past the
 *  cap rows are still right; a product may be written twice (the loader keeps one). */
const CORE_CACHE_BYTES = 4 * 1024 * 1024;

/** Bytes per `Pipeline.push`: fewer, larger calls across the wasm boundary (and
 *  fewer drains) run the pipeline about a quarter faster than the runtime's
 *  request-body chunks would. */
const PUSH_BYTES = 256 * 1024;

/** Groups a stream's chunks into chunks of at least `size` bytes (the last may be less). */
async function* coalesce(source, size) {
  let parts = [];
  let total = 0;
  for await (const c of source) {
    if (total === 0 && c.length >= size) {
      yield c;
      continue;
    }
    parts.push(c);
    total += c.length;
    if (total >= size) {
      yield concat(parts, total);
      parts = [];
      total = 0;
    }
  }
  if (total > 0) yield concat(parts, total);
}

/**
 * A body without X-Content-SHA256, read to its end (at most BUFFER_LIMIT_BYTES) and
 * hashed chunk by chunk as it arrives; the chunks are kept as they came, never
 * concatenated, and go through the pipeline afterwards. Returns `{chunks, sha256}`.
 */
async function bufferBody(body, cfg) {
  const chunks = [];
  let total = 0;
  const h = new BatchHasher();
  try {
    for await (const c of body.chunks()) {
      total += c.length;
      if (total > cfg.bufferLimitBytes) throw needHash(cfg);
      h.update(c);
      chunks.push(c.slice()); // a copy: the reader reuses its buffer
    }
    return { chunks, sha256: h.sha256() };
  } finally {
    h.free();
  }
}

/**
 * The SHA-256 of a stream of chunks, fed as they go by: workerd's native
 * `crypto.DigestStream` where there is one, else the core's hasher.
 */
class BodyDigest {
  constructor() {
    if (typeof crypto.DigestStream === 'function') {
      this.stream = new crypto.DigestStream('SHA-256');
      this.writer = this.stream.getWriter();
    } else {
      this.hasher = new BatchHasher();
    }
  }
  async update(chunk) {
    if (this.writer) await this.writer.write(chunk);
    else this.hasher.update(chunk);
  }
  async hex() {
    if (this.writer) {
      await this.writer.close();
      return hex(await this.stream.digest);
    }
    return this.hasher.sha256();
  }
  free() {
    this.hasher?.free();
    this.writer?.abort().catch(() => {});
  }
}

/**
 * Runs at most `max` upload pipelines at once in this isolate (each holds its wasm
 * state, its table parts and its request body in flight): a request beyond that waits
 * its turn for up to `waitMs`, then gets 503 with `Retry-After`.
 */
class Slots {
  constructor() {
    this.busy = 0;
    this.queue = [];
  }
  async acquire(max, waitMs) {
    if (this.busy < max) {
      this.busy++;
      return () => this.release();
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve: null };
      const timer = setTimeout(() => {
        this.queue.splice(this.queue.indexOf(waiter), 1);
        reject(busy(waitMs));
      }, waitMs);
      waiter.resolve = () => {
        clearTimeout(timer);
        this.busy++;
        resolve(() => this.release());
      };
      this.queue.push(waiter);
    });
  }
  release() {
    this.busy--;
    this.queue.shift()?.resolve();
  }
}

const slots = new Slots();

/** Waits for a pipeline slot (503 after PIPELINE_WAIT_MS); the wait goes in the log line. */
async function takeTurn(cfg, log) {
  const t0 = Date.now();
  try {
    return await slots.acquire(cfg.pipelines, cfg.pipelineWaitMs);
  } finally {
    log.waited_ms = Date.now() - t0;
  }
}
/** Seconds a client is told to wait after a 503 `busy`. */
const RETRY_AFTER_SECONDS = 10;

function busy(waitMs) {
  return new HttpError(
    503,
    'busy',
    `the worker is running as many uploads as it may at once, and none finished within ${Math.round(waitMs / 1000)} s; send the file again in ${RETRY_AFTER_SECONDS} s`,
    { retry_after: RETRY_AFTER_SECONDS },
    { 'retry-after': String(RETRY_AFTER_SECONDS) },
  );
}

function needHash(cfg) {
  return new HttpError(
    428,
    'sha256_required',
    `bodies over ${cfg.bufferLimitBytes} bytes are streamed, not buffered: send the file's SHA-256 in an X-Content-SHA256 header (64 hex digits, as \`sha256sum FILE\` prints)`,
    { buffer_limit_bytes: cfg.bufferLimitBytes },
  );
}

/** Whether the marker's batch belongs to `store` (object metadata first, then its rows). */
function markerStore(obj, report) {
  return obj.headers.get('x-amz-meta-store') || reportStores(report).join(',');
}

function parseReport(obj) {
  try {
    return JSON.parse(new TextDecoder().decode(obj.body));
  } catch {
    throw new S3Error(`${obj.key} is not JSON`, { key: obj.key, op: 'reading', reason: 'it is not JSON' });
  }
}

async function handleUpload(request, cfg, fileName, log) {
  const input = new Body(request, cfg.maxUploadBytes);
  log.body = input;
  const store = await authenticate(request, cfg);
  log.store = store;
  const nameProblem = checkFileName(fileName);
  if (nameProblem) {
    throw new HttpError(400, 'bad_file_name', `${nameProblem}: use PUT /v1/uploads/{file_name} or POST /v1/uploads with X-File-Name`);
  }
  if (!contentTypeAllowed(request.headers.get('content-type'))) {
    const type = request.headers.get('content-type').split(';')[0].trim();
    throw new HttpError(
      415,
      'unsupported_media_type',
      type.toLowerCase().startsWith('multipart/')
        ? 'send the file itself as the body (Content-Type: text/csv), not a multipart form'
        : `a body of type ${type} is not a CSV export; send it as text/csv`,
    );
  }
  const lengthHeader = request.headers.get('content-length');
  const length = lengthHeader === null ? null : Number(lengthHeader);
  if (length !== null && length > cfg.maxUploadBytes) {
    input.abandon = length > 2 * cfg.maxUploadBytes;
    throw tooLarge(cfg.maxUploadBytes);
  }
  const claimed = request.headers.get('x-content-sha256');
  if (claimed !== null && !/^[0-9a-fA-F]{64}$/.test(claimed.trim())) {
    throw new HttpError(400, 'bad_sha256', 'X-Content-SHA256 must be 64 hex digits (the SHA-256 of the whole body)');
  }

  wasm();
  const s3 = new S3(cfg.s3, cfg.retry, log.s3);
  let release = null;
  try {
    let sha256 = claimed === null ? null : claimed.trim().toLowerCase();
    let body = null;
    if (sha256 === null) {
      if (length !== null && length > cfg.bufferLimitBytes) throw needHash(cfg);
      // The turn first: a request waiting for one holds none of its body.
      release = await takeTurn(cfg, log);
      const buffered = await bufferBody(input, cfg);
      sha256 = buffered.sha256;
      body = buffered.chunks;
    }
    const batchId = batchIdOfSha256(sha256); // the core's rule (sha256 is 64 hex digits here)
    log.batch_id = batchId;
    const keys = batchKeys(cfg.prefix, batchId);
    const markerKey = keys[keys.length - 1];

    // Idempotence: a batch whose marker is there is complete; write nothing.
    const existing = await s3.get(markerKey);
    if (existing) {
      const report = parseReport(existing);
      const owner = markerStore(existing, report);
      if (owner && owner !== store) {
        throw new HttpError(403, 'wrong_store', `this file is already staged for another branch, and this token is for branch ${store} only`);
      }
      const stagedSha = existing.headers.get('x-amz-meta-sha256');
      if (stagedSha && stagedSha !== sha256) {
        throw new HttpError(400, 'sha256_mismatch', 'X-Content-SHA256 is not the SHA-256 of the file staged as this batch (only its first 32 digits match)');
      }
      log.outcome = 'duplicate';
      // A repeat upload announces the batch again: cheap, and the consumer skips a
      // loaded batch, while a batch whose first message was lost gets loaded now.
      await announce(cfg.loadQueue, { batch_id: batchId, store, committed_at: committedAt(existing.headers) }, log);
      log.rows_read = report.rows_read;
      log.rows_staged = report.rows_staged;
      log.rows_rejected = report.rows_rejected;
      log.bytes = report.bytes;
      // Where this worker loads, whether the batch is loaded yet (two GETs at most);
      // without a warehouse a duplicate costs the marker lookup only.
      const loadState = cfg.loading.warehouse ? await batchState(s3, cfg.prefix, batchId) : {};
      return json(200, { batch_id: batchId, duplicate: true, store, report, keys: [], load: loadExpectation(cfg.loading), ...loadState });
    }

    release ??= await takeTurn(cfg, log);
    if (body === null) {
      const digest = new BodyDigest();
      try {
        return await stage({ s3, cfg, log, store, fileName, batchId, keys, sha256, body: input.chunks(PUSH_BYTES), digest });
      } finally {
        digest.free();
      }
    }
    return await stage({ s3, cfg, log, store, fileName, batchId, keys, sha256, body, digest: null });
  } finally {
    release?.();
  }
}

/**
 * Streams the body through the pipeline and the table files to S3, then commits:
 * the five table objects (checked with HEAD), the index entries, the marker last.
 * `digest` (streamed bodies) hashes the bytes as they go by, to compare the whole
 * SHA-256 with X-Content-SHA256 (the pipeline itself checks the batch id only).
 */
async function stage({ s3, cfg, log, store, fileName, batchId, keys, sha256, body, digest }) {
  const markerKey = keys[keys.length - 1];
  const limiter = new Limiter(cfg.partsInFlight);
  const objects = new Map(keys.slice(0, -1).map((k) => [k.slice(cfg.prefix.length), new TableObject(s3, k, cfg.partBytes, limiter)]));
  const pipeline = new Pipeline({ source: fileName, batchId, customerKeySecret: cfg.customerKeySecret, maxCacheBytes: CORE_CACHE_BYTES });
  let result;
  try {
    const forward = async (files) => {
      for (const [path, bytes] of Object.entries(files)) {
        const obj = objects.get(path);
        if (obj) await obj.write(bytes);
      }
    };
    for await (const chunk of body) {
      if (digest) await digest.update(chunk);
      pipeline.push(chunk);
      log.bytes = pipeline.bytes;
      await forward(pipeline.drain());
    }
    if (digest && (await digest.hex()) !== sha256) {
      throw new HttpError(400, 'sha256_mismatch', 'the body does not match X-Content-SHA256: its SHA-256 differs (all 64 digits are compared)');
    }
    try {
      result = pipeline.finish();
    } catch (e) {
      // The core's stable code (CodedError), never its text.
      if (e?.code === 'batch_id_mismatch') {
        throw new HttpError(400, 'sha256_mismatch', `the body does not match X-Content-SHA256 (${e.message})`);
      }
      throw e;
    }
    const report = result.report;
    log.bytes = report.bytes;
    log.rows_read = report.rows_read;
    log.rows_staged = report.rows_staged;
    log.rows_rejected = report.rows_rejected;
    if (report.refused) {
      throw new HttpError(400, 'refused', refusalMessage(report), { batch_id: batchId, report });
    }
    checkStoreRule(cfg, store, report, batchId);
    const marker = result.files[markerKey.slice(cfg.prefix.length)];
    await forward(result.files); // the table files' last bytes; the marker is no table object
    // Commit: every table file, all settled (on a failure nothing may still be in
    // flight when the open multipart uploads are aborted).
    await limiter.drain();
    const commits = await Promise.allSettled([...objects.values()].map((o) => o.commit()));
    const failed = commits.find((c) => c.status === 'rejected');
    if (failed) throw failed.reason;
    // The marker makes the batch visible to the loader: every table object must be there.
    const heads = await Promise.all(keys.slice(0, -1).map((k) => s3.head(k)));
    const missing = keys.filter((k, i) => i < heads.length && !heads[i]);
    if (missing.length) {
      throw new S3Error(`table objects missing after their commit: ${missing.join(', ')}`, {
        key: missing[0],
        op: 'checking',
        reason: 'the object is missing after its commit',
      });
    }
    // The index entries, then the marker (a reader takes an entry only with its marker).
    const committedMs = Date.now();
    const index = indexKeys(cfg.prefix, store, batchId, committedMs);
    const entry = encoder.encode(JSON.stringify({ batch_id: batchId, store, marker: markerKey }));
    await Promise.all([index.store, index.commit].map((k) => s3.put(k, entry, { 'content-type': 'application/json' })));
    // If-None-Match: a marker there already is this upload's own earlier attempt
    // whose answer was lost, or a concurrent upload of the same bytes: either way
    // the batch is committed, with these same table objects.
    const wrote = await s3.putIfAbsent(markerKey, marker, {
      'content-type': 'application/json',
      'x-amz-meta-store': store,
      'x-amz-meta-sha256': sha256,
    });
    log.outcome = 'staged';
    if (!wrote) log.marker = 'present';
    // The batch is committed: tell the loader. A failed send does not fail the upload
    // (the cron sweep finds the batch in the commits index).
    await announce(cfg.loadQueue, { batch_id: batchId, store, committed_at: new Date(committedMs).toISOString() }, log);
    log.multipart = [...objects.values()].filter((o) => o.multipart).length;
    return json(200, { batch_id: batchId, duplicate: false, store, report, keys, load: loadExpectation(cfg.loading) });
  } catch (e) {
    // No marker from this upload: abort the open multipart uploads (invisible anyway).
    // Committed table objects stay (see TableObject.discard): a batch without its
    // marker is invisible to the loader, and the next upload of the file rewrites them.
    await limiter.drain().catch(() => {});
    await Promise.all([...objects.values()].map((o) => o.discard().catch(() => {})));
    throw e;
  } finally {
    pipeline.free();
  }
}

/**
 * The token's store's batches, newest first, from the per-store index
 * (`index/stores/<slug>/<inverted time>-<batch_id>`, which a LIST returns newest
 * first): each entry's marker is read (eight at a time) for the report; an entry
 * without its marker (an upload that failed before committing) is skipped, and a
 * batch indexed twice (a retried upload) is listed once.
 */
async function handleList(request, cfg, url, log) {
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

async function handleBatch(request, cfg, batchId, log) {
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
async function loadingHealth(cfg) {
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

function route(method, path) {
  if (path === '/healthz') return { name: 'health', methods: ['GET', 'HEAD'] };
  if (path === '/v1/uploads') return { name: 'upload', methods: ['POST'] };
  let m = /^\/v1\/uploads\/([^/]+)$/.exec(path);
  if (m) return { name: 'upload', methods: ['PUT'], fileName: m[1] };
  if (path === '/v1/batches') return { name: 'list', methods: ['GET'] };
  m = /^\/v1\/batches\/([^/]+)$/.exec(path);
  if (m && isBatchId(m[1])) return { name: 'batch', methods: ['GET'], batchId: m[1] };
  return null;
}

function logLine(log) {
  // One line per request; no names, card numbers or file contents, by construction:
  // only ids, counts, sizes and outcomes go in.
  const line = {
    event: log.event,
    outcome: log.outcome,
    status: log.status,
    batch_id: log.batch_id ?? null,
    store: log.store ?? null,
    bytes: log.bytes ?? 0,
    rows_read: log.rows_read ?? 0,
    rows_staged: log.rows_staged ?? 0,
    rows_rejected: log.rows_rejected ?? 0,
    duration_ms: Date.now() - log.start,
    s3_requests: log.s3.requests,
    s3_retries: log.s3.retries,
    body_read: log.body?.total ?? 0,
  };
  if (log.marker) line.marker = log.marker;
  if (log.queued !== undefined) line.queued = log.queued;
  if (log.waited_ms !== undefined) line.waited_ms = log.waited_ms;
  if (log.multipart !== undefined) line.multipart_tables = log.multipart;
  if (log.error) line.error = log.error;
  console.log(JSON.stringify(line));
}

async function handle(request, env) {
  const url = new URL(request.url);
  const origin = request.headers.get('origin');
  let cfg;
  try {
    wasm();
    cfg = parseConfig(env);
    cfg.loading = loadingConfig(env);
    cfg.loadQueue = env.LOAD_QUEUE ?? null;
  } catch (e) {
    console.error(JSON.stringify({ event: 'config', outcome: 'error', error: e.message }));
    return json(500, { error: 'misconfigured', message: `the worker is misconfigured: ${e.message}` });
  }
  const cors = corsHeaders(origin, cfg.allowedOrigins);
  if (request.method === 'OPTIONS') {
    return new Response(null, { status: Object.keys(cors).length ? 204 : 403, headers: { ...SAFE_HEADERS, ...cors } });
  }
  const r = route(request.method, url.pathname);
  if (!r) return json(404, { error: 'not_found', message: `no route ${url.pathname}` }, cors);
  if (!r.methods.includes(request.method)) {
    return json(405, { error: 'method_not_allowed', message: `${url.pathname} takes ${r.methods.join(', ')}` }, {
      ...cors,
      allow: [...r.methods, 'OPTIONS'].join(', '),
    });
  }
  if (r.name === 'health') {
    wasm();
    return json(
      200,
      {
        ok: true,
        core: coreVersion(),
        max_upload_bytes: cfg.maxUploadBytes,
        buffer_limit_bytes: cfg.bufferLimitBytes,
        loading: await loadingHealth(cfg),
      },
      cors,
    );
  }
  const log = { event: r.name, start: Date.now(), s3: { requests: 0, retries: 0 } };
  let response;
  try {
    if (r.name === 'upload') {
      let fileName = r.fileName ?? request.headers.get('x-file-name');
      try {
        if (r.fileName) fileName = decodeURIComponent(r.fileName);
      } catch {
        fileName = null;
      }
      response = await handleUpload(request, cfg, fileName, log);
    } else if (r.name === 'list') {
      response = await handleList(request, cfg, url, log);
    } else {
      response = await handleBatch(request, cfg, r.batchId, log);
    }
  } catch (e) {
    if (e instanceof HttpError) {
      log.outcome = e.error;
      response = json(e.status, errorBody(e), {
        ...(e.status === 401 ? { 'www-authenticate': 'Bearer error="invalid_token"' } : {}),
        ...e.headers,
      });
    } else if (e instanceof ConfigError) {
      log.outcome = 'misconfigured';
      log.error = e.message;
      response = json(500, { error: 'misconfigured', message: `the worker is misconfigured: ${e.message}` });
    } else if (e instanceof S3Error) {
      log.outcome = 's3_error';
      log.error = e.message;
      // The log line names the key; the answer names no bucket, prefix or key.
      response = json(502, {
        error: 's3_error',
        message: `the staging bucket failed, nothing was committed; try again later (${e.publicMessage(cfg.prefix)})`,
        batch_id: log.batch_id ?? null,
      });
    } else {
      log.outcome = 'internal_error';
      log.error = String(e?.message ?? e).slice(0, 300);
      response = json(500, { error: 'internal_error', message: 'the worker failed; nothing was committed' });
    }
  }
  // A stranger (401) or a request turned away (503) gets no more than 64 KiB read.
  const short = response.status === 401 || response.status === 503;
  await log.body?.discardRest(short ? UNREAD_LIMIT_BYTES : undefined);
  if (short && log.body && !log.body.done) {
    // The rest of the body was cancelled: this connection cannot carry another request.
    try {
      response.headers.set('connection', 'close');
    } catch {
      // A runtime that manages the header itself closes the connection anyway.
    }
  }
  log.status = response.status;
  logLine(log);
  for (const [k, v] of Object.entries(cors)) response.headers.set(k, v);
  if (log.batch_id) response.headers.set('x-batch-id', log.batch_id);
  return response;
}

export default {
  fetch: handle,
  /** The loader's queue consumer (src/loader/consumer.js). */
  async queue(batch, env, ctx) {
    wasm();
    await consume(batch, env, ctx);
  },
  /** The cron sweep (src/loader/sweep.js). */
  async scheduled(controller, env, ctx) {
    wasm();
    await sweep(env, { now: controller?.scheduledTime ?? Date.now() });
  },
};
