//! The stages wired together, fed by chunks.

use crate::clean::{self, Cleaner, Kind};
use crate::error::{Error, ErrorCode};
use crate::privacy::{mask_card_numbers, RejectFields};
use crate::read::{self, RawRecord, Reader};
use crate::report::{Code, Format, Issue, Report, Severity};
use crate::row::{CleanRow, Item, Timestamp, Transaction};
use crate::stage::{self, TableWriters};
use crate::transform::{self, CountingSink, Transformer};
use crate::validate::{self, BasketReader};
use chrono::Datelike;
use sha2::{Digest, Sha256};
use std::io::Write;

/// Options of every stage, each in its own section (all optional in JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Reader limits.
    pub read: read::Config,
    /// Customer key secret.
    pub clean: clean::Config,
    /// Validation limits.
    pub validate: validate::Config,
    /// Transform caps.
    pub transform: transform::Config,
    /// The compressor of the table files.
    pub stage: stage::Config,
    /// When only checking, skip the SHA-256 of the bytes: the report's
    /// `batch_id` is then empty. The browser page checks first and hashes
    /// only what it uploads; without SHA instructions (WebAssembly) the
    /// hash is a third of the work. Ignored when staging.
    pub skip_batch_id: bool,
    /// When staging, trust that the bytes have the batch id given instead
    /// of hashing them again to check it. For a caller that has just hashed
    /// them and can tell they did not change (the CLI compares the file's
    /// size and modification time); a network upload must not set it.
    pub trust_batch_id: bool,
}

/// Streams the SHA-256 of a file's bytes; its first 32 hex digits are the
/// batch id.
#[derive(Clone, Debug, Default)]
pub struct BatchHasher(Sha256);

impl BatchHasher {
    /// A fresh hasher.
    pub fn new() -> BatchHasher {
        BatchHasher(Sha256::new())
    }
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// The full SHA-256, 64 hex digits.
    pub fn sha256_hex(self) -> String {
        hex::encode(self.0.finalize())
    }
    /// The batch id: the first 32 hex digits of the SHA-256.
    pub fn finish(self) -> String {
        let mut hex = self.sha256_hex();
        hex.truncate(BATCH_ID_DIGITS);
        hex
    }
}

/// The batch id of a whole file: first 32 hex digits of its SHA-256.
///
/// ```
/// assert_eq!(cafe_etl::batch_id(b""), "e3b0c44298fc1c149afbf4c8996fb924");
/// ```
pub fn batch_id(bytes: &[u8]) -> String {
    let mut h = BatchHasher::new();
    h.update(bytes);
    h.finish()
}

/// Hex digits of a batch id: the first of the SHA-256's 64.
const BATCH_ID_DIGITS: usize = 32;

/// True for a well-formed batch id (32 lowercase hex digits).
pub fn is_batch_id(s: &str) -> bool {
    s.len() == BATCH_ID_DIGITS
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The batch id of a file whose SHA-256 is `sha256_hex` (64 hex digits, in
/// either case, as `sha256sum` prints or a client sends it): its first 32
/// digits in lowercase; `None` for anything else.
///
/// ```
/// let sha = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
/// assert_eq!(cafe_etl::batch_id_of_sha256(sha).as_deref(), Some(cafe_etl::batch_id(b"").as_str()));
/// assert_eq!(cafe_etl::batch_id_of_sha256("abc"), None);
/// ```
pub fn batch_id_of_sha256(sha256_hex: &str) -> Option<String> {
    (sha256_hex.len() == 64 && sha256_hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| sha256_hex[..BATCH_ID_DIGITS].to_ascii_lowercase())
}

/// The date a file name carries, as `(year, month, day)`: `leeds_09-05-2023_09-00-00.csv`
/// (day first) or `isle-of-wight_2020-10-01.csv` (ISO).
pub fn date_from_file_name(name: &str) -> Option<(u16, u8, u8)> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name).as_bytes();
    let num = |s: &[u8]| -> Option<u32> {
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0u32, |v, b| v * 10 + (b - b'0') as u32))
    };
    let valid = |y: u32, m: u32, d: u32| -> Option<(u16, u8, u8)> {
        let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)?;
        (1990..=2200)
            .contains(&y)
            .then_some((y as u16, date.month() as u8, date.day() as u8))
    };
    let boundary = |i: usize| i == 0 || !base[i - 1].is_ascii_digit();
    for i in 0..base.len() {
        if !boundary(i) {
            continue;
        }
        let w = &base[i..];
        let end_ok = |n: usize| w.len() == n || !w[n].is_ascii_digit();
        if w.len() >= 10 && w[2] == b'-' && w[5] == b'-' && end_ok(10) {
            if let (Some(d), Some(m), Some(y)) = (num(&w[..2]), num(&w[3..5]), num(&w[6..10])) {
                if let Some(date) = valid(y, m, d) {
                    return Some(date);
                }
            }
        }
        if w.len() >= 10 && w[4] == b'-' && w[7] == b'-' && end_ok(10) {
            if let (Some(y), Some(m), Some(d)) = (num(&w[..4]), num(&w[5..7]), num(&w[8..10])) {
                if let Some(date) = valid(y, m, d) {
                    return Some(date);
                }
            }
        }
    }
    None
}

/// Bytes looked at before deciding whether a file is text at all.
const SNIFF: usize = 8 * 1024;

/// Why a file's first bytes show it is not a CSV export, if they do.
pub fn sniff_not_csv(prefix: &[u8]) -> Option<&'static str> {
    if prefix.starts_with(b"\xFF\xFE") || prefix.starts_with(b"\xFE\xFF") {
        return Some("is UTF-16 text, expected a CSV export in UTF-8 (save it as \"CSV UTF-8\")");
    }
    if prefix.starts_with(b"PK\x03\x04") {
        return Some("is a zip archive or an Excel workbook, expected a CSV export (save it as \"CSV UTF-8\")");
    }
    if prefix.starts_with(b"%PDF") {
        return Some("is a PDF document, expected a CSV export");
    }
    if prefix.contains(&0) {
        return Some("holds binary data (NUL bytes), expected a CSV text export");
    }
    let control = prefix
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
        .count();
    if control * 20 > prefix.len() {
        return Some("holds binary data (control bytes), expected a CSV text export");
    }
    None
}

/// Whether a record has the shape of a till export line: at least 5
/// fields, one of which looks like a date and time (`25/08/2021 09:00`,
/// `2020-10-01 09:00:00`) or an amount of money (`2.45`). Prose with commas
/// (a README, notes) has neither, however many commas it has.
fn looks_like_export_line(rec: &RawRecord<'_>) -> bool {
    fields_look_like_export_line(rec.len(), rec.iter())
}

/// [`looks_like_export_line`] of a line's `count` fields.
fn fields_look_like_export_line<'a>(
    count: usize,
    mut fields: impl Iterator<Item = &'a str>,
) -> bool {
    fn timestamp_like(f: &str) -> bool {
        let digits = f.bytes().filter(u8::is_ascii_digit).count();
        digits >= 6
            && f.len() <= 32
            && f.bytes().any(|b| matches!(b, b'/' | b'-' | b':'))
            && f.bytes()
                .all(|b| b.is_ascii_digit() || b" /-:.T".contains(&b))
    }
    fn money_like(f: &str) -> bool {
        match f.split_once('.') {
            Some((units, pence)) => {
                (1..=8).contains(&units.len())
                    && (1..=2).contains(&pence.len())
                    && units
                        .bytes()
                        .chain(pence.bytes())
                        .all(|b| b.is_ascii_digit())
            }
            None => false,
        }
    }
    let first = fields.next().unwrap_or("");
    count >= 5
        && !starts_like_markdown(first)
        && std::iter::once(first)
            .chain(fields)
            .map(str::trim)
            .any(|f| timestamp_like(f) || money_like(f))
}

/// Whether a line that a quoted field swallowed (a quote left open) has the
/// shape of an export line: such a file is a till export with a broken row,
/// told as that row's `line_break_in_field`, not refused as `not_csv`.
fn swallows_an_export_line(rec: &RawRecord<'_>) -> bool {
    // The record's text without its quotes, cut back into lines: the
    // fields of a swallowed line are its commas' pieces.
    let text = rec.iter().collect::<Vec<_>>().join(",");
    text.split(['\n', '\r'])
        .any(|line| fields_look_like_export_line(line.split(',').count(), line.split(',')))
}

/// Whether a line opens like Markdown (a heading, a list item, a table row,
/// a quote, a code fence): no till writes one, and a README's table may
/// quote an export row (`| a row (25/08/2021 09:00,Leeds,...) | ... |`).
fn starts_like_markdown(first_field: &str) -> bool {
    let first = first_field.trim_start();
    ["#", "```", "- ", "* ", "|", "> "]
        .iter()
        .any(|p| first.starts_with(p))
}

/// Rows read before a file may be given up on (see
/// [`GIVE_UP_BYTES_PER_REJECT`]). Real exports hold a few hundred rows a
/// day.
pub const GIVE_UP_MIN_ROWS: u64 = 10_000;

/// A file is refused as a whole (`too_many_rejects`), and read no further,
/// once at least [`GIVE_UP_MIN_ROWS`] rows are read and its rejected rows
/// have fewer than this many bytes of the file each, on average, so far.
///
/// Why: a rejected row costs an issue and a reject row whatever its own
/// size, so a file of one-byte rows (`a`), or of such rows between the
/// smallest valid ones, would cost several times the CPU per MB of a real
/// export. Measured by `benches/hostile.mjs` (README, "Hostile files"):
/// at 64 bytes the worst mix allowed (three one-byte rows after every five
/// of the smallest valid ones) cost 3.2x a real export natively; at 128
/// (one after every four) it costs what the smallest valid rows alone do.
/// A real till row is 63 to some 150 bytes: a file of them is refused only
/// when nearly all of its rows are rejected.
pub const GIVE_UP_BYTES_PER_REJECT: u64 = 128;

/// Why the reader stopped before the end of its input.
enum Halt {
    /// A writer failed.
    Error(Error),
    /// The file holds too many small rejected rows: read no further.
    GiveUp,
}

struct Processor<W: Write> {
    source: String,
    config: validate::Config,
    cleaner: Cleaner,
    transformer: Transformer,
    baskets: BasketReader,
    items: Vec<Item>,
    row_issues: Vec<Issue>,
    report: Report,
    file_date: Option<(u16, u8, u8)>,
    warned_dates: Vec<(u16, u8, u8)>,
    rows_with_columns: u64,
    /// A line opened like Markdown (`#`, a list, a table, a fence), for
    /// the `not_csv` message.
    markdown: bool,
    writers: Option<TableWriters<W>>,
    /// The spreadsheet download of the rejected rows, when asked for.
    rejects_csv: Option<stage::RejectsCsv>,
    batch_id: String,
    /// The `field_count` issue of the last such row, and the field count
    /// its message is for.
    field_count_issue: Issue,
    field_count_fields: usize,
    /// Reading stopped at this line (the record starting at this byte):
    /// the file holds too many small rejected rows.
    given_up_at: Option<u64>,
    given_up_byte: u64,
}

impl<W: Write> Processor<W> {
    fn note(&mut self, mut issue: Issue) {
        // Row messages quote through the privacy rule already; this is the
        // last line of defence. File-level messages name the file, whose
        // date and time digits would read as a card number.
        if issue.line > 0 {
            if let std::borrow::Cow::Owned(m) = mask_card_numbers(&issue.message) {
                issue.message = m;
            }
        }
        if self.count(issue.code, issue.severity) {
            self.report.issues.push(issue);
        }
    }

    /// Counts an issue; true when the list has room for it (otherwise it
    /// is counted as omitted).
    fn count(&mut self, code: Code, severity: Severity) -> bool {
        let r = &mut self.report;
        r.issues_total += 1;
        match severity {
            Severity::Error => r.errors += 1,
            Severity::Warning => r.warnings += 1,
        }
        // No allocation for a code already counted: a hostile file can
        // hold millions of one-byte rejected rows.
        match r.issue_counts.get_mut(code.as_str()) {
            Some(n) => *n += 1,
            None => {
                r.issue_counts.insert(code.as_str().to_string(), 1);
            }
        }
        if r.issues.len() < self.config.max_issues {
            true
        } else {
            r.issues_omitted += 1;
            false
        }
    }

    fn reject(&mut self, line: u64, kept: &RejectFields<'_>) -> Result<(), Error> {
        self.report.rows_rejected += 1;
        if let Some(w) = self.writers.as_mut() {
            w.reject(line, &self.row_issues, kept)?;
        }
        if let Some(csv) = self.rejects_csv.as_mut() {
            csv.reject(line, &self.row_issues, kept);
        }
        Ok(())
    }

    fn flush_row_issues(&mut self) {
        // Moved, not cloned: past the cap an issue costs its counters only.
        let mut issues = std::mem::take(&mut self.row_issues);
        for issue in issues.drain(..) {
            self.note(issue);
        }
        self.row_issues = issues;
    }

    /// Points the `field_count` issue at a record of `fields` fields on
    /// `line`; its message is formatted once per field count in a run (a
    /// hostile file repeats one count millions of times). It quotes
    /// nothing of the row: the count is all it says.
    fn field_count_issue(&mut self, fields: usize, line: u64) {
        let issue = &mut self.field_count_issue;
        issue.line = line;
        if self.field_count_fields != fields || issue.message.is_empty() {
            self.field_count_fields = fields;
            let hint = if fields > 7 {
                " (a basket with commas must be in double quotes)"
            } else {
                ""
            };
            issue.message = format!(
                "found {fields} field{}, expected 7: timestamp, store, customer_name, basket_items, total_price, cash_or_card, card_number{hint}",
                if fields == 1 { "" } else { "s" }
            );
        }
    }

    /// Handles a record, and halts the reader when the file turns out to
    /// hold too many small rejected rows ([`GIVE_UP_BYTES_PER_REJECT`]).
    fn feed(&mut self, rec: &RawRecord<'_>) -> Result<(), Halt> {
        self.record(rec).map_err(Halt::Error)?;
        let r = &self.report;
        if r.rows_read >= GIVE_UP_MIN_ROWS
            && rec.byte < r.rows_rejected.saturating_mul(GIVE_UP_BYTES_PER_REJECT)
        {
            self.given_up_at = Some(rec.line);
            self.given_up_byte = rec.byte;
            return Err(Halt::GiveUp);
        }
        Ok(())
    }

    /// Handles one record, in the order a reader can follow: a record the
    /// reader could not keep whole (too long, or a quoted field running
    /// over lines) is rejected as it stands; any other is cleaned, then
    /// counted as blank or header, rejected for its field count, or
    /// validated and staged ([`Processor::row`]).
    fn record(&mut self, rec: &RawRecord<'_>) -> Result<(), Error> {
        self.row_issues.clear();
        if rec.too_long {
            return self.reject_too_long(rec);
        }
        if rec.line_breaks > 0 {
            return self.reject_line_breaks(rec);
        }
        if rec.unterminated_quote {
            self.row_issues.push(Issue {
                line: rec.line,
                column: Some(rec.len() as u32),
                code: Code::UnterminatedQuote,
                severity: Severity::Error,
                message: "a quoted field is never closed, expected a closing \" before the end of the file".into(),
            });
        }
        match self.cleaner.clean(rec) {
            Kind::Blank => self.report.blank_lines += 1,
            Kind::Header => self.report.header_lines += 1,
            Kind::Malformed { fields, kept } => {
                self.count_read(rec);
                self.reject_malformed(rec.line, fields, &kept)?;
            }
            Kind::Row(row) => {
                self.count_read(rec);
                self.row(&row)?;
            }
        }
        Ok(())
    }

    /// Counts a record as a row read, and notes its shape (for `not_csv`).
    fn count_read(&mut self, rec: &RawRecord<'_>) {
        self.report.rows_read += 1;
        self.note_shape(rec);
    }

    /// Rejects a record longer than the reader keeps: none of it is kept
    /// (the reader has cut it, so its fields are not what the till wrote).
    fn reject_too_long(&mut self, rec: &RawRecord<'_>) -> Result<(), Error> {
        self.report.rows_read += 1;
        self.row_issues.push(Issue {
            line: rec.line,
            column: None,
            code: Code::RecordTooLong,
            severity: Severity::Error,
            message: "the row is longer than the reader keeps (64 KiB or 512 fields), expected one till transaction per line".into(),
        });
        self.reject(rec.line, &RejectFields::none())?;
        self.flush_row_issues();
        Ok(())
    }

    /// Rejects a record whose quoted field runs over lines.
    fn reject_line_breaks(&mut self, rec: &RawRecord<'_>) -> Result<(), Error> {
        // A quote left open swallows the lines after it, names and card
        // numbers included: nothing of such a record is read further,
        // and its multi-line fields are withheld from the reject file.
        self.count_read(rec);
        if self.rows_with_columns == 0 && swallows_an_export_line(rec) {
            self.rows_with_columns += 1;
        }
        let column = rec
            .iter()
            .position(|f| f.contains(['\n', '\r']))
            .map(|i| i as u32 + 1);
        let last = rec.line + rec.line_breaks as u64;
        self.row_issues.push(Issue {
            line: rec.line,
            column,
            code: Code::LineBreakInField,
            severity: Severity::Error,
            message: format!(
                "a quoted field runs from line {} to line {last}, expected one transaction per line (a double quote is probably left open; the lines it swallowed are part of this rejected row)",
                rec.line
            ),
        });
        if rec.unterminated_quote {
            self.row_issues.push(Issue {
                line: rec.line,
                column,
                code: Code::UnterminatedQuote,
                severity: Severity::Error,
                message: "the quoted field is never closed, expected a closing \" before the end of the file".into(),
            });
        }
        self.reject(rec.line, &RejectFields::of_record(rec))?;
        self.flush_row_issues();
        Ok(())
    }

    /// Rejects a record of `fields` fields instead of 7, keeping what the
    /// privacy rule lets the reject file keep of it.
    fn reject_malformed(
        &mut self,
        line: u64,
        fields: usize,
        kept: &RejectFields<'_>,
    ) -> Result<(), Error> {
        self.field_count_issue(fields, line);
        if !self.row_issues.is_empty() {
            self.row_issues.push(self.field_count_issue.clone());
            self.reject(line, kept)?;
            self.flush_row_issues();
            return Ok(());
        }
        // The one issue of the row, lent to the reject writer and cloned
        // only into the report's list while it has room: no allocation per
        // row past it (a hostile file can hold millions of such rows).
        self.report.rows_rejected += 1;
        let issue = std::slice::from_ref(&self.field_count_issue);
        if let Some(w) = self.writers.as_mut() {
            w.reject(line, issue, kept)?;
        }
        if let Some(csv) = self.rejects_csv.as_mut() {
            csv.reject(line, issue, kept);
        }
        if self.count(Code::FieldCount, Severity::Error) {
            self.report.issues.push(self.field_count_issue.clone());
        }
        Ok(())
    }

    /// A row of 7 fields: its format noted, validated, then staged, or
    /// rejected with every issue found.
    fn row(&mut self, row: &CleanRow<'_>) -> Result<(), Error> {
        self.note_format(row);
        if row.reencoded {
            self.row_issues.push(Issue {
                line: row.line,
                column: None,
                code: Code::Encoding,
                severity: Severity::Warning,
                message: "the row is not valid UTF-8 and was read as Windows-1252, expected UTF-8 (check accented letters)".into(),
            });
        }
        match self.validate(row) {
            Some(tx) => self.stage(&tx)?,
            None => self.reject(row.line, &RejectFields::of_row(row))?,
        }
        self.flush_row_issues();
        Ok(())
    }

    /// The file's format, told by its first row's layout (the 2020 tills
    /// wrote another basket style, column order and timestamp).
    fn note_format(&mut self, row: &CleanRow<'_>) {
        if self.report.format == Format::Unknown {
            self.report.format = if row.looks_legacy() {
                Format::Legacy2020
            } else {
                Format::Current
            };
        }
    }

    /// The row's transaction when it is fit to stage: validated, with no
    /// error among the row's issues (a warning does not stop it).
    fn validate<'a>(&mut self, row: &CleanRow<'a>) -> Option<Transaction<'a>> {
        let mut issues = std::mem::take(&mut self.row_issues);
        let tx = validate::validate_row(
            row,
            &self.config,
            &mut self.baskets,
            &mut self.items,
            &mut |i| issues.push(i),
        );
        self.row_issues = issues;
        let has_error = self
            .row_issues
            .iter()
            .any(|i| i.severity == Severity::Error);
        tx.filter(|_| !has_error)
    }

    /// Stages a valid transaction: its date checked against the file
    /// name's, its rows written (or only counted when checking).
    fn stage(&mut self, tx: &Transaction<'_>) -> Result<(), Error> {
        self.check_date(&tx.occurred_at, tx.line);
        match self.writers.as_mut() {
            Some(w) => self.transformer.add(tx, &self.items, &self.batch_id, w)?,
            None => self
                .transformer
                .add(tx, &self.items, &self.batch_id, &mut CountingSink)?,
        }
        self.report.rows_staged += 1;
        Ok(())
    }

    /// Counts a record shaped like an export line; a file without one is
    /// refused as `not_csv`. Looked at only until the first one is found.
    fn note_shape(&mut self, rec: &RawRecord<'_>) {
        if self.rows_with_columns == 0 {
            if looks_like_export_line(rec) {
                self.rows_with_columns += 1;
            } else if !self.markdown {
                self.markdown = starts_like_markdown(rec.get(0).unwrap_or(""));
            }
        }
    }

    fn check_date(&mut self, at: &Timestamp, line: u64) {
        let Some(file_date) = self.file_date else {
            return;
        };
        let date = at.date();
        if date == file_date || self.warned_dates.contains(&date) || self.warned_dates.len() >= 32 {
            return;
        }
        self.warned_dates.push(date);
        let (fy, fm, fd) = file_date;
        self.row_issues.push(Issue {
            line,
            column: Some(1),
            code: Code::DateMismatch,
            severity: Severity::Warning,
            message: format!(
                "the row is dated {:04}-{:02}-{:02} but the file name says {fy:04}-{fm:02}-{fd:02} (dates are read day first; first such row of that date)",
                date.0, date.1, date.2
            ),
        });
    }
}

/// One file through every stage, fed in chunks of any size.
///
/// ```
/// use cafe_etl::{Config, Pipeline};
/// let mut p = Pipeline::check(Config::default(), "leeds_25-08-2021_09-00-00.csv");
/// p.push(b"25/08/2021 09:00,Leeds,Ann Example,\"Large Latte - 2.45, Large Mocha - 2.70\",5.15,CARD,4111111111111111\n");
/// p.push(b"25/08/2021 09:05,Leeds,Bo Example,Large Latte - 2.45,9.99,CASH,\n");
/// let report = p.finish().unwrap().report;
/// assert_eq!((report.rows_read, report.rows_staged, report.rows_rejected), (2, 1, 1));
/// assert_eq!(report.issues[0].code.as_str(), "total_mismatch");
/// assert_eq!(report.issues[0].line, 2);
/// ```
pub struct Pipeline<W: Write> {
    reader: Reader,
    proc: Processor<W>,
    hasher: BatchHasher,
    hash: bool,
    expected_batch_id: Option<String>,
    expected_sha256: Option<String>,
    pending: Vec<u8>,
    sniffed: bool,
    refused: Option<&'static str>,
    bytes: u64,
}

impl<W: Write> std::fmt::Debug for Pipeline<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.proc.source)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// What a finished pipeline gives back.
#[derive(Debug)]
pub struct Finished<W> {
    /// The batch report.
    pub report: Report,
    /// The table writers in [`Table::ALL`](crate::Table::ALL) order, each
    /// holding a complete gzip file; `None` when only checking.
    pub tables: Option<Vec<W>>,
    /// The rejected rows' download (the bytes not taken yet), when asked
    /// for with [`Pipeline::with_rejects_csv`].
    pub rejects_csv: Option<stage::RejectsCsv>,
}

impl Pipeline<std::io::Sink> {
    /// A pipeline that validates only: it writes nothing, and computes the
    /// batch id as it goes.
    pub fn check(config: Config, source: &str) -> Pipeline<std::io::Sink> {
        Pipeline::build(config, source, None, None)
    }
}

impl<W: Write> Pipeline<W> {
    /// A pipeline that writes the five table files of the staging layout to
    /// the writers `open` gives for each [`Table`](crate::Table).
    ///
    /// The batch id goes into every transaction row, so it must be known
    /// before the first row: compute it with [`batch_id`] or
    /// [`BatchHasher`] beforehand. [`finish`](Pipeline::finish) checks that
    /// the bytes pushed have that id and fails otherwise.
    pub fn transform(
        config: Config,
        source: &str,
        batch_id: &str,
        open: impl FnMut(crate::Table) -> W,
    ) -> Result<Pipeline<W>, Error> {
        if !is_batch_id(batch_id) {
            return Err(Error::coded(
                ErrorCode::BadBatchId,
                format!("batch id {batch_id:?} is not 32 lowercase hex digits"),
            ));
        }
        let writers = TableWriters::new(&config.stage, open);
        Ok(Pipeline::build(
            config,
            source,
            Some(writers),
            Some(batch_id.to_string()),
        ))
    }

    fn build(
        config: Config,
        source: &str,
        writers: Option<TableWriters<W>>,
        batch_id: Option<String>,
    ) -> Pipeline<W> {
        let report = Report {
            source: source.to_string(),
            customer_key_id: clean::customer_key_id(config.clean.customer_key_secret.as_deref()),
            ..Report::default()
        };
        Pipeline {
            reader: Reader::new(config.read.clone()),
            proc: Processor {
                source: source.to_string(),
                cleaner: Cleaner::new(&config.clean),
                transformer: Transformer::new(config.transform.clone()),
                config: config.validate.clone(),
                baskets: BasketReader::new(
                    config.transform.max_products,
                    config.transform.max_cache_bytes,
                )
                .with_max_items(config.validate.max_basket_items),
                items: Vec::with_capacity(16),
                row_issues: Vec::new(),
                report,
                file_date: date_from_file_name(source),
                warned_dates: Vec::new(),
                rows_with_columns: 0,
                markdown: false,
                writers,
                rejects_csv: None,
                batch_id: batch_id.clone().unwrap_or_default(),
                field_count_issue: Issue {
                    line: 0,
                    column: None,
                    code: Code::FieldCount,
                    severity: Severity::Error,
                    message: String::new(),
                },
                field_count_fields: 0,
                given_up_at: None,
                given_up_byte: 0,
            },
            hasher: BatchHasher::new(),
            hash: match &batch_id {
                Some(_) => !config.trust_batch_id,
                None => !config.skip_batch_id,
            },
            expected_batch_id: batch_id,
            expected_sha256: None,
            pending: Vec::new(),
            sniffed: false,
            refused: None,
            bytes: 0,
        }
    }

    /// Feeds the next chunk of the file.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if self.hash {
            self.hasher.update(chunk);
        }
        self.bytes += chunk.len() as u64;
        if self.refused.is_some() || self.proc.given_up_at.is_some() {
            return Ok(());
        }
        if !self.sniffed {
            self.pending.extend_from_slice(chunk);
            if self.pending.len() < SNIFF {
                return Ok(());
            }
            return self.start();
        }
        let proc = &mut self.proc;
        halted(self.reader.push(chunk, &mut |r| proc.feed(r)))
    }

    fn start(&mut self) -> Result<(), Error> {
        self.sniffed = true;
        let pending = std::mem::take(&mut self.pending);
        self.refused = sniff_not_csv(&pending[..pending.len().min(SNIFF)]);
        if self.refused.is_some() {
            return Ok(());
        }
        let proc = &mut self.proc;
        halted(self.reader.push(&pending, &mut |r| proc.feed(r)))
    }

    /// Also checks the bytes' whole SHA-256, not only the batch id (its
    /// first 32 hex digits): [`finish`](Pipeline::finish) fails with
    /// [`ErrorCode::BatchIdMismatch`] unless the bytes pushed have this
    /// SHA-256 (64 hex digits, either case, as a client claims it). The
    /// pipeline hashes the bytes anyway, so a caller that must compare all
    /// 64 digits (the edge worker's `X-Content-SHA256`) needs no second hash.
    pub fn expect_sha256(mut self, sha256: &str) -> Result<Pipeline<W>, Error> {
        if batch_id_of_sha256(sha256).is_none() {
            return Err(Error::coded(
                ErrorCode::Config,
                format!(
                    "the SHA-256 given ({} characters) is not 64 hex digits",
                    sha256.len()
                ),
            ));
        }
        self.hash = true;
        self.expected_sha256 = Some(sha256.to_ascii_lowercase());
        Ok(self)
    }

    /// Also makes the rejected rows' spreadsheet download
    /// ([`RejectsCsv`](crate::stage::RejectsCsv)), whether staging or only
    /// checking: the same rows as the staged reject file.
    pub fn with_rejects_csv(mut self) -> Pipeline<W> {
        self.proc.rejects_csv = Some(stage::RejectsCsv::new());
        self
    }

    /// The rejected rows' download so far, when asked for, to take its bytes
    /// mid-file.
    pub fn rejects_csv_mut(&mut self) -> Option<&mut stage::RejectsCsv> {
        self.proc.rejects_csv.as_mut()
    }

    /// Table writers, for draining compressed bytes mid-file.
    pub fn tables_mut(&mut self) -> Option<&mut TableWriters<W>> {
        self.proc.writers.as_mut()
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.proc.report.rows_read
    }

    /// Bytes pushed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Ends the input and completes the report (and the table files).
    pub fn finish(mut self) -> Result<Finished<W>, Error> {
        if !self.sniffed {
            self.start()?;
        }
        if self.refused.is_none() && self.proc.given_up_at.is_none() {
            let proc = &mut self.proc;
            halted(self.reader.finish(&mut |r| proc.feed(r)))?;
        }
        let sha256 = self.hash.then(|| self.hasher.sha256_hex());
        let id = match (&self.expected_batch_id, &sha256) {
            (_, Some(sha)) => sha[..BATCH_ID_DIGITS].to_string(),
            (Some(expected), None) => expected.clone(),
            (None, None) => String::new(),
        };
        if let Some(expected) = &self.expected_batch_id {
            if *expected != id {
                return Err(Error::coded(
                    ErrorCode::BatchIdMismatch,
                    format!("the bytes have batch id {id}, not the {expected} given at the start: the file changed while it was read"),
                ));
            }
        }
        if let (Some(expected), Some(sha)) = (&self.expected_sha256, &sha256) {
            if expected != sha {
                return Err(Error::coded(
                    ErrorCode::BatchIdMismatch,
                    format!("the bytes have SHA-256 {sha}, not the {expected} given (all 64 digits are compared)"),
                ));
            }
        }
        let mut proc = self.proc;
        proc.report.blank_lines += self.reader.empty_lines();
        let source = proc.source.clone();
        let name = if source.is_empty() {
            "the file".to_string()
        } else {
            source.clone()
        };
        let refusal = if let Some(why) = self.refused {
            Some((Code::NotCsv, format!("{name} {why}")))
        } else if let Some(line) = proc.given_up_at {
            let r = &proc.report;
            Some((
                Code::TooManyRejects,
                format!(
                    "{name} was read up to line {line} only: {} of its first {} rows are rejected, in its first {} bytes (fewer than {GIVE_UP_BYTES_PER_REJECT} bytes of the file per rejected row, after at least {GIVE_UP_MIN_ROWS} rows), expected a till export whose rows mostly go through; nothing of it is staged (the first problems are listed)",
                    r.rows_rejected, r.rows_read, proc.given_up_byte
                ),
            ))
        } else if self.bytes == 0 {
            Some((Code::EmptyFile, format!("{name} is empty (0 bytes), expected a till export with one transaction per line")))
        } else if proc.report.rows_read == 0 {
            Some((
                Code::EmptyFile,
                format!(
                    "{name} has no data rows ({} header and {} blank lines), expected one transaction per line",
                    proc.report.header_lines, proc.report.blank_lines
                ),
            ))
        } else if proc.rows_with_columns == 0 {
            let looks = if proc.markdown {
                "Markdown text"
            } else {
                "plain text"
            };
            let lines = match self.reader.lines() {
                0 | 1 => "1 line".to_string(),
                n => format!("{n} lines"),
            };
            Some((
                Code::NotCsv,
                format!(
                    "{name} looks like {looks} ({lines}): it has no line with the comma-separated columns of a till export, expected 7 fields per line starting with a date and time (25/08/2021 09:00,Leeds,...)"
                ),
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            proc.report.refused = true;
            let issue = Issue {
                line: 0,
                column: None,
                code,
                severity: Severity::Error,
                message,
            };
            // The refusal goes first, and is listed even past the cap.
            proc.note(issue.clone());
            match proc.report.issues.iter().rposition(|i| *i == issue) {
                Some(pos) => {
                    proc.report.issues.remove(pos);
                }
                None => proc.report.issues_omitted -= 1,
            }
            proc.report.issues.insert(0, issue);
        }
        let (mut counts, summary, preview) = proc.transformer.finish();
        counts.rejects = proc.report.rows_rejected;
        let mut report = proc.report;
        report.batch_id = id;
        report.bytes = self.bytes;
        report.lines = self.reader.lines();
        report.tables = counts;
        report.summary = summary;
        report.preview = preview;
        report.issues.sort_by_key(|i| i.line);
        debug_assert_eq!(report.rows_read, report.rows_staged + report.rows_rejected);
        let tables = match proc.writers {
            Some(w) => Some(w.finish()?),
            None => None,
        };
        Ok(Finished {
            report,
            tables,
            rejects_csv: proc.rejects_csv,
        })
    }
}

/// The reader's result with a give-up taken as a normal end (the
/// processor noted where it stopped).
fn halted(r: Result<(), Halt>) -> Result<(), Error> {
    match r {
        Ok(()) | Err(Halt::GiveUp) => Ok(()),
        Err(Halt::Error(e)) => Err(e),
    }
}

/// Validates a whole in-memory file.
///
/// ```
/// let report = cafe_etl::check(b"", "empty.csv", &cafe_etl::Config::default());
/// assert!(report.refused);
/// assert_eq!(report.issues[0].code.as_str(), "empty_file");
/// assert!(report.issues[0].message.contains("empty.csv"));
/// ```
pub fn check(input: &[u8], source: &str, config: &Config) -> Report {
    let mut p = Pipeline::check(config.clone(), source);
    // A sink never fails, and `check` writes to nothing else.
    let _ = p.push(input);
    match p.finish() {
        Ok(f) => f.report,
        Err(e) => unreachable!("check cannot fail: {e}"),
    }
}

/// The staging layout of one file, in memory.
#[derive(Debug, Clone)]
pub struct StagedBatch {
    /// The report (also the last file, `batches/<id>.json`).
    pub report: Report,
    /// Relative path to bytes, in commit order: the five table files, then
    /// the marker. Empty when the file was refused.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Transforms a whole in-memory file into the staging layout.
///
/// ```
/// let csv = b"25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n";
/// let staged = cafe_etl::transform(csv, "leeds.csv", &cafe_etl::Config::default()).unwrap();
/// let paths: Vec<&str> = staged.files.iter().map(|(p, _)| p.as_str()).collect();
/// let id = &staged.report.batch_id;
/// assert_eq!(paths[2], format!("transactions/{id}.csv.gz"));
/// assert_eq!(paths[5], format!("batches/{id}.json"));
/// ```
pub fn transform(input: &[u8], source: &str, config: &Config) -> Result<StagedBatch, Error> {
    let id = batch_id(input);
    // The id was just computed from these very bytes: no second hash.
    let mut config = config.clone();
    config.trust_batch_id = true;
    let mut p = Pipeline::transform(config, source, &id, |_| Vec::new())?;
    p.push(input)?;
    let finished = p.finish()?;
    let report = finished.report;
    if report.refused {
        return Ok(StagedBatch {
            report,
            files: Vec::new(),
        });
    }
    let mut files: Vec<(String, Vec<u8>)> = crate::Table::ALL
        .iter()
        .zip(finished.tables.unwrap_or_default())
        .map(|(t, bytes)| (t.key(&id), bytes))
        .collect();
    files.push((stage::marker_key(&id), report.to_json().into_bytes()));
    Ok(StagedBatch { report, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_dates() {
        let cases = [
            ("leeds_09-05-2023_09-00-00.csv", Some((2023, 5, 9))),
            (
                "data/real/isle-of-wight_2020-10-01.csv",
                Some((2020, 10, 1)),
            ),
            ("2021-02-23-isle-of-wight.csv", Some((2021, 2, 23))),
            ("chesterfield.csv", None),
            ("leeds_31-02-2023.csv", None),
            ("x_123-45-67890.csv", None),
        ];
        for (name, want) in cases {
            assert_eq!(date_from_file_name(name), want, "{name}");
        }
    }

    #[test]
    fn sniffing() {
        assert!(sniff_not_csv(b"25/08/2021 09:00,Leeds,...").is_none());
        assert!(sniff_not_csv(b"\x89PNG\r\n\x1a\n\0\0\0").is_some());
        assert!(sniff_not_csv(b"PK\x03\x04").unwrap().contains("Excel"));
        assert!(sniff_not_csv(b"\xFF\xFEa\0").unwrap().contains("UTF-16"));
    }

    #[test]
    fn batch_id_of_a_sha256_is_its_first_32_digits_in_lowercase() {
        let sha = BatchHasher::new().sha256_hex();
        let id = batch_id(b"");
        for (input, want) in [
            (sha.clone(), Some(id.clone())),
            (sha.to_uppercase(), Some(id.clone())),
            (sha[..63].to_string(), None),
            (format!("{sha}0"), None),
            (format!("{}g", &sha[..63]), None),
            (id.clone(), None),
            (String::new(), None),
        ] {
            assert_eq!(batch_id_of_sha256(&input), want, "{input}");
        }
        assert!(is_batch_id(&id));
        assert!(!is_batch_id(&id.to_uppercase()));
    }

    #[test]
    fn conservation_and_refusals() {
        let r = check(b"timestamp,store\n\n", "h.csv", &Config::default());
        assert!(r.refused);
        assert_eq!(r.header_lines, 1);
        let r = check(
            b"hello world\nno commas here\n",
            "notes.txt",
            &Config::default(),
        );
        assert!(r.refused);
        assert_eq!(r.issues[0].code, Code::NotCsv);
        assert_eq!(r.rows_read, r.rows_staged + r.rows_rejected);
    }

    #[test]
    fn text_without_an_export_shaped_line_is_not_csv() {
        // (input, refused as not_csv, words of the message)
        let cases: &[(&str, bool, &[&str])] = &[
            (
                "# Title\n\nSome prose, with commas, in it, five, six, seven, eight.\n",
                true,
                &[
                    "Markdown text (3 lines)",
                    "no line with the comma-separated columns",
                    "7 fields",
                ],
            ),
            ("a, b, c, d, e, f, g\n", true, &["plain text (1 line)"]),
            (
                "| a, b | c, d, e, f |\n| x, y | z, w, v |\n",
                true,
                &["Markdown"],
            ),
            // A Markdown table quoting an export row is still Markdown.
            (
                "# Figures\n| tiny rows (`25/08/2021 09:00,A,,B - 0.05,0.05,CASH,`) | 3.1x |\n",
                true,
                &["Markdown"],
            ),
            // One line shaped like an export is enough: its problems are
            // row issues, not a refusal.
            (
                "notes, a, b, c, d\n25/08/2021 09:00,Leeds,X,Large Latte - 2.45,2.45\n",
                false,
                &[],
            ),
            (
                "2020-10-01 09:00:00,Isle of Wight,X,oops,CASH,None\n",
                false,
                &[],
            ),
            (
                "yesterday,Leeds,X,Large Latte - 2.45,2.45,CASH,\n",
                false,
                &[],
            ),
            // A quote the first row leaves open swallows the export's
            // lines: a broken row of an export, not plain text.
            (
                "CASH,25/08/2021 08:00,Leeds,\"Large Latte - 2.45,2.45,CARD,\n\
                 25/08/2021 10:00,Leeds,Bo Example,Large Latte - 2.45,2.45,CASH,\n",
                false,
                &[],
            ),
            // Prose with a quote left open is still prose.
            (
                "Some \"notes, with commas, a, b, c\nand more, prose, d, e, f\n",
                true,
                &["plain text (2 lines)"],
            ),
        ];
        for (input, refused, words) in cases {
            let r = check(input.as_bytes(), "README.md", &Config::default());
            assert_eq!(r.refused, *refused, "{input:?}: {:?}", r.issues);
            assert_eq!(r.rows_read, r.rows_staged + r.rows_rejected);
            if *refused {
                assert_eq!(r.issues[0].code, Code::NotCsv);
                assert!(r.issues[0].message.starts_with("README.md looks like"));
                for w in *words {
                    assert!(
                        r.issues[0].message.contains(w),
                        "{:?} lacks {w}",
                        r.issues[0].message
                    );
                }
            }
        }
    }

    /// Rows of a CSV text, read by an independent reader (the `csv` crate,
    /// a native-only dev-dependency).
    #[cfg(not(target_arch = "wasm32"))]
    fn csv_rows(text: &[u8]) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text)
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    /// The rejected rows' download of `input` fed in `chunk`-byte pieces,
    /// its bytes taken after every piece; and what the pipeline finished.
    #[cfg(not(target_arch = "wasm32"))]
    fn download<W: Write>(
        mut p: Pipeline<W>,
        input: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, Finished<W>) {
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            p.push(piece).unwrap();
            out.extend(p.rejects_csv_mut().unwrap().take());
        }
        let mut f = p.finish().unwrap();
        let csv = f.rejects_csv.as_mut().unwrap();
        out.extend(csv.take());
        assert_eq!(csv.rows(), f.report.rows_rejected);
        (out, f)
    }

    #[test]
    #[cfg(not(target_arch = "wasm32"))]
    fn rejects_csv_is_the_staged_reject_file_made_safe() {
        // Rejected rows whose kept cells a spreadsheet would run: a negative
        // total, a store, a basket and a payment starting with = + @ -.
        let input = concat!(
            "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n",
            "25/08/2021 09:01,Leeds,Bo Example,Large Latte - 2.45,-2.45,CASH,\n",
            "25/08/2021 09:02,=HYPERLINK(\"x\"),Cy Example,Large Latte - 2.45,2.45,CASH,\n",
            "25/08/2021 09:03,Leeds,Di Example,\"+Large Latte - 2.45, @x\",2.45,CASH,\n",
            "25/08/2021 09:04,Leeds,Ed Example,Large Latte - 2.45,2.45,-CARD,5555555555554444\n",
            "not a date,Leeds,Fay Example,Large Latte - 2.45,2.45,CASH,\n",
            "25/08/2021 09:05,Leeds\n",
        )
        .as_bytes();
        let id = batch_id(input);
        let staging = Pipeline::transform(Config::default(), "leeds.csv", &id, |_| Vec::new())
            .unwrap()
            .with_rejects_csv();
        let (bytes, f) = download(staging, input, 40);
        assert!(f.report.rows_rejected >= 5, "{:?}", f.report.issues);
        // Only checking (no batch id, no table files) gives the same bytes.
        let checking = Pipeline::check(Config::default(), "leeds.csv").with_rejects_csv();
        assert_eq!(download(checking, input, 7).0, bytes);

        let mut staged = Vec::new();
        let gz = &f.tables.unwrap()[crate::Table::Rejects as usize];
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut staged)
            .unwrap();
        let staged = csv_rows(&staged);

        let text = String::from_utf8(bytes).unwrap();
        let body = text
            .strip_prefix('\u{FEFF}')
            .expect("a byte order mark first");
        assert!(body.starts_with("line,codes,message,"), "{body}");
        assert!(body.ends_with("\r\n") && !body.replace("\r\n", "").contains("\n\n"));
        let rows = csv_rows(body.as_bytes());
        assert_eq!(rows[0], crate::Table::Rejects.columns());
        assert_eq!(rows.len() - 1, staged.len());
        let unsafe_start = |c: &str| {
            matches!(
                c.as_bytes().first(),
                Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
            )
        };
        for (got, want) in rows[1..].iter().zip(&staged) {
            let safe: Vec<String> = want
                .iter()
                .map(|c| {
                    if unsafe_start(c) {
                        format!("'{c}")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            assert_eq!(got, &safe);
        }
        assert!(text.contains("'-2.45"), "{text}");
        for cell in rows.iter().flatten() {
            assert!(!unsafe_start(cell), "{cell:?}");
        }
        for personal in ["Example", "4111111111111111", "5555555555554444"] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
    }

    #[test]
    fn wrong_batch_id_is_an_error() {
        let mut p = Pipeline::transform(Config::default(), "x.csv", &batch_id(b"other"), |_| {
            Vec::new()
        })
        .unwrap();
        p.push(b"25/08/2021 09:00,Leeds,A,Large Latte - 2.45,2.45,CASH,\n")
            .unwrap();
        let e = p.finish().unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::BatchIdMismatch);
        assert!(
            e.to_string()
                .starts_with("stage error: the bytes have batch id"),
            "{e}"
        );
    }

    #[test]
    fn expect_sha256_compares_all_64_digits() {
        let input = b"25/08/2021 09:00,Leeds,A,Large Latte - 2.45,2.45,CASH,\n";
        let mut h = BatchHasher::new();
        h.update(input);
        let sha = h.sha256_hex();
        // Same batch id (first 32 digits), another SHA-256.
        let mut other = sha[..32].to_string();
        other.push_str(&"0".repeat(32));
        let mut cases = vec![
            (sha.clone(), None),
            (sha.to_uppercase(), None),
            (other, Some(crate::ErrorCode::BatchIdMismatch)),
        ];
        if sha[32..] == "0".repeat(32) {
            cases.pop();
        }
        for (given, want) in cases {
            let mut p =
                Pipeline::transform(Config::default(), "x.csv", &batch_id(input), |_| Vec::new())
                    .unwrap()
                    .expect_sha256(&given)
                    .unwrap();
            p.push(input).unwrap();
            match (p.finish(), want) {
                (Ok(f), None) => assert_eq!(f.report.batch_id, &sha[..32]),
                (Err(e), Some(code)) => {
                    assert_eq!(e.code(), code);
                    assert!(
                        e.to_string()
                            .starts_with("stage error: the bytes have SHA-256"),
                        "{e}"
                    );
                }
                (r, want) => panic!(
                    "{given}: {:?}, expected {want:?}",
                    r.map(|f| f.report.batch_id)
                ),
            }
        }
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
            let e = Pipeline::check(Config::default(), "x.csv")
                .expect_sha256(bad)
                .unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::Config, "{bad:?}");
            assert!(!e.to_string().contains(bad) || bad.is_empty(), "{e}");
        }
    }
}
