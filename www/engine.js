// The page's side of the Web Worker protocol (see worker.js): one request,
// one promise; progress through a callback; cancel by request id.

export class Engine {
  constructor() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.nextId = 1;
    this.pending = new Map();
    this.worker.onmessage = (event) => this.#receive(event.data);
    this.worker.onerror = (event) => {
      // A module that fails to load (missing pkg/, syntax error) lands here,
      // not in a request: fail everything waiting, with the reason.
      event.preventDefault();
      const message = `the checker could not start: ${event.message || 'the worker script failed to load'} (is www/pkg/ there? run scripts/serve-www)`;
      for (const p of this.pending.values()) p.reject(new Error(message));
      this.pending.clear();
      this.failed = message;
    };
  }

  /**
   * Sends {id, type, data}; resolves with the result's data.
   * @param {string} type
   * @param {object} data
   * @param {{onProgress?: (p: object) => void, transfer?: Transferable[], onId?: (id: number) => void}} [opts]
   */
  request(type, data, opts = {}) {
    if (this.failed) return Promise.reject(new Error(this.failed));
    const id = this.nextId++;
    if (opts.onId) opts.onId(id);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress: opts.onProgress });
      this.worker.postMessage({ id, type, data }, opts.transfer || []);
    });
  }

  cancel(id) {
    this.worker.postMessage({ id: 0, type: 'cancel', data: { id } });
  }

  #receive({ id, type, data }) {
    const p = this.pending.get(id);
    if (!p) return;
    if (type === 'progress') {
      if (p.onProgress) p.onProgress(data);
      return;
    }
    this.pending.delete(id);
    if (type === 'result') {
      p.resolve(data);
    } else {
      const err = new Error(data && data.message ? data.message : 'the checker failed');
      err.code = data && data.code ? data.code : null; // the core's stable code, to match instead of the text
      err.cancelled = Boolean(data && data.cancelled);
      p.reject(err);
    }
  }
}
