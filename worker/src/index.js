// The edge worker: a branch's daily till export goes in (PUT /v1/uploads/{file_name}),
// runs through the same WebAssembly core as the browser page, and comes out as the
// staging layout in an S3 bucket for Redshift COPY: five gzip CSV table files first,
// then the batch report `batches/<batch_id>.json` last, as the commit marker.
//
// The raw body (customer names, card numbers) is never written anywhere and never
// logged: only the cleaned table files the core produces leave this worker.
//
// Routes, configuration and the protocol are described in worker/README.md.

import { AwsClient } from 'aws4fetch';
import wasmModule from '../../pkg/cafe_etl_bg.wasm';
import { initSync, Pipeline, BatchHasher, checkStores, verifyToken, version as coreVersion } from '../../pkg/cafe_etl.js';

import {
  batchKeys,
  backoffDelay,
  checkFileName,
  ConfigError,
  contentTypeAllowed,
  corsHeaders,
  encoder,
  hex,
  parseConfig,
  parseListObjects,
  reportStores,
  xmlTag,
} from './lib.js';

let wasmReady = false;
function wasm() {
  if (!wasmReady) {
    initSync({ module: wasmModule });
    wasmReady = true;
  }
}

// ---------------------------------------------------------------------------
// S3 through aws4fetch, with our own retries (aws4fetch's are turned off)

/** S3 still failing after the retries, or refusing a request outright: answered 502. */
export class S3Error extends Error {
  constructor(message, { status = null, attempts = 1 } = {}) {
    super(message);
    this.status = status;
    this.attempts = attempts;
  }
}

function encodeKey(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

async function sha256Hex(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

function retryable(status) {
  return status >= 500 || status === 429 || status === 408;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class S3 {
  constructor(cfg, retry, stats = { requests: 0, retries: 0 }) {
    this.cfg = cfg;
    this.retry = retry;
    this.stats = stats;
    this.client = new AwsClient({
      accessKeyId: cfg.accessKeyId,
      secretAccessKey: cfg.secretAccessKey,
      service: 's3',
      region: cfg.region,
      retries: 0,
    });
  }

  url(key, query = '') {
    return `${this.cfg.endpoint}/${this.cfg.bucket}${key === null ? '' : '/' + encodeKey(key)}${query}`;
  }

  /**
   * One S3 request with retries: 5xx, 429, timeouts and dropped connections are
   * retried with exponential backoff and full jitter, within `attempts` and `totalMs`.
   * The answer's body is read inside each attempt, so a connection dropped mid-answer
   * is retried too. Returns `{status, headers, body}` (body: ArrayBuffer) for any
   * other status; throws S3Error when the retries are spent.
   */
  async request(what, method, url, { body = null, headers = {}, ok = [200] } = {}) {
    const { attempts, totalMs, timeoutMs } = this.retry;
    const deadline = Date.now() + totalMs;
    const payloadHash = await sha256Hex(body ?? new Uint8Array(0));
    let last = 'no attempt made';
    let lastStatus = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const controller = new AbortController();
      // The attempt's timeout grows with the body (at least 1 MB/s is expected), so a
      // large part on a slow link is not cut off and sent again for ever.
      const limit = Math.min(timeoutMs + Math.ceil((body?.length ?? 0) / 1000), remaining);
      const timer = setTimeout(() => controller.abort(), limit);
      this.stats.requests++;
      if (attempt > 0) this.stats.retries++;
      try {
        const signed = await this.client.sign(url, {
          method,
          body,
          headers: { ...headers, 'x-amz-content-sha256': payloadHash },
        });
        const res = await fetch(signed, { signal: controller.signal });
        const answer = { status: res.status, headers: res.headers, body: await res.arrayBuffer() };
        if (ok.includes(res.status) || !retryable(res.status)) {
          // CompleteMultipartUpload may answer 200 with an <Error> body.
          if (res.status === 200 && method === 'POST' && url.includes('uploadId=')) {
            const text = new TextDecoder().decode(answer.body);
            if (text.includes('<Error>')) {
              last = `${what}: ${xmlTag(text, 'Code') ?? 'error'} in a 200 answer`;
              throw new RetryableAnswer(last);
            }
          }
          return answer;
        }
        lastStatus = res.status;
        last = `${what}: S3 answered ${res.status}`;
      } catch (e) {
        if (!(e instanceof RetryableAnswer)) {
          last = `${what}: ${controller.signal.aborted ? `no answer within ${limit} ms` : `connection failed (${e?.message ?? e})`}`;
        }
        lastStatus = null;
      } finally {
        clearTimeout(timer);
      }
      if (attempt + 1 >= attempts) break;
      const delay = backoffDelay(attempt, this.retry);
      if (Date.now() + delay >= deadline) break;
      await sleep(delay);
    }
    throw new S3Error(`${last} (gave up after retrying)`, { status: lastStatus, attempts });
  }

  async expect(what, method, url, opts = {}) {
    const ok = opts.ok ?? [200];
    const answer = await this.request(what, method, url, { ...opts, ok });
    if (!ok.includes(answer.status)) {
      const text = new TextDecoder().decode(answer.body);
      throw new S3Error(`${what}: S3 answered ${answer.status} ${xmlTag(text, 'Code') ?? ''}`.trim(), {
        status: answer.status,
      });
    }
    return answer;
  }

  /** The object's bytes, headers, or null if it does not exist. */
  async get(key) {
    const a = await this.expect(`GET ${key}`, 'GET', this.url(key), { ok: [200, 404] });
    return a.status === 404 ? null : a;
  }

  async put(key, bytes, headers = {}) {
    await this.expect(`PUT ${key}`, 'PUT', this.url(key), { body: bytes, headers });
  }

  async delete(key) {
    await this.expect(`DELETE ${key}`, 'DELETE', this.url(key), { ok: [200, 204, 404] });
  }

  async createMultipart(key, headers = {}) {
    const a = await this.expect(`create multipart upload of ${key}`, 'POST', this.url(key, '?uploads'), { headers });
    const id = xmlTag(new TextDecoder().decode(a.body), 'UploadId');
    if (!id) throw new S3Error(`create multipart upload of ${key}: no UploadId in the answer`);
    return id;
  }

  async uploadPart(key, uploadId, partNumber, bytes) {
    const q = `?partNumber=${partNumber}&uploadId=${encodeURIComponent(uploadId)}`;
    const a = await this.expect(`upload part ${partNumber} of ${key}`, 'PUT', this.url(key, q), { body: bytes });
    const etag = a.headers.get('etag');
    if (!etag) throw new S3Error(`upload part ${partNumber} of ${key}: no ETag in the answer`);
    return etag;
  }

  async completeMultipart(key, uploadId, etags) {
    const xml =
      '<CompleteMultipartUpload>' +
      etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</ETag></Part>`).join('') +
      '</CompleteMultipartUpload>';
    await this.expect(`complete multipart upload of ${key}`, 'POST', this.url(key, `?uploadId=${encodeURIComponent(uploadId)}`), {
      body: encoder.encode(xml),
      headers: { 'content-type': 'application/xml' },
    });
  }

  async abortMultipart(key, uploadId) {
    await this.expect(`abort multipart upload of ${key}`, 'DELETE', this.url(key, `?uploadId=${encodeURIComponent(uploadId)}`), {
      ok: [200, 204, 404],
    });
  }

  /** One page of ListObjectsV2. */
  async list(prefix, continuation = null, maxKeys = 1000) {
    let q = `?list-type=2&max-keys=${maxKeys}&prefix=${encodeURIComponent(prefix)}`;
    if (continuation) q += `&continuation-token=${encodeURIComponent(continuation)}`;
    const a = await this.expect(`list ${prefix}`, 'GET', this.url(null, q));
    return parseListObjects(new TextDecoder().decode(a.body));
  }
}

class RetryableAnswer extends Error {}

function concat(chunks, total) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Bounds the part uploads in flight for one upload (so memory stays bounded too). */
class Limiter {
  constructor(max) {
    this.max = max;
    this.running = new Set();
    this.error = null;
  }
  async run(task) {
    while (this.running.size >= this.max) await Promise.race(this.running);
    if (this.error) throw this.error;
    const p = task()
      .catch((e) => {
        this.error ??= e;
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }
  async drain() {
    while (this.running.size) await Promise.race(this.running);
    if (this.error) throw this.error;
  }
}

/**
 * One table file on its way to S3. Compressed bytes are buffered until a part's worth
 * is there; the first full part starts a multipart upload and parts go up while the
 * body is still being read. A file that never reaches a part's size is sent with one
 * PUT at commit. Nothing is visible in the bucket before `commit()`.
 */
class TableObject {
  constructor(s3, key, partBytes, limiter) {
    this.s3 = s3;
    this.key = key;
    this.partBytes = partBytes;
    this.limiter = limiter;
    this.chunks = [];
    this.buffered = 0;
    this.bytes = 0;
    this.uploadId = null;
    this.starting = null;
    this.etags = [];
    this.parts = 0;
    this.committed = false;
  }

  async write(bytes) {
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.buffered += bytes.length;
    this.bytes += bytes.length;
    if (this.buffered >= this.partBytes) await this.sendPart();
  }

  async sendPart() {
    const part = concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    const n = ++this.parts;
    if (!this.starting) {
      this.starting = this.s3.createMultipart(this.key, { 'content-type': 'application/gzip' }).then((id) => {
        this.uploadId = id;
        return id;
      });
      // Awaited by the part uploads; this only keeps a failure from being reported as unhandled.
      this.starting.catch(() => {});
    }
    await this.limiter.run(async () => {
      const id = await this.starting;
      this.etags[n - 1] = await this.s3.uploadPart(this.key, id, n, part);
    });
  }

  get multipart() {
    return this.parts > 0;
  }

  async commit() {
    if (!this.multipart) {
      await this.s3.put(this.key, concat(this.chunks, this.buffered), { 'content-type': 'application/gzip' });
    } else {
      if (this.buffered > 0) await this.sendPart();
      await this.limiter.drain();
      await this.s3.completeMultipart(this.key, this.uploadId, this.etags);
    }
    this.chunks = [];
    this.committed = true;
  }

  /** Undoes whatever reached S3: aborts an open multipart upload, deletes a committed object. */
  async discard({ keepCommitted = false } = {}) {
    this.chunks = [];
    if (this.committed) {
      if (!keepCommitted) await this.s3.delete(this.key);
    } else if (this.starting) {
      const id = await this.starting.catch(() => null);
      if (id) await this.s3.abortMultipart(this.key, id);
    }
  }
}

// ---------------------------------------------------------------------------
// HTTP

/** An answer decided on the way (401, 413, ...): carries the status and JSON body. */
class HttpError extends Error {
  constructor(status, error, message, extra = {}) {
    super(message);
    this.status = status;
    this.error = error;
    this.extra = extra;
  }
}

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body, null, 0), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers },
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
 * answer. A client that sent `Expect: 100-continue` has not sent the body yet and is
 * left alone. A body over `max` (413) is still drained up to twice `max`, so a file a
 * little too big gets its 413 too; past that, or when the declared Content-Length is
 * past that, or when the client stalls for 30 s, it is cancelled (and the client may
 * see a reset).
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

  async *chunks() {
    if (this.done) return;
    this.reader ??= this.stream.getReader();
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

  async discardRest(timeoutMs = 30_000) {
    if (this.done) return;
    if (!this.reader && this.expectContinue) return;
    this.reader ??= this.stream.getReader();
    let timer;
    const stalled = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ stalled: true }), timeoutMs);
    });
    try {
      while (!this.abandon && this.total <= 2 * this.max) {
        const r = await Promise.race([this.reader.read(), stalled]);
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

function tooLarge(max) {
  return new HttpError(413, 'too_large', `the body is larger than the ${max} bytes this worker accepts (MAX_UPLOAD_BYTES)`, {
    max_upload_bytes: max,
  });
}

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

/** Splits buffered bytes into pipeline-sized chunks. */
function* slices(bytes, size = PUSH_BYTES) {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, Math.min(at + size, bytes.length));
}

async function bufferBody(body, cfg) {
  const parts = [];
  let total = 0;
  for await (const c of body.chunks()) {
    total += c.length;
    if (total > cfg.bufferLimitBytes) throw needHash(cfg);
    parts.push(c);
  }
  return concat(parts, total);
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
    throw new S3Error('a batch marker in the bucket is not JSON');
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
  let batchId;
  let body;
  if (claimed !== null) {
    batchId = claimed.trim().toLowerCase().slice(0, 32);
  } else {
    if (length !== null && length > cfg.bufferLimitBytes) throw needHash(cfg);
    const buffered = await bufferBody(input, cfg);
    const h = new BatchHasher();
    try {
      // In slices: wasm memory grows to the largest buffer passed in, and never shrinks.
      for (const slice of slices(buffered)) h.update(slice);
      batchId = h.finish();
    } finally {
      h.free();
    }
    body = slices(buffered);
  }
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
    log.outcome = 'duplicate';
    log.rows_read = report.rows_read;
    log.rows_staged = report.rows_staged;
    log.rows_rejected = report.rows_rejected;
    log.bytes = report.bytes;
    return json(200, { batch_id: batchId, duplicate: true, store, report, keys: [] });
  }

  body ??= coalesce(input.chunks(), PUSH_BYTES);
  const limiter = new Limiter(cfg.partsInFlight);
  const objects = new Map(keys.slice(0, -1).map((k) => [k.slice(cfg.prefix.length), new TableObject(s3, k, cfg.partBytes, limiter)]));
  const pipeline = new Pipeline({ source: fileName, batchId, customerKeySecret: cfg.customerKeySecret });
  let result;
  try {
    const forward = async (files) => {
      for (const [path, bytes] of Object.entries(files)) {
        const obj = objects.get(path);
        if (obj) await obj.write(bytes);
      }
    };
    for await (const chunk of body) {
      pipeline.push(chunk);
      log.bytes = pipeline.bytes;
      await forward(pipeline.drain());
    }
    try {
      result = pipeline.finish();
    } catch (e) {
      const msg = String(e?.message ?? e);
      if (msg.includes('batch id')) {
        throw new HttpError(400, 'sha256_mismatch', `the body does not match X-Content-SHA256: ${msg.replace(/^stage error: /, '')}`);
      }
      throw e;
    }
    const report = result.report;
    log.bytes = report.bytes;
    log.rows_read = report.rows_read;
    log.rows_staged = report.rows_staged;
    log.rows_rejected = report.rows_rejected;
    if (report.refused) {
      throw new HttpError(400, 'refused', report.issues[0]?.message ?? 'the file was refused', { batch_id: batchId, report });
    }
    checkStoreRule(cfg, store, report, batchId);
    const marker = result.files[markerKey.slice(cfg.prefix.length)];
    await forward(Object.fromEntries(Object.entries(result.files).filter(([p]) => !p.startsWith('batches/'))));
    // Commit: every table file, then the marker.
    await limiter.drain();
    // Settled, not raced: on a failure nothing may still be in flight when we undo.
    const commits = await Promise.allSettled([...objects.values()].map((o) => o.commit()));
    const failed = commits.find((c) => c.status === 'rejected');
    if (failed) throw failed.reason;
    await s3.put(markerKey, marker, { 'content-type': 'application/json', 'x-amz-meta-store': store });
    log.outcome = 'staged';
    log.multipart = [...objects.values()].filter((o) => o.multipart).length;
    return json(200, { batch_id: batchId, duplicate: false, store, report, keys });
  } catch (e) {
    // No marker: undo what reached S3, best effort (the loader ignores a batch without
    // its marker anyway, and the next upload of the same file rewrites the same keys).
    // Open multipart uploads are always aborted. Committed table objects are deleted
    // only when the marker is known to be absent: a concurrent upload of the same
    // bytes may have committed the batch meanwhile, and its tables are these keys.
    await limiter.drain().catch(() => {});
    const committedElsewhere = [...objects.values()].some((o) => o.committed)
      ? await s3.get(markerKey).then((m) => m !== null, () => true)
      : false;
    await Promise.all([...objects.values()].map((o) => o.discard({ keepCommitted: committedElsewhere }).catch(() => {})));
    throw e;
  } finally {
    pipeline.free();
  }
}

async function handleList(request, cfg, url, log) {
  const store = await authenticate(request, cfg);
  log.store = store;
  const limitParam = url.searchParams.get('limit');
  const limit = limitParam === null ? 50 : Number(limitParam);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
    throw new HttpError(400, 'bad_limit', 'limit must be a whole number from 1 to 500');
  }
  const s3 = new S3(cfg.s3, cfg.retry, log.s3);
  const markerPrefix = `${cfg.prefix}batches/`;
  const markers = [];
  let next = null;
  let scanTruncated = false;
  do {
    const page = await s3.list(markerPrefix, next);
    markers.push(...page.objects.filter((o) => /\/[0-9a-f]{32}\.json$/.test(o.key)));
    next = page.truncated ? page.next : null;
    if (markers.length >= cfg.listLimit && next) {
      scanTruncated = true;
      break;
    }
  } while (next);
  markers.sort((a, b) => (b.lastModified ?? '').localeCompare(a.lastModified ?? '') || a.key.localeCompare(b.key));
  const batches = [];
  let scanned = 0;
  // Newest first, a few at a time, until `limit` of this store's batches are found.
  for (let i = 0; i < markers.length && batches.length < limit; i += 8) {
    const group = markers.slice(i, i + 8);
    scanned += group.length;
    const got = await Promise.all(group.map((m) => s3.get(m.key)));
    got.forEach((obj, j) => {
      if (!obj || batches.length >= limit) return;
      const report = parseReport(obj);
      if (markerStore(obj, report) !== store) return;
      batches.push(batchSummary(cfg, report, group[j], store));
    });
  }
  log.outcome = 'listed';
  return json(200, {
    store,
    bucket: cfg.s3.bucket,
    prefix: cfg.prefix,
    batches,
    scanned,
    truncated: scanTruncated || batches.length >= limit,
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
  return json(200, { batch_id: batchId, store, report, keys });
}

function route(method, path) {
  if (path === '/healthz') return { name: 'health', methods: ['GET', 'HEAD'] };
  if (path === '/v1/uploads') return { name: 'upload', methods: ['POST'] };
  let m = /^\/v1\/uploads\/([^/]+)$/.exec(path);
  if (m) return { name: 'upload', methods: ['PUT'], fileName: m[1] };
  if (path === '/v1/batches') return { name: 'list', methods: ['GET'] };
  m = /^\/v1\/batches\/([0-9a-f]{32})$/.exec(path);
  if (m) return { name: 'batch', methods: ['GET'], batchId: m[1] };
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
  };
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
  } catch (e) {
    console.error(JSON.stringify({ event: 'config', outcome: 'error', error: e.message }));
    return json(500, { error: 'misconfigured', message: `the worker is misconfigured: ${e.message}` });
  }
  const cors = corsHeaders(origin, cfg.allowedOrigins);
  if (request.method === 'OPTIONS') {
    return new Response(null, { status: Object.keys(cors).length ? 204 : 403, headers: cors });
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
      { ok: true, core: coreVersion(), max_upload_bytes: cfg.maxUploadBytes, buffer_limit_bytes: cfg.bufferLimitBytes },
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
      response = json(e.status, errorBody(e), e.status === 401 ? { 'www-authenticate': 'Bearer error="invalid_token"' } : {});
    } else if (e instanceof ConfigError) {
      log.outcome = 'misconfigured';
      log.error = e.message;
      response = json(500, { error: 'misconfigured', message: `the worker is misconfigured: ${e.message}` });
    } else if (e instanceof S3Error) {
      log.outcome = 's3_error';
      log.error = e.message;
      response = json(502, {
        error: 's3_error',
        message: `the staging bucket failed, nothing was committed; try again later (${e.message})`,
        batch_id: log.batch_id ?? null,
      });
    } else {
      log.outcome = 'internal_error';
      log.error = String(e?.message ?? e).slice(0, 300);
      response = json(500, { error: 'internal_error', message: 'the worker failed; nothing was committed' });
    }
  }
  await log.body?.discardRest();
  log.status = response.status;
  logLine(log);
  for (const [k, v] of Object.entries(cors)) response.headers.set(k, v);
  if (log.batch_id) response.headers.set('x-batch-id', log.batch_id);
  return response;
}

export default {
  fetch: handle,
};
