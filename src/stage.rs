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
//! ```
//!
//! Table files are gzip, UTF-8, RFC 4180, no header, ready for Redshift
//! `COPY ... CSV GZIP`. This module writes them into any `impl Write` (files
//! for the CLI, memory for WebAssembly); where they end up is the caller's
//! business, and so is writing the marker last.

use crate::error::{Error, Stage};
use crate::report::Issue;
use crate::transform::{itoa, StarSink, TransactionRow, UuidText};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write;

/// Options of the stage step.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// gzip level, 0 (store) to 9. Level 1 is the default: on a generated
    /// 100 MB export (`benches/run`) the whole transform runs twice as fast
    /// as at level 6, for files 60% larger (65.7 against 40.8 MB): the CPU
    /// is spent on every upload, in the edge worker's time limit, while
    /// S3 storage of staged files is cheap and short-lived.
    pub gzip_level: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config { gzip_level: 1 }
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

/// `batches/<batch_id>.json`, relative to the root: the completion marker.
pub fn marker_key(batch_id: &str) -> String {
    format!("batches/{batch_id}.json")
}

/// Appends one CSV field, quoted only when RFC 4180 needs it.
#[inline]
pub fn push_field(line: &mut Vec<u8>, field: &[u8]) {
    if field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        line.push(b'"');
        for &b in field {
            if b == b'"' {
                line.push(b'"');
            }
            line.push(b);
        }
        line.push(b'"');
    } else {
        line.extend_from_slice(field);
    }
}

/// Appends pence as `12.34`.
#[inline]
pub fn push_pence(line: &mut Vec<u8>, pence: i64) {
    if pence < 0 {
        line.push(b'-');
    }
    let p = pence.unsigned_abs();
    line.extend_from_slice(itoa((p / 100) as i64).as_bytes());
    line.push(b'.');
    line.push(b'0' + (p % 100 / 10) as u8);
    line.push(b'0' + (p % 10) as u8);
}

const BUFFER: usize = 64 * 1024;

struct TableFile<W: Write> {
    gz: GzEncoder<W>,
    /// Rows gathered before one call into the compressor.
    buf: Vec<u8>,
}

impl<W: Write> TableFile<W> {
    fn flush_buf(&mut self, table: Table) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.gz
                .write_all(&self.buf)
                .map_err(|e| Error::io(Stage::Stage, table.name(), e))?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// The five gzip-compressed table files of one batch, written row by row.
pub struct TableWriters<W: Write> {
    files: Vec<TableFile<W>>,
}

impl<W: Write> std::fmt::Debug for TableWriters<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriters").finish_non_exhaustive()
    }
}

impl<W: Write> TableWriters<W> {
    /// Opens one writer per [`Table`] with `open`.
    pub fn new(config: &Config, mut open: impl FnMut(Table) -> W) -> TableWriters<W> {
        let level = Compression::new(config.gzip_level.min(9));
        let files = Table::ALL
            .iter()
            .map(|&t| TableFile {
                // No file name and mtime 0 in the gzip header: the same rows
                // give the same bytes on every run and machine.
                gz: flate2::GzBuilder::new().mtime(0).write(open(t), level),
                buf: Vec::with_capacity(BUFFER),
            })
            .collect();
        TableWriters { files }
    }

    #[inline]
    fn file(&mut self, table: Table) -> &mut TableFile<W> {
        &mut self.files[table as usize]
    }

    #[inline]
    fn end_row(&mut self, table: Table) -> Result<(), Error> {
        let f = self.file(table);
        f.buf.push(b'\n');
        if f.buf.len() >= BUFFER {
            f.flush_buf(table)?;
        }
        Ok(())
    }

    /// The underlying writer of a table, for draining compressed bytes
    /// while the batch is still being written (the WebAssembly pipeline
    /// does this to stream to S3).
    pub fn get_mut(&mut self, table: Table) -> &mut W {
        self.file(table).gz.get_mut()
    }

    /// Pushes every row gathered so far into the compressor and flushes
    /// what it has completed to the writers (a sync flush: a little worse
    /// compression, so call it rarely).
    pub fn flush(&mut self) -> Result<(), Error> {
        for &t in &Table::ALL {
            let f = self.file(t);
            f.flush_buf(t)?;
            f.gz.flush()
                .map_err(|e| Error::io(Stage::Stage, t.name(), e))?;
        }
        Ok(())
    }

    /// Writes a rejected row: line, codes, message, and the fields that are
    /// safe to keep.
    pub fn reject(&mut self, line: u64, issues: &[Issue], fields: &[&str]) -> Result<(), Error> {
        let f = self.file(Table::Rejects);
        f.buf.extend_from_slice(itoa(line as i64).as_bytes());
        f.buf.push(b',');
        let mut codes = String::new();
        let mut message = String::new();
        for (i, issue) in issues.iter().enumerate() {
            if i > 0 {
                message.push_str("; ");
            }
            if !codes.split(';').any(|c| c == issue.code.as_str()) {
                if !codes.is_empty() {
                    codes.push(';');
                }
                codes.push_str(issue.code.as_str());
            }
            if let Some(c) = issue.column {
                message.push_str(&format!("column {c}: "));
            }
            message.push_str(&issue.message);
        }
        push_field(&mut f.buf, codes.as_bytes());
        f.buf.push(b',');
        push_field(&mut f.buf, message.as_bytes());
        // Always the five row columns, empty where nothing could be kept.
        for i in 0..5 {
            f.buf.push(b',');
            push_field(&mut f.buf, fields.get(i).map_or(&b""[..], |s| s.as_bytes()));
        }
        self.end_row(Table::Rejects)
    }

    /// Finishes every gzip stream and gives the writers back, in
    /// [`Table::ALL`] order.
    pub fn finish(self) -> Result<Vec<W>, Error> {
        let mut out = Vec::with_capacity(5);
        for (mut f, t) in self.files.into_iter().zip(Table::ALL) {
            f.flush_buf(t)?;
            out.push(
                f.gz.finish()
                    .map_err(|e| Error::io(Stage::Stage, t.name(), e))?,
            );
        }
        Ok(out)
    }
}

impl<W: Write> StarSink for TableWriters<W> {
    fn store(&mut self, id: &UuidText, name: &str) -> Result<(), Error> {
        let b = &mut self.file(Table::Stores).buf;
        b.extend_from_slice(id);
        b.push(b',');
        push_field(b, name.as_bytes());
        self.end_row(Table::Stores)
    }

    fn product(
        &mut self,
        id: &UuidText,
        size: &str,
        name: &str,
        flavour: &str,
    ) -> Result<(), Error> {
        let b = &mut self.file(Table::Products).buf;
        b.extend_from_slice(id);
        b.push(b',');
        push_field(b, size.as_bytes());
        b.push(b',');
        push_field(b, name.as_bytes());
        b.push(b',');
        push_field(b, flavour.as_bytes());
        self.end_row(Table::Products)
    }

    fn transaction(&mut self, row: &TransactionRow<'_>, batch_id: &str) -> Result<(), Error> {
        let b = &mut self.file(Table::Transactions).buf;
        b.extend_from_slice(row.transaction_id);
        b.push(b',');
        b.extend_from_slice(row.store_id);
        b.push(b',');
        b.extend_from_slice(row.occurred_at);
        b.push(b',');
        b.extend_from_slice(row.payment_method.as_bytes());
        b.push(b',');
        push_pence(b, row.total_pence);
        b.push(b',');
        b.extend_from_slice(itoa(row.item_count as i64).as_bytes());
        b.push(b',');
        if let Some(k) = row.customer_key {
            b.extend_from_slice(&k.0);
        }
        b.push(b',');
        b.extend_from_slice(batch_id.as_bytes());
        self.end_row(Table::Transactions)
    }

    fn basket_item(
        &mut self,
        transaction_id: &UuidText,
        product_id: &UuidText,
        quantity: u32,
        unit_pence: i64,
    ) -> Result<(), Error> {
        let b = &mut self.file(Table::BasketItems).buf;
        b.extend_from_slice(transaction_id);
        b.push(b',');
        b.extend_from_slice(product_id);
        b.push(b',');
        b.extend_from_slice(itoa(quantity as i64).as_bytes());
        b.push(b',');
        push_pence(b, unit_pence);
        b.push(b',');
        push_pence(b, unit_pence * quantity as i64);
        self.end_row(Table::BasketItems)
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
            ("", ""),
        ];
        for (field, want) in cases {
            let mut line = Vec::new();
            push_field(&mut line, field.as_bytes());
            assert_eq!(String::from_utf8(line).unwrap(), *want);
        }
    }

    #[test]
    fn pence_table() {
        for (p, want) in [
            (0, "0.00"),
            (5, "0.05"),
            (245, "2.45"),
            (1090, "10.90"),
            (-120, "-1.20"),
        ] {
            let mut line = Vec::new();
            push_pence(&mut line, p);
            assert_eq!(String::from_utf8(line).unwrap(), want);
        }
    }

    #[test]
    fn layout_keys() {
        assert_eq!(Table::BasketItems.key("ab"), "basket_items/ab.csv.gz");
        assert_eq!(marker_key("ab"), "batches/ab.json");
        assert_eq!(
            Table::ALL.iter().map(|t| *t as usize).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
    }
}
