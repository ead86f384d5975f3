// The table files of a batch on their way to S3 (multipart while the body is still
// being read, one PUT otherwise), and the bound on parts in flight. The commit order
// itself (tables, HEAD check, index, marker) is `commit` in upload.js; see
// worker/README.md, *Staging and the commit protocol*.

import { Chunks } from './s3.js';

/** Bounds the part uploads in flight for one upload (so memory stays bounded too). */
export class Limiter {
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
export class TableObject {
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
    const part = new Chunks(this.chunks);
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
      await this.s3.put(this.key, new Chunks(this.chunks), { 'content-type': 'application/gzip' });
    } else {
      if (this.buffered > 0) await this.sendPart();
      await this.limiter.drain();
      await this.s3.completeMultipart(this.key, this.uploadId, this.etags, this.bytes);
    }
    this.chunks = [];
    this.committed = true;
  }

  /**
   * Undoes what is not visible: aborts an open multipart upload. A committed object
   * stays: its key is the batch id, so its bytes are those any upload of the same file
   * writes, and a concurrent upload of the same file may be about to commit the marker
   * over it (a batch without its marker is invisible to the loader).
   */
  async discard() {
    this.chunks = [];
    if (!this.committed && this.starting) {
      const id = await this.starting.catch(() => null);
      if (id) await this.s3.abortMultipart(this.key, id);
    }
  }
}
