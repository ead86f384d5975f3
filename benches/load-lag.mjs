#!/usr/bin/env node
// Lag from upload to loaded, on the local stack as `make demo` runs it (scripts/demo:
// s3s-fs, the edge worker under wrangler dev on workerd with its local queue and its
// consumer, a private PostgreSQL cluster as the warehouse). A script, not a test.
//
//   uploads        UPLOADS generated exports (cafe-etl generate, invented names and
//                  published test card numbers) from BRANCHES branches, each branch
//                  with its own token sending its files one after another, all
//                  branches at once (a morning's rush)
//   lag            from the upload's 200 answer (accepted: the batch is committed) to
//                  the consumer's `loads/<batch_id>.json` (`loaded_at`, written after
//                  the warehouse's commit): median, 90th percentile, worst
//   loads/minute   batches loaded per minute from the first acceptance to the last
//                  load, and the groups (transactions) they took
//
// The queue settings are wrangler.toml's top level (the local stack's): a group is up
// to max_batch_size messages or max_batch_timeout seconds. The machine's other work
// counts: run it on an idle machine for the README's figures.
//
// Needs what `make demo` needs (worker/node_modules, pkg/, the release CLI, s3s-fs) and
// PostgreSQL 15+. Usage: node benches/load-lag.mjs [--uploads 200] [--branches 20]
//   [--per-day 300] [--json out.json]
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { demoSkipReason, root, startDemo } from '../tests/demo/stack.mjs';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const UPLOADS = Number(opt('--uploads', 200));
const BRANCHES = Number(opt('--branches', 20));
const PER_DAY = Number(opt('--per-day', 300));
const JSON_OUT = opt('--json', null);
/** The longest the script waits for the last load after the last upload. */
const LOAD_WAIT_MS = 15 * 60_000;

const skip = demoSkipReason();
if (skip) {
  console.error(`load-lag: ${skip}`);
  process.exit(2);
}

const cli = path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'release', 'cafe-etl');

/** wrangler.toml's STORE_NAMES: {slug: "Store Name"} (the worker refuses other stores). */
function storeNames() {
  const toml = fs.readFileSync(path.join(root, 'worker', 'wrangler.toml'), 'utf8');
  const names = /^STORE_NAMES = "([^"]*)"/m.exec(toml)[1];
  return Object.fromEntries(names.split(',').map((p) => p.split('=')));
}

const registeredStores = () => new Set(Object.keys(storeNames()));

/**
 * UPLOADS files from BRANCHES registered branches, `days` each: {store: [file, ...]}.
 * The generator knows 18 store names and numbers the stores past them (`Leeds 2`,
 * a store the worker does not register): those files become registered branches the
 * generator does not use (their store column renamed, e.g. to `London Brixton`).
 */
function exportsByBranch() {
  const days = Math.ceil(UPLOADS / BRANCHES);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cafe-etl-load-lag-'));
  execFileSync(cli, ['generate', '--stores', String(BRANCHES), '--days', String(days), '--seed', '9', '--transactions-per-day', String(PER_DAY), '--out', dir], { stdio: 'ignore' });
  const registered = registeredStores();
  const names = storeNames();
  const generated = new Set(fs.readdirSync(dir).map((f) => f.split('_')[0]));
  const spare = [...registered].filter((s) => !generated.has(s));
  const renamed = {};
  const by = {};
  for (let f of fs.readdirSync(dir).sort()) {
    let store = f.split('_')[0];
    if (!registered.has(store)) {
      renamed[store] ??= spare.shift();
      if (!renamed[store]) continue;
      const m = /^\d\d\/\d\d\/\d{4} \d\d:\d\d,([^,]+),/.exec(fs.readFileSync(path.join(dir, f), 'utf8'));
      const text = fs.readFileSync(path.join(dir, f), 'utf8').split(`,${m[1]},`).join(`,${names[renamed[store]]},`);
      const to = f.replace(store, renamed[store]);
      fs.writeFileSync(path.join(dir, to), text);
      fs.rmSync(path.join(dir, f));
      store = renamed[store];
      f = to;
    }
    (by[store] ??= []).push(path.join(dir, f));
  }
  const stores = Object.keys(by).slice(0, BRANCHES);
  if (stores.length < BRANCHES) throw new Error(`only ${stores.length} registered branches in the generated exports`);
  const out = {};
  let n = 0;
  for (let d = 0; d < days; d++) {
    for (const s of stores) {
      if (n++ < UPLOADS) (out[s] ??= []).push(by[s][d]);
    }
  }
  return { files: out, dir };
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];

const { files, dir: genDir } = exportsByBranch();
const demo = await startDemo({ store: Object.keys(files)[0] });
try {
  if (!demo.warehouse) throw new Error(`the demo runs no warehouse:\n${demo.out()}`);
  const uploadSecrets = demo.secret('UPLOAD_SECRETS');
  const token = (store) =>
    execFileSync(cli, ['token', '--store', store, '--ttl', '1h'], { env: { ...process.env, UPLOAD_SECRETS: uploadSecrets }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const accepted = new Map(); // batch_id → ms
  const t0 = Date.now();
  let bytes = 0;
  let retries = 0; // uploads sent again after a 503 busy or a reset
  await Promise.all(
    Object.entries(files).map(async ([store, list]) => {
      const bearer = token(store);
      for (const file of list) {
        const body = fs.readFileSync(file);
        bytes += body.length;
        for (let attempt = 1; ; attempt++) {
          let res;
          try {
            res = await fetch(`${demo.worker}/v1/uploads/${encodeURIComponent(path.basename(file))}`, {
              method: 'PUT',
              headers: {
                authorization: `Bearer ${bearer}`,
                'content-type': 'text/csv',
                'x-content-sha256': createHash('sha256').update(body).digest('hex'),
              },
              body,
            });
          } catch (e) {
            // A 503 `busy` closes the connection after 64 KiB of the body: the client
            // may see the reset instead of the answer. Send it again, as a branch would.
            retries++;
            if (attempt > 20) throw e;
            await new Promise((r) => setTimeout(r, 1000));
            continue;
          }
          const answer = await res.json().catch(() => ({}));
          if (res.status === 200) {
            accepted.set(answer.batch_id, Date.now());
            break;
          }
          // 503 busy: the worker says when to send it again (the pipelines are full).
          if (res.status !== 503 || attempt > 20) throw new Error(`${path.basename(file)}: ${res.status} ${JSON.stringify(answer)}`);
          retries++;
          await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after') ?? 1) * 1000));
        }
      }
    }),
  );
  const uploadedIn = Date.now() - t0;
  console.error(`load-lag: ${accepted.size} uploads accepted in ${(uploadedIn / 1000).toFixed(1)} s; waiting for the loads`);

  // The consumer's loads/ records, as plain files in the demo's bucket folder.
  const loadsDir = path.join(demo.bucketDir, 'loads');
  const failuresDir = path.join(demo.bucketDir, 'failures');
  const loaded = new Map(); // batch_id → {at, plan}
  const until = Date.now() + LOAD_WAIT_MS;
  while (loaded.size < accepted.size && Date.now() < until) {
    for (const f of fs.existsSync(loadsDir) ? fs.readdirSync(loadsDir) : []) {
      const id = f.replace(/\.json$/, '');
      if (!accepted.has(id) || loaded.has(id)) continue;
      try {
        const j = JSON.parse(fs.readFileSync(path.join(loadsDir, f), 'utf8'));
        loaded.set(id, { at: Date.parse(j.loaded_at), plan: j.plan_id });
      } catch {
        // Being written: read it on the next pass.
      }
    }
    if (loaded.size < accepted.size) await new Promise((r) => setTimeout(r, 250));
  }
  const failed = fs.existsSync(failuresDir) ? fs.readdirSync(failuresDir).length : 0;
  const lags = [...loaded].map(([id, l]) => l.at - accepted.get(id)).sort((a, b) => a - b);
  const last = Math.max(...[...loaded.values()].map((l) => l.at));
  const minutes = (last - t0) / 60_000;
  const rows = execFileSync(path.join(path.dirname(fs.realpathSync(execFileSync('sh', ['-c', 'command -v postgres || ls /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1'], { encoding: 'utf8' }).trim())), 'psql'),
    ['-qAt', demo.warehouse, '-c', 'SELECT count(*) FROM loaded_batches'], { encoding: 'utf8' }).trim();
  const result = {
    uploads: accepted.size,
    branches: Object.keys(files).length,
    megabytes: +(bytes / 1e6).toFixed(1),
    uploaded_in_s: +(uploadedIn / 1000).toFixed(1),
    upload_retries: retries,
    loaded: loaded.size,
    failed,
    ledger_batches: Number(rows),
    groups: new Set([...loaded.values()].map((l) => l.plan)).size,
    lag_median_s: +(pct(lags, 50) / 1000).toFixed(1),
    lag_p90_s: +(pct(lags, 90) / 1000).toFixed(1),
    lag_worst_s: +(lags.at(-1) / 1000).toFixed(1),
    loads_per_minute: +(loaded.size / minutes).toFixed(1),
    cpus: os.cpus().length,
    load_average: os.loadavg().map((l) => +l.toFixed(1)),
  };
  console.log(JSON.stringify(result, null, 2));
  if (JSON_OUT) fs.writeFileSync(JSON_OUT, JSON.stringify(result, null, 2));
  if (loaded.size < accepted.size) {
    console.error(`load-lag: ${accepted.size - loaded.size} batches not loaded within ${LOAD_WAIT_MS / 60_000} minutes`);
    process.exitCode = 1;
  }
} finally {
  await demo.stop();
  fs.rmSync(genDir, { recursive: true, force: true });
}
