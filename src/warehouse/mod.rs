//! The warehouse side: staged batches into a star schema, safely and
//! repeatably, on Amazon Redshift or PostgreSQL.
//!
//! | module | what |
//! |---|---|
//! | [`schema`] | the star schema, the `loaded_batches` ledger and the analytics views, for both dialects, from one place |
//! | [`plan`] | batches (from their markers), the COPY manifests and the statements of one load, for each dialect |
//! | [`failures`] | quarantined batches (`load_failures`) and the ledger query |
//! | [`keys`] | one customer-key secret per warehouse: a load of batches keyed by another is refused |
//! | `scan` | complete batches of a staging root on disk, manifests written beside them (native) |
//! | `postgres` | the same statements run against PostgreSQL, and the analytics read back (native) |
//!
//! A load is one transaction: copy every planned batch into temporary
//! tables, keep one row per id, insert the new stores and products (an
//! anti-join) and `MERGE` the transactions and basket items, record the batches
//! in the ledger. Ids are derived from content, so merging a row again
//! changes nothing, and batches already in the ledger are dropped by the
//! script itself: a plan run twice loads once.
//!
//! The statements are pure: they compile for wasm32 too, so the edge
//! worker runs the very statements `cafe-etl load` runs. Reading a staging
//! folder and talking to PostgreSQL are native only.

pub mod failures;
pub mod keys;
pub mod plan;
#[cfg(not(target_arch = "wasm32"))]
pub mod postgres;
#[cfg(not(target_arch = "wasm32"))]
pub mod scan;
pub mod schema;

pub use failures::{ledger_query, quarantine_statements, Failure};
pub use plan::{
    Batch, Plan, S3Target, Statement, StatementOptions, DATA_API_MAX_BATCH_STATEMENTS,
    DATA_API_MAX_STATEMENT_BYTES,
};
#[cfg(not(target_arch = "wasm32"))]
pub use scan::{scan, BrokenBatch, Scan};
pub use schema::{Dialect, View, VIEWS};

use std::fmt;

/// Which part of the warehouse side an [`Error`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading the staging root, writing manifests.
    Plan,
    /// Connecting, creating the schema, copying and merging.
    Load,
    /// Reading the analytics views.
    Query,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Plan => "plan",
            Phase::Load => "load",
            Phase::Query => "query",
        })
    }
}

/// An error of the warehouse side. Its `Display` is fit to show a user:
/// lowercase, the phase first, then the detail. It never carries a
/// connection password or personal data (staged files hold none).
#[derive(Debug)]
pub struct Error {
    phase: Phase,
    message: String,
    code: Option<&'static str>,
}

impl Error {
    /// A new error in `phase`.
    pub fn new(phase: Phase, message: impl Into<String>) -> Error {
        Error {
            phase,
            message: message.into(),
            code: None,
        }
    }

    /// The same error with a stable code (`bad_batch_id`, ...), for a
    /// program to act on without reading the text.
    pub fn with_code(mut self, code: &'static str) -> Error {
        self.code = Some(code);
        self
    }

    /// The stable code, when the error has one.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }

    /// The phase that failed.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The detail, without the phase.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.phase, self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_phase_then_detail() {
        for (phase, msg, want) in [
            (Phase::Plan, "no root", "plan error: no root"),
            (Phase::Load, "copy failed", "load error: copy failed"),
            (Phase::Query, "no view", "query error: no view"),
        ] {
            assert_eq!(Error::new(phase, msg).to_string(), want);
        }
    }
}
