// The fetch handler: configuration, CORS (the preflight and the headers on every
// answer), routing with each route's methods, errors turned into answers, the body
// drained after an early answer, and one log line per request.

import { isBatchId, version as coreVersion } from '../../pkg/cafe_etl.js';

import { handleBatch, handleList, loadingHealth } from './batches.js';
import { UNREAD_LIMIT_BYTES } from './body.js';
import { wasm } from './core.js';
import { errorBody, HttpError, json, SAFE_HEADERS } from './http.js';
import { ConfigError, corsHeaders, parseConfig } from './lib.js';
import { S3Error } from './s3.js';
import { loadingConfig } from './status.js';
import { handleUpload } from './upload.js';

function route(method, path) {
  if (path === '/healthz') return { name: 'health', methods: ['GET', 'HEAD'] };
  if (path === '/v1/uploads') return { name: 'upload', methods: ['POST'] };
  let m = /^\/v1\/uploads\/([^/]+)$/.exec(path);
  if (m) return { name: 'upload', methods: ['PUT'], fileName: m[1] };
  if (path === '/v1/batches') return { name: 'list', methods: ['GET'] };
  m = /^\/v1\/batches\/([^/]+)$/.exec(path);
  if (m && isBatchId(m[1])) return { name: 'batch', methods: ['GET'], batchId: m[1] };
  return null;
}

function logLine(log) {
  // One line per request; no names, card numbers or file contents, by construction:
  // only ids, counts, sizes and outcomes go in.
  const line = {
    event: log.event,
    outcome: log.outcome,
    status: log.status,
    batch_id: log.batch_id ?? null,
    store: log.store ?? null,
    bytes: log.bytes ?? 0,
    rows_read: log.rows_read ?? 0,
    rows_staged: log.rows_staged ?? 0,
    rows_rejected: log.rows_rejected ?? 0,
    duration_ms: Date.now() - log.start,
    s3_requests: log.s3.requests,
    s3_retries: log.s3.retries,
    body_read: log.body?.total ?? 0,
  };
  if (log.marker) line.marker = log.marker;
  if (log.queued !== undefined) line.queued = log.queued;
  if (log.waited_ms !== undefined) line.waited_ms = log.waited_ms;
  if (log.multipart !== undefined) line.multipart_tables = log.multipart;
  if (log.error) line.error = log.error;
  console.log(JSON.stringify(line));
}

export async function handle(request, env) {
  const url = new URL(request.url);
  const origin = request.headers.get('origin');
  let cfg;
  try {
    wasm();
    cfg = parseConfig(env);
    cfg.loading = loadingConfig(env);
    cfg.loadQueue = env.LOAD_QUEUE ?? null;
  } catch (e) {
    console.error(JSON.stringify({ event: 'config', outcome: 'error', error: e.message }));
    return json(500, { error: 'misconfigured', message: `the worker is misconfigured: ${e.message}` });
  }
  const cors = corsHeaders(origin, cfg.allowedOrigins);
  if (request.method === 'OPTIONS') {
    return new Response(null, { status: Object.keys(cors).length ? 204 : 403, headers: { ...SAFE_HEADERS, ...cors } });
  }
  const r = route(request.method, url.pathname);
  if (!r) return json(404, { error: 'not_found', message: `no route ${url.pathname}` }, cors);
  if (!r.methods.includes(request.method)) {
    return json(405, { error: 'method_not_allowed', message: `${url.pathname} takes ${r.methods.join(', ')}` }, {
      ...cors,
      allow: [...r.methods, 'OPTIONS'].join(', '),
    });
  }
  if (r.name === 'health') {
    wasm();
    return json(
      200,
      {
        ok: true,
        core: coreVersion(),
        max_upload_bytes: cfg.maxUploadBytes,
        buffer_limit_bytes: cfg.bufferLimitBytes,
        loading: await loadingHealth(cfg),
      },
      cors,
    );
  }
  const log = { event: r.name, start: Date.now(), s3: { requests: 0, retries: 0 } };
  let response;
  try {
    if (r.name === 'upload') {
      let fileName = r.fileName ?? request.headers.get('x-file-name');
      try {
        if (r.fileName) fileName = decodeURIComponent(r.fileName);
      } catch {
        fileName = null;
      }
      response = await handleUpload(request, cfg, fileName, log);
    } else if (r.name === 'list') {
      response = await handleList(request, cfg, url, log);
    } else {
      response = await handleBatch(request, cfg, r.batchId, log);
    }
  } catch (e) {
    if (e instanceof HttpError) {
      log.outcome = e.error;
      response = json(e.status, errorBody(e), {
        ...(e.status === 401 ? { 'www-authenticate': 'Bearer error="invalid_token"' } : {}),
        ...e.headers,
      });
    } else if (e instanceof ConfigError) {
      log.outcome = 'misconfigured';
      log.error = e.message;
      response = json(500, { error: 'misconfigured', message: `the worker is misconfigured: ${e.message}` });
    } else if (e instanceof S3Error) {
      log.outcome = 's3_error';
      log.error = e.message;
      // The log line names the key; the answer names no bucket, prefix or key.
      response = json(502, {
        error: 's3_error',
        message: `the staging bucket failed, nothing was committed; try again later (${e.publicMessage(cfg.prefix)})`,
        batch_id: log.batch_id ?? null,
      });
    } else {
      log.outcome = 'internal_error';
      log.error = String(e?.message ?? e).slice(0, 300);
      response = json(500, { error: 'internal_error', message: 'the worker failed; nothing was committed' });
    }
  }
  // A stranger (401) or a request turned away (503) gets no more than 64 KiB read.
  const short = response.status === 401 || response.status === 503;
  await log.body?.discardRest(short ? UNREAD_LIMIT_BYTES : undefined);
  if (short && log.body && !log.body.done) {
    // The rest of the body was cancelled: this connection cannot carry another request.
    try {
      response.headers.set('connection', 'close');
    } catch {
      // A runtime that manages the header itself closes the connection anyway.
    }
  }
  log.status = response.status;
  logLine(log);
  for (const [k, v] of Object.entries(cors)) response.headers.set(k, v);
  if (log.batch_id) response.headers.set('x-batch-id', log.batch_id);
  return response;
}

