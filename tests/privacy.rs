//! No customer name or card number reaches any output: tables, rejects,
//! report, CLI output. The customer key is a keyed hash of the name.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use cafe_etl::{Config, Table};
use common::*;
use std::process::Command;

fn all_outputs(staged: &cafe_etl::StagedBatch) -> String {
    let mut text = String::new();
    for (path, bytes) in &staged.files {
        if path.ends_with(".gz") {
            text.push_str(&gunzip(bytes));
        } else {
            text.push_str(std::str::from_utf8(bytes).unwrap());
        }
    }
    text.push_str(&staged.report.to_json());
    text
}

#[test]
fn real_files_leave_no_name_and_no_card_number_anywhere() {
    for file in [
        "real/chesterfield_25-08-2021_09-00-00.csv",
        "real/2021-02-23-isle-of-wight.csv",
        "real/excel_chesterfield.csv",
        "real/isle-of-wight_2020-10-01.csv",
    ] {
        let bytes = read_data(file);
        let (names, cards) = personal_data(&bytes);
        assert!(
            names.len() > 100 && !cards.is_empty(),
            "{file}: the fixture has personal data to look for"
        );
        let mut config = Config::default();
        config.clean.customer_key_secret = Some("test secret".into());
        let staged = cafe_etl::transform(&bytes, file, &config).unwrap();
        assert_no_personal_data(&all_outputs(&staged), &names, &cards, file);
    }
}

#[test]
fn broken_rows_leave_no_personal_data_in_rejects_or_messages() {
    let rows = [
        "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.54,CARD,4111111111111111",
        "25/08/2021 09:00,Leeds,Bo Example,Large Latte - 2.45,2.45,CARD,5555555555554444,extra",
        "25/08/2021 09:00,Leeds,Cy Example,Large Latte - 2.45,CARD",
        "25/08/2021 09:00,Leeds,Di Example,Large Latte - 2.45,CARD,378282246310005",
        "Ed Example,Leeds,Ed Example,Large Latte - 2.45,2.45,CARD,6011111111111117",
        "25/08/2021 09:00,Leeds,Fay Example,\"Large Latte - 2.45",
    ];
    let input = rows.join("\n");
    let staged = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
    assert_eq!(staged.report.rows_rejected, rows.len() as u64);
    let text = all_outputs(&staged);
    let cards: Vec<String> = [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
    ]
    .map(String::from)
    .to_vec();
    let names: Vec<String> = [
        "Ann",
        "Bo Example",
        "Cy Example",
        "Di Example",
        "Ed Example",
        "Fay Example",
    ]
    .map(String::from)
    .to_vec();
    assert_no_personal_data(&text, &names, &cards, "rejects and report");
    // Ed Example stood in the timestamp column too: a field without the
    // shape of its column is withheld, only its length kept.
    assert!(text.contains("[withheld: 10 characters that do not look like a timestamp]"));
    let rejects = table(&staged, Table::Rejects);
    assert!(rejects.iter().all(|r| r.len() == 8));
}

#[test]
fn customer_key_is_hmac_of_the_normalised_name_and_empty_without_secret() {
    let input =
        "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n\
                 26/08/2021 09:00,Leeds, ann  EXAMPLE ,Large Latte - 2.45,2.45,CASH,\n\
                 26/08/2021 09:01,Leeds,Bo Example,Large Latte - 2.45,2.45,CASH,\n";
    let plain = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
    assert!(table(&plain, Table::Transactions)
        .iter()
        .all(|r| r[6].is_empty()));
    let mut config = Config::default();
    config.clean.customer_key_secret = Some("s3cret".into());
    let keyed = cafe_etl::transform(input.as_bytes(), "leeds.csv", &config).unwrap();
    let tx = table(&keyed, Table::Transactions);
    // The same customer on two days, whatever the spacing and case.
    assert_eq!(tx[0][6], tx[1][6]);
    assert_ne!(tx[0][6], tx[2][6]);
    // HMAC-SHA256("s3cret", "ann example"), from Python's hmac module.
    assert_eq!(
        tx[0][6],
        "c607f81ca3ceecdb23db0e1ccacb69a8fc1e916f65df0abee5a9c17ead452ee1"
    );
    let other = {
        let mut c = Config::default();
        c.clean.customer_key_secret = Some("another secret".into());
        cafe_etl::transform(input.as_bytes(), "leeds.csv", &c).unwrap()
    };
    assert_ne!(
        table(&other, Table::Transactions)[0][6],
        tx[0][6],
        "the key depends on the secret"
    );
    // Ids do not depend on the name or the secret.
    assert_eq!(
        table(&plain, Table::Transactions)
            .iter()
            .map(|r| &r[0])
            .collect::<Vec<_>>(),
        tx.iter().map(|r| &r[0]).collect::<Vec<_>>()
    );
    assert!(!all_outputs(&keyed).contains("s3cret"));
}

#[test]
fn the_cli_prints_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("leeds_25-08-2021_09-00-00.csv");
    std::fs::write(&bad, "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.54,CARD,4111111111111111\n25/08/2021 09:00,Leeds,Bo Example,4111111111111111\n").unwrap();
    let out = dir.path().join("out");
    for args in [
        vec!["check"],
        vec!["check", "--json"],
        vec!["transform", "--out", out.to_str().unwrap()],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_cafe-etl"))
            .args(&args)
            .arg(&bad)
            .env("SECRET", "x")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(1), "{args:?}: {text}");
        assert_no_personal_data(
            &text,
            &["Ann Example".into(), "Bo Example".into()],
            &["4111111111111111".into()],
            "CLI output",
        );
    }
}

#[test]
fn a_quote_left_open_does_not_carry_the_next_lines_names_into_rejects() {
    // Line 8 of a real export cut inside its quoted basket: the open quote
    // swallows line 9 (a name, a card number) up to line 9's own quote.
    let bytes = read_data("real/chesterfield_25-08-2021_09-00-00.csv");
    let text = String::from_utf8(bytes).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let quoted = lines.iter().position(|l| l.contains(",\"")).unwrap();
    let cut = lines[quoted].find(", ").unwrap();
    lines[quoted].truncate(cut);
    let broken = lines.join("\n") + "\n";
    let (names, cards) = personal_data(text.as_bytes());
    let staged =
        cafe_etl::transform(broken.as_bytes(), "chesterfield.csv", &Config::default()).unwrap();
    let r = &staged.report;
    assert_eq!(r.rows_rejected, 1);
    assert_eq!(r.issues[0].code.as_str(), "line_break_in_field");
    assert_eq!(r.issues[0].line, quoted as u64 + 1);
    // The field closes at the next line holding a double quote.
    let closing = lines
        .iter()
        .skip(quoted + 1)
        .position(|l| l.contains('"'))
        .unwrap()
        + quoted
        + 1;
    assert!(
        r.issues[0]
            .message
            .contains(&format!("from line {} to line {}", quoted + 1, closing + 1)),
        "{}",
        r.issues[0].message
    );
    assert_eq!(
        r.rows_read + (closing - quoted) as u64,
        text.lines().count() as u64,
        "the swallowed lines are part of one record"
    );
    assert_no_personal_data(
        &all_outputs(&staged),
        &names,
        &cards,
        "outputs of a file with a quote left open",
    );
}
