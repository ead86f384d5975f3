//! The TypeScript declarations of the wasm module (the
//! `typescript_custom_section` of src/wasm.rs, copied into
//! pkg/cafe_etl.d.ts) name exactly the values of the Rust enums they mirror.
//! The shapes of the objects are checked by `tsc --noEmit` against real
//! results of the module (tests/types/check-types.mjs, run by
//! scripts/test-wasm); the string unions are checked here, both ways, since a
//! real run may not produce every value.
#![cfg(not(target_arch = "wasm32"))]

use cafe_etl::stage::IndexKind;
use cafe_etl::token::{StoreRefusal, TokenError};
use cafe_etl::{Code, ErrorCode, Format, Severity, Table};
use std::collections::BTreeSet;

const WASM_RS: &str = include_str!("../src/wasm.rs");

/// The quoted members of `export type NAME = "a" | "b" ...;` in the declarations.
fn union(name: &str) -> BTreeSet<String> {
    let start = format!("export type {name} =");
    let at = WASM_RS
        .find(&start)
        .unwrap_or_else(|| panic!("no `{start}` in src/wasm.rs"));
    let body = &WASM_RS[at + start.len()..];
    let body = &body[..body.find(';').expect("a `;` ends the type")];
    let members: BTreeSet<String> = body
        .split('|')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    assert!(!members.is_empty(), "{name} has members");
    members
}

fn names<T: serde::Serialize>(values: impl IntoIterator<Item = T>) -> BTreeSet<String> {
    values
        .into_iter()
        .map(|v| {
            serde_json::to_value(v)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Every issue code. The match has no wildcard: a new variant does not
/// compile until it is listed here, and then it must be declared too.
fn all_issue_codes() -> Vec<Code> {
    let all = [
        Code::FieldCount,
        Code::BadTimestamp,
        Code::BadStore,
        Code::BadBasket,
        Code::BadPrice,
        Code::TotalMismatch,
        Code::BadPayment,
        Code::Encoding,
        Code::EmptyFile,
        Code::NotCsv,
        Code::RecordTooLong,
        Code::UnterminatedQuote,
        Code::DateMismatch,
        Code::LineBreakInField,
        Code::TooManyRejects,
    ];
    for c in all {
        match c {
            Code::FieldCount
            | Code::BadTimestamp
            | Code::BadStore
            | Code::BadBasket
            | Code::BadPrice
            | Code::TotalMismatch
            | Code::BadPayment
            | Code::Encoding
            | Code::EmptyFile
            | Code::NotCsv
            | Code::RecordTooLong
            | Code::UnterminatedQuote
            | Code::DateMismatch
            | Code::LineBreakInField
            | Code::TooManyRejects => {}
        }
    }
    all.to_vec()
}

/// Every token error's reason (a variant of each; new variants must be added
/// here, the match has no wildcard).
fn token_reasons() -> BTreeSet<String> {
    let all = [
        TokenError::Malformed("x"),
        TokenError::UnknownKid("k9".into()),
        TokenError::BadSignature,
        TokenError::Expired { expires: 1 },
        TokenError::TooLong {
            expires: 1,
            max_lifetime: 1,
        },
        TokenError::Revoked { before: 1 },
        TokenError::EmptySecret,
    ];
    for e in &all {
        match e {
            TokenError::Malformed(_)
            | TokenError::UnknownKid(_)
            | TokenError::BadSignature
            | TokenError::Expired { .. }
            | TokenError::TooLong { .. }
            | TokenError::Revoked { .. }
            | TokenError::EmptySecret => {}
        }
    }
    all.iter().map(|e| e.reason().to_string()).collect()
}

/// Every store rule's code (as above).
fn store_codes() -> BTreeSet<String> {
    let slug = || "leeds".to_string();
    let all = [
        StoreRefusal::Misspelt {
            slug: slug(),
            canonical: "Leeds".into(),
            found: "LEEDS".into(),
            rows: 1,
        },
        StoreRefusal::OtherStore {
            slug: slug(),
            rows: 1,
        },
        StoreRefusal::NotRegistered { slug: slug() },
    ];
    for e in &all {
        match e {
            StoreRefusal::Misspelt { .. }
            | StoreRefusal::OtherStore { .. }
            | StoreRefusal::NotRegistered { .. } => {}
        }
    }
    all.iter().map(|e| e.code().to_string()).collect()
}

#[test]
fn declared_unions_are_the_rust_enums() {
    let cases: [(&str, BTreeSet<String>); 8] = [
        ("TokenErrorCode", token_reasons()),
        ("StoreErrorCode", store_codes()),
        ("IssueCode", names(all_issue_codes())),
        ("ErrorCode", names(ErrorCode::ALL)),
        ("TableName", names(Table::ALL)),
        ("IndexKind", names([IndexKind::Store, IndexKind::Commit])),
        ("Severity", names([Severity::Error, Severity::Warning])),
        (
            "ReportFormat",
            names([Format::Current, Format::Legacy2020, Format::Unknown]),
        ),
    ];
    for (name, rust) in cases {
        assert_eq!(union(name), rust, "TypeScript {name} against the Rust enum");
    }
    // The names serde gives are the ones the code matches on.
    for c in ErrorCode::ALL {
        assert_eq!(names([c]), BTreeSet::from([c.as_str().to_string()]));
    }
    for c in all_issue_codes() {
        assert_eq!(names([c]), BTreeSet::from([c.as_str().to_string()]));
    }
}
