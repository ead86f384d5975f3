//! Stage 3: a cleaned row to a typed transaction, or issues.
//!
//! Everything here is a pure function of one row: timestamps, money, baskets
//! in both layouts. A row with any error-level issue is rejected by the
//! pipeline; the functions only say what is wrong, in words fit for branch
//! staff, quoting what was found (never a name or a card number: those
//! columns were dropped by [`clean`](crate::clean) before this stage runs).

use crate::clean::{BasketStyle, CleanRow, CustomerKey};
use crate::report::{format_pence, Code, Issue, Severity};
use std::fmt;
use std::ops::Range;

/// Limits of validation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Most issues listed in a report (all are counted).
    pub max_issues: usize,
    /// Largest amount accepted, in pence (Redshift `DECIMAL(10,2)` holds
    /// less than 10^10).
    pub max_pence: i64,
    /// Earliest year accepted in a timestamp.
    pub min_year: u16,
    /// Latest year accepted in a timestamp.
    pub max_year: u16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_issues: 10_000,
            max_pence: 99_999_999_99,
            min_year: 2000,
            max_year: 2099,
        }
    }
}

/// A date and time of day, as the till wrote it (no time zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Year.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

impl Timestamp {
    /// `YYYY-MM-DD HH:MM:SS` as 19 ASCII bytes, without allocating.
    pub fn to_bytes(&self) -> [u8; 19] {
        let mut b = *b"0000-00-00 00:00:00";
        let put = |b: &mut [u8; 19], at: usize, v: u32, w: usize| {
            let mut v = v;
            for i in (0..w).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(&mut b, 0, self.year as u32, 4);
        put(&mut b, 5, self.month as u32, 2);
        put(&mut b, 8, self.day as u32, 2);
        put(&mut b, 11, self.hour as u32, 2);
        put(&mut b, 14, self.minute as u32, 2);
        put(&mut b, 17, self.second as u32, 2);
        b
    }

    /// The calendar date.
    pub fn date(&self) -> (u16, u8, u8) {
        (self.year, self.month, self.day)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always ASCII digits and separators.
        f.write_str(std::str::from_utf8(&self.to_bytes()).unwrap_or_default())
    }
}

/// Days in a month of a year (Gregorian).
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Reads 1..=max digits from the front of `s`.
fn digits(s: &[u8], min: usize, max: usize) -> Option<(u32, &[u8])> {
    let n = s
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n < min {
        return None;
    }
    let v = s[..n].iter().fold(0u32, |v, b| v * 10 + (b - b'0') as u32);
    Some((v, &s[n..]))
}

fn expect(s: &[u8], c: u8) -> Option<&[u8]> {
    match s.first() {
        Some(&b) if b == c => Some(&s[1..]),
        _ => None,
    }
}

/// Parses `dd/mm/yyyy HH:MM[:SS]` (day first, zero padding optional, as the
/// tills and spreadsheets write it) or `yyyy-mm-dd HH:MM[:SS]` (the 2020
/// tills; `T` also accepted). Surrounding spaces are ignored. The date must
/// exist and the year lie in `years`.
pub fn parse_timestamp(s: &str, years: std::ops::RangeInclusive<u16>) -> Option<Timestamp> {
    let s = s.trim().as_bytes();
    let (year, month, day, rest) = if s.len() > 4 && s[4] == b'-' {
        let (y, r) = digits(s, 4, 4)?;
        let (m, r) = digits(expect(r, b'-')?, 1, 2)?;
        let (d, r) = digits(expect(r, b'-')?, 1, 2)?;
        (y, m, d, r)
    } else {
        let (d, r) = digits(s, 1, 2)?;
        let (m, r) = digits(expect(r, b'/')?, 1, 2)?;
        let (y, r) = digits(expect(r, b'/')?, 4, 4)?;
        (y, m, d, r)
    };
    let r = match r_first(rest) {
        Some(b' ') | Some(b'T') => &rest[1..],
        _ => return None,
    };
    let r = trim_start_spaces(r);
    let (hour, r) = digits(r, 1, 2)?;
    let (minute, r) = digits(expect(r, b':')?, 2, 2)?;
    let (second, r) = if r.first() == Some(&b':') {
        digits(&r[1..], 2, 2)?
    } else {
        (0, r)
    };
    if !r.is_empty() {
        return None;
    }
    let year = u16::try_from(year).ok()?;
    let (month, day) = (month as u8, day as u8);
    if !years.contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(Timestamp {
        year,
        month,
        day,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
    })
}

fn r_first(s: &[u8]) -> Option<u8> {
    s.first().copied()
}

fn trim_start_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ').count();
    &s[n..]
}

/// Parses an amount of money into pence: `2.45`, `2.5`, `4`, `0.0`, `10.90`.
/// At most two decimals that matter (`2.450` is fine, `2.455` is not), no
/// sign, no thousands separator. Never goes through a float.
pub fn parse_money(s: &str, max_pence: i64) -> Option<i64> {
    let s = s.trim().as_bytes();
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &s[s.len()..]),
    };
    if int.is_empty() || int.len() > 12 || !int.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) || (s.contains(&b'.') && frac.is_empty()) {
        return None;
    }
    if frac.len() > 2 && frac[2..].iter().any(|&b| b != b'0') {
        return None;
    }
    let mut pence: i64 = 0;
    for &b in int {
        pence = pence * 10 + (b - b'0') as i64;
    }
    let f0 = frac.first().map_or(0, |b| (b - b'0') as i64);
    let f1 = frac.get(1).map_or(0, |b| (b - b'0') as i64);
    let pence = pence.checked_mul(100)? + f0 * 10 + f1;
    (pence <= max_pence).then_some(pence)
}

/// One item of a basket, as byte ranges into the basket text (so a row's
/// items live in one reused vector, with no allocation per field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Size (`Large`, `Regular`), possibly empty.
    pub size: Range<u32>,
    /// Product name.
    pub name: Range<u32>,
    /// Flavour, possibly empty.
    pub flavour: Range<u32>,
    /// Unit price in pence.
    pub price_pence: i64,
}

impl Item {
    /// The three identity parts as `&str`, given the basket text.
    pub fn parts<'a>(&self, basket: &'a str) -> (&'a str, &'a str, &'a str) {
        let g = |r: &Range<u32>| &basket[r.start as usize..r.end as usize];
        (g(&self.size), g(&self.name), g(&self.flavour))
    }
}

/// Sizes recognised at the front of a current-format item.
const SIZES: &[&str] = &["Large", "Regular", "Small", "Medium"];

/// The range of `part` inside `whole` (both from the same string).
fn range_in(whole: &str, part: &str) -> Range<u32> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start as u32..(start + part.len()) as u32
}

/// Why a basket could not be read; `Display` is the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BasketProblem {
    /// No items at all.
    Empty,
    /// The nth item (1-based) has no usable shape.
    Shape {
        /// 1-based item number.
        item: usize,
        /// What an item should look like.
        expected: &'static str,
        /// What it looks like, quoted.
        found: String,
    },
    /// The nth item's price is not money.
    Price {
        /// 1-based item number.
        item: usize,
        /// The price text, quoted.
        found: String,
    },
    /// Legacy triplets do not come in threes.
    Triplets {
        /// How many values the basket has.
        values: usize,
    },
}

impl fmt::Display for BasketProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BasketProblem::Empty => f.write_str("the basket is empty, expected at least one item"),
            BasketProblem::Shape { item, expected, found } => {
                write!(f, "item {item} is {found}, expected {expected}")
            }
            BasketProblem::Price { item, found } => {
                write!(f, "item {item} has price {found}, expected an amount like 2.45 (no sign, at most 2 decimals)")
            }
            BasketProblem::Triplets { values } => write!(
                f,
                "the basket has {values} comma-separated values, expected size,name,price triplets (a multiple of 3)"
            ),
        }
    }
}

/// Splits `Name - Flavour` at the first ` - `.
fn name_flavour<'a>(s: &'a str) -> (&'a str, &'a str) {
    match s.split_once(" - ") {
        Some((n, f)) => (n.trim(), f.trim()),
        None => (s.trim(), &s[s.len()..]),
    }
}

/// Reads a current-format basket: `Size Name[ - Flavour] - price, ...`.
pub fn parse_basket_current(
    basket: &str,
    max_pence: i64,
    items: &mut Vec<Item>,
) -> Result<(), BasketProblem> {
    items.clear();
    if basket.trim().is_empty() {
        return Err(BasketProblem::Empty);
    }
    for (n, raw) in basket.split(',').enumerate() {
        let item = n + 1;
        let text = raw.trim();
        let Some((desc, price)) = text.rsplit_once(" - ").or_else(|| text.rsplit_once(" -")) else {
            return Err(BasketProblem::Shape {
                item,
                expected: "Size Name[ - Flavour] - price, like Large Latte - 2.45",
                found: quote(text),
            });
        };
        let price_pence = parse_money(price, max_pence).ok_or_else(|| BasketProblem::Price {
            item,
            found: quote(price.trim()),
        })?;
        let desc = desc.trim();
        let (size, rest) = match desc.split_once(' ') {
            Some((first, rest)) if SIZES.iter().any(|s| s.eq_ignore_ascii_case(first)) => {
                (first, rest.trim_start())
            }
            _ => (&desc[..0], desc),
        };
        let (name, flavour) = name_flavour(rest);
        if name.is_empty() {
            return Err(BasketProblem::Shape {
                item,
                expected: "a product name before the price",
                found: quote(text),
            });
        }
        items.push(Item {
            size: range_in(basket, size),
            name: range_in(basket, name),
            flavour: range_in(basket, flavour),
            price_pence,
        });
    }
    Ok(())
}

/// Reads a legacy basket: flat `size,name,price` triplets, size may be blank.
pub fn parse_basket_legacy(
    basket: &str,
    max_pence: i64,
    items: &mut Vec<Item>,
) -> Result<(), BasketProblem> {
    items.clear();
    if basket.trim().is_empty() {
        return Err(BasketProblem::Empty);
    }
    let values = basket.split(',').count();
    if values % 3 != 0 {
        return Err(BasketProblem::Triplets { values });
    }
    let mut parts = basket.split(',');
    let mut item = 0;
    while let (Some(size), Some(name), Some(price)) = (parts.next(), parts.next(), parts.next()) {
        item += 1;
        let price_pence = parse_money(price, max_pence).ok_or_else(|| BasketProblem::Price {
            item,
            found: quote(price.trim()),
        })?;
        let (name, flavour) = name_flavour(name);
        if name.is_empty() {
            return Err(BasketProblem::Shape {
                item,
                expected: "a product name in the middle of the triplet",
                found: "empty".into(),
            });
        }
        items.push(Item {
            size: range_in(basket, size.trim()),
            name: range_in(basket, name),
            flavour: range_in(basket, flavour),
            price_pence,
        });
    }
    Ok(())
}

/// `CASH` or `CARD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Payment {
    /// Paid in cash.
    Cash,
    /// Paid by card.
    Card,
}

impl Payment {
    /// Upper-case name, as staged.
    pub fn as_str(self) -> &'static str {
        match self {
            Payment::Cash => "CASH",
            Payment::Card => "CARD",
        }
    }

    /// Reads `CASH`/`CARD` in any case, with surrounding spaces.
    pub fn parse(s: &str) -> Option<Payment> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("cash") {
            Some(Payment::Cash)
        } else if s.eq_ignore_ascii_case("card") {
            Some(Payment::Card)
        } else {
            None
        }
    }
}

/// A row that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction<'a> {
    /// Line in the file.
    pub line: u64,
    /// When.
    pub occurred_at: Timestamp,
    /// Store name, trimmed.
    pub store: &'a str,
    /// How it was paid.
    pub payment: Payment,
    /// Total in pence.
    pub total_pence: i64,
    /// The basket text the items point into.
    pub basket: &'a str,
    /// Customer key (hex HMAC), when a secret is configured.
    pub customer_key: Option<CustomerKey>,
}

/// Quotes a found value for a message: trimmed, cut to 40 characters, and
/// any run of 12 or more digits (a card number in the wrong column) masked.
pub fn quote(s: &str) -> String {
    // Mask before cutting, so no part of a card number survives the cut.
    let s = mask_long_digit_runs(s.trim());
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

/// What a column should hold, for [`withhold_off_shape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Digits and date/time punctuation.
    Timestamp,
    /// Digits and number punctuation.
    Money,
    /// One short word.
    Payment,
}

/// A field of a row that failed validation, fit to keep or quote: when it
/// does not even have the shape of its column (a name typed into the
/// timestamp column, say) it may be personal data that slipped sideways, so
/// only its length is kept. Digit runs like card numbers are masked anyway.
pub fn withhold_off_shape(s: &str, shape: Shape) -> String {
    match fits_shape(s, shape) {
        true => mask_long_digit_runs(s.trim()),
        false => withheld(s, shape),
    }
}

/// A found value for a message: quoted when it has the shape of its
/// column, described by its length when it does not.
pub fn found(s: &str, shape: Shape) -> String {
    match fits_shape(s, shape) {
        true => quote(s),
        false => withheld(s, shape),
    }
}

fn fits_shape(s: &str, shape: Shape) -> bool {
    let t = s.trim();
    match shape {
        Shape::Timestamp => t
            .chars()
            .all(|c| c.is_ascii_digit() || " /-:.T".contains(c)),
        Shape::Money => t
            .chars()
            .all(|c| c.is_ascii_digit() || ".,-+£$€eE ".contains(c)),
        Shape::Payment => t.chars().count() <= 12 && !t.contains(char::is_whitespace),
    }
}

fn withheld(s: &str, shape: Shape) -> String {
    let what = match shape {
        Shape::Timestamp => "a timestamp",
        Shape::Money => "an amount",
        Shape::Payment => "a payment method",
    };
    format!(
        "[withheld: {} characters that do not look like {what}]",
        s.trim().chars().count()
    )
}

/// Replaces each run of 12 or more digits (spaces and dashes inside allowed)
/// by `[redacted]`.
pub fn mask_long_digit_runs(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let mut j = i;
            let mut digits = 0;
            while j < b.len()
                && (b[j].is_ascii_digit()
                    || ((b[j] == b' ' || b[j] == b'-')
                        && j + 1 < b.len()
                        && b[j + 1].is_ascii_digit()))
            {
                if b[j].is_ascii_digit() {
                    digits += 1;
                }
                j += 1;
            }
            if digits >= 12 {
                out.push_str("[redacted]");
            } else {
                out.push_str(&s[i..j]);
            }
            i = j;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Validates a cleaned row. Items go into `items` (cleared first); issues
/// are handed to `issue`. Returns the transaction when no error was found.
pub fn validate_row<'a>(
    row: &CleanRow<'a>,
    config: &Config,
    items: &mut Vec<Item>,
    issue: &mut impl FnMut(Issue),
) -> Option<Transaction<'a>> {
    let mut ok = true;
    let mut err = |column: u32, code: Code, message: String| {
        ok = false;
        issue(Issue {
            line: row.line,
            column: Some(column),
            code,
            severity: Severity::Error,
            message,
        });
    };
    let cols = row.columns;
    let occurred_at = parse_timestamp(row.timestamp, config.min_year..=config.max_year);
    if occurred_at.is_none() {
        err(
            cols.timestamp,
            Code::BadTimestamp,
            format!(
                "timestamp is {}, expected a real date and time as dd/mm/yyyy HH:MM or yyyy-mm-dd HH:MM:SS, years {} to {}",
                found(row.timestamp, Shape::Timestamp),
                config.min_year,
                config.max_year
            ),
        );
    }
    let store = row.store.trim();
    if store.is_empty() {
        err(
            cols.store,
            Code::BadStore,
            "store is empty, expected the branch name".into(),
        );
    } else if store.len() > 100
        || store.chars().any(char::is_control)
        || store.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'/' || b == b':' || b == b' ' || b == b'-'
        })
    {
        err(
            cols.store,
            Code::BadStore,
            format!(
                "store is {}, expected a branch name (letters, at most 100 characters)",
                quote(store)
            ),
        );
    }
    let parsed = match row.basket_style {
        BasketStyle::Current => parse_basket_current(row.basket, config.max_pence, items),
        BasketStyle::Legacy => parse_basket_legacy(row.basket, config.max_pence, items),
    };
    let basket_ok = match parsed {
        Ok(()) => true,
        Err(p @ BasketProblem::Price { .. }) => {
            err(cols.basket, Code::BadPrice, p.to_string());
            false
        }
        Err(p) => {
            err(cols.basket, Code::BadBasket, p.to_string());
            false
        }
    };
    let total = parse_money(row.total, config.max_pence);
    if total.is_none() {
        err(
            cols.total,
            Code::BadPrice,
            format!(
                "total_price is {}, expected an amount like 5.20 (no sign, at most 2 decimals)",
                found(row.total, Shape::Money)
            ),
        );
    }
    if let (Some(total), true) = (total, basket_ok) {
        let sum: i64 = items.iter().map(|i| i.price_pence).sum();
        if sum != total {
            err(
                cols.total,
                Code::TotalMismatch,
                format!(
                    "items add up to {} but total_price is {}, expected them to match exactly",
                    format_pence(sum),
                    format_pence(total)
                ),
            );
        }
    }
    let payment = Payment::parse(row.payment);
    if payment.is_none() {
        let found = if row.payment.trim().is_empty() {
            "empty".to_string()
        } else {
            found(row.payment, Shape::Payment)
        };
        err(
            cols.payment,
            Code::BadPayment,
            format!("cash_or_card is {found}, expected CASH or CARD"),
        );
    }
    if !ok {
        return None;
    }
    Some(Transaction {
        line: row.line,
        occurred_at: occurred_at?,
        store,
        payment: payment?,
        total_pence: total?,
        basket: row.basket,
        customer_key: row.customer_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: std::ops::RangeInclusive<u16> = 2000..=2099;

    #[test]
    fn timestamps() {
        let ok = [
            ("25/08/2021 09:00", "2021-08-25 09:00:00"),
            ("9/5/2023 9:00", "2023-05-09 09:00:00"),
            ("09/05/2023 09:00:07", "2023-05-09 09:00:07"),
            (" 2020-10-01 09:00:00 ", "2020-10-01 09:00:00"),
            ("2020-10-01T23:59", "2020-10-01 23:59:00"),
            ("29/02/2024 12:00", "2024-02-29 12:00:00"),
        ];
        for (s, want) in ok {
            assert_eq!(
                parse_timestamp(s, Y).map(|t| t.to_string()),
                Some(want.to_string()),
                "{s}"
            );
        }
        let bad = [
            "",
            "25/08/21 09:00",
            "32/01/2021 09:00",
            "29/02/2023 12:00",
            "25/13/2021 09:00",
            "25/08/2021 24:00",
            "25/08/2021 09:60",
            "25/08/2021",
            "2021-08-25",
            "25/08/2021 9:5",
            "25/08/2021 09:00 extra",
            "1999-01-01 00:00",
            "2021/08/25 09:00",
            "٢٥/08/2021 09:00",
        ];
        for s in bad {
            assert_eq!(parse_timestamp(s, Y), None, "{s}");
        }
    }

    #[test]
    fn money() {
        let m = 99_999_999_99;
        for (s, want) in [
            ("2.45", 245),
            ("4", 400),
            ("5.2", 520),
            ("0.0", 0),
            ("10.90", 1090),
            (" 3.50 ", 350),
            ("2.450", 245),
        ] {
            assert_eq!(parse_money(s, m), Some(want), "{s}");
        }
        for s in [
            "",
            "-2.45",
            "2.455",
            "2,45",
            "£2.45",
            "1e3",
            "2.",
            ".5",
            "abc",
            "99999999999999",
            "NaN",
            "+1",
        ] {
            assert_eq!(parse_money(s, m), None, "{s}");
        }
    }

    fn items_of(
        basket: &str,
        legacy: bool,
    ) -> Result<Vec<(String, String, String, i64)>, BasketProblem> {
        let mut items = Vec::new();
        if legacy {
            parse_basket_legacy(basket, 1_000_000, &mut items)?;
        } else {
            parse_basket_current(basket, 1_000_000, &mut items)?;
        }
        Ok(items
            .iter()
            .map(|i| {
                let (s, n, f) = i.parts(basket);
                (s.to_string(), n.to_string(), f.to_string(), i.price_pence)
            })
            .collect())
    }

    fn it(s: &str, n: &str, f: &str, p: i64) -> (String, String, String, i64) {
        (s.into(), n.into(), f.into(), p)
    }

    #[test]
    fn current_baskets() {
        assert_eq!(
            items_of(
                "Regular Flavoured iced latte - Hazelnut - 2.75, Large Latte - 2.45",
                false
            )
            .unwrap(),
            vec![
                it("Regular", "Flavoured iced latte", "Hazelnut", 275),
                it("Large", "Latte", "", 245)
            ]
        );
        assert_eq!(
            items_of("Large Speciality Tea - English breakfast - 1.60", false).unwrap(),
            vec![it("Large", "Speciality Tea", "English breakfast", 160)]
        );
        assert_eq!(
            items_of("Hot Chocolate - 1.40", false).unwrap(),
            vec![it("", "Hot Chocolate", "", 140)]
        );
        assert_eq!(items_of("", false), Err(BasketProblem::Empty));
        assert!(matches!(
            items_of("Large Latte 2.45", false),
            Err(BasketProblem::Shape { item: 1, .. })
        ));
        assert!(matches!(
            items_of("Large Latte - 2.45, Large Mocha - x", false),
            Err(BasketProblem::Price { item: 2, .. })
        ));
        assert!(matches!(
            items_of("Large Latte - -2.45", false),
            Err(BasketProblem::Price { item: 1, .. })
        ));
        assert!(matches!(
            items_of("Large - 2.45", false),
            Err(BasketProblem::Shape { .. }) | Ok(_)
        ));
    }

    #[test]
    fn legacy_baskets() {
        assert_eq!(
            items_of(
                ",Mocha,2.3,,Speciality Tea - Fruit,1.3,Large,Filter coffee,1.8",
                true
            )
            .unwrap(),
            vec![
                it("", "Mocha", "", 230),
                it("", "Speciality Tea", "Fruit", 130),
                it("Large", "Filter coffee", "", 180)
            ]
        );
        assert_eq!(
            items_of(",Babyccino,0.0", true).unwrap(),
            vec![it("", "Babyccino", "", 0)]
        );
        assert_eq!(
            items_of("Large,Latte", true),
            Err(BasketProblem::Triplets { values: 2 })
        );
        assert!(matches!(
            items_of("Large,Latte,-1", true),
            Err(BasketProblem::Price { item: 1, .. })
        ));
    }

    #[test]
    fn quoting_masks_card_numbers() {
        assert_eq!(quote("4111111111111111"), "\"[redacted]\"");
        assert_eq!(quote("4111 1111 1111 1111"), "\"[redacted]\"");
        assert_eq!(quote("12.95"), "\"12.95\"");
        assert_eq!(quote(&"x".repeat(50)), format!("\"{}…\"", "x".repeat(40)));
    }
}
