//! Invariants over generated input: no panic on any bytes, conservation,
//! chunking never changes the result, no name or card number in any output,
//! determinism.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use cafe_etl::{Config, Pipeline, StagedBatch};
use common::gunzip;
use proptest::prelude::*;

fn outputs(staged: &StagedBatch) -> String {
    let mut s = staged.report.to_json();
    for (p, b) in &staged.files {
        s.push_str(&if p.ends_with(".gz") {
            gunzip(b)
        } else {
            String::from_utf8(b.clone()).unwrap()
        });
    }
    s
}

fn assert_conserved(r: &cafe_etl::Report) {
    assert_eq!(r.rows_read, r.rows_staged + r.rows_rejected);
    assert_eq!(r.tables.transactions, r.rows_staged);
    assert_eq!(r.tables.rejects, r.rows_rejected);
    assert_eq!(r.issues_total, r.errors + r.warnings);
    assert_eq!(r.issues.len() as u64 + r.issues_omitted, r.issues_total);
}

/// A row that may or may not be valid, built from pieces that look like the
/// real thing, with a name and a card number to look for afterwards.
fn row() -> impl Strategy<Value = (String, String, String)> {
    let name = "[A-Z][a-z]{2,6} Qx[a-z]{6,10}";
    let card = "[3-6][0-9]{15}";
    let ts = prop_oneof![
        Just("25/08/2021 09:00".to_string()),
        Just("2020-10-01 09:00:00".to_string()),
        Just("9/5/2023 9:00".to_string()),
        "[0-9/: -]{0,20}",
    ];
    let item = prop_oneof![
        Just("Large Latte - 2.45"),
        Just("Regular Flavoured iced latte - Hazelnut - 2.75"),
        Just("Large Speciality Tea - Fruit - 1.60"),
        Just("Regular Mocha - 2.x"),
    ];
    let basket = prop::collection::vec(item, 0..4).prop_map(|v| v.join(", "));
    let total = prop_oneof![Just("2.45"), Just("5.2"), Just("4"), Just("-1"), Just("")];
    let pay = prop_oneof![Just("CASH"), Just("CARD"), Just("card"), Just("cheque")];
    let extra = prop_oneof![Just(""), Just(",extra"), Just(",\"open")];
    (name, card, ts, basket, total, pay, extra).prop_map(
        |(name, card, ts, basket, total, pay, extra)| {
            let line = format!("{ts},Leeds,{name},\"{basket}\",{total},{pay},{card}{extra}");
            (line, name, card)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_panic_and_conservation_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let r = cafe_etl::check(&bytes, "x.csv", &Config::default());
        assert_conserved(&r);
        let staged = cafe_etl::transform(&bytes, "x.csv", &Config::default()).unwrap();
        assert_eq!(staged.report, r);
    }

    #[test]
    fn no_panic_on_csv_like_bytes(s in "[0-9a-zA-Z,\"\r\n /:.\\-é\u{feff}]{0,600}") {
        let r = cafe_etl::check(s.as_bytes(), "leeds_25-08-2021_09-00-00.csv", &Config::default());
        assert_conserved(&r);
    }

    #[test]
    fn chunking_never_changes_the_result(rows in prop::collection::vec(row(), 1..12), cuts in prop::collection::vec(0usize..5000, 0..8), crlf in any::<bool>()) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let input: String = rows.iter().map(|(l, _, _)| format!("{l}{nl}")).collect();
        let bytes = input.as_bytes();
        let whole = cafe_etl::transform(bytes, "leeds.csv", &Config::default()).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort();
        let id = cafe_etl::batch_id(bytes);
        let mut p = Pipeline::transform(Config::default(), "leeds.csv", &id, |_| Vec::new()).unwrap();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            p.push(&bytes[at..c]).unwrap();
            at = c;
        }
        let f = p.finish().unwrap();
        prop_assert_eq!(&f.report, &whole.report);
        if !whole.report.refused {
            for (i, t) in f.tables.unwrap().into_iter().enumerate() {
                prop_assert!(t == whole.files[i].1);
            }
        }
    }

    #[test]
    fn no_name_or_card_number_in_any_output(rows in prop::collection::vec(row(), 1..15), secret in prop::option::of("[a-z]{8}")) {
        let input: String = rows.iter().map(|(l, _, _)| format!("{l}\n")).collect();
        let mut config = Config::default();
        config.clean.customer_key_secret = secret;
        let staged = cafe_etl::transform(input.as_bytes(), "leeds.csv", &config).unwrap();
        assert_conserved(&staged.report);
        let text = outputs(&staged);
        for (_, name, card) in &rows {
            let surname = name.split(' ').nth(1).unwrap();
            prop_assert!(!text.contains(surname), "a name reached the output");
            prop_assert!(!text.contains(card.as_str()), "a card number reached the output");
        }
    }

    #[test]
    fn determinism_and_independence_from_personal_data(rows in prop::collection::vec(row(), 1..10)) {
        let input: String = rows.iter().map(|(l, _, _)| format!("{l}\n")).collect();
        let a = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
        let b = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
        prop_assert!(a.files == b.files);
        // Other names and cards: other bytes, so another batch id, but the
        // same ids and rows otherwise.
        let mut other = input.clone();
        for (_, name, card) in &rows {
            other = other.replace(name.as_str(), "Someone Else").replace(card.as_str(), "4111111111111111");
        }
        let c = cafe_etl::transform(other.as_bytes(), "leeds.csv", &Config::default()).unwrap();
        prop_assert_eq!(a.report.refused, c.report.refused);
        if a.report.refused {
            return Ok(());
        }
        let strip = |s: &StagedBatch, t: cafe_etl::Table| -> Vec<Vec<String>> {
            common::table(s, t).into_iter().map(|mut r| { if t == cafe_etl::Table::Transactions { r.pop(); } r }).collect()
        };
        for t in [cafe_etl::Table::Stores, cafe_etl::Table::Products, cafe_etl::Table::Transactions, cafe_etl::Table::BasketItems] {
            prop_assert_eq!(strip(&a, t), strip(&c, t));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    /// The index's keys read back to what was written, and their order is the
    /// layout's promise: a store's newest first, the commits oldest first.
    #[test]
    fn index_keys_read_back_and_sort(
        slug in "[a-z0-9]+(-[a-z0-9]+)*",
        id in "[0-9a-f]{32}",
        a in 0u64..=9_999_999_999_999,
        b in 0u64..=9_999_999_999_999,
    ) {
        use cafe_etl::stage::{index_keys, parse_index_key, IndexKind};
        let (ka, kb) = (index_keys(&slug, &id, a).unwrap(), index_keys(&slug, &id, b).unwrap());
        for (key, kind) in [(&ka.store, IndexKind::Store), (&ka.commit, IndexKind::Commit)] {
            let e = parse_index_key(key).unwrap();
            prop_assert_eq!((e.kind, e.batch_id.as_str(), e.unix_ms), (kind, id.as_str(), a));
        }
        prop_assert_eq!(ka.store.cmp(&kb.store), b.cmp(&a));
        prop_assert_eq!(ka.commit.cmp(&kb.commit), a.cmp(&b));
    }
}
