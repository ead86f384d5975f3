//! Every layout the business really has reads right: current, legacy-2020,
//! spreadsheet damage, headers, BOM, CRLF, quoting, encodings.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use cafe_etl::{Code, Format, Severity, Table};
use common::*;

#[test]
fn real_fixtures_read_with_zero_rejects_and_the_right_counts() {
    // (file, format, data rows, header lines): counted by hand with wc -l and grep.
    let cases = [
        (
            "real/chesterfield_25-08-2021_09-00-00.csv",
            Format::Current,
            268,
            0,
        ),
        (
            "real/leeds_01-01-2020_09-00-00.csv",
            Format::Current,
            382,
            0,
        ),
        (
            "real/isle-of-wight_2020-10-01.csv",
            Format::Legacy2020,
            480,
            0,
        ),
        (
            "real/2021-02-23-isle-of-wight.csv",
            Format::Legacy2020,
            540,
            6,
        ),
        (
            "real/excel_leeds_09-05-2023_with-header.csv",
            Format::Current,
            50,
            1,
        ),
        ("real/excel_spaced-header.csv", Format::Current, 224, 1),
        ("real/excel_chesterfield.csv", Format::Current, 268, 0),
    ];
    for (file, format, rows, headers) in cases {
        let bytes = read_data(file);
        let r = check(&bytes, file.rsplit('/').next().unwrap());
        assert_eq!(r.format, format, "{file}");
        assert_eq!(
            (r.rows_read, r.rows_staged, r.rows_rejected),
            (rows, rows, 0),
            "{file}: {:?}",
            r.issues.first()
        );
        assert_eq!(r.header_lines, headers, "{file}");
        assert_eq!(r.warnings, 0, "{file}: {:?}", r.issues.first());
        assert!(!r.refused);
    }
}

#[test]
fn legacy_rows_put_payment_before_total_whatever_the_header_says() {
    let bytes = read_data("real/2021-02-23-isle-of-wight.csv");
    let staged = cafe_etl::transform(
        &bytes,
        "2021-02-23-isle-of-wight.csv",
        &cafe_etl::Config::default(),
    )
    .unwrap();
    let tx = table(&staged, Table::Transactions);
    // First data row: "Large,Hot chocolate,2.9,Large,Chai latte,2.6,Large,Hot chocolate,2.9",CASH,8.4
    assert_eq!(tx[0][2], "2021-02-23 09:00:48");
    assert_eq!(tx[0][3], "CASH");
    assert_eq!(tx[0][4], "8.40");
    assert_eq!(tx[0][5], "3");
    let items = table(&staged, Table::BasketItems);
    let first: Vec<_> = items.iter().filter(|r| r[0] == tx[0][0]).collect();
    // Two hot chocolates fold into one line with quantity 2.
    assert_eq!(first.len(), 2);
    assert!(first
        .iter()
        .any(|r| r[2] == "2" && r[3] == "2.90" && r[4] == "5.80"));
}

#[test]
fn legacy_blank_sizes_free_items_and_flavours() {
    let csv = "2020-10-01 09:00:00,Isle of Wight,Ann Example,\",Mocha,2.3,,Speciality Tea - Fruit,1.3,Regular,Babyccino,0.0\",CARD,3.60,\"visa,4111111111111111\"\r\n";
    let staged = cafe_etl::transform(
        csv.as_bytes(),
        "isle-of-wight_2020-10-01.csv",
        &Default::default(),
    )
    .unwrap();
    assert_eq!(staged.report.rows_staged, 1, "{:?}", staged.report.issues);
    let mut products = table(&staged, Table::Products);
    products.sort_by(|a, b| a[2].cmp(&b[2]));
    let shapes: Vec<_> = products
        .iter()
        .map(|p| (p[1].as_str(), p[2].as_str(), p[3].as_str()))
        .collect();
    assert_eq!(
        shapes,
        vec![
            ("Regular", "Babyccino", ""),
            ("", "Mocha", ""),
            ("", "Speciality Tea", "Fruit")
        ]
    );
}

#[test]
fn current_items_split_into_size_name_flavour() {
    let csv = "25/08/2021 09:00,Chesterfield,Ann Example,\"Regular Flavoured iced latte - Hazelnut - 2.75, Large Latte - 2.45, Large Speciality Tea - English breakfast - 1.60\",6.8,CARD,4111111111111111\n";
    let staged = cafe_etl::transform(csv.as_bytes(), "c.csv", &Default::default()).unwrap();
    let mut products: Vec<_> = table(&staged, Table::Products)
        .into_iter()
        .map(|p| p[1..].join("|"))
        .collect();
    products.sort();
    assert_eq!(
        products,
        vec![
            "Large|Latte|",
            "Large|Speciality Tea|English breakfast",
            "Regular|Flavoured iced latte|Hazelnut"
        ]
    );
}

#[test]
fn products_differing_only_by_case_stay_apart() {
    let csv = "01/01/2020 09:00,Leeds,Ann Example,\"Large Hot Chocolate - 1.70, Large Hot chocolate - 2.90\",4.6,CASH,\n";
    let staged = cafe_etl::transform(csv.as_bytes(), "leeds.csv", &Default::default()).unwrap();
    assert_eq!(staged.report.tables.products, 2);
}

#[test]
fn bom_crlf_blank_lines_no_final_newline_and_any_case_headers() {
    let body = "25/08/2021 09:00,Leeds,Ann Example,\"Large Latte - 2.45, Regular Mocha - 2.30\",4.75,CARD,4111111111111111";
    let variants: Vec<(&str, String)> = vec![
        ("plain", format!("{body}\n")),
        ("bom", format!("\u{feff}{body}\n")),
        ("crlf", format!("{body}\r\n\r\n")),
        ("no final newline", body.to_string()),
        ("blank lines", format!("\n\n{body}\n\n,,,,,,\n")),
        ("header any case", format!("  TimeStamp , Store,Customer_Name,basket_items,TOTAL_PRICE,cash_or_card,card_number\n{body}\n")),
        ("bom + header", format!("\u{feff}timestamp,branch,custumer,basket,price,method,card\r\n{body}\r\n")),
    ];
    let want = check(format!("{body}\n").as_bytes(), "leeds.csv");
    for (what, input) in variants {
        let r = check(input.as_bytes(), "leeds.csv");
        assert_eq!(
            (r.rows_read, r.rows_staged),
            (1, 1),
            "{what}: {:?}",
            r.issues
        );
        assert_eq!(r.summary, want.summary, "{what}");
    }
}

#[test]
fn quoted_fields_with_embedded_quotes_and_commas() {
    let csv = "25/08/2021 09:00,\"Leeds, \"\"Kirkgate\"\"\",\"Example, Ann\",\"Large Latte - 2.45\",2.45,CASH,\n";
    let staged = cafe_etl::transform(csv.as_bytes(), "leeds.csv", &Default::default()).unwrap();
    assert_eq!(staged.report.rows_staged, 1, "{:?}", staged.report.issues);
    let stores = table(&staged, Table::Stores);
    assert_eq!(stores[0][1], "Leeds, \"Kirkgate\"");
}

#[test]
fn spreadsheet_damage_is_read() {
    let csv = "9/5/2023 9:00,Leeds,Ann Example,\"Regular Iced americano - 2.15, Large Hot Chocolate - 1.70\",3.85,CARD,4.11111E+15\n\
               9/5/2023 9:01,Leeds,Bo Example,\"Large Chai latte - 2.60, Regular Hot Chocolate - 1.40\",4,CASH,\n";
    let staged = cafe_etl::transform(
        csv.as_bytes(),
        "leeds_09-05-2023_09-00-00.csv",
        &Default::default(),
    )
    .unwrap();
    let r = &staged.report;
    assert_eq!((r.rows_staged, r.warnings), (2, 0), "{:?}", r.issues);
    let tx = table(&staged, Table::Transactions);
    assert_eq!(tx[0][2], "2023-05-09 09:00:00", "day first");
    assert_eq!(tx[1][4], "4.00");
}

#[test]
fn windows_1252_is_read_with_an_encoding_warning() {
    let mut csv =
        b"25/08/2021 09:00,Caf\xe9 Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n".to_vec();
    csv.extend_from_slice(
        "25/08/2021 09:01,Café Leeds,Bo Example,Large Latte - 2.45,2.45,CASH,\n".as_bytes(),
    );
    let staged = cafe_etl::transform(&csv, "leeds.csv", &Default::default()).unwrap();
    let r = &staged.report;
    assert_eq!(r.rows_staged, 2);
    assert_eq!(issue_codes(r), vec![(1, "encoding")]);
    assert_eq!(r.issues[0].severity, Severity::Warning);
    // Both spellings are the same store once decoded.
    assert_eq!(
        table(&staged, Table::Stores),
        vec![vec![
            cafe_etl::transform::store_id("Café Leeds")
                .iter()
                .map(|&b| b as char)
                .collect::<String>(),
            "Café Leeds".into()
        ]]
    );
}

#[test]
fn a_date_in_the_file_name_that_rows_contradict_is_a_warning() {
    let csv = "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n\
               26/08/2021 09:00,Leeds,Bo Example,Large Latte - 2.45,2.45,CASH,\n\
               26/08/2021 09:05,Leeds,Cy Example,Large Latte - 2.45,2.45,CASH,\n";
    let r = check(csv.as_bytes(), "leeds_25-08-2021_09-00-00.csv");
    assert_eq!(r.rows_staged, 3);
    // One warning per contradicting date, at its first row.
    assert_eq!(issue_codes(&r), vec![(2, "date_mismatch")]);
    assert!(
        r.issues[0].message.contains("2021-08-26"),
        "{}",
        r.issues[0].message
    );
    assert!(check(csv.as_bytes(), "leeds.csv").issues.is_empty());
}

#[test]
fn refused_files_name_themselves() {
    let cases: [(&[u8], Code); 5] = [
        (b"", Code::EmptyFile),
        (
            b"timestamp,store,customer_name,basket_items,total_price,cash_or_card,card_number\n\n",
            Code::EmptyFile,
        ),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", Code::NotCsv),
        (b"PK\x03\x04\x14\0\0\0", Code::NotCsv),
        (b"just some notes\nwithout any comma\n", Code::NotCsv),
    ];
    for (bytes, code) in cases {
        let r = check(bytes, "monday.csv");
        assert!(r.refused);
        assert_eq!(r.issues[0].code, code);
        assert!(
            r.issues[0].message.starts_with("monday.csv "),
            "{}",
            r.issues[0].message
        );
        assert_eq!(r.rows_read, r.rows_staged + r.rows_rejected);
        assert!(
            cafe_etl::transform(bytes, "monday.csv", &Default::default())
                .unwrap()
                .files
                .is_empty()
        );
    }
}
