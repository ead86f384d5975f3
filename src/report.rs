//! What a run found: the batch report.
//!
//! The same structure is the CLI's `--json` output, the `batches/<id>.json`
//! marker of the staging layout, the worker's HTTP answer and what the
//! browser page draws. It never holds a customer name or a card number.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How bad an [`Issue`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The row is staged; somebody may want to look.
    Warning,
    /// The row is rejected (or, for a file-level issue, the file is refused).
    Error,
}

/// What kind of problem an [`Issue`] is. The snake_case names are a contract
/// shared with the browser page, the worker and the warehouse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// A row without the 7 expected fields.
    FieldCount,
    /// A timestamp that is not a real date and time in a known layout.
    BadTimestamp,
    /// An empty or unusable store name.
    BadStore,
    /// A basket that cannot be read as items.
    BadBasket,
    /// An item price or total that is not an amount of money.
    BadPrice,
    /// Items that do not add up to the total.
    TotalMismatch,
    /// A payment method other than CASH or CARD.
    BadPayment,
    /// Bytes that were not UTF-8 and were read as Windows-1252 (warning).
    Encoding,
    /// A file with no data rows.
    EmptyFile,
    /// A file that is not a CSV text file at all.
    NotCsv,
    /// A record longer than the reader keeps.
    RecordTooLong,
    /// A quoted field that never closes.
    UnterminatedQuote,
    /// A row dated on another day than the file name says (warning).
    DateMismatch,
    /// A quoted field running over several lines: a quote left open.
    LineBreakInField,
    /// A file refused as a whole because its rejected rows are too many
    /// for its size (fewer than [`crate::GIVE_UP_BYTES_PER_REJECT`] bytes of
    /// the file per rejected row after at least [`crate::GIVE_UP_MIN_ROWS`]
    /// rows): reading stops there.
    TooManyRejects,
}

impl Code {
    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::FieldCount => "field_count",
            Code::BadTimestamp => "bad_timestamp",
            Code::BadStore => "bad_store",
            Code::BadBasket => "bad_basket",
            Code::BadPrice => "bad_price",
            Code::TotalMismatch => "total_mismatch",
            Code::BadPayment => "bad_payment",
            Code::Encoding => "encoding",
            Code::EmptyFile => "empty_file",
            Code::NotCsv => "not_csv",
            Code::RecordTooLong => "record_too_long",
            Code::UnterminatedQuote => "unterminated_quote",
            Code::DateMismatch => "date_mismatch",
            Code::LineBreakInField => "line_break_in_field",
            Code::TooManyRejects => "too_many_rejects",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem, pinned to a line (and a column when it is about one field).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// 1-based physical line of the file; 0 for the file as a whole.
    pub line: u64,
    /// 1-based column (field) of the row, when the issue is about one field.
    pub column: Option<u32>,
    /// What kind of problem.
    pub code: Code,
    /// Whether the row is rejected.
    pub severity: Severity,
    /// What was found and what was expected; never personal data.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.column {
            Some(c) => write!(
                f,
                "line {}, column {}: {} [{}]: {}",
                self.line, c, sev, self.code, self.message
            ),
            None => write!(
                f,
                "line {}: {} [{}]: {}",
                self.line, sev, self.code, self.message
            ),
        }
    }
}

/// Which layout a file was written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// `dd/mm/yyyy HH:MM`, basket `Size Name[ - Flavour] - price, ...`, total then payment.
    #[serde(rename = "current")]
    Current,
    /// `YYYY-MM-DD HH:MM:SS`, basket as `size,name,price` triplets, payment then total.
    #[serde(rename = "legacy-2020")]
    Legacy2020,
    /// No data row to tell by.
    #[default]
    #[serde(rename = "unknown")]
    Unknown,
}

impl Format {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Current => "current",
            Format::Legacy2020 => "legacy-2020",
            Format::Unknown => "unknown",
        }
    }
}

/// Rows written per staged table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCounts {
    /// Distinct stores in the batch.
    pub stores: u64,
    /// Distinct products in the batch.
    pub products: u64,
    /// One per staged row.
    pub transactions: u64,
    /// One per distinct (product, price) in each basket.
    pub basket_items: u64,
    /// One per rejected row.
    pub rejects: u64,
}

/// Revenue and transactions of one store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSummary {
    /// Store name as staged.
    pub store: String,
    /// Staged transactions.
    pub transactions: u64,
    /// Sum of totals, in pence.
    pub revenue_pence: i64,
}

/// Units and revenue of one product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSummary {
    /// `Size Name - Flavour`, as a label.
    pub product: String,
    /// Size, possibly empty.
    pub size: String,
    /// Name.
    pub name: String,
    /// Flavour, possibly empty.
    pub flavour: String,
    /// Units sold.
    pub quantity: u64,
    /// Sum of line totals, in pence.
    pub revenue_pence: i64,
}

/// Sales in one hour of the day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourSummary {
    /// 0..=23, local time of the till.
    pub hour: u8,
    /// Staged transactions.
    pub transactions: u64,
    /// Sum of totals, in pence.
    pub revenue_pence: i64,
}

/// The figures the browser charts: what, where, when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Sum of staged totals, in pence.
    pub revenue_pence: i64,
    /// Staged transactions.
    pub transactions: u64,
    /// Units in staged baskets.
    pub items: u64,
    /// Transactions paid in cash.
    pub cash_transactions: u64,
    /// Transactions paid by card.
    pub card_transactions: u64,
    /// Earliest `occurred_at`.
    pub first_at: Option<String>,
    /// Latest `occurred_at`.
    pub last_at: Option<String>,
    /// Per store, by revenue, largest first.
    pub by_store: Vec<StoreSummary>,
    /// Best sellers by units, at most 10.
    pub top_products: Vec<ProductSummary>,
    /// All 24 hours of the day.
    pub by_hour: Vec<HourSummary>,
}

/// One staged row as it leaves the shop, for the preview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewRow {
    /// Line in the file.
    pub line: u64,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub occurred_at: String,
    /// Store name.
    pub store: String,
    /// `CASH` or `CARD`.
    pub payment_method: String,
    /// Total, 2 decimals.
    pub total_price: String,
    /// Items as `2 x Large Latte @ 2.45`.
    pub items: Vec<String>,
    /// Whether a customer key was derived (the key itself is not shown).
    pub has_customer_key: bool,
}

/// Everything about one input file. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// First 32 hex digits of the SHA-256 of the file's bytes.
    pub batch_id: String,
    /// File name the bytes came from.
    pub source: String,
    /// Layout detected from content.
    pub format: Format,
    /// Which secret made the customer keys: 16 hex digits of an HMAC of a
    /// fixed label (see [`crate::clean::customer_key_id`]), or `none` when
    /// the batch has no keys. Markers written before it existed read as
    /// `none`.
    #[serde(default = "no_customer_key")]
    pub customer_key_id: String,

    /// Size of the input in bytes.
    pub bytes: u64,
    /// Physical lines in the file.
    pub lines: u64,
    /// True when the file as a whole was refused (`empty_file`, `not_csv`):
    /// nothing of it is staged.
    pub refused: bool,
    /// Data rows (header and blank lines are not rows).
    pub rows_read: u64,
    /// Rows written to the tables.
    pub rows_staged: u64,
    /// Rows written to the reject file.
    pub rows_rejected: u64,
    /// Header lines skipped.
    pub header_lines: u64,
    /// Blank lines skipped.
    pub blank_lines: u64,
    /// Problems, in line order; at most [`crate::validate::Config::max_issues`].
    pub issues: Vec<Issue>,
    /// Issues found in all, including those not listed.
    pub issues_total: u64,
    /// Issues not listed because of the cap.
    pub issues_omitted: u64,
    /// Error-level issues found.
    pub errors: u64,
    /// Warning-level issues found.
    pub warnings: u64,
    /// Count per issue code (all of them, listed or not).
    pub issue_counts: std::collections::BTreeMap<String, u64>,
    /// Rows per staged table.
    pub tables: TableCounts,
    /// What / where / when.
    pub summary: Summary,
    /// The first staged rows, as they leave the shop.
    pub preview: Vec<PreviewRow>,
}

fn no_customer_key() -> String {
    crate::clean::NO_CUSTOMER_KEY.to_string()
}

impl Report {
    /// Pretty JSON, as written to `batches/<batch_id>.json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The first error-level file issue's message when the file was refused.
    pub fn refusal(&self) -> Option<&Issue> {
        if !self.refused {
            return None;
        }
        self.issues.iter().find(|i| {
            matches!(
                i.code,
                Code::EmptyFile | Code::NotCsv | Code::TooManyRejects
            )
        })
    }

    /// Why the file was refused, in one sentence to show (the refusal's
    /// message); `None` when it was not.
    pub fn refusal_message(&self) -> Option<String> {
        self.refused.then(|| {
            self.refusal()
                .map(|i| i.message.clone())
                .unwrap_or_else(|| "the file cannot be staged".to_string())
        })
    }
}

/// Formats pence as `12.34` (`-0.05` for negatives).
pub fn format_pence(pence: i64) -> String {
    let sign = if pence < 0 { "-" } else { "" };
    let p = pence.unsigned_abs();
    format!("{sign}{}.{:02}", p / 100, p % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_message_is_the_refusal_issues() {
        let issue = |code, message: &str| Issue {
            line: 0,
            column: None,
            code,
            severity: Severity::Error,
            message: message.to_string(),
        };
        let cases = [
            (false, vec![issue(Code::EmptyFile, "x.csv is empty")], None),
            (
                true,
                vec![issue(Code::EmptyFile, "x.csv is empty")],
                Some("x.csv is empty"),
            ),
            (
                true,
                vec![
                    issue(Code::BadPrice, "a row"),
                    issue(Code::NotCsv, "x.csv is a PDF"),
                ],
                Some("x.csv is a PDF"),
            ),
            (true, vec![], Some("the file cannot be staged")),
        ];
        for (refused, issues, want) in cases {
            let r = Report {
                refused,
                issues,
                ..Report::default()
            };
            assert_eq!(r.refusal_message().as_deref(), want);
        }
    }

    #[test]
    fn pence_format() {
        for (p, s) in [
            (0, "0.00"),
            (5, "0.05"),
            (520, "5.20"),
            (123456, "1234.56"),
            (-5, "-0.05"),
        ] {
            assert_eq!(format_pence(p), s);
        }
    }

    #[test]
    fn codes_serialise_to_their_contract_names() {
        for code in [
            Code::FieldCount,
            Code::BadTimestamp,
            Code::TotalMismatch,
            Code::NotCsv,
            Code::DateMismatch,
            Code::TooManyRejects,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&Format::Legacy2020).unwrap(),
            "\"legacy-2020\""
        );
    }
}
