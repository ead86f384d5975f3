// Branch tokens, the slug rule and the store rule: the core's (src/token.rs), which the
// worker calls through the wasm module, against the vectors shared with the Rust tests
// (tests/token.rs reads the same file); then the worker on workerd with two secrets, a
// revoked store and the registered store names, over HTTP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO, batchIdOf, realFiles, secret, startStack, upload, VENDORED_REAL } from './harness.js';
import * as core from '../../pkg/cafe_etl.js';
import { checkStores, verifyToken } from '../../pkg/cafe_etl.js';
import { mintToken, storeSlug } from '../src/lib.js';
import * as lib from '../src/lib.js';

const vectors = JSON.parse(fs.readFileSync(path.join(REPO, 'tests', 'data', 'token-vectors.json'), 'utf8'));
const access = { uploadSecrets: vectors.uploadSecrets, revokedBefore: vectors.revokedBefore, storeNames: vectors.storeNames };
const secretOf = (kid) => new Map(vectors.uploadSecrets.split(',').map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])).get(kid);

/** The error a core call throws: {code, message}. */
function thrown(f) {
  try {
    f();
  } catch (e) {
    return { code: e.code, message: e.message };
  }
  return null;
}

test('the worker has no JavaScript copy of the token or slug rules', () => {
  const dir = path.join(REPO, 'worker', 'src');
  const src = fs.readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.js')).map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('\n');
  assert.doesNotMatch(src, /crypto\.subtle\.(sign|verify|importKey)/, 'no HMAC in JavaScript');
  assert.doesNotMatch(src, /toLowerCase\(\)\s*\.replace\(\/\[\^a-z0-9\]/, 'no JavaScript slug');
  // Re-exported from the wasm module, not reimplemented: the very same functions.
  assert.equal(lib.storeSlug, core.storeSlug);
  assert.equal(lib.mintToken, core.mintToken);
  assert.ok(src.includes('verifyToken(m[1], cfg.access'), 'authenticate() asks the core');
  assert.ok(src.includes('checkStores(cfg.access, store'), 'the store rule is the core\'s');
});

test('store slugs match the shared vectors, Unicode look-alikes included', () => {
  let lookalikes = 0;
  for (const { name, slug, note } of vectors.slugs) {
    assert.equal(storeSlug(name), slug, note ?? JSON.stringify(name));
    if (/[^\x00-\x7f]/.test(name)) lookalikes++;
  }
  assert.ok(lookalikes >= 10, `${lookalikes} non-ASCII names`);
  // What JavaScript's own case mapping would have done: the Kelvin sign becomes k.
  assert.equal('\u212Aing'.toLowerCase(), 'king');
  assert.equal(storeSlug('\u212Aing'), 'ing');
});

test('minting matches the shared vectors', () => {
  assert.ok(vectors.mint.length > 2);
  for (const { kid, store, expires, token } of vectors.mint) {
    assert.equal(mintToken(secretOf(kid), store, expires, kid), token, `${kid} ${store} ${expires}`);
  }
  // Without a key id: k1, the key id of a lone UPLOAD_SECRET.
  assert.match(mintToken(secretOf('k1'), 'leeds', 2000), /^k1\.leeds\.2000\./);
  assert.equal(thrown(() => mintToken(secretOf('k1'), 'Isle of Wight', 2000)).code, 'malformed');
  assert.equal(thrown(() => mintToken(secretOf('k1'), 'leeds', 1.5)).code, 'malformed');
});

test('verifying matches the shared vectors: rotation, lifetime cap, revocation per store', () => {
  const reasons = {};
  for (const c of vectors.verify) {
    const got = thrown(() => verifyToken(c.token, access, vectors.now));
    if (c.valid) {
      assert.equal(got, null, `${c.note}: ${got?.message}`);
      assert.deepEqual({ ...verifyToken(c.token, access, vectors.now) }, { kid: c.kid, store: c.store, expires: c.expires }, c.note);
      reasons.valid = (reasons.valid ?? 0) + 1;
    } else {
      assert.ok(got, `${c.note}: accepted`);
      assert.equal(got.code, c.reason, `${c.note}: ${got.message}`);
      assert.ok(got.message.length > 10, c.note);
      reasons[c.reason] = (reasons[c.reason] ?? 0) + 1;
    }
  }
  for (const r of ['valid', 'malformed', 'unknown_kid', 'bad_signature', 'expired', 'too_long', 'revoked']) {
    assert.ok(reasons[r] >= 2, `${r}: ${JSON.stringify(reasons)}`);
  }
});

test('the store rule matches the shared vectors', () => {
  for (const c of vectors.stores) {
    const got = thrown(() => checkStores(access, c.slug, c.by_store));
    if (c.ok) {
      assert.equal(got, null, `${c.note}: ${got?.message}`);
      continue;
    }
    assert.equal(got?.code, c.code, `${c.note}: ${got?.message}`);
    if (c.says) assert.ok(got.message.includes(c.says), `${c.note}: ${got.message}`);
    for (const never of c.never ?? []) assert.ok(!got.message.includes(never), `${c.note}: ${got.message}`);
  }
});

test('bad access settings are refused by name, never showing a secret', () => {
  const cases = [
    [{}, /UPLOAD_SECRETS is not set/],
    [{ uploadSecret: 'short' }, /^UPLOAD_SECRET must hold at least 16 bytes$/],
    [{ uploadSecrets: 'k1=0123456789abcdef0123,k2=0123456789abcdef0124,k3=0123456789abcdef0125' }, /current and the previous one only/],
    [{ uploadSecrets: 'k1=0123456789abcdef0123', revokedBefore: 'leeds=last week' }, /REVOKED_BEFORE entry 1 \(leeds\)/],
    [{ uploadSecrets: 'k1=0123456789abcdef0123', tokenMaxDays: '0' }, /TOKEN_MAX_DAYS/],
    [{ uploadSecrets: 'k1=0123456789abcdef0123', storeNames: 'leeds=York' }, /STORE_NAMES entry 1: the name "York" has the slug "york", not leeds/],
  ];
  for (const [settings, message] of cases) {
    const env = Object.fromEntries(
      Object.entries({ UPLOAD_SECRETS: settings.uploadSecrets, UPLOAD_SECRET: settings.uploadSecret, REVOKED_BEFORE: settings.revokedBefore, TOKEN_MAX_DAYS: settings.tokenMaxDays, STORE_NAMES: settings.storeNames }).filter(([, v]) => v !== undefined),
    );
    assert.throws(() => lib.accessConfig(env), (e) => e instanceof lib.ConfigError && message.test(e.message) && !/0123456789abcdef/.test(e.message), JSON.stringify(settings));
    // The core calls refuse the same settings (a token check needs no store names).
    const call = settings.storeNames ? () => checkStores(settings, 'leeds', []) : () => verifyToken('k1.leeds.1.00', settings, 0);
    assert.equal(thrown(call)?.code, 'config', JSON.stringify(settings));
  }
});

// ---------------------------------------------------------------------------------------
// The worker over HTTP: two secrets (k2 current, k1 previous), leeds revoked up to a time,
// the registered store names of wrangler.toml.

const leedsFile = realFiles('current').find((f) => /^leeds_/.test(path.basename(f))) ?? path.join(VENDORED_REAL, 'leeds_01-01-2020_09-00-00.csv');

describe('the worker with rotated secrets, a revoked store and registered store names', () => {
  let stack;
  const k2 = secret();
  const k1 = secret();
  const now = () => Math.floor(Date.now() / 1000);
  const revokedUntil = now() + 7200;

  before(async () => {
    stack = await startStack({ UPLOAD_SECRETS: `k2=${k2},k1=${k1}`, REVOKED_BEFORE: `york=1,leeds=${revokedUntil}` });
  });
  after(async () => {
    await stack?.stop();
  });

  const list = (token) => fetch(`${stack.url}/v1/batches`, { headers: { authorization: `Bearer ${token}` } });

  test('the current and the previous key id are accepted, an unknown one is not', async () => {
    const later = now() + 3 * 3600;
    assert.equal((await list(mintToken(k2, 'chesterfield', later, 'k2'))).status, 200);
    assert.equal((await list(mintToken(k1, 'chesterfield', later, 'k1'))).status, 200);
    const gone = await list(mintToken(secret(), 'chesterfield', later, 'k0'));
    assert.equal(gone.status, 401);
    const body = await gone.json();
    assert.equal(body.reason, 'unknown_kid');
    assert.match(body.message, /key id k0/);
    // k1's secret under k2's key id: a bad signature.
    assert.equal((await (await list(mintToken(k1, 'chesterfield', later, 'k2'))).json()).reason, 'bad_signature');
  });

  test('a token living longer than the cap (400 days) is refused', async () => {
    const r = await list(mintToken(k2, 'chesterfield', now() + 401 * 86_400, 'k2'));
    assert.equal(r.status, 401);
    const body = await r.json();
    assert.equal(body.reason, 'too_long');
    assert.match(body.message, /more than the 400 days/);
    assert.equal((await list(mintToken(k2, 'chesterfield', now() + 399 * 86_400, 'k2'))).status, 200);
  });

  test("a store's revocation refuses its tokens expiring before the time, and no other store's", async () => {
    const lost = await list(mintToken(k2, 'leeds', revokedUntil, 'k2'));
    assert.equal(lost.status, 401);
    assert.equal((await lost.json()).reason, 'revoked');
    assert.equal((await list(mintToken(k1, 'leeds', revokedUntil - 60, 'k1'))).status, 401);
    // The branch's new token expires later; other stores' tokens are untouched.
    assert.equal((await list(mintToken(k2, 'leeds', revokedUntil + 1, 'k2'))).status, 200);
    assert.equal((await list(mintToken(k2, 'chesterfield', revokedUntil - 60, 'k2'))).status, 200);
  });

  test('rows spelling the branch otherwise than registered → 403 naming only that spelling, nothing staged', async () => {
    const text = fs.readFileSync(leedsFile, 'utf8');
    assert.ok(text.includes(',Leeds,'), 'a Leeds export');
    const token = mintToken(k2, 'leeds', revokedUntil + 600, 'k2');
    const keysBefore = await stack.s3.client.keys(stack.prefix);
    for (const spelling of ['LEEDS', 'Leeds!!', 'leeds']) {
      // One row spelt otherwise among rows spelt right.
      const bytes = Buffer.from(text.replace(',Leeds,', `,${spelling},`));
      const r = await upload(stack.url, token, path.basename(leedsFile), bytes);
      assert.equal(r.status, 403, `${spelling}: ${r.text}`);
      assert.equal(r.body.error, 'wrong_store');
      assert.equal(
        r.body.message,
        `nothing was staged because this file spells the store ${JSON.stringify(spelling)} on 1 row, where branch leeds is registered as "Leeds"`,
      );
      assert.equal(r.body.report, undefined, 'the report (with its rows) is not sent back');
      assert.equal(r.body.batch_id, await batchIdOf(bytes));
    }
    assert.deepEqual(await stack.s3.client.keys(stack.prefix), keysBefore, 'nothing reached the bucket');
    // The same file spelt as registered is staged.
    const ok = await upload(stack.url, token, path.basename(leedsFile), Buffer.from(text));
    assert.equal(ok.status, 200, ok.text);
  });

  test('a store with no registered name cannot upload', async () => {
    const text = fs.readFileSync(leedsFile, 'utf8').replaceAll(',Leeds,', ',Kirkstall,');
    const r = await upload(stack.url, mintToken(k2, 'kirkstall', now() + 3600, 'k2'), 'kirkstall_01-01-2026.csv', Buffer.from(text));
    assert.equal(r.status, 403, r.text);
    assert.equal(r.body.error, 'store_not_registered');
    assert.match(r.body.message, /branch kirkstall has no registered store name/);
  });
});
