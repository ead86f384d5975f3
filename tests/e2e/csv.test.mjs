// The spreadsheet-safe CSV helpers of the page (www/csv.js).
import test from 'node:test';
import assert from 'node:assert/strict';
import { neutralise, csvField, toCsv, parseCsv } from '../../www/csv.js';

test('cells a spreadsheet would run as formulas get a leading quote', () => {
  for (const c of ['=1+2', '+44 20', '-2.45', '@SUM(A1)', '\tx', '\rx', "=cmd|' /C calc'!A0"]) {
    assert.equal(neutralise(c), `'${c}`);
  }
  for (const c of ['', 'Large Latte - 2.45', '2.45', "'already", 'a=b', ' =x']) {
    assert.equal(neutralise(c), c);
  }
});

test('fields are quoted only when RFC 4180 needs it, after neutralising', () => {
  assert.equal(csvField('plain'), 'plain');
  assert.equal(csvField('a, b'), '"a, b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField('=HYPERLINK("x")'), '"\'=HYPERLINK(""x"")"');
  assert.equal(csvField('two\nlines'), '"two\nlines"');
  assert.equal(csvField(12), '12');
});

test('parse and write round-trip quoted commas, quotes, line breaks and CRLF', () => {
  const text = '1,"a, b","say ""hi""",x\r\n2,"multi\nline",,\n3,last,"",end';
  const rows = parseCsv(text);
  assert.deepEqual(rows, [
    ['1', 'a, b', 'say "hi"', 'x'],
    ['2', 'multi\nline', '', ''],
    ['3', 'last', '', 'end'],
  ]);
  assert.deepEqual(parseCsv(toCsv(rows)), rows);
  assert.deepEqual(parseCsv(''), []);
  assert.deepEqual(parseCsv('a,b\n'), [['a', 'b']]);
});

test('every written cell is safe, whatever it held', () => {
  const rows = [['-1', '+1', '=1', '@1', '\t1', '\r1', 'ok']];
  const back = parseCsv(toCsv(rows));
  for (const cell of back[0]) assert.ok(!/^[=+\-@\t\r]/.test(cell), JSON.stringify(cell));
});
