// The isolate's upload pipelines, taken in turns: at most MAX_PIPELINES at once,
// a request beyond that waits up to PIPELINE_WAIT_MS, then gets 503 `busy`.

import { HttpError } from './http.js';

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
export async function takeTurn(cfg, log) {
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

