// Shared by the end-to-end tests and the browser benchmark: start the page's
// static server (scripts/serve-www, the same command a person uses) and a
// headless Debian Chromium driven by playwright-core (no browser download).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const outDir = path.join(root, 'test-output');
mkdirSync(outDir, { recursive: true });

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * scripts/serve-www on a free port (or `port`), its Content-Security-Policy allowing
 * connections to `worker` (an upload service address; default: the local stack's,
 * http://127.0.0.1:8787);
 * resolves to {url, stop}.
 */
export function startServer({ port = 0, worker } = {}) {
  return new Promise((resolve, reject) => {
    const args = ['--port', String(port)];
    if (worker) args.push('--worker', worker);
    const child = spawn(path.join(root, 'scripts', 'serve-www'), args, {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/Serving www\/ at (http:\/\/\S+)/);
      if (m) {
        resolve({
          url: m[1],
          stop: () => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`serve-www exited (${code}) before listening: ${err}`)));
  });
}

/** Headless Chromium with a fresh profile; close() removes the profile. */
export async function launchBrowser() {
  const userDataDir = mkdtempSync(path.join(tmpdir(), 'cafe-etl-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
