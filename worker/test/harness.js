// Real components for the worker's tests, benchmark and local stack: the S3 server
// (s3s-fs, verifying SigV4), the worker bundle on workerd (through Miniflare's API),
// a fault-injecting TCP/HTTP proxy in front of S3, the native CLI, and an S3 reader.
// Nothing here imitates workerd or S3.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { AwsClient } from 'aws4fetch';
import { initSync, storeSlug } from '../../pkg/cafe_etl.js';

export const WORKER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(WORKER_DIR, '..');
/** The shared corpus beside the repository (CAFE_REAL_DATA overrides its path). */
export const REAL_DATA = process.env.CAFE_REAL_DATA ?? path.resolve(REPO, '..', 'shared', 'data', 'real');
export const VENDORED_REAL = path.join(REPO, 'tests', 'data', 'real');

// The wasm module for the tests that call the core directly (the token rules,
// src/lib.js's helpers): initialised once, from the bytes the worker bundles.
const WASM = path.join(REPO, 'pkg', 'cafe_etl_bg.wasm');
if (fs.existsSync(WASM)) initSync({ module: fs.readFileSync(WASM) });

const QUIET_WRANGLER = {
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_SEND_METRICS: 'false',
  WRANGLER_HIDE_BANNER: 'true',
  WRANGLER_LOG: 'warn',
};

let tmpRoot = null;
/** A fresh temporary folder, removed when the test process exits. */
export function tmpDir(prefix = 'tmp-') {
  if (!tmpRoot) {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'cafe-worker-test-'));
    process.on('exit', () => fs.rmSync(tmpRoot, { recursive: true, force: true }));
  }
  return fs.mkdtempSync(path.join(tmpRoot, prefix));
}

/** A fresh random secret (hex), never written to the repository. */
export function secret(bytes = 32) {
  return randomBytes(bytes).toString('hex');
}

export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

async function waitForPort(port, child, what, timeoutMs = 20_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not listen on port ${port} within ${timeoutMs} ms`);
}

export function findS3sFs() {
  const candidates = [process.env.S3S_FS, path.join(os.homedir(), '.cargo', 'bin', 's3s-fs')].filter(Boolean);
  for (const c of candidates) if (fs.existsSync(c)) return c;
  const which = spawnSync('sh', ['-c', 'command -v s3s-fs'], { encoding: 'utf8' });
  if (which.status === 0) return which.stdout.trim();
  throw new Error('s3s-fs not found: install it with `cargo install s3s-fs --version 0.14.1 --features binary`');
}

/**
 * Starts s3s-fs on 127.0.0.1 with fresh credentials and a bucket.
 * Returns {endpoint, port, accessKeyId, secretAccessKey, bucket, dir, client, stop()}.
 */
export async function startS3({ dir, port, bucket = 'cafe-staging', accessKeyId, secretAccessKey } = {}) {
  dir ??= tmpDir('s3-');
  fs.mkdirSync(dir, { recursive: true });
  port ??= await freePort();
  accessKeyId ??= 'AK' + secret(8).toUpperCase();
  secretAccessKey ??= secret(20);
  const child = spawn(
    findS3sFs(),
    ['--host', '127.0.0.1', '--port', String(port), '--access-key', accessKeyId, '--secret-key', secretAccessKey, dir],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'error' } },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  try {
    await waitForPort(port, child, 's3s-fs');
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\n${stderr}`);
  }
  const endpoint = `http://127.0.0.1:${port}`;
  // s3s-fs does not implement ListMultipartUploads; it keeps an open upload as
  // `.upload-<id>.json` (and its parts) in its root folder until completed or aborted.
  const openUploads = () => fs.readdirSync(dir).filter((f) => /^\.upload[-_]/.test(f));
  const client = new S3Reader({ endpoint, bucket, accessKeyId, secretAccessKey });
  const made = await client.fetch('PUT', '');
  if (made.status !== 200 && made.status !== 409) {
    child.kill('SIGKILL');
    throw new Error(`creating bucket ${bucket}: ${made.status} ${await made.text()}`);
  }
  return {
    endpoint,
    port,
    accessKeyId,
    secretAccessKey,
    bucket,
    dir,
    client,
    child,
    openUploads,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
    },
  };
}

/** A small S3 client for checking what the worker wrote (reads, lists, deletes). */
export class S3Reader {
  constructor({ endpoint, bucket, accessKeyId, secretAccessKey }) {
    this.endpoint = endpoint;
    this.bucket = bucket;
    this.aws = new AwsClient({ accessKeyId, secretAccessKey, service: 's3', region: 'us-east-1', retries: 0 });
  }
  url(key, query = '') {
    const k = key ? '/' + key.split('/').map(encodeURIComponent).join('/') : '';
    return `${this.endpoint}/${this.bucket}${k}${query}`;
  }
  fetch(method, key, query = '', init = {}) {
    return this.aws.fetch(this.url(key, query), { method, ...init });
  }
  /** Bytes of an object, or null when it does not exist. */
  async get(key) {
    const r = await this.fetch('GET', key);
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`GET ${key}: ${r.status} ${await r.text()}`);
    return new Uint8Array(await r.arrayBuffer());
  }
  async head(key) {
    const r = await this.fetch('HEAD', key);
    return r.status === 200 ? r.headers : null;
  }
  /** Every key under a prefix. */
  async keys(prefix = '') {
    const out = [];
    let token = null;
    do {
      let q = `?list-type=2&prefix=${encodeURIComponent(prefix)}`;
      if (token) q += `&continuation-token=${encodeURIComponent(token)}`;
      const r = await this.fetch('GET', '', q);
      const xml = await r.text();
      if (r.status !== 200) throw new Error(`list ${prefix}: ${r.status} ${xml}`);
      for (const m of xml.matchAll(/<Key>([^<]*)<\/Key>/g)) out.push(m[1].replace(/&amp;/g, '&'));
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? /<NextContinuationToken>([^<]*)</.exec(xml)?.[1] : null;
    } while (token);
    return out.sort();
  }
  async deleteAll(prefix = '') {
    for (const k of await this.keys(prefix)) await this.fetch('DELETE', k);
  }
  /** A gzip object's text. */
  async text(key) {
    const bytes = await this.get(key);
    return bytes === null ? null : gunzipSync(bytes).toString('utf8');
  }
}

/**
 * Bundles a worker entry with wrangler.toml's settings (`wrangler deploy --dry-run`)
 * into `outdir` (default: a folder of this test process's own, so that test files
 * run side by side never overwrite each other's bundle) and returns the bundled
 * script's path. `entry` is relative to worker/; without it, wrangler.toml's main.
 */
export function bundleEntry(entry, { outdir = tmpDir('bundle-'), name } = {}) {
  if (!fs.existsSync(path.join(REPO, 'pkg', 'cafe_etl_bg.wasm'))) {
    throw new Error('pkg/cafe_etl_bg.wasm is missing: run scripts/build-wasm first');
  }
  const main = entry ?? /^main\s*=\s*"([^"]+)"/m.exec(fs.readFileSync(path.join(WORKER_DIR, 'wrangler.toml'), 'utf8'))[1];
  const args = ['deploy', '--dry-run', '--outdir', outdir, ...(name ? ['--name', name] : []), ...(entry ? [entry] : [])];
  const r = spawnSync(path.join(WORKER_DIR, 'node_modules', '.bin', 'wrangler'), args, {
    cwd: WORKER_DIR,
    env: { ...process.env, ...QUIET_WRANGLER },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`wrangler deploy --dry-run ${entry ?? ''} failed:\n${r.stdout}\n${r.stderr}`);
  const script = path.join(outdir, path.basename(main));
  if (!fs.existsSync(script)) throw new Error(`no ${script} after wrangler deploy --dry-run`);
  return script;
}

/** Builds the worker bundle (wrangler deploy --dry-run) into worker/dist; returns its script's path. */
export function buildWorker() {
  return bundleEntry(undefined, { outdir: path.join(WORKER_DIR, 'dist') });
}

let built = null;
/**
 * The worker bundle the tests run: CAFE_WORKER_BUNDLE when set (scripts/test-worker
 * builds it once for every test file: each build takes seconds), else built once
 * per test process.
 */
function bundle() {
  built ??= process.env.CAFE_WORKER_BUNDLE || bundleEntry();
  return built;
}

/** wrangler.toml's compatibility date and flags, as Miniflare takes them. */
export function wranglerCompatibility() {
  const toml = fs.readFileSync(path.join(WORKER_DIR, 'wrangler.toml'), 'utf8');
  const flags = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml)?.[1] ?? '';
  return {
    compatibilityDate: /^compatibility_date = "([^"]+)"/m.exec(toml)[1],
    compatibilityFlags: [...flags.matchAll(/"([^"]+)"/g)].map((m) => m[1]),
  };
}

/** The [vars] of wrangler.toml, so the tests run the configuration that ships. */
export function wranglerVars() {
  const toml = fs.readFileSync(path.join(WORKER_DIR, 'wrangler.toml'), 'utf8');
  const vars = {};
  const section = /\n\[vars\]\n([\s\S]*?)(?=\n\[|$)/.exec(toml)?.[1] ?? '';
  for (const m of section.matchAll(/^([A-Z0-9_]+)\s*=\s*"([^"]*)"/gm)) vars[m[1]] = m[2];
  return vars;
}

/**
 * The top level's queues of wrangler.toml as Miniflare options: `queueProducers`
 * (binding → queue) and `queueConsumers` (queue → max_batch_size, max_batch_timeout,
 * max_retries, dead_letter_queue), plus the cron expressions of [triggers].
 */
export function wranglerQueues() {
  const toml = fs.readFileSync(path.join(WORKER_DIR, 'wrangler.toml'), 'utf8');
  // Only the top level: everything before the first [env.*] table.
  const top = toml.split(/\n\[+env\./)[0];
  const tables = (name) => [...top.matchAll(new RegExp(`\\n\\[\\[${name.replace('.', '\\.')}\\]\\]\\n([\\s\\S]*?)(?=\\n\\[|$)`, 'g'))].map((m) => m[1]);
  const field = (body, key) => {
    const m = new RegExp(`^${key}\\s*=\\s*(?:"([^"]*)"|(\\d+))`, 'm').exec(body);
    return m ? (m[1] ?? Number(m[2])) : undefined;
  };
  const queueProducers = {};
  for (const b of tables('queues.producers')) queueProducers[field(b, 'binding')] = { queueName: field(b, 'queue') };
  const queueConsumers = {};
  for (const b of tables('queues.consumers')) {
    queueConsumers[field(b, 'queue')] = {
      maxBatchSize: field(b, 'max_batch_size'),
      maxBatchTimeout: field(b, 'max_batch_timeout'),
      maxRetries: field(b, 'max_retries'),
      deadLetterQueue: field(b, 'dead_letter_queue'),
    };
  }
  const crons = [...(/\n\[triggers\]\n([\s\S]*?)(?=\n\[|$)/.exec(top)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]);
  return { queueProducers, queueConsumers, crons };
}

/**
 * Runs the worker bundle on workerd through Miniflare, listening on 127.0.0.1.
 * `bindings` override wrangler.toml's [vars] and add the secrets. The queues of
 * wrangler.toml are real local queues in workerd (`queues`: overrides per consumer,
 * e.g. `{consumers: {'cafe-loads': {maxBatchTimeout: 1}}, deadLetterConsumer: true}`
 * to also consume the dead-letter queue, whose messages the worker logs; `false` for
 * none). `scheduled()` runs the worker's cron handler as a trigger would.
 * Returns {url, mf, logs (parsed JSON log lines), stdout (raw), scheduled(), stop()}.
 */
export async function startWorker({ bindings, port = 0, host = '127.0.0.1', queues = {} }) {
  const w = await runOnWorkerd(bundle(), { bindings: { ...wranglerVars(), ...bindings }, host, port, ...queueOptions(queues) });
  return {
    ...w,
    /** Runs the worker's scheduled() handler (the cron sweep) and waits for it. */
    async scheduled(cron = wranglerQueues().crons[0] ?? '*/5 * * * *') {
      const worker = await w.mf.getWorker();
      return worker.scheduled({ cron, scheduledTime: new Date() });
    },
  };
}

/**
 * Runs a bundled script on workerd through Miniflare with wrangler.toml's
 * compatibility date and flags, listening on 127.0.0.1 (a free port unless `port`);
 * `options` go to Miniflare as they are (bindings, queues...). The runtime's output
 * is kept line by line: `stdout` (raw) and `logs` (the JSON lines, parsed); lines
 * on stderr, and on stdout with WORKER_TEST_VERBOSE, are shown too.
 * Returns {url, mf, logs, stdout, stop()}.
 */
export async function runOnWorkerd(scriptPath, { host = '127.0.0.1', port = 0, ...options } = {}) {
  const { Miniflare, Log, LogLevel } = await import('miniflare');
  const stdout = [];
  const logs = [];
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    // Module names relative to the bundle's folder (by default they are relative to the
    // working directory, and workerd refuses a name that climbs out of it with "..").
    modulesRoot: path.dirname(scriptPath),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    ...wranglerCompatibility(),
    ...options,
    host,
    port,
    log: new Log(LogLevel.WARN),
    // No Request.cf download: nothing here may reach the internet.
    cf: false,
    handleRuntimeStdio(out, err) {
      for (const [stream, sink] of [
        [out, process.stdout],
        [err, process.stderr],
      ]) {
        let rest = '';
        stream.on('data', (d) => {
          rest += d;
          let i;
          while ((i = rest.indexOf('\n')) >= 0) {
            const line = rest.slice(0, i);
            rest = rest.slice(i + 1);
            stdout.push(line);
            if (line.startsWith('{')) {
              try {
                logs.push(JSON.parse(line));
                continue;
              } catch {
                /* not one of ours */
              }
            }
            if (process.env.WORKER_TEST_VERBOSE || stream === err) sink.write(`[workerd] ${line}\n`);
          }
        });
      }
    },
  });
  const url = (await mf.ready).toString().replace(/\/$/, '');
  return {
    url,
    mf,
    logs,
    stdout,
    async stop() {
      await mf.dispose();
    },
  };
}

function queueOptions(queues) {
  if (queues === false) return {};
  const { queueProducers, queueConsumers } = wranglerQueues();
  for (const [name, over] of Object.entries(queues.consumers ?? {})) queueConsumers[name] = { ...queueConsumers[name], ...over };
  if (queues.deadLetterConsumer) {
    for (const c of Object.values({ ...queueConsumers })) {
      if (c.deadLetterQueue) queueConsumers[c.deadLetterQueue] ??= { maxBatchSize: 10, maxBatchTimeout: 1 };
    }
  }
  return { queueProducers, queueConsumers };
}

/** The workerd processes running under this Node process (for peak-memory measurements). */
export function workerdPids() {
  const out = spawnSync('ps', ['-eo', 'pid,ppid,comm'], { encoding: 'utf8' }).stdout;
  const rows = out
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .map(([pid, ppid, comm]) => ({ pid: Number(pid), ppid: Number(ppid), comm }));
  const mine = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const r of rows) if (mine.has(r.ppid) && !mine.has(r.pid)) mine.add(r.pid), (grew = true);
  }
  return rows.filter((r) => mine.has(r.pid) && r.comm.startsWith('workerd')).map((r) => r.pid);
}

/** Resident and peak resident memory (bytes) of a process, from /proc. */
export function memoryOf(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Resets a process's peak-RSS counter (VmHWM), so the next peak is one run's. */
export function resetPeak(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// A fault-injecting proxy in front of the real S3 server. It forwards bytes as they
// come (the Host header and the signature stay as the worker made them), and per
// request, as the test says: answers 5xx, accepts and never answers, drops the
// connection, or fails the first N requests and then recovers.

export class FaultProxy {
  constructor(target) {
    this.target = target; // {host, port}
    this.mode = 'pass';
    this.failuresLeft = 0;
    this.failureKind = '503';
    this.seen = { total: 0, faulted: 0, byKind: {} };
    this.sockets = new Set();
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.keepAliveTimeout = 1000;
  }

  async listen(port = 0) {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    this.endpoint = `http://127.0.0.1:${this.port}`;
    return this;
  }

  /**
   * pass | 503 | 500 | hang | drop | drop-mid-answer: every request fails this way.
   * Rules (`failNext`) may also use `land-then-hang` (forwarded, S3 does the work,
   * the answer never comes back) and `swallow` (answered 200, never forwarded).
   */
  set(mode) {
    this.mode = mode;
    this.failuresLeft = 0;
    this.rules = [];
  }

  /** The next `n` requests fail (cycling through `kinds`), then everything passes. */
  flap(n, kinds = ['503', 'drop', 'hang', '500']) {
    this.mode = 'flap';
    this.failuresLeft = n;
    this.flapKinds = kinds;
    this.flapIndex = 0;
  }

  count(kind) {
    this.seen.faulted++;
    this.seen.byKind[kind] = (this.seen.byKind[kind] ?? 0) + 1;
  }

  /**
   * The next `n` requests that `match(req)` fails (cycling through `kinds`), whatever
   * the mode; e.g. only part uploads, or only the marker PUT (n = Infinity).
   */
  failNext(n, kinds, match = () => true) {
    this.rules ??= [];
    this.rules.push({ left: n, kinds: [].concat(kinds), i: 0, match });
  }

  clearRules() {
    this.rules = [];
  }

  /** Stops listening: connections are refused until resume(). */
  async pause() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  async resume() {
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
  }

  handle(req, res) {
    this.seen.total++;
    let kind = this.mode;
    const rule = (this.rules ?? []).find((r) => r.left > 0 && r.match(req));
    if (rule) {
      rule.left--;
      kind = rule.kinds[rule.i++ % rule.kinds.length];
    } else if (kind === 'flap') {
      if (this.failuresLeft > 0) {
        this.failuresLeft--;
        kind = this.flapKinds[this.flapIndex++ % this.flapKinds.length];
      } else {
        kind = 'pass';
      }
    }
    if (process.env.PROXY_DEBUG) console.log(`# proxy ${Date.now() % 100000} ${req.method} ${req.url.slice(0, 90)} -> ${kind}`);
    if (kind === '503' || kind === '500') {
      this.count(kind);
      req.resume();
      res.writeHead(Number(kind), { 'content-type': 'application/xml', connection: 'close' });
      res.end(`<?xml version="1.0"?><Error><Code>${kind === '503' ? 'SlowDown' : 'InternalError'}</Code><Message>injected</Message></Error>`);
      return;
    }
    if (kind === 'hang') {
      this.count(kind);
      req.resume();
      return; // never answers; the socket is destroyed by close()
    }
    if (kind === 'drop') {
      this.count(kind);
      req.socket.destroy();
      return;
    }
    if (kind === 'swallow') {
      // Answers as S3 would to a PUT, and never forwards it: an object that S3
      // acknowledged and then lost.
      this.count(kind);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { etag: '"00000000000000000000000000000000"', 'content-length': '0' });
        res.end();
      });
      return;
    }
    const upstream = http.request(
      { host: this.target.host, port: this.target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        if (kind === 'land-then-hang') {
          // S3 did the work; its answer never reaches the worker, which times out.
          this.count(kind);
          up.resume();
          return;
        }
        if (kind === 'drop-mid-answer') {
          // S3 did the work; the answer is cut off inside its status line.
          this.count(kind);
          up.resume();
          req.socket.end(`HTTP/1.1 ${up.statusCode} OK\r\ncontent-le`);
          setTimeout(() => req.socket.destroy(), 5);
          return;
        }
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

// ---------------------------------------------------------------------------
// The native CLI and the data

export function cliPath() {
  const p = process.env.CAFE_ETL_BIN ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, 'target'), 'release', 'cafe-etl');
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run \`cargo build --release\` (or set CAFE_ETL_BIN)`);
  return p;
}

/** Runs `cafe-etl transform` on one file; returns the output folder. */
export function cliTransform(file, customerKeySecret) {
  const out = tmpDir('cli-');
  const r = spawnSync(cliPath(), ['transform', '--customer-key-secret-env', 'CAFE_TEST_CUSTOMER_KEY', '--out', out, file], {
    env: { ...process.env, CAFE_TEST_CUSTOMER_KEY: customerKeySecret },
    encoding: 'utf8',
  });
  if (r.status !== 0 && r.status !== 1) throw new Error(`cafe-etl transform ${file}: exit ${r.status}\n${r.stderr}`);
  return out;
}

/** Mints a token with the CLI, as an operator would (a lone secret: key id k1). */
export function cliToken(uploadSecret, store, ttl = '1h') {
  const r = spawnSync(cliPath(), ['token', '--store', store, '--ttl', ttl, '--secret-env', 'CAFE_TEST_UPLOAD_SECRET'], {
    env: { ...process.env, CAFE_TEST_UPLOAD_SECRET: uploadSecret },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`cafe-etl token: ${r.stderr}`);
  return r.stdout.trim();
}

/** Runs `cafe-etl generate` into a folder; returns the folder. */
export function cliGenerate(args) {
  const out = tmpDir('gen-');
  const r = spawnSync(cliPath(), ['generate', '--out', out, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cafe-etl generate: ${r.stderr}`);
  return out;
}

/**
 * Where the real exports are: the shared corpus `../shared/data/real/` beside the
 * repository (153 current files in `current/`, two legacy ones in `legacy-2020/`), or
 * else the few copied into `tests/data/real/` (see its README). `null` when neither.
 */
export function realDataDir() {
  if (fs.existsSync(path.join(REAL_DATA, 'current'))) return REAL_DATA;
  if (fs.existsSync(VENDORED_REAL)) return VENDORED_REAL;
  return null;
}

/** The real exports of a kind, `current` or `legacy-2020`, from `realDataDir()`. */
export function realFiles(kind = 'current') {
  const dir = realDataDir();
  if (!dir) return [];
  if (dir === REAL_DATA) {
    const sub = path.join(dir, kind);
    if (!fs.existsSync(sub)) return [];
    return fs.readdirSync(sub).filter((f) => f.endsWith('.csv')).sort().map((f) => path.join(sub, f));
  }
  // tests/data/real/ is flat: the legacy files are Isle of Wight's; spreadsheet-damaged
  // copies (excel_*) are neither kind.
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.csv') && !f.startsWith('excel_'))
    .filter((f) => (kind === 'legacy-2020') === f.includes('isle-of-wight'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Personal data of a real export (names, card numbers), to prove it never leaves. */
export function personalData(file) {
  const text = fs.readFileSync(file, 'utf8');
  const names = new Set();
  const cards = new Set();
  for (const line of text.split('\n')) {
    const m = /^[^,]*,[^,]*,([^,"]+),/.exec(line);
    if (m && /^[A-Za-z][A-Za-z' .-]+ [A-Za-z' .-]+$/.test(m[1]) && !/^custumer$/i.test(m[1])) names.add(m[1]);
    for (const c of line.matchAll(/\b\d{12,19}\b/g)) cards.add(c[0]);
  }
  return { names: [...names], cards: [...cards] };
}

/** The table files and marker the CLI wrote, decompressed: {path: text}. */
export function readLayout(dir) {
  const out = {};
  for (const sub of ['stores', 'products', 'transactions', 'basket_items', 'rejects', 'batches']) {
    const d = path.join(dir, sub);
    if (!fs.existsSync(d)) continue;
    for (const f of fs.readdirSync(d)) {
      if (f.startsWith('.')) continue;
      const bytes = fs.readFileSync(path.join(d, f));
      out[`${sub}/${f}`] = f.endsWith('.gz') ? gunzipSync(bytes).toString('utf8') : bytes.toString('utf8');
    }
  }
  return out;
}

/**
 * The whole stack for a test file: s3s-fs, the fault proxy in front of it (passing
 * everything until told otherwise), and the worker on workerd talking to S3 through
 * the proxy. `vars` override wrangler.toml's [vars].
 */
export async function startStack(vars = {}, { direct = false, queues = {} } = {}) {
  const s3 = await startS3();
  const proxy = await new FaultProxy({ host: '127.0.0.1', port: s3.port }).listen();
  // `direct`: the worker talks to s3s-fs itself (benchmarks), not through the proxy.
  const uploadSecret = secret();
  const customerKeySecret = secret();
  // What every worker of this stack is given: the bucket at `endpoint`, and the secrets.
  const settings = (endpoint, more) => ({
    S3_ENDPOINT: endpoint,
    S3_BUCKET: s3.bucket,
    S3_ACCESS_KEY_ID: s3.accessKeyId,
    S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    // The secret under key id k1, what a lone UPLOAD_SECRET is too (mintToken's default).
    UPLOAD_SECRETS: `k1=${uploadSecret}`,
    CUSTOMER_KEY_SECRET: customerKeySecret,
    ...more,
  });
  let worker;
  try {
    worker = await startWorker({ bindings: settings(direct ? s3.endpoint : proxy.endpoint, vars), queues });
  } catch (e) {
    await proxy.close();
    await s3.stop();
    throw e;
  }
  const prefix = (vars.S3_PREFIX ?? wranglerVars().S3_PREFIX ?? '').replace(/^\/+|\/+$/g, '');
  return {
    s3,
    proxy,
    worker,
    url: worker.url,
    uploadSecret,
    customerKeySecret,
    prefix: prefix ? prefix + '/' : '',
    /**
     * Another worker on the same bucket with the same secrets, talking to s3s-fs
     * itself (not through the proxy), with `vars` instead of the stack's and, unless
     * `queues` says otherwise (startWorker's option), no queue binding: by default a
     * worker whose messages are lost. Stopped by the caller.
     */
    startSibling({ vars: own = {}, queues = false } = {}) {
      return startWorker({ bindings: settings(s3.endpoint, own), queues });
    },
    async stop() {
      await worker.stop().catch(() => {});
      await proxy.close();
      await s3.stop();
      fs.rmSync(s3.dir, { recursive: true, force: true });
    },
  };
}

/**
 * Polls `fn` (sync or async) every `everyMs` until it returns something truthy, and
 * returns that; throws naming `what` after `timeoutMs`.
 */
export async function waitFor(what, fn, { timeoutMs = 60_000, everyMs = 50 } = {}) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The store slug of an export (current or legacy layout), from its first data row's second field. */
export function storeOf(file) {
  const row = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .find((l) => /^\d/.test(l));
  return storeSlug(row.split(',')[1]);
}

/** PUTs a file to the worker; returns {status, body (parsed JSON), headers}. */
export async function upload(url, token, name, bytes, { sha256 = true, headers = {}, method = 'PUT' } = {}) {
  const { createHash } = await import('node:crypto');
  const h = { 'content-type': 'text/csv', ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (sha256 === true) h['x-content-sha256'] = createHash('sha256').update(bytes).digest('hex');
  else if (typeof sha256 === 'string') h['x-content-sha256'] = sha256;
  const target = method === 'POST' ? `${url}/v1/uploads` : `${url}/v1/uploads/${encodeURIComponent(name)}`;
  if (method === 'POST') h['x-file-name'] = name;
  let res;
  try {
    res = await fetch(target, { method, headers: h, body: bytes });
  } catch (e) {
    // A kept-alive connection that the server closed while it sat idle fails before
    // any answer (undici: UND_ERR_SOCKET "other side closed"); a browser sends an
    // idempotent request again on a fresh connection then, and so does this (a PUT
    // of the same bytes is the same batch). Any other failure is the test's.
    if (method !== 'PUT' || !['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'].includes(e?.cause?.code)) throw e;
    res = await fetch(target, { method, headers: h, body: bytes });
  }
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = { unparsed: text };
  }
  return { status: res.status, body, headers: res.headers, text };
}

/** The batch id of bytes: first 32 hex digits of their SHA-256. */
export async function batchIdOf(bytes) {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32);
}

/** SHA-256 and line count of a gzip file's text (for files too big to diff). */
export async function gzDigest(bytes) {
  const { createHash } = await import('node:crypto');
  const { createGunzip } = await import('node:zlib');
  const { Readable } = await import('node:stream');
  const hash = createHash('sha256');
  let lines = 0;
  let size = 0;
  const source = typeof bytes === 'string' ? fs.createReadStream(bytes) : Readable.from([Buffer.from(bytes)]);
  for await (const chunk of source.pipe(createGunzip())) {
    hash.update(chunk);
    size += chunk.length;
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines++;
  }
  return { sha256: hash.digest('hex'), lines, size };
}

/**
 * A large batch in S3 against `cafe-etl transform` of the same file: per table, the
 * decompressed text's SHA-256 and line count; and the report.
 */
export async function assertLargeSameAsCli(assert, stack, file, batchId) {
  const out = cliTransform(file, stack.customerKeySecret);
  const tables = {};
  for (const t of ['stores', 'products', 'transactions', 'basket_items', 'rejects']) {
    const cli = await gzDigest(path.join(out, t, `${batchId}.csv.gz`));
    const staged = await stack.s3.client.get(`${stack.prefix}${t}/${batchId}.csv.gz`);
    assert.ok(staged, `${t} is in S3`);
    assert.deepEqual(await gzDigest(staged), cli, `${t}: the same rows as the CLI`);
    tables[t] = { ...cli, gz: staged.length };
  }
  const marker = JSON.parse(Buffer.from(await stack.s3.client.get(`${stack.prefix}batches/${batchId}.json`)).toString('utf8'));
  assert.deepEqual(marker, JSON.parse(fs.readFileSync(path.join(out, 'batches', `${batchId}.json`), 'utf8')));
  fs.rmSync(out, { recursive: true, force: true });
  return { marker, tables };
}

/**
 * Sends a body and reads the answer even when the worker gives it before reading the
 * whole body (413, 428), which `fetch` reports as a failure to write. Without
 * `content-length` in `headers` the body goes chunked, 16 KiB at a time; with
 * `firstOnly` only the first chunk is sent.
 */
export function earlyAnswer(url, headers, bytes, { firstOnly = false } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    // A connection of its own (agent: false): Node 20 keeps sockets alive, and one the
    // worker closed after an early answer would reset the next request before it is sent.
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'PUT', headers, agent: false });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode, body: JSON.parse(text), headers: res.headers });
      });
    });
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    (async () => {
      for (let at = 0; at < bytes.length && !answered; at += 16_384) {
        if (!req.write(bytes.subarray(at, at + 16_384))) await once(req, 'drain');
        if (firstOnly) return;
      }
      if (!answered) req.end();
    })().catch(() => {});
  });
}

/**
 * Streams a file to the worker with its Content-Length (and X-Content-SHA256 unless
 * `sha256` is false), never holding it in memory. Returns {status, body, seconds}.
 */
export async function uploadFile(url, token, file, { name = path.basename(file), sha256 = true } = {}) {
  const { createHash } = await import('node:crypto');
  const { pipeline } = await import('node:stream/promises');
  const headers = {
    authorization: `Bearer ${token}`,
    'content-type': 'text/csv',
    'content-length': String(fs.statSync(file).size),
  };
  if (sha256) {
    const h = createHash('sha256');
    await pipeline(fs.createReadStream(file), h);
    headers['x-content-sha256'] = h.digest('hex');
  }
  const u = new URL(`${url}/v1/uploads/${encodeURIComponent(name)}`);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'PUT', headers });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let body;
        try {
          body = JSON.parse(text);
        } catch {
          body = { unparsed: text };
        }
        resolve({ status: res.statusCode, body, text, headers: res.headers, seconds: (performance.now() - t0) / 1000 });
      });
    });
    // An answer given before the whole body was read (503 busy) is still the answer.
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    fs.createReadStream(file, { highWaterMark: 256 * 1024 }).pipe(req);
  });
}

/** A generated export of about `bytes` bytes for one store, cut at a line end. */
export function generatedExport(bytes, { store = 'chesterfield', seed = 1 } = {}) {
  const perDay = 7000;
  const days = Math.max(1, Math.ceil(bytes / (perDay * 152)));
  const name = `${store}_big_${bytes}.csv`;
  const dir = cliGenerate(['--stores', '1', '--days', String(days), '--seed', String(seed), '--transactions-per-day', String(perDay), '--single', name]);
  const file = path.join(dir, name);
  const size = fs.statSync(file).size;
  if (size > bytes) {
    const fd = fs.openSync(file, 'r+');
    const tail = Buffer.alloc(4096);
    fs.readSync(fd, tail, 0, 4096, bytes - 4096);
    fs.ftruncateSync(fd, bytes - 4096 + tail.lastIndexOf(10) + 1);
    fs.closeSync(fd);
  }
  return file;
}

// ---------------------------------------------------------------------------
// psql and the CLI for the loader's tests (test/loader.test.js): psql (the real
// client) reads and locks the warehouse from the test's side while the worker's own
// runner loads it from workerd; the databases come from startPostgres below.

/** Runs SQL with psql (ON_ERROR_STOP); returns the rows as arrays of text fields. */
export function psql(url, sql) {
  const r = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-F', '\t', '-d', url], { input: sql, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}

/**
 * A psql session kept open (for a lock held across the worker's load): `run(sql)`
 * sends statements, `close()` ends the session (committing nothing left open).
 */
export function psqlSession(url) {
  const child = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-d', url], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return {
    child,
    output: () => out,
    /** Sends SQL and waits until psql printed `marker` (a SELECT of it ends `sql`). */
    async run(sql) {
      const marker = `done_${randomBytes(4).toString('hex')}`;
      child.stdin.write(`${sql}\nSELECT '${marker}';\n`);
      const until = Date.now() + 20_000;
      while (!out.includes(marker)) {
        if (child.exitCode !== null) throw new Error(`psql session ended: ${out}`);
        if (Date.now() > until) throw new Error(`psql session: no answer to ${sql}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() {
      child.stdin.end('\\q\n');
      await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/** Runs `cafe-etl transform` on several files into one staging root; returns it. */
export function cliTransformAll(files, customerKeySecret) {
  const out = tmpDir('cli-all-');
  const r = spawnSync(cliPath(), ['transform', '--customer-key-secret-env', 'CAFE_TEST_CUSTOMER_KEY', '--out', out, ...files], {
    env: { ...process.env, CAFE_TEST_CUSTOMER_KEY: customerKeySecret },
    encoding: 'utf8',
  });
  if (r.status !== 0 && r.status !== 1) throw new Error(`cafe-etl transform: exit ${r.status}\n${r.stderr}`);
  return out;
}

/** Runs `cafe-etl load` of a staging root into the database at `url`. */
export function cliLoad(root, url) {
  const r = spawnSync(cliPath(), ['load', '--root', root], { env: { ...process.env, CAFE_ETL_POSTGRES: url }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cafe-etl load: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------
// PostgreSQL for the loader's tests: a fresh database per test file on the local
// cluster that scripts/test-worker starts, and a TCP proxy in front of it that can
// cut connections. The worker reaches it through cloudflare:sockets on workerd.

/**
 * A fresh database on the test cluster, dropped by `stop()`. The cluster and a role
 * allowed to create databases come from CAFE_ETL_WORKER_POSTGRES (postgres://user:
 * password@127.0.0.1:port/db), which scripts/test-worker sets up. Returns {url,
 * database, port, query(sql, params) (rows as objects), stop()}.
 */
export async function startPostgres() {
  const base = process.env.CAFE_ETL_WORKER_POSTGRES;
  if (!base) throw new Error('CAFE_ETL_WORKER_POSTGRES is not set: run the tests with scripts/test-worker, which starts PostgreSQL');
  const { default: pg } = await import('pg');
  const database = `cafe_w_${secret(6)}`;
  const admin = new URL(base);
  admin.pathname = '/postgres';
  const run = async (url, sql, params) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  await run(admin.toString(), `CREATE DATABASE ${database}`);
  const url = new URL(base);
  url.pathname = `/${database}`;
  return {
    url: url.toString(),
    database,
    host: url.hostname,
    port: Number(url.port || 5432),
    /** The URL of the same database through another host:port (a proxy). */
    via(port) {
      const u = new URL(url);
      u.host = `127.0.0.1:${port}`;
      return u.toString();
    },
    query: (sql, params) => run(url.toString(), sql, params),
    async stop() {
      await run(admin.toString(), `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {});
    },
  };
}

/**
 * A TCP proxy in front of a server (PostgreSQL) that can drop every connection it
 * carries (`cut()`), or drop them once `cutAfterBytes` bytes have gone from client
 * to server (mid-COPY), or stop moving them without closing anything (`stall()`,
 * or once `stallAfterBytes` have gone). `forwarded` counts those bytes.
 */
export class TcpProxy {
  constructor(target) {
    this.target = target; // {host, port}
    this.sockets = new Set();
    this.forwarded = 0;
    this.cutAfterBytes = Infinity;
    this.stallAfterBytes = Infinity;
    this.server = net.createServer((client) => this.handle(client));
  }

  async listen() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    return this;
  }

  handle(client) {
    const upstream = net.connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
    }
    client.on('data', (d) => {
      this.forwarded += d.length;
      if (this.forwarded >= this.cutAfterBytes) return this.cut();
      upstream.write(d);
      if (this.forwarded >= this.stallAfterBytes) this.stall();
    });
    upstream.on('data', (d) => client.write(d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  /**
   * Stops reading from every connection and never closes them: a network that
   * silently drops everything, or a server that stopped reading. Until `resume()`.
   */
  stall() {
    this.stalled = true;
    for (const s of this.sockets) s.pause();
  }

  resume() {
    this.stalled = false;
    this.stallAfterBytes = Infinity;
    for (const s of this.sockets) s.resume();
  }

  /** Drops every connection at once (as a crashed server or a lost network would). */
  cut() {
    for (const s of this.sockets) s.destroy();
  }

  async close() {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

/**
 * Builds a test-only entry (a module under worker/test/) with wrangler.toml's
 * settings, and runs it on workerd through Miniflare.
 * Returns {url, mf, logs, stdout, stop()}.
 */
export async function startEntry(entry, bindings = {}) {
  return runOnWorkerd(bundleEntry(entry), { bindings });
}

/** Puts a local file (or bytes) into the bucket under `key`. */
export async function putObject(s3, key, fileOrBytes) {
  const body = typeof fileOrBytes === 'string' ? fs.readFileSync(fileOrBytes) : fileOrBytes;
  const r = await s3.client.fetch('PUT', key, '', { body });
  if (r.status !== 200) throw new Error(`PUT ${key}: ${r.status} ${await r.text()}`);
}
