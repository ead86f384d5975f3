// The worker's token check (WebCrypto) against the vectors shared with the Rust
// implementation (tests/token.rs reads the same file).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './harness.js';
import { mintToken, storeSlug, verifyToken } from '../src/lib.js';

const vectors = JSON.parse(fs.readFileSync(path.join(REPO, 'tests', 'data', 'token-vectors.json'), 'utf8'));

test('store slugs match the shared vectors', () => {
  assert.ok(vectors.slugs.length > 5);
  for (const { name, slug } of vectors.slugs) assert.equal(storeSlug(name), slug, JSON.stringify(name));
});

test('minting matches the shared vectors', async () => {
  assert.ok(vectors.mint.length > 2);
  for (const { store, expires, token } of vectors.mint) {
    assert.equal(await mintToken(vectors.secret, store, expires), token, `${store} ${expires}`);
  }
});

test('verifying matches the shared vectors', async () => {
  let valid = 0;
  let invalid = 0;
  for (const c of vectors.verify) {
    const got = await verifyToken(vectors.secret, c.token, vectors.now);
    if (c.valid) {
      assert.deepEqual(got, { ok: true, store: c.store, expires: c.expires }, c.note);
      valid++;
    } else {
      assert.equal(got.ok, false, c.note);
      assert.equal(got.reason, c.reason, `${c.note}: ${got.message}`);
      assert.ok(got.message.length > 10, c.note);
      invalid++;
    }
  }
  assert.ok(valid >= 2 && invalid >= 10, `${valid} valid, ${invalid} invalid`);
});

test('a token minted here verifies until it expires, and not under another secret', async () => {
  const t = await mintToken('a-secret-for-this-test-0123456789', 'isle-of-wight', 2000);
  assert.equal((await verifyToken('a-secret-for-this-test-0123456789', t, 1999)).ok, true);
  assert.equal((await verifyToken('a-secret-for-this-test-0123456789', t, 2000)).reason, 'expired');
  assert.equal((await verifyToken('another-secret-for-this-test-0123', t, 1999)).reason, 'bad_signature');
  await assert.rejects(mintToken('a-secret-for-this-test-0123456789', 'Isle of Wight', 2000));
});
