//! Which batches a load takes, and the statements that load them.
//!
//! A batch is known by its marker, `batches/<id>.json` (its report, which
//! the stage writes last): natively `scan` reads a staging folder,
//! in the edge worker the marker comes from the bucket. A [`Plan`] is a set
//! of batches and one list of [`Step`]s, the same for both dialects; only
//! how the rows get into the temporary tables differs, and
//! [`Plan::statements`] renders each step for a dialect: COPY from an S3
//! manifest on Redshift, `COPY ... FROM STDIN` on PostgreSQL (the runner
//! streams the objects). `cafe-etl load`, `cafe-etl load-plan` and the
//! worker (through wasm) run these very statements.
//!
//! The steps, in one transaction:
//!
//! 1. lock the one-row `load_lock` table, so two loads queue instead of
//!    racing, while the dashboards keep reading the ledger and the views;
//! 2. list the plan's batches in a temporary table (INSERT ... VALUES,
//!    chunked by bytes) and drop those already in the ledger: a plan run
//!    twice loads once, even a plan made without access to the warehouse;
//! 3. per table: COPY every batch's file into a temporary table, keep one
//!    row per key (stores and products repeat across batches, a re-export
//!    of a day repeats its transactions); stores and products new to the
//!    warehouse are inserted with an anti-join (the rows it has are left
//!    untouched), transactions and basket items are `MERGE`d;
//! 4. add the batches to the ledger.

use super::schema::{self, Dialect, LEDGER, LEDGER_TABLE, LOADED, LOAD_LOCK_TABLE};
use super::{Error, Phase};
use crate::{is_batch_id, Report, Table};
use sha2::{Digest, Sha256};

/// The largest SQL statement the Amazon Redshift Data API takes: "The
/// maximum query statement size is 100 KB" (Amazon Redshift Management
/// Guide, "Considerations when calling the Amazon Redshift Data API",
/// <https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html>). Read
/// as 100,000 bytes, the smaller reading. The default of
/// [`StatementOptions::max_statement_bytes`].
pub const DATA_API_MAX_STATEMENT_BYTES: usize = 100_000;

/// The most statements one `BatchExecuteStatement` call takes (its `Sqls`:
/// "Maximum number of 40 items", Amazon Redshift Data API Reference,
/// <https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_BatchExecuteStatement.html>).
/// A plan's statements run in one such call (one transaction), so a
/// Redshift runner checks their count against it.
pub const DATA_API_MAX_BATCH_STATEMENTS: usize = 40;

/// A complete staged batch.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Its report, read from the marker.
    pub report: Report,
    /// When the marker was written, in milliseconds since 1970 (UTC): what
    /// `--since` compares with. Set by whoever read the marker (the core
    /// reads no clock); 0 when unknown.
    pub staged_at_ms: u64,
    /// Bytes of each loaded table's object, in [`LOADED`] order, when
    /// known: a Redshift manifest gives them as `content_length`.
    pub sizes: Option<[u64; 4]>,
}

impl Batch {
    /// A batch from its marker's bytes (see [`read_marker`]).
    pub fn from_marker(
        json: &[u8],
        staged_at_ms: u64,
        sizes: Option<[u64; 4]>,
    ) -> Result<Batch, String> {
        Ok(Batch {
            report: read_marker(json)?,
            staged_at_ms,
            sizes,
        })
    }

    /// The batch id.
    pub fn id(&self) -> &str {
        &self.report.batch_id
    }

    /// Rows staged in `table`, as the report counts them.
    pub fn rows(&self, table: Table) -> u64 {
        let t = &self.report.tables;
        match table {
            Table::Stores => t.stores,
            Table::Products => t.products,
            Table::Transactions => t.transactions,
            Table::BasketItems => t.basket_items,
            Table::Rejects => t.rejects,
        }
    }
}

/// Reads a marker: the batch report, with a batch id and a customer key id
/// the SQL may carry. The problem otherwise, as a phrase that follows the
/// marker's name ("is not a batch report: ..."). A marker is a file anyone
/// could edit: nothing of its values is quoted back, only which field is
/// wrong.
pub fn read_marker(json: &[u8]) -> Result<Report, String> {
    let report: Report = serde_json::from_slice(json)
        .map_err(|e| format!("is not a batch report: {}", without_values(&e.to_string())))?;
    if !is_batch_id(&report.batch_id) {
        return Err("is not a batch report: its batch_id is not 32 hex digits".into());
    }
    if !crate::clean::is_customer_key_id(&report.customer_key_id) {
        return Err(
            "is not a batch report: its customer_key_id is not 16 hex digits or none".into(),
        );
    }
    Ok(report)
}

/// A serde message with the values it quotes (`"..."`) left out; field
/// names (in backticks) stay.
/// serde quotes a bad variant or value in backticks too: only what looks
/// like a field name (lowercase ASCII, digits, `_`) is kept there.
fn without_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(['"', '`']) {
        out.push_str(&rest[..i]);
        let q = &rest[i..i + 1];
        let after = &rest[i + 1..];
        let Some(end) = after.find(q) else {
            rest = "";
            break;
        };
        let inner = &after[..end];
        let name = q == "`"
            && !inner.is_empty()
            && inner.len() <= 32
            && inner
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if name {
            out.push('`');
            out.push_str(inner);
            out.push('`');
        } else {
            out.push_str("a value");
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Reads `--since`: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or
/// `YYYY-MM-DDTHH:MM[:SS][Z]`, in UTC; milliseconds since 1970, as
/// [`Batch::staged_at_ms`].
pub fn parse_since(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("--since {s:?} is not a time; expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")
    };
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |p: &str, len: usize| -> Result<u32, String> {
        if p.len() == len && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 {
        return Err(bad());
    }
    let (y, m, day) = (num(d[0], 4)?, num(d[1], 2)?, num(d[2], 2)?);
    if !(1..=12).contains(&m) || day == 0 || day > days_in_month(y, m) || y < 1970 {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, day) * 86_400;
    if let Some(t) = time {
        let t: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&t.len()) {
            return Err(bad());
        }
        let (h, mi) = (num(t[0], 2)?, num(t[1], 2)?);
        let sec = if t.len() == 3 { num(t[2], 2)? } else { 0 };
        if h > 23 || mi > 59 || sec > 59 {
            return Err(bad());
        }
        secs += u64::from(h * 3600 + mi * 60 + sec);
    }
    Ok(secs * 1000)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date on or after it (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: u32, m: u32, d: u32) -> u64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as u64
}

/// Where Redshift reads the staged files: the S3 copy of the staging root,
/// and how it may.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    url: String,
    iam_role: Option<String>,
    region: Option<String>,
}

impl S3Target {
    /// `s3://bucket/prefix`: the staging root's folders are under it.
    pub fn new(url: &str) -> Result<S3Target, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("the S3 URL {url:?} should start with s3://"))?;
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(format!("the S3 URL {url:?} has no bucket"));
        }
        // The URL goes into SQL string literals and JSON.
        if url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
        {
            return Err(format!(
                "the S3 URL {url:?} has a quote, backslash or space; S3 keys here never do"
            ));
        }
        Ok(S3Target {
            url: url.trim_end_matches('/').to_string(),
            iam_role: None,
            region: None,
        })
    }

    /// The IAM role Redshift assumes to read the bucket: an ARN, or
    /// `default` for the cluster's default role (the default).
    pub fn with_iam_role(mut self, role: &str) -> Result<S3Target, String> {
        if role != "default"
            && (!role.starts_with("arn:")
                || role
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '\'' || c == '\\'))
        {
            return Err(format!(
                "the IAM role {role:?} should be an IAM role ARN (arn:aws:iam::...:role/...) or default"
            ));
        }
        self.iam_role = (role != "default").then(|| role.to_string());
        Ok(self)
    }

    /// The bucket's region, when it is not the cluster's.
    pub fn with_region(mut self, region: &str) -> Result<S3Target, String> {
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "the region {region:?} should be an AWS region like eu-west-2"
            ));
        }
        self.region = Some(region.to_string());
        Ok(self)
    }

    /// The S3 URL of a key relative to the staging root.
    pub fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }
}

/// One step of a load, before it is SQL of a dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// SQL that both dialects run as it is; `why` becomes a comment.
    Sql {
        /// Why the step is there, for the printed script.
        why: Option<&'static str>,
        /// One statement, without the semicolon.
        sql: String,
    },
    /// Fill `tmp_plan_batches` with one ledger row per planned batch.
    PlanBatches,
    /// Fill `tmp_copy_<table>` with the staged files of every batch.
    Copy(Table),
}

/// One statement of a load, as a runner takes it (the worker through
/// wasm, `cafe-etl load` natively): all of them in order, in one
/// transaction that the runner opens and commits.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Statement {
    /// Run as it is.
    Sql {
        /// One statement, without the semicolon.
        sql: String,
        /// Why it is there (a comment in a printed script).
        #[serde(skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// Fills a temporary table from staged objects. PostgreSQL: `COPY ...
    /// FROM STDIN WITH (FORMAT csv)`, the runner sending each of `keys`
    /// gunzipped, in order. Redshift: `COPY ... FROM '<manifest>' ...
    /// MANIFEST`, run as it is (the manifest lists the same `keys`).
    Copy {
        /// The staged table (`stores`, ...).
        table: String,
        /// The COPY statement.
        sql: String,
        /// The staged objects it reads, relative to the staging root.
        keys: Vec<String>,
    },
}

impl Statement {
    /// The SQL text.
    pub fn sql(&self) -> &str {
        match self {
            Statement::Sql { sql, .. } | Statement::Copy { sql, .. } => sql,
        }
    }
}

/// How [`Plan::statements`] renders a plan.
#[derive(Clone, Debug)]
pub struct StatementOptions {
    /// Where Redshift reads the staged objects; required for Redshift.
    pub s3: Option<S3Target>,
    /// The longest statement allowed, in bytes: the planned-batches list is
    /// cut into INSERTs that each fit. Default
    /// [`DATA_API_MAX_STATEMENT_BYTES`].
    pub max_statement_bytes: usize,
}

impl Default for StatementOptions {
    fn default() -> Self {
        StatementOptions {
            s3: None,
            max_statement_bytes: DATA_API_MAX_STATEMENT_BYTES,
        }
    }
}
/// The temporary table a plan lists its batches in.
pub const PLAN_BATCHES: &str = "tmp_plan_batches";

/// The temporary table COPY fills for `table`.
pub fn copy_table(table: Table) -> String {
    format!("tmp_copy_{}", table.name())
}

fn new_table(table: Table) -> String {
    format!("tmp_new_{}", table.name())
}

/// The columns of the ledger that a plan fills (all but `loaded_at`).
pub fn ledger_columns() -> Vec<&'static str> {
    LEDGER.iter().map(|(c, _, _)| *c).collect()
}

/// A ledger value of a batch, before it is written as SQL or CSV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Text.
    Text(String),
    /// A number, already as its digits (a count or a decimal amount).
    Number(String),
    /// Nothing (a batch without rows has no first or last time).
    Null,
}

fn timestamp_value(s: Option<&str>) -> Value {
    // The report is a file anyone could edit: only a well-formed time goes
    // into the SQL.
    match s {
        Some(t)
            if t.len() == 19
                && t.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    10 => b == b' ',
                    13 | 16 => b == b':',
                    _ => b.is_ascii_digit(),
                }) =>
        {
            Value::Text(t.to_string())
        }
        _ => Value::Null,
    }
}

/// The ledger row of a batch, in [`ledger_columns`] order.
pub fn ledger_row(batch: &Batch) -> Vec<Value> {
    let r = &batch.report;
    LEDGER
        .iter()
        .map(|(col, _, _)| match *col {
            "batch_id" => Value::Text(r.batch_id.clone()),
            // A file name; control characters would only garble a listing.
            "source" => Value::Text(r.source.chars().filter(|c| !c.is_control()).collect()),
            "format" => Value::Text(r.format.as_str().to_string()),
            "rows_read" => Value::Number(r.rows_read.to_string()),
            "rows_staged" => Value::Number(r.rows_staged.to_string()),
            "rows_rejected" => Value::Number(r.rows_rejected.to_string()),
            "transactions" => Value::Number(r.tables.transactions.to_string()),
            "basket_items" => Value::Number(r.tables.basket_items.to_string()),
            "revenue" => Value::Number(crate::report::format_pence(r.summary.revenue_pence)),
            "first_at" => timestamp_value(r.summary.first_at.as_deref()),
            "last_at" => timestamp_value(r.summary.last_at.as_deref()),
            // Checked by `read_marker`: 16 hex digits or `none`.
            "customer_key_id" => Value::Text(r.customer_key_id.clone()),
            other => unreachable!("ledger column {other} has no value"),
        })
        .collect()
}

/// A value as a SQL literal. Redshift reads a backslash in a string as an
/// escape, so it is doubled there; PostgreSQL (standard strings) does not.
pub fn sql_literal(value: &Value, dialect: Dialect) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Number(n) => n.clone(),
        Value::Text(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('\'');
            for c in s.chars() {
                match c {
                    '\'' => out.push_str("''"),
                    '\\' if dialect == Dialect::Redshift => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        }
    }
}

/// The manifest Redshift COPY reads: every file of one table, each one
/// mandatory, with its size when known.
#[derive(serde::Serialize)]
struct Manifest {
    entries: Vec<ManifestEntry>,
}

#[derive(serde::Serialize)]
struct ManifestEntry {
    url: String,
    mandatory: bool,
    // Optional for CSV; Redshift Spectrum and columnar formats need it.
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<ManifestMeta>,
}

#[derive(serde::Serialize)]
struct ManifestMeta {
    content_length: u64,
}

/// A set of complete batches to load together.
#[derive(Clone, Debug)]
pub struct Plan {
    id: String,
    batches: Vec<Batch>,
}

impl Plan {
    /// A plan of these batches, in batch id order. Its id is derived from
    /// the batch ids, so the same batches give the same manifests.
    pub fn new(mut batches: Vec<Batch>) -> Plan {
        batches.sort_by(|a, b| a.id().cmp(b.id()));
        batches.dedup_by(|a, b| a.id() == b.id());
        let mut h = Sha256::new();
        for b in &batches {
            h.update(b.id().as_bytes());
            h.update(b"\n");
        }
        let id = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Plan { id, batches }
    }

    /// 16 hex digits naming the plan.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The planned batches, by id.
    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    /// Rows staged in `table` over the plan, as the reports count them
    /// (before stores, products and repeated transactions are merged).
    pub fn staged_rows(&self, table: Table) -> u64 {
        self.batches.iter().map(|b| b.rows(table)).sum()
    }

    /// `manifests/<plan id>/<table>.manifest`, relative to the root.
    pub fn manifest_key(&self, table: Table) -> String {
        format!("manifests/{}/{}.manifest", self.id, table.name())
    }

    /// The COPY manifest of one table.
    pub fn manifest(&self, table: Table, s3: &S3Target) -> String {
        let i = loaded_index(table);
        let m = Manifest {
            entries: self
                .batches
                .iter()
                .map(|b| ManifestEntry {
                    url: s3.object(&table.key(b.id())),
                    mandatory: true,
                    meta: b.sizes.map(|s| ManifestMeta {
                        content_length: s[i],
                    }),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&m).expect("a manifest always serialises")
    }

    /// The four manifests, as (table, key relative to the root, body).
    pub fn manifests(&self, s3: &S3Target) -> Vec<(Table, String, String)> {
        LOADED
            .iter()
            .map(|&t| (t, self.manifest_key(t), self.manifest(t, s3)))
            .collect()
    }

    /// The steps of the load, for both dialects; the caller wraps them in
    /// one transaction.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = self.lock_steps();
        steps.extend(plan_batches_steps());
        for table in LOADED {
            steps.extend(table_steps(table));
        }
        steps.extend(ledger_steps());
        steps
    }

    /// Queue behind any other load, and say which plan holds the lock.
    fn lock_steps(&self) -> Vec<Step> {
        vec![
            sql(
                Some(
                    "Two loads at once queue here instead of inserting the same rows side by \
                     side; on a table only loads touch, so the dashboards' reads of the \
                     ledger and the views never wait for a load.",
                ),
                format!("LOCK TABLE {LOAD_LOCK_TABLE}"),
            ),
            sql(
                Some("Its one row says which plan holds the lock (or held it last)."),
                format!(
                    "UPDATE {LOAD_LOCK_TABLE} SET plan_id = '{}', loads = loads + 1",
                    self.id
                ),
            ),
        ]
    }

    /// The statements of the load in `dialect`: each [`Step`] as SQL, the
    /// planned batches as INSERTs of at most `max_statement_bytes` each.
    /// Fails for Redshift without [`StatementOptions::s3`], and when one
    /// statement cannot be made short enough.
    pub fn statements(
        &self,
        dialect: Dialect,
        options: &StatementOptions,
    ) -> Result<Vec<Statement>, Error> {
        let mut out = Vec::new();
        for step in self.steps() {
            match step {
                Step::Sql { why, sql } => out.push(Statement::Sql {
                    sql,
                    why: why.map(str::to_string),
                }),
                Step::PlanBatches => {
                    for sql in self.plan_batches_inserts(dialect, options.max_statement_bytes)? {
                        out.push(Statement::Sql { sql, why: None });
                    }
                }
                Step::Copy(table) => out.push(self.copy_statement(table, dialect, options)?),
            }
        }
        let max = options.max_statement_bytes;
        if let Some(long) = out.iter().find(|s| s.sql().len() > max) {
            return Err(Error::new(
                Phase::Plan,
                format!(
                    "a statement of the load ({}) is {} bytes, more than the {max} allowed",
                    statement_label(long.sql()),
                    long.sql().len()
                ),
            )
            .with_code("statement_too_long"));
        }
        Ok(out)
    }

    /// `INSERT INTO tmp_plan_batches ... VALUES (...), ...`: one row per
    /// batch, as many rows per statement as fit in `max` bytes.
    fn plan_batches_inserts(&self, dialect: Dialect, max: usize) -> Result<Vec<String>, Error> {
        let head = format!(
            "INSERT INTO {PLAN_BATCHES} ({}) VALUES\n",
            ledger_columns().join(", ")
        );
        let mut out = Vec::new();
        let mut rows = String::new();
        for b in &self.batches {
            let vals: Vec<String> = ledger_row(b)
                .iter()
                .map(|v| sql_literal(v, dialect))
                .collect();
            let row = format!("({})", vals.join(", "));
            if head.len() + row.len() > max {
                return Err(Error::new(
                    Phase::Plan,
                    format!(
                        "the ledger row of batch {} takes {} bytes: no statement of at most {max} \
                         bytes can list it",
                        b.id(),
                        head.len() + row.len()
                    ),
                )
                .with_code("statement_too_long"));
            }
            if !rows.is_empty() && head.len() + rows.len() + 2 + row.len() > max {
                out.push(format!("{head}{rows}"));
                rows.clear();
            }
            if !rows.is_empty() {
                rows.push_str(",\n");
            }
            rows.push_str(&row);
        }
        if !rows.is_empty() {
            out.push(format!("{head}{rows}"));
        }
        Ok(out)
    }

    /// The COPY that fills `tmp_copy_<table>` in `dialect`.
    fn copy_statement(
        &self,
        table: Table,
        dialect: Dialect,
        options: &StatementOptions,
    ) -> Result<Statement, Error> {
        let keys: Vec<String> = self.batches.iter().map(|b| table.key(b.id())).collect();
        let target = format!("{} ({})", copy_table(table), table.columns().join(", "));
        let sql = match dialect {
            Dialect::Postgres => format!("COPY {target} FROM STDIN WITH (FORMAT csv)"),
            Dialect::Redshift => {
                let s3 = options.s3.as_ref().ok_or_else(|| {
                    Error::new(
                        Phase::Plan,
                        "a Redshift load needs the S3 URL of the staging root (s3://bucket/prefix)",
                    )
                    .with_code("config")
                })?;
                format!(
                    "COPY {target}\nFROM '{manifest}'\nIAM_ROLE {role}\nMANIFEST\n\
                     CSV GZIP EMPTYASNULL\nTIMEFORMAT 'YYYY-MM-DD HH:MI:SS'{region}",
                    manifest = s3.object(&self.manifest_key(table)),
                    role = match &s3.iam_role {
                        Some(arn) => format!("'{arn}'"),
                        None => "default".into(),
                    },
                    region = match &s3.region {
                        Some(r) => format!("\nREGION '{r}'"),
                        None => String::new(),
                    },
                )
            }
        };
        Ok(Statement::Copy {
            table: table.name().to_string(),
            sql,
            keys,
        })
    }

    /// The Redshift load script: the [`Plan::statements`] in one
    /// transaction, COPY reading the manifests that
    /// `Plan::write_manifests` writes.
    pub fn redshift_script(&self, s3: &S3Target) -> Result<String, Error> {
        let statements = self.statements(
            Dialect::Redshift,
            &StatementOptions {
                s3: Some(s3.clone()),
                ..StatementOptions::default()
            },
        )?;
        let mut out = format!(
            "-- cafe-etl load plan {id}: {n} batches, {t} transactions staged.\n\
             -- COPY reads {m}\n\
             -- (and the other tables' manifests beside it); upload the staging root\n\
             -- with its manifests folder first. One transaction: all of it lands or none.\n\
             BEGIN;\n",
            id = self.id,
            n = self.batches.len(),
            t = self.staged_rows(Table::Transactions),
            m = s3.object(&self.manifest_key(Table::Stores)),
        );
        for st in &statements {
            out.push('\n');
            match st {
                Statement::Sql { why: Some(why), .. } => {
                    out.push_str("-- ");
                    out.push_str(why);
                    out.push('\n');
                }
                Statement::Copy { keys, table, .. } => {
                    let rows = LOADED
                        .iter()
                        .find(|t| t.name() == table)
                        .map_or(0, |&t| self.staged_rows(t));
                    out.push_str(&format!(
                        "-- {table}: {} files, {rows} rows staged.\n",
                        keys.len()
                    ));
                }
                Statement::Sql { why: None, .. } => {}
            }
            out.push_str(st.sql());
            out.push_str(";\n");
        }
        out.push_str("\nCOMMIT;\n");
        Ok(out)
    }
}

/// The position of a loaded table in [`LOADED`] (and in [`Batch::sizes`]).
fn loaded_index(table: Table) -> usize {
    LOADED
        .iter()
        .position(|&t| t == table)
        .expect("only loaded tables have manifests")
}

fn sql(why: Option<&'static str>, sql: String) -> Step {
    Step::Sql { why, sql }
}

/// The plan's batches in a temporary table, less those already loaded.
fn plan_batches_steps() -> Vec<Step> {
    let ledger_defs: Vec<String> = LEDGER
        .iter()
        .map(|(c, kind, _)| format!("{c} {}", kind.sql()))
        .collect();
    vec![
        sql(
            Some("The batches of this plan, with what the ledger records of each."),
            format!(
                "CREATE TEMP TABLE {PLAN_BATCHES} ({})",
                ledger_defs.join(", ")
            ),
        ),
        Step::PlanBatches,
        sql(
            Some(
                "Batches already in the ledger are dropped, so running a plan twice loads it once.",
            ),
            format!(
                "DELETE FROM {PLAN_BATCHES} USING {LEDGER_TABLE} \
                 WHERE {PLAN_BATCHES}.batch_id = {LEDGER_TABLE}.batch_id"
            ),
        ),
    ]
}

/// One table: its files copied into a temporary table, one row kept per
/// key, then merged into the table.
fn table_steps(table: Table) -> Vec<Step> {
    vec![
        sql(
            None,
            format!(
                "CREATE TEMP TABLE {} (LIKE {})",
                copy_table(table),
                table.name()
            ),
        ),
        Step::Copy(table),
        dedupe_step(table),
        match table {
            Table::Stores | Table::Products => insert_new_step(table),
            _ => merge_step(table),
        },
    ]
}

/// One row per key: the first by batch id for transactions (the batch that
/// staged it first keeps it), any for the rest, whose copies are identical
/// (ids are hashes of the content).
fn dedupe_step(table: Table) -> Step {
    let cols = table.columns();
    let keys = schema::key(table);
    let rest: Vec<&str> = cols.iter().copied().filter(|c| !keys.contains(c)).collect();
    let order = match table {
        Table::Transactions => vec!["batch_id"],
        _ => rest,
    };
    let filter = match table {
        Table::Transactions => {
            format!(" WHERE batch_id IN (SELECT batch_id FROM {PLAN_BATCHES})")
        }
        Table::BasketItems => format!(
            " WHERE transaction_id IN (SELECT transaction_id FROM {})",
            new_table(Table::Transactions)
        ),
        _ => String::new(),
    };
    let why = match table {
        Table::Stores | Table::Products => {
            "Every batch repeats the stores and products it sold: one row per id."
        }
        Table::Transactions => {
            "Only batches not yet loaded; a re-export of a day repeats transactions \
             of an earlier batch: one row per id."
        }
        _ => "Only the lines of those transactions, one per (transaction, product, price).",
    };
    sql(
        Some(why),
        format!(
            "CREATE TEMP TABLE {new} AS SELECT {cols} FROM (SELECT {cols}, \
             ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {order}) AS copy_no \
             FROM {copy}{filter}) copies WHERE copy_no = 1",
            new = new_table(table),
            cols = cols.join(", "),
            keys = keys.join(", "),
            order = order.join(", "),
            copy = copy_table(table),
        ),
    )
}

/// Dimension rows never change (the id is a hash of the content): an
/// anti-join inserts the new ones and leaves the others alone, where a
/// MERGE's update would rewrite every row on Redshift (a delete and an
/// insert each), every load.
fn insert_new_step(table: Table) -> Step {
    let name = table.name();
    let cols = table.columns();
    let keys = schema::key(table);
    let values: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
    let on: Vec<String> = keys.iter().map(|k| format!("t.{k} = s.{k}")).collect();
    sql(
        Some("Only ids the table does not have yet; the rows it has stay untouched."),
        format!(
            "INSERT INTO {name} ({cols}) SELECT {values} FROM {new} s \
             LEFT JOIN {name} t ON {on} WHERE t.{key} IS NULL",
            cols = cols.join(", "),
            values = values.join(", "),
            new = new_table(table),
            on = on.join(" AND "),
            key = keys[0],
        ),
    )
}

/// A matched row gets the values it already has (the same id is the same
/// content); the clause is there because Redshift's MERGE needs one. A
/// transaction keeps the batch it came with. Nor is a loaded transaction's
/// customer key ever rewritten (a batch of the same day staged with a key
/// must not silently give one to a row loaded without).
fn merge_step(table: Table) -> Step {
    let name = table.name();
    let cols = table.columns();
    let keys = schema::key(table);
    let values: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
    let set: Vec<String> = cols
        .iter()
        .filter(|c| !keys.contains(c) && **c != "batch_id" && **c != "customer_key")
        .map(|c| format!("{c} = s.{c}"))
        .collect();
    let on: Vec<String> = keys.iter().map(|k| format!("{name}.{k} = s.{k}")).collect();
    sql(
        None,
        format!(
            "MERGE INTO {name} USING {new} s ON {on} \
             WHEN MATCHED THEN UPDATE SET {set} \
             WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})",
            new = new_table(table),
            on = on.join(" AND "),
            set = set.join(", "),
            cols = cols.join(", "),
            values = values.join(", "),
        ),
    )
}

/// The batches into the ledger, then the temporary tables dropped.
fn ledger_steps() -> Vec<Step> {
    let ledger = ledger_columns().join(", ");
    let mut temps = vec![PLAN_BATCHES.to_string()];
    for table in LOADED {
        temps.push(copy_table(table));
        temps.push(new_table(table));
    }
    vec![
        sql(
            Some("The ledger last: a batch is listed only once its rows are in."),
            format!("INSERT INTO {LEDGER_TABLE} ({ledger}) SELECT {ledger} FROM {PLAN_BATCHES}"),
        ),
        sql(
            Some("Inside the transaction, so a failed load leaves nothing behind either."),
            format!("DROP TABLE {}", temps.join(", ")),
        ),
    ]
}

/// A statement named for an error message: its keywords up to the first
/// table it names (`merge into stores`). The generated SQL writes keywords
/// in capitals and names in lower case.
pub fn statement_label(sql: &str) -> String {
    let mut words = Vec::new();
    for w in sql.split_whitespace() {
        let w = w.trim_end_matches(',');
        words.push(w.to_ascii_lowercase());
        if w.bytes().any(|b| b.is_ascii_lowercase()) {
            break;
        }
    }
    words.join(" ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const LEEDS: &str =
        "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n";
    pub(crate) const YORK: &str =
        "25/08/2021 10:00,York,Bo Example,Regular Mocha - 2.30,2.30,CASH,\n";

    /// A batch staged by the core from `csv`, with its objects' sizes.
    pub(crate) fn batch(name: &str, csv: &str) -> Batch {
        let staged = crate::transform(csv.as_bytes(), name, &crate::Config::default()).unwrap();
        let sizes = [0, 1, 2, 3].map(|i| staged.files[i].1.len() as u64);
        Batch {
            report: staged.report,
            staged_at_ms: 0,
            sizes: Some(sizes),
        }
    }

    /// A batch with only an id and a source: enough for the ledger rows.
    fn bare(i: u32) -> Batch {
        Batch {
            report: Report {
                batch_id: format!("{i:032x}"),
                source: format!("till-{i}.csv"),
                customer_key_id: "none".into(),
                ..Report::default()
            },
            staged_at_ms: 0,
            sizes: None,
        }
    }

    fn civil(y: u32, m: u32, d: u32, h: u64, mi: u64, s: u64) -> u64 {
        (days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000
    }

    #[test]
    fn since_table() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1970-01-01", Some(0)),
            ("2021-08-25", Some(1_629_849_600_000)),
            ("2021-08-25T09:30:15Z", Some(civil(2021, 8, 25, 9, 30, 15))),
            ("2021-08-25 09:30", Some(civil(2021, 8, 25, 9, 30, 0))),
            ("2024-02-29", Some(civil(2024, 2, 29, 0, 0, 0))),
            ("2023-02-29", None),
            ("2021-13-01", None),
            ("2021-8-25", None),
            ("25/08/2021", None),
            ("2021-08-25T24:00", None),
            ("yesterday", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_since(s).ok(), *want, "{s}");
        }
    }

    #[test]
    fn s3_targets() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("s3://bucket", Ok("s3://bucket/stores/a.csv.gz")),
            (
                "s3://bucket/pre/fix/",
                Ok("s3://bucket/pre/fix/stores/a.csv.gz"),
            ),
            ("s3:///prefix", Err("no bucket")),
            ("https://bucket/x", Err("should start with s3://")),
            ("s3://b/it's", Err("quote")),
            ("s3://b/a b", Err("space")),
        ];
        for (url, want) in cases {
            match (S3Target::new(url), want) {
                (Ok(t), Ok(w)) => assert_eq!(t.object("stores/a.csv.gz"), *w),
                (Err(e), Err(w)) => assert!(e.contains(w), "{url}: {e}"),
                (got, _) => panic!("{url}: {got:?}"),
            }
        }
        let t = S3Target::new("s3://b").unwrap();
        assert!(t
            .clone()
            .with_iam_role("default")
            .unwrap()
            .iam_role
            .is_none());
        assert!(t.clone().with_iam_role("arn:aws:iam::1:role/r").is_ok());
        assert!(t.clone().with_iam_role("arn:x' OR 1=1").is_err());
        assert!(t.clone().with_iam_role("role").is_err());
        assert!(t.clone().with_region("eu-west-2").is_ok());
        assert!(t.with_region("EU west").is_err());
    }

    #[test]
    fn literals() {
        let cases: &[(Value, &str, &str)] = &[
            (Value::Null, "NULL", "NULL"),
            (Value::Number("12.50".into()), "12.50", "12.50"),
            (Value::Text("a.csv".into()), "'a.csv'", "'a.csv'"),
            (Value::Text("it's".into()), "'it''s'", "'it''s'"),
            (Value::Text("a\\b".into()), "'a\\\\b'", "'a\\b'"),
            (
                Value::Text("say \"x\"".into()),
                "'say \"x\"'",
                "'say \"x\"'",
            ),
            (Value::Text(String::new()), "''", "''"),
        ];
        for (v, redshift, postgres) in cases {
            assert_eq!(sql_literal(v, Dialect::Redshift), *redshift, "{v:?}");
            assert_eq!(sql_literal(v, Dialect::Postgres), *postgres, "{v:?}");
        }
        for (t, want) in [
            (
                Some("2021-08-25 09:00:00"),
                Value::Text("2021-08-25 09:00:00".into()),
            ),
            (Some("2021-08-25 09:00:00'; DROP"), Value::Null),
            (Some("2021-08-25T09:00:00"), Value::Null),
            (None, Value::Null),
        ] {
            assert_eq!(timestamp_value(t), want, "{t:?}");
        }
    }

    #[test]
    fn steps_insert_dimensions_merge_facts_and_record_the_ledger_last() {
        let plan = Plan::new(vec![batch("leeds.csv", LEEDS)]);
        let steps = plan.steps();
        let copies: Vec<Table> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Copy(t) => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!(copies, LOADED.to_vec());
        let sql: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Sql { sql, .. } => Some(sql.as_str()),
                _ => None,
            })
            .collect();
        let merges: Vec<&str> = sql
            .iter()
            .filter_map(|s| s.strip_prefix("MERGE INTO "))
            .map(|s| s.split(' ').next().unwrap())
            .collect();
        assert_eq!(merges, ["transactions", "basket_items"]);
        // Dimension rows: an anti-join, never a MERGE that rewrites them.
        for name in ["stores", "products"] {
            let insert = sql
                .iter()
                .find(|s| s.starts_with(&format!("INSERT INTO {name} (")))
                .unwrap_or_else(|| panic!("no insert into {name}"));
            assert!(
                insert.contains(&format!("LEFT JOIN {name} t ON t."))
                    && insert.ends_with("_id IS NULL"),
                "{insert}"
            );
        }
        // Loads queue on the lock table, never on a table dashboards read.
        assert_eq!(sql[0], "LOCK TABLE load_lock");
        assert_eq!(
            sql[1],
            format!(
                "UPDATE load_lock SET plan_id = '{}', loads = loads + 1",
                plan.id()
            )
        );
        assert!(!sql
            .iter()
            .any(|s| s.starts_with("LOCK TABLE loaded_batches")));
        assert!(sql[sql.len() - 2].starts_with("INSERT INTO loaded_batches"));
        assert!(sql[sql.len() - 1].starts_with("DROP TABLE tmp_plan_batches"));
        let tx_merge = sql
            .iter()
            .find(|s| s.starts_with("MERGE INTO transactions"))
            .unwrap();
        assert!(!tx_merge.contains("batch_id = s.batch_id"), "{tx_merge}");
        let script = plan
            .redshift_script(&S3Target::new("s3://b/p").unwrap())
            .unwrap();
        assert!(script.starts_with("-- cafe-etl load plan"));
        assert!(script.contains("\nBEGIN;\n") && script.ends_with("\nCOMMIT;\n"));
        assert!(script.contains("FROM 's3://b/p/manifests/"));
        assert!(!script.contains("Ann Example") && !script.contains("4111"));
    }

    #[test]
    fn statements_per_dialect_differ_only_in_copy() {
        let plan = Plan::new(vec![batch("leeds.csv", LEEDS), batch("york.csv", YORK)]);
        let ids: Vec<&str> = plan.batches().iter().map(Batch::id).collect();
        let pg = plan
            .statements(Dialect::Postgres, &StatementOptions::default())
            .unwrap();
        let e = plan
            .statements(Dialect::Redshift, &StatementOptions::default())
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("plan error: a Redshift load needs the S3 URL"));
        let s3 = S3Target::new("s3://b/p").unwrap();
        let rs = plan
            .statements(
                Dialect::Redshift,
                &StatementOptions {
                    s3: Some(s3),
                    ..StatementOptions::default()
                },
            )
            .unwrap();
        assert_eq!(pg.len(), rs.len());
        let mut copies = 0;
        for (p, r) in pg.iter().zip(&rs) {
            match (p, r) {
                (Statement::Sql { .. }, Statement::Sql { .. }) => assert_eq!(p, r),
                (
                    Statement::Copy { table, sql, keys },
                    Statement::Copy {
                        table: t2,
                        sql: s2,
                        keys: k2,
                    },
                ) => {
                    copies += 1;
                    assert_eq!((table, keys), (t2, k2));
                    let want: Vec<String> = ids
                        .iter()
                        .map(|id| format!("{table}/{id}.csv.gz"))
                        .collect();
                    assert_eq!(keys, &want);
                    assert!(
                        sql.starts_with(&format!("COPY tmp_copy_{table} (")),
                        "{sql}"
                    );
                    assert!(sql.ends_with(") FROM STDIN WITH (FORMAT csv)"), "{sql}");
                    assert!(
                        s2.contains(&format!(
                            "FROM 's3://b/p/manifests/{}/{table}.manifest'",
                            plan.id()
                        )) && s2.contains("\nMANIFEST\n"),
                        "{s2}"
                    );
                }
                _ => panic!("{p:?} against {r:?}"),
            }
        }
        assert_eq!(copies, 4);
        // One INSERT lists both batches, right after the table is made.
        let inserts: Vec<&str> = pg
            .iter()
            .map(Statement::sql)
            .filter(|s| s.starts_with("INSERT INTO tmp_plan_batches"))
            .collect();
        assert_eq!(inserts.len(), 1);
        assert!(ids.iter().all(|id| inserts[0].contains(id)));
    }

    #[test]
    fn planned_batches_are_chunked_by_bytes() {
        let plan = Plan::new((0..7).map(bare).collect());
        let rows = |s: &str| s.lines().filter(|l| l.starts_with('(')).count();
        let one = plan
            .plan_batches_inserts(Dialect::Postgres, usize::MAX)
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(rows(&one[0]), 7);
        let row_len = one[0].lines().nth(1).unwrap().trim_end_matches(',').len();
        let head_len = one[0].lines().next().unwrap().len() + 1;
        // (largest statement allowed, INSERTs expected, or the refusal)
        let cases: &[(usize, Result<usize, &str>)] = &[
            (head_len + row_len, Ok(7)),
            (head_len + 2 * row_len + 2, Ok(4)),
            (head_len + 3 * row_len + 4, Ok(3)),
            (head_len + 7 * row_len + 12, Ok(1)),
            (head_len + row_len - 1, Err("no statement of at most")),
        ];
        for (max, want) in cases {
            match (plan.plan_batches_inserts(Dialect::Redshift, *max), want) {
                (Ok(chunks), Ok(n)) => {
                    assert_eq!(chunks.len(), *n, "max {max}");
                    assert!(chunks.iter().all(|c| c.len() <= *max), "max {max}");
                    let all: Vec<&str> = chunks
                        .iter()
                        .flat_map(|c| c.lines().filter(|l| l.starts_with('(')))
                        .map(|l| l.trim_end_matches(','))
                        .collect();
                    let ids: Vec<String> = plan
                        .batches()
                        .iter()
                        .map(|b| format!("('{}'", b.id()))
                        .collect();
                    assert_eq!(all.len(), 7, "max {max}");
                    for (line, id) in all.iter().zip(&ids) {
                        assert!(line.starts_with(id.as_str()), "{line}");
                    }
                }
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, _) => panic!("max {max}: {got:?}"),
            }
        }
        // The whole list of statements is held to the same limit.
        let e = plan
            .statements(
                Dialect::Postgres,
                &StatementOptions {
                    s3: None,
                    max_statement_bytes: head_len + row_len,
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("bytes, more than the"), "{e}");
        assert_eq!(e.code(), Some("statement_too_long"));
    }

    #[test]
    fn markers_are_read_and_checked() {
        let good = batch("leeds.csv", LEEDS).report;
        let json = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(&good).unwrap();
            f(&mut v);
            serde_json::to_vec(&v).unwrap()
        };
        let cases: Vec<(Vec<u8>, Result<(), &str>)> = vec![
            (json(&|_| {}), Ok(())),
            (b"not json".to_vec(), Err("is not a batch report: expected")),
            (
                json(&|v| v["batch_id"] = "../../etc".into()),
                Err("its batch_id is not 32 hex digits"),
            ),
            (
                json(&|v| v["customer_key_id"] = "x' OR 1=1".into()),
                Err("its customer_key_id is not 16 hex digits or none"),
            ),
            (
                json(&|v| v["rows_read"] = "Ann Example".into()),
                Err("invalid type: string a value, expected u64"),
            ),
            (
                json(&|v| v["format"] = "Ann Example".into()),
                Err("unknown variant a value"),
            ),
            (
                json(&|v| {
                    v.as_object_mut().unwrap().remove("batch_id");
                }),
                Err("missing field `batch_id`"),
            ),
        ];
        for (bytes, want) in cases {
            match (read_marker(&bytes), want) {
                (Ok(r), Ok(())) => assert_eq!(r.batch_id, good.batch_id),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w), "{e}");
                    assert!(!e.contains("Ann") && !e.contains("etc"), "{e}");
                }
                (got, _) => panic!("{}: {got:?}", String::from_utf8_lossy(&bytes)),
            }
        }
    }

    #[test]
    fn a_manifest_gives_sizes_only_when_known() {
        let s3 = S3Target::new("s3://b").unwrap();
        let known = Plan::new(vec![batch("leeds.csv", LEEDS)]);
        let m: serde_json::Value =
            serde_json::from_str(&known.manifest(Table::Products, &s3)).unwrap();
        assert_eq!(
            m["entries"][0]["meta"]["content_length"],
            known.batches()[0].sizes.unwrap()[1]
        );
        let unknown = Plan::new(vec![bare(1)]);
        let m: serde_json::Value =
            serde_json::from_str(&unknown.manifest(Table::Products, &s3)).unwrap();
        assert_eq!(m["entries"][0]["mandatory"], true);
        assert!(m["entries"][0].get("meta").is_none());
        let all = unknown.manifests(&s3);
        assert_eq!(
            all.iter()
                .map(|(t, k, _)| (*t, k.clone()))
                .collect::<Vec<_>>(),
            LOADED
                .iter()
                .map(|&t| (t, unknown.manifest_key(t)))
                .collect::<Vec<_>>()
        );
    }
}
