//! Ids are UUIDs derived from content: the same input gives the same ids on
//! every run; rows identical but for name and card get distinct ids.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use cafe_etl::{Config, Table};
use common::*;
use std::collections::HashSet;

fn ids(input: &str, t: Table) -> Vec<String> {
    let staged = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
    table(&staged, t)
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

fn is_uuid_v5(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'5'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && s.chars()
            .filter(|&c| c != '-')
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[test]
fn rows_identical_but_for_name_and_card_get_distinct_stable_ids() {
    let input =
        "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n\
                 25/08/2021 09:00,Leeds,Bo Example,Large Latte - 2.45,2.45,CARD,5555555555554444\n\
                 25/08/2021 09:00,Leeds,Cy Example,Large Latte - 2.45,2.45,CARD,4012888888881881\n";
    let a = ids(input, Table::Transactions);
    assert_eq!(a.len(), 3);
    assert_eq!(a.iter().collect::<HashSet<_>>().len(), 3);
    assert!(a.iter().all(|id| is_uuid_v5(id)), "{a:?}");
    // The same again, and with other names and cards: the same ids.
    assert_eq!(ids(input, Table::Transactions), a);
    assert_eq!(
        ids(
            &input
                .replace("Example", "Sample")
                .replace("4111111111111111", "378282246310005"),
            Table::Transactions
        ),
        a
    );
}

#[test]
fn ids_do_not_move_when_headers_or_blank_lines_are_added_or_bytes_change_form() {
    let body = read_data("real/chesterfield_25-08-2021_09-00-00.csv");
    let text = String::from_utf8(body.clone()).unwrap();
    let base = ids(&text, Table::Transactions);
    let with_header = format!(
        "timestamp,store,customer_name,basket_items,total_price,cash_or_card,card_number\n\n{}",
        text.replace('\n', "\r\n")
    );
    assert_eq!(ids(&with_header, Table::Transactions), base);
    assert_eq!(
        base.iter().collect::<HashSet<_>>().len(),
        base.len(),
        "all distinct"
    );
}

#[test]
fn ids_follow_content_not_row_order_alone() {
    let a = "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n25/08/2021 09:05,Leeds,Bo Example,Large Mocha - 2.70,2.7,CARD,4111111111111111\n";
    let swapped: String = a.lines().rev().map(|l| format!("{l}\n")).collect();
    let mut x = ids(a, Table::Transactions);
    let mut y = ids(&swapped, Table::Transactions);
    x.sort();
    y.sort();
    assert_eq!(x, y);
    // Another store, price or time: another id.
    assert_ne!(
        ids(&a.replace("Leeds", "York"), Table::Transactions)[0],
        ids(a, Table::Transactions)[0]
    );
    assert_ne!(
        ids(&a.replace("09:00", "09:01"), Table::Transactions)[0],
        ids(a, Table::Transactions)[0]
    );
}

#[test]
fn store_and_product_ids_are_shared_across_files() {
    let a = "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n";
    let b = "26/08/2021 12:00,Leeds,Bo Example,\"Large Latte - 2.45, Large Latte - 2.45\",4.9,CARD,4111111111111111\n";
    assert_eq!(ids(a, Table::Stores), ids(b, Table::Stores));
    assert_eq!(ids(a, Table::Products), ids(b, Table::Products));
    assert_eq!(
        ids(a, Table::Stores)[0],
        String::from_utf8(cafe_etl::transform::store_id("Leeds").to_vec()).unwrap()
    );
    assert!(is_uuid_v5(&ids(a, Table::Products)[0]));
}
