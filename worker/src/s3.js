// The edge worker's S3 client: requests signed with SigV4 by aws4fetch (its own
// retries off), our retries (exponential backoff, full jitter, bounded in attempts
// and time), conditional writes, multipart uploads, and part bodies sent as streams
// of their chunks. Moved out of index.js as it was; see worker/README.md.

import { AwsClient } from 'aws4fetch';
import { backoffDelay, describeKey, encoder, hex, parseListObjects, xmlTag } from './lib.js';

/**
 * S3 still failing after the retries, or refusing a request outright: answered 502.
 * `message` (for the log line) names the key; `publicMessage()` (for the client) says
 * the same in words that name no bucket, prefix or key.
 */
export class S3Error extends Error {
  constructor(message, { status = null, attempts = 1, key = null, op = 'request', reason = null, code = null } = {}) {
    super(message);
    this.status = status;
    this.attempts = attempts;
    this.key = key;
    this.op = op;
    this.reason = reason ?? (status ? `S3 answered ${status}` : 'S3 failed');
    this.code = code;
  }

  publicMessage(prefix) {
    return `${this.op} ${describeKey(prefix, this.key)}: ${this.reason}`;
  }
}

function encodeKey(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

async function sha256Hex(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

/**
 * A request body kept as the chunks it was written in (a table part: the pipeline's
 * drained bytes), never concatenated: hashed chunk by chunk and sent as a stream of
 * known length. Concatenating a 5 MiB part, and the copies that signing and `fetch`
 * make of a byte-array body, were garbage enough to lift workerd's memory by tens of
 * MiB per upload before V8 collected them.
 */
export class Chunks {
  constructor(chunks) {
    this.chunks = chunks;
    this.length = chunks.reduce((n, c) => n + c.length, 0);
  }

  async sha256() {
    if (typeof crypto.DigestStream !== 'function') return sha256Hex(concat(this.chunks, this.length));
    const ds = new crypto.DigestStream('SHA-256');
    const w = ds.getWriter();
    for (const c of this.chunks) await w.write(c);
    await w.close();
    return hex(await ds.digest);
  }

  /** A fresh stream of the bytes for one attempt (Content-Length: `length`). */
  stream() {
    if (typeof FixedLengthStream !== 'function' || this.length === 0) return concat(this.chunks, this.length);
    // eslint-disable-next-line no-undef
    const { readable, writable } = new FixedLengthStream(this.length);
    const w = writable.getWriter();
    (async () => {
      for (const c of this.chunks) await w.write(c);
      await w.close();
    })().catch(() => {});
    return readable;
  }
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
   * One S3 request with retries (`retrying`): 5xx, 429, timeouts and dropped
   * connections are retried. The answer's body is read inside each attempt, so a
   * connection dropped mid-answer is retried too. Returns `{status, headers, body}`
   * (body: ArrayBuffer) for any other status; throws S3Error when the retries are spent.
   */
  async request(what, method, url, { body = null, headers = {}, ok = [200], key = null, op = method } = {}) {
    const payloadHash = body instanceof Chunks ? await body.sha256() : await sha256Hex(body ?? new Uint8Array(0));
    // The attempt's timeout grows with the body (at least 1 MB/s is expected), so a
    // large part on a slow link is not cut off and sent again for ever.
    const extraMs = Math.ceil((body?.length ?? 0) / 1000);
    return this.retrying(what, { key, op, extraMs }, async (signal) => {
      const signed = await this.client.sign(url, {
        method,
        body: body instanceof Chunks ? body.stream() : body,
        headers: { ...headers, 'x-amz-content-sha256': payloadHash },
      });
      const res = await fetch(signed, { signal });
      const answer = { status: res.status, headers: res.headers, body: await res.arrayBuffer() };
      if (!ok.includes(res.status) && retryable(res.status)) return new Retry(`S3 answered ${res.status}`, res.status);
      // CompleteMultipartUpload may answer 200 with an <Error> body.
      if (res.status === 200 && method === 'POST' && url.includes('uploadId=')) {
        const text = new TextDecoder().decode(answer.body);
        if (text.includes('<Error>')) return new Retry(`${xmlTag(text, 'Code') ?? 'error'} in a 200 answer`, null);
      }
      return answer;
    });
  }

  /**
   * The retry loop of every request: `attempt(signal, untime)` is called until it
   * returns an answer (anything but a Retry), with exponential backoff and full
   * jitter between attempts, within `attempts` and `totalMs`. Each attempt is timed
   * (`timeoutMs` + `extraMs`, at most the time left; `untime()` stops its clock once
   * only a body the caller reads at its own pace is left); a timeout or a thrown
   * error (a dropped connection) is retried, an S3Error thrown on. Throws S3Error
   * with the last attempt's reason when the retries are spent.
   */
  async retrying(what, { key, op, extraMs = 0 }, attempt) {
    const { attempts, totalMs, timeoutMs } = this.retry;
    const deadline = Date.now() + totalMs;
    let last = new Retry('no attempt made', null);
    for (let n = 0; n < attempts; n++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const controller = new AbortController();
      const limit = Math.min(timeoutMs + extraMs, remaining);
      const timer = setTimeout(() => controller.abort(), limit);
      this.stats.requests++;
      if (n > 0) this.stats.retries++;
      try {
        const answer = await attempt(controller.signal, () => clearTimeout(timer));
        if (!(answer instanceof Retry)) return answer;
        last = answer;
      } catch (e) {
        if (e instanceof S3Error) throw e;
        last = controller.signal.aborted
          ? new Retry(`no answer within ${limit} ms`, null)
          : new Retry('the connection failed', null, `connection failed (${e?.message ?? e})`);
      } finally {
        clearTimeout(timer);
      }
      if (n + 1 >= attempts) break;
      const delay = backoffDelay(n, this.retry);
      if (Date.now() + delay >= deadline) break;
      await sleep(delay);
    }
    throw new S3Error(`${what}: ${last.detail} (gave up after retrying)`, {
      status: last.status,
      attempts,
      key,
      op,
      reason: `${last.reason} (gave up after retrying)`,
    });
  }

  async expect(what, method, url, opts = {}) {
    const ok = opts.ok ?? [200];
    const answer = await this.request(what, method, url, { ...opts, ok });
    if (!ok.includes(answer.status)) {
      const code = xmlTag(new TextDecoder().decode(answer.body), 'Code');
      const reason = `S3 answered ${answer.status} ${code ?? ''}`.trim();
      throw new S3Error(`${what}: ${reason}`, { status: answer.status, key: opts.key ?? null, op: opts.op, reason, code });
    }
    return answer;
  }

  /** The object's bytes, headers, or null if it does not exist. */
  async get(key) {
    const a = await this.expect(`GET ${key}`, 'GET', this.url(key), { ok: [200, 404], key, op: 'reading' });
    return a.status === 404 ? null : { ...a, key };
  }

  /**
   * The object's body as a stream, for reading an object too large to hold (a
   * table object on its way into a warehouse COPY), or null if it does not exist.
   * The request is retried as `request` does until the answer's headers arrive;
   * the body is then the caller's to read at its own pace (it is not timed: a
   * COPY under backpressure may take it slowly), and a connection lost while
   * reading it errors the stream. Returns `{status, headers, body}`.
   */
  async open(key) {
    const url = this.url(key);
    const emptyHash = await sha256Hex(new Uint8Array(0));
    return this.retrying(`GET ${key}`, { key, op: 'reading' }, async (signal, untime) => {
      const signed = await this.client.sign(url, { method: 'GET', headers: { 'x-amz-content-sha256': emptyHash } });
      const res = await fetch(signed, { signal });
      if (res.status === 200) {
        // Only the wait for the headers is timed: the body is read at the
        // reader's pace. (An abort after this point would error the body.)
        untime();
        return { status: res.status, headers: res.headers, body: res.body, key };
      }
      const text = await res.text();
      if (res.status === 404) return null;
      if (retryable(res.status)) return new Retry(`S3 answered ${res.status}`, res.status);
      const code = xmlTag(text, 'Code');
      const reason = `S3 answered ${res.status} ${code ?? ''}`.trim();
      throw new S3Error(`GET ${key}: ${reason}`, { status: res.status, key, op: 'reading', reason, code });
    });
  }

  /** The object's headers, or null if it does not exist. */
  async head(key) {
    const a = await this.expect(`HEAD ${key}`, 'HEAD', this.url(key), { ok: [200, 404], key, op: 'checking' });
    return a.status === 404 ? null : a.headers;
  }

  async put(key, bytes, headers = {}) {
    await this.expect(`PUT ${key}`, 'PUT', this.url(key), { body: bytes, headers, key, op: 'writing' });
  }

  /**
   * Writes an object only if no object has that key (`If-None-Match: *`). Returns
   * true when this call wrote it, false when one was there already (412, or 409 when
   * two conditional writes crossed). A server that does not implement conditional
   * writes (501, or 400 NotImplemented) gets a plain PUT: the objects written this
   * way are content-addressed, so a second write puts the same bytes.
   */
  async putIfAbsent(key, bytes, headers = {}) {
    const a = await this.expect(`PUT ${key} (if absent)`, 'PUT', this.url(key), {
      body: bytes,
      headers: { ...headers, 'if-none-match': '*' },
      ok: [200, 400, 409, 412, 501],
      key,
      op: 'writing',
    });
    if (a.status === 200) return true;
    if (a.status === 412 || a.status === 409) return false;
    const code = xmlTag(new TextDecoder().decode(a.body), 'Code');
    if (a.status === 501 || code === 'NotImplemented') {
      await this.put(key, bytes, headers);
      return true;
    }
    throw new S3Error(`PUT ${key}: S3 answered ${a.status} ${code ?? ''}`.trim(), {
      status: a.status,
      key,
      op: 'writing',
      reason: `S3 answered ${a.status} ${code ?? ''}`.trim(),
      code,
    });
  }

  async createMultipart(key, headers = {}) {
    const a = await this.expect(`create multipart upload of ${key}`, 'POST', this.url(key, '?uploads'), {
      headers,
      key,
      op: 'starting a multipart upload of',
    });
    const id = xmlTag(new TextDecoder().decode(a.body), 'UploadId');
    if (!id) {
      throw new S3Error(`create multipart upload of ${key}: no UploadId in the answer`, {
        key,
        op: 'starting a multipart upload of',
        reason: 'no UploadId in the answer',
      });
    }
    return id;
  }

  async uploadPart(key, uploadId, partNumber, bytes) {
    const q = `?partNumber=${partNumber}&uploadId=${encodeURIComponent(uploadId)}`;
    const op = `upload part ${partNumber} of`;
    const a = await this.expect(`upload part ${partNumber} of ${key}`, 'PUT', this.url(key, q), { body: bytes, key, op });
    const etag = a.headers.get('etag');
    if (!etag) throw new S3Error(`upload part ${partNumber} of ${key}: no ETag in the answer`, { key, op, reason: 'no ETag in the answer' });
    return etag;
  }

  /**
   * Completes a multipart upload of `bytes` bytes in all. A completion whose answer
   * was lost and which S3 carried out is retried, and S3 then answers `NoSuchUpload`
   * (the upload is gone because it became the object; s3s-fs says 403): a HEAD tells
   * that case (the object is there, of that size) from a real failure.
   */
  async completeMultipart(key, uploadId, etags, bytes) {
    const xml =
      '<CompleteMultipartUpload>' +
      etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</ETag></Part>`).join('') +
      '</CompleteMultipartUpload>';
    try {
      await this.expect(`complete multipart upload of ${key}`, 'POST', this.url(key, `?uploadId=${encodeURIComponent(uploadId)}`), {
        body: encoder.encode(xml),
        headers: { 'content-type': 'application/xml' },
        key,
        op: 'completing the multipart upload of',
      });
    } catch (e) {
      // Any refusal, not only NoSuchUpload: s3s-fs answers 403 for an upload that is
      // gone. The object's size settles it; its key is the batch id, so an object of
      // that size holds these bytes (or those of an earlier upload of the same file).
      if (!(e instanceof S3Error) || e.status === null || e.status >= 500) throw e;
      const head = await this.head(key);
      if (!head || Number(head.get('content-length')) !== bytes) throw e;
    }
  }

  async abortMultipart(key, uploadId) {
    await this.expect(`abort multipart upload of ${key}`, 'DELETE', this.url(key, `?uploadId=${encodeURIComponent(uploadId)}`), {
      ok: [200, 204, 404],
      key,
      op: 'aborting the multipart upload of',
    });
  }

  /** One page of ListObjectsV2. */
  async list(prefix, continuation = null, maxKeys = 1000) {
    let q = `?list-type=2&max-keys=${maxKeys}&prefix=${encodeURIComponent(prefix)}`;
    if (continuation) q += `&continuation-token=${encodeURIComponent(continuation)}`;
    const a = await this.expect(`list ${prefix}`, 'GET', this.url(null, q), { key: null, op: 'reading' });
    return parseListObjects(new TextDecoder().decode(a.body));
  }
}

/**
 * An attempt's answer that is to be tried again: why (`reason`, in words for the
 * client), the status (null: none, or no usable answer) and `detail` for the log line.
 */
class Retry {
  constructor(reason, status, detail = reason) {
    this.reason = reason;
    this.status = status;
    this.detail = detail;
  }
}

/** One array of the chunks' bytes (one chunk is returned as it is). */
export function concat(chunks, total) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
