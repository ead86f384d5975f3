// PUT /v1/uploads/{file_name} (and POST /v1/uploads): the body through the core's
// pipeline, the table files up to S3 as they come, then the commit protocol (tables
// checked with HEAD, the index entries, the marker last with If-None-Match, the
// loader told). Described in worker/README.md, *Staging and the commit protocol*.
//
// `handleUpload` reads as its steps: the request's headers and token checked (refuse
// early, before a turn or a byte of the body), a turn taken, the batch id from the
// body's SHA-256, a duplicate answered from its marker, else `stage`: the body
// through the pipeline, then `commit`.

import { Pipeline, batchIdOfSha256, refusalMessage } from '../../pkg/cafe_etl.js';

import { authenticate, checkStoreRule } from './auth.js';
import { Body, bufferBody, needHash, PUSH_BYTES, tooLarge } from './body.js';
import { Limiter, TableObject } from './commit.js';
import { wasm } from './core.js';
import { HttpError, json } from './http.js';
import { batchKeys, checkFileName, contentTypeAllowed, encoder, indexKeys } from './lib.js';
import { announce, committedAt } from './loader/producer.js';
import { markerStore, parseReport } from './marker.js';
import { S3, S3Error } from './s3.js';
import { batchState, loadExpectation } from './status.js';
import { takeTurn } from './turns.js';

/** The core's product and store caches per pipeline (its default is 16 MiB): two
 *  pipelines at once must fit a 128 MB isolate with their bodies and parts. Past the
 *  cap rows are still right; a product may be written twice (the loader keeps one). */
const CORE_CACHE_BYTES = 4 * 1024 * 1024;

/** An upload, step by step (see the module's head). */
export async function handleUpload(request, cfg, fileName, log) {
  const input = new Body(request, cfg.maxUploadBytes);
  log.body = input;
  const store = await authenticate(request, cfg);
  log.store = store;
  const { length, claimed } = checkRequest(request, cfg, fileName, input);
  wasm();
  const s3 = new S3(cfg.s3, cfg.retry, log.s3);
  let release = null;
  try {
    let sha256 = claimed;
    let body = null;
    if (sha256 === null) {
      if (length !== null && length > cfg.bufferLimitBytes) throw needHash(cfg);
      // The turn first: a request waiting for one holds none of its body.
      release = await takeTurn(cfg, log);
      const buffered = await bufferBody(input, cfg);
      sha256 = buffered.sha256;
      body = buffered.chunks;
    }
    const batchId = batchIdOfSha256(sha256); // the core's rule (sha256 is 64 hex digits here)
    log.batch_id = batchId;
    const keys = batchKeys(cfg.prefix, batchId);

    // Idempotence: a batch whose marker is there is complete; write nothing.
    const existing = await s3.get(keys[keys.length - 1]);
    if (existing) return await answerDuplicate({ s3, cfg, log, store, batchId, sha256, existing });

    release ??= await takeTurn(cfg, log);
    return await stage({ s3, cfg, log, store, fileName, batchId, keys, sha256, body: body ?? input.chunks(PUSH_BYTES) });
  } finally {
    release?.();
  }
}

/**
 * The request's headers, checked before any of its body is read or a turn taken (a
 * wrong request costs nothing): the file name, the content type, the declared length
 * (413 at once past MAX_UPLOAD_BYTES), the claimed SHA-256's form. Returns the
 * declared length (null: none) and the claimed SHA-256 in lowercase (null: none).
 */
function checkRequest(request, cfg, fileName, input) {
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
  // The core's form of a SHA-256 (64 hex digits, either case): it has a batch id.
  if (claimed !== null && batchIdOfSha256(claimed.trim()) === null) {
    throw new HttpError(400, 'bad_sha256', 'X-Content-SHA256 must be 64 hex digits (the SHA-256 of the whole body)');
  }
  return { length, claimed: claimed === null ? null : claimed.trim().toLowerCase() };
}

/**
 * The answer to a file whose batch is staged already (its marker is there): nothing
 * is written, the batch is announced to the loader again, and the staged report is
 * the answer. Another store's batch is 403, and a claimed SHA-256 that is not the
 * staged file's (same batch id, the first 32 digits, but not the rest) 400.
 */
async function answerDuplicate({ s3, cfg, log, store, batchId, sha256, existing }) {
  const report = parseReport(existing);
  const owner = markerStore(existing, report);
  if (owner && owner !== store) {
    throw new HttpError(403, 'wrong_store', `this file is already staged for another branch, and this token is for branch ${store} only`);
  }
  const stagedSha = existing.headers.get('x-amz-meta-sha256');
  if (stagedSha && stagedSha !== sha256) {
    throw new HttpError(400, 'sha256_mismatch', 'X-Content-SHA256 is not the SHA-256 of the file staged as this batch (only its first 32 digits match)');
  }
  log.outcome = 'duplicate';
  // A repeat upload announces the batch again: cheap, and the consumer skips a
  // loaded batch, while a batch whose first message was lost gets loaded now.
  await announce(cfg.loadQueue, { batch_id: batchId, store, committed_at: committedAt(existing.headers) }, log);
  logCounts(log, report);
  // Where this worker loads, whether the batch is loaded yet (two GETs at most);
  // without a warehouse a duplicate costs the marker lookup only.
  const loadState = cfg.loading.warehouse ? await batchState(s3, cfg.prefix, batchId) : {};
  return json(200, { batch_id: batchId, duplicate: true, store, report, keys: [], load: loadExpectation(cfg.loading), ...loadState });
}

/** A report's counts in the request's log line (counts only: no row, no name). */
function logCounts(log, report) {
  log.bytes = report.bytes;
  log.rows_read = report.rows_read;
  log.rows_staged = report.rows_staged;
  log.rows_rejected = report.rows_rejected;
}

/**
 * Chunks (the body's async generator, or the buffered body's array) as a
 * ReadableStream for the core's stream reader (`Pipeline.pushStream`), pulled one
 * chunk at a time (highWaterMark 0: nothing is read ahead, so a chunk of
 * `Body.chunks()` is pushed before its reused buffer is read into again). What the
 * source itself throws (a 413, the client gone) is kept in `failure`, to be
 * rethrown as it was: the reader reports it as code `read` with it as the cause.
 */
function chunkStream(chunks) {
  const it = Symbol.asyncIterator in chunks ? chunks[Symbol.asyncIterator]() : chunks[Symbol.iterator]();
  const source = { failure: null };
  source.stream = new ReadableStream({
    async pull(c) {
      try {
        const { done, value } = await it.next();
        if (done) c.close();
        else c.enqueue(value);
      } catch (e) {
        source.failure = e;
        throw e;
      }
    },
    async cancel() {
      await it.return?.();
    },
  }, { highWaterMark: 0 });
  return source;
}

/**
 * Streams the body (`body`: its chunks) through the pipeline and the table files to
 * S3, then commits: the five table objects (checked with HEAD), the index entries,
 * the marker last. The core's stream reader drives it: its drain callback does the
 * S3 writes, awaited before the next chunk is read. The pipeline compares the whole
 * SHA-256 of the bytes with X-Content-SHA256 (its `sha256` option: one hash, the
 * core's, which it makes anyway for the batch id).
 */
async function stage({ s3, cfg, log, store, fileName, batchId, keys, sha256, body }) {
  const markerKey = keys[keys.length - 1];
  const limiter = new Limiter(cfg.partsInFlight);
  const objects = new Map(keys.slice(0, -1).map((k) => [k.slice(cfg.prefix.length), new TableObject(s3, k, cfg.partBytes, limiter)]));
  const pipeline = new Pipeline({ source: fileName, batchId, sha256, customerKeySecret: cfg.customerKeySecret, maxCacheBytes: CORE_CACHE_BYTES });
  let result;
  try {
    const forward = async (files) => {
      for (const [path, bytes] of Object.entries(files)) {
        const obj = objects.get(path);
        if (obj) await obj.write(bytes);
      }
    };
    const source = chunkStream(body);
    try {
      await pipeline.pushStream(source.stream, {
        progressEveryBytes: 0,
        onProgress: ({ bytes }) => {
          log.bytes = bytes;
        },
        onDrain: forward,
      });
    } catch (e) {
      throw source.failure ?? e;
    }

    result = finish(pipeline);
    const report = result.report;
    logCounts(log, report);
    refuseUnstageable(cfg, store, report, batchId);
    await forward(result.files); // the table files' last bytes; the marker is no table object
    const marker = result.files[markerKey.slice(cfg.prefix.length)];
    const committedMs = await commit({ s3, cfg, log, store, batchId, keys, sha256, marker, limiter, objects });
    // The batch is committed: tell the loader. A failed send does not fail the upload
    // (the cron sweep finds the batch in the commits index).
    await announce(cfg.loadQueue, { batch_id: batchId, store, committed_at: new Date(committedMs).toISOString() }, log);
    log.multipart = [...objects.values()].filter((o) => o.multipart).length;
    return json(200, { batch_id: batchId, duplicate: false, store, report, keys, load: loadExpectation(cfg.loading) });
  } catch (e) {
    await discard(limiter, objects);
    throw e;
  } finally {
    pipeline.free();
  }
}

/**
 * The pipeline's last files and its report. The core's `batch_id_mismatch` (the body
 * is not the file whose SHA-256 was claimed) is the client's 400, told by the
 * error's stable code, never its text.
 */
function finish(pipeline) {
  try {
    return pipeline.finish();
  } catch (e) {
    if (e?.code === 'batch_id_mismatch') {
      throw new HttpError(400, 'sha256_mismatch', `the body does not match X-Content-SHA256 (${e.message})`);
    }
    throw e;
  }
}

/**
 * Nothing is committed of a file the core refused (400 with its report) or whose rows
 * are not all of the token's store (403, the core's store rule).
 */
function refuseUnstageable(cfg, store, report, batchId) {
  if (report.refused) {
    throw new HttpError(400, 'refused', refusalMessage(report), { batch_id: batchId, report });
  }
  checkStoreRule(cfg, store, report, batchId);
}

/**
 * The commit protocol, in its order (worker/README.md): every table file committed,
 * each checked with HEAD, the two index entries, then the marker, which makes the
 * batch visible. Returns the commit time (Unix ms) the index entries carry.
 */
async function commit({ s3, cfg, log, store, batchId, keys, sha256, marker, limiter, objects }) {
  await commitTables(limiter, objects);
  await checkTablesThere(s3, keys.slice(0, -1));
  const markerKey = keys[keys.length - 1];
  // The index entries, then the marker (a reader takes an entry only with its marker).
  const committedMs = Date.now();
  await writeIndexEntries(s3, cfg.prefix, { batch_id: batchId, store, marker: markerKey }, committedMs);
  // If-None-Match: a marker there already is this upload's own earlier attempt
  // whose answer was lost, or a concurrent upload of the same bytes: either way
  // the batch is committed, with these same table objects.
  const wrote = await s3.putIfAbsent(markerKey, marker, {
    'content-type': 'application/json',
    'x-amz-meta-store': store,
    'x-amz-meta-sha256': sha256,
  });
  log.outcome = 'staged';
  if (!wrote) log.marker = 'present';
  return committedMs;
}

/**
 * Every table file committed, all settled before the first failure is thrown: on a
 * failure nothing may still be in flight when the open multipart uploads are aborted.
 */
async function commitTables(limiter, objects) {
  await limiter.drain();
  const commits = await Promise.allSettled([...objects.values()].map((o) => o.commit()));
  const failed = commits.find((c) => c.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * The marker makes the batch visible to the loader: every table object must be there
 * (HEAD each), else S3Error naming the first missing one.
 */
async function checkTablesThere(s3, tableKeys) {
  const heads = await Promise.all(tableKeys.map((k) => s3.head(k)));
  const missing = tableKeys.filter((k, i) => !heads[i]);
  if (missing.length) {
    throw new S3Error(`table objects missing after their commit: ${missing.join(', ')}`, {
      key: missing[0],
      op: 'checking',
      reason: 'the object is missing after its commit',
    });
  }
}

/** The batch's two index entries (the store's and the commits'), each `entry` as JSON. */
async function writeIndexEntries(s3, prefix, entry, committedMs) {
  const index = indexKeys(prefix, entry.store, entry.batch_id, committedMs);
  const bytes = encoder.encode(JSON.stringify(entry));
  await Promise.all([index.store, index.commit].map((k) => s3.put(k, bytes, { 'content-type': 'application/json' })));
}

/**
 * No marker from this upload: the open multipart uploads are aborted (invisible
 * anyway). Committed table objects stay (see TableObject.discard): a batch without
 * its marker is invisible to the loader, and the next upload of the file rewrites them.
 */
async function discard(limiter, objects) {
  await limiter.drain().catch(() => {});
  await Promise.all([...objects.values()].map((o) => o.discard().catch(() => {})));
}
