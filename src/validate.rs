//! Stage 3: a cleaned row to a typed transaction, or issues.
//!
//! Everything here is a pure function of one row: timestamps, money, baskets
//! in both layouts. A row with any error-level issue is rejected by the
//! pipeline; the functions only say what is wrong, in words fit for branch
//! staff, quoting what was found (never a name or a card number: those
//! columns were dropped by [`clean`](crate::clean) before this stage runs).

use crate::clean::{BasketStyle, CleanRow, CustomerKey};
use crate::privacy::{self, found, has_card_number, quote, Column};
use crate::report::{format_pence, Code, Issue, Severity};
use rustc_hash::FxHashMap as HashMap;
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
    /// Most items in one basket (real baskets have under 20): more is
    /// `bad_basket`, so a hostile row cannot make a transaction of
    /// thousands of lines.
    pub max_basket_items: usize,
}

/// Most bytes of a product name or flavour: Redshift counts `VARCHAR` in
/// bytes, and real names are under 40.
pub const MAX_PRODUCT_BYTES: usize = 200;

impl Default for Config {
    fn default() -> Config {
        Config {
            max_issues: 10_000,
            max_pence: 99_999_999_99,
            min_year: 2000,
            max_year: 2099,
            max_basket_items: 200,
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
    let s = s.trim_ascii().as_bytes();
    if let Some(t) = fast_timestamp(s) {
        return check_timestamp(t, years);
    }
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
    let t = Timestamp {
        year: u16::try_from(year).ok()?,
        month: u8::try_from(month).ok()?,
        day: u8::try_from(day).ok()?,
        hour: u8::try_from(hour).ok()?,
        minute: minute as u8,
        second: second as u8,
    };
    check_timestamp(t, years)
}

/// `dd/mm/yyyy HH:MM`, the tills' own layout, without the general parser.
/// Kept by hand: every row has a timestamp, and fixed offsets read it several
/// times faster than a format-string parser (chrono's included).
#[inline]
fn fast_timestamp(s: &[u8]) -> Option<Timestamp> {
    if s.len() != 16 || s[2] != b'/' || s[5] != b'/' || s[10] != b' ' || s[13] != b':' {
        return None;
    }
    let d = |i: usize| -> Option<u32> {
        let (a, b) = (s[i].wrapping_sub(b'0'), s[i + 1].wrapping_sub(b'0'));
        (a < 10 && b < 10).then_some(a as u32 * 10 + b as u32)
    };
    Some(Timestamp {
        day: d(0)? as u8,
        month: d(3)? as u8,
        year: (d(6)? * 100 + d(8)?) as u16,
        hour: d(11)? as u8,
        minute: d(14)? as u8,
        second: 0,
    })
}

fn check_timestamp(t: Timestamp, years: std::ops::RangeInclusive<u16>) -> Option<Timestamp> {
    let Timestamp {
        year,
        month,
        day,
        hour,
        minute,
        second,
    } = t;
    // chrono knows the calendar (29/02 only in leap years).
    let real = chrono::NaiveDate::from_ymd_opt(year.into(), month.into(), day.into())
        .and_then(|d| d.and_hms_opt(hour.into(), minute.into(), second.into()));
    if !years.contains(&year) || real.is_none() {
        return None;
    }
    Some(t)
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
    // One pass over the bytes: this runs for every item and every total.
    let b = s.trim_ascii().as_bytes();
    if b.is_empty() || b.len() > 24 {
        return None;
    }
    let mut i = 0;
    let mut pence: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        if i == 12 {
            return None;
        }
        pence = pence * 10 + (b[i] - b'0') as i64;
        i += 1;
    }
    if i == 0 {
        return None;
    }
    pence *= 100;
    if i < b.len() {
        if b[i] != b'.' || i + 1 == b.len() {
            return None;
        }
        for (n, &d) in b[i + 1..].iter().enumerate() {
            if !d.is_ascii_digit() {
                return None;
            }
            match n {
                0 => pence += (d - b'0') as i64 * 10,
                1 => pence += (d - b'0') as i64,
                _ if d != b'0' => return None,
                _ => {}
            }
        }
    }
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
    /// The product's number in the batch's [`Menu`], or [`NO_PRODUCT`].
    pub product: u32,
}

/// [`Item::product`] of an item no [`Menu`] numbered (the menu was full, or
/// the basket was read without one).
pub const NO_PRODUCT: u32 = u32::MAX;

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
    /// More items than [`Config::max_basket_items`].
    TooManyItems {
        /// Items in the basket.
        items: usize,
        /// The limit.
        max: usize,
    },
    /// The nth item's name or flavour cannot be staged.
    Part {
        /// 1-based item number.
        item: usize,
        /// `name` or `flavour`.
        part: &'static str,
        /// What is wrong with it.
        problem: PartProblem,
    },
}

/// Why a product name or flavour cannot be staged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartProblem {
    /// Longer than [`MAX_PRODUCT_BYTES`], in bytes.
    TooLong(usize),
    /// Holds a control character (a NUL fails Redshift's COPY).
    Control,
    /// Holds a run of digits like a card number.
    CardNumber,
}

/// Checks a product name or flavour: at most [`MAX_PRODUCT_BYTES`] bytes,
/// no control character, no card number. Runs once per distinct item text
/// (the [`Menu`] remembers the ones already read).
fn check_part(item: usize, part: &'static str, text: &str) -> Result<(), BasketProblem> {
    let problem = if text.len() > MAX_PRODUCT_BYTES {
        PartProblem::TooLong(text.len())
    } else if text.is_ascii() {
        if text.bytes().any(|b| b < 0x20 || b == 0x7f) {
            PartProblem::Control
        } else if has_card_number(text) {
            PartProblem::CardNumber
        } else {
            return Ok(());
        }
    } else if text.chars().any(char::is_control) {
        PartProblem::Control
    } else if has_card_number(text) {
        PartProblem::CardNumber
    } else {
        return Ok(());
    };
    Err(BasketProblem::Part {
        item,
        part,
        problem,
    })
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
            BasketProblem::TooManyItems { items, max } => write!(
                f,
                "the basket has {items} items, expected at most {max} (one till transaction)"
            ),
            BasketProblem::Part { item, part, problem } => match problem {
                PartProblem::TooLong(n) => write!(
                    f,
                    "item {item} has a product {part} of {n} bytes, expected at most {MAX_PRODUCT_BYTES}"
                ),
                PartProblem::Control => write!(
                    f,
                    "item {item} has a product {part} with a control character (tab, NUL...), expected printable text"
                ),
                PartProblem::CardNumber => write!(
                    f,
                    "item {item} has a product {part} holding a long run of digits like a card number, expected a product {part}"
                ),
            },
        }
    }
}

/// Byte offset of the first ` - ` in `s`. Hand-rolled over `memchr`:
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

/// Splits `Name - Flavour` at the first ` - `.
#[inline]
fn name_flavour(s: &str) -> (&str, &str) {
    match find_dash(s) {
        Some(i) => (s[..i].trim_ascii(), s[i + 3..].trim_ascii()),
        None => (s.trim_ascii(), &s[s.len()..]),
    }
}

/// Calls `each` with every comma-separated piece of `s`.
#[inline]
fn for_each_piece<E>(s: &str, mut each: impl FnMut(usize, &str) -> Result<(), E>) -> Result<(), E> {
    let mut start = 0;
    let mut n = 0;
    for i in memchr::memchr_iter(b',', s.as_bytes()).chain(std::iter::once(s.len())) {
        n += 1;
        each(n, &s[start..i])?;
        start = i + 1;
    }
    Ok(())
}

/// Reads a current-format basket: `Size Name[ - Flavour] - price, ...`.
pub fn parse_basket_current(
    basket: &str,
    max_pence: i64,
    items: &mut Vec<Item>,
) -> Result<(), BasketProblem> {
    // A menu that remembers nothing reads every item afresh and numbers none.
    Menu::new(0, 0).parse_current(basket, max_pence, items)
}

/// Reads one current-format item, `text` (trimmed, a slice of `basket`),
/// the `item`th of its basket; ranges are relative to `basket`.
fn parse_current_item(
    basket: &str,
    text: &str,
    item: usize,
    max_pence: i64,
) -> Result<Item, BasketProblem> {
    let (desc, price) = match rfind_dash(text) {
        Some(i) => (&text[..i], &text[i + 3..]),
        None => {
            return Err(BasketProblem::Shape {
                item,
                expected: "Size Name[ - Flavour] - price, like Large Latte - 2.45",
                found: privacy::described(text),
            })
        }
    };
    let price_pence = parse_money(price, max_pence).ok_or_else(|| BasketProblem::Price {
        item,
        found: found(price, Column::Total),
    })?;
    let desc = desc.trim_ascii();
    let (size, rest) = match memchr::memchr(b' ', desc.as_bytes()) {
        Some(sp) if SIZES.iter().any(|s| s.eq_ignore_ascii_case(&desc[..sp])) => {
            (&desc[..sp], desc[sp + 1..].trim_ascii_start())
        }
        _ => (&desc[..0], desc),
    };
    let (name, flavour) = name_flavour(rest);
    if name.is_empty() {
        return Err(BasketProblem::Shape {
            item,
            expected: "a product name before the price",
            found: privacy::described(text),
        });
    }
    check_part(item, "name", name)?;
    check_part(item, "flavour", flavour)?;
    Ok(Item {
        size: range_in(basket, size),
        name: range_in(basket, name),
        flavour: range_in(basket, flavour),
        price_pence,
        product: NO_PRODUCT,
    })
}

/// The products of one batch, numbered in order of first appearance, and a
/// cache of the item texts already read.
///
/// A day's export repeats a few dozen item texts thousands of times, so
/// reading each distinct text once and remembering its parts (and its
/// product number, which the transform stage uses instead of hashing the
/// product again) halves the work per item. Both tables are capped: past
/// the cap items are read in full and left unnumbered.
#[derive(Debug, Default)]
pub struct Menu {
    texts: HashMap<Box<str>, Item>,
    products: HashMap<Box<str>, u32>,
    next: u32,
    key: String,
    cap: usize,
    /// Bytes of text held, against `max_bytes`: item texts can be long.
    bytes: usize,
    max_bytes: usize,
    /// Most items in one basket; `None`: no limit.
    max_items: Option<usize>,
}

impl Menu {
    /// A menu remembering at most `cap` products and `cap` item texts, and
    /// at most `max_bytes` of their text.
    pub fn new(cap: usize, max_bytes: usize) -> Menu {
        Menu {
            cap,
            max_bytes,
            ..Menu::default()
        }
    }

    /// The same menu, refusing baskets of more than `max` items with
    /// [`BasketProblem::TooManyItems`].
    pub fn with_max_items(mut self, max: usize) -> Menu {
        self.max_items = Some(max);
        self
    }

    /// The number of a product, given its parts; [`NO_PRODUCT`] when full.
    pub fn number(&mut self, size: &str, name: &str, flavour: &str) -> u32 {
        self.key.clear();
        for (i, part) in [size, name, flavour].iter().enumerate() {
            if i > 0 {
                self.key.push('\x1f');
            }
            self.key.push_str(part);
        }
        if let Some(&n) = self.products.get(self.key.as_str()) {
            return n;
        }
        if self.products.len() >= self.cap || self.bytes + self.key.len() > self.max_bytes {
            return NO_PRODUCT;
        }
        self.bytes += self.key.len();
        let n = self.next;
        self.next += 1;
        self.products.insert(self.key.as_str().into(), n);
        n
    }

    /// [`parse_basket_current`] with the cache, items numbered.
    pub fn parse_current(
        &mut self,
        basket: &str,
        max_pence: i64,
        items: &mut Vec<Item>,
    ) -> Result<(), BasketProblem> {
        items.clear();
        if basket.trim_ascii().is_empty() {
            return Err(BasketProblem::Empty);
        }
        // More items than `max` need at least `max` commas: only a basket
        // that long is counted.
        if let Some(max) = self.max_items.filter(|&max| basket.len() > max) {
            let items = memchr::memchr_iter(b',', basket.as_bytes()).count() + 1;
            if items > max {
                return Err(BasketProblem::TooManyItems { items, max });
            }
        }
        for_each_piece(basket, |item, raw| {
            let text = raw.trim_ascii();
            let at = (text.as_ptr() as usize - basket.as_ptr() as usize) as u32;
            let shift = |r: &Range<u32>| r.start + at..r.end + at;
            let known = match self.texts.get(text) {
                Some(known) => known.clone(),
                None => {
                    // Read it against itself, so the ranges can be reused anywhere.
                    let mut own = parse_current_item(text, text, item, max_pence)?;
                    let (size, name, flavour) = own.parts(text);
                    own.product = self.number(size, name, flavour);
                    if self.texts.len() < self.cap
                        && own.product != NO_PRODUCT
                        && self.bytes + text.len() <= self.max_bytes
                    {
                        self.bytes += text.len();
                        self.texts.insert(text.into(), own.clone());
                    }
                    own
                }
            };
            items.push(Item {
                size: shift(&known.size),
                name: shift(&known.name),
                flavour: shift(&known.flavour),
                price_pence: known.price_pence,
                product: known.product,
            });
            Ok(())
        })
    }

    /// [`parse_basket_legacy`], items numbered.
    pub fn parse_legacy(
        &mut self,
        basket: &str,
        max_pence: i64,
        items: &mut Vec<Item>,
    ) -> Result<(), BasketProblem> {
        if let Some(max) = self.max_items {
            let items = (memchr::memchr_iter(b',', basket.as_bytes()).count() + 1) / 3;
            if items > max {
                return Err(BasketProblem::TooManyItems { items, max });
            }
        }
        parse_basket_legacy(basket, max_pence, items)?;
        for item in items.iter_mut() {
            let (size, name, flavour) = item.parts(basket);
            item.product = self.number(size, name, flavour);
        }
        Ok(())
    }
}

/// Reads a legacy basket: flat `size,name,price` triplets, size may be blank.
pub fn parse_basket_legacy(
    basket: &str,
    max_pence: i64,
    items: &mut Vec<Item>,
) -> Result<(), BasketProblem> {
    items.clear();
    if basket.trim_ascii().is_empty() {
        return Err(BasketProblem::Empty);
    }
    let values = memchr::memchr_iter(b',', basket.as_bytes()).count() + 1;
    if values % 3 != 0 {
        return Err(BasketProblem::Triplets { values });
    }
    let mut parts = basket.split(',');
    let mut item = 0;
    while let (Some(size), Some(name), Some(price)) = (parts.next(), parts.next(), parts.next()) {
        item += 1;
        let price_pence = parse_money(price, max_pence).ok_or_else(|| BasketProblem::Price {
            item,
            found: found(price, Column::Total),
        })?;
        let (name, flavour) = name_flavour(name);
        if name.is_empty() {
            return Err(BasketProblem::Shape {
                item,
                expected: "a product name in the middle of the triplet",
                found: "empty".into(),
            });
        }
        let size = size.trim_ascii();
        check_part(item, "size", size)?;
        check_part(item, "name", name)?;
        check_part(item, "flavour", flavour)?;
        items.push(Item {
            size: range_in(basket, size),
            name: range_in(basket, name),
            flavour: range_in(basket, flavour),
            price_pence,
            product: NO_PRODUCT,
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

/// Validates a cleaned row. Items go into `items` (cleared first); issues
/// are handed to `issue`. Returns the transaction when no error was found.
pub fn validate_row<'a>(
    row: &CleanRow<'a>,
    config: &Config,
    menu: &mut Menu,
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
                found(row.timestamp, Column::Timestamp),
                config.min_year,
                config.max_year
            ),
        );
    }
    let store = row.store.trim_ascii();
    if store.is_empty() {
        err(
            cols.store,
            Code::BadStore,
            "store is empty, expected the branch name".into(),
        );
    } else if store.starts_with(['=', '+', '-', '@']) {
        err(
            cols.store,
            Code::BadStore,
            format!(
                "store is {}, which reads as a spreadsheet formula, expected a branch name",
                quote(store)
            ),
        );
    } else if has_card_number(store) {
        err(
            cols.store,
            Code::BadStore,
            format!(
                "store is {}, a long run of digits like a card number, expected a branch name",
                quote(store)
            ),
        );
    } else if store.len() > 100
        || store.bytes().any(|b| b < 0x20 || b == 0x7f)
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
        BasketStyle::Current => menu.parse_current(row.basket, config.max_pence, items),
        BasketStyle::Legacy => menu.parse_legacy(row.basket, config.max_pence, items),
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
                found(row.total, Column::Total)
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
            found(row.payment, Column::Payment)
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
    fn basket_limits() {
        let long = "N".repeat(MAX_PRODUCT_BYTES + 1);
        let fits = "N".repeat(MAX_PRODUCT_BYTES);
        let many = vec!["Large Latte - 2.45"; 201].join(", ");
        let enough = vec!["Large Latte - 2.45"; 200].join(", ");
        let cases: Vec<(String, bool, Result<usize, &str>)> = vec![
            (
                many,
                false,
                Err("the basket has 201 items, expected at most 200"),
            ),
            (enough, false, Ok(200)),
            (
                format!("Large {long} - 2.45"),
                false,
                Err("item 1 has a product name of 201 bytes, expected at most 200"),
            ),
            (format!("Large {fits} - 2.45"), false, Ok(1)),
            (
                format!("Large Latte - {long} - 2.45"),
                false,
                Err("item 1 has a product flavour of 201 bytes"),
            ),
            (
                "Large La\u{0}tte - 2.45".into(),
                false,
                Err("item 1 has a product name with a control character"),
            ),
            (
                "Large Latte - Hazel\tnut - 2.45".into(),
                false,
                Err("item 1 has a product flavour with a control character"),
            ),
            (
                "Large Latte\u{85} - 2.45".into(),
                false,
                Err("with a control character"),
            ),
            (
                "Large Latte 4111 1111 1111 1111 - 2.45".into(),
                false,
                Err("like a card number"),
            ),
            (
                ",Mocha,2.3,Large,La\u{1}tte,1.0".into(),
                true,
                Err("item 2 has a product name with a control character"),
            ),
            (
                format!(",{long},2.3"),
                true,
                Err("item 1 has a product name of 201 bytes"),
            ),
            (
                format!("{long},Mocha,2.3"),
                true,
                Err("item 1 has a product size of 201 bytes"),
            ),
            (
                vec![",Mocha,2.3"; 201].join(","),
                true,
                Err("the basket has 201 items, expected at most 200"),
            ),
        ];
        for (basket, legacy, want) in cases {
            let mut menu = Menu::new(100, 1 << 20).with_max_items(200);
            let mut items = Vec::new();
            let got = match legacy {
                true => menu.parse_legacy(&basket, 1_000_000, &mut items),
                false => menu.parse_current(&basket, 1_000_000, &mut items),
            };
            match (got, want) {
                (Ok(()), Ok(n)) => assert_eq!(items.len(), n),
                (Err(p), Err(w)) => {
                    let msg = p.to_string();
                    assert!(msg.contains(w), "{msg} lacks {w}");
                    assert!(!msg.contains("4111") && !msg.contains("NNN"), "{msg}");
                }
                (got, want) => panic!(
                    "{:?}: {got:?}, want {want:?}",
                    &basket[..basket.len().min(40)]
                ),
            }
        }
    }

    #[test]
    fn item_messages_quote_no_free_text() {
        for (basket, want) in [
            (
                "Qxname Given",
                "item 1 is [withheld: 12 characters], expected Size Name",
            ),
            (
                "Large Latte - Qxgiven",
                "item 1 has price [withheld: 7 characters that are not an amount]",
            ),
            (
                "Large Latte - 4000.0566.5566.5556",
                "item 1 has price \"[redacted]\"",
            ),
        ] {
            let msg = parse_basket_current(basket, 1_000_000, &mut Vec::new())
                .unwrap_err()
                .to_string();
            assert!(msg.starts_with(want), "{msg}");
        }
    }
}
