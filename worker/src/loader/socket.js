// The socket node-postgres talks through on workerd: pg-cloudflare's
// CloudflareSocket (cloudflare:sockets), given the two things a Node socket does
// and it does not. Its write() always answers true, so pg-copy-streams would push
// a whole table object into the socket's queue as fast as S3 and gunzip give it
// (the isolate has 128 MB); and a write that fails (the connection reset) is only
// told to a write callback, which pg never passes, so a load would wait for ever
// on a dead connection; nor is the server's end of the connection (its reading
// loop just stops). Here write() answers false once `highWaterMark` bytes wait
// to be sent, and 'drain' follows when they have gone; a failed write is an
// 'error' event and the connection closed by the other end a 'close' event, each
// of which pg turns into the failure of the query in flight.

import { CloudflareSocket } from 'pg-cloudflare';

/** Bytes written and not yet sent above which write() asks the writer to wait. */
export const SOCKET_HIGH_WATER_MARK = 256 * 1024;

export class PacedSocket extends CloudflareSocket {
  constructor(ssl, highWaterMark = SOCKET_HIGH_WATER_MARK) {
    super(ssl);
    this.highWaterMark = highWaterMark;
    this.pending = 0;
    this.needDrain = false;
    this.failed = false;
    this.ending = false;
    this.closeEmitted = false;
  }

  // The reading loop ends when the other end closed the connection: unless this
  // side was closing it, that is a lost connection.
  async _listen() {
    await super._listen();
    if (!this.ending) this.emit('close');
  }

  end(...args) {
    this.ending = true;
    return super.end(...args);
  }

  /** 'close' once, whichever of the reading loop and the socket's end says it first. */
  emit(event, ...args) {
    if (event === 'close') {
      if (this.closeEmitted) return false;
      this.closeEmitted = true;
    }
    return super.emit(event, ...args);
  }

  write(data, encodingOrCallback = 'utf8', callback = () => {}) {
    const encoding = typeof encodingOrCallback === 'function' ? 'utf8' : encodingOrCallback;
    const done = typeof encodingOrCallback === 'function' ? encodingOrCallback : callback;
    const size = typeof data === 'string' ? Buffer.byteLength(data, encoding) : data.length;
    this.pending += size;
    super.write(data, encoding, (err) => {
      this.pending -= size;
      if (err && !this.failed) {
        this.failed = true;
        this.emit('error', err instanceof Error ? err : new Error(String(err)));
      }
      done(err);
      if (this.needDrain && this.pending < this.highWaterMark) {
        this.needDrain = false;
        this.emit('drain');
      }
    });
    if (this.pending >= this.highWaterMark) {
      this.needDrain = true;
      return false;
    }
    return true;
  }
}
