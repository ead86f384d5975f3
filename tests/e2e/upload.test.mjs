// Upload from the page to the real edge worker (workerd through Miniflare)
// staging into a real S3 server (s3s-fs), both started by the worker's own
// test harness (worker/test/harness.js): no fake on either side. Needs the
// worker's npm packages (scripts/test-www installs them) and s3s-fs; without
// them the test is reported as skipped, with the reason.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, outDir, root, startServer } from './helpers.mjs';
import { checkJson } from './cli.mjs';

const CURRENT = path.join(root, 'tests', 'data', 'real', 'chesterfield_25-08-2021_09-00-00.csv');
const BAD = path.join(root, 'tests', 'data', 'e2e', 'chesterfield_26-08-2021_09-00-00.csv');

async function harnessOrReason() {
  const file = path.join(root, 'worker', 'test', 'harness.js');
  if (!existsSync(file)) return { reason: 'worker/test/harness.js is not there' };
  if (!existsSync(path.join(root, 'worker', 'node_modules', 'miniflare'))) return { reason: 'worker/node_modules is not installed (npm ci in worker/)' };
  const harness = await import(file);
  try {
    harness.findS3sFs();
  } catch (e) {
    return { reason: e.message };
  }
  return { harness };
}

const { harness, reason } = await harnessOrReason();

describe('upload to the edge worker', { skip: reason }, () => {
  let server;
  let browser;
  let stack;
  let page;

  before(async () => {
    // The page's origin is the worker's allowed origin, and the worker is the one
    // address the page's Content-Security-Policy lets it connect to.
    const port = await harness.freePort();
    stack = await harness.startStack({ ALLOWED_ORIGINS: `http://127.0.0.1:${port}` });
    server = await startServer({ port, worker: stack.url });
    browser = await launchBrowser();
    page = await browser.context.newPage();
    await page.goto(server.url);
    await page.waitForFunction(() => document.documentElement.dataset.engine, null, { timeout: 15_000 });
  });

  after(async () => {
    if (browser) await browser.close();
    if (stack) await stack.stop();
    if (server) await server.stop();
  });

  async function drop(file) {
    await page.setInputFiles('[data-testid="file-input"]', file);
    const card = page.locator(`[data-testid="file-card"][data-file-name="${path.basename(file)}"]`).last();
    await card.and(page.locator('[data-phase="done"]')).waitFor({ timeout: 30_000 });
    return card;
  }

  async function settle(card) {
    const status = card.locator('[data-testid="upload-status"]');
    await page.waitForFunction((el) => ['done', 'error'].includes(el.dataset.phase), await status.elementHandle(), { timeout: 60_000 });
    return { phase: await status.getAttribute('data-phase'), text: (await status.textContent()).trim() };
  }

  test('a clean export: staged, the report shown, listed, and a second upload is a duplicate', async () => {
    await page.locator('#worker-url').fill(stack.url);
    await page.locator('#branch-token').fill(harness.cliToken(stack.uploadSecret, 'chesterfield'));
    const expected = checkJson(path.dirname(CURRENT), path.basename(CURRENT));
    const card = await drop(CURRENT);
    await card.locator('[data-testid="upload-button"]').click();
    const first = await settle(card);
    assert.equal(first.phase, 'done', first.text);
    // What happened, in words that are true: staged in the bucket, loaded later.
    assert.match(first.text, new RegExp(`Staged in the bucket: ${expected.rows_staged} rows, 0 rejected, in 6 files \\(batch ${expected.batch_id}\\)\\. The warehouse loads them at its next load\\.`));
    assert.doesNotMatch(first.text, /sent to the warehouse/);
    assert.equal(await card.locator('[data-testid="upload-button"]').textContent(), 'Upload to the staging bucket');
    assert.equal(await card.locator('[data-testid="badge"]').textContent(), 'staged', 'the badge says staged, not ready');
    const marker = `${stack.prefix}batches/${expected.batch_id}.json`;
    assert.ok(first.text.includes(marker), 'the objects written are listed');
    const staged = JSON.parse(new TextDecoder().decode(await stack.s3.client.get(marker)));
    assert.equal(staged.rows_staged, expected.rows_staged);
    await page.screenshot({ path: path.join(outDir, 'page-uploaded.png'), fullPage: true });

    // Listed by the worker, from the bucket.
    await page.locator('[data-testid="list-batches"]').click();
    const list = page.locator('[data-testid="batches"] table');
    await list.waitFor();
    assert.match(await list.textContent(), new RegExp(`${path.basename(CURRENT)}.*${expected.rows_staged}.*${expected.batch_id}`));
    assert.match(await list.locator('caption').textContent(), /of chesterfield in cafe-staging/);
    // "Staged at" in the computer's local time, not raw UTC.
    const listed = await (await fetch(`${stack.url}/v1/batches`, {
      headers: { Authorization: `Bearer ${harness.cliToken(stack.uploadSecret, 'chesterfield')}` },
    })).json();
    const iso = listed.batches.find((b) => b.batch_id === expected.batch_id).staged_at;
    assert.match(iso, /^\d{4}-\d{2}-\d{2}T.*Z$/, 'the worker answers in UTC');
    const local = await page.evaluate((t) => new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(t)), iso);
    const row = list.locator('tbody tr', { hasText: expected.batch_id });
    assert.equal(await row.locator('td').first().textContent(), local);
    assert.ok(!(await list.textContent()).includes(iso), 'no raw UTC time shown');

    // The same bytes again: nothing written twice.
    const again = await drop(CURRENT);
    await again.locator('[data-testid="upload-button"]').click();
    const second = await settle(again);
    assert.equal(second.phase, 'done', second.text);
    assert.match(second.text, /Already staged earlier/);
    assert.equal(await again.locator('[data-testid="badge"]').textContent(), 'already staged');
  });

  test('a file with bad rows goes up once staff confirm the valid rows only', async () => {
    const card = await drop(BAD);
    await card.locator('[data-testid="confirm-valid-only"]').check();
    await card.locator('[data-testid="upload-button"]').click();
    const r = await settle(card);
    assert.equal(r.phase, 'done', r.text);
    assert.match(r.text, /Staged in the bucket: 5 rows, 7 rejected/);
    // What reached the bucket: 5 transactions, 7 rejects, no name, no card number.
    const id = checkJson(path.dirname(BAD), path.basename(BAD)).batch_id;
    const keys = (await stack.s3.client.keys(stack.prefix)).filter((k) => k.includes(id));
    // The staging layout's five tables and marker, and the worker's two index
    // entries (one under the store, one by commit time).
    assert.equal(keys.length, 8, keys.join(', '));
    assert.equal(keys.filter((k) => k.startsWith(`${stack.prefix}index/`)).length, 2, keys.join(', '));
    const texts = new Map();
    for (const k of keys) {
      texts.set(k, k.endsWith('.gz') ? await stack.s3.client.text(k) : new TextDecoder().decode(await stack.s3.client.get(k)));
    }
    const lines = (table) => texts.get(`${stack.prefix}${table}/${id}.csv.gz`).split('\n').filter(Boolean).length;
    assert.equal(lines('transactions'), 5);
    assert.equal(lines('rejects'), 7);
    const all = [...texts.values()].join('\n');
    for (const s of ['Ann Example', 'Cy Example', 'Gus Example', '4111111111111111', '5555555555554444', '378282246310005']) {
      assert.ok(readFileSync(BAD, 'utf8').includes(s), `${s} is in the input`);
      assert.ok(!all.includes(s), `${s} reached the bucket`);
    }
  });

  test("the list shows each batch's state in words: loaded (when), not loaded (why), staged", async () => {
    // The loader's records, as the queue consumer writes them (the consumer itself
    // runs in tests/e2e/loading.test.mjs); this stack loads nothing (WAREHOUSE empty).
    const loaded = checkJson(path.dirname(CURRENT), path.basename(CURRENT)).batch_id;
    const failed = checkJson(path.dirname(BAD), path.basename(BAD)).batch_id;
    const loadedAt = '2026-12-01T08:15:00.000Z';
    const put = (key, body) => stack.s3.client.fetch('PUT', key, '', { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    await put(`${stack.prefix}loads/${loaded}.json`, { batch_id: loaded, store: 'chesterfield', state: 'loaded', loaded_at: loadedAt, plan_id: 'p', warehouse: 'postgresql' });
    await put(`${stack.prefix}failures/${failed}.json`, {
      batch_id: failed, store: 'chesterfield', state: 'failed', failed_at: loadedAt, code: 'copy_failed', reason: 'the warehouse refused a row of the transactions table',
    });
    await page.locator('#branch-token').fill(harness.cliToken(stack.uploadSecret, 'chesterfield'));
    await page.locator('[data-testid="list-batches"]').click();
    const state = (id) => page.locator(`[data-testid="batch-row"][data-batch-id="${id}"] [data-testid="batch-state"]`);
    await state(loaded).waitFor();
    const local = await page.evaluate((t) => new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(t)), loadedAt);
    assert.equal(await state(loaded).textContent(), `Loaded ${local}`);
    assert.equal(await state(loaded).getAttribute('data-state'), 'loaded');
    assert.equal(await state(failed).textContent(), 'Not loaded: the warehouse refused a row of the transactions table');
    assert.equal(await state(failed).getAttribute('data-state'), 'failed');
    await page.screenshot({ path: path.join(outDir, 'page-batch-states.png'), fullPage: true });
  });

  test('refusals from the worker are shown in plain words', async () => {
    const card = await drop(CURRENT);
    // A token for another store: 403, nothing staged.
    await page.locator('#branch-token').fill(harness.cliToken(stack.uploadSecret, 'leeds'));
    await card.locator('[data-testid="upload-button"]').click();
    let r = await settle(card);
    assert.equal(r.phase, 'error');
    // One sentence, the worker's (the core's) own, not the same thing three times.
    // (The file may be staged already for its own branch by an earlier test.)
    assert.match(
      r.text,
      /^(Nothing was staged because this file has \d+ rows? of another branch|This file is already staged for another branch), and this token is for branch leeds only\.$/,
    );
    assert.ok((r.text.match(/nothing was staged/gi) || []).length <= 1, r.text);
    // A token signed with another secret: 401.
    await page.locator('#branch-token').fill(harness.cliToken(harness.secret(), 'chesterfield'));
    await card.locator('[data-testid="upload-button"]').click();
    r = await settle(card);
    assert.equal(r.phase, 'error');
    assert.match(r.text, /The branch token was not accepted/);
  });
});
