// The page's Web Worker (www/worker.js) spoken to directly, in headless
// Chromium: its protocol ({id, type, data}; progress {bytes, total, rows};
// one result or error per request; cancel by id; 'the file could not be
// read …') over the core's own stream reader (Pipeline.pushStream,
// BatchHasher.hashStream). The results are compared with the same wasm
// module run under Node on the same bytes.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { launchBrowser, outDir, root, startServer } from './helpers.mjs';

const core = await import(path.join(root, 'pkg', 'cafe_etl.js'));
core.initSync({ module: fs.readFileSync(path.join(root, 'pkg', 'cafe_etl_bg.wasm')) });

const goodName = 'chesterfield_25-08-2021_09-00-00.csv';
const good = fs.readFileSync(path.join(root, 'tests', 'data', 'real', goodName));
const badName = 'chesterfield_26-08-2021_09-00-00.csv';
const bad = fs.readFileSync(path.join(root, 'tests', 'data', 'e2e', badName));

let server;
let browser;
let page;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  page = await browser.context.newPage();
  await page.goto(server.url);
  // A worker of our own beside the page's, and a way to ask it.
  await page.evaluate(() => {
    const w = new Worker('worker.js', { type: 'module' });
    const waiting = new Map();
    w.onmessage = ({ data: m }) => {
      const r = waiting.get(m.id);
      if (m.type === 'progress') r.progress.push(m.data);
      else {
        waiting.delete(m.id);
        r.resolve({ type: m.type, data: m.data, progress: r.progress });
      }
    };
    let next = 1;
    window.protocol = {
      ask(type, data, { cancelAfterProgress = false } = {}) {
        const id = next++;
        return new Promise((resolve) => {
          const r = { progress: [], resolve };
          if (cancelAfterProgress) {
            r.progress = new Proxy([], {
              set(arr, k, v) {
                if (k === '0') w.postMessage({ id: 0, type: 'cancel', data: { id } });
                arr[k] = v;
                return true;
              },
            });
          }
          waiting.set(id, r);
          w.postMessage({ id, type, data });
        });
      },
      cancel(id) { w.postMessage({ id: 0, type: 'cancel', data: { id } }); },
      next: () => next,
    };
    window.fileOf = (bytes, name, times = 1) => new File(Array(times).fill(new Uint8Array(bytes)), name);
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Asks the page's worker `type` about `bytes` (repeated `times`) named `name`. */
function ask(type, bytes, name, { times = 1, cancelAfterProgress = false } = {}) {
  return page.evaluate(async ({ type, bytes, name, times, cancelAfterProgress }) => {
    const file = window.fileOf(bytes, name, times);
    const answer = await window.protocol.ask(type, { file }, { cancelAfterProgress });
    if (answer.type === 'result' && answer.data.csv) answer.data.csv = await answer.data.csv.text();
    return { ...answer, progress: [...answer.progress] };
  }, { type, bytes: [...bytes], name, times, cancelAfterProgress });
}

describe('the page worker protocol', () => {
  test('check: the core\'s report, progress up to the whole file', async () => {
    const a = await ask('check', good, goodName);
    assert.equal(a.type, 'result');
    assert.deepEqual(a.data.report, core.check(good, { source: goodName, previewRows: 20 }));
    assert.equal(a.data.refusal, null);
    const last = a.progress.at(-1);
    assert.deepEqual([last.bytes, last.total], [good.length, good.length]);
    assert.ok(last.rows > 0 && last.rows <= a.data.report.rows_read, JSON.stringify(last));
  });

  test('hash: the SHA-256 of the bytes and its batch id', async () => {
    const a = await ask('hash', good, goodName, { times: 3 });
    const want = createHash('sha256').update(Buffer.concat([good, good, good])).digest('hex');
    assert.equal(a.type, 'result');
    assert.deepEqual(a.data, { sha256: want, batchId: want.slice(0, 32) });
    assert.deepEqual(a.progress.at(-1), { bytes: 3 * good.length, total: 3 * good.length });
  });

  test('rejects: the core\'s formula-safe CSV of the rejected rows', async () => {
    const a = await ask('rejects', bad, badName);
    assert.equal(a.type, 'result');
    const p = new core.Pipeline({ source: badName, previewRows: 0, skipBatchId: true, rejectsCsv: true });
    p.push(bad);
    const { report, rejectsCsv } = p.finish();
    p.free();
    assert.equal(a.data.rows, report.rows_rejected);
    assert.ok(a.data.rows > 0);
    assert.equal(a.data.csv, new TextDecoder().decode(rejectsCsv).replace(/^\uFEFF/, ''));
  });

  test('cancel stops a running check at its next chunk; the worker serves the next request', async () => {
    // About 40 MB: read in many chunks, cancelled after the first progress.
    const times = Math.ceil(40e6 / good.length);
    const a = await ask('check', good, goodName, { times, cancelAfterProgress: true });
    assert.equal(a.type, 'error', JSON.stringify(a.data).slice(0, 200));
    assert.equal(a.data.cancelled, true);
    assert.ok(a.progress.length >= 1 && a.progress.at(-1).bytes < times * good.length);
    // A request cancelled before it starts is answered cancelled too.
    const queued = await page.evaluate(() => {
      const file = window.fileOf([1, 2, 3], 'x.csv');
      const id = window.protocol.next();
      const answer = window.protocol.ask('check', { file });
      window.protocol.cancel(id);
      return answer;
    });
    assert.equal(queued.data.cancelled, true);
    const v = await page.evaluate(() => window.protocol.ask('version', {}));
    assert.deepEqual(v.data, { version: core.version() }, 'the same module as under Node');
  });

  test('a file changed on disk while it is read: the page\'s clear message', async () => {
    const file = path.join(outDir, 'worker-protocol-changing.csv');
    fs.writeFileSync(file, good);
    await page.evaluate(() => {
      const input = document.createElement('input');
      input.type = 'file';
      input.id = 'protocol-file';
      document.body.append(input);
    });
    await page.setInputFiles('#protocol-file', file);
    // Chromium snapshots the size and time of a picked file; reading it
    // after a change fails with NotReadableError.
    fs.writeFileSync(file, Buffer.concat([good, good]));
    const future = new Date(Date.now() + 5000);
    fs.utimesSync(file, future, future);
    const a = await page.evaluate(() => window.protocol.ask('check', { file: document.getElementById('protocol-file').files[0] }));
    assert.equal(a.type, 'error');
    assert.equal(a.data.code, 'read');
    assert.equal(a.data.message, 'the file could not be read (was it moved, changed or deleted while it was being checked?)');
    assert.equal(a.data.cancelled, false);
  });
});
