//! Branch upload tokens against the vectors shared with the worker's
//! JavaScript check (`worker/test/token.test.js` reads the same file), and
//! the `cafe-etl token` subcommand.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

use cafe_etl::token::{mint, store_slug, verify};
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

#[test]
fn slugs_match_the_vectors() {
    let v = vectors();
    for case in cases(&v, "slugs") {
        let name = case["name"].as_str().unwrap();
        assert_eq!(store_slug(name), case["slug"].as_str().unwrap(), "{name:?}");
    }
}

#[test]
fn minting_matches_the_vectors() {
    let v = vectors();
    let secret = v["secret"].as_str().unwrap().as_bytes();
    for case in cases(&v, "mint") {
        let store = case["store"].as_str().unwrap();
        let expires = case["expires"].as_u64().unwrap();
        assert_eq!(
            mint(secret, store, expires).unwrap(),
            case["token"].as_str().unwrap(),
            "{store} {expires}"
        );
    }
}

#[test]
fn verifying_matches_the_vectors() {
    let v = vectors();
    let secret = v["secret"].as_str().unwrap().as_bytes();
    let now = v["now"].as_u64().unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for case in cases(&v, "verify") {
        let note = case["note"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        match verify(secret, token, now) {
            Ok(claims) => {
                assert!(case["valid"].as_bool().unwrap(), "{note}: accepted");
                assert_eq!(claims.store, case["store"].as_str().unwrap(), "{note}");
                assert_eq!(claims.expires, case["expires"].as_u64().unwrap(), "{note}");
                valid += 1;
            }
            Err(e) => {
                assert!(!case["valid"].as_bool().unwrap(), "{note}: refused ({e})");
                assert_eq!(e.reason(), case["reason"].as_str().unwrap(), "{note}: {e}");
                invalid += 1;
            }
        }
    }
    assert!(
        valid >= 2 && invalid >= 10,
        "{valid} valid, {invalid} invalid"
    );
}

fn cli(args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cafe-etl"));
    cmd.arg("token").args(args).env_remove("UPLOAD_SECRET");
    if let Some(s) = secret {
        cmd.env("TOKEN_TEST_SECRET", s);
    }
    cmd.output().expect("run cafe-etl")
}

#[test]
fn the_subcommand_mints_what_the_vectors_say() {
    let v = vectors();
    let secret = v["secret"].as_str().unwrap();
    let case = &cases(&v, "mint")[2];
    let expires = case["expires"].as_u64().unwrap().to_string();
    // A store name as the exports spell it is turned into its slug.
    let out = cli(
        &[
            "--store",
            "London Piccadilly",
            "--expires",
            &expires,
            "--secret-env",
            "TOKEN_TEST_SECRET",
        ],
        Some(secret),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim(), case["token"].as_str().unwrap());
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains("london-piccadilly") && note.contains("2100-01-01 00:00:00 UTC"),
        "{note}"
    );
    // The secret never appears in what the command prints.
    assert!(!token.contains(secret) && !note.contains(secret));
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
        Some(secret),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = verify(secret.as_bytes(), &token, now).unwrap();
    assert_eq!(claims.store, "leeds");
    assert!(
        (now + 7_190..=now + 7_210).contains(&claims.expires),
        "{}",
        claims.expires
    );

    let ok = cli(
        &["--verify", &token, "--secret-env", "TOKEN_TEST_SECRET"],
        Some(secret),
    );
    assert_eq!(ok.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("valid: store leeds"));
    let bad = cli(
        &["--verify", &token, "--secret-env", "TOKEN_TEST_SECRET"],
        Some("some-other-secret-0123456789"),
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("signature does not match"));
}

#[test]
fn the_subcommand_refuses_a_missing_or_short_secret_and_bad_arguments() {
    let out = cli(&["--store", "leeds"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UPLOAD_SECRET is not set"));
    let out = cli(
        &["--store", "leeds", "--secret-env", "TOKEN_TEST_SECRET"],
        Some("short"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
    let s = Some("a-secret-for-this-test-only-0123456789");
    for args in [
        &[
            "--store",
            "leeds",
            "--ttl",
            "30",
            "--secret-env",
            "TOKEN_TEST_SECRET",
        ][..],
        &["--store", "!!!", "--secret-env", "TOKEN_TEST_SECRET"],
        &[
            "--store",
            "leeds",
            "--expires",
            "1000",
            "--secret-env",
            "TOKEN_TEST_SECRET",
        ],
    ] {
        let out = cli(args, s);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
