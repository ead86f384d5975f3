//! The load plan run against PostgreSQL, and the analytics read back.
//!
//! PostgreSQL stands in for Redshift on one machine: the same schema (its
//! dialect), the same [`Plan::statements`](super::Plan::statements) the
//! worker runs, with the staged files decompressed here and streamed with
//! `COPY ... FROM STDIN` instead of read from S3. PostgreSQL 15 or later,
//! for `MERGE`.
//!
//! The connection is plain TCP (no TLS): use a server on this machine, or
//! reach one through an SSH tunnel.

use super::plan::{statement_label, Plan, Statement, StatementOptions};
use super::schema::{self, Dialect, View, LEDGER_TABLE, LOADED};
use super::{Error, Phase};
use crate::Table;
use postgres::{Client, NoTls, SimpleQueryMessage};
use std::collections::HashSet;
use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

/// A database error as one line: the server's message, its detail and
/// hint. Details name ids and values of staged rows, never personal data
/// (the staged files hold none); the connection string is never shown.
fn db_error(phase: Phase, context: &str, e: &postgres::Error) -> Error {
    let detail = match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_string();
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => e.to_string(),
    };
    Error::new(phase, format!("{context}: {detail}"))
}

/// Connects to PostgreSQL, e.g. `postgres://user:password@127.0.0.1:5432/db`.
/// `?options=-csearch_path%3Dname` picks the schema.
pub fn connect(url: &str, phase: Phase) -> Result<Client, Error> {
    Client::connect(url, NoTls).map_err(|e| db_error(phase, "cannot connect to PostgreSQL", &e))
}

/// Refuses a server older than 15: `MERGE` came with it.
pub fn check_version(client: &mut Client) -> Result<(), Error> {
    let row = client
        .query_one("SHOW server_version_num", &[])
        .map_err(|e| db_error(Phase::Load, "server version", &e))?;
    let num: String = row.get(0);
    let num: u32 = num.trim().parse().unwrap_or(0);
    if num < 150_000 {
        return Err(Error::new(
            Phase::Load,
            format!(
                "PostgreSQL {}.{} is too old: the load needs MERGE, from PostgreSQL 15 on",
                num / 10_000,
                num % 10_000 / 100
            ),
        ));
    }
    Ok(())
}

/// Creates the tables, the ledger and the views where they are missing
/// (and replaces the views): `cafe-etl sql ddl --dialect postgres`.
pub fn apply_schema(client: &mut Client) -> Result<(), Error> {
    let err = |e: postgres::Error| db_error(Phase::Load, "creating the schema", &e);
    let mut tx = client.transaction().map_err(err)?;
    // Two loads creating the same table at once would clash in the catalog
    // (`CREATE TABLE IF NOT EXISTS` is not atomic): one waits for the other.
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {}",
        schema::ddl(Dialect::Postgres)
    ))
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// The advisory lock key of [`apply_schema`]: "cafe-etl" in ASCII.
const SCHEMA_LOCK: i64 = 0x6361_6665_2d65_746c;

/// The batch ids in the ledger.
pub fn loaded_batch_ids(client: &mut Client) -> Result<HashSet<String>, Error> {
    let rows = client
        .query(&format!("SELECT batch_id FROM {LEDGER_TABLE}"), &[])
        .map_err(|e| db_error(Phase::Load, "reading the ledger", &e))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The distinct customer key ids of the ledger's batches (`none` included;
/// batches loaded before the column existed are left out).
pub fn loaded_key_ids(client: &mut Client) -> Result<Vec<String>, Error> {
    let rows = client
        .query(&super::keys::loaded_key_ids_query(), &[])
        .map_err(|e| db_error(Phase::Load, "reading the ledger's customer key ids", &e))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// What to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Only batches whose marker was written at or after this time, in
    /// milliseconds since 1970 ([`super::plan::parse_since`]).
    pub since: Option<u64>,
    /// Plan batches the ledger already has too, leaving the script to drop
    /// them (what a Redshift plan made offline does); the result is the
    /// same, only slower.
    pub include_loaded: bool,
}

/// Rows of one table in a load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLoad {
    /// The table.
    pub table: Table,
    /// Rows copied from the staged files.
    pub copied: u64,
    /// Rows the table gained (fewer than copied: repeated stores and
    /// products, transactions loaded before).
    pub added: u64,
}

/// What a load did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Complete batches in the root.
    pub complete: usize,
    /// Batches without a marker, left alone.
    pub incomplete: usize,
    /// Batches with a marker that could not be loaded (a table object
    /// missing), skipped while the others load.
    pub broken: Vec<super::scan::BrokenBatch>,
    /// Complete batches staged before `since`, left alone.
    pub before_since: usize,
    /// Complete batches already in the ledger, not planned.
    pub already_loaded: usize,
    /// Batches planned.
    pub planned: usize,
    /// Batches the ledger gained.
    pub recorded: u64,
    /// Per loaded table, in load order; empty when nothing was planned.
    pub tables: Vec<TableLoad>,
    /// From the first COPY to the commit.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Rows copied into PostgreSQL over every table.
    pub fn rows_copied(&self) -> u64 {
        self.tables.iter().map(|t| t.copied).sum()
    }

    /// Rows copied per second of the load transaction.
    pub fn rows_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows_copied() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Loads the complete batches of `root` that the ledger does not have yet,
/// in one transaction, creating the schema first where it is missing.
pub fn load(client: &mut Client, root: &Path, options: &LoadOptions) -> Result<LoadReport, Error> {
    check_version(client)?;
    apply_schema(client)?;
    let scan = super::scan::scan(root)?;
    let loaded = loaded_batch_ids(client)?;
    let mut report = LoadReport {
        complete: scan.complete.len(),
        incomplete: scan.incomplete.len(),
        broken: scan.broken,
        ..LoadReport::default()
    };
    let mut batches = Vec::new();
    for batch in scan.complete {
        if options.since.is_some_and(|s| batch.staged_at_ms < s) {
            report.before_since += 1;
        } else if !options.include_loaded && loaded.contains(batch.id()) {
            report.already_loaded += 1;
        } else {
            batches.push(batch);
        }
    }
    // One customer-key secret per warehouse, checked before anything is
    // copied: the whole load is refused, with how to restage.
    let new: Vec<_> = batches
        .iter()
        .filter(|b| !loaded.contains(b.id()))
        .cloned()
        .collect();
    super::keys::check(&loaded_key_ids(client)?, &new, Phase::Load)?;
    let plan = Plan::new(batches);
    report.planned = plan.batches().len();
    if report.planned > 0 {
        let start = Instant::now();
        let (tables, recorded) = execute(client, &plan, root)?;
        report.elapsed = start.elapsed();
        report.tables = tables;
        report.recorded = recorded;
    }
    Ok(report)
}

fn counts(tx: &mut postgres::Transaction<'_>) -> Result<Vec<u64>, Error> {
    let mut out = Vec::new();
    for name in LOADED.iter().map(|t| t.name()).chain([LEDGER_TABLE]) {
        let row = tx
            .query_one(&format!("SELECT count(*) FROM {name}"), &[])
            .map_err(|e| db_error(Phase::Load, &format!("counting {name}"), &e))?;
        out.push(row.get::<_, i64>(0) as u64);
    }
    Ok(out)
}

/// Runs the steps of `plan` in one transaction, streaming the staged files
/// of `root`. Gives the rows per table and the batches the ledger gained.
pub fn execute(
    client: &mut Client,
    plan: &Plan,
    root: &Path,
) -> Result<(Vec<TableLoad>, u64), Error> {
    let mut tx = client
        .transaction()
        .map_err(|e| db_error(Phase::Load, "starting the transaction", &e))?;
    let Steps { copied, before } = run_steps(&mut tx, plan, root)?;
    let after = counts(&mut tx)?;
    tx.commit()
        .map_err(|e| db_error(Phase::Load, "committing", &e))?;
    let tables = LOADED
        .iter()
        .enumerate()
        .map(|(i, &table)| TableLoad {
            table,
            copied: copied[i],
            added: after[i].saturating_sub(before[i]),
        })
        .collect();
    Ok((tables, after[4].saturating_sub(before[4])))
}

/// What [`run_steps`] saw.
#[derive(Clone, Debug, Default)]
pub struct Steps {
    /// Rows copied per table, in [`LOADED`] order.
    pub copied: [u64; 4],
    /// Rows of each loaded table and of the ledger once the lock was
    /// taken: counted before it, they would include what a load that held
    /// the lock meanwhile added.
    pub before: Vec<u64>,
}

/// Runs the statements of `plan` inside `tx`, which the caller commits (or
/// holds open: a test keeps a load holding the lock this way): the
/// PostgreSQL [`Plan::statements`], each COPY fed the staged files of
/// `root` it names.
pub fn run_steps(
    tx: &mut postgres::Transaction<'_>,
    plan: &Plan,
    root: &Path,
) -> Result<Steps, Error> {
    let mut copied = [0u64; 4];
    let mut before = None;
    for statement in plan.statements(Dialect::Postgres, &StatementOptions::default())? {
        match statement {
            Statement::Sql { sql, .. } => {
                tx.batch_execute(&sql)
                    .map_err(|e| db_error(Phase::Load, &statement_label(&sql), &e))?;
            }
            Statement::Copy { table, sql, keys } => {
                if before.is_none() {
                    // The lock is held by now, and nothing has touched the
                    // loaded tables or the ledger yet.
                    before = Some(counts(tx)?);
                }
                let i = LOADED
                    .iter()
                    .position(|t| t.name() == table)
                    .expect("only loaded tables are copied");
                copied[i] = copy_objects(tx, &table, &sql, root, &keys)?;
            }
        }
    }
    let before = match before {
        Some(b) => b,
        None => counts(tx)?,
    };
    Ok(Steps { copied, before })
}

/// Streams the staged files `keys` of `root`, decompressed and in order,
/// into one `COPY ... FROM STDIN`.
fn copy_objects(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    sql: &str,
    root: &Path,
    keys: &[String],
) -> Result<u64, Error> {
    let ctx = format!("copying {table}");
    let mut w = tx
        .copy_in(sql)
        .map_err(|e| db_error(Phase::Load, &ctx, &e))?;
    for key in keys {
        let path = root.join(key);
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::new(Phase::Load, format!("{}: {e}", path.display())))?;
        // Multi-member: a file concatenated from several gzip streams (as an
        // uploader flushing in parts may write) is one file to COPY too.
        let mut gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file));
        std::io::copy(&mut gz, &mut w)
            .map_err(|e| Error::new(Phase::Load, format!("{ctx}: {}: {e}", path.display())))?;
    }
    w.finish().map_err(|e| db_error(Phase::Load, &ctx, &e))
}

/// Loaded transactions, and how many of them have a customer key: when none
/// has, the new-and-returning customers view is empty, and `insights` says
/// why.
pub fn customer_key_counts(client: &mut Client) -> Result<(u64, u64), Error> {
    let row = client
        .query_one(
            "SELECT count(*), count(customer_key) FROM transactions",
            &[],
        )
        .map_err(|e| db_error(Phase::Query, "counting customer keys", &e))?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}

/// One analytics view, read back.
#[derive(Clone, Debug)]
pub struct Insight {
    /// Which view.
    pub view: View,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows as text, in the view's order, at most the limit asked for.
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows in the view.
    pub total: u64,
}

/// Reads the first `limit` rows of each view, as text.
pub fn insights(client: &mut Client, views: &[View], limit: u64) -> Result<Vec<Insight>, Error> {
    let mut out = Vec::new();
    for &view in views {
        let ctx = format!("reading {}", view.name);
        let err = |e: postgres::Error| {
            let mut err = db_error(Phase::Query, &ctx, &e);
            if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) {
                err = Error::new(
                    Phase::Query,
                    format!("{}; `cafe-etl load` creates the views", err.message()),
                );
            }
            err
        };
        // Names and orders come from VIEWS, never from input.
        let messages = client
            .simple_query(&format!(
                "SELECT * FROM {} ORDER BY {} LIMIT {limit}; SELECT count(*) FROM {}",
                view.name, view.order_by, view.name
            ))
            .map_err(err)?;
        let mut columns = Vec::new();
        let mut rows = Vec::new();
        let mut total = 0;
        let mut statement = 0;
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) if statement == 0 => {
                    columns = cols.iter().map(|c| c.name().to_string()).collect();
                }
                SimpleQueryMessage::Row(row) if statement == 0 => {
                    if columns.is_empty() {
                        columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                    }
                    rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    );
                }
                SimpleQueryMessage::Row(row) => {
                    total = row.get(0).and_then(|n| n.parse().ok()).unwrap_or(0);
                }
                SimpleQueryMessage::CommandComplete(_) => statement += 1,
                _ => {}
            }
        }
        out.push(Insight {
            view,
            columns,
            rows,
            total,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_named_by_their_table() {
        for (sql, want) in [
            (
                "MERGE INTO stores USING tmp_new_stores s ON x",
                "merge into stores",
            ),
            (
                "CREATE TEMP TABLE tmp_new_products AS SELECT",
                "create temp table tmp_new_products",
            ),
            (
                "DROP TABLE tmp_plan_batches, tmp_copy_stores",
                "drop table tmp_plan_batches",
            ),
            ("LOCK TABLE load_lock", "lock table load_lock"),
            ("UPDATE load_lock SET plan_id = 'ab'", "update load_lock"),
        ] {
            assert_eq!(statement_label(sql), want);
        }
    }
}
