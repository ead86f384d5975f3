// The only place that touches WebAssembly. A module Web Worker, so reading,
// checking and hashing a 1 GB export never blocks the page.
//
// Protocol (like ffmpeg.wasm or sql.js): the page posts {id, type, data};
// the worker answers with any number of {id, type: 'progress', data} then
// exactly one {id, type: 'result', data} or {id, type: 'error', data: {message, code}}
// (code: the core's stable error code, when the core threw).
// Requests run one at a time in arrival order, except {type: 'cancel',
// data: {id}}, which stops the request `id` at its next chunk. Result
// buffers are transferred, not copied. The file is read by the core's own
// stream reader (`Pipeline.pushStream`, `BatchHasher.hashStream`), the one
// the edge worker uses too: no chunk loop here.
//
//   check   {file}            -> {report, refusal}        progress {bytes, total, rows}
//   rejects {file}            -> {csv: Blob, rows}        progress {bytes, total, rows}
//   hash    {file}            -> {sha256, batchId}        progress {bytes, total}
//   version {}                -> {version}

import init, { Pipeline, BatchHasher, batchIdOfSha256, refusalMessage, version } from './pkg/cafe_etl.js';

const PROGRESS_EVERY_MS = 100;
/** The download's bytes are taken out of wasm memory after this many input bytes. */
const DRAIN_EVERY = 8 * 1024 * 1024;

const ready = init().catch((e) => {
  throw new Error(`could not load the WebAssembly module (pkg/cafe_etl_bg.wasm): ${e && e.message ? e.message : e}`);
});
/** Requests cancelled before they started. */
const cancelled = new Set();
/** The running request's AbortController, by id: `cancel` aborts it, and the
 *  core's stream reader stops at its next chunk. */
const running = new Map();
let queue = Promise.resolve();

class Cancelled extends Error {}

self.onmessage = (event) => {
  const { id, type, data } = event.data || {};
  if (type === 'cancel') {
    const controller = running.get(data.id);
    if (controller) controller.abort(new Cancelled('cancelled'));
    else cancelled.add(data.id);
    return;
  }
  queue = queue.then(() => run(id, type, data));
};

async function run(id, type, data) {
  const controller = new AbortController();
  running.set(id, controller);
  try {
    if (cancelled.has(id)) throw new Cancelled('cancelled');
    await ready;
    const handler = handlers[type];
    if (!handler) throw new Error(`unknown request type ${JSON.stringify(type)}`);
    const { result, transfer } = await handler(id, data, controller.signal);
    self.postMessage({ id, type: 'result', data: result }, transfer || []);
  } catch (e) {
    const message = e?.code === 'read'
      ? 'the file could not be read (was it moved, changed or deleted while it was being checked?)'
      : e instanceof Error ? e.message : String(e);
    const code = typeof e?.code === 'string' ? e.code : null;
    self.postMessage({ id, type: 'error', data: { message, code, cancelled: e instanceof Cancelled } });
  } finally {
    running.delete(id);
    cancelled.delete(id);
  }
}

/**
 * The options of the core's stream reader (`pushStream`, `hashStream`) for
 * request `id` on `file`: progress posted at most every PROGRESS_EVERY_MS
 * (the reader calls back after every chunk), and `done(figures)` posts the
 * last figures once the stream is read.
 */
function reading(id, file, signal) {
  let last = 0;
  let latest = { bytes: 0 };
  const post = (p) => self.postMessage({ id, type: 'progress', data: { ...p, total: file.size } });
  return {
    signal,
    progressEveryBytes: 0,
    onProgress(p) {
      latest = p;
      const now = performance.now();
      if (now - last >= PROGRESS_EVERY_MS) {
        last = now;
        post(p);
      }
    },
    done: (figures) => post({ ...latest, ...figures }),
  };
}

const handlers = {
  async version() {
    return { result: { version: version() } };
  },

  /** Validates the file in one streaming pass: the report, and the core's sentence when it is refused. */
  async check(id, data, signal) {
    const { file } = data;
    const p = new Pipeline({ source: file.name, previewRows: 20, skipBatchId: !!data.skipBatchId });
    try {
      const { done, ...options } = reading(id, file, signal);
      await p.pushStream(file.stream(), options);
      done({ bytes: p.bytes, rows: p.rowsRead });
      const { report } = p.finish();
      return { result: { report, refusal: refusalMessage(report) } };
    } finally {
      p.free();
    }
  },

  /** The full SHA-256 the upload service wants in X-Content-SHA256. */
  async hash(id, { file }, signal) {
    const h = new BatchHasher();
    try {
      const { done, ...options } = reading(id, file, signal);
      await h.hashStream(file.stream(), options);
      done();
      const sha256 = h.sha256();
      return { result: { sha256, batchId: batchIdOfSha256(sha256) } };
    } finally {
      h.free();
    }
  },

  /**
   * The rejected rows as a spreadsheet-safe CSV, made by the core
   * (`rejectsCsv`: the rows of the staged reject file, formula cells
   * neutralised, no name and no card number) in a second checking pass;
   * its bytes are taken out of wasm memory as they come (the reader's drain
   * callback), into a Blob.
   */
  async rejects(id, { file }, signal) {
    const p = new Pipeline({ source: file.name, previewRows: 0, skipBatchId: true, rejectsCsv: true });
    const parts = [];
    try {
      const { done, ...options } = reading(id, file, signal);
      await p.pushStream(file.stream(), {
        ...options,
        drainEveryBytes: DRAIN_EVERY,
        onDrain: () => {
          parts.push(p.takeRejectsCsv());
        },
      });
      done({ bytes: p.bytes, rows: p.rowsRead });
      const { report, rejectsCsv } = p.finish();
      parts.push(rejectsCsv);
      const csv = new Blob(parts, { type: 'text/csv;charset=utf-8' });
      return { result: { csv, rows: report.rows_rejected } };
    } finally {
      p.free();
    }
  },
};
