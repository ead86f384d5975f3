//! Clean, validate and stage the daily till exports of a chain of pop-up
//! cafés for the warehouse, without ever keeping a customer's name or card
//! number.
//!
//! One core, three places: the `cafe-etl` command line, the browser (as
//! WebAssembly, so branch staff see every problem before anything leaves
//! the shop) and the edge worker that stages uploads in S3. The core does no
//! I/O: it reads bytes pushed into it and writes to any [`std::io::Write`].
//!
//! # Stages
//!
//! | module | in | out |
//! |---|---|---|
//! | [`read`] | bytes, in chunks | records, with their line |
//! | [`clean`] | a record | a row without name or card number (and a customer key) |
//! | [`validate`] | a row | a typed transaction, or [`Issue`]s |
//! | [`transform`] | transactions | star-schema rows with content-derived ids |
//! | [`stage`] | rows | the gzip CSV files of the staging layout |
//!
//! [`privacy`] holds the one rule of what a row may keep or quote, which
//! `clean`, `validate` and the reject writer all follow.
//!
//! [`Pipeline`] wires them; [`check`] and [`transform()`] are the one-shot
//! forms for input already in memory.
//!
//! # Example
//!
//! ```
//! use cafe_etl::{Config, Table};
//!
//! let export = b"\
//! 25/08/2021 09:00,Chesterfield,Ann Example,\"Regular Flavoured iced latte - Hazelnut - 2.75, Large Latte - 2.45\",5.2,CARD,4111111111111111
//! 25/08/2021 09:08,Chesterfield,Bo Example,\"Regular Latte - 2.15, Large Latte - 2.45\",4.6,CASH,
//! 25/08/2021 09:09,Chesterfield,Cy Example,Large Latte - 2.45,2.54,CASH,
//! ";
//! let mut config = Config::default();
//! config.clean.customer_key_secret = Some("a secret kept by the worker".into());
//! let staged = cafe_etl::transform(export, "chesterfield_25-08-2021_09-00-00.csv", &config).unwrap();
//! let report = &staged.report;
//!
//! assert_eq!(report.format.as_str(), "current");
//! assert_eq!((report.rows_read, report.rows_staged, report.rows_rejected), (3, 2, 1));
//! assert_eq!(report.issues[0].line, 3);
//! assert_eq!(report.issues[0].code.as_str(), "total_mismatch");
//! assert_eq!(report.summary.revenue_pence, 980);
//! assert_eq!(report.tables.products, 3);
//!
//! // Every file is gzip CSV; nothing in them names a customer.
//! let (path, gz) = &staged.files[Table::Transactions as usize];
//! assert!(path.starts_with("transactions/"));
//! let mut csv = String::new();
//! std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut csv).unwrap();
//! assert_eq!(csv.lines().count(), 2);
//! assert!(!csv.contains("Example") && !csv.contains("4111"));
//! ```

#![warn(missing_docs)]

pub mod clean;
mod cp1252;
pub mod error;
pub mod generate;
mod pipeline;
pub mod privacy;
pub mod read;
pub mod report;
pub mod stage;
pub mod token;
pub mod transform;
pub mod validate;
pub mod warehouse;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Stage};
pub use pipeline::{
    batch_id, check, date_from_file_name, is_batch_id, sniff_not_csv, transform, BatchHasher,
    Config, Finished, Pipeline, StagedBatch,
};
pub use report::{Code, Format, Issue, Report, Severity, Summary, TableCounts};
pub use stage::{marker_key, Table, TableWriters};
