// No customer name and no card number leaves the worker, whatever shape a row has:
// rows with a comma typed into a name or a store, a store missing, names with quotes
// and extra spaces, card numbers whose digits are joined by spaces, dots, dashes,
// slashes or underscores, each in every position of a row, fields dropped and added.
// They are uploaded through the worker on workerd into a real S3 server (s3s-fs),
// and every S3 object, every response body and every log line is searched for them.
// The same rows as tests/common/rows.rs builds for the Rust tests.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { batchIdOf, cliToken, startStack, upload } from './harness.js';

const NAME_SHAPES = [
  '{g} {s}',
  '{s}, {g}',
  '"{s}, {g}"',
  '  {g}   {s}  ',
  '"{g} ""Zvnick"" {s}"',
  '{s},{g},Jr',
  '{g} "{s}"',
  '"{s}, {g}',
];
const CARD_SHAPES = ['', ' ', '.', '-', '/', '_', ' - '];
const TEST_CARDS = ['4111111111111111', '5555555555554444', '4000056655665556', '378282246310005'];
const EXTRA_FIELDS = ['', 'x', '2.45', 'CASH', 'Leeds', '25/08/2021 09:00'];
const GIVEN = 'Zvann';
const SURNAME = 'Qxample';
const NAMES = [GIVEN, SURNAME, 'Zvnick'];

const typedName = (shape) => NAME_SHAPES[shape].replaceAll('{g}', GIVEN).replaceAll('{s}', SURNAME);
const typedCard = (shape, digits) => digits.match(/.{1,4}/g).join(CARD_SHAPES[shape]);
const pad = (n) => String(n).padStart(2, '0');

/** One line: the name and card number placed, a field dropped or added (as rows.rs). */
function row(n, name, card, { nameAt, cardAt, drop = [], add = [] }) {
  const fields = [`25/08/2021 ${pad(8 + (Math.floor(n / 60) % 10))}:${pad(n % 60)}`, 'Leeds', 'Large Latte - 2.45', '2.45', 'CARD'];
  fields.splice(Math.min(nameAt, fields.length), 0, name);
  fields.splice(Math.min(cardAt, fields.length), 0, card);
  for (const d of drop) fields.splice(d % fields.length, 1);
  for (const [at, extra] of add) fields.splice(at % (fields.length + 1), 0, EXTRA_FIELDS[extra % EXTRA_FIELDS.length]);
  return fields.join(',');
}

/** Every name shape in every position, a field dropped, added, or neither. */
function enumeration() {
  const lines = [];
  let n = 0;
  for (let shape = 0; shape < NAME_SHAPES.length; shape++) {
    for (let nameAt = 0; nameAt < 7; nameAt++) {
      for (let change = 0; change < 4; change++) {
        const card = typedCard((shape + nameAt + change) % CARD_SHAPES.length, TEST_CARDS[(nameAt + change) % TEST_CARDS.length]);
        lines.push(
          row(n, typedName(shape), card, {
            nameAt,
            cardAt: (nameAt + 1 + change * 2) % 7,
            drop: change === 1 ? [(nameAt + 1) % 7] : change === 3 ? [1] : [],
            add: change === 2 ? [[nameAt + 1, n]] : change === 3 ? [[nameAt, n + 1]] : [],
          }),
        );
        n++;
      }
    }
  }
  return lines;
}

/** RFC 4180 fields of one line; null when a quote is left open. */
function fieldsOf(line) {
  const fields = [''];
  let quoted = false;
  let atStart = true;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"' && quoted && line[i + 1] === '"') {
      fields[fields.length - 1] += '"';
      i++;
    } else if (c === '"' && quoted) quoted = false;
    else if (c === '"' && atStart) quoted = true;
    else if (c === ',' && !quoted) {
      fields.push('');
      atStart = true;
      continue;
    } else fields[fields.length - 1] += c;
    atStart = false;
  }
  return quoted ? null : fields;
}

/**
 * The one place no content check can catch a name: the store column of a row that
 * still has 7 fields (a store name like any other). Those values are cut out of the
 * text, as written raw, in JSON and in CSV, before searching; card numbers have no
 * such exception.
 */
function findPersonalData(text, lines, needles) {
  const excused = lines
    .map(fieldsOf)
    .filter((f) => f && f.length === 7 && NAMES.some((n) => f[1].includes(n)))
    .map((f) => f[1].trim())
    .sort((a, b) => b.length - a.length);
  for (const s of excused) {
    for (const form of [s, s.replaceAll('"', '\\"'), s.replaceAll('"', '""')]) text = text.replaceAll(form, '');
  }
  return needles.find((n) => n && text.includes(n)) ?? null;
}

const cardNeedles = (typed) => [typed, typed.replace(/\D/g, '')];
const NEEDLES = [...NAMES];
for (const card of TEST_CARDS) for (let s = 0; s < CARD_SHAPES.length; s++) NEEDLES.push(...cardNeedles(typedCard(s, card)));

/** The three rows of issue 8. */
const COMMA_ROWS = [
  '25/08/2021 09:00,Leeds,Qxample, Zvann,Large Latte - 2.45,2.45,CARD,4111111111111111',
  '25/08/2021 09:05,Leeds, Briggate,Zvann Qxample,Large Latte - 2.45,2.45,CASH,',
  '25/08/2021 09:10,Zvann Qxample,Large Latte - 2.45,2.45,CARD,4000.0566.5566.5556',
];

let stack;
let token;
const bodies = [];

before(async () => {
  stack = await startStack();
  token = cliToken(stack.uploadSecret, 'leeds');
});

after(async () => {
  await stack?.stop();
});

async function send(name, lines) {
  const bytes = new TextEncoder().encode(lines.join('\n') + '\n');
  const r = await upload(stack.url, token, name, bytes);
  bodies.push(r.text);
  return { ...r, batchId: await batchIdOf(bytes) };
}

/** Every object in the bucket, decompressed, keyed by its key. */
async function bucket() {
  const out = {};
  for (const key of await stack.s3.client.keys('')) {
    const bytes = await stack.s3.client.get(key);
    out[key] = key.endsWith('.gz') ? gunzipSync(bytes).toString('utf8') : Buffer.from(bytes).toString('utf8');
  }
  return out;
}

test('the three comma rows of issue 8: staged as rejects that keep no free text', async () => {
  const r = await send('leeds_25-08-2021_09-00-00.csv', COMMA_ROWS);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.report.rows_rejected, 3);
  const rejects = (await bucket())[`${stack.prefix}rejects/${r.batchId}.csv.gz`];
  assert.ok(rejects, 'the reject file is in the bucket');
  const rows = rejects.trim().split('\n');
  assert.equal(rows.length, 3);
  for (const line of rows) {
    assert.match(line, /,\[withheld\],\[withheld\],2\.45,(CARD|CASH)$/);
    assert.match(line, /store and basket_items withheld: with [86] fields instead of 7/);
  }
  const found = findPersonalData([rejects, r.text].join('\n'), COMMA_ROWS, [...NEEDLES, '4000.0566.5566.5556']);
  assert.equal(found, null, `personal data: ${found}`);
});

/**
 * Whether a line has 7 fields whose store column is not the token's store: a name or a
 * card number typed where the store goes. The store column of a 7-field row is free
 * text that passes its content check, so such a name may reach the reject file (the
 * one exception `findPersonalData` makes); the other lines need no exception.
 */
const misplacesStore = (line) => {
  const f = fieldsOf(line);
  return f !== null && f.length === 7 && f[1].trim() !== 'Leeds';
};

/** Nothing personal in any S3 object, response body or line workerd printed. */
async function assertNothingPersonal(lines) {
  const objects = await bucket();
  for (const [key, text] of Object.entries(objects)) {
    const found = findPersonalData(text, lines, NEEDLES);
    assert.equal(found, null, `${key} holds personal data: ${found}`);
  }
  for (const body of bodies) {
    const found = findPersonalData(body, lines, NEEDLES);
    assert.equal(found, null, `a response body holds personal data: ${found}`);
  }
  assert.ok(stack.worker.stdout.length > 0, 'the worker logged');
  const found = findPersonalData(stack.worker.stdout.join('\n'), lines, NEEDLES);
  assert.equal(found, null, `a log line holds personal data: ${found}`);
}

/**
 * Every line of the enumeration puts a name or a card number where a checked field
 * goes, so every row is rejected and the batch stages with its reject file only: one
 * outcome, 200 (no row is staged, so no store is misspelt for the branch rule's 403).
 */
async function uploadRejected(name, lines) {
  const r = await send(name, lines);
  assert.equal(r.status, 200, r.text);
  const report = r.body.report;
  assert.equal(report.rows_staged, 0, r.text);
  assert.equal(report.rows_rejected, report.rows_read, r.text);
  assert.ok(report.rows_read > 0 && report.rows_read <= lines.length, r.text);
  const objects = await bucket();
  assert.ok(objects[`${stack.prefix}rejects/${r.batchId}.csv.gz`], 'the reject file is in the bucket');
  assert.ok(objects[`${stack.prefix}batches/${r.batchId}.json`], 'the marker is in the bucket');
}

test('every name and card shape in every position, the store column left in place: rejected rows only, nothing personal in any object, body or log line', async () => {
  const lines = enumeration().filter((l) => !misplacesStore(l));
  assert.ok(lines.length > 100);
  await uploadRejected('leeds_26-08-2021_09-00-00.csv', lines);
  await assertNothingPersonal(lines);
});

test('names and card numbers typed into the store column of 7-field rows: rejected rows only, no card number anywhere, no name outside that column', async () => {
  const lines = enumeration().filter(misplacesStore);
  assert.ok(lines.length > 10);
  await uploadRejected('leeds_27-08-2021_09-00-00.csv', lines);
  await assertNothingPersonal(lines);
});
