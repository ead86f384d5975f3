// The only place that touches WebAssembly. A module Web Worker, so reading,
// checking and hashing a 1 GB export never blocks the page.
//
// Protocol (like ffmpeg.wasm or sql.js): the page posts {id, type, data};
// the worker answers with any number of {id, type: 'progress', data} then
// exactly one {id, type: 'result', data} or {id, type: 'error', data: {message, code}}
// (code: the core's stable error code, when the core threw).
// Requests run one at a time in arrival order, except {type: 'cancel',
// data: {id}}, which stops the request `id` at its next chunk. Result
// buffers are transferred, not copied.
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
const cancelled = new Set();
let queue = Promise.resolve();

class Cancelled extends Error {}

self.onmessage = (event) => {
  const { id, type, data } = event.data || {};
  if (type === 'cancel') {
    cancelled.add(data.id);
    return;
  }
  queue = queue.then(() => run(id, type, data));
};

async function run(id, type, data) {
  try {
    if (cancelled.has(id)) throw new Cancelled('cancelled');
    await ready;
    const handler = handlers[type];
    if (!handler) throw new Error(`unknown request type ${JSON.stringify(type)}`);
    const { result, transfer } = await handler(id, data);
    self.postMessage({ id, type: 'result', data: result }, transfer || []);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const code = typeof e?.code === 'string' ? e.code : null;
    self.postMessage({ id, type: 'error', data: { message, code, cancelled: e instanceof Cancelled } });
  } finally {
    cancelled.delete(id);
  }
}

/** Feeds `file` chunk by chunk to `onChunk`, posting progress. */
async function eachChunk(id, file, onChunk, extra = () => ({})) {
  const reader = file.stream().getReader();
  let bytes = 0;
  let last = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (cancelled.has(id)) throw new Cancelled('cancelled');
      onChunk(value);
      bytes += value.byteLength;
      const now = performance.now();
      if (now - last >= PROGRESS_EVERY_MS) {
        last = now;
        self.postMessage({ id, type: 'progress', data: { bytes, total: file.size, ...extra() } });
      }
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    if (e instanceof Cancelled) throw e;
    if (e && e.name === 'NotReadableError') {
      throw new Error('the file could not be read (was it moved, changed or deleted while it was being checked?)');
    }
    throw e;
  }
  self.postMessage({ id, type: 'progress', data: { bytes, total: file.size, ...extra() } });
}

const handlers = {
  async version() {
    return { result: { version: version() } };
  },

  /** Validates the file in one streaming pass: the report, and the core's sentence when it is refused. */
  async check(id, data) {
    const { file } = data;
    const p = new Pipeline({ source: file.name, previewRows: 20, skipBatchId: !!data.skipBatchId });
    try {
      await eachChunk(id, file, (chunk) => p.push(chunk), () => ({ rows: p.rowsRead }));
      const { report } = p.finish();
      return { result: { report, refusal: refusalMessage(report) } };
    } finally {
      p.free();
    }
  },

  /** The full SHA-256 the upload service wants in X-Content-SHA256. */
  async hash(id, { file }) {
    const h = new BatchHasher();
    try {
      await eachChunk(id, file, (chunk) => h.update(chunk));
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
   * its bytes are taken out of wasm memory as they come, into a Blob.
   */
  async rejects(id, { file }) {
    const p = new Pipeline({ source: file.name, previewRows: 0, skipBatchId: true, rejectsCsv: true });
    const parts = [];
    try {
      let since = 0;
      await eachChunk(id, file, (chunk) => {
        p.push(chunk);
        since += chunk.byteLength;
        if (since >= DRAIN_EVERY) {
          since = 0;
          parts.push(p.takeRejectsCsv());
        }
      }, () => ({ rows: p.rowsRead }));
      const { report, rejectsCsv } = p.finish();
      parts.push(rejectsCsv);
      const csv = new Blob(parts, { type: 'text/csv;charset=utf-8' });
      return { result: { csv, rows: report.rows_rejected } };
    } finally {
      p.free();
    }
  },
};
