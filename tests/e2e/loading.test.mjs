// From the page to the warehouse with no further command, on the demo's own stack
// (scripts/demo: s3s-fs, a private PostgreSQL cluster, the worker under wrangler dev
// with its local queue, the page's server), all real parts: a real export is dropped
// on the page and uploaded, the page's list shows it `loaded` within a bounded wait,
// the warehouse holds exactly the rows the native CLI stages for the same file, and
// `cafe-etl insights` (the line the demo prints) answers from them.
//
// Needs what the demo needs (the worker's npm packages, s3s-fs, the wasm build, the
// release CLI) and PostgreSQL 15+; without PostgreSQL or s3s-fs it is reported as
// skipped, with the reason.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { launchBrowser, outDir, root } from './helpers.mjs';
import { checkJson, cliBinary } from './cli.mjs';
import { demoSkipReason, startDemo } from '../demo/stack.mjs';

const EXPORT = path.join(root, 'tests', 'data', 'real', 'chesterfield_25-08-2021_09-00-00.csv');
/** The longest the page may take to show the batch loaded (the local queue waits 5 s). */
const LOADED_WITHIN_MS = 60_000;

/** Runs a query on the warehouse with psql (the cluster's own), rows as arrays of strings. */
function sql(url, query) {
  const bin = spawnSync('sh', ['-c', 'dirname "$(readlink -f "$(command -v postgres || ls /usr/lib/postgresql/*/bin/postgres | sort -V | tail -1)")"'], { encoding: 'utf8' }).stdout.trim();
  const out = execFileSync(path.join(bin, 'psql'), ['-qAt', '-F', '\t', '-v', 'ON_ERROR_STOP=1', url, '-c', query], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean).map((l) => l.split('\t'));
}

/** The CLI's staging of a file with the worker's customer-key secret: {table: [rows]}. */
function cliStaging(file, secret) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cafe-etl-loading-'));
  try {
    mkdirSync(path.join(dir, 'in'));
    copyFileSync(file, path.join(dir, 'in', path.basename(file)));
    execFileSync(cliBinary(), ['transform', '--customer-key-secret-env', 'CAFE_SECRET', '--out', path.join(dir, 'out'), path.join(dir, 'in')], {
      env: { ...process.env, CAFE_SECRET: secret },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const tables = {};
    for (const t of ['stores', 'products', 'transactions', 'basket_items']) {
      const [f] = readdirSync(path.join(dir, 'out', t));
      tables[t] = gunzipSync(readFileSync(path.join(dir, 'out', t, f))).toString('utf8').split('\n').filter(Boolean);
    }
    return tables;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the demo: a file dropped on the page reaches the warehouse', { skip: demoSkipReason() }, () => {
  let demo;
  let browser;

  before(async () => {
    demo = await startDemo({ store: 'chesterfield' });
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    if (demo) await demo.stop();
  });

  test('upload on the page, "loaded" in its list, the rows in PostgreSQL, cafe-etl insights shows them', { timeout: 240_000 }, async () => {
    const { page: pageUrl, worker: workerUrl, token, warehouse } = demo;
    assert.ok(pageUrl && workerUrl && token, `the demo printed the page, the worker and a token:\n${demo.out()}`);
    assert.ok(warehouse, `the demo printed the cafe-etl insights line:\n${demo.out()}`);

    const page = await browser.context.newPage();
    await page.goto(pageUrl);
    await page.waitForFunction(() => document.documentElement.dataset.engine, null, { timeout: 15_000 });
    await page.locator('#worker-url').fill(workerUrl);
    await page.locator('#branch-token').fill(token);
    await page.setInputFiles('[data-testid="file-input"]', EXPORT);
    const card = page.locator(`[data-testid="file-card"][data-file-name="${path.basename(EXPORT)}"]`);
    await card.and(page.locator('[data-phase="done"]')).waitFor({ timeout: 30_000 });
    await card.locator('[data-testid="upload-button"]').click();
    const status = card.locator('[data-testid="upload-status"]');
    await page.waitForFunction((el) => ['done', 'error'].includes(el.dataset.phase), await status.elementHandle(), { timeout: 60_000 });
    assert.equal(await status.getAttribute('data-phase'), 'done', await status.textContent());
    // The expectation comes from the worker's settings (5 s of queue wait locally).
    assert.match(await card.locator('[data-testid="load-expectation"]').textContent(), /The warehouse loads it within about 1 minute \(at the latest about \d+ minutes, if the first try is missed\)/);

    // The page follows the load by itself: the batch's row turns "loaded".
    const expected = checkJson(path.dirname(EXPORT), path.basename(EXPORT));
    const state = page.locator(`[data-testid="batch-row"][data-batch-id="${expected.batch_id}"] [data-testid="batch-state"]`);
    const t0 = Date.now();
    await page.locator(`[data-testid="batch-row"][data-batch-id="${expected.batch_id}"] [data-testid="batch-state"][data-state="loaded"]`)
      .waitFor({ timeout: LOADED_WITHIN_MS });
    assert.match(await state.textContent(), /^Loaded /);
    process.stderr.write(`loading e2e: shown loaded ${Date.now() - t0} ms after the upload's answer\n`);
    await page.screenshot({ path: path.join(outDir, 'page-loaded.png'), fullPage: true });

    // The warehouse holds exactly the CLI's staging of the same file, once.
    const cli = cliStaging(EXPORT, demo.secret('CUSTOMER_KEY_SECRET'));
    const id = expected.batch_id;
    assert.deepEqual(sql(warehouse, `SELECT batch_id FROM loaded_batches WHERE batch_id = '${id}'`), [[id]]);
    assert.equal(Number(sql(warehouse, `SELECT count(*) FROM transactions WHERE batch_id = '${id}'`)[0][0]), cli.transactions.length);
    assert.equal(cli.transactions.length, expected.rows_staged);
    const items = Number(sql(warehouse, `SELECT count(*) FROM basket_items b JOIN transactions t USING (transaction_id) WHERE t.batch_id = '${id}'`)[0][0]);
    assert.equal(items, cli.basket_items.length);
    const txIds = sql(warehouse, `SELECT transaction_id FROM transactions WHERE batch_id = '${id}'`).map((r) => r[0]).sort();
    assert.deepEqual(txIds, cli.transactions.map((l) => l.split(',')[0]).sort());

    // And the line the demo prints shows them.
    const shown = execFileSync(demo.cli, ['insights', '--postgres', warehouse], { encoding: 'utf8' });
    assert.match(shown, /Chesterfield/);
  });
});
