//! Stage 3: a cleaned row to a typed transaction, or issues.
//!
//! Everything here is a pure function of one row: timestamps, money, baskets
//! in both layouts. A row with any error-level issue is rejected by the
//! pipeline; the functions only say what is wrong, in words fit for branch
//! staff, quoting what was found (never a name or a card number: those
//! columns were dropped by [`clean`](crate::clean) before this stage runs).

use crate::privacy::{self, found, has_card_number, quote, Column};
use crate::report::{format_pence, Code, Issue, Severity};
use crate::row::{
    find_dash, rfind_dash, BasketStyle, CleanRow, Item, Payment, Timestamp, Transaction,
    NO_TEXT_SLOT,
};
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
            max_pence: 9_999_999_999,
            min_year: 2000,
            max_year: 2099,
            max_basket_items: 200,
        }
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
/// (the [`BasketReader`] remembers the ones already read).
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
    // A reader that remembers nothing reads every item afresh.
    BasketReader::new(0, 0).parse_current(basket, max_pence, items)
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
        text_slot: NO_TEXT_SLOT,
    })
}

/// Reads the baskets of one batch, remembering the item texts already read.
///
/// A day's export repeats a few dozen item texts thousands of times, so
/// reading each distinct text once and remembering its parts halves the
/// work per item. Each remembered text has a slot ([`Item::text_slot`]), which
/// the transform stage numbers its products by instead of hashing the parts
/// again. The cache is capped: past the cap, items are read in full and
/// have no slot ([`NO_TEXT_SLOT`]).
#[derive(Debug, Default)]
pub struct BasketReader {
    texts: HashMap<Box<str>, Item>,
    cap: usize,
    /// Bytes of text held, against `max_bytes`: item texts can be long.
    bytes: usize,
    max_bytes: usize,
    /// Most items in one basket; `None`: no limit.
    max_items: Option<usize>,
}

impl BasketReader {
    /// A reader remembering at most `cap` item texts, and at most
    /// `max_bytes` of their text.
    pub fn new(cap: usize, max_bytes: usize) -> BasketReader {
        BasketReader {
            cap,
            max_bytes,
            ..BasketReader::default()
        }
    }

    /// The same reader, refusing baskets of more than `max` items with
    /// [`BasketProblem::TooManyItems`].
    pub fn with_max_items(mut self, max: usize) -> BasketReader {
        self.max_items = Some(max);
        self
    }

    /// [`parse_basket_current`] with the cache: items of a remembered text
    /// carry its slot.
    pub fn parse_current(
        &mut self,
        basket: &str,
        max_pence: i64,
        items: &mut Vec<Item>,
    ) -> Result<(), BasketProblem> {
        start_basket(basket, items)?;
        self.within_max_items(basket, 1)?;
        for_each_piece(basket, |item, raw| {
            let text = raw.trim_ascii();
            let at = (text.as_ptr() as usize - basket.as_ptr() as usize) as u32;
            let shift = |r: &Range<u32>| r.start + at..r.end + at;
            let known = match self.texts.get(text) {
                Some(known) => known.clone(),
                None => self.read_new_text(text, item, max_pence)?,
            };
            items.push(Item {
                size: shift(&known.size),
                name: shift(&known.name),
                flavour: shift(&known.flavour),
                price_pence: known.price_pence,
                text_slot: known.text_slot,
            });
            Ok(())
        })
    }

    /// Reads an item text not seen before, against itself (so its ranges
    /// can be reused wherever it appears), and remembers it in the next
    /// slot while the cache has room.
    fn read_new_text(
        &mut self,
        text: &str,
        item: usize,
        max_pence: i64,
    ) -> Result<Item, BasketProblem> {
        let mut own = parse_current_item(text, text, item, max_pence)?;
        if self.texts.len() < self.cap && self.bytes + text.len() <= self.max_bytes {
            self.bytes += text.len();
            own.text_slot = self.texts.len() as u32;
            self.texts.insert(text.into(), own.clone());
        }
        Ok(own)
    }

    /// [`parse_basket_legacy`] within the item limit (legacy items are not
    /// cached: the 2020 exports are small).
    pub fn parse_legacy(
        &mut self,
        basket: &str,
        max_pence: i64,
        items: &mut Vec<Item>,
    ) -> Result<(), BasketProblem> {
        self.within_max_items(basket, 3)?;
        parse_basket_legacy(basket, max_pence, items)
    }

    /// [`BasketProblem::TooManyItems`] when a basket of `values_per_item`
    /// comma-separated values an item holds more items than the limit.
    fn within_max_items(&self, basket: &str, values_per_item: usize) -> Result<(), BasketProblem> {
        // More items than `max` need more than `max * values_per_item`
        // commas: only a basket that long is counted.
        let longer = |&max: &usize| basket.len() > max.saturating_mul(values_per_item);
        if let Some(max) = self.max_items.filter(longer) {
            let values = memchr::memchr_iter(b',', basket.as_bytes()).count() + 1;
            let items = values / values_per_item;
            if items > max {
                return Err(BasketProblem::TooManyItems { items, max });
            }
        }
        Ok(())
    }
}

/// Empties `items` for a new basket; a blank basket is
/// [`BasketProblem::Empty`].
fn start_basket(basket: &str, items: &mut Vec<Item>) -> Result<(), BasketProblem> {
    items.clear();
    if basket.trim_ascii().is_empty() {
        return Err(BasketProblem::Empty);
    }
    Ok(())
}

/// Reads a legacy basket: flat `size,name,price` triplets, size may be blank.
pub fn parse_basket_legacy(
    basket: &str,
    max_pence: i64,
    items: &mut Vec<Item>,
) -> Result<(), BasketProblem> {
    start_basket(basket, items)?;
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
            text_slot: NO_TEXT_SLOT,
        });
    }
    Ok(())
}

/// Validates a cleaned row. Items go into `items` (cleared first); issues
/// are handed to `issue`, in column order. Returns the transaction when no
/// error was found.
///
/// Each field is checked by its own function (`timestamp_field`,
/// `store_field`, `basket_field`, `total_field`, `payment_field`), then
/// the items are checked against the total; every field is checked even
/// after one failed, so a row's report lists all its problems at once.
pub fn validate_row<'a>(
    row: &CleanRow<'a>,
    config: &Config,
    baskets: &mut BasketReader,
    items: &mut Vec<Item>,
    issue: &mut impl FnMut(Issue),
) -> Option<Transaction<'a>> {
    let cols = row.columns;
    let mut findings = Findings {
        line: row.line,
        issue,
        ok: true,
    };
    let occurred_at = findings.field(cols.timestamp, timestamp_field(row.timestamp, config));
    let store = findings.field(cols.store, store_field(row.store));
    let basket = findings.field(cols.basket, basket_field(row, config, baskets, items));
    let total = findings.field(cols.total, total_field(row.total, config));
    if let (Some(total), Some(())) = (total, basket) {
        findings.field(cols.total, items_add_up(items, total));
    }
    let payment = findings.field(cols.payment, payment_field(row.payment));
    if !findings.ok {
        return None;
    }
    Some(Transaction {
        line: row.line,
        occurred_at: occurred_at?,
        store: store?,
        payment: payment?,
        total_pence: total?,
        basket: row.basket,
        customer_key: row.customer_key,
    })
}

/// What is wrong with one field of a row: the issue's code and message
/// (the column is the caller's).
struct Problem {
    code: Code,
    message: String,
}

impl Problem {
    fn new(code: Code, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
        }
    }
}

/// The issues of one row as its fields are checked, and whether it is
/// still fit to stage.
struct Findings<'i, F: FnMut(Issue)> {
    line: u64,
    issue: &'i mut F,
    ok: bool,
}

impl<F: FnMut(Issue)> Findings<'_, F> {
    /// The field's value, or `None` after handing on its problem as an
    /// error at `column`.
    #[inline]
    fn field<T>(&mut self, column: u32, checked: Result<T, Problem>) -> Option<T> {
        match checked {
            Ok(value) => Some(value),
            Err(Problem { code, message }) => {
                self.ok = false;
                (self.issue)(Issue {
                    line: self.line,
                    column: Some(column),
                    code,
                    severity: Severity::Error,
                    message,
                });
                None
            }
        }
    }
}

/// The timestamp: a real date and time within the configured years.
#[inline]
fn timestamp_field(text: &str, config: &Config) -> Result<Timestamp, Problem> {
    parse_timestamp(text, config.min_year..=config.max_year).ok_or_else(|| {
        Problem::new(
            Code::BadTimestamp,
            format!(
                "timestamp is {}, expected a real date and time as dd/mm/yyyy HH:MM or yyyy-mm-dd HH:MM:SS, years {} to {}",
                found(text, Column::Timestamp),
                config.min_year,
                config.max_year
            ),
        )
    })
}

/// The store, trimmed: a branch name, not empty, not a spreadsheet
/// formula, not a card number, not a date or a number, at most 100 bytes
/// of printable text.
#[inline]
fn store_field(text: &str) -> Result<&str, Problem> {
    let store = text.trim_ascii();
    let message = if store.is_empty() {
        "store is empty, expected the branch name".to_string()
    } else if store.starts_with(['=', '+', '-', '@']) {
        format!(
            "store is {}, which reads as a spreadsheet formula, expected a branch name",
            quote(store)
        )
    } else if has_card_number(store) {
        format!(
            "store is {}, a long run of digits like a card number, expected a branch name",
            quote(store)
        )
    } else if store.len() > 100
        || store.bytes().any(|b| b < 0x20 || b == 0x7f)
        || store.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'/' || b == b':' || b == b' ' || b == b'-'
        })
    {
        format!(
            "store is {}, expected a branch name (letters, at most 100 characters)",
            quote(store)
        )
    } else {
        return Ok(store);
    };
    Err(Problem::new(Code::BadStore, message))
}

/// The basket, read into `items` in the row's layout: a price that is not
/// money is `bad_price`, anything else `bad_basket`.
#[inline]
fn basket_field(
    row: &CleanRow<'_>,
    config: &Config,
    baskets: &mut BasketReader,
    items: &mut Vec<Item>,
) -> Result<(), Problem> {
    let parsed = match row.basket_style {
        BasketStyle::Current => baskets.parse_current(row.basket, config.max_pence, items),
        BasketStyle::Legacy => baskets.parse_legacy(row.basket, config.max_pence, items),
    };
    parsed.map_err(|p| {
        let code = match p {
            BasketProblem::Price { .. } => Code::BadPrice,
            _ => Code::BadBasket,
        };
        Problem::new(code, p.to_string())
    })
}

/// The total, in pence.
#[inline]
fn total_field(text: &str, config: &Config) -> Result<i64, Problem> {
    parse_money(text, config.max_pence).ok_or_else(|| {
        Problem::new(
            Code::BadPrice,
            format!(
                "total_price is {}, expected an amount like 5.20 (no sign, at most 2 decimals)",
                found(text, Column::Total)
            ),
        )
    })
}

/// The items' prices add up to the total, to the penny.
#[inline]
fn items_add_up(items: &[Item], total: i64) -> Result<(), Problem> {
    let sum: i64 = items.iter().map(|i| i.price_pence).sum();
    if sum == total {
        return Ok(());
    }
    Err(Problem::new(
        Code::TotalMismatch,
        format!(
            "items add up to {} but total_price is {}, expected them to match exactly",
            format_pence(sum),
            format_pence(total)
        ),
    ))
}

/// The payment method, `CASH` or `CARD`.
#[inline]
fn payment_field(text: &str) -> Result<Payment, Problem> {
    Payment::parse(text).ok_or_else(|| {
        let found = if text.trim().is_empty() {
            "empty".to_string()
        } else {
            found(text, Column::Payment)
        };
        Problem::new(
            Code::BadPayment,
            format!("cash_or_card is {found}, expected CASH or CARD"),
        )
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
        let m = 9_999_999_999;
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

    /// A problem's variant and its number (the item, or the values of
    /// legacy triplets), without the text it quotes.
    fn kind(p: &BasketProblem) -> (&'static str, usize) {
        match p {
            BasketProblem::Empty => ("empty", 0),
            BasketProblem::Shape { item, .. } => ("shape", *item),
            BasketProblem::Price { item, .. } => ("price", *item),
            BasketProblem::Triplets { values } => ("triplets", *values),
            BasketProblem::TooManyItems { items, .. } => ("too_many_items", *items),
            BasketProblem::Part { item, .. } => ("part", *item),
        }
    }

    #[test]
    fn baskets_read_as_items_or_their_first_problem() {
        // Items as (size, name, flavour, pence), or the problem as
        // (variant, number).
        type Read =
            Result<Vec<(&'static str, &'static str, &'static str, i64)>, (&'static str, usize)>;
        // (basket, legacy layout, what is read)
        let cases: Vec<(&str, bool, Read)> = vec![
            (
                "Regular Flavoured iced latte - Hazelnut - 2.75, Large Latte - 2.45",
                false,
                Ok(vec![
                    ("Regular", "Flavoured iced latte", "Hazelnut", 275),
                    ("Large", "Latte", "", 245),
                ]),
            ),
            (
                "Large Speciality Tea - English breakfast - 1.60",
                false,
                Ok(vec![("Large", "Speciality Tea", "English breakfast", 160)]),
            ),
            (
                "Hot Chocolate - 1.40",
                false,
                Ok(vec![("", "Hot Chocolate", "", 140)]),
            ),
            ("", false, Err(("empty", 0))),
            ("Large Latte 2.45", false, Err(("shape", 1))),
            (
                "Large Latte - 2.45, Large Mocha - x",
                false,
                Err(("price", 2)),
            ),
            ("Large Latte - -2.45", false, Err(("price", 1))),
            // A size word alone is the product's name: a size is only read
            // before a name.
            ("Large - 2.45", false, Ok(vec![("", "Large", "", 245)])),
            (
                ",Mocha,2.3,,Speciality Tea - Fruit,1.3,Large,Filter coffee,1.8",
                true,
                Ok(vec![
                    ("", "Mocha", "", 230),
                    ("", "Speciality Tea", "Fruit", 130),
                    ("Large", "Filter coffee", "", 180),
                ]),
            ),
            (",Babyccino,0.0", true, Ok(vec![("", "Babyccino", "", 0)])),
            ("Large,Latte", true, Err(("triplets", 2))),
            ("Large,Latte,-1", true, Err(("price", 1))),
        ];
        for (basket, legacy, want) in cases {
            let got = items_of(basket, legacy);
            let got = got.as_ref().map_err(kind).map(|items| {
                items
                    .iter()
                    .map(|(s, n, f, p)| (s.as_str(), n.as_str(), f.as_str(), *p))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{basket:?}");
        }
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
            let mut reader = BasketReader::new(100, 1 << 20).with_max_items(200);
            let mut items = Vec::new();
            let got = match legacy {
                true => reader.parse_legacy(&basket, 1_000_000, &mut items),
                false => reader.parse_current(&basket, 1_000_000, &mut items),
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
    fn every_field_is_checked_and_told_in_column_order() {
        use crate::row::Columns;
        let row = |timestamp, store, basket, total, payment| CleanRow {
            line: 7,
            timestamp,
            store,
            basket,
            total,
            payment,
            customer_key: None,
            basket_style: BasketStyle::Current,
            columns: Columns {
                timestamp: 1,
                store: 2,
                basket: 4,
                total: 5,
                payment: 6,
            },
            reencoded: false,
        };
        // (row, (column, code) of each issue wanted, in order)
        let cases = [
            (
                row(
                    "25/08/2021 09:00",
                    "Leeds",
                    "Large Latte - 2.45",
                    "2.45",
                    "CASH",
                ),
                vec![],
            ),
            (
                row("soon", "", "Large Latte", "x", "IOU"),
                vec![
                    (1, "bad_timestamp"),
                    (2, "bad_store"),
                    (4, "bad_basket"),
                    (5, "bad_price"),
                    (6, "bad_payment"),
                ],
            ),
            (
                row(
                    "25/08/2021 09:00",
                    "=SUM(A1)",
                    "Large Latte - 2.45",
                    "2.54",
                    "",
                ),
                vec![(2, "bad_store"), (5, "total_mismatch"), (6, "bad_payment")],
            ),
            (
                row(
                    "25/08/2021 09:00",
                    "Leeds",
                    "Large Latte - x",
                    "2.45",
                    "CARD",
                ),
                vec![(4, "bad_price")],
            ),
        ];
        for (row, want) in cases {
            let mut issues = Vec::new();
            let tx = validate_row(
                &row,
                &Config::default(),
                &mut BasketReader::new(10, 1 << 10),
                &mut Vec::new(),
                &mut |i| issues.push(i),
            );
            let got: Vec<(u32, &str)> = issues
                .iter()
                .map(|i| (i.column.unwrap(), i.code.as_str()))
                .collect();
            assert_eq!(got, want, "{row:?}");
            assert_eq!(tx.is_some(), want.is_empty(), "{row:?}");
            assert!(issues
                .iter()
                .all(|i| i.line == 7 && i.severity == Severity::Error));
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
