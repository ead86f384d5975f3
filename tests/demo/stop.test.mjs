// `make demo` starts the local stack and stops all of it: started and stopped
// CYCLES times (default 10, DEMO_STOP_CYCLES) by SIGINT to make's process group
// (what Ctrl-C in a terminal does; make itself waits for its child on SIGINT)
// and CYCLES times by SIGTERM to make alone (make passes it to the demo
// script). After each stop, every process the demo started is gone and none of
// its ports listens. In the SIGTERM runs the reader of make's output goes away
// with the signal, as a closed terminal or a harness does: the demo must stop
// its services even when it can no longer print (a message written to the
// closed pipe used to kill the script before it stopped anything).
//
// Run by scripts/test-demo (after the release CLI, the wasm build and s3s-fs
// are there: `make test` runs it last). Written in Node, not bash: a shell
// script's background job ignores SIGINT, which would hide the Ctrl-C path.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePorts, root } from './stack.mjs';

const cycles = Number(process.env.DEMO_STOP_CYCLES || 10);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** `promise`, or null after `ms`, without a timer left behind to hold the process. */
function within(promise, ms) {
  let timer;
  const late = new Promise((r) => { timer = setTimeout(() => r(null), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Whether PostgreSQL's server programs are there, as scripts/demo looks for them. */
function postgresInstalled() {
  try {
    execFileSync('sh', ['-c', 'command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function listening(port) {
  return new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** Every live process as {pid, ppid, sid, stat, args}. */
function processes() {
  return execFileSync('ps', ['-eo', 'pid=,ppid=,sid=,stat=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const [pid, ppid, sid, stat, ...args] = l.trim().split(/\s+/);
      return { pid: Number(pid), ppid: Number(ppid), sid: Number(sid), stat, args: args.join(' ') };
    })
    .filter((p) => !p.stat.startsWith('Z'));
}

/** The demo script under make, and every process of the sessions it started. */
function demoTree(makePid) {
  const all = processes();
  const script = all.find((p) => p.ppid === makePid);
  if (!script) return { script: null, members: [] };
  const sessions = new Set(all.filter((p) => p.ppid === script.pid && p.sid === p.pid).map((p) => p.pid));
  return { script, members: all.filter((p) => sessions.has(p.sid)) };
}

/** Sessions the demo started, to clean up after a failed run. */
const started = new Set();

/** Kills what a failed run left behind: only the sessions the demo started. */
function killLeftovers() {
  for (const p of processes()) {
    if (started.has(p.sid)) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

async function once(signal, n, env, ports) {
  const make = spawn('make', ['--no-print-directory', '-o', 'install', 'demo'], {
    cwd: root,
    env,
    detached: true, // a process group of its own, as a terminal's foreground job
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  make.stdout.on('data', (d) => { out += d; });
  make.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((r) => make.once('exit', (code, sig) => r({ code, sig })));
  const what = `${signal} run ${n}`;
  const up = Date.now();
  while (!out.includes('The local stack is up')) {
    const early = await within(exited, 100);
    if (early) assert.fail(`${what}: make demo ended before the stack was up:\n${out}`);
    if (Date.now() - up > 180_000) assert.fail(`${what}: the stack was not up after 3 minutes:\n${out}`);
  }
  const startedIn = Date.now() - up;
  const { script, members } = demoTree(make.pid);
  assert.ok(script, `${what}: no demo script under make`);
  for (const p of members) started.add(p.sid);
  // s3s-fs, PostgreSQL (its postmaster and its own processes), wrangler (+
  // workerd) and the page's server.
  assert.ok(members.length >= 3 + (ports.length > 3 ? 1 : 0), `${what}: ${members.length} service processes: ${members.map((p) => p.args).join('; ')}`);
  for (const p of ports) assert.ok(await listening(p), `${what}: port ${p} is not listening while up`);

  const stop = Date.now();
  if (signal === 'SIGINT') {
    process.kill(-make.pid, 'SIGINT');
  } else {
    process.kill(make.pid, 'SIGTERM');
    // The reader goes away with the signal.
    make.stdout.destroy();
    make.stderr.destroy();
  }
  const end = await within(exited, 30_000);
  assert.ok(end, `${what}: make did not end within 30 s of ${signal}:\n${out}`);
  // make waits for the demo script, which returns once its services are gone;
  // when make's output was closed, make may be gone first: the script then
  // still stops them, so give it the few seconds its own wait takes.
  const deadline = Date.now() + (signal === 'SIGTERM' ? 12_000 : 0);
  let left;
  for (;;) {
    const live = new Set(processes().map((p) => p.pid));
    left = [script, ...members].filter((p) => live.has(p.pid));
    if (!left.length || Date.now() >= deadline) break;
    await sleep(100);
  }
  assert.deepEqual(left.map((p) => `${p.pid} ${p.args}`), [], `${what}: processes left running`);
  for (const p of ports) assert.equal(await listening(p), false, `${what}: port ${p} still listening`);
  return { startedIn, stoppedIn: Date.now() - stop };
}

test(`make demo stops cleanly, ${cycles} times by SIGINT to its group and ${cycles} by SIGTERM to make`, { timeout: cycles * 2 * 200_000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cafe-etl-demo-stop-'));
  try {
    // The fourth is the warehouse's (a private PostgreSQL cluster) where
    // PostgreSQL is installed; without it the demo stages only.
    const ports = await freePorts(postgresInstalled() ? 4 : 3);
    const env = {
      ...process.env,
      DEMO_DIR: dir,
      DEMO_S3_PORT: String(ports[0]),
      DEMO_WORKER_PORT: String(ports[1]),
      DEMO_WWW_PORT: String(ports[2]),
      DEMO_PG_PORT: String(ports[3] ?? 0),
    };
    const times = [];
    for (let i = 1; i <= cycles; i++) {
      for (const signal of ['SIGINT', 'SIGTERM']) times.push(await once(signal, i, env, ports));
    }
    const avg = (k) => Math.round(times.reduce((a, t) => a + t[k], 0) / times.length);
    process.stderr.write(`demo stop test: ${times.length} runs, up in ${avg('startedIn')} ms, stopped in ${avg('stoppedIn')} ms on average\n`);
  } finally {
    killLeftovers();
    rmSync(dir, { recursive: true, force: true });
  }
});
