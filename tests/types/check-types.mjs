// Checks the TypeScript declarations of the wasm module (pkg/cafe_etl.d.ts,
// written from the `typescript_custom_section` of src/wasm.rs) against the
// module itself: runs the exports under Node on the real exports of
// tests/data/real and on refused files, bad tokens and misuse, writes what
// they returned as TypeScript object literals typed with the declared
// interfaces (a missing field, a field too many or a value outside a union is
// a compile error), adds the calls the worker and the page make, and runs
// `tsc --noEmit --strict` on it. A few `@ts-expect-error` lines prove the
// check can fail. The string unions are compared with the Rust enums by
// tests/types.rs. Run by scripts/test-wasm; needs `scripts/build-wasm` first
// and `npm ci` (typescript, pinned in package.json).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = path.join(root, 'pkg');
const core = await import(path.join(pkg, 'cafe_etl.js'));
core.initSync({ module: fs.readFileSync(path.join(pkg, 'cafe_etl_bg.wasm')) });

/** A JSON value as a TypeScript literal, Uint8Arrays as `bytes`. */
function literal(v) {
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return `[${v.map(literal).join(', ')}]`;
  if (v && typeof v === 'object') {
    return `{ ${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${literal(x)}`).join(', ')} }`;
  }
  return JSON.stringify(v);
}

function thrown(f) {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to throw');
}

const lines = [];
const typed = (type, value) => lines.push(`checks.push(((): ${type} => (${literal(value)}))());`);

// Reports and results of real exports, checked and staged, whole and in pieces.
const realDir = path.join(root, 'tests', 'data', 'real');
const real = fs.readdirSync(realDir).filter((f) => f.endsWith('.csv')).sort();
if (real.length === 0) throw new Error(`no real export in ${realDir}`);
for (const name of real) {
  const bytes = fs.readFileSync(path.join(realDir, name));
  typed('Report', core.check(bytes, { source: name }));
  typed('TransformResult', core.transform(bytes, { source: name }));
  const p = new core.Pipeline({ source: name, batchId: core.batchId(bytes), rejectsCsv: true });
  p.push(bytes);
  typed('StagedFiles', p.drain());
  typed('TransformResult', p.finish());
  p.free();
}
// The stream reader: a real ReadableStream, the callbacks' arguments typed.
{
  const bytes = fs.readFileSync(path.join(realDir, real[0]));
  const stream = () => new ReadableStream({
    start(c) {
      for (let i = 0; i < bytes.length; i += 4096) c.enqueue(bytes.subarray(i, i + 4096));
      c.close();
    },
  });
  const whole = new core.BatchHasher();
  whole.update(bytes);
  const sha256 = whole.sha256();
  whole.free();
  const p = new core.Pipeline({ source: real[0], batchId: core.batchIdOfSha256(sha256), sha256 });
  const progress = [];
  const drained = [];
  await p.pushStream(stream(), {
    onProgress: (x) => progress.push(x), progressEveryBytes: 8192, onDrain: (f) => { drained.push(f); }, drainEveryBytes: 0,
  });
  if (progress.length === 0 || drained.length === 0) throw new Error('pushStream called no callback');
  for (const x of progress) typed('StreamProgress', x);
  for (const f of drained.slice(0, 3)) typed('StagedFiles', f);
  typed('TransformResult', p.finish());
  p.free();
  const h = new core.BatchHasher();
  const hashed = [];
  await h.hashStream(stream(), { onProgress: (x) => hashed.push(x), progressEveryBytes: 0 });
  typed('HashProgress', hashed[hashed.length - 1]);
  h.free();
  // Its own codes: a stream that cannot be read, input while reading.
  const q = new core.Pipeline({});
  const failing = new ReadableStream({ pull(c) { c.error(new DOMException('x', 'NotReadableError')); } });
  const read = await q.pushStream(failing, {}).then(() => null, (e) => e);
  const busy = (() => {
    const r = new core.Pipeline({});
    const pending = r.pushStream(stream(), {});
    const e = thrown(() => r.push(bytes));
    pending.then(() => r.free());
    return e;
  })();
  for (const e of [read, busy]) {
    if (!(e instanceof Error) || typeof e.code !== 'string') throw new Error(`not a CodedError: ${e}`);
    lines.push(`checks.push(${literal(e.code)} satisfies CodedError["code"]);`);
  }
  q.free();
}
// Refused files.
for (const [name, bytes] of [['empty.csv', new Uint8Array(0)], ['doc.csv', new TextEncoder().encode('%PDF-1.4 x')]]) {
  const r = core.transform(bytes, { source: name });
  typed('TransformResult', r);
  typed('string | null', core.refusalMessage(r.report));
}
// The staging layout.
const id = '0123456789abcdef0123456789abcdef';
typed('string[]', core.stagingKeys(id));
typed('string | null', core.batchIdOfSha256('ab'.repeat(32)));
typed('string | null', core.batchIdOfSha256('x'));
typed('boolean', core.isBatchId(id));
typed('TableName[]', core.stagingTables());
for (const k of [...core.stagingKeys(id), 'index/x']) typed('TableName | "marker" | null', core.stagedObject(k));
// The batch index beside it.
const index = core.indexKeys('leeds', id, 1_796_155_503_123);
typed('IndexKeys', index);
typed('string', core.storeIndexPrefix('leeds'));
typed('string', core.commitsDayPrefix(1_796_155_503_123));
for (const k of [index.store, index.commit, 'index/x']) typed('IndexEntry | null', core.indexEntry(k));
// Tokens and the access settings.
const access = { uploadSecret: 'a-test-secret-of-some-length', storeNames: 'leeds=Leeds' };
const now = 1_800_000_000;
const token = core.mintToken(access.uploadSecret, 'leeds', now + 3600);
typed('TokenClaims', core.verifyToken(token, access, now));
// Every error the exports throw: an Error with a declared code.
const errors = [
  thrown(() => new core.Pipeline({ batchId: 'nope' })),
  thrown(() => core.check(new Uint8Array(0), { maxIssues: 'many' })),
  thrown(() => core.verifyToken(token, access, now + 7200)),
  thrown(() => core.verifyToken('x', access, now)),
  thrown(() => core.checkStores(access, 'leeds', [{ store: 'Leeds Central', transactions: 1, revenue_pence: 1 }])),
  thrown(() => core.checkAccessConfig({ tokenMaxDays: 'many' })),
  thrown(() => core.indexKeys('leeds', id, -1)),
  (() => {
    const p = new core.Pipeline({ batchId: id });
    p.push(new TextEncoder().encode('25/08/2021 09:00,Leeds,A,Large Latte - 2.45,2.45,CASH,\n'));
    const e = thrown(() => p.finish());
    lines.push(`checks.push(${literal(thrown(() => p.push(new Uint8Array(1))).code)} satisfies CodedError["code"]);`);
    return e;
  })(),
];
for (const e of errors) {
  if (!(e instanceof Error) || typeof e.code !== 'string') throw new Error(`not a CodedError: ${e}`);
  lines.push(`checks.push(${literal(e.code)} satisfies CodedError["code"]);`);
}

const source = `// Generated by tests/types/check-types.mjs: real results of the wasm module.
import type {
  AccessConfig, CodedError, HashProgress, HashStreamOptions, IndexEntry, IndexKeys, PipelineOptions, PushStreamOptions,
  Report, StagedFiles, StreamProgress, TableName, TokenClaims, TransformResult,
} from ${JSON.stringify(path.join(pkg, 'cafe_etl.js'))};
import {
  BatchHasher, Pipeline, batchId, batchIdOfSha256, check, checkAccessConfig, checkStores, customerKeyId, mintToken,
  commitsDayPrefix, indexEntry, indexKeys, isBatchId, refusalMessage, stagedObject, stagingKeys, stagingTables, storeIndexPrefix,
  storeSlug, transform, verifyToken, version,
} from ${JSON.stringify(path.join(pkg, 'cafe_etl.js'))};

const bytes = new Uint8Array(0);
const checks: unknown[] = [];
${lines.join('\n')}

/** The calls the edge worker and the page make, with the declared types. */
export function calls(opts: PipelineOptions, access: AccessConfig, e: unknown): void {
  const report: Report = check(bytes, opts);
  const result: TransformResult = transform(bytes, opts);
  const p = new Pipeline(opts);
  p.push(bytes);
  const rows: number = p.rowsRead + p.bytes;
  const drained: StagedFiles = p.drain();
  const csv: Uint8Array = p.takeRejectsCsv();
  const reading: Promise<void> = p.pushStream(new Blob([bytes]).stream(), {
    onProgress: (x: StreamProgress) => { checks.push(x.bytes + x.rows); },
    progressEveryBytes: 0,
    onDrain: async (files: StagedFiles) => { checks.push(files); },
    drainEveryBytes: 1 << 20,
    signal: new AbortController().signal,
  } satisfies PushStreamOptions);
  const done: TransformResult = p.finish();
  const rest: Uint8Array | undefined = done.rejectsCsv;
  p.free();
  const h = new BatchHasher();
  h.update(bytes);
  const hashing: Promise<void> = h.hashStream(new Blob([bytes]).stream(), {
    onProgress: (x: HashProgress) => { checks.push(x.bytes); },
  } satisfies HashStreamOptions);
  const hex: string = h.sha256() + h.finish() + batchId(bytes) + version() + storeSlug('Leeds') + customerKeyId(null);
  const keys: string[] = stagingKeys(report.batch_id);
  const id: string | null = batchIdOfSha256(hex);
  const ok: boolean = isBatchId(id ?? '');
  const tables: TableName[] = stagingTables();
  const what: TableName | 'marker' | null = stagedObject(keys[0]);
  const index: IndexKeys = indexKeys(storeSlug('Leeds'), report.batch_id, Date.now());
  const entry: IndexEntry | null = indexEntry(index.store);
  const folders: string = storeIndexPrefix('leeds') + commitsDayPrefix(entry?.unixMs ?? 0);
  const why: string | null = refusalMessage(result.report);
  checkAccessConfig(access);
  checkStores(access, 'leeds', report.summary.by_store);
  const claims: TokenClaims = verifyToken(mintToken('s', 'leeds', 1, 'k1'), access, 0);
  const code: string = (e as CodedError).code;
  checks.push(rows, drained, csv, rest, hex, tables, what, why, claims, code, ok, folders, reading, hashing);
}

// The check can fail: each line below must be a type error.
const one: Report = ${literal(core.check(new Uint8Array(0), { source: 'x.csv' }))};
// @ts-expect-error a field the Rust report has not
checks.push(((): Report => ({ ...one, not_a_field: 1 }))());
// @ts-expect-error an issue code the core has not
checks.push(((): Report['issues'][number]['code'] => 'no_such_code')());
// @ts-expect-error a report without its batch id
checks.push(((): Report => ({ ...one, batch_id: undefined }))());
// @ts-expect-error a drain callback is given the staged files, not a number
checks.push({ onDrain: (files: number) => files } satisfies PushStreamOptions);
// @ts-expect-error an error code the core has not
checks.push('no_such_error' satisfies CodedError['code']);
`;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cafe-types-'));
const file = path.join(dir, 'real-results.ts');
fs.writeFileSync(file, source);
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (!fs.existsSync(tsc)) throw new Error('typescript is not installed: npm ci');
// Strict, and no ambient @types: only the declarations under test.
fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
  compilerOptions: {
    noEmit: true,
    strict: true,
    exactOptionalPropertyTypes: true,
    target: 'ES2022',
    module: 'ES2022',
    moduleResolution: 'bundler',
    lib: ['ESNext', 'DOM'],
    types: [],
  },
  files: [file],
}));
const run = spawnSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' });
process.stdout.write(run.stdout);
process.stderr.write(run.stderr);
if (run.status !== 0) {
  console.error(`check-types: tsc found the declarations and the module's results apart (source kept in ${file})`);
  process.exit(1);
}
fs.rmSync(dir, { recursive: true, force: true });
console.error(`check-types: pkg/cafe_etl.d.ts matches ${lines.length} real results of ${real.length} real exports (tsc --noEmit --strict)`);
