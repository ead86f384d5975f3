// The page in a real headless Chromium: drop exports, read what it shows,
// check that no name or card number is on it, download the rejected rows,
// and the upload button's rules. Screenshots go to test-output/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { launchBrowser, outDir, root, startServer } from './helpers.mjs';
import { checkJson } from './cli.mjs';
import Papa from 'papaparse';

/** RFC 4180 text to rows, by an independent reader (PapaParse); `strict`: it must parse cleanly. */
function parseCsv(text, strict = false) {
  const { data, errors } = Papa.parse(text, { skipEmptyLines: true });
  if (strict) assert.deepEqual(errors, [], 'the CSV parses');
  return data;
}

const REAL = path.join(root, 'tests', 'data', 'real');
const E2E = path.join(root, 'tests', 'data', 'e2e');
const CURRENT = path.join(REAL, 'chesterfield_25-08-2021_09-00-00.csv');
const LEGACY = path.join(REAL, '2021-02-23-isle-of-wight.csv');
const BAD = path.join(E2E, 'chesterfield_26-08-2021_09-00-00.csv');
const EXCEL = path.join(REAL, 'excel_leeds_09-05-2023_with-header.csv');

/** Lines of BAD that are wrong, by construction of the fixture (see tests/data/e2e/README.md). */
const BAD_ERROR_LINES = [3, 4, 5, 6, 7, 8, 10];
const BAD_WARNING_LINES = [11];

/**
 * Customer names and card numbers of an export: what must never be shown.
 * Current: name in field 3, card in field 7. Legacy: name in field 3, card
 * as "network,PAN" in field 7. Spreadsheet damage: cards as 5.49417E+15.
 */
function personalData(file) {
  const names = new Set();
  const cards = new Set();
  for (const row of parseCsv(readFileSync(file, 'utf8'))) {
    if (row.length < 7 || !/\d/.test(row[0])) continue; // header lines
    if (row[2] && row[2].trim()) names.add(row[2].trim());
    const card = row.slice(6).join(',');
    for (const m of card.matchAll(/\d[\d.]*(?:E\+\d+)?/gi)) if (m[0].replace(/\D/g, '').length >= 6) cards.add(m[0]);
  }
  return { names: [...names], cards: [...cards] };
}

/** Builds File objects in the page and fires dragenter + drop on the drop zone. */
async function drop(page, files) {
  const payload = files.map((f) => ({ name: path.basename(f), b64: readFileSync(f).toString('base64') }));
  await page.evaluate((items) => {
    const dt = new DataTransfer();
    for (const f of items) {
      const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name, { type: 'text/csv' }));
    }
    const zone = document.querySelector('[data-testid="drop-zone"]');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }, payload);
}

function card(page, file) {
  return page.locator(`[data-testid="file-card"][data-file-name="${path.basename(file)}"]`);
}

async function done(page, file) {
  const c = card(page, file);
  await c.and(page.locator('[data-phase="done"]')).waitFor({ timeout: 30_000 });
  return c;
}

/** Waits for the card's hash (the second worker's SHA-256: batch id and upload header). */
async function hashed(page, file) {
  const c = card(page, file);
  await c.and(page.locator('[data-hash="done"]')).waitFor({ timeout: 30_000 });
  return c;
}

async function field(c, key) {
  return (await c.locator(`[data-testid="summary"] [data-field="${key}"] dd`).textContent()).trim();
}

const n = (x) => new Intl.NumberFormat('en-GB').format(x);

/** A port nothing listens on: bind one, then close it. */
function closedPort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

describe('the page', () => {
  let server;
  let browser;
  let page;
  const errors = [];
  // File choosers, caught by a listener that stays on for the page's life.
  // Playwright turns interception on when a listener is added, without
  // waiting for Chromium to confirm; a waitForEvent('filechooser') added
  // just before the key press can lose that race and see no event
  // (puppeteer/puppeteer#6040 describes the same race).
  let nextChooser = null;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('filechooser', (chooser) => {
      if (nextChooser) nextChooser(chooser);
      nextChooser = null;
    });
    await page.goto(server.url);
    await page.waitForFunction(() => document.documentElement.dataset.engine, null, { timeout: 15_000 });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  test('a real export, a file with bad rows and a legacy export, dropped together', async () => {
    await drop(page, [CURRENT, BAD, LEGACY]);
    for (const file of [CURRENT, BAD, LEGACY]) {
      const c = await done(page, file);
      const expected = checkJson(path.dirname(file), path.basename(file));
      assert.equal(await field(c, 'rows-read'), n(expected.rows_read), `${path.basename(file)} rows read`);
      assert.equal(await field(c, 'rows-staged'), n(expected.rows_staged), `${path.basename(file)} rows staged`);
      assert.equal(await field(c, 'rows-rejected'), n(expected.rows_rejected), `${path.basename(file)} rows rejected`);
      await hashed(page, file);
      assert.equal(await field(c, 'batch-id'), expected.batch_id);

      // The charts: one bar per top product, per store, per hour with sales.
      const charts = c.locator('[data-testid="charts"]');
      assert.equal(await charts.locator('svg').count(), 3, 'three charts');
      assert.equal(await charts.locator('svg[data-chart$="-products"] rect').count(), expected.summary.top_products.length);
      assert.equal(await charts.locator('svg[data-chart$="-stores"] rect').count(), Math.min(12, expected.summary.by_store.length));
      assert.equal(await charts.locator('svg[data-chart$="-hours"] rect').count(),
        expected.summary.by_hour.filter((h) => h.transactions > 0).length);
      assert.ok(expected.summary.transactions > 0);

      // The preview: the first staged rows, by line.
      const previewLines = await c.locator('[data-testid="preview"] tbody tr td:first-child').allTextContents();
      assert.deepEqual(previewLines.map(Number), expected.preview.map((p) => p.line));
      assert.ok(previewLines.length > 0);
    }

    const current = card(page, CURRENT);
    assert.equal(await field(current, 'format'), 'Current till export');
    assert.equal(await current.locator('[data-testid="issues"] tbody tr').count(), 0);
    assert.match(await current.locator('[data-testid="issues"]').textContent(), /No problems found/);

    const legacy = card(page, LEGACY);
    assert.equal(await field(legacy, 'format'), 'Legacy 2020 export');
    assert.equal(await field(legacy, 'header-lines'), '6');
    assert.equal(await field(legacy, 'rows-read'), '540');

    const bad = card(page, BAD);
    const rows = bad.locator('[data-testid="issues"] tbody tr');
    const lines = (await rows.evaluateAll((trs) => trs.map((tr) => [Number(tr.dataset.line), tr.className])));
    assert.deepEqual(lines.filter(([, s]) => s === 'error').map(([l]) => l), BAD_ERROR_LINES);
    assert.deepEqual(lines.filter(([, s]) => s === 'warning').map(([l]) => l), BAD_WARNING_LINES);
    assert.equal(await field(bad, 'rows-rejected'), String(BAD_ERROR_LINES.length));
    assert.match(await rows.nth(0).textContent(), /items add up to 2\.45 but total_price is 2\.54/);
    assert.equal((await rows.nth(0).locator('td').nth(1).textContent()).trim(), '5', 'column of the total');

    // Filter: by code, by severity.
    await bad.locator('input[type="search"]').fill('bad_basket');
    assert.deepEqual((await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.line)))), [7, 8]);
    await bad.locator('input[type="search"]').fill('');
    await bad.locator('select').selectOption('warning');
    assert.deepEqual((await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.line)))), BAD_WARNING_LINES);
    assert.match(await bad.locator('[data-role="issue-note"]').textContent(), /1 of 8 listed problems match/);
    await bad.locator('select').selectOption('all');

    // What the page shows (text, attributes, SVG titles) holds no personal data.
    const html = await page.content();
    const text = await page.evaluate(() => document.body.innerText);
    for (const file of [CURRENT, BAD, LEGACY]) {
      const { names, cards } = personalData(file);
      assert.ok(names.length > 5 && cards.length > 3, `${path.basename(file)}: found the personal data to look for`);
      for (const s of [...names, ...cards]) {
        assert.ok(!html.includes(s) && !text.includes(s), `${JSON.stringify(s)} from ${path.basename(file)} is on the page`);
      }
    }
    for (const s of ['Ann Example', '4111111111111111', '5555555555554444', '378282246310005']) {
      assert.ok(!html.includes(s), `${s} on the page`);
    }

    await page.screenshot({ path: path.join(outDir, 'page-after-drop.png'), fullPage: true });
    await card(page, BAD).screenshot({ path: path.join(outDir, 'card-bad-rows.png') });
    await card(page, CURRENT).screenshot({ path: path.join(outDir, 'card-current.png') });
    assert.deepEqual(errors, []);
  });

  test('spreadsheet damage through the file picker: counts as the CLI, no card number in scientific notation', async () => {
    await page.setInputFiles('[data-testid="file-input"]', EXCEL);
    const c = await done(page, EXCEL);
    const expected = checkJson(REAL, path.basename(EXCEL));
    assert.equal(await field(c, 'rows-read'), n(expected.rows_read));
    assert.equal(await field(c, 'rows-staged'), n(expected.rows_staged));
    const html = await page.content();
    const { names, cards } = personalData(EXCEL);
    assert.ok(cards.some((x) => /E\+/i.test(x)), 'the fixture has cards like 5.49417E+15');
    for (const s of [...names, ...cards]) assert.ok(!html.includes(s), `${s} on the page`);
  });

  test('the rejected rows download: every rejected row, formula cells neutralised, no personal data', async () => {
    const bad = card(page, BAD);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      bad.locator('[data-testid="download-rejects"]').click(),
    ]);
    assert.equal(download.suggestedFilename(), 'chesterfield_26-08-2021_09-00-00.rejected.csv');
    const saved = path.join(outDir, download.suggestedFilename());
    await download.saveAs(saved);
    const text = readFileSync(saved, 'utf8');
    assert.ok(text.startsWith('\uFEFF'), 'a BOM, so spreadsheets read it as UTF-8');
    const rows = parseCsv(text.slice(1), true);
    assert.deepEqual(rows[0], ['line', 'codes', 'message', 'timestamp', 'store', 'basket_items', 'total_price', 'cash_or_card']);
    assert.deepEqual(rows.slice(1).map((r) => Number(r[0])), BAD_ERROR_LINES);
    for (const row of rows) {
      for (const cell of row) assert.ok(!/^[=+\-@\t\r]/.test(cell), `unsafe cell ${JSON.stringify(cell)}`);
    }
    const byLine = new Map(rows.slice(1).map((r) => [Number(r[0]), r]));
    // A basket without the `Name - price` shape is withheld by the privacy
    // rule (it could be anything, a name included); an amount is kept.
    assert.equal(byLine.get(7)[5], '[withheld]');
    assert.equal(byLine.get(8)[5], '[withheld]');
    assert.equal(byLine.get(10)[6], "'-2.45");
    assert.equal(byLine.get(3)[1], 'total_mismatch');
    const { names, cards } = personalData(BAD);
    for (const s of [...names, ...cards]) assert.ok(!text.includes(s), `${s} in the download`);
    await page.locator('[data-testid="status"]').filter({ hasText: '7 rejected rows' }).waitFor();
  });

  test('upload is disabled while a file has errors, until staff confirm sending the valid rows only', async () => {
    const bad = card(page, BAD);
    const button = bad.locator('[data-testid="upload-button"]');
    assert.equal(await button.isDisabled(), true);
    assert.match(await bad.locator('[data-testid="upload-status"]').textContent(), /Some rows have errors/);
    const confirm = bad.locator('[data-testid="confirm-valid-only"]');
    assert.match(await bad.locator('.confirm').textContent(), /Send the 5 valid rows only; the 7 rejected rows go to the reject file \(without names or card numbers\), not into the tables\./);
    // Nothing on the page claims rows reach the warehouse when they only reach the bucket.
    assert.doesNotMatch(await page.locator('body').textContent(), /to the warehouse|out of the warehouse/);
    await confirm.check();
    assert.equal(await button.isEnabled(), true);
    await confirm.uncheck();
    assert.equal(await button.isDisabled(), true);
    // A clean file can be sent straight away.
    assert.equal(await card(page, CURRENT).locator('[data-testid="upload-button"]').isEnabled(), true);
  });

  test('upload without settings asks for them', async () => {
    const c = card(page, CURRENT);
    await page.locator('#worker-url').fill('');
    await page.locator('#branch-token').fill('');
    await c.locator('[data-testid="upload-button"]').click();
    await c.locator('[data-testid="upload-status"]').filter({ hasText: 'Set the upload service address and the branch token' }).waitFor();
  });

  test('upload when the worker is not running: a clear message, nothing silent', async () => {
    const port = await closedPort();
    await page.locator('#worker-url').fill(`http://127.0.0.1:${port}`);
    await page.locator('#branch-token').fill('chesterfield.4102444800.0000');
    const c = card(page, CURRENT);
    await c.locator('[data-testid="upload-button"]').click();
    const status = c.locator('[data-testid="upload-status"]');
    await status.filter({ hasText: `Could not reach the upload service at http://127.0.0.1:${port}` }).waitFor({ timeout: 15_000 });
    assert.match(await status.textContent(), /Nothing was sent/);
    assert.equal(await status.getAttribute('data-phase'), 'error');
    await page.locator('[data-testid="status"]').filter({ hasText: 'Could not reach the upload service' }).waitFor();
    assert.equal(await c.locator('[data-testid="upload-button"]').isEnabled(), true, 'staff can try again');

    // The staged-batches list says the same.
    await page.locator('[data-testid="list-batches"]').click();
    await page.locator('[data-testid="batches"]').filter({ hasText: 'Could not reach the upload service' }).waitFor();

    // Settings are remembered across a reload; the checked files are not kept.
    await page.reload();
    assert.equal(await page.locator('#worker-url').inputValue(), `http://127.0.0.1:${port}`);
    assert.equal(await page.locator('#branch-token').inputValue(), 'chesterfield.4102444800.0000');
    await page.locator('#forget-settings').click();
    assert.equal(await page.evaluate(() => localStorage.getItem('cafe-etl.token')), null);
  });

  test('keyboard: the drop zone is reachable with Tab and opens the file chooser with Enter', async () => {
    await page.reload();
    for (let i = 0; i < 10; i += 1) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.activeElement?.dataset.testid === 'drop-zone')) break;
    }
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'drop-zone');
    const opened = new Promise((resolve, reject) => {
      nextChooser = resolve;
      setTimeout(() => reject(new Error('no file chooser opened within 30 s of Enter')), 30_000).unref();
    });
    await page.keyboard.press('Enter');
    const chooser = await opened;
    assert.equal(chooser.isMultiple(), true);
    await chooser.setFiles(CURRENT);
    await done(page, CURRENT);
    assert.equal(await page.locator('[data-testid="status"]').getAttribute('aria-live'), 'polite');
    await page.locator('[data-testid="status"]').filter({ hasText: '268 rows read, 268 ready to send' }).waitFor();
  });

  test('a file that is not CSV is refused with the reason, and cannot be uploaded', async () => {
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array([0x50, 0x4b, 3, 4, 0, 0, 1, 2, 3])], 'takings.xlsx'));
      document.querySelector('[data-testid="drop-zone"]').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    const c = page.locator('[data-testid="file-card"][data-file-name="takings.xlsx"]');
    await c.and(page.locator('[data-phase="done"]')).waitFor();
    assert.match(await c.locator('[data-testid="summary"]').textContent(), /cannot be sent: .*zip archive or an Excel workbook/);
    assert.equal(await c.locator('[data-testid="upload-button"]').isDisabled(), true);
    assert.equal(await c.locator('[data-testid="charts"]').isHidden(), true);
  });
});

/**
 * Before the page's scripts run: requests of the listed types posted to a Web
 * Worker are held in the page until `release(type)`, so a test decides when
 * the real worker gets them (a hash that "takes" as long as the test wants).
 */
function holdWorkerRequests() {
  const post = Worker.prototype.postMessage;
  const held = [];
  window.holding = new Set();
  window.heldCount = (type) => held.filter(([, m]) => m.type === type).length;
  Worker.prototype.postMessage = function postMessage(message, transfer) {
    if (message && window.holding.has(message.type)) {
      held.push([this, message, transfer]);
      return undefined;
    }
    return post.call(this, message, transfer);
  };
  window.release = (type) => {
    window.holding.delete(type);
    for (const [worker, message, transfer] of held.filter(([, m]) => m.type === type)) post.call(worker, message, transfer);
    held.splice(0, held.length, ...held.filter(([, m]) => m.type !== type));
  };
}

describe('the batch id is hashed beside the check, in a second worker', () => {
  let server;
  let browser;
  let page;
  const errors = [];

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    await page.addInitScript(holdWorkerRequests);
    await page.goto(server.url);
    await page.waitForFunction(() => document.documentElement.dataset.engine, null, { timeout: 15_000 });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  test('the report shows while the hash is held; the upload waits for the batch id', async () => {
    await page.evaluate(() => window.holding.add('hash'));
    await drop(page, [CURRENT]);
    const c = await done(page, CURRENT);
    // The report is complete although the hashing worker has not even been asked.
    assert.equal(await page.evaluate(() => window.heldCount('hash')), 1);
    assert.equal(await c.getAttribute('data-hash'), 'pending');
    const expected = checkJson(REAL, path.basename(CURRENT));
    assert.equal(await field(c, 'rows-read'), n(expected.rows_read));
    assert.equal(await c.locator('[data-testid="preview"] tbody tr').count(), expected.preview.length);
    assert.equal(await field(c, 'batch-id'), 'computing…');
    const button = c.locator('[data-testid="upload-button"]');
    assert.equal(await button.isDisabled(), true, 'no upload without the checksum');
    assert.match(await c.locator('[data-testid="upload-status"]').textContent(), /Computing the checksum the upload needs/);

    await page.evaluate(() => window.release('hash'));
    await hashed(page, CURRENT);
    assert.equal(await field(c, 'batch-id'), expected.batch_id);
    assert.equal(await button.isEnabled(), true);
    assert.equal(await c.locator('[data-testid="upload-status"]').textContent(), '');
    assert.deepEqual(errors, []);
  });

  test('Stop cancels both the check and the hash; the workers serve the next file', async () => {
    await page.evaluate(() => { window.holding.add('check'); window.holding.add('hash'); });
    await drop(page, [BAD]);
    const c = card(page, BAD);
    await c.and(page.locator('[data-phase="queued"]')).waitFor();
    await c.locator('[data-role="cancel"]').click();
    await page.evaluate(() => { window.release('check'); window.release('hash'); });
    // Each worker answers its request as cancelled (the page marks the hash
    // 'cancelled' only on that answer), and nothing is reported.
    await c.and(page.locator('[data-phase="cancelled"][data-hash="cancelled"]')).waitFor({ timeout: 15_000 });
    assert.match(await c.locator('[data-role="error"]').textContent(), /Stopped before the end/);
    assert.equal(await c.locator('[data-testid="summary"]').isHidden(), true);

    await drop(page, [LEGACY]);
    const next = await hashed(page, LEGACY);
    await done(page, LEGACY);
    assert.equal(await field(next, 'batch-id'), checkJson(REAL, path.basename(LEGACY)).batch_id);
    assert.deepEqual(errors, []);
  });
});
