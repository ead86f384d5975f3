//! Which staged batches to load, and the steps that load them.
//!
//! A batch is complete when its marker, `batches/<id>.json`, is there (the
//! stage writes it last); a batch without one is left alone. A [`Plan`] is
//! a set of complete batches and one list of [`Step`]s for both dialects:
//! everything is plain SQL that Redshift and PostgreSQL both run, except how
//! the rows get into the temporary tables, which is COPY from an S3
//! manifest on Redshift ([`Plan::redshift_script`]) and `COPY ... FROM
//! STDIN` on PostgreSQL ([`super::postgres`]).
//!
//! The steps, in one transaction:
//!
//! 1. lock the one-row `load_lock` table, so two loads queue instead of
//!    racing, while the dashboards keep reading the ledger and the views;
//! 2. list the plan's batches in a temporary table and drop those already
//!    in the ledger: a plan run twice loads once, even a plan made without
//!    access to the warehouse;
//! 3. per table: COPY every batch's file into a temporary table, keep one
//!    row per key (stores and products repeat across batches, a re-export
//!    of a day repeats its transactions); stores and products new to the
//!    warehouse are inserted with an anti-join (the rows it has are left
//!    untouched), transactions and basket items are `MERGE`d;
//! 4. add the batches to the ledger.

use super::schema::{self, Dialect, LEDGER, LEDGER_TABLE, LOADED, LOAD_LOCK_TABLE};
use super::{Error, Phase};
use crate::{is_batch_id, marker_key, Report, Table};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A complete staged batch.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Its report, read from the marker.
    pub report: Report,
    /// When the marker was written: what `--since` compares with.
    pub staged_at: SystemTime,
    /// Bytes of each loaded table's file, in [`LOADED`] order.
    pub sizes: [u64; 4],
}

impl Batch {
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

/// What a staging root holds.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Batches with their marker, by batch id.
    pub complete: Vec<Batch>,
    /// Batch ids with table files but no marker yet (still being staged, or
    /// abandoned): never loaded.
    pub incomplete: Vec<String>,
    /// Batches with a marker that cannot be loaded (a table object it
    /// names is missing, or the marker is not a report of that batch):
    /// skipped and reported, so one broken batch never stops the others.
    pub broken: Vec<BrokenBatch>,
}

/// A batch with a marker that the plan skips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenBatch {
    /// The batch id its marker is named by.
    pub batch_id: String,
    /// The object at fault, relative to the root: a missing table file
    /// (`products/<id>.csv.gz`) or the marker itself.
    pub object: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for BrokenBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch {} skipped: {} {}",
            self.batch_id, self.object, self.problem
        )
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::new(Phase::Plan, format!("{}: {e}", path.display()))
}

/// Finds the batches of a staging root.
pub fn scan(root: &Path) -> Result<Scan, Error> {
    let markers = root.join("batches");
    if !markers.is_dir() {
        return Err(Error::new(
            Phase::Plan,
            format!(
                "{}: not a staging root (no batches folder); make one with `cafe-etl transform --out`",
                root.display()
            ),
        ));
    }
    let mut complete = Vec::new();
    let mut broken = Vec::new();
    let mut marked = BTreeSet::new();
    for entry in std::fs::read_dir(&markers).map_err(|e| io(&markers, e))? {
        let entry = entry.map_err(|e| io(&markers, e))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        // Temporary files start with a dot and are not batch ids.
        if !is_batch_id(id) {
            continue;
        }
        let key = marker_key(id);
        let path = root.join(&key);
        // The batch has a marker: whatever is wrong with it, it is not an
        // incomplete batch to leave for later.
        marked.insert(id.to_string());
        let text = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let mut skip = |object: String, problem: String| {
            broken.push(BrokenBatch {
                batch_id: id.to_string(),
                object,
                problem,
            })
        };
        let report: Report = match serde_json::from_slice(&text) {
            Ok(r) => r,
            Err(e) => {
                skip(key, format!("is not a batch report: {e}"));
                continue;
            }
        };
        if report.batch_id != id {
            skip(
                key,
                format!("is the report of batch {}, not {id}", report.batch_id),
            );
            continue;
        }
        if !crate::clean::is_customer_key_id(&report.customer_key_id) {
            return Err(Error::new(
                Phase::Plan,
                format!(
                    "{}: customer_key_id {:?} is not 16 hex digits or none",
                    path.display(),
                    report.customer_key_id
                ),
            ));
        }
        let staged_at = entry
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| io(&path, e))?;
        let mut sizes = [0u64; 4];
        let mut missing = None;
        for (size, table) in sizes.iter_mut().zip(LOADED) {
            let object = table.key(id);
            match std::fs::metadata(root.join(&object)) {
                Ok(m) => *size = m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing = Some(object);
                    break;
                }
                Err(e) => return Err(io(&root.join(&object), e)),
            }
        }
        if let Some(object) = missing {
            skip(
                object,
                "is missing, though the batch's marker is there".into(),
            );
            continue;
        }
        marked.insert(id.to_string());
        complete.push(Batch {
            report,
            staged_at,
            sizes,
        });
    }
    complete.sort_by(|a, b| a.id().cmp(b.id()));
    broken.sort_by(|a: &BrokenBatch, b| a.batch_id.cmp(&b.batch_id));
    let mut incomplete = BTreeSet::new();
    for table in LOADED {
        let dir = root.join(table.name());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".csv.gz")) {
                if is_batch_id(id) && !marked.contains(id) {
                    incomplete.insert(id.to_string());
                }
            }
        }
    }
    Ok(Scan {
        complete,
        incomplete: incomplete.into_iter().collect(),
        broken,
    })
}

/// Reads `--since`: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or
/// `YYYY-MM-DDTHH:MM[:SS][Z]`, in UTC.
pub fn parse_since(s: &str) -> Result<SystemTime, String> {
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
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
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
            .ok_or_else(|| format!("--s3-url {url:?} should start with s3://"))?;
        let bucket = rest.split('/').next().unwrap_or("");
        if bucket.is_empty() {
            return Err(format!("--s3-url {url:?} has no bucket"));
        }
        // The URL goes into SQL string literals and JSON.
        if url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
        {
            return Err(format!(
                "--s3-url {url:?} has a quote, backslash or space; S3 keys here never do"
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
                "--iam-role {role:?} should be an IAM role ARN (arn:aws:iam::...:role/...) or default"
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
                "--region {region:?} should be an AWS region like eu-west-2"
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

/// One step of a load.
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
            // Checked by `scan`: 16 hex digits or `none`.
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

/// A value as a CSV field for `COPY ... (FORMAT csv)`: text always quoted
/// (so an empty string is not NULL), NULL as an empty field.
pub fn csv_field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Number(n) => n.clone(),
        Value::Text(s) => format!("\"{}\"", s.replace('"', "\"\"")),
    }
}

/// The manifest Redshift COPY reads: every file of one table, each one
/// mandatory, with its size.
#[derive(serde::Serialize)]
struct Manifest {
    entries: Vec<ManifestEntry>,
}

#[derive(serde::Serialize)]
struct ManifestEntry {
    url: String,
    mandatory: bool,
    meta: ManifestMeta,
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
        let i = LOADED
            .iter()
            .position(|&t| t == table)
            .expect("only loaded tables have manifests");
        let m = Manifest {
            entries: self
                .batches
                .iter()
                .map(|b| ManifestEntry {
                    url: s3.object(&table.key(b.id())),
                    mandatory: true,
                    meta: ManifestMeta {
                        content_length: b.sizes[i],
                    },
                })
                .collect(),
        };
        serde_json::to_string_pretty(&m).expect("a manifest always serialises")
    }

    /// Writes the four manifests under `root` (each to a temporary file
    /// renamed into place) and gives their paths.
    pub fn write_manifests(&self, root: &Path, s3: &S3Target) -> Result<Vec<PathBuf>, Error> {
        let mut paths = Vec::new();
        for table in LOADED {
            let path = root.join(self.manifest_key(table));
            let dir = path.parent().expect("a manifest key has a folder");
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            let tmp = dir.join(format!(".{}.manifest.tmp", table.name()));
            std::fs::write(&tmp, self.manifest(table, s3)).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// The steps of the load, for both dialects; the caller wraps them in
    /// one transaction.
    pub fn steps(&self) -> Vec<Step> {
        let sql = |why: Option<&'static str>, sql: String| Step::Sql { why, sql };
        let mut steps = vec![
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
        ];
        let ledger_defs: Vec<String> = LEDGER
            .iter()
            .map(|(c, kind, _)| format!("{c} {}", kind.sql()))
            .collect();
        steps.push(sql(
            Some("The batches of this plan, with what the ledger records of each."),
            format!(
                "CREATE TEMP TABLE {PLAN_BATCHES} ({})",
                ledger_defs.join(", ")
            ),
        ));
        steps.push(Step::PlanBatches);
        steps.push(sql(
            Some(
                "Batches already in the ledger are dropped, so running a plan twice loads it once.",
            ),
            format!(
                "DELETE FROM {PLAN_BATCHES} USING {LEDGER_TABLE} \
                 WHERE {PLAN_BATCHES}.batch_id = {LEDGER_TABLE}.batch_id"
            ),
        ));
        for table in LOADED {
            let name = table.name();
            let cols = table.columns();
            let keys = schema::key(table);
            let rest: Vec<&str> = cols.iter().copied().filter(|c| !keys.contains(c)).collect();
            steps.push(sql(
                None,
                format!("CREATE TEMP TABLE {} (LIKE {name})", copy_table(table)),
            ));
            steps.push(Step::Copy(table));
            // One row per key: the first by batch id for transactions (the
            // batch that staged it first keeps it), any for the rest, whose
            // copies are identical (ids are hashes of the content).
            let order = match table {
                Table::Transactions => vec!["batch_id"],
                _ => rest.clone(),
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
            steps.push(sql(
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
            ));
            let new = new_table(table);
            let values: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
            if matches!(table, Table::Stores | Table::Products) {
                // Dimension rows never change (the id is a hash of the
                // content): an anti-join inserts the new ones and leaves the
                // others alone, where a MERGE's update would rewrite every
                // row on Redshift (a delete and an insert each), every load.
                let on: Vec<String> = keys.iter().map(|k| format!("t.{k} = s.{k}")).collect();
                steps.push(sql(
                    Some("Only ids the table does not have yet; the rows it has stay untouched."),
                    format!(
                        "INSERT INTO {name} ({cols}) SELECT {values} FROM {new} s \
                         LEFT JOIN {name} t ON {on} WHERE t.{key} IS NULL",
                        cols = cols.join(", "),
                        values = values.join(", "),
                        on = on.join(" AND "),
                        key = keys[0],
                    ),
                ));
                continue;
            }
            // A matched row gets the values it already has (the same id is
            // the same content); the clause is there because Redshift's
            // MERGE needs one. A transaction keeps the batch it came with.
            // Nor is a loaded transaction's customer key ever rewritten (a
            // batch of the same day staged with a key must not silently
            // give one to a row loaded without).
            let set: Vec<String> = rest
                .iter()
                .filter(|c| **c != "batch_id" && **c != "customer_key")
                .map(|c| format!("{c} = s.{c}"))
                .collect();
            let on: Vec<String> = keys.iter().map(|k| format!("{name}.{k} = s.{k}")).collect();
            steps.push(sql(
                None,
                format!(
                    "MERGE INTO {name} USING {new} s ON {on} \
                     WHEN MATCHED THEN UPDATE SET {set} \
                     WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})",
                    on = on.join(" AND "),
                    set = set.join(", "),
                    cols = cols.join(", "),
                    values = values.join(", "),
                ),
            ));
        }
        let ledger = ledger_columns().join(", ");
        steps.push(sql(
            Some("The ledger last: a batch is listed only once its rows are in."),
            format!("INSERT INTO {LEDGER_TABLE} ({ledger}) SELECT {ledger} FROM {PLAN_BATCHES}"),
        ));
        let mut temps = vec![PLAN_BATCHES.to_string()];
        for table in LOADED {
            temps.push(copy_table(table));
            temps.push(new_table(table));
        }
        steps.push(sql(
            Some("Inside the transaction, so a failed load leaves nothing behind either."),
            format!("DROP TABLE {}", temps.join(", ")),
        ));
        steps
    }

    /// The Redshift load script: the [`Plan::steps`] in one transaction,
    /// COPY reading the manifests that [`Plan::write_manifests`] writes.
    pub fn redshift_script(&self, s3: &S3Target) -> String {
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
        for step in self.steps() {
            out.push('\n');
            match step {
                Step::Sql { why, sql } => {
                    if let Some(why) = why {
                        out.push_str("-- ");
                        out.push_str(why);
                        out.push('\n');
                    }
                    out.push_str(&sql);
                    out.push_str(";\n");
                }
                Step::PlanBatches => {
                    // Chunks keep each statement far below Redshift's 16 MB.
                    for chunk in self.batches.chunks(500) {
                        let rows: Vec<String> = chunk
                            .iter()
                            .map(|b| {
                                let vals: Vec<String> = ledger_row(b)
                                    .iter()
                                    .map(|v| sql_literal(v, Dialect::Redshift))
                                    .collect();
                                format!("({})", vals.join(", "))
                            })
                            .collect();
                        out.push_str(&format!(
                            "INSERT INTO {PLAN_BATCHES} ({}) VALUES\n{};\n",
                            ledger_columns().join(", "),
                            rows.join(",\n")
                        ));
                    }
                }
                Step::Copy(table) => {
                    out.push_str(&format!(
                        "-- {name}: {files} files, {rows} rows staged.\n\
                         COPY {copy} ({cols})\nFROM '{manifest}'\nIAM_ROLE {role}\nMANIFEST\n\
                         CSV GZIP EMPTYASNULL\nTIMEFORMAT 'YYYY-MM-DD HH:MI:SS'{region};\n",
                        name = table.name(),
                        files = self.batches.len(),
                        rows = self.staged_rows(table),
                        copy = copy_table(table),
                        cols = table.columns().join(", "),
                        manifest = s3.object(&self.manifest_key(table)),
                        role = match &s3.iam_role {
                            Some(arn) => format!("'{arn}'"),
                            None => "default".into(),
                        },
                        region = match &s3.region {
                            Some(r) => format!("\nREGION '{r}'"),
                            None => String::new(),
                        },
                    ));
                }
            }
        }
        out.push_str("\nCOMMIT;\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn civil(y: u32, m: u32, d: u32, h: u64, mi: u64, s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s)
    }

    #[test]
    fn since_table() {
        let cases: &[(&str, Option<SystemTime>)] = &[
            ("1970-01-01", Some(UNIX_EPOCH)),
            (
                "2021-08-25",
                Some(UNIX_EPOCH + Duration::from_secs(1_629_849_600)),
            ),
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
    fn literals_and_csv_fields() {
        let cases: &[(Value, &str, &str, &str)] = &[
            (Value::Null, "NULL", "NULL", ""),
            (Value::Number("12.50".into()), "12.50", "12.50", "12.50"),
            (
                Value::Text("a.csv".into()),
                "'a.csv'",
                "'a.csv'",
                "\"a.csv\"",
            ),
            (Value::Text("it's".into()), "'it''s'", "'it''s'", "\"it's\""),
            (Value::Text("a\\b".into()), "'a\\\\b'", "'a\\b'", "\"a\\b\""),
            (
                Value::Text("say \"x\"".into()),
                "'say \"x\"'",
                "'say \"x\"'",
                "\"say \"\"x\"\"\"",
            ),
            (Value::Text(String::new()), "''", "''", "\"\""),
        ];
        for (v, redshift, postgres, csv) in cases {
            assert_eq!(sql_literal(v, Dialect::Redshift), *redshift, "{v:?}");
            assert_eq!(sql_literal(v, Dialect::Postgres), *postgres, "{v:?}");
            assert_eq!(csv_field(v), *csv, "{v:?}");
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

    /// Stages `files` (name, CSV) under a fresh root with the core.
    fn staged(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for dir in Table::ALL.iter().map(|t| t.name()).chain(["batches"]) {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        for (name, csv) in files {
            let staged = crate::transform(csv.as_bytes(), name, &crate::Config::default()).unwrap();
            for (key, bytes) in staged.files {
                std::fs::File::create(root.path().join(key))
                    .unwrap()
                    .write_all(&bytes)
                    .unwrap();
            }
        }
        root
    }

    const LEEDS: &str =
        "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n";
    const YORK: &str = "25/08/2021 10:00,York,Bo Example,Regular Mocha - 2.30,2.30,CASH,\n";

    #[test]
    fn scan_finds_complete_batches_and_skips_unmarked_ones() {
        let root = staged(&[("leeds.csv", LEEDS), ("york.csv", YORK)]);
        let york = crate::batch_id(YORK.as_bytes());
        std::fs::remove_file(root.path().join(marker_key(&york))).unwrap();
        // A marker being written is a dot file, and is ignored too.
        std::fs::write(root.path().join("batches/.x.json.tmp"), "{").unwrap();
        let scan = scan(root.path()).unwrap();
        assert_eq!(scan.complete.len(), 1);
        assert_eq!(scan.complete[0].id(), crate::batch_id(LEEDS.as_bytes()));
        assert_eq!(scan.complete[0].rows(Table::Transactions), 1);
        assert_eq!(scan.incomplete, vec![york]);
        let gz = std::fs::metadata(root.path().join(Table::Stores.key(scan.complete[0].id())))
            .unwrap()
            .len();
        assert_eq!(scan.complete[0].sizes[0], gz);
    }

    #[test]
    fn scan_skips_and_reports_broken_batches_and_keeps_the_rest() {
        let root = staged(&[("leeds.csv", LEEDS), ("york.csv", YORK)]);
        let leeds = crate::batch_id(LEEDS.as_bytes());
        let york = crate::batch_id(YORK.as_bytes());
        std::fs::remove_file(root.path().join(Table::Products.key(&leeds))).unwrap();
        let found = scan(root.path()).unwrap();
        assert_eq!(
            found.complete.iter().map(Batch::id).collect::<Vec<_>>(),
            vec![york.as_str()]
        );
        assert!(
            found.incomplete.is_empty(),
            "a marked batch is not incomplete"
        );
        assert_eq!(
            found.broken,
            vec![BrokenBatch {
                batch_id: leeds.clone(),
                object: format!("products/{leeds}.csv.gz"),
                problem: "is missing, though the batch's marker is there".into(),
            }]
        );
        assert_eq!(
            found.broken[0].to_string(),
            format!("batch {leeds} skipped: products/{leeds}.csv.gz is missing, though the batch's marker is there")
        );
        // A marker that is not a report of its batch is skipped the same way.
        let root = staged(&[("leeds.csv", LEEDS), ("york.csv", YORK)]);
        std::fs::write(root.path().join(marker_key(&leeds)), "not json").unwrap();
        let found = scan(root.path()).unwrap();
        assert_eq!(found.complete.len(), 1);
        assert_eq!(found.broken[0].object, marker_key(&leeds));
        assert!(found.broken[0].problem.starts_with("is not a batch report"));
        let e = scan(&root.path().join("nowhere")).unwrap_err().to_string();
        assert!(e.contains("not a staging root"), "{e}");
    }

    #[test]
    fn manifests_list_every_file_with_its_size() {
        let root = staged(&[("leeds.csv", LEEDS), ("york.csv", YORK)]);
        let plan = Plan::new(scan(root.path()).unwrap().complete);
        let s3 = S3Target::new("s3://cafe-staging/v1/").unwrap();
        let paths = plan.write_manifests(root.path(), &s3).unwrap();
        assert_eq!(paths.len(), 4);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&paths[2]).unwrap()).unwrap();
        let entries = m["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        for (e, b) in entries.iter().zip(plan.batches()) {
            let key = Table::Transactions.key(b.id());
            assert_eq!(e["url"], format!("s3://cafe-staging/v1/{key}"));
            assert_eq!(e["mandatory"], true);
            let size = std::fs::metadata(root.path().join(&key)).unwrap().len();
            assert_eq!(e["meta"]["content_length"], size);
        }
        // The same batches make the same plan, whatever order they came in.
        let mut reversed = plan.batches().to_vec();
        reversed.reverse();
        assert_eq!(Plan::new(reversed).id(), plan.id());
        assert_ne!(Plan::new(plan.batches()[..1].to_vec()).id(), plan.id());
    }

    #[test]
    fn steps_insert_dimensions_merge_facts_and_record_the_ledger_last() {
        let root = staged(&[("leeds.csv", LEEDS)]);
        let plan = Plan::new(scan(root.path()).unwrap().complete);
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
        let script = plan.redshift_script(&S3Target::new("s3://b/p").unwrap());
        assert!(script.starts_with("-- cafe-etl load plan"));
        assert!(script.contains("\nBEGIN;\n") && script.ends_with("\nCOMMIT;\n"));
        assert!(script.contains("FROM 's3://b/p/manifests/"));
        assert!(!script.contains("Ann Example") && !script.contains("4111"));
    }
}
