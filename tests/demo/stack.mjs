// The demo's own stack (scripts/demo) for the tests and benchmarks that need all of
// it: s3s-fs, the private PostgreSQL cluster, the worker under wrangler dev with its
// local queue, the page's server. Started on free ports in a temporary DEMO_DIR, read
// from what the demo prints, stopped as Ctrl-C stops it (SIGINT to its group).

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Why the demo cannot run its warehouse here (a reason to skip), or false. */
export function demoSkipReason() {
  const sh = (cmd) => spawnSync('sh', ['-c', cmd], { stdio: 'ignore' }).status === 0;
  if (!sh('command -v postgres || ls /usr/lib/postgresql/*/bin/postgres')) return 'PostgreSQL is not installed';
  if (!sh('command -v s3s-fs || test -x "$HOME/.cargo/bin/s3s-fs"')) return 's3s-fs is not installed';
  return false;
}

/** `n` ports nobody listens on now. */
export async function freePorts(n) {
  const servers = [];
  for (let i = 0; i < n; i++) {
    const s = net.createServer();
    await new Promise((r) => s.listen(0, '127.0.0.1', r));
    servers.push(s);
  }
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * Starts scripts/demo and waits until it is up. Returns `{dir, out(), page, worker,
 * token, cli, warehouse (its postgres:// URL), bucketDir (the staging root as plain
 * files), secret(name) (from the demo's generated secrets), stop()}`.
 */
export async function startDemo({ store = 'leeds', upWithinMs = 300_000 } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cafe-etl-demo-'));
  const [s3, worker, www, pg] = await freePorts(4);
  const child = spawn(path.join(root, 'scripts', 'demo'), [], {
    cwd: root,
    detached: true, // a process group of its own, as a terminal's foreground job
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DEMO_DIR: dir,
      DEMO_STORE: store,
      DEMO_S3_PORT: String(s3),
      DEMO_WORKER_PORT: String(worker),
      DEMO_WWW_PORT: String(www),
      DEMO_PG_PORT: String(pg),
    },
  });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((r) => child.once('exit', r));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(-child.pid, 'SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const until = Date.now() + upWithinMs;
  while (!out.includes('Ctrl-C stops everything')) {
    const early = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 200))]);
    if (early || Date.now() > until) {
      await stop();
      throw new Error(`scripts/demo ${early ? 'ended before the stack was up' : 'was not up in time'}:\n${out}`);
    }
  }
  const field = (label) => new RegExp(`^\\s*${label}\\s+(\\S+)`, 'm').exec(out)?.[1] ?? null;
  const insights = /(\S+cafe-etl) insights --postgres '([^']+)'/.exec(out);
  const secrets = readFileSync(path.join(dir, 'worker.secrets.env'), 'utf8');
  return {
    dir,
    out: () => out,
    page: field('Page'),
    worker: field('Worker'),
    token: field('Branch token'),
    cli: insights?.[1] ?? null,
    warehouse: insights?.[2] ?? null,
    bucketDir: path.join(dir, 's3', 'cafe-staging', 'staging'),
    secret: (name) => new RegExp(`^${name}=(.*)$`, 'm').exec(secrets)?.[1] ?? null,
    stop,
  };
}
