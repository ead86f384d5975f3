//! Stage 2: a raw record to a row without personal data.
//!
//! This is the first stage that looks at what a record means, and the last
//! one that sees a customer name or a card number: [`Cleaner::clean`] reads
//! the name only to derive the pseudonymous customer key (when a secret is
//! configured), and hands on a [`CleanRow`] that holds neither. Records are
//! told apart by content: blank lines, header lines (anywhere, in any case,
//! with the synonyms seen in real exports; they can lie about column order,
//! so they are skipped, not believed), and data rows, whose payment and total
//! columns are found by what they hold.

use crate::privacy::RejectFields;
use crate::read::RawRecord;
use crate::row::{BasketStyle, CleanRow, Columns, CustomerKey, Payment};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Options of the clean stage.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Secret for the customer key, HMAC-SHA256(secret, normalised name).
    /// Without it the `customer_key` column is empty. Never serialised.
    #[serde(skip_serializing)]
    pub customer_key_secret: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "customer_key_secret",
                &self.customer_key_secret.as_ref().map(|_| "[set]"),
            )
            .finish()
    }
}

/// The key id of a batch staged without a customer-key secret.
pub const NO_CUSTOMER_KEY: &str = "none";

/// What the key id is derived from: HMAC-SHA256(secret, this label). A
/// fixed label, so the id tells secrets apart without revealing one (and
/// without being a customer key of anybody: no name is normalised to it).
const KEY_ID_LABEL: &[u8] = b"cafe-etl customer key id v1";

/// Which secret made a batch's customer keys: the first 16 hex digits of
/// HMAC-SHA256(secret, a fixed label), or [`NO_CUSTOMER_KEY`] without one.
/// Batches whose keys came from different secrets cannot be counted
/// together (the same customer has two keys), so the report, the marker and
/// the warehouse's ledger carry it and the load refuses to mix them.
///
/// ```
/// use cafe_etl::clean::customer_key_id;
/// assert_eq!(customer_key_id(None), "none");
/// let id = customer_key_id(Some("a secret kept by the worker"));
/// assert_eq!(id.len(), 16);
/// assert_ne!(id, customer_key_id(Some("another secret")));
/// ```
pub fn customer_key_id(secret: Option<&str>) -> String {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return NO_CUSTOMER_KEY.to_string();
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(KEY_ID_LABEL);
    mac.finalize().into_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// True for a well-formed key id: 16 lowercase hex digits or `none`.
pub fn is_customer_key_id(s: &str) -> bool {
    s == NO_CUSTOMER_KEY
        || (s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// What a record turned out to be.
#[derive(Debug)]
pub enum Kind<'a> {
    /// Only empty or blank fields.
    Blank,
    /// A header line (skipped wherever it is).
    Header,
    /// A data row with the expected 7 fields.
    Row(CleanRow<'a>),
    /// A data row with another number of fields.
    Malformed {
        /// Fields found.
        fields: usize,
        /// What the privacy rule lets the reject file keep of it.
        kept: RejectFields<'a>,
    },
}

/// Column names seen in real header lines (lowercase, trimmed); the first
/// [`TIMESTAMP_WORD_COUNT`] are the timestamp column's.
const HEADER_WORDS: &[&str] = &[
    "timestamp",
    "date",
    "time",
    "datetime",
    "date_time",
    "date time",
    "transaction_time",
    "order_date",
    "store",
    "branch",
    "branch_name",
    "location",
    "shop",
    "customer",
    "customer_name",
    "custumer",
    "name",
    "basket",
    "basket_items",
    "items",
    "order",
    "orders",
    "products",
    "total",
    "total_price",
    "price",
    "amount",
    "payment",
    "payment_method",
    "payment_type",
    "method",
    "cash_or_card",
    "card",
    "card_number",
    "credit-card-number",
    "credit_card_number",
];

/// How many of [`HEADER_WORDS`], at its head, name the timestamp column.
const TIMESTAMP_WORD_COUNT: usize = 8;

/// The timestamp column's names: a line starting with one is a header.
const TIMESTAMP_WORDS: &[&str] = HEADER_WORDS.split_at(TIMESTAMP_WORD_COUNT).0;

/// Lengths of the shortest and longest words of [`HEADER_WORDS`] (and so
/// of [`TIMESTAMP_WORDS`], its head): a field of another length is no
/// column name, told without comparing it with each word (a hostile file
/// can hold millions of one-letter rows).
const WORD_LENGTHS: std::ops::RangeInclusive<usize> = 4..=18;

fn is_word(field: &str, words: &[&str]) -> bool {
    let f = field.trim();
    WORD_LENGTHS.contains(&f.len()) && words.iter().any(|w| w.eq_ignore_ascii_case(f))
}

/// True when the record is a header line: no digit anywhere, and a
/// timestamp-like first column name or three known column names.
pub fn is_header(rec: &RawRecord<'_>) -> bool {
    let first = rec.get(0).unwrap_or("").trim_start_matches('\u{feff}');
    let first_is_timestamp = is_word(first, TIMESTAMP_WORDS);
    // Fewer than three fields hold three column names only when the first
    // is a timestamp word: most one-field junk stops here.
    if !first_is_timestamp && rec.len() < 3 {
        return false;
    }
    if rec.iter().any(|f| f.bytes().any(|b| b.is_ascii_digit())) {
        return false;
    }
    first_is_timestamp || rec.iter().filter(|f| is_word(f, HEADER_WORDS)).count() >= 3
}

/// The clean stage at run time: the keyed HMAC is built once.
pub struct Cleaner {
    mac: Option<Hmac<Sha256>>,
    name_buf: String,
}

impl std::fmt::Debug for Cleaner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleaner")
            .field("customer_key", &self.mac.is_some())
            .finish()
    }
}

/// Index of each field in the current layout.
const TIMESTAMP: usize = 0;
const STORE: usize = 1;
const NAME: usize = 2;
const BASKET: usize = 3;

impl Cleaner {
    /// A cleaner for the given options.
    pub fn new(config: &Config) -> Cleaner {
        let mac = config.customer_key_secret.as_ref().map(|s| {
            Hmac::<Sha256>::new_from_slice(s.as_bytes()).expect("HMAC takes keys of any length")
        });
        Cleaner {
            mac,
            name_buf: String::new(),
        }
    }

    /// The customer key for a name: HMAC-SHA256(secret, normalised name),
    /// where normalising trims, folds runs of white space to one space and
    /// lowercases, so `Jane  Doe` and `jane doe` are the same customer.
    pub fn customer_key(&mut self, name: &str) -> Option<CustomerKey> {
        let mac = self.mac.as_ref()?;
        if name.trim().is_empty() {
            return None;
        }
        self.name_buf.clear();
        for (i, word) in name.split_whitespace().enumerate() {
            if i > 0 {
                self.name_buf.push(' ');
            }
            for c in word.chars() {
                self.name_buf.extend(c.to_lowercase());
            }
        }
        let mut mac = mac.clone();
        mac.update(self.name_buf.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = [0u8; 64];
        hex::encode_to_slice(digest, &mut hex).ok()?;
        Some(CustomerKey(hex))
    }

    /// Tells what the record is and, for a data row, drops the name and the
    /// card number.
    pub fn clean<'a>(&mut self, rec: &RawRecord<'a>) -> Kind<'a> {
        if rec.iter().all(|f| f.trim_ascii().is_empty()) {
            return Kind::Blank;
        }
        if is_header(rec) {
            return Kind::Header;
        }
        if rec.len() != 7 {
            return Kind::Malformed {
                fields: rec.len(),
                kept: RejectFields::of_record(rec),
            };
        }
        let f = |i| rec.get(i).unwrap_or("");
        // The 2020 tills put the payment before the total, whatever their
        // header says: decide by what the two fields hold.
        let legacy_order = if Payment::parse(f(5)).is_some() {
            false
        } else if Payment::parse(f(4)).is_some() {
            true
        } else {
            looks_like_money(f(5)) && !looks_like_money(f(4))
        };
        let (total, payment, total_col, payment_col) = if legacy_order {
            (f(5), f(4), 6, 5)
        } else {
            (f(4), f(5), 5, 6)
        };
        let basket = f(BASKET);
        let last_comma = memchr::memrchr(b',', basket.as_bytes());
        let basket_style =
            if last_comma.is_some_and(|i| crate::row::find_dash(&basket[i..]).is_none()) {
                BasketStyle::Legacy
            } else {
                BasketStyle::Current
            };
        let customer_key = self.customer_key(f(NAME));
        Kind::Row(CleanRow {
            line: rec.line,
            timestamp: f(TIMESTAMP),
            store: f(STORE),
            basket,
            total,
            payment,
            customer_key,
            basket_style,
            columns: Columns {
                timestamp: 1,
                store: 2,
                basket: 4,
                total: total_col,
                payment: payment_col,
            },
            reencoded: rec.reencoded,
        })
    }
}

/// Digits with at most one dot: enough to tell a total from a payment
/// method when the two columns may come in either order.
fn looks_like_money(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|&b| b == b'.').count() <= 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read;

    fn kinds(input: &str, secret: Option<&str>) -> Vec<String> {
        let mut cleaner = Cleaner::new(&Config {
            customer_key_secret: secret.map(str::to_owned),
        });
        let mut reader = read::Reader::new(read::Config::default());
        let mut out = Vec::new();
        let mut emit = |r: &RawRecord<'_>| -> Result<(), ()> {
            out.push(match cleaner.clean(r) {
                Kind::Blank => "blank".to_string(),
                Kind::Header => "header".to_string(),
                Kind::Malformed { fields, .. } => format!("malformed {fields}"),
                Kind::Row(row) => format!(
                    "row {} {:?} total={} payment={} key={}",
                    row.line,
                    row.basket_style,
                    row.total,
                    row.payment,
                    row.customer_key
                        .map(|k| k.as_str()[..8].to_string())
                        .unwrap_or_default()
                ),
            });
            Ok(())
        };
        reader.push(input.as_bytes(), &mut emit).unwrap();
        reader.finish(&mut emit).unwrap();
        out
    }

    #[test]
    fn headers_blanks_and_rows() {
        let input = "timestamp,branch,custumer,basket,method,price,card\n\
            ,,,,,,\n\
            time, branch, name, order, price, payment, credit-card-number\n\
            2021-02-23 09:01:45,Isle of Wight,Ann Example,\"Large,Latte,2.45\",CARD,2.45,\"visa,4111111111111111\"\n\
            25/08/2021 09:00,Leeds,Bo Example,Large Latte - 2.45,2.45,CASH,\n\
            25/08/2021 09:00,Leeds,Bo Example,Large Latte - 2.45\n";
        assert_eq!(
            kinds(input, None),
            vec![
                "header",
                "blank",
                "header",
                "row 4 Legacy total=2.45 payment=CARD key=",
                "row 5 Current total=2.45 payment=CASH key=",
                "malformed 4",
            ]
        );
    }

    #[test]
    fn word_lengths_cover_every_header_word() {
        assert_eq!(TIMESTAMP_WORDS.first(), Some(&"timestamp"));
        assert_eq!(TIMESTAMP_WORDS.last(), Some(&"order_date"));
        for w in HEADER_WORDS {
            assert!(WORD_LENGTHS.contains(&w.len()), "{w}");
        }
        assert!(HEADER_WORDS
            .iter()
            .any(|w| w.len() == *WORD_LENGTHS.start()));
        assert!(HEADER_WORDS.iter().any(|w| w.len() == *WORD_LENGTHS.end()));
    }

    #[test]
    fn customer_key_is_normalised_hmac() {
        let rows = kinds(
            "25/08/2021 09:00,Leeds,  Ann   EXAMPLE ,Large Latte - 2.45,2.45,CASH,\n25/08/2021 09:00,Leeds,ann example,Large Latte - 2.45,2.45,CASH,\n",
            Some("s3cret"),
        );
        // HMAC-SHA256("s3cret", "ann example"), computed independently.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"ann example");
        let want = hex::encode(mac.finalize().into_bytes());
        assert!(rows[0].ends_with(&want[..8]), "{rows:?}");
        assert_eq!(rows[0].replace("row 1", "row 2"), rows[1]);
    }

    #[test]
    fn secret_is_never_serialised_or_debugged() {
        let c = Config {
            customer_key_secret: Some("hunter2".into()),
        };
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
