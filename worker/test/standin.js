// The Redshift Data API stand-in (tests/redshift-data-api, a Rust test server) and a
// test worker that runs the Redshift runner on workerd against it. See
// tests/redshift-data-api/README.md for what the stand-in checks and what it cannot.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import readline from 'node:readline';
import { REPO, bundleEntry, runOnWorkerd, secret } from './harness.js';

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

/**
 * The Redshift runner on workerd (Miniflare), with `bindings` as its environment:
 * worker/test/fixtures/redshift-runner.js (with aws4fetch and the wasm core) bundled
 * and run as every test worker is (harness bundleEntry, runOnWorkerd).
 * `run(statements, {vars, planId})` posts them and returns the runner's outcome.
 */
export async function startRunnerWorker(bindings) {
  const script = bundleEntry('test/fixtures/redshift-runner.js', { name: 'redshift-runner-test' });
  const { url, stop } = await runOnWorkerd(script, { bindings });
  return {
    async run(statements, { vars = {}, planId } = {}) {
      const r = await fetch(url, { method: 'POST', body: JSON.stringify({ statements, vars, planId }) });
      return r.json();
    },
    stop,
  };
}
