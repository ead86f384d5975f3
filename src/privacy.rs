//! The privacy rule, in one place: what of a row may be kept or quoted.
//!
//! A customer name and a card number must never reach a table, the reject
//! file, the report or a message, whatever shape a row has. A comma typed
//! into a name or a store shifts every field after it, so a field's
//! position alone does not say what it holds. Hence one rule:
//!
//! - a field is kept (in a reject row) or quoted (in a message) only when it
//!   passes its own column's content check ([`passes`]): a timestamp, an
//!   amount, CASH/CARD, a basket whose every item has the `Name - price`
//!   shape. A field that fails it is withheld and only its length told;
//! - free text (store, basket) of a record whose fields cannot be told apart
//!   (not 7 fields, or a quoted field swallowing lines) is withheld whatever
//!   it holds: nobody can know which field is the name;
//! - card numbers are masked everywhere ([`mask_card_numbers`]): any run of
//!   12 or more digits joined by spaces, dots, dashes, slashes or
//!   underscores.
//!
//! [`clean`](crate::clean) builds the [`RejectFields`] of a record with the
//! wrong number of fields, the pipeline those of a row that failed
//! [`validate`](crate::validate) (whose messages quote through [`found`] and
//! [`quote`]), and the reject writer
//! ([`TableWriters::reject`](crate::TableWriters::reject)) takes only
//! [`RejectFields`] and masks the message it writes.

use crate::read::RawRecord;
use crate::row::{rfind_dash, CleanRow, Payment};
use crate::validate::parse_money;
use std::borrow::Cow;

/// A column of a reject row, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// `timestamp`.
    Timestamp,
    /// `store`.
    Store,
    /// `basket_items`.
    Basket,
    /// `total_price`.
    Total,
    /// `cash_or_card`.
    Payment,
}

impl Column {
    /// The five columns of a reject row after `line, codes, message`.
    pub const ALL: [Column; 5] = [
        Column::Timestamp,
        Column::Store,
        Column::Basket,
        Column::Total,
        Column::Payment,
    ];

    /// The column's name in the reject file.
    pub fn name(self) -> &'static str {
        match self {
            Column::Timestamp => "timestamp",
            Column::Store => "store",
            Column::Basket => "basket_items",
            Column::Total => "total_price",
            Column::Payment => "cash_or_card",
        }
    }

    /// What the column's content check looks for, for messages.
    fn what(self) -> &'static str {
        match self {
            Column::Timestamp => "a date and time",
            Column::Store => "a store name",
            Column::Basket => "items shaped Name - price",
            Column::Total => "an amount",
            Column::Payment => "CASH or CARD",
        }
    }
}

/// Bytes that may join the digit groups of a card number.
#[inline]
fn is_joiner(b: u8) -> bool {
    matches!(b, b' ' | b'.' | b'-' | b'/' | b'_')
}

/// Most joiner bytes between two digit groups (` - ` is three).
const MAX_JOIN: usize = 3;

/// Digits in a run that make it a possible card number.
const CARD_DIGITS: usize = 12;

/// What replaces a masked card number.
pub const REDACTED: &str = "[redacted]";

/// Replaces each run of 12 or more digits, joined by up to three spaces,
/// dots, dashes, slashes or underscores (`4000 0566 5566 5556`,
/// `4000.0566.5566.5556`, `4000-0566-5566-5556`), by `[redacted]`.
/// Borrows when there is nothing to mask: text with fewer than 12 digits
/// in all, the common case, costs one pass over its bytes.
pub fn mask_card_numbers(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    if b.len() < CARD_DIGITS || digit_count(b) < CARD_DIGITS {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = 0;
        let mut j = i;
        let end = loop {
            while j < b.len() && b[j].is_ascii_digit() {
                digits += 1;
                j += 1;
            }
            let mut k = j;
            while k < b.len() && k - j < MAX_JOIN && is_joiner(b[k]) {
                k += 1;
            }
            if k > j && k < b.len() && b[k].is_ascii_digit() {
                j = k;
            } else {
                break j;
            }
        };
        if digits >= CARD_DIGITS {
            out.push_str(&s[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        i = end;
    }
    if copied == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// The ASCII digits in `b`, counted branch-free so that the compiler
/// vectorises it: every message and reject row goes through this scan.
#[inline]
fn digit_count(b: &[u8]) -> usize {
    // Counted in bytes over chunks short enough not to overflow one: a
    // byte counter vectorises 16 or 32 to an instruction, a usize one not.
    b.chunks(255)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u8, |n, &c| n + u8::from(c.wrapping_sub(b'0') < 10)) as usize
        })
        .sum()
}

/// Whether a field holds a line break (`\r` alone included: the reader
/// keeps one inside quotes without counting a line).
#[inline]
fn has_line_break(s: &str) -> bool {
    let b = s.as_bytes();
    // memchr pays a set-up per call; most fields are a few bytes.
    if b.len() < 32 {
        return b.iter().any(|&c| c == b'\n' || c == b'\r');
    }
    memchr::memchr2(b'\n', b'\r', b).is_some()
}

/// True when `s` holds a run that [`mask_card_numbers`] would mask.
pub fn has_card_number(s: &str) -> bool {
    matches!(mask_card_numbers(s), Cow::Owned(_))
}

/// Digits with date and time punctuation only.
fn timestamp_shaped(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'/' | b'-' | b':' | b'.' | b'T'))
}

/// Digits with number punctuation only (a spreadsheet's `5.49417E+15`, a
/// `£`, a sign: enough to show what went wrong with an amount).
fn amount_shaped(t: &str) -> bool {
    t.bytes().any(|b| b.is_ascii_digit())
        && t.chars()
            .all(|c| c.is_ascii_digit() || ".,-+£$€eE ".contains(c))
}

/// A basket whose every item has the `Name - price` shape (current
/// layout), or `size,name,price` triplets with an amount in every third
/// place (the 2020 layout).
fn basket_shaped(t: &str) -> bool {
    if t.is_empty() {
        return false;
    }
    let current = t.split(',').all(|item| match rfind_dash(item) {
        Some(i) => !item[..i].trim().is_empty() && amount_shaped(item[i + 3..].trim()),
        None => false,
    });
    if current {
        return true;
    }
    let values: Vec<&str> = t.split(',').collect();
    values.len() % 3 == 0
        && values
            .chunks(3)
            .all(|v| !v[1].trim().is_empty() && amount_shaped(v[2].trim()))
}

/// The content check of a column: does the field hold what the column
/// should? Shape, not validity: `26/08/2021 09:61` is a timestamp (a wrong
/// one, worth showing), `Ann Example` is not. A store passes when it is
/// not empty: it is free text, kept only where the row's fields can be told
/// apart.
pub fn passes(column: Column, field: &str) -> bool {
    let t = field.trim();
    if has_line_break(t) {
        return false;
    }
    match column {
        Column::Timestamp => timestamp_shaped(t),
        Column::Total => amount_shaped(t),
        Column::Payment => Payment::parse(t).is_some(),
        Column::Basket => basket_shaped(t),
        Column::Store => !t.is_empty(),
    }
}

/// Quotes a found value for a message: trimmed, cut before a line break
/// and to 40 characters, card numbers masked (before the cut, so no part
/// of one survives it).
pub fn quote(s: &str) -> String {
    let s = s.split(['\n', '\r']).next().unwrap_or_default();
    let s = mask_card_numbers(s.trim());
    let mut out = String::from("\"");
    for (n, c) in s.chars().enumerate() {
        if n == 40 {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A found value for a message: quoted when it passes its column's content
/// check, otherwise only its length told.
pub fn found(s: &str, column: Column) -> String {
    if passes(column, s) {
        quote(s)
    } else {
        withheld_length(s, column)
    }
}

fn withheld_length(s: &str, column: Column) -> String {
    format!(
        "[withheld: {} characters that are not {}]",
        s.trim().chars().count(),
        column.what()
    )
}

/// A value too long or too odd to quote (a basket item without its shape),
/// told by its length only.
pub fn described(s: &str) -> String {
    format!("[withheld: {} characters]", s.trim().chars().count())
}

/// Why a record's fields cannot be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Broken {
    /// Not 7 fields.
    FieldCount(usize),
    /// A quoted field runs over several lines.
    LineBreak,
}

/// What stands in a reject row's field when its value is withheld.
pub const WITHHELD: &str = "[withheld]";

/// The five fields of a reject row that the privacy rule lets through,
/// card numbers masked, and a note of what was withheld and why. The only
/// way to hand fields to the reject writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectFields<'a> {
    fields: [Cow<'a, str>; 5],
    /// Columns withheld because they failed their content check: bit `i`
    /// for `Column::ALL[i]` (no allocation per rejected row).
    off_shape: u8,
    broken: Option<Broken>,
}

impl<'a> RejectFields<'a> {
    /// Nothing kept, nothing to say (a record too long to read).
    pub fn none() -> RejectFields<'static> {
        RejectFields {
            fields: Default::default(),
            off_shape: 0,
            broken: None,
        }
    }

    fn build(values: [Option<&'a str>; 5], broken: Option<Broken>) -> RejectFields<'a> {
        let mut off_shape = 0u8;
        let fields = std::array::from_fn(|i| {
            let column = Column::ALL[i];
            let free_text = matches!(column, Column::Store | Column::Basket);
            match values[i] {
                // Free text of a record whose fields cannot be told apart:
                // withheld whatever it holds (said once, in the note).
                _ if free_text && broken.is_some() => Cow::Borrowed(WITHHELD),
                None => Cow::Borrowed(""),
                Some(v) if v.trim().is_empty() => Cow::Borrowed(""),
                Some(v) if passes(column, v) => mask_card_numbers(v.trim()),
                Some(_) => {
                    off_shape |= 1 << i;
                    Cow::Borrowed(WITHHELD)
                }
            }
        });
        RejectFields {
            fields,
            off_shape,
            broken,
        }
    }

    /// The fields of a 7-field row that failed validation: each kept when
    /// it passes its column's content check.
    pub fn of_row(row: &CleanRow<'a>) -> RejectFields<'a> {
        RejectFields::build(
            [
                Some(row.timestamp),
                Some(row.store),
                Some(row.basket),
                Some(row.total),
                Some(row.payment),
            ],
            None,
        )
    }

    /// The fields of a record whose fields cannot be told apart: not 7
    /// fields, or a quoted field running over several lines. Store and
    /// basket are withheld; the first field is kept if it is a timestamp;
    /// the payment is the first field after the third that is CASH or CARD,
    /// and the total the amount next to it (before it in the current
    /// layout, after it in the 2020 one).
    pub fn of_record(rec: &RawRecord<'a>) -> RejectFields<'a> {
        let broken = if rec.line_breaks > 0 {
            Broken::LineBreak
        } else {
            Broken::FieldCount(rec.len())
        };
        let get = |i: usize| rec.get(i).filter(|f| !has_line_break(f));
        // CASH and CARD have four letters: shorter fields (a hostile row of
        // 512 empty ones) are passed over without a check.
        let payment_at = (3..rec.len())
            .find(|&i| get(i).is_some_and(|f| f.len() >= 4 && passes(Column::Payment, f)));
        let total = payment_at.and_then(|p| {
            [p.checked_sub(1), Some(p + 1)]
                .into_iter()
                .flatten()
                .filter(|&i| i >= 3)
                .filter_map(get)
                .find(|f| parse_money(f, i64::MAX).is_some())
        });
        RejectFields::build(
            [get(0), None, None, total, payment_at.and_then(get)],
            Some(broken),
        )
    }

    /// The five values, in [`Column::ALL`] order.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.as_ref())
    }

    /// What was withheld and why, for the reject row's message; `None`
    /// when everything was kept.
    pub fn note(&self) -> Option<String> {
        let mut out = String::new();
        self.write_note(&mut out);
        (!out.is_empty()).then_some(out)
    }

    /// Appends [`note`](Self::note) to `out` (nothing when everything was
    /// kept), parts joined by `; `. The reject writer's way: no allocation
    /// per rejected row.
    pub fn write_note(&self, out: &mut String) {
        let start = out.len();
        let sep = |out: &mut String| {
            if out.len() > start {
                out.push_str("; ");
            }
        };
        match self.broken {
            Some(Broken::FieldCount(n)) => {
                out.push_str("store and basket_items withheld: with ");
                out.push_str(itoa::Buffer::new().format(n));
                out.push_str(" fields instead of 7 a comma is out of place, so no field can be told to be the customer name or not");
            }
            Some(Broken::LineBreak) => out.push_str(
                "store and basket_items withheld: a quoted field swallowed other lines, so no field can be told to be the customer name or not",
            ),
            None => {}
        }
        for (i, c) in Column::ALL.iter().enumerate() {
            if self.off_shape & (1 << i) != 0 {
                sep(out);
                out.push_str(c.name());
                out.push_str(" withheld: not ");
                out.push_str(c.what());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_masked_whatever_joins_the_digits() {
        let cases: &[(&str, &str)] = &[
            ("4111111111111111", "[redacted]"),
            ("4000 0566 5566 5556", "[redacted]"),
            ("4000.0566.5566.5556", "[redacted]"),
            ("4000-0566-5566-5556", "[redacted]"),
            ("4000/0566/5566/5556", "[redacted]"),
            ("4000_0566_5566_5556", "[redacted]"),
            ("4000 - 0566 - 5566 - 5556", "[redacted]"),
            ("card 378282246310005 ok", "card [redacted] ok"),
            (
                "a 4111111111111111, b 5555-5555-5555-4444",
                "a [redacted], b [redacted]",
            ),
            // Eleven digits are not a card number; nor are numbers kept apart
            // by other punctuation.
            ("12345678901", "12345678901"),
            ("25/08/2021 09:00", "25/08/2021 09:00"),
            (
                "items add up to 2.45 but total is 2.54",
                "items add up to 2.45 but total is 2.54",
            ),
            ("2.45, 2.45, 2.45, 2.45", "2.45, 2.45, 2.45, 2.45"),
            ("4000    0566 5566 5556", "4000    [redacted]"),
            ("", ""),
            ("Zoë 4111111111111111 😀", "Zoë [redacted] 😀"),
        ];
        for (s, want) in cases {
            assert_eq!(mask_card_numbers(s), *want, "{s}");
        }
        assert!(matches!(
            mask_card_numbers("Large Latte - 2.45"),
            Cow::Borrowed(_)
        ));
        assert!(has_card_number("x 4000.0566.5566.5556"));
        assert!(!has_card_number("x 4000.0566.556 a 1"));
    }

    #[test]
    fn content_checks() {
        use Column::*;
        let cases: &[(Column, &str, bool)] = &[
            (Timestamp, "25/08/2021 09:00", true),
            (Timestamp, "26/08/2021 09:61", true),
            (Timestamp, "2020-10-01 09:00:00", true),
            (Timestamp, "Ann Example", false),
            (Timestamp, "", false),
            (Total, "2.45", true),
            (Total, "-2.45", true),
            (Total, "5.49417E+15", true),
            (Total, "Ee", false),
            (Total, "Given", false),
            (Payment, "CASH", true),
            (Payment, " card ", true),
            (Payment, "BITCOIN", false),
            (Payment, "Smith", false),
            (Basket, "Large Latte - 2.45", true),
            (
                Basket,
                "Large Latte - 2.45, Regular Mocha - Hazelnut - 2.75",
                true,
            ),
            (Basket, ",Mocha,2.3,Large,Latte,2.45", true),
            (Basket, " Given", false),
            (Basket, "=cmd|' /C calc'!A0", false),
            (Basket, "Large Latte - 2.45, Given", false),
            (Store, "Leeds", true),
            (Store, " ", false),
            (Timestamp, "25/08/2021\n09:00", false),
        ];
        for (c, s, want) in cases {
            assert_eq!(passes(*c, s), *want, "{c:?} {s:?}");
        }
    }

    #[test]
    fn found_values_are_quoted_or_told_by_length() {
        assert_eq!(found("2.54", Column::Total), "\"2.54\"");
        assert_eq!(
            found("Surname", Column::Payment),
            "[withheld: 7 characters that are not CASH or CARD]"
        );
        assert_eq!(
            found("4000.0566.5566.5556", Column::Total),
            "\"[redacted]\""
        );
        assert_eq!(quote(&"x".repeat(50)), format!("\"{}…\"", "x".repeat(40)));
        assert_eq!(quote("4111 1111 1111 1111"), "\"[redacted]\"");
        assert_eq!(quote("a\nb"), "\"a\"");
    }

    /// The reject fields and note of one CSV line, through the reader.
    fn kept_of(fields: &[&str]) -> (Vec<String>, Option<String>) {
        let line: Vec<String> = fields
            .iter()
            .map(|f| match f.contains([',', '\n']) {
                true => format!("\"{f}\""),
                false => f.to_string(),
            })
            .collect();
        let mut reader = crate::read::Reader::new(crate::read::Config::default());
        let mut out = None;
        let mut got = |r: &RawRecord<'_>| -> Result<(), ()> {
            let kept = RejectFields::of_record(r);
            out = Some((kept.values().map(str::to_owned).collect(), kept.note()));
            Ok(())
        };
        reader.push(line.join(",").as_bytes(), &mut got).unwrap();
        reader.finish(&mut got).unwrap();
        out.unwrap()
    }

    #[test]
    fn records_with_the_wrong_field_count_keep_no_free_text() {
        // The three rows of issue 8, and more.
        let cases: &[(&[&str], [&str; 5])] = &[
            (
                &[
                    "25/08/2021 09:00",
                    "Leeds",
                    "Qxsurname",
                    " Given",
                    "Large Latte - 2.45",
                    "2.45",
                    "CARD",
                    "4111111111111111",
                ],
                ["25/08/2021 09:00", WITHHELD, WITHHELD, "2.45", "CARD"],
            ),
            (
                &[
                    "25/08/2021 09:00",
                    "Leeds",
                    " Briggate",
                    "Ann Qxample",
                    "Large Latte - 2.45",
                    "2.45",
                    "CASH",
                    "",
                ],
                ["25/08/2021 09:00", WITHHELD, WITHHELD, "2.45", "CASH"],
            ),
            (
                &[
                    "25/08/2021 09:00",
                    "Ann Qxample",
                    "Large Latte - 2.45",
                    "2.45",
                    "CARD",
                    "4000.0566.5566.5556",
                ],
                ["25/08/2021 09:00", WITHHELD, WITHHELD, "2.45", "CARD"],
            ),
            (
                &["Ann Qxample", "Leeds", "Large Latte - 2.45", "2.45"],
                [WITHHELD, WITHHELD, WITHHELD, "", ""],
            ),
            (
                &[
                    "2020-10-01 09:00:00",
                    "Isle of Wight",
                    "Ann Qxample",
                    ",Latte,2.45",
                    "CASH",
                    "2.45",
                    "None",
                    "x",
                ],
                ["2020-10-01 09:00:00", WITHHELD, WITHHELD, "2.45", "CASH"],
            ),
            (
                &["4000 0566 5566 5556", "Leeds"],
                ["[redacted]", WITHHELD, WITHHELD, "", ""],
            ),
        ];
        for (fields, want) in cases {
            let (values, note) = kept_of(fields);
            assert_eq!(values, want.to_vec(), "{fields:?}");
            let note = note.unwrap();
            assert!(
                note.starts_with("store and basket_items withheld: with "),
                "{note}"
            );
            assert!(!note.contains("Qx") && !note.contains("4000"), "{note}");
        }
    }
}
