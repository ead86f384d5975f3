//! The rows that pass from stage to stage, in one place.
//!
//! [`clean`](crate::clean) makes a [`CleanRow`] (name and card number
//! gone), [`validate`](crate::validate) reads it into a [`Transaction`] and
//! its [`Item`]s, and [`transform`](mod@crate::transform) makes star-schema rows
//! of those. Keeping the types here means each stage imports only the rows
//! it reads and writes, not the stage before it.

use std::fmt;
use std::ops::Range;

/// How a basket is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasketStyle {
    /// `Size Name[ - Flavour] - price, ...`
    Current,
    /// `size,name,price,size,name,price...`
    Legacy,
}

/// 1-based column of each kept field in the file, for issue positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    /// Timestamp column.
    pub timestamp: u32,
    /// Store column.
    pub store: u32,
    /// Basket column.
    pub basket: u32,
    /// Total column.
    pub total: u32,
    /// Payment column.
    pub payment: u32,
}

/// The pseudonymous customer key: 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomerKey(pub [u8; 64]);

impl CustomerKey {
    /// The hex text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerKey({})", self.as_str())
    }
}

/// A data row with 7 fields, name and card number gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanRow<'a> {
    /// 1-based line.
    pub line: u64,
    /// Timestamp as written.
    pub timestamp: &'a str,
    /// Store as written.
    pub store: &'a str,
    /// Basket as written.
    pub basket: &'a str,
    /// Total as written.
    pub total: &'a str,
    /// Payment as written.
    pub payment: &'a str,
    /// Derived from the name, when a secret is configured.
    pub customer_key: Option<CustomerKey>,
    /// How the basket is written.
    pub basket_style: BasketStyle,
    /// Where each field was.
    pub columns: Columns,
    /// The record was read as Windows-1252.
    pub reencoded: bool,
}

impl CleanRow<'_> {
    /// The row's layout, for telling the file's format.
    pub fn looks_legacy(&self) -> bool {
        let ts = self.timestamp.trim().as_bytes();
        self.basket_style == BasketStyle::Legacy
            || self.columns.payment < self.columns.total
            || (ts.len() > 4 && ts[..4].iter().all(u8::is_ascii_digit) && ts[4] == b'-')
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
    /// Which distinct item text of the batch this item was read from (its
    /// slot in [`validate::BasketReader`](crate::validate::BasketReader)'s
    /// cache), or [`NO_TEXT_SLOT`]. Equal slots are equal products, so the
    /// transform stage numbers a product once per slot instead of hashing
    /// its parts for every item.
    pub text_slot: u32,
}

/// [`Item::text_slot`] of an item read without the cache (a legacy basket, or a
/// cache that was full).
pub const NO_TEXT_SLOT: u32 = u32::MAX;

impl Item {
    /// The three identity parts as `&str`, given the basket text.
    #[inline]
    pub fn parts<'a>(&self, basket: &'a str) -> (&'a str, &'a str, &'a str) {
        let g = |r: &Range<u32>| &basket[r.start as usize..r.end as usize];
        (g(&self.size), g(&self.name), g(&self.flavour))
    }
}

/// Byte offset of the first ` - ` in `s`, the separator of a basket's parts
/// (name, flavour, price) that `clean` looks for to tell a basket's layout
/// and `validate` splits at. Hand-rolled over `memchr`:
/// `str::split_once(" - ")` builds a substring searcher on every call, and
/// this runs for every item of every basket.
#[inline]
pub fn find_dash(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'-', &b[from..]) {
        let i = from + i;
        if i >= 1 && b[i - 1] == b' ' && b.get(i + 1) == Some(&b' ') {
            return Some(i - 1);
        }
        from = i + 1;
    }
    None
}

/// Byte offset of the last ` - ` in `s` (see [`find_dash`]).
#[inline]
pub fn rfind_dash(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut to = b.len();
    while let Some(i) = memchr::memrchr(b'-', &b[..to]) {
        if i >= 1 && b[i - 1] == b' ' && b.get(i + 1) == Some(&b' ') {
            return Some(i - 1);
        }
        to = i;
    }
    None
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
        let s = s.trim_ascii();
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
