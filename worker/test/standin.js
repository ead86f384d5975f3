// The Redshift Data API stand-in (tests/redshift-data-api, a Rust test server) and a
// test worker that runs the Redshift runner on workerd against it. See
// tests/redshift-data-api/README.md for what the stand-in checks and what it cannot.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { REPO, WORKER_DIR, secret } from './harness.js';

const MANIFEST = path.join(REPO, 'tests', 'redshift-data-api', 'Cargo.toml');

/** The stand-in's binary: REDSHIFT_STANDIN_BIN, or built (debug) under target/standin. */
export function standinBinary() {
  if (process.env.REDSHIFT_STANDIN_BIN) return process.env.REDSHIFT_STANDIN_BIN;
  const targetDir = path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, 'target'), 'standin');
  const bin = path.join(targetDir, 'debug', 'redshift-data-api-standin');
  // Cargo decides whether anything changed; a no-op build takes a fraction of a second.
  const r = spawnSync('cargo', ['build', '--quiet', '--manifest-path', MANIFEST, '--target-dir', targetDir], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
  if (r.status !== 0) throw new Error(`building the Redshift Data API stand-in failed:\n${r.stderr}`);
  return bin;
}

/**
 * Starts the stand-in with fresh credentials on a free port.
 * Returns {endpoint, accessKeyId, secretAccessKey, region, log(), faults(f), reset(), stop()}.
 */
export async function startStandin({ region = 'eu-west-2', faults = {} } = {}) {
  const accessKeyId = 'AKIA' + secret(8).toUpperCase();
  const secretAccessKey = secret(20);
  const child = spawn(standinBinary(), ['--region', region, '--faults', JSON.stringify(faults)], {
    env: { ...process.env, STANDIN_ACCESS_KEY_ID: accessKeyId, STANDIN_SECRET_ACCESS_KEY: secretAccessKey },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout });
  const first = await Promise.race([
    once(lines, 'line').then(([l]) => l),
    once(child, 'exit').then(([code]) => {
      throw new Error(`the stand-in exited with code ${code}`);
    }),
  ]);
  const endpoint = JSON.parse(first).listening;
  const control = async (method, route, body) => {
    const r = await fetch(`${endpoint}/_standin/${route}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await r.json();
    if (r.status !== 200) throw new Error(`stand-in ${route}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    endpoint,
    region,
    accessKeyId,
    secretAccessKey,
    /** Every request and batch it received, and its ledger. */
    log: () => control('GET', 'log'),
    faults: (f) => control('POST', 'faults', f),
    reset: () => control('POST', 'reset', {}),
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

/** Bundles worker/test/fixtures/redshift-runner.js (with aws4fetch and the wasm core) for workerd. */
function bundleRunner() {
  const outdir = path.join(WORKER_DIR, '.wrangler', 'redshift-runner');
  const r = spawnSync(
    path.join(WORKER_DIR, 'node_modules', '.bin', 'wrangler'),
    ['deploy', '--dry-run', '--outdir', outdir, '--name', 'redshift-runner-test', 'test/fixtures/redshift-runner.js'],
    {
      cwd: WORKER_DIR,
      env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: 'false', WRANGLER_SEND_METRICS: 'false', WRANGLER_HIDE_BANNER: 'true', WRANGLER_LOG: 'warn' },
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`bundling the Redshift runner test worker failed:\n${r.stdout}\n${r.stderr}`);
  const script = path.join(outdir, 'redshift-runner.js');
  if (!fs.existsSync(script)) throw new Error(`no ${script} after wrangler deploy --dry-run`);
  return script;
}

/**
 * The Redshift runner on workerd (Miniflare), with `bindings` as its environment.
 * `run(statements, {vars, planId})` posts them and returns the runner's outcome.
 */
export async function startRunnerWorker(bindings) {
  const { Miniflare, Log, LogLevel } = await import('miniflare');
  const compatibilityDate = /compatibility_date = "([^"]+)"/.exec(fs.readFileSync(path.join(WORKER_DIR, 'wrangler.toml'), 'utf8'))[1];
  const mf = new Miniflare({
    modules: true,
    scriptPath: bundleRunner(),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate,
    bindings,
    log: new Log(LogLevel.WARN),
    cf: false,
  });
  const url = (await mf.ready).toString();
  return {
    async run(statements, { vars = {}, planId } = {}) {
      const r = await fetch(url, { method: 'POST', body: JSON.stringify({ statements, vars, planId }) });
      return r.json();
    },
    stop: () => mf.dispose(),
  };
}
