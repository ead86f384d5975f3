// The page: drop or pick till exports, see what is wrong and what will be
// sent, download the rejected rows, upload to the edge worker.
//
// The page never touches WebAssembly: the Web Worker (worker.js) reads each
// file in chunks and answers with a report, so the page stays responsive on
// a 1 GB file. Two instances of it run side by side: one checks (the report),
// the other computes the file's SHA-256 (the batch id and the upload's
// X-Content-SHA256) at the same time, so the report never waits for the hash;
// only the upload does. Everything the page knows is in `state`; every element
// it writes to is in `elements` (per file: `elements.cards`).

import { Engine } from './engine.js';
import { horizontalBars, columns } from './charts.js';

const STORAGE = { workerUrl: 'cafe-etl.workerUrl', token: 'cafe-etl.token' };
const ISSUES_SHOWN = 1000;
const money = new Intl.NumberFormat('en-GB', { style: 'currency', currency: 'GBP' });
const count = new Intl.NumberFormat('en-GB');
/** `3 rows`, `1 row`. */
const plural = (n, one, many = `${one}s`) => `${count.format(n)} ${n === 1 ? one : many}`;
const clock = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
/** A UTC time from the worker (`2026-12-01T19:11:23.206Z`) in this computer's
 *  time zone, as staff read a clock; anything else as it came. */
const localTime = (v) => {
  const t = new Date(v);
  return typeof v === 'string' && !Number.isNaN(t.getTime()) ? clock.format(t) : v;
};

const state = {
  settings: { workerUrl: '', token: '' },
  /** @type {FileEntry[]} */
  files: [],
  nextKey: 1,
};

/**
 * @typedef {object} FileEntry
 * @property {number} key
 * @property {File} file
 * @property {'queued'|'reading'|'done'|'error'|'cancelled'} phase
 * @property {number} bytes
 * @property {number} rows
 * @property {number|null} requestId
 * @property {import('./pkg/cafe_etl.js').Report|null} report
 * @property {string} error
 * @property {{text: string, severity: string}} filter
 * @property {boolean} sendValidOnly
 * @property {FileHash} hash
 * @property {{phase: 'idle'|'sending'|'done'|'error', loaded: number, total: number, message: string, response: object|null}} upload
 * @property {boolean} downloading
 */

/**
 * The file's SHA-256 and batch id (the core's `batchIdOfSha256`), from the
 * hashing worker; `requestId` while it runs there.
 * @typedef {object} FileHash
 * @property {'pending'|'done'|'error'|'cancelled'} phase
 * @property {number} bytes
 * @property {string} sha256
 * @property {string} batchId
 * @property {string} message
 * @property {number|null} requestId
 */

const elements = {
  dropZone: document.querySelector('[data-testid="drop-zone"]'),
  fileInput: document.querySelector('[data-testid="file-input"]'),
  fileList: document.getElementById('file-list'),
  status: document.getElementById('status'),
  workerUrl: document.getElementById('worker-url'),
  token: document.getElementById('branch-token'),
  forget: document.getElementById('forget-settings'),
  template: document.getElementById('file-card-template'),
  listBatches: document.getElementById('list-batches'),
  batches: document.getElementById('batches'),
  /** @type {Map<number, Record<string, HTMLElement>>} */
  cards: new Map(),
};

/** Checks files (the report) and prepares the rejected rows. */
const engine = new Engine();
/** The same worker module, a second instance: hashes files while `engine` checks them. */
const hasher = new Engine();

// ---------------------------------------------------------------- settings

function loadSettings() {
  try {
    state.settings.workerUrl = localStorage.getItem(STORAGE.workerUrl) || '';
    state.settings.token = localStorage.getItem(STORAGE.token) || '';
  } catch {
    // Storage disabled (private mode): the inputs still work for this visit.
  }
  elements.workerUrl.value = state.settings.workerUrl;
  elements.token.value = state.settings.token;
}

function saveSetting(name, value) {
  state.settings[name] = value.trim();
  try {
    if (state.settings[name]) localStorage.setItem(STORAGE[name], state.settings[name]);
    else localStorage.removeItem(STORAGE[name]);
  } catch {
    // See loadSettings.
  }
}

document.getElementById('settings-form').addEventListener('submit', (e) => e.preventDefault());
elements.workerUrl.addEventListener('input', () => saveSetting('workerUrl', elements.workerUrl.value));
elements.token.addEventListener('input', () => saveSetting('token', elements.token.value));
elements.forget.addEventListener('click', () => {
  elements.workerUrl.value = '';
  elements.token.value = '';
  saveSetting('workerUrl', '');
  saveSetting('token', '');
  announce('Upload settings forgotten on this computer.');
});

function workerBase() {
  return state.settings.workerUrl.replace(/\/+$/, '');
}

// ------------------------------------------------------------------ status

function announce(message) {
  // Re-set so that the same message twice is still read out.
  elements.status.textContent = '';
  requestAnimationFrame(() => { elements.status.textContent = message; });
  elements.status.dataset.last = message;
}

// --------------------------------------------------------------- choosing

elements.dropZone.addEventListener('click', () => elements.fileInput.click());
elements.dropZone.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') {
    e.preventDefault();
    elements.fileInput.click();
  }
});
elements.fileInput.addEventListener('change', () => {
  addFiles([...elements.fileInput.files]);
  elements.fileInput.value = '';
});
for (const type of ['dragenter', 'dragover']) {
  elements.dropZone.addEventListener(type, (e) => {
    e.preventDefault();
    elements.dropZone.classList.add('dragging');
  });
}
elements.dropZone.addEventListener('dragleave', () => elements.dropZone.classList.remove('dragging'));
elements.dropZone.addEventListener('drop', (e) => {
  e.preventDefault();
  elements.dropZone.classList.remove('dragging');
  addFiles([...(e.dataTransfer ? e.dataTransfer.files : [])]);
});
// A file dropped beside the zone would make the browser navigate away to it.
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());

function addFiles(files) {
  if (!files.length) return;
  for (const file of files) {
    const entry = {
      key: state.nextKey++, file, phase: 'queued', bytes: 0, rows: 0, requestId: null,
      report: null, error: '', filter: { text: '', severity: 'all' }, sendValidOnly: false,
      upload: { phase: 'idle', loaded: 0, total: 0, message: '', response: null }, downloading: false,
      hash: { phase: 'pending', bytes: 0, sha256: '', batchId: '', message: '', requestId: null },
    };
    state.files.push(entry);
    createCard(entry);
    checkFile(entry);
    hashFile(entry);
  }
  announce(files.length === 1 ? `Checking ${files[0].name}…` : `Checking ${files.length} files…`);
}

/** The report, from the checking worker; without the SHA-256, which `hashFile` computes beside it. */
async function checkFile(entry) {
  try {
    const { report, refusal } = await engine.request('check', { file: entry.file, skipBatchId: true }, {
      onId: (id) => { entry.requestId = id; },
      onProgress: (p) => {
        entry.phase = 'reading';
        entry.bytes = p.bytes;
        entry.rows = p.rows || 0;
        renderProgress(entry);
      },
    });
    entry.report = report;
    entry.refusal = refusal; // the core's sentence (Report::refusal_message), null unless refused
    entry.phase = 'done';
    entry.bytes = entry.file.size;
    renderCard(entry);
    announce(describe(entry));
  } catch (e) {
    entry.phase = e.cancelled ? 'cancelled' : 'error';
    entry.error = e.cancelled ? 'Stopped before the end: nothing was checked.' : `Could not check this file: ${e.message}`;
    // A file that was not checked cannot be sent: its hash is not needed.
    stop(entry);
    renderCard(entry);
    announce(`${entry.file.name}: ${entry.error}`);
  } finally {
    entry.requestId = null;
  }
}

/**
 * The file's SHA-256 and batch id, from the hashing worker while the other
 * checks: the report shows when the check is done, the batch id and the
 * upload button when this is (whichever comes later gates the upload).
 */
async function hashFile(entry) {
  const h = entry.hash;
  try {
    const { sha256, batchId } = await hasher.request('hash', { file: entry.file }, {
      onId: (id) => { h.requestId = id; },
      onProgress: (p) => {
        h.bytes = p.bytes;
        if (entry.report) renderUpload(entry);
      },
    });
    Object.assign(h, { phase: 'done', sha256, batchId });
  } catch (e) {
    Object.assign(h, { phase: e.cancelled ? 'cancelled' : 'error', message: e.message });
  } finally {
    h.requestId = null;
  }
  renderHash(entry);
}

/** Stops what the workers still do for `entry`: its check and its hash. */
function stop(entry) {
  if (entry.requestId !== null) engine.cancel(entry.requestId);
  if (entry.hash.requestId !== null) hasher.cancel(entry.hash.requestId);
}

function describe(entry) {
  const r = entry.report;
  if (r.refused) return `${entry.file.name}: refused. ${entry.refusal}`;
  const parts = [`${entry.file.name}: ${plural(r.rows_read, 'row')} read, ${count.format(r.rows_staged)} ready to send`];
  if (r.rows_rejected) parts.push(`${count.format(r.rows_rejected)} rejected`);
  if (r.warnings) parts.push(plural(r.warnings, 'warning'));
  return `${parts.join(', ')}.`;
}

// ------------------------------------------------------------------ cards

function createCard(entry) {
  const node = elements.template.content.firstElementChild.cloneNode(true);
  const q = (role) => node.querySelector(`[data-role="${role}"]`);
  const card = {
    root: node,
    name: node.querySelector('.file-name'),
    size: node.querySelector('.file-size'),
    badge: q('badge'),
    cancel: q('cancel'),
    remove: q('remove'),
    readProgressWrap: q('read-progress'),
    readProgress: node.querySelector('[data-testid="read-progress"]'),
    readText: q('read-text'),
    error: q('error'),
    body: q('body'),
    summary: node.querySelector('[data-testid="summary"]'),
    filter: q('filter'),
    severity: q('severity'),
    download: q('download-rejects'),
    issueNote: q('issue-note'),
    issueRows: q('issue-rows'),
    previewRows: q('preview-rows'),
    charts: node.querySelector('[data-testid="charts"]'),
    confirmWrap: q('confirm-wrap'),
    confirm: q('confirm'),
    confirmText: q('confirm-text'),
    upload: q('upload'),
    uploadProgress: q('upload-progress'),
    uploadStatus: node.querySelector('[data-testid="upload-status"]'),
  };
  node.dataset.fileName = entry.file.name;
  card.name.textContent = entry.file.name;
  card.size.textContent = formatBytes(entry.file.size);
  const idBase = `f${entry.key}`;
  card.filter.id = `${idBase}-filter`;
  card.severity.id = `${idBase}-severity`;
  card.confirm.id = `${idBase}-confirm`;

  card.cancel.addEventListener('click', () => stop(entry));
  card.remove.addEventListener('click', () => {
    stop(entry);
    state.files = state.files.filter((f) => f !== entry);
    elements.cards.delete(entry.key);
    node.remove();
    announce(`${entry.file.name} removed from the list.`);
  });
  card.filter.addEventListener('input', () => {
    entry.filter.text = card.filter.value;
    renderIssues(entry);
  });
  card.severity.addEventListener('change', () => {
    entry.filter.severity = card.severity.value;
    renderIssues(entry);
  });
  card.download.addEventListener('click', () => downloadRejects(entry));
  card.confirm.addEventListener('change', () => {
    entry.sendValidOnly = card.confirm.checked;
    renderUpload(entry);
  });
  card.upload.addEventListener('click', () => upload(entry));

  elements.cards.set(entry.key, card);
  elements.fileList.append(node);
  renderCard(entry);
}

function renderProgress(entry) {
  const card = elements.cards.get(entry.key);
  if (!card) return;
  card.root.dataset.phase = entry.phase;
  const total = entry.file.size;
  const pct = total ? (entry.bytes / total) * 100 : 100;
  card.readProgress.value = pct;
  card.readProgress.setAttribute('aria-valuetext', `${Math.floor(pct)}%`);
  card.readText.textContent = `${formatBytes(entry.bytes)} of ${formatBytes(total)} · ${count.format(entry.rows)} rows`;
  card.badge.textContent = entry.phase === 'queued' ? 'waiting' : 'reading…';
}

/** The card's badge: what the check found, then, once uploaded, that the
 *  file is staged (the warehouse loads it later, at its next load). */
function renderBadge(entry) {
  const card = elements.cards.get(entry.key);
  const r = entry.report;
  if (!card || !r) return;
  const u = entry.upload;
  let text;
  let cls;
  if (u && u.phase === 'done') {
    text = u.response && u.response.duplicate ? 'already staged' : 'staged';
    cls = 'good';
  } else {
    text = r.refused ? 'refused' : r.errors ? `${plural(r.rows_rejected, 'row')} rejected` : r.warnings ? 'ready, with warnings' : 'ready';
    cls = r.refused || r.errors ? 'bad' : r.warnings ? 'warn' : 'good';
  }
  card.badge.textContent = text;
  card.badge.className = `badge ${cls}`;
}

function renderCard(entry) {
  const card = elements.cards.get(entry.key);
  if (!card) return;
  const busy = entry.phase === 'queued' || entry.phase === 'reading';
  card.root.dataset.phase = entry.phase;
  card.root.dataset.hash = entry.hash.phase;
  card.cancel.hidden = !busy;
  card.readProgressWrap.hidden = !busy;
  card.error.hidden = !entry.error;
  card.error.textContent = entry.error;
  if (busy) {
    renderProgress(entry);
    card.body.hidden = true;
    return;
  }
  const r = entry.report;
  if (!r) {
    card.badge.textContent = entry.phase === 'cancelled' ? 'stopped' : 'not checked';
    card.badge.className = 'badge bad';
    card.body.hidden = true;
    return;
  }
  renderBadge(entry);
  card.body.hidden = false;
  renderSummary(entry);
  renderIssues(entry);
  renderPreview(entry);
  renderCharts(entry);
  renderUpload(entry);
}

/** The hash arrived (or failed): the batch id in the summary, the upload button. */
function renderHash(entry) {
  const card = elements.cards.get(entry.key);
  if (!card) return;
  card.root.dataset.hash = entry.hash.phase;
  if (entry.report) {
    renderSummary(entry);
    renderUpload(entry);
  }
}

/** The batch id as the summary shows it, or what became of its hash. */
function batchIdText(h) {
  if (h.phase === 'done') return h.batchId;
  if (h.phase === 'pending') return 'computing…';
  if (h.phase === 'cancelled') return 'not computed (stopped)';
  return `not known: ${h.message}`;
}

function renderSummary(entry) {
  const r = entry.report;
  const s = r.summary;
  const card = elements.cards.get(entry.key);
  const items = [
    ['Format', formatName(r.format), 'format'],
    ['Rows read', count.format(r.rows_read), 'rows-read'],
    ['Ready to send', count.format(r.rows_staged), 'rows-staged'],
    ['Rejected', count.format(r.rows_rejected), 'rows-rejected'],
    ['Warnings', count.format(r.warnings), 'warnings'],
    ['Revenue', money.format(s.revenue_pence / 100), 'revenue'],
    ['Cash / card', `${count.format(s.cash_transactions)} / ${count.format(s.card_transactions)}`, 'payments'],
    ['From', s.first_at ? `${s.first_at} to ${s.last_at}` : '—', 'period'],
    ['Batch id', batchIdText(entry.hash), 'batch-id'],
  ];
  if (r.header_lines) items.splice(4, 0, ['Header lines skipped', count.format(r.header_lines), 'header-lines']);
  const dl = document.createElement('dl');
  for (const [label, value, key] of items) {
    const div = document.createElement('div');
    div.dataset.field = key;
    const dt = document.createElement('dt');
    dt.textContent = label;
    const dd = document.createElement('dd');
    dd.textContent = value;
    div.append(dt, dd);
    dl.append(div);
  }
  card.summary.replaceChildren(dl);
  if (r.refused) {
    const p = document.createElement('p');
    p.className = 'error';
    p.textContent = `This file cannot be sent: ${entry.refusal}`;
    card.summary.append(p);
  }
}

function formatName(format) {
  return { current: 'Current till export', 'legacy-2020': 'Legacy 2020 export', unknown: 'Unknown (no data rows)' }[format] || format;
}

function matches(issue, text, severity) {
  if (severity !== 'all' && issue.severity !== severity) return false;
  if (!text) return true;
  const t = text.toLowerCase();
  return String(issue.line) === t || issue.code.includes(t) || issue.message.toLowerCase().includes(t);
}

function renderIssues(entry) {
  const r = entry.report;
  const card = elements.cards.get(entry.key);
  const text = entry.filter.text.trim();
  const severity = entry.filter.severity;
  const filtered = !!text || severity !== 'all';
  const shown = [];
  let matching = 0;
  for (const issue of r.issues) {
    if (!matches(issue, text, severity)) continue;
    matching += 1;
    if (shown.length < ISSUES_SHOWN) shown.push(issue);
  }
  const frag = document.createDocumentFragment();
  for (const issue of shown) {
    const tr = document.createElement('tr');
    tr.className = issue.severity;
    tr.dataset.line = String(issue.line);
    tr.dataset.code = issue.code;
    for (const v of [issue.line || 'file', issue.column ?? '', issue.severity === 'error' ? 'error' : 'warning', issue.message]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    frag.append(tr);
  }
  card.issueRows.replaceChildren(frag);
  let note;
  if (r.issues_total === 0) {
    note = 'No problems found.';
  } else if (!filtered) {
    const rest = r.issues_total - shown.length;
    note = `${plural(r.issues_total, 'problem')} (${plural(r.errors, 'error')}: ${r.errors === 1 ? 'that row is' : 'those rows are'} not sent; ${plural(r.warnings, 'warning')}: ${r.warnings === 1 ? 'that row is' : 'those rows are'} sent).`;
    if (rest > 0) note += ` Showing the first ${count.format(shown.length)}; ${count.format(rest)} more not shown.`;
  } else {
    note = `${count.format(matching)} of ${count.format(r.issues.length)} listed problems match`;
    if (matching > shown.length) note += `; showing the first ${count.format(shown.length)}`;
    if (r.issues_omitted) note += ` (${count.format(r.issues_omitted)} more problems were counted but not listed)`;
    note += '.';
  }
  card.issueNote.textContent = note;
  card.root.querySelector('.issue-controls').hidden = r.issues_total === 0;
  card.issueRows.closest('.table-wrap').hidden = shown.length === 0;
  card.download.hidden = r.rows_rejected === 0;
  card.download.disabled = entry.downloading;
}

function renderPreview(entry) {
  const r = entry.report;
  const card = elements.cards.get(entry.key);
  const frag = document.createDocumentFragment();
  for (const row of r.preview) {
    const tr = document.createElement('tr');
    for (const v of [row.line, row.occurred_at, row.store, row.payment_method, row.total_price, row.items.join(', ')]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    frag.append(tr);
  }
  card.previewRows.replaceChildren(frag);
  card.previewRows.closest('.preview').hidden = r.preview.length === 0;
}

function renderCharts(entry) {
  const s = entry.report.summary;
  const card = elements.cards.get(entry.key);
  card.charts.replaceChildren();
  card.charts.hidden = s.transactions === 0;
  if (s.transactions === 0) return;
  const id = `f${entry.key}`;
  const figure = (title, svg) => {
    const f = document.createElement('figure');
    const cap = document.createElement('figcaption');
    cap.textContent = title;
    f.append(cap, svg);
    return f;
  };
  card.charts.append(
    figure('Top products (units sold)', horizontalBars({
      title: 'Top products by units sold', idPrefix: `${id}-products`,
      data: s.top_products.map((p) => ({ label: p.product, value: p.quantity, text: `${count.format(p.quantity)} · ${money.format(p.revenue_pence / 100)}` })),
    })),
    figure('Revenue by store', horizontalBars({
      title: 'Revenue by store', idPrefix: `${id}-stores`,
      data: s.by_store.slice(0, 12).map((b) => ({ label: b.store, value: b.revenue_pence, text: money.format(b.revenue_pence / 100) })),
    })),
    figure('Sales by hour of the day', columns({
      title: 'Transactions by hour of the day', idPrefix: `${id}-hours`,
      data: s.by_hour.map((h) => ({ label: `${String(h.hour).padStart(2, '0')}:00`, value: h.transactions, text: `${count.format(h.transactions)} sales, ${money.format(h.revenue_pence / 100)}` })),
    })),
  );
}

// ---------------------------------------------------------------- rejects

async function downloadRejects(entry) {
  entry.downloading = true;
  renderIssues(entry);
  announce(`Preparing the rejected rows of ${entry.file.name}…`);
  try {
    const card = elements.cards.get(entry.key);
    const { csv, rows } = await engine.request('rejects', { file: entry.file }, {
      onProgress: (p) => {
        if (card) card.download.textContent = `Preparing the rejected rows… ${Math.floor((p.bytes / Math.max(1, p.total)) * 100)}%`;
      },
    });
    const url = URL.createObjectURL(csv);
    const a = document.createElement('a');
    a.href = url;
    a.download = `${entry.file.name.replace(/\.csv$/i, '')}.rejected.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    announce(`${plural(rows, 'rejected row')} of ${entry.file.name} downloaded (names and card numbers are not in it).`);
  } catch (e) {
    announce(`Could not prepare the rejected rows of ${entry.file.name}: ${e.message}`);
  } finally {
    entry.downloading = false;
    const card = elements.cards.get(entry.key);
    if (card) card.download.textContent = 'Download rejected rows (CSV)';
    renderIssues(entry);
  }
}

// ----------------------------------------------------------------- upload

function uploadBlocker(entry) {
  const r = entry.report;
  if (!r) return 'The file has not been checked.';
  if (r.refused) return 'This file cannot be sent.';
  if (r.rows_staged === 0) return 'No row of this file can be sent.';
  if (r.errors && !entry.sendValidOnly) return 'Some rows have errors: fix them and drop the file again, or tick the box to send the valid rows only.';
  const h = entry.hash;
  if (h.phase === 'pending') {
    return `Computing the checksum the upload needs… ${Math.floor((h.bytes / Math.max(1, entry.file.size)) * 100)}%`;
  }
  if (h.phase !== 'done') return `The file's checksum could not be computed: ${h.message}. Remove the file and drop it again.`;
  if (entry.upload.phase === 'sending') return 'Uploading…';
  return '';
}

function renderUpload(entry) {
  const r = entry.report;
  const card = elements.cards.get(entry.key);
  if (!card || !r) return; // removed from the list, or not checked yet
  const showConfirm = !r.refused && r.errors > 0 && r.rows_staged > 0;
  card.confirmWrap.hidden = !showConfirm;
  card.confirmText.textContent = `Send the ${plural(r.rows_staged, 'valid row')} only; the ${plural(r.rows_rejected, 'rejected row')} ${r.rows_rejected === 1 ? 'goes' : 'go'} to the reject file (without names or card numbers), not into the tables.`;
  const blocker = uploadBlocker(entry);
  card.upload.disabled = !!blocker;
  card.upload.title = blocker;
  const u = entry.upload;
  const busy = u.phase === 'sending';
  card.uploadProgress.hidden = !busy;
  if (busy && u.total) card.uploadProgress.value = (u.loaded / u.total) * 100;
  card.uploadStatus.dataset.phase = u.phase;
  card.uploadStatus.className = `upload-status ${u.phase === 'error' ? 'error' : u.phase === 'done' ? 'ok' : ''}`;
  if (u.phase === 'idle') {
    card.uploadStatus.textContent = blocker && blocker !== 'Uploading…' ? blocker : '';
  } else if (u.phase !== 'done') {
    card.uploadStatus.textContent = u.message;
  } else {
    renderUploadResult(card.uploadStatus, u);
  }
  renderBadge(entry);
}

function renderUploadResult(container, u) {
  const res = u.response || {};
  const rep = res.report || {};
  const keys = Array.isArray(res.keys) ? res.keys : [];
  const p = document.createElement('p');
  p.textContent = res.duplicate
    ? `Already staged earlier (batch ${rep.batch_id || ''}): nothing was written again.`
    : `Staged in the bucket: ${plural(rep.rows_staged ?? 0, 'row')}, ${count.format(rep.rows_rejected ?? 0)} rejected, in ${plural(keys.length, 'file')} (batch ${rep.batch_id || ''}).`;
  const next = document.createElement('span');
  next.dataset.testid = 'load-expectation';
  next.textContent = ` ${loadSentence(res)}`;
  p.append(next);
  container.replaceChildren(p);
  if (keys.length) {
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Objects written';
    const ul = document.createElement('ul');
    for (const k of keys) {
      const li = document.createElement('li');
      li.textContent = k;
      ul.append(li);
    }
    details.append(summary, ul);
    container.append(details);
  }
}

/** About how long, in minutes, for people ("about 1 minute", "about 11 minutes"). */
function aboutMinutes(seconds) {
  return `about ${plural(Math.max(1, Math.ceil(seconds / 60)), 'minute')}`;
}

/**
 * What happens next to an uploaded batch, from the upload service's answer: its state
 * when it is known (a duplicate), else the service's own expectation (`load`: from
 * its queue and sweep settings), else the old words (a service that does not load).
 */
function loadSentence(res) {
  if (res.state === 'loaded') return `It is in the warehouse (loaded ${localTime(res.loaded_at)}).`;
  if (res.state === 'failed') return `The warehouse could not load it: ${res.reason}. The other batches keep loading.`;
  const load = res.load;
  if (load && load.warehouse && load.expected_within_seconds) {
    return `The warehouse loads it within ${aboutMinutes(load.expected_within_seconds)}` +
      (load.at_latest_seconds ? ` (at the latest ${aboutMinutes(load.at_latest_seconds)}, if the first try is missed)` : '') +
      '; "List staged batches" below shows when it is loaded.';
  }
  return 'The warehouse loads them at its next load.';
}

function setUpload(entry, patch) {
  Object.assign(entry.upload, patch);
  renderUpload(entry);
}

async function upload(entry) {
  const base = workerBase();
  if (!base || !state.settings.token) {
    setUpload(entry, { phase: 'error', message: 'Set the upload service address and the branch token in "Upload settings" first.' });
    announce(entry.upload.message);
    elements.workerUrl.focus();
    return;
  }
  let url;
  try {
    url = new URL(`${base}/v1/uploads/${encodeURIComponent(entry.file.name)}`);
  } catch {
    setUpload(entry, { phase: 'error', message: `"${state.settings.workerUrl}" is not a web address (expected e.g. http://127.0.0.1:8787).` });
    return;
  }
  // The button is enabled only once hashFile has the SHA-256: no second pass here.
  const { sha256 } = entry.hash;
  setUpload(entry, { phase: 'sending', loaded: 0, total: entry.file.size, message: `Sending to ${url.origin}…`, response: null });
  const outcome = await put(url, entry.file, sha256, (loaded, total) => setUpload(entry, {
    loaded, total, message: `Sending… ${Math.floor((loaded / Math.max(1, total)) * 100)}%`,
  }));
  if (outcome.ok) {
    setUpload(entry, { phase: 'done', response: outcome.body, message: '' });
    announce(`${entry.file.name}: uploaded.`);
    if (outcome.body?.load?.warehouse) followLoading(outcome.body.load.at_latest_seconds);
  } else {
    setUpload(entry, { phase: 'error', message: outcome.message });
    announce(`${entry.file.name}: ${outcome.message}`);
  }
}

/**
 * PUT with XMLHttpRequest, the only browser API that reports upload
 * progress for a File body without streaming-request support.
 */
function put(url, file, sha256, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url.href);
    xhr.setRequestHeader('Authorization', `Bearer ${state.settings.token}`);
    xhr.setRequestHeader('Content-Type', 'text/csv');
    xhr.setRequestHeader('X-Content-SHA256', sha256);
    xhr.responseType = 'text';
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: handled below */ }
      if (xhr.status === 200 && body) resolve({ ok: true, body });
      else resolve({ ok: false, message: httpMessage(xhr.status, body, xhr.responseText) });
    };
    xhr.onerror = () => resolve({
      ok: false,
      message: `Could not reach the upload service at ${url.origin}. Is it running, and is the address right? Nothing was sent. (No answer: the service is down, the address is wrong, or it does not allow this page's origin.)`,
    });
    xhr.ontimeout = () => resolve({ ok: false, message: `The upload service at ${url.origin} did not answer in time. Nothing is known to be staged; try again.` });
    xhr.onabort = () => resolve({ ok: false, message: 'Upload stopped.' });
    xhr.send(file);
  });
}

function httpMessage(status, body, text) {
  const detail = body && (body.message || body.error) ? `: ${body.message || body.error}` : '';
  switch (status) {
    case 400: return `The upload service refused the file${detail}.`;
    case 401: return `The branch token was not accepted (missing, mistyped or expired)${detail}. Ask head office for a new one.`;
    // One sentence: the worker's message already says what was found and that nothing was staged.
    // The worker's sentence is the core's (src/token.rs), whole: a misspelt store
    // of this very branch is not "another branch".
    case 403: return body?.message
      ? `${body.message[0].toUpperCase()}${body.message.slice(1)}.`
      : 'This token is for another branch: the file holds rows of a store the token does not cover, so nothing was staged.';
    case 413: return `The file is too big for the upload service${detail}.`;
    case 415: return `The upload service did not take this as a CSV file${detail}.`;
    case 428: return `The upload service wants the file's checksum${detail}.`;
    case 502: return `The upload service could not store the file in the staging bucket${detail}. Nothing was staged; try again later.`;
    default: {
      const snippet = !detail && text ? `: ${text.slice(0, 200)}` : detail;
      return `The upload service answered ${status || 'nothing'}${snippet}.`;
    }
  }
}

// ---------------------------------------------------------- staged batches

elements.listBatches.addEventListener('click', () => listBatches());

/**
 * Lists the branch's staged batches with their states; returns them (null on a
 * failure). `quiet`: a refresh (while following a load) keeps the table shown
 * until the answer is there.
 */
async function listBatches(quiet = false) {
  const base = workerBase();
  const show = (message, cls = '') => {
    const p = document.createElement('p');
    p.className = cls;
    p.textContent = message;
    elements.batches.replaceChildren(p);
  };
  if (!base || !state.settings.token) {
    show('Set the upload service address and the branch token first.', 'error');
    return;
  }
  if (!quiet || !elements.batches.querySelector('table')) show('Asking the upload service…');
  let res;
  try {
    res = await fetch(`${base}/v1/batches`, { headers: { Authorization: `Bearer ${state.settings.token}` } });
  } catch {
    show(`Could not reach the upload service at ${base}. Is it running, and is the address right?`, 'error');
    return;
  }
  let body = null;
  const text = await res.text();
  try { body = JSON.parse(text); } catch { /* handled below */ }
  if (!res.ok) {
    show(res.status === 404 ? 'This upload service does not list staged batches.' : httpMessage(res.status, body, text), 'error');
    return;
  }
  const batches = Array.isArray(body) ? body : body && Array.isArray(body.batches) ? body.batches : null;
  if (!batches) {
    show('The upload service answered, but not with a list of batches.', 'error');
    return;
  }
  if (!batches.length) {
    show('Nothing staged yet.');
    return;
  }
  const columns = [
    ['staged_at', 'Staged at', localTime],
    ['source', 'File', (v) => v],
    ['rows_staged', 'Rows staged', (v) => count.format(v)],
    ['rows_rejected', 'Rejected', (v) => count.format(v)],
    ['revenue_pence', 'Revenue', (v) => money.format(v / 100)],
    ['batch_id', 'Batch id', (v) => v],
    ['state', 'State', (v, b) => stateText(b, body.load)],
  ].filter(([key]) => batches.some((b) => b && typeof b === 'object' && b[key] !== undefined && b[key] !== null));
  const table = document.createElement('table');
  const caption = document.createElement('caption');
  caption.textContent = body.bucket
    ? `${plural(batches.length, 'batch', 'batches')} of ${body.store || 'this branch'} in ${body.bucket}/${body.prefix || ''}${body.truncated ? ' (the newest; there are more)' : ''}`
    : plural(batches.length, 'batch', 'batches');
  const head = document.createElement('tr');
  for (const [, label] of columns.length ? columns : [[null, 'Batch']]) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = label;
    head.append(th);
  }
  const thead = document.createElement('thead');
  thead.append(head);
  const tbody = document.createElement('tbody');
  for (const b of batches) {
    const tr = document.createElement('tr');
    tr.dataset.testid = 'batch-row';
    if (b && typeof b.batch_id === 'string') tr.dataset.batchId = b.batch_id;
    if (!columns.length) {
      const td = document.createElement('td');
      td.textContent = typeof b === 'string' ? b : JSON.stringify(b);
      tr.append(td);
    }
    for (const [key, , format] of columns) {
      const td = document.createElement('td');
      td.textContent = b[key] === undefined || b[key] === null ? '' : String(format(b[key], b));
      if (key === 'state') {
        td.dataset.testid = 'batch-state';
        td.dataset.state = String(b.state);
        td.className = `state state-${b.state}`;
      }
      tr.append(td);
    }
    tbody.append(tr);
  }
  table.append(caption, thead, tbody);
  const wrap = document.createElement('div');
  wrap.className = 'table-wrap';
  wrap.append(table);
  elements.batches.replaceChildren(wrap);
  return batches;
}

/**
 * A batch's state in words: waiting (where the service loads; else just staged),
 * loaded (when), or not loaded (why, as the loader said it).
 */
function stateText(b, load) {
  if (b.state === 'loaded') return b.loaded_at ? `Loaded ${localTime(b.loaded_at)}` : 'Loaded';
  if (b.state === 'failed') return `Not loaded: ${b.reason || 'the warehouse refused it'}`;
  if (b.state === 'staged') return load && load.warehouse ? 'Waiting to load' : 'Staged';
  return String(b.state);
}

/** Seconds between two refreshes of the list while an upload waits to be loaded. */
const FOLLOW_EVERY_SECONDS = 5;
let following = null;

/**
 * After an upload to a service that loads, the list of staged batches refreshes
 * itself until no batch is waiting, for at most the service's `at_latest_seconds`.
 */
function followLoading(atLatestSeconds) {
  clearTimeout(following?.timer);
  const until = Date.now() + Math.max(60, atLatestSeconds || 0) * 1000;
  const tick = async () => {
    const batches = await listBatches(true).catch(() => null);
    const waiting = Array.isArray(batches) && batches.some((b) => b && b.state === 'staged');
    if (waiting && Date.now() < until) following = { timer: setTimeout(tick, FOLLOW_EVERY_SECONDS * 1000) };
    else following = null;
  };
  following = { timer: setTimeout(tick, 0) };
}

// ------------------------------------------------------------------ utils

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

loadSettings();
engine.request('version', {}).then(
  ({ version }) => { document.documentElement.dataset.engine = version; },
  (e) => announce(`The checker could not start: ${e.message}`),
);
