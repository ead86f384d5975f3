//! Stage 5: the staging layout, the contract shared with the edge worker and
//! the warehouse loader.
//!
//! ```text
//! <root>/stores/<batch_id>.csv.gz
//! <root>/products/<batch_id>.csv.gz
//! <root>/transactions/<batch_id>.csv.gz
//! <root>/basket_items/<batch_id>.csv.gz
//! <root>/rejects/<batch_id>.csv.gz
//! <root>/batches/<batch_id>.json      written last: the batch is complete
//! <root>/index/stores/<store_slug>/<10^13 - 1 - unix_ms, 13 digits>-<batch_id>
//! <root>/index/commits/<yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>
//! ```
//!
//! Table files are gzip, UTF-8, RFC 4180, no header, ready for Redshift
//! `COPY ... CSV GZIP`. This module writes them into any `impl Write` (files
//! for the CLI, memory for WebAssembly); where they end up is the caller's
//! business, and so is writing the marker last.

use crate::error::{Error, Stage};
use crate::privacy::{mask_card_numbers, RejectFields};
use crate::report::Issue;
use crate::transform::{StarSink, TransactionRow, UuidText};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

#[cfg(not(target_arch = "wasm32"))]
mod threads;

/// What a table's compressor does once it has the gathered rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Nothing more: more rows follow.
    Nothing,
    /// A sync flush (what [`GzEncoder`]'s `flush` does).
    Flush,
    /// The end of the gzip stream.
    Finish,
}

/// The zlib level the table files are compressed at unless
/// [`Config::gzip_level`] says otherwise. Measured (`benches/gzip-levels.mjs`,
/// README "Performance"): level 2 writes files a third smaller than level 1
/// (zlib-rs's level 1 is a quick mode with fixed codes) for 13% more CPU
/// natively and 2% in WebAssembly on the 100 MB export; levels 3 to 6 save
/// another 2-4% for far more CPU.
pub const DEFAULT_GZIP_LEVEL: u32 = 2;

/// Options of the stage step.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// The zlib (zlib-rs, through flate2) level of the table files, 0
    /// (store) to 9; `None` is [`DEFAULT_GZIP_LEVEL`]. Levels above 9 are
    /// read as 9.
    pub gzip_level: Option<u32>,
    /// Compress each big table file on a thread of its own (native builds;
    /// WebAssembly here has no threads and ignores it): the same bytes, for
    /// a second core's worth of zlib when one file is all there is to do.
    /// The caller decides (the CLI does, when it has fewer files than
    /// cores); not part of the serialised options.
    #[serde(skip)]
    pub compression_threads: bool,
}

impl Config {
    /// The level the table files are written at.
    pub fn level(&self) -> u32 {
        self.gzip_level.unwrap_or(DEFAULT_GZIP_LEVEL).min(9)
    }
}

/// A file of the staging layout.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `stores(store_id, store_name)`
    Stores,
    /// `products(product_id, size, name, flavour)`
    Products,
    /// `transactions(transaction_id, store_id, occurred_at, payment_method, total_price, item_count, customer_key, batch_id)`
    Transactions,
    /// `basket_items(transaction_id, product_id, quantity, unit_price, line_total)`
    BasketItems,
    /// `rejects(line, codes, message, timestamp, store, basket_items, total_price, cash_or_card)`
    Rejects,
}

impl Table {
    /// Every table, in the order they are written.
    pub const ALL: [Table; 5] = [
        Table::Stores,
        Table::Products,
        Table::Transactions,
        Table::BasketItems,
        Table::Rejects,
    ];

    /// The folder name in the layout.
    pub fn name(self) -> &'static str {
        match self {
            Table::Stores => "stores",
            Table::Products => "products",
            Table::Transactions => "transactions",
            Table::BasketItems => "basket_items",
            Table::Rejects => "rejects",
        }
    }

    /// Column names, in file order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Stores => &["store_id", "store_name"],
            Table::Products => &["product_id", "size", "name", "flavour"],
            Table::Transactions => &[
                "transaction_id",
                "store_id",
                "occurred_at",
                "payment_method",
                "total_price",
                "item_count",
                "customer_key",
                "batch_id",
            ],
            Table::BasketItems => &[
                "transaction_id",
                "product_id",
                "quantity",
                "unit_price",
                "line_total",
            ],
            Table::Rejects => &[
                "line",
                "codes",
                "message",
                "timestamp",
                "store",
                "basket_items",
                "total_price",
                "cash_or_card",
            ],
        }
    }

    /// `<table>/<batch_id>.csv.gz`, relative to the root.
    pub fn key(self, batch_id: &str) -> String {
        format!("{}/{batch_id}.csv.gz", self.name())
    }
}

/// The folder of the batch markers.
const MARKERS: &str = "batches";

/// `batches/<batch_id>.json`, relative to the root: the completion marker.
pub fn marker_key(batch_id: &str) -> String {
    format!("{MARKERS}/{batch_id}.json")
}

/// Every key of a batch, relative to the root, in commit order: the five
/// table files ([`Table::ALL`]), then the marker.
pub fn batch_keys(batch_id: &str) -> Vec<String> {
    Table::ALL
        .iter()
        .map(|t| t.key(batch_id))
        .chain([marker_key(batch_id)])
        .collect()
}

/// What a key of the staging layout names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staged {
    /// A table file, `<table>/<batch_id>.csv.gz`.
    Table(Table),
    /// A batch's marker, `batches/<batch_id>.json`.
    Marker,
}

impl Staged {
    /// What `key` (relative to the root) is in the layout, if anything:
    /// the folder and the file's ending tell (the id is not checked).
    pub fn of_key(key: &str) -> Option<Staged> {
        let (folder, file) = key.split_once('/')?;
        if file.contains('/') {
            return None;
        }
        let (id, what) = if folder == MARKERS {
            (file.strip_suffix(".json")?, Staged::Marker)
        } else {
            let table = Table::ALL.into_iter().find(|t| t.name() == folder)?;
            (file.strip_suffix(".csv.gz")?, Staged::Table(table))
        };
        (!id.is_empty()).then_some(what)
    }
}

/// The folder of the batch index, beside the layout's tables and markers.
const INDEX: &str = "index";

/// The store index's keys hold `INVERTED_MS − commit time` (13 digits), so
/// that a LIST, in key order, returns a store's batches newest first.
const INVERTED_MS: u64 = 9_999_999_999_999;

/// The two index entries a commit writes before its marker, relative to
/// the root (README "Staging layout"): every batch whose marker exists has
/// both; an entry without its marker is an upload that failed or is still
/// committing, and readers skip it. A retried upload writes new entries
/// for the same batch: readers dedupe by batch id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IndexKeys {
    /// `index/stores/<slug>/<inverted ms>-<batch_id>`: one store's
    /// batches, newest first in LIST order.
    pub store: String,
    /// `index/commits/<yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>`: every
    /// commit by UTC day and time, oldest first, for the loader's sweep.
    pub commit: String,
}

/// Which index an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// `index/stores/<slug>/…`.
    Store,
    /// `index/commits/<day>/…`.
    Commit,
}

/// An index entry's key read back: which index, the batch and the commit
/// time (Unix ms).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// The index the key is in.
    pub kind: IndexKind,
    /// The committed batch.
    pub batch_id: String,
    /// When it was committed, Unix milliseconds.
    pub unix_ms: u64,
}

/// The UTC date and time of a Unix ms, `None` past the index's range
/// (year 2286).
fn utc_of_ms(unix_ms: u64) -> Option<chrono::DateTime<chrono::Utc>> {
    if unix_ms > INVERTED_MS {
        return None;
    }
    chrono::DateTime::from_timestamp_millis(i64::try_from(unix_ms).ok()?)
}

/// The index entries of `batch_id`, committed at `unix_ms` by `store_slug`
/// (the token's store); `None` past the index's time range (13 digits of
/// milliseconds, year 2286).
pub fn index_keys(store_slug: &str, batch_id: &str, unix_ms: u64) -> Option<IndexKeys> {
    use chrono::Timelike;
    let t = utc_of_ms(unix_ms)?;
    Some(IndexKeys {
        store: format!(
            "{}{:013}-{batch_id}",
            store_index_prefix(store_slug),
            INVERTED_MS - unix_ms
        ),
        commit: format!(
            "{}{:02}-{:02}-{:02}.{:03}Z-{batch_id}",
            commits_day_prefix(unix_ms)?,
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_millis()
        ),
    })
}

/// `index/stores/<slug>/`: the folder a store's entries are listed from.
pub fn store_index_prefix(store_slug: &str) -> String {
    format!("{INDEX}/stores/{store_slug}/")
}

/// `index/commits/<yyyy-mm-dd>/`: the folder of one UTC day's commits
/// (the sweep lists one per day); `None` past the index's time range.
pub fn commits_day_prefix(unix_ms: u64) -> Option<String> {
    use chrono::Datelike;
    let t = utc_of_ms(unix_ms)?;
    Some(format!(
        "{INDEX}/commits/{:04}-{:02}-{:02}/",
        t.year(),
        t.month(),
        t.day()
    ))
}

/// What an index key (relative to the root) records, or `None` for any
/// other key: a key of either index whose batch id is one
/// ([`crate::is_batch_id`]) and whose time is a real one.
pub fn parse_index_key(key: &str) -> Option<IndexEntry> {
    let rest = key.strip_prefix(INDEX)?.strip_prefix('/')?;
    if let Some(rest) = rest.strip_prefix("stores/") {
        let (slug, file) = rest.split_once('/')?;
        let (inverted, batch_id) = file.split_once('-')?;
        if slug.is_empty() || inverted.len() != 13 || !inverted.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let unix_ms = INVERTED_MS - inverted.parse::<u64>().ok()?;
        return entry(IndexKind::Store, batch_id, unix_ms);
    }
    let rest = rest.strip_prefix("commits/")?;
    // <yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>
    let (day, file) = rest.split_once('/')?;
    let (time, batch_id) = file.split_once("Z-")?;
    let digits = |s: &str, n: usize| -> Option<u32> {
        (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let mut d = day.split('-');
    let (y, m, dd) = (d.next()?, d.next()?, d.next()?);
    let (hms, ms) = time.split_once('.')?;
    let mut t = hms.split('-');
    let (h, mi, s) = (t.next()?, t.next()?, t.next()?);
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    let at = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(digits(y, 4)?).ok()?,
        digits(m, 2)?,
        digits(dd, 2)?,
    )?
    .and_hms_milli_opt(digits(h, 2)?, digits(mi, 2)?, digits(s, 2)?, digits(ms, 3)?)?
    .and_utc()
    .timestamp_millis();
    entry(IndexKind::Commit, batch_id, u64::try_from(at).ok()?)
}

/// An entry, if `batch_id` is one and the time within the index's range.
fn entry(kind: IndexKind, batch_id: &str, unix_ms: u64) -> Option<IndexEntry> {
    (crate::is_batch_id(batch_id) && unix_ms <= INVERTED_MS).then(|| IndexEntry {
        kind,
        batch_id: batch_id.to_owned(),
        unix_ms,
    })
}

/// Appends one CSV field, quoted only when RFC 4180 needs it.
#[inline]
pub fn push_field(line: &mut Vec<u8>, field: &[u8]) {
    if needs_quotes(field) {
        push_quoted(line, field);
    } else {
        line.extend_from_slice(field);
    }
}

/// Appends one CSV field in quotes, its quotes doubled: copied in runs
/// between quotes, not byte by byte (a reject row's message is long).
fn push_quoted(line: &mut Vec<u8>, field: &[u8]) {
    line.push(b'"');
    let mut rest = field;
    while let Some(q) = memchr::memchr(b'"', rest) {
        line.extend_from_slice(&rest[..=q]);
        line.push(b'"');
        rest = &rest[q + 1..];
    }
    line.extend_from_slice(rest);
    line.push(b'"');
}

/// Appends pence as `12.34` (`-0.05` for negatives).
#[inline]
pub fn push_pence(line: &mut Vec<u8>, pence: i64) {
    let p = pence.unsigned_abs();
    if pence < 0 {
        line.push(b'-');
    }
    line.extend_from_slice(itoa::Buffer::new().format(p / 100).as_bytes());
    line.extend_from_slice(&[b'.', b'0' + (p % 100 / 10) as u8, b'0' + (p % 10) as u8]);
}

/// Rows are gathered into a buffer of this size before they go to zlib: one
/// call per 64 KiB instead of one per field.
const BUFFER: usize = 64 * 1024;

/// One table file being written: zlib, fed rows gathered in `buf`.
struct TableFile<W: Write> {
    gz: Deflate<W>,
    buf: Vec<u8>,
}

/// Where a table's gathered rows are compressed.
enum Deflate<W: Write> {
    /// Here, straight into the writer.
    Here(GzEncoder<W>),
    /// On a thread of its own, the compressed bytes written to the writer
    /// here ([`Config::compression_threads`]).
    #[cfg(not(target_arch = "wasm32"))]
    Thread(threads::Compressor<W>),
}

impl<W: Write> TableFile<W> {
    /// Appends the row's next value as it is (it needs no quotes).
    #[inline(always)]
    fn value(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
    }

    /// Appends the row's next value, quoted when RFC 4180 needs it.
    #[inline]
    fn text(&mut self, value: &[u8]) {
        push_field(&mut self.buf, value);
    }

    /// Appends the row's next value, pence as `12.34`.
    #[inline]
    fn pence(&mut self, pence: i64) {
        push_pence(&mut self.buf, pence);
    }

    /// Appends a separator.
    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    /// Ends the row, and hands the gathered rows to zlib once there are
    /// enough of them.
    fn end_row(&mut self, table: Table) -> Result<(), Error> {
        self.buf.push(b'\n');
        if self.buf.len() >= BUFFER {
            self.flush_buf(table)?;
        }
        Ok(())
    }

    /// Hands the gathered rows to zlib, then does `then` (more rows
    /// follow, a sync flush, or the end of the stream).
    fn send(&mut self, table: Table, then: Then) -> Result<(), Error> {
        let io = |e| Error::io(Stage::Stage, table.name(), e);
        match &mut self.gz {
            Deflate::Here(gz) => {
                if !self.buf.is_empty() {
                    gz.write_all(&self.buf).map_err(io)?;
                    self.buf.clear();
                }
                match then {
                    Then::Nothing => Ok(()),
                    Then::Flush => gz.flush().map_err(io),
                    Then::Finish => gz.try_finish().map_err(io),
                }
            }
            #[cfg(not(target_arch = "wasm32"))]
            Deflate::Thread(c) => c.send(&mut self.buf, then).map_err(io),
        }
    }

    fn flush_buf(&mut self, table: Table) -> Result<(), Error> {
        self.send(table, Then::Nothing)
    }

    fn flush(&mut self, table: Table) -> Result<(), Error> {
        self.send(table, Then::Flush)
    }

    fn finish(mut self, table: Table) -> Result<W, Error> {
        self.send(table, Then::Finish)?;
        match self.gz {
            Deflate::Here(gz) => gz
                .finish()
                .map_err(|e| Error::io(Stage::Stage, table.name(), e)),
            #[cfg(not(target_arch = "wasm32"))]
            Deflate::Thread(c) => Ok(c.into_inner()),
        }
    }

    /// The writer the compressed bytes go to.
    fn get_mut(&mut self) -> &mut W {
        match &mut self.gz {
            Deflate::Here(gz) => gz.get_mut(),
            #[cfg(not(target_arch = "wasm32"))]
            Deflate::Thread(c) => c.get_mut(),
        }
    }
}

#[inline]
fn needs_quotes(field: &[u8]) -> bool {
    // memchr pays a set-up per call: short values (codes, amounts, ids)
    // are looked at byte by byte.
    if field.len() < 32 {
        return field
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    }
    memchr::memchr3(b',', b'"', b'\n', field).is_some() || memchr::memchr(b'\r', field).is_some()
}

/// Makes rejected rows ([`Table::Rejects`]'s columns): the one place a
/// reject row is made, for the staged file and the page's download
/// ([`RejectsCsv`]) alike. The codes and message are built in buffers
/// reused from row to row: a hostile file can hold millions of rejected
/// rows, and each must cost little more than its bytes.
#[derive(Debug, Default)]
struct RejectRows {
    codes: String,
    message: String,
    /// The last message written, the line of the first row of the run of
    /// rows that had it, and how many rows in the run so far.
    run_message: String,
    run_line: u64,
    run_len: u64,
}

impl RejectRows {
    /// Appends one rejected row and its `\n`, each text cell written by
    /// `field`. Past the first [`FULL_MESSAGES_PER_RUN`] rows of a run with
    /// the same message, the message is `same as line N`, N the run's first
    /// row.
    fn push(
        &mut self,
        buf: &mut Vec<u8>,
        line: u64,
        issues: &[Issue],
        kept: &RejectFields<'_>,
        field: fn(&mut Vec<u8>, &[u8]),
    ) {
        let (codes, message) = (&mut self.codes, &mut self.message);
        codes.clear();
        message.clear();
        for (i, issue) in issues.iter().enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            if !issues[..i].iter().any(|earlier| earlier.code == issue.code) {
                if !codes.is_empty() {
                    codes.push(';');
                }
                codes.push_str(issue.code.as_str());
            }
            if let Some(c) = issue.column {
                message.push_str("column ");
                message.push_str(itoa::Buffer::new().format(c));
                message.push_str(": ");
            }
            message.push_str(&issue.message);
        }
        if !message.is_empty() {
            let before = message.len();
            message.push_str("; ");
            kept.write_note(message);
            if message.len() == before + 2 {
                message.truncate(before);
            }
        } else {
            kept.write_note(message);
        }
        // The run is told by the message as built (the same text masks
        // the same way), so a row of a run is neither masked nor quoted.
        if *message == *self.run_message {
            self.run_len += 1;
        } else {
            self.run_message.clear();
            self.run_message.push_str(message);
            self.run_line = line;
            self.run_len = 1;
        }
        field(buf, itoa::Buffer::new().format(line).as_bytes());
        buf.push(b',');
        field(buf, codes.as_bytes());
        buf.push(b',');
        if self.run_len > FULL_MESSAGES_PER_RUN {
            // Needs neither quotes nor a formula guard.
            buf.extend_from_slice(b"same as line ");
            buf.extend_from_slice(itoa::Buffer::new().format(self.run_line).as_bytes());
        } else {
            field(buf, mask_card_numbers(message).as_bytes());
        }
        // Always the five row columns, empty where nothing could be kept.
        for value in kept.values() {
            buf.push(b',');
            field(buf, value.as_bytes());
        }
        buf.push(b'\n');
    }
}

/// Whether a spreadsheet would run a cell as a formula: it starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return (OWASP, "CSV injection").
fn formula_like(cell: &[u8]) -> bool {
    matches!(
        cell.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// Appends one field for a spreadsheet: a formula-like cell gets a leading
/// single quote (shown as text, not run), then RFC 4180 quoting.
fn push_safe_field(line: &mut Vec<u8>, field: &[u8]) {
    if formula_like(field) {
        let mut safe = Vec::with_capacity(field.len() + 1);
        safe.push(b'\'');
        safe.extend_from_slice(field);
        push_field(line, &safe);
    } else {
        push_field(line, field);
    }
}

/// The rejected rows as a CSV to open in a spreadsheet (the browser page's
/// download): the rows of the staged `rejects/<batch_id>.csv.gz`, but plain
/// (not gzip), after a UTF-8 byte order mark and a header line, with CRLF
/// line ends and every formula-like cell neutralised with a leading `'`.
/// It holds no name and no card number, as the staged file.
#[derive(Debug, Default)]
pub struct RejectsCsv {
    buf: Vec<u8>,
    rows: u64,
    made: RejectRows,
}

impl RejectsCsv {
    /// A download with its byte order mark and header line.
    pub fn new() -> RejectsCsv {
        let mut buf = "\u{FEFF}".as_bytes().to_vec();
        for (i, c) in Table::Rejects.columns().iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            push_safe_field(&mut buf, c.as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        RejectsCsv {
            buf,
            rows: 0,
            made: RejectRows::default(),
        }
    }

    /// Appends a rejected row, as [`TableWriters::reject`] stages it.
    pub fn reject(&mut self, line: u64, issues: &[Issue], kept: &RejectFields<'_>) {
        self.made
            .push(&mut self.buf, line, issues, kept, push_safe_field);
        self.buf.pop();
        self.buf.extend_from_slice(b"\r\n");
        self.rows += 1;
    }

    /// Rows appended so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The bytes made since the last call (all of them concatenated in order
    /// are the file), so a long download need not sit in memory twice.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// The five gzip-compressed table files of one batch, written row by row.
pub struct TableWriters<W: Write> {
    files: Vec<TableFile<W>>,
    rows: RejectRows,
}

/// Rows of a run of rejected rows with one message that get it in full;
/// the rest of the run say `same as line N` (its first row). A file of a
/// million one-byte rows would otherwise compress a million 300-byte
/// messages: the message, not the row, was the cost.
pub const FULL_MESSAGES_PER_RUN: u64 = 10;

impl<W: Write> std::fmt::Debug for TableWriters<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriters").finish_non_exhaustive()
    }
}

impl<W: Write> TableWriters<W> {
    /// Opens one writer per [`Table`] with `open`.
    pub fn new(config: &Config, mut open: impl FnMut(Table) -> W) -> TableWriters<W> {
        let level = Compression::new(config.level());
        // No file name and mtime 0 in the gzip header: the same rows give
        // the same bytes on every run and machine.
        let gzip = || flate2::GzBuilder::new().mtime(0);
        let files = Table::ALL
            .iter()
            .map(|&t| {
                #[cfg(not(target_arch = "wasm32"))]
                if config.compression_threads {
                    let gz = gzip().write(Vec::new(), level);
                    return TableFile {
                        gz: Deflate::Thread(threads::Compressor::new(open(t), gz, BUFFER)),
                        buf: Vec::with_capacity(BUFFER),
                    };
                }
                TableFile {
                    gz: Deflate::Here(gzip().write(open(t), level)),
                    buf: Vec::with_capacity(BUFFER),
                }
            })
            .collect();
        TableWriters {
            files,
            rows: RejectRows::default(),
        }
    }

    #[inline]
    fn file(&mut self, table: Table) -> &mut TableFile<W> {
        &mut self.files[table as usize]
    }

    /// The underlying writer of a table, for draining compressed bytes
    /// while the batch is still being written (the WebAssembly pipeline
    /// does this to stream to S3).
    pub fn get_mut(&mut self, table: Table) -> &mut W {
        self.file(table).get_mut()
    }

    /// Pushes every row gathered so far into the compressor and flushes
    /// what it has completed to the writers (a sync flush: a little worse
    /// compression, so call it rarely).
    pub fn flush(&mut self) -> Result<(), Error> {
        for &t in &Table::ALL {
            self.file(t).flush(t)?;
        }
        Ok(())
    }

    /// Writes a rejected row: line, codes, message, and the fields the
    /// privacy rule kept ([`RejectFields`]: the only way fields get here).
    /// The message says what was withheld and why, and is masked for card
    /// numbers once more as a whole. Past the first
    /// [`FULL_MESSAGES_PER_RUN`] rows of a run with the same message, the
    /// message is `same as line N`, N the run's first row.
    pub fn reject(
        &mut self,
        line: u64,
        issues: &[Issue],
        kept: &RejectFields<'_>,
    ) -> Result<(), Error> {
        let TableWriters { files, rows, .. } = self;
        let f = &mut files[Table::Rejects as usize];
        rows.push(&mut f.buf, line, issues, kept, push_field);
        f.buf.pop(); // end_row adds the line end
        f.end_row(Table::Rejects)
    }

    /// Finishes every gzip stream and gives the writers back, in
    /// [`Table::ALL`] order.
    pub fn finish(self) -> Result<Vec<W>, Error> {
        self.files
            .into_iter()
            .zip(Table::ALL)
            .map(|(f, t)| f.finish(t))
            .collect()
    }
}

impl<W: Write> StarSink for TableWriters<W> {
    fn store(&mut self, id: &UuidText, name: &str) -> Result<(), Error> {
        let f = self.file(Table::Stores);
        f.value(id);
        f.byte(b',');
        f.text(name.as_bytes());
        f.end_row(Table::Stores)
    }

    fn product(
        &mut self,
        id: &UuidText,
        size: &str,
        name: &str,
        flavour: &str,
    ) -> Result<(), Error> {
        let f = self.file(Table::Products);
        f.value(id);
        f.byte(b',');
        f.text(size.as_bytes());
        f.byte(b',');
        f.text(name.as_bytes());
        f.byte(b',');
        f.text(flavour.as_bytes());
        f.end_row(Table::Products)
    }

    fn transaction(&mut self, row: &TransactionRow<'_>, batch_id: &str) -> Result<(), Error> {
        let f = self.file(Table::Transactions);
        f.value(row.transaction_id);
        f.byte(b',');
        f.value(row.store_id);
        f.byte(b',');
        f.value(row.occurred_at);
        f.byte(b',');
        f.value(row.payment_method.as_bytes());
        f.byte(b',');
        f.pence(row.total_pence);
        f.byte(b',');
        f.value(itoa::Buffer::new().format(row.item_count as i64).as_bytes());
        f.byte(b',');
        f.value(row.customer_key.map_or(&b""[..], |k| &k.0[..]));
        f.byte(b',');
        f.value(batch_id.as_bytes());
        f.end_row(Table::Transactions)
    }

    fn basket_item(
        &mut self,
        transaction_id: &UuidText,
        product_id: &UuidText,
        quantity: u32,
        unit_pence: i64,
    ) -> Result<(), Error> {
        let f = self.file(Table::BasketItems);
        f.value(transaction_id);
        f.byte(b',');
        f.value(product_id);
        f.byte(b',');
        f.value(itoa::Buffer::new().format(quantity as i64).as_bytes());
        f.byte(b',');
        f.pence(unit_pence);
        f.byte(b',');
        f.pence(unit_pence * quantity as i64);
        f.end_row(Table::BasketItems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        let cases: &[(&str, &str)] = &[
            ("Latte", "Latte"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\r", "\"cr\r\""),
            ("", ""),
            // Past the short-field path: memchr's.
            (&"x".repeat(40), &"x".repeat(40)),
            (
                &format!("{},y", "x".repeat(40)),
                &format!("\"{},y\"", "x".repeat(40)),
            ),
            (
                &format!("{}\"q\"\r", "x".repeat(40)),
                &format!("\"{}\"\"q\"\"\r\"", "x".repeat(40)),
            ),
        ];
        for (field, want) in cases {
            let mut line = Vec::new();
            push_field(&mut line, field.as_bytes());
            assert_eq!(String::from_utf8(line).unwrap(), *want);
        }
    }

    /// The reject rows of `rows` (line, issue message), as CSV text.
    fn reject_rows(rows: &[(u64, &str)]) -> Vec<String> {
        let mut w = TableWriters::new(&Config::default(), |_| Vec::new());
        for &(line, message) in rows {
            let issue = Issue {
                line,
                column: None,
                code: crate::Code::FieldCount,
                severity: crate::Severity::Error,
                message: message.to_string(),
            };
            w.reject(line, &[issue], &RejectFields::none()).unwrap();
        }
        let gz = w.finish().unwrap().pop().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_run_of_one_message_is_written_in_full_then_referred_to() {
        let n = FULL_MESSAGES_PER_RUN;
        let mut rows: Vec<(u64, &str)> = (1..=n + 5).map(|l| (l, "found 1 field")).collect();
        rows.push((n + 6, "found 2 fields"));
        rows.push((n + 8, "found 1 field"));
        let got = reject_rows(&rows);
        assert_eq!(got.len(), rows.len(), "one reject row per rejected row");
        for (i, row) in got.iter().enumerate() {
            let line = rows[i].0;
            let want = match line {
                l if l <= n => "found 1 field".to_string(),
                l if l <= n + 5 => "same as line 1".to_string(),
                l if l == n + 6 => "found 2 fields".to_string(),
                // A new run starts with the message in full again.
                _ => "found 1 field".to_string(),
            };
            assert_eq!(*row, format!("{line},field_count,{want},,,,,"));
        }
    }

    /// A writer whose disk is full after `room` bytes.
    struct Disk {
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.room < b.len() {
                return Err(std::io::Error::other("no space left on device"));
            }
            self.room -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A full disk is the crate's error, stage and table named, with the
    /// table files compressed here or (natively) on their threads; never a
    /// panic.
    #[test]
    fn a_full_disk_is_a_stage_error_naming_the_table() {
        let threads = [false, cfg!(not(target_arch = "wasm32"))];
        for compression_threads in threads {
            let config = Config {
                compression_threads,
                ..Config::default()
            };
            let mut w = TableWriters::new(&config, |_| Disk { room: 1_000 });
            let id: UuidText = [b'0'; 36];
            let mut result = Ok(());
            for q in 0..100_000 {
                result = w.basket_item(&id, &id, q, 245);
                if result.is_err() {
                    break;
                }
            }
            let e = match result {
                Err(e) => e,
                Ok(()) => w.finish().map(|_| ()).unwrap_err(),
            };
            assert_eq!(e.code(), crate::ErrorCode::Io, "{compression_threads}");
            assert_eq!(
                e.to_string(),
                "stage error: basket_items: no space left on device"
            );
        }
    }

    #[test]
    fn formula_like_cells_get_a_quote_then_rfc_4180_quoting() {
        // The expectations of the page's former JavaScript (www/csv.js).
        let cases: &[(&str, &str)] = &[
            ("=1+2", "'=1+2"),
            ("+44 20", "'+44 20"),
            ("-2.45", "'-2.45"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("", ""),
            ("Large Latte - 2.45", "Large Latte - 2.45"),
            ("2.45", "2.45"),
            ("'already", "'already"),
            ("a=b", "a=b"),
            (" =x", " =x"),
            ("plain", "plain"),
            ("a, b", "\"a, b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("12", "12"),
        ];
        for (cell, want) in cases {
            let mut line = Vec::new();
            push_safe_field(&mut line, cell.as_bytes());
            assert_eq!(String::from_utf8(line).unwrap(), *want, "{cell:?}");
        }
    }

    #[test]
    fn rejects_csv_starts_with_a_bom_and_the_header() {
        let mut csv = RejectsCsv::new();
        assert_eq!(csv.rows(), 0);
        let head = String::from_utf8(csv.take()).unwrap();
        assert_eq!(
            head,
            "\u{FEFF}line,codes,message,timestamp,store,basket_items,total_price,cash_or_card\r\n"
        );
        assert!(csv.take().is_empty(), "take hands each byte over once");
    }

    #[test]
    fn pence_table() {
        for (p, want) in [
            (0, "0.00"),
            (5, "0.05"),
            (245, "2.45"),
            (1090, "10.90"),
            (999, "9.99"),
            (1000, "10.00"),
            (9999, "99.99"),
            (10_000, "100.00"),
            (-120, "-1.20"),
            (-10_000, "-100.00"),
            (123_456_789_012, "1234567890.12"),
        ] {
            let mut line = Vec::new();
            push_pence(&mut line, p);
            assert_eq!(String::from_utf8(line).unwrap(), want);
        }
        // The extremes, expected text computed in i128 (no overflow there).
        for p in [i64::MAX, i64::MIN] {
            let wide = p as i128;
            let sign = if wide < 0 { "-" } else { "" };
            let want = format!("{sign}{}.{:02}", wide.abs() / 100, wide.abs() % 100);
            let mut line = Vec::new();
            push_pence(&mut line, p);
            assert_eq!(String::from_utf8(line).unwrap(), want);
        }
    }

    #[test]
    fn index_keys_and_their_entries() {
        let id = "0123456789abcdef0123456789abcdef";
        // 2026-12-01T20:05:03.123Z
        let at = 1_796_155_503_123;
        let keys = index_keys("leeds", id, at).unwrap();
        // The inverted time: 10^13 - 1 less the commit time, in 13 digits.
        let (inverted, rest) = keys.store["index/stores/leeds/".len()..].split_at(13);
        assert_eq!(inverted.parse::<u64>().unwrap() + at, 9_999_999_999_999);
        assert_eq!(rest, format!("-{id}"));
        assert_eq!(
            keys.commit,
            format!("index/commits/2026-12-01/20-05-03.123Z-{id}")
        );
        assert!(keys.store.starts_with(&store_index_prefix("leeds")));
        assert!(keys.commit.starts_with(&commits_day_prefix(at).unwrap()));
        // The ends of the range: 13 digits either way.
        assert_eq!(
            index_keys("leeds", id, 0).unwrap().store,
            format!("index/stores/leeds/{}-{id}", "9".repeat(13))
        );
        assert_eq!(
            index_keys("leeds", id, INVERTED_MS).unwrap().store,
            format!("index/stores/leeds/{}-{id}", "0".repeat(13))
        );
        assert_eq!(index_keys("leeds", id, INVERTED_MS + 1), None);
        assert_eq!(commits_day_prefix(INVERTED_MS + 1), None);
        let nines = "9".repeat(13);
        let store = |unix_ms| {
            Some(IndexEntry {
                kind: IndexKind::Store,
                batch_id: id.into(),
                unix_ms,
            })
        };
        let commit = |unix_ms| {
            Some(IndexEntry {
                kind: IndexKind::Commit,
                batch_id: id.into(),
                unix_ms,
            })
        };
        for (key, want) in [
            (keys.store.clone(), store(at)),
            (keys.commit.clone(), commit(at)),
            (format!("index/stores/a-b/{nines}-{id}"), store(0)),
            (
                format!("index/commits/1970-01-01/00-00-00.000Z-{id}"),
                commit(0),
            ),
            // Not an entry: another root, a short time, a bad id, no slug, a day
            // or time that is none, a folder too many, another layout's key.
            (format!("staging/{}", keys.store), None),
            (format!("index/stores/leeds/9999-{id}"), None),
            (format!("index/stores/leeds/+999999999999-{id}"), None),
            (format!("index/stores/leeds/{nines}-xyz"), None),
            (
                format!("index/stores/leeds/{nines}-{}", id.to_uppercase()),
                None,
            ),
            (format!("index/stores//{nines}-{id}"), None),
            (format!("index/stores/leeds/x/{nines}-{id}"), None),
            (format!("index/commits/2026-13-01/20-05-03.123Z-{id}"), None),
            (format!("index/commits/2026-02-30/20-05-03.123Z-{id}"), None),
            (format!("index/commits/2026-12-01/24-05-03.123Z-{id}"), None),
            (format!("index/commits/2026-12-01/20-05-03Z-{id}"), None),
            (
                format!("index/commits/2026-12-01-01/20-05-03.123Z-{id}"),
                None,
            ),
            (
                format!("index/commits/2026-12-01/x/20-05-03.123Z-{id}"),
                None,
            ),
            (
                format!("index/commits/2026-12-01/20-05-03.123Z-{id}x"),
                None,
            ),
            (format!("batches/{id}.json"), None),
            ("index/".into(), None),
            (String::new(), None),
        ] {
            assert_eq!(parse_index_key(&key), want, "{key}");
        }
    }

    #[test]
    fn layout_keys() {
        assert_eq!(Table::BasketItems.key("ab"), "basket_items/ab.csv.gz");
        assert_eq!(marker_key("ab"), "batches/ab.json");
        assert_eq!(
            batch_keys("ab"),
            [
                "stores/ab.csv.gz",
                "products/ab.csv.gz",
                "transactions/ab.csv.gz",
                "basket_items/ab.csv.gz",
                "rejects/ab.csv.gz",
                "batches/ab.json",
            ]
        );
        for (key, want) in [
            ("batches/ab.json", Some(Staged::Marker)),
            ("rejects/ab.csv.gz", Some(Staged::Table(Table::Rejects))),
            (
                "basket_items/ab.csv.gz",
                Some(Staged::Table(Table::BasketItems)),
            ),
            ("batches/ab.csv.gz", None),
            ("stores/ab.json", None),
            ("tables/ab.csv.gz", None),
            ("stores/.csv.gz", None),
            ("stores/x/ab.csv.gz", None),
            ("index/stores/leeds/1-ab", None),
            ("ab.json", None),
            ("", None),
        ] {
            assert_eq!(Staged::of_key(key), want, "{key}");
        }
        for key in batch_keys("0123456789abcdef0123456789abcdef") {
            assert!(Staged::of_key(&key).is_some(), "{key}");
        }
        assert_eq!(
            Table::ALL.iter().map(|t| *t as usize).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
    }
}
