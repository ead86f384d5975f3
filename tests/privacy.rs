//! No customer name or card number reaches any output: tables, rejects,
//! report, CLI output. The customer key is a keyed hash of the name.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use cafe_etl::{Config, Table};
use common::*;
use std::path::Path;
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
    // Ed Example stood in the timestamp column too: a field that fails its
    // column's content check is withheld, only its length told.
    assert!(text.contains("timestamp is [withheld: 10 characters that are not a date and time]"));
    assert!(text.contains("timestamp withheld: not a date and time"));
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

/// The three rows of issue 8, as a till writes them when someone types a
/// comma: into a name (8 fields), into a store (8 fields), and a row with
/// the store missing and a card number written with dots (6 fields).
const COMMA_ROWS: [&str; 3] = [
    "25/08/2021 09:00,Leeds,Qxample, Annwyl,Large Latte - 2.45,2.45,CARD,4111111111111111",
    "25/08/2021 09:05,Leeds, Briggate,Bo Qxample,Large Latte - 2.45,2.45,CASH,",
    "25/08/2021 09:10,Cy Qxample,Large Latte - 2.45,2.45,CARD,4000.0566.5566.5556",
];

fn comma_rows_personal_data() -> (Vec<String>, Vec<String>) {
    let names = ["Qxample", "Annwyl"].map(String::from).to_vec();
    let cards = [
        "4111111111111111",
        "4000.0566.5566.5556",
        "4000056655665556",
        "4000.0566",
        "5566.5556",
    ]
    .map(String::from)
    .to_vec();
    (names, cards)
}

#[test]
fn a_comma_in_a_name_or_a_store_keeps_no_free_text_in_the_reject_row() {
    let input = COMMA_ROWS.join("\n") + "\n";
    let staged = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
    assert_eq!(staged.report.rows_rejected, 3);
    let (names, cards) = comma_rows_personal_data();
    assert_no_personal_data(
        &all_outputs(&staged),
        &names,
        &cards,
        "outputs of comma rows",
    );
    let rejects = table(&staged, Table::Rejects);
    let kept: Vec<Vec<&str>> = rejects
        .iter()
        .map(|r| r[3..].iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        kept,
        vec![
            vec![
                "25/08/2021 09:00",
                "[withheld]",
                "[withheld]",
                "2.45",
                "CARD"
            ],
            vec![
                "25/08/2021 09:05",
                "[withheld]",
                "[withheld]",
                "2.45",
                "CASH"
            ],
            vec![
                "25/08/2021 09:10",
                "[withheld]",
                "[withheld]",
                "2.45",
                "CARD"
            ],
        ]
    );
    // The message says what was withheld and why, so staff can find the line.
    for (row, fields) in rejects.iter().zip([8, 8, 6]) {
        assert!(
            row[2].contains(&format!(
                "store and basket_items withheld: with {fields} fields instead of 7"
            )),
            "{}",
            row[2]
        );
    }
}

/// The CLI's `check`, `check --json` and `transform --out OUT` of `file`:
/// each one's arguments, exit status, and stdout followed by stderr.
fn cli_every_way(file: &Path, out: &Path) -> Vec<(Vec<String>, Option<i32>, String)> {
    let runs: [&[&str]; 3] = [&["check"], &["check", "--json"], &["transform", "--out"]];
    runs.iter()
        .map(|args| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_cafe-etl"));
            cmd.args(*args);
            if args[0] == "transform" {
                cmd.arg(out);
            }
            let o = cmd.arg(file).output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            (
                args.iter().map(|a| a.to_string()).collect(),
                o.status.code(),
                text,
            )
        })
        .collect()
}

/// Every file staged below `out`, decompressed and joined.
fn staged_text(out: &Path) -> String {
    let mut staged = String::new();
    for path in common::files_below(out) {
        let bytes = std::fs::read(&path).unwrap();
        staged.push_str(&match bytes.starts_with(&[0x1f, 0x8b]) {
            true => gunzip(&bytes),
            false => String::from_utf8(bytes).unwrap(),
        });
    }
    staged
}

#[test]
fn the_cli_stages_and_prints_nothing_of_the_comma_rows() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leeds_25-08-2021_09-00-00.csv");
    std::fs::write(&file, COMMA_ROWS.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    let (names, cards) = comma_rows_personal_data();
    for (args, status, text) in cli_every_way(&file, &out) {
        assert_eq!(status, Some(1), "{args:?}: {text}");
        assert_no_personal_data(&text, &names, &cards, "CLI output");
    }
    let staged = staged_text(&out);
    assert!(staged.contains("[withheld]"), "the reject file was read");
    assert_no_personal_data(&staged, &names, &cards, "files staged by the CLI");
}

// Property tests: a generated name (with and without commas, quotes, extra
// spaces) and a generated card number (bare, or its digits joined by
// spaces, dots, dashes, slashes, underscores) in every position of a row,
// fields dropped and added anywhere; every output is searched for them.

use common::rows::{self, Mangling};
use proptest::prelude::*;

/// One mangled row: (given name, surname, name shape, card digits, card
/// shape, where things go).
type Mangled = (String, String, usize, String, usize, Mangling);

fn mangled() -> impl Strategy<Value = Mangled> {
    let digits = prop_oneof![
        prop::sample::select(rows::TEST_CARDS.to_vec()).prop_map(String::from),
        "[3-6][0-9]{15}",
    ];
    let mangling = (
        0..7usize,
        0..7usize,
        prop::collection::vec(0..8usize, 0..3),
        prop::collection::vec((0..9usize, 0..6usize), 0..3),
    )
        .prop_map(|(name_at, card_at, drop, add)| Mangling {
            name_at,
            card_at,
            drop,
            add,
        });
    (
        "Zv[a-z]{3,6}",
        "Qx[a-z]{4,8}",
        0..rows::NAME_SHAPES.len(),
        digits,
        0..rows::CARD_SHAPES.len(),
        mangling,
    )
}

/// The file's lines and what to look for in the outputs: every name part
/// and card number, and the store values excused (see
/// `rows::names_in_store_column`).
fn export(mangled: &[Mangled], crlf: bool) -> (String, Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    let mut needles = vec!["Zvnick".to_string()];
    for (n, (given, surname, name_shape, digits, card_shape, m)) in mangled.iter().enumerate() {
        let card = rows::typed_card(*card_shape, digits);
        lines.push(rows::row(
            n,
            &rows::typed_name(*name_shape, given, surname),
            &card,
            m,
        ));
        needles.extend([given.clone(), surname.clone()]);
        needles.extend(rows::card_needles(&card));
        // A good row between the mangled ones.
        lines.push(format!(
            "25/08/2021 10:{:02},Leeds,Bo Example,Large Latte - 2.45,2.45,CASH,",
            n % 60
        ));
    }
    let names: Vec<&str> = mangled
        .iter()
        .flat_map(|(g, s, ..)| [g.as_str(), s.as_str(), "Zvnick"])
        .collect();
    let excused = rows::names_in_store_column(&lines, &names);
    let nl = if crlf { "\r\n" } else { "\n" };
    (lines.join(nl) + nl, needles, excused)
}

fn assert_nothing_personal(text: &str, excused: &[String], needles: &[String], what: &str) {
    if let Some(found) = rows::find_personal_data(text, excused, needles) {
        panic!("{what} holds personal data: {found:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_name_or_card_number_in_any_output_whatever_the_row_shape(
        mangled in prop::collection::vec(mangled(), 1..8),
        secret in prop::option::of("[a-z]{8}"),
        crlf in any::<bool>(),
    ) {
        let (input, needles, excused) = export(&mangled, crlf);
        let mut config = Config::default();
        config.clean.customer_key_secret = secret;
        let staged = cafe_etl::transform(input.as_bytes(), "leeds_25-08-2021_09-00-00.csv", &config).unwrap();
        let r = &staged.report;
        prop_assert_eq!(r.rows_read, r.rows_staged + r.rows_rejected);
        // Every staged table, the reject file, the marker.
        assert_nothing_personal(&all_outputs(&staged), &excused, &needles, "the staged files");
        // Every issue message, also when only checking.
        let checked = cafe_etl::check(input.as_bytes(), "leeds_25-08-2021_09-00-00.csv", &config);
        let messages: Vec<&str> = checked.issues.iter().map(|i| i.message.as_str()).collect();
        assert_nothing_personal(&messages.join("\n"), &excused, &needles, "the issue messages");
        assert_nothing_personal(&checked.to_json(), &excused, &needles, "the check report");
    }
}

proptest! {
    // Each case runs the CLI three times: fewer cases.
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_cli_prints_and_stages_no_name_or_card_number_whatever_the_row_shape(
        mangled in prop::collection::vec(mangled(), 4..12),
    ) {
        let (input, needles, excused) = export(&mangled, false);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("leeds_25-08-2021_09-00-00.csv");
        std::fs::write(&file, &input).unwrap();
        let out = dir.path().join("out");
        // Each command exits 1 when a row is rejected or the file refused,
        // else 0: as the core reports the same bytes.
        let report = cafe_etl::check(input.as_bytes(), "leeds_25-08-2021_09-00-00.csv", &Config::default());
        let want = Some(i32::from(report.refused || report.rows_rejected > 0));
        for (args, status, text) in cli_every_way(&file, &out) {
            prop_assert_eq!(status, want, "{:?}", args);
            assert_nothing_personal(&text, &excused, &needles, "the CLI's stdout and stderr");
        }
        let staged = staged_text(&out);
        // The mangled rows are rejected, their free text withheld from the
        // reject file (a quote one leaves open included: the lines it
        // swallows are that row's).
        prop_assert!(staged.contains("[withheld]"));
        assert_nothing_personal(&staged, &excused, &needles, "the files the CLI staged");
    }
}

#[test]
fn every_shape_of_the_enumeration_keeps_nothing_personal() {
    // The enumeration the WebAssembly test stages, natively: every name
    // shape in every position, with a field dropped, added, or neither.
    let lines = rows::enumeration("Zvann", "Qxample");
    let mut needles: Vec<String> = ["Zvann", "Qxample", "Zvnick"].map(String::from).to_vec();
    for card in rows::TEST_CARDS {
        for shape in 0..rows::CARD_SHAPES.len() {
            needles.extend(rows::card_needles(&rows::typed_card(shape, card)));
        }
    }
    let excused = rows::names_in_store_column(&lines, &["Zvann", "Qxample", "Zvnick"]);
    let input = lines.join("\n") + "\n";
    let staged = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
    assert!(staged.report.rows_rejected > lines.len() as u64 / 2);
    assert_nothing_personal(
        &all_outputs(&staged),
        &excused,
        &needles,
        "the staged files",
    );
}
