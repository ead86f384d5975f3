//! Every problem becomes an issue with its line, column, code and a message
//! saying what was found and what was expected; rows with errors go to the
//! reject file, nothing is lost.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use cafe_etl::{Severity, Table};
use common::*;

const GOOD: &str = "25/08/2021 09:00,Leeds,Ann Example,\"Large Latte - 2.45, Regular Mocha - 2.30\",4.75,CARD,4111111111111111";

#[test]
fn each_problem_has_its_code_column_and_message() {
    // (row, code, column, words the message must hold)
    let cases: &[(&str, &str, Option<u32>, &[&str])] = &[
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH", "field_count", None, &["found 6 fields", "expected 7"]),
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45, Regular Mocha - 2.30,4.75,CASH,", "field_count", None, &["found 8 fields", "double quotes"]),
        ("31/02/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,", "bad_timestamp", Some(1), &["\"31/02/2021 09:00\"", "dd/mm/yyyy HH:MM"]),
        ("yesterday,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,", "bad_timestamp", Some(1), &["[withheld: 9 characters that are not a date and time]"]),
        ("25/08/2021 09:00, ,Ann Example,Large Latte - 2.45,2.45,CASH,", "bad_store", Some(2), &["empty"]),
        ("25/08/2021 09:00,12345,Ann Example,Large Latte - 2.45,2.45,CASH,", "bad_store", Some(2), &["\"12345\""]),
        ("25/08/2021 09:00,=HYPERLINK(\"x\"),Ann Example,Large Latte - 2.45,2.45,CASH,", "bad_store", Some(2), &["spreadsheet formula"]),
        ("25/08/2021 09:00,Leeds,Ann Example,,0,CASH,", "bad_basket", Some(4), &["empty"]),
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte 2.45,2.45,CASH,", "bad_basket", Some(4), &["item 1", "Large Latte - 2.45"]),
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.4x,2.45,CASH,", "bad_price", Some(4), &["item 1", "[withheld: 4 characters that are not an amount]"]),
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,-2.45,CASH,", "bad_price", Some(5), &["\"-2.45\"", "no sign"]),
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.54,CASH,", "total_mismatch", Some(5), &["2.45", "2.54"]),
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CHEQUE,", "bad_payment", Some(6), &["[withheld: 6 characters that are not CASH or CARD]"]),
        ("25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,,", "bad_payment", Some(6), &["empty"]),
        ("2020-10-01 09:00:00,Isle of Wight,Ann Example,\"Large,Latte\",CASH,2.45,None", "bad_basket", Some(4), &["triplets"]),
        ("2020-10-01 09:00:00,Isle of Wight,Ann Example,\"Large,Latte,2.45\",CASH,2.55,None", "total_mismatch", Some(6), &["2.45", "2.55"]),
        ("2020-10-01 09:00:00,Isle of Wight,Ann Example,\"Large,Latte,2.45\",BITCOIN,2.45,None", "bad_payment", Some(5), &["[withheld: 7 characters that are not CASH or CARD]"]),
    ];
    for (row, code, column, words) in cases {
        let input = format!("{GOOD}\n{row}\n{GOOD}\n");
        let r = check(input.as_bytes(), "leeds.csv");
        assert_eq!(
            (r.rows_read, r.rows_staged, r.rows_rejected),
            (3, 2, 1),
            "{row}: {:?}",
            r.issues
        );
        let issue = &r.issues[0];
        assert_eq!(
            (issue.line, issue.code.as_str(), issue.column),
            (2, *code, *column),
            "{row}"
        );
        assert_eq!(issue.severity, Severity::Error);
        for w in *words {
            assert!(
                issue.message.contains(w),
                "{row}: {:?} lacks {w:?}",
                issue.message
            );
        }
        assert!(!issue.message.contains("Ann Example") && !issue.message.contains("4111"));
    }
}

#[test]
fn several_problems_in_one_row_are_all_listed() {
    let input = "32/13/2021 09:00,Leeds,Ann Example,Large Latte - x,2.45,CHEQUE,\n";
    let r = check(input.as_bytes(), "leeds.csv");
    let codes: Vec<_> = r.issues.iter().map(|i| i.code.as_str()).collect();
    assert_eq!(codes, vec!["bad_timestamp", "bad_price", "bad_payment"]);
    assert_eq!(r.rows_rejected, 1);
}

#[test]
fn lines_are_physical_lines_even_after_multi_line_fields_and_headers() {
    let input = format!("timestamp,store,name,basket,total,payment,card\n\n{GOOD}\n25/08/2021 09:00,Leeds,\"Ann\nExample\",Large Latte - 2.45,2.45,CASH,\n{GOOD}\n25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,9.99,CASH,\n");
    let r = check(input.as_bytes(), "leeds.csv");
    // A field over two lines is rejected (no till writes one: it means a
    // quote left open), and the lines after it keep their own numbers.
    assert_eq!(
        issue_codes(&r),
        vec![(4, "line_break_in_field"), (7, "total_mismatch")]
    );
    assert_eq!(r.issues[0].column, Some(3));
    assert_eq!(
        (r.header_lines, r.blank_lines, r.rows_read, r.rows_staged),
        (1, 1, 4, 2)
    );
}

#[test]
fn rejects_keep_the_row_without_personal_data() {
    let input = format!("{GOOD}\n25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.54,CARD,4111111111111111\n25/08/2021 09:00,Leeds,Bo Example,Large Latte - 2.45,2.45,CARD,4111111111111111,extra\n");
    let staged = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Default::default()).unwrap();
    assert_eq!(staged.report.rows_rejected, 2);
    assert_eq!(staged.report.tables.rejects, 2);
    let rejects = table(&staged, Table::Rejects);
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0][..3], ["2".to_string(), "total_mismatch".into(), "column 5: items add up to 2.45 but total_price is 2.54, expected them to match exactly".into()]);
    assert_eq!(
        rejects[0][3..],
        [
            "25/08/2021 09:00",
            "Leeds",
            "Large Latte - 2.45",
            "2.54",
            "CARD"
        ]
        .map(String::from)
    );
    // 8 fields: which one is the name cannot be told, so no free text is
    // kept; the timestamp, total and payment pass their content checks.
    assert_eq!(rejects[1][1], "field_count");
    assert_eq!(
        rejects[1][3..],
        [
            "25/08/2021 09:00",
            "[withheld]",
            "[withheld]",
            "2.45",
            "CARD"
        ]
        .map(String::from)
    );
    assert!(rejects[1][2].ends_with(
        "store and basket_items withheld: with 8 fields instead of 7 a comma is out of place, so no field can be told to be the customer name or not"
    ));
    let text = gunzip(&staged.files[Table::Rejects as usize].1);
    assert_no_personal_data(
        &text,
        &["Ann Example".into(), "Bo Example".into()],
        &["4111111111111111".into()],
        "rejects",
    );
    assert!(!text.contains("4111"));
}

#[test]
fn too_long_rows_and_open_quotes_are_rejected_not_fatal() {
    let mut input = format!("{GOOD}\n").into_bytes();
    input.extend(std::iter::repeat_n(b'x', 200_000));
    input.extend_from_slice(
        format!("\n{GOOD}\n25/08/2021 09:00,Leeds,Ann Example,\"Large Latte - 2.45").as_bytes(),
    );
    let r = check(&input, "leeds.csv");
    assert_eq!(
        issue_codes(&r),
        vec![
            (2, "record_too_long"),
            (4, "unterminated_quote"),
            (4, "field_count")
        ]
    );
    assert_eq!((r.rows_read, r.rows_staged, r.rows_rejected), (4, 2, 2));
}

#[test]
fn the_issue_list_is_capped_but_everything_is_counted() {
    let mut config = cafe_etl::Config::default();
    config.validate.max_issues = 5;
    let bad = "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.54,CASH,\n".repeat(20);
    let r = cafe_etl::check(bad.as_bytes(), "leeds.csv", &config);
    assert_eq!(r.issues.len(), 5);
    assert_eq!((r.issues_total, r.issues_omitted, r.errors), (20, 15, 20));
    assert_eq!(r.issue_counts["total_mismatch"], 20);
    assert_eq!(r.rows_rejected, 20);
}

/// The line a file of `good` valid rows then `junk` one-byte rows is read
/// up to, by the rule of `cafe_etl::GIVE_UP_BYTES_PER_REJECT`: the first row,
/// past `GIVE_UP_MIN_ROWS`, before which the file holds fewer than 128 bytes
/// per rejected row.
fn give_up_line(good: usize, junk: usize) -> Option<u64> {
    let good_len = GOOD.len() as u64 + 1;
    (1..=(good + junk) as u64).find(|&row| {
        let good_before = row.min(good as u64 + 1) - 1;
        let byte = good_before * good_len + (row - 1 - good_before) * 2;
        let rejected = row.saturating_sub(good as u64);
        row >= cafe_etl::GIVE_UP_MIN_ROWS && byte < rejected * cafe_etl::GIVE_UP_BYTES_PER_REJECT
    })
}

#[test]
fn a_file_of_many_small_rejected_rows_is_refused_and_read_no_further() {
    assert_eq!(cafe_etl::GIVE_UP_MIN_ROWS, 10_000);
    assert_eq!(cafe_etl::GIVE_UP_BYTES_PER_REJECT, 128);
    // (valid rows first, one-byte rows after them, refused?)
    let cases: &[(usize, usize, bool)] = &[
        (0, 30_000, true),
        (1_500, 30_000, true),
        (1_000, 8_000, false),
        // Rejected rows after real-sized ones: the file is big enough.
        (20_000, 10_000, false),
        // As many rejected as valid rows of 105 bytes: too many.
        (12_000, 12_000, true),
        (8_000, 20_000, true),
    ];
    for &(good, junk, refused) in cases {
        let mut input = format!("{GOOD}\n").repeat(good);
        input.push_str(&"a\n".repeat(junk));
        let what = format!("{good} valid rows, {junk} rejected");
        let r = check(input.as_bytes(), "leeds.csv");
        assert_eq!(r.rows_read, r.rows_staged + r.rows_rejected, "{what}");
        assert_eq!(r.bytes, input.len() as u64, "{what}: every byte is hashed");
        let stop = give_up_line(good, junk);
        assert_eq!(stop.is_some(), refused, "{what}");
        match stop {
            Some(line) => {
                assert!(r.refused, "{what}");
                let refusal = r.refusal().expect("a refusal issue");
                assert_eq!(
                    (refusal.line, refusal.code.as_str()),
                    (0, "too_many_rejects")
                );
                assert_eq!(r.issues[0], *refusal, "the refusal goes first");
                assert!(
                    refusal.message.starts_with(&format!(
                        "leeds.csv was read up to line {line} only: {} of its first {line} rows are rejected",
                        line - good as u64
                    )),
                    "{what}: {}",
                    refusal.message
                );
                assert_eq!(r.rows_read, line, "{what}: read no further");
                assert_eq!(r.issue_counts["field_count"], line - good as u64);
                let staged = cafe_etl::transform(
                    input.as_bytes(),
                    "leeds.csv",
                    &cafe_etl::Config::default(),
                )
                .unwrap();
                assert!(staged.files.is_empty(), "{what}: nothing staged");
                assert_eq!(staged.report, r);
            }
            None => {
                assert!(!r.refused, "{what}: {:?}", r.issues.first());
                assert_eq!((r.rows_staged, r.rows_rejected), (good as u64, junk as u64));
            }
        }
    }
}
