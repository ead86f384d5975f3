// The request body: read in counted chunks (413 past MAX_UPLOAD_BYTES), grouped into
// the pipeline's push size, buffered and hashed when the client sent no SHA-256
// (when it did, the pipeline hashes the body as it streams), and drained after an
// early answer.

import { BatchHasher } from '../../pkg/cafe_etl.js';

import { HttpError } from './http.js';
import { concat } from './s3.js';

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
export class Body {
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
export const UNREAD_LIMIT_BYTES = 64 * 1024;

export function tooLarge(max) {
  return new HttpError(413, 'too_large', `the body is larger than the ${max} bytes this worker accepts (MAX_UPLOAD_BYTES)`, {
    max_upload_bytes: max,
  });
}

/** Bytes per `Pipeline.push`: fewer, larger calls across the wasm boundary (and
 *  fewer drains) run the pipeline about a quarter faster than the runtime's
 *  request-body chunks would. */
export const PUSH_BYTES = 256 * 1024;

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
export async function bufferBody(body, cfg) {
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

export function needHash(cfg) {
  return new HttpError(
    428,
    'sha256_required',
    `bodies over ${cfg.bufferLimitBytes} bytes are streamed, not buffered: send the file's SHA-256 in an X-Content-SHA256 header (64 hex digits, as \`sha256sum FILE\` prints)`,
    { buffer_limit_bytes: cfg.bufferLimitBytes },
  );
}

