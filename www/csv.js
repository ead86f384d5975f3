// CSV helpers shared by the Web Worker (rejected-rows download) and the
// tests. No DOM, no wasm: plain functions over strings.

/** Header of the rejected-rows download: the columns of `rejects/<id>.csv.gz`. */
export const REJECT_COLUMNS = [
  'line', 'codes', 'message', 'timestamp', 'store', 'basket_items', 'total_price', 'cash_or_card',
];

/**
 * A cell a spreadsheet would run as a formula (it starts with = + - @, a tab
 * or a carriage return) gets a leading single quote, so opening the download
 * in Excel or LibreOffice shows the text instead of evaluating it (OWASP's
 * advice against CSV injection).
 */
export function neutralise(cell) {
  return /^[=+\-@\t\r]/.test(cell) ? `'${cell}` : cell;
}

/** One field, neutralised, quoted when RFC 4180 needs it. */
export function csvField(cell) {
  const v = neutralise(String(cell ?? ''));
  return /[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** Rows to RFC 4180 text (CRLF line ends), every cell neutralised. */
export function toCsv(rows) {
  return rows.map((r) => r.map(csvField).join(',')).join('\r\n') + (rows.length ? '\r\n' : '');
}

/** RFC 4180 text to rows of strings (quoted fields may hold commas, quotes and line breaks). */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
        quoted = false; i += 1; continue;
      }
      field += c; i += 1; continue;
    }
    if (c === '"' && field === '') { quoted = true; i += 1; continue; }
    if (c === ',') { row.push(field); field = ''; i += 1; continue; }
    if (c === '\n' || c === '\r') {
      row.push(field); rows.push(row); row = []; field = '';
      i += c === '\r' && text[i + 1] === '\n' ? 2 : 1;
      continue;
    }
    field += c; i += 1;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}
