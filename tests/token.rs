//! Branch upload tokens, the slug rule and the store rule against the
//! vectors shared with the worker (`worker/test/token.test.js` reads the same
//! file through the wasm module), and the `cafe-etl token` subcommand.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

use cafe_etl::token::{mint, store_slug, Secrets, StoreNames, Verifier};
use serde_json::Value;
use std::process::Command;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/token-vectors.json");
    let text = std::fs::read_to_string(path).expect("tests/data/token-vectors.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn cases<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    let list = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is a list"));
    assert!(!list.is_empty(), "{key} has cases");
    list
}

fn verifier(v: &Value) -> Verifier {
    Verifier::from_vars(
        v["uploadSecrets"].as_str(),
        None,
        v["revokedBefore"].as_str(),
        None,
    )
    .unwrap()
}

#[test]
fn slugs_match_the_vectors() {
    let v = vectors();
    let mut lookalikes = 0;
    for case in cases(&v, "slugs") {
        let name = case["name"].as_str().unwrap();
        assert_eq!(store_slug(name), case["slug"].as_str().unwrap(), "{name:?}");
        lookalikes += usize::from(!name.is_ascii());
    }
    assert!(lookalikes >= 10, "{lookalikes} non-ASCII names");
}

#[test]
fn minting_matches_the_vectors() {
    let v = vectors();
    let secrets = Secrets::parse(v["uploadSecrets"].as_str().unwrap()).unwrap();
    for case in cases(&v, "mint") {
        let kid = case["kid"].as_str().unwrap();
        let store = case["store"].as_str().unwrap();
        let expires = case["expires"].as_u64().unwrap();
        assert_eq!(
            mint(kid, secrets.get(kid).unwrap(), store, expires).unwrap(),
            case["token"].as_str().unwrap(),
            "{kid} {store} {expires}"
        );
    }
}

#[test]
fn verifying_matches_the_vectors() {
    let v = vectors();
    let verifier = verifier(&v);
    let now = v["now"].as_u64().unwrap();
    let mut reasons = std::collections::BTreeMap::new();
    for case in cases(&v, "verify") {
        let note = case["note"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        match verifier.verify(token, now) {
            Ok(claims) => {
                assert!(case["valid"].as_bool().unwrap(), "{note}: accepted");
                assert_eq!(claims.kid, case["kid"].as_str().unwrap(), "{note}");
                assert_eq!(claims.store, case["store"].as_str().unwrap(), "{note}");
                assert_eq!(claims.expires, case["expires"].as_u64().unwrap(), "{note}");
                *reasons.entry("valid").or_insert(0) += 1;
            }
            Err(e) => {
                assert!(!case["valid"].as_bool().unwrap(), "{note}: refused ({e})");
                assert_eq!(e.reason(), case["reason"].as_str().unwrap(), "{note}: {e}");
                *reasons.entry(e.reason()).or_insert(0) += 1;
            }
        }
    }
    for r in [
        "valid",
        "malformed",
        "unknown_kid",
        "bad_signature",
        "expired",
        "too_long",
        "revoked",
    ] {
        assert!(
            reasons.get(r).copied().unwrap_or(0) >= 2,
            "{r}: {reasons:?}"
        );
    }
}

#[test]
fn store_rule_matches_the_vectors() {
    let v = vectors();
    let names = StoreNames::parse(v["storeNames"].as_str().unwrap()).unwrap();
    for case in cases(&v, "stores") {
        let note = case["note"].as_str().unwrap();
        let slug = case["slug"].as_str().unwrap();
        let rows: Vec<(&str, u64)> = case["by_store"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["store"].as_str().unwrap(),
                    r["transactions"].as_u64().unwrap(),
                )
            })
            .collect();
        match names.check(slug, rows.iter().copied()) {
            Ok(()) => assert!(case["ok"].as_bool().unwrap(), "{note}: accepted"),
            Err(e) => {
                let text = e.to_string();
                assert!(!case["ok"].as_bool().unwrap(), "{note}: refused ({text})");
                assert_eq!(e.code(), case["code"].as_str().unwrap(), "{note}: {text}");
                if let Some(says) = case["says"].as_str() {
                    assert!(text.contains(says), "{note}: {text}");
                }
                for never in case["never"].as_array().into_iter().flatten() {
                    assert!(!text.contains(never.as_str().unwrap()), "{note}: {text}");
                }
                // One sentence: no full stop inside, none at the end either
                // (the worker and the page put it in their own sentence).
                assert!(!text.contains(". ") && !text.ends_with('.'), "{text}");
            }
        }
    }
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cafe-etl"));
    cmd.arg("token")
        .args(args)
        .env_remove("UPLOAD_SECRET")
        .env_remove("UPLOAD_SECRETS")
        .env_remove("REVOKED_BEFORE")
        .env_remove("TOKEN_MAX_DAYS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cafe-etl")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_subcommand_mints_with_the_current_key_id() {
    let v = vectors();
    let spec = v["uploadSecrets"].as_str().unwrap();
    let secrets = Secrets::parse(spec).unwrap();
    let expires = now() + 86_400;
    // A store name as the exports spell it is turned into its slug; the
    // secrets come from UPLOAD_SECRETS, the worker's variable, by default.
    let out = cli(
        &[
            "--store",
            "London Piccadilly",
            "--expires",
            &expires.to_string(),
        ],
        &[("UPLOAD_SECRETS", spec)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    let (kid, secret) = secrets.current();
    assert_eq!(kid, "k2");
    assert_eq!(
        token.trim(),
        mint("k2", secret, "london-piccadilly", expires).unwrap()
    );
    let note = text(&out.stderr);
    assert!(
        note.contains("london-piccadilly=London Piccadilly") && note.contains("key id k2"),
        "{note}"
    );
    // No secret appears in what the command prints.
    for s in spec.split(',').map(|e| e.split_once('=').unwrap().1) {
        assert!(!token.contains(s) && !note.contains(s));
    }
}

#[test]
fn the_subcommand_mints_with_a_ttl_and_verifies() {
    let secret = "a-secret-for-this-test-only-0123456789";
    let out = cli(
        &[
            "--store",
            "leeds",
            "--ttl",
            "2h",
            "--secret-env",
            "TOKEN_TEST_SECRET",
        ],
        &[("TOKEN_TEST_SECRET", secret)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    assert!(
        token.starts_with("k1.leeds."),
        "a lone secret is key id k1: {token}"
    );
    let now = now();
    let v = Verifier::from_vars(None, Some(secret), None, None).unwrap();
    let claims = v.verify(&token, now).unwrap();
    assert_eq!(claims.store, "leeds");
    assert!(
        (now + 7_190..=now + 7_210).contains(&claims.expires),
        "{}",
        claims.expires
    );

    // The legacy variable alone, and the key id given to --secret-env.
    let ok = cli(&["--verify", &token], &[("UPLOAD_SECRET", secret)]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).starts_with("valid: store leeds, key id k1"));
    let other_kid = cli(
        &["--store", "leeds", "--secret-env", "S", "--kid", "k7"],
        &[("S", secret)],
    );
    assert!(text(&other_kid.stdout).starts_with("k7.leeds."));
    // After a rotation, the previous key id still verifies; a secret
    // rotated out does not.
    let rotated = format!("k2=another-secret-for-this-test-0123,k1={secret}");
    let ok = cli(&["--verify", &token], &[("UPLOAD_SECRETS", &rotated)]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let gone = "k3=third-secret-for-this-test-01234,k2=another-secret-for-this-test-0123";
    let bad = cli(&["--verify", &token], &[("UPLOAD_SECRETS", gone)]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("key id k1 is not one"));
    // Revoked for its store, as the worker would say.
    let revoked = cli(
        &["--verify", &token],
        &[
            ("UPLOAD_SECRET", secret),
            ("REVOKED_BEFORE", &format!("york=1,leeds={}", now + 86_400)),
        ],
    );
    assert_eq!(revoked.status.code(), Some(1));
    assert!(text(&revoked.stderr).contains("revoked"));
    let bad = cli(
        &["--verify", &token],
        &[("UPLOAD_SECRET", "some-other-secret-0123456789")],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("signature does not match"));
}

#[test]
fn the_subcommand_refuses_a_missing_or_short_secret_and_bad_arguments() {
    let out = cli(&["--store", "leeds"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("UPLOAD_SECRETS and UPLOAD_SECRET are not set"));
    let out = cli(
        &["--store", "leeds", "--secret-env", "TOKEN_TEST_SECRET"],
        &[("TOKEN_TEST_SECRET", "short")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("at least 16"));
    let out = cli(
        &["--store", "leeds"],
        &[("UPLOAD_SECRETS", "k1=0123456789abcdef0123,k2=x")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("UPLOAD_SECRETS entry 2 (k2) must hold at least 16"));
    let env = [(
        "TOKEN_TEST_SECRET",
        "a-secret-for-this-test-only-0123456789",
    )];
    let far = (now() + 401 * 86_400).to_string();
    for args in [
        &["--store", "leeds", "--ttl", "30"][..],
        &["--store", "leeds", "--ttl", "401d"],
        &["--store", "leeds", "--expires", &far],
        &["--store", "!!!"],
        &["--store", "\u{212A}"],
        &["--store", "leeds", "--expires", "1000"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--secret-env", "TOKEN_TEST_SECRET"]);
        let out = cli(&args, &env);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

mod properties {
    use cafe_etl::token::{
        is_slug, mint, store_slug, Secrets, Verifier, DEFAULT_MAX_LIFETIME, MAX_SLUG_LEN,
    };
    use proptest::prelude::*;

    const NOW: u64 = 1_767_225_600;

    fn verifier() -> Verifier {
        Verifier::new(Secrets::parse("k2=0123456789abcdef0123,k1=fedcba9876543210fedc").unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any name, Unicode look-alikes included, slugs to ASCII that is a
        /// slug (or nothing) and slugs to itself again.
        #[test]
        fn slugs_are_ascii_and_stable(name in "\\PC{0,80}") {
            let s = store_slug(&name);
            prop_assert!(s.is_ascii());
            // A slug unless empty or too long (which minting refuses).
            prop_assert_eq!(is_slug(&s), !s.is_empty() && s.len() <= MAX_SLUG_LEN, "{:?}", s);
            prop_assert_eq!(store_slug(&s), s.clone());
            // Only ASCII letters and digits of the name survive, in order.
            let kept: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
            prop_assert_eq!(s.replace('-', ""), kept.to_ascii_lowercase());
        }

        /// No text makes the verifier panic, and only a minted token passes.
        #[test]
        fn arbitrary_text_is_refused(token in "[a-z0-9._-]{0,120}|\\PC{0,120}") {
            prop_assert!(verifier().verify(&token, NOW).is_err());
        }

        /// Minted within the cap with a held key id: valid, with its claims;
        /// one character changed anywhere: refused.
        #[test]
        fn minted_tokens_verify_and_any_change_is_refused(
            store in "[a-z0-9]{1,10}(-[a-z0-9]{1,10}){0,3}",
            life in 1u64..=DEFAULT_MAX_LIFETIME,
            previous in any::<bool>(),
            at in any::<prop::sample::Index>(),
        ) {
            let (kid, secret) = if previous { ("k1", "fedcba9876543210fedc") } else { ("k2", "0123456789abcdef0123") };
            let t = mint(kid, secret.as_bytes(), &store, NOW + life).unwrap();
            let c = verifier().verify(&t, NOW).unwrap();
            prop_assert_eq!((c.kid.as_str(), c.store.as_str(), c.expires), (kid, store.as_str(), NOW + life));
            let i = at.index(t.len());
            let mut bytes = t.into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(verifier().verify(&changed, NOW).is_err(), "{changed}");
        }
    }
}
