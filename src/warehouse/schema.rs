//! The warehouse schema, for Redshift and PostgreSQL, from one place.
//!
//! Column names and order come from [`Table::columns`] (the staging
//! contract); this module only adds what a warehouse needs on top: types,
//! keys, and where the rows live on a Redshift cluster. The analytics views
//! are one SQL file, `sql/views.sql`, written in the subset both dialects
//! speak, and listed in [`VIEWS`].
//!
//! Everything here is safe to run again: `CREATE TABLE IF NOT EXISTS`,
//! `CREATE INDEX IF NOT EXISTS`, `CREATE OR REPLACE VIEW`.

use crate::Table;
use std::fmt::Write as _;

/// A SQL dialect the warehouse speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Amazon Redshift: distribution and sort keys, column encodings, COPY
    /// from S3 manifests.
    Redshift,
    /// PostgreSQL 15 or later (`MERGE`): indexes instead of sort keys, COPY
    /// from the client.
    Postgres,
}

impl Dialect {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Redshift => "redshift",
            Dialect::Postgres => "postgres",
        }
    }
}

impl std::str::FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Dialect, String> {
        match s.to_ascii_lowercase().as_str() {
            "redshift" => Ok(Dialect::Redshift),
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            _ => Err(format!(
                "unknown dialect {s:?}, expected redshift or postgres"
            )),
        }
    }
}

/// The staged tables that are loaded, in load order (a row's references
/// land before it). Rejects stay in the staging layout: the ledger keeps
/// their count per batch.
pub const LOADED: [Table; 4] = [
    Table::Stores,
    Table::Products,
    Table::Transactions,
    Table::BasketItems,
];

/// The columns a loaded row is matched on. Ids are derived from content, so
/// the same key always carries the same values. A basket holds one line per
/// (product, price), so its items are keyed on all three.
pub fn key(table: Table) -> &'static [&'static str] {
    match table {
        Table::Stores => &["store_id"],
        Table::Products => &["product_id"],
        Table::Transactions => &["transaction_id"],
        Table::BasketItems => &["transaction_id", "product_id", "unit_price"],
        Table::Rejects => &["line"],
    }
}

/// What a column holds; each renders to one SQL type in both dialects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A UUID as text.
    Uuid,
    /// A batch id: 32 hex digits.
    BatchId,
    /// An HMAC-SHA256 as 64 hex digits.
    Hex64,
    /// Free text of at most this many bytes.
    Text(u32),
    /// Few distinct values (sizes, payment methods).
    Label(u32),
    /// `YYYY-MM-DD HH:MM:SS`, local time of the till.
    Timestamp,
    /// Money of one row: the core refuses amounts above 99,999,999.99.
    Money,
    /// Money summed over a batch.
    Revenue,
    /// A count within a row.
    Int,
    /// A count over a batch.
    BigInt,
}

impl Kind {
    /// The SQL type, the same in both dialects.
    pub(crate) fn sql(self) -> String {
        match self {
            Kind::Uuid => "CHAR(36)".into(),
            Kind::BatchId => "CHAR(32)".into(),
            Kind::Hex64 => "CHAR(64)".into(),
            Kind::Text(n) | Kind::Label(n) => format!("VARCHAR({n})"),
            Kind::Timestamp => "TIMESTAMP".into(),
            Kind::Money => "DECIMAL(10,2)".into(),
            Kind::Revenue => "DECIMAL(14,2)".into(),
            Kind::Int => "INTEGER".into(),
            Kind::BigInt => "BIGINT".into(),
        }
    }

    /// Redshift column encoding: AZ64 for numbers and times (Amazon's own,
    /// best on them), BYTEDICT for a handful of distinct strings, ZSTD for
    /// the rest (ids are random, so little compresses them much anyway).
    fn encoding(self) -> &'static str {
        match self {
            Kind::Timestamp | Kind::Money | Kind::Revenue | Kind::Int | Kind::BigInt => "AZ64",
            Kind::Label(_) => "BYTEDICT",
            Kind::Uuid | Kind::BatchId | Kind::Hex64 | Kind::Text(_) => "ZSTD",
        }
    }
}

/// Type and nullability of a staged column. Panics on a column this module
/// does not know: a unit test walks [`Table::columns`] so a column added to
/// the staging contract fails here first.
pub(crate) fn column(table: Table, name: &str) -> (Kind, bool) {
    const NULL: bool = true;
    const NOT_NULL: bool = false;
    match (table, name) {
        (Table::Stores, "store_id") => (Kind::Uuid, NOT_NULL),
        // The core refuses store names over 100 bytes.
        (Table::Stores, "store_name") => (Kind::Text(256), NOT_NULL),
        (Table::Products, "product_id") => (Kind::Uuid, NOT_NULL),
        // Empty size or flavour is staged as an empty field: NULL here.
        (Table::Products, "size") => (Kind::Label(256), NULL),
        (Table::Products, "name") => (Kind::Text(1024), NOT_NULL),
        (Table::Products, "flavour") => (Kind::Text(1024), NULL),
        (Table::Transactions, "transaction_id") => (Kind::Uuid, NOT_NULL),
        (Table::Transactions, "store_id") => (Kind::Uuid, NOT_NULL),
        (Table::Transactions, "occurred_at") => (Kind::Timestamp, NOT_NULL),
        (Table::Transactions, "payment_method") => (Kind::Label(4), NOT_NULL),
        (Table::Transactions, "total_price") => (Kind::Money, NOT_NULL),
        (Table::Transactions, "item_count") => (Kind::Int, NOT_NULL),
        // Empty when the batch was staged without a customer-key secret.
        (Table::Transactions, "customer_key") => (Kind::Hex64, NULL),
        (Table::Transactions, "batch_id") => (Kind::BatchId, NOT_NULL),
        (Table::BasketItems, "transaction_id") => (Kind::Uuid, NOT_NULL),
        (Table::BasketItems, "product_id") => (Kind::Uuid, NOT_NULL),
        (Table::BasketItems, "quantity") => (Kind::Int, NOT_NULL),
        (Table::BasketItems, "unit_price") => (Kind::Money, NOT_NULL),
        // Items add up to the total, so a line never exceeds DECIMAL(10,2).
        (Table::BasketItems, "line_total") => (Kind::Money, NOT_NULL),
        _ => panic!("no warehouse type for {}.{name}", table.name()),
    }
}

/// The ledger of loaded batches, one row per batch, from its report. The
/// last column, `loaded_at`, is filled by the database.
pub(crate) const LEDGER: [(&str, Kind, bool); 12] = [
    ("batch_id", Kind::BatchId, false),
    ("source", Kind::Text(1024), false),
    ("format", Kind::Label(16), false),
    ("rows_read", Kind::BigInt, false),
    ("rows_staged", Kind::BigInt, false),
    ("rows_rejected", Kind::BigInt, false),
    ("transactions", Kind::BigInt, false),
    ("basket_items", Kind::BigInt, false),
    ("revenue", Kind::Revenue, false),
    ("first_at", Kind::Timestamp, true),
    ("last_at", Kind::Timestamp, true),
    // Which secret made the batch's customer keys (`none` without keys):
    // the load refuses to mix secrets. Nullable only for ledgers made before
    // the column existed (PostgreSQL adds it, see [`tables`]).
    ("customer_key_id", Kind::Label(16), true),
];

/// The name of the ledger table.
pub const LEDGER_TABLE: &str = "loaded_batches";

/// The one-row table loads queue on. Nothing else reads it, so a load
/// holding it never blocks the dashboards' reads of the ledger or the
/// views (as `LOCK loaded_batches` did, for the whole load). Its row
/// records the last plan that held it and how many loads have.
pub const LOAD_LOCK_TABLE: &str = "load_lock";

/// Batches that will not load (a COPY error, a missing object), one row
/// each, with the latest reason: written by
/// [`super::failures::quarantine_statements`], read by whoever shows a
/// batch's state.
pub const FAILURES_TABLE: &str = "load_failures";

/// The columns of [`FAILURES_TABLE`]; the times are filled by the database.
pub(crate) const FAILURES: [(&str, Kind, bool); 7] = [
    ("batch_id", Kind::BatchId, false),
    // The store the batch was uploaded for; unknown for a batch found by a
    // sweep with no marker to read.
    ("store", Kind::Text(256), true),
    // A stable code (`copy_failed`, `missing_object`, ...).
    ("code", Kind::Label(64), false),
    // Plain words, no personal data, no bucket or key names.
    ("reason", Kind::Text(1024), false),
    ("attempts", Kind::Int, false),
    ("first_failed_at", Kind::Timestamp, false),
    ("failed_at", Kind::Timestamp, false),
];

/// A column of a table: its name, what it holds, whether it may be NULL.
type Column = (&'static str, Kind, bool);

/// Where a table's rows live on a Redshift cluster, and why.
struct Layout {
    /// `None` for DISTSTYLE ALL.
    dist_key: Option<&'static str>,
    sort_key: &'static [&'static str],
    why: &'static str,
}

fn layout(table: Table) -> Layout {
    match table {
        Table::Stores => Layout {
            dist_key: None,
            sort_key: &["store_id"],
            why: "A few rows joined to every transaction: DISTSTYLE ALL keeps a copy on every \
                  node, so the join never moves data.",
        },
        Table::Products => Layout {
            dist_key: None,
            sort_key: &["product_id"],
            why: "The menu: a small table joined to every basket line; DISTSTYLE ALL, as stores.",
        },
        Table::Transactions => Layout {
            dist_key: Some("transaction_id"),
            sort_key: &["occurred_at"],
            why: "DISTKEY transaction_id puts a transaction on the same slice as its basket \
                  lines (the largest join, and the MERGE on it); the ids are hashes, so \
                  slices stay even, where store_id (a few stores, some far busier) would \
                  skew them. SORTKEY \
                  occurred_at: every view groups or filters by day, week or hour, and zone \
                  maps then skip whole blocks.",
        },
        Table::BasketItems => Layout {
            dist_key: Some("transaction_id"),
            sort_key: &["transaction_id"],
            why: "The largest table. Distributed and sorted on transaction_id, as its \
                  transactions are distributed: the join and the MERGE stay on one slice \
                  and can run as a merge join.",
        },
        Table::Rejects => unreachable!("rejects are not loaded"),
    }
}

/// `CREATE TABLE` statements for the star schema and the ledger, and the
/// PostgreSQL indexes that stand in for Redshift's sort keys.
pub fn tables(dialect: Dialect) -> String {
    let mut out = String::new();
    for table in LOADED {
        let layout = layout(table);
        let cols: Vec<(&str, Kind, bool)> = table
            .columns()
            .iter()
            .map(|&c| {
                let (kind, nullable) = column(table, c);
                (c, kind, nullable)
            })
            .collect();
        let mut constraints = vec![format!("PRIMARY KEY ({})", key(table).join(", "))];
        for (col, target) in references(table) {
            constraints.push(format!(
                "FOREIGN KEY ({col}) REFERENCES {} ({col})",
                target.name()
            ));
        }
        create_table(
            &mut out,
            dialect,
            table.name(),
            &cols,
            &constraints,
            &layout,
        );
    }
    let mut ledger: Vec<Column> = LEDGER.to_vec();
    ledger.push(("loaded_at", Kind::Timestamp, false));
    // The tables beside the star schema: (name, columns, primary key, layout).
    let side: [(&str, &[Column], &str, Layout); 3] = [
        (
            LEDGER_TABLE,
            &ledger,
            "batch_id",
            Layout {
                dist_key: None,
                sort_key: &["batch_id"],
                why: "One row per batch; DISTSTYLE ALL so the plan's anti-join against it is \
                      local.",
            },
        ),
        (
            LOAD_LOCK_TABLE,
            &[
                ("lock_id", Kind::Int, false),
                ("plan_id", Kind::Label(16), true),
                ("loads", Kind::BigInt, false),
            ],
            "lock_id",
            Layout {
                dist_key: None,
                sort_key: &["lock_id"],
                why: "The one row every load updates first: loads queue on it, and only on \
                      it, so the dashboards' reads of the ledger and the views never wait \
                      for a load.",
            },
        ),
        (
            FAILURES_TABLE,
            &FAILURES,
            "batch_id",
            Layout {
                dist_key: None,
                sort_key: &["batch_id"],
                why: "Quarantined batches, one row each with the latest reason: a few rows, \
                      read beside the ledger to show each batch's state.",
            },
        ),
    ];
    for (name, cols, key, layout) in side {
        let constraints = [format!("PRIMARY KEY ({key})")];
        create_table(&mut out, dialect, name, cols, &constraints, &layout);
    }
    comment(
        &mut out,
        "Its one row, added once: running this again adds none.",
    );
    let _ = writeln!(
        out,
        "INSERT INTO {LOAD_LOCK_TABLE} (lock_id, loads) SELECT 1, 0 \
         WHERE NOT EXISTS (SELECT 1 FROM {LOAD_LOCK_TABLE});\n"
    );
    if dialect == Dialect::Postgres {
        comment(
            &mut out,
            "A ledger made before batches recorded which secret made their customer keys. \
             Checked first: ALTER TABLE takes the ledger's strongest lock even when the \
             column is there, and would queue the dashboards' reads behind a running load.",
        );
        let _ = writeln!(
            out,
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{LEDGER_TABLE}' \
             AND column_name = 'customer_key_id') THEN \
             ALTER TABLE {LEDGER_TABLE} ADD COLUMN customer_key_id {}; END IF; END $$;\n",
            Kind::Label(16).sql()
        );
        comment(
            &mut out,
            "What Redshift's sort keys do for time ranges and joins; primary keys already \
             index the ids.",
        );
        for (table, col) in [
            (Table::Transactions, "occurred_at"),
            (Table::Transactions, "store_id"),
            (Table::BasketItems, "product_id"),
        ] {
            let name = table.name();
            let _ = writeln!(
                out,
                "CREATE INDEX IF NOT EXISTS {name}_{col} ON {name} ({col});"
            );
        }
        out.push('\n');
    }
    out
}

/// The foreign keys of a table: informational on Redshift (the planner uses
/// them), enforced on PostgreSQL, which is why the load merges in
/// [`LOADED`] order.
fn references(table: Table) -> &'static [(&'static str, Table)] {
    match table {
        Table::Transactions => &[("store_id", Table::Stores)],
        Table::BasketItems => &[
            ("transaction_id", Table::Transactions),
            ("product_id", Table::Products),
        ],
        _ => &[],
    }
}

/// A `CREATE TABLE IF NOT EXISTS` statement; on Redshift, after a comment
/// saying why the table is laid out as it is.
fn create_table(
    out: &mut String,
    dialect: Dialect,
    name: &str,
    cols: &[(&str, Kind, bool)],
    constraints: &[String],
    layout: &Layout,
) {
    if dialect == Dialect::Redshift {
        comment(out, layout.why);
    }
    let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {name} (");
    let mut lines = Vec::new();
    for (col, kind, nullable) in cols {
        let mut line = format!("    {col} {}", kind.sql());
        if !nullable {
            line.push_str(" NOT NULL");
        }
        if matches!(*col, "loaded_at" | "failed_at" | "first_failed_at") {
            line.push(' ');
            line.push_str(&now_utc("DEFAULT", dialect));
        }
        if dialect == Dialect::Redshift {
            // The leading sort key column stays raw: compressing it makes
            // range-restricted scans read more blocks, not fewer.
            let enc = if layout.sort_key.first() == Some(col) {
                "RAW"
            } else {
                kind.encoding()
            };
            line.push_str(" ENCODE ");
            line.push_str(enc);
        }
        lines.push(line);
    }
    lines.extend(constraints.iter().map(|c| format!("    {c}")));
    out.push_str(&lines.join(",\n"));
    out.push_str("\n)");
    if dialect == Dialect::Redshift {
        match layout.dist_key {
            Some(k) => {
                let _ = write!(out, "\nDISTSTYLE KEY DISTKEY ({k})");
            }
            None => out.push_str("\nDISTSTYLE ALL"),
        }
        let _ = write!(out, "\nSORTKEY ({})", layout.sort_key.join(", "));
    }
    out.push_str(";\n\n");
}

/// `DEFAULT` (or any keyword) followed by the database's current time in
/// UTC, without zone: what the ledger's times are.
pub(crate) fn now_utc(keyword: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Redshift => format!("{keyword} GETDATE()"),
        Dialect::Postgres => format!("{keyword} (now() AT TIME ZONE 'utc')"),
    }
}

fn comment(out: &mut String, text: &str) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut line = String::from("--");
    for w in words {
        if line.len() + 1 + w.len() > 78 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("--");
        }
        line.push(' ');
        line.push_str(w);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The analytics views: one file for both dialects.
pub const VIEWS_SQL: &str = include_str!("../../sql/views.sql");

/// An analytics view, as `cafe-etl insights` and the dashboard show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// The view's name in `sql/views.sql`.
    pub name: &'static str,
    /// A heading for people.
    pub title: &'static str,
    /// Newest or most telling rows first.
    pub order_by: &'static str,
}

/// Every view of `sql/views.sql`, the brief's four questions first.
pub const VIEWS: &[View] = &[
    View {
        name: "coffees_sold_per_type_weekly",
        title: "Coffees sold per type per week",
        order_by: "week_start DESC, units DESC, coffee_type",
    },
    View {
        name: "best_store_daily",
        title: "Best store per day (by revenue)",
        order_by: "day DESC, store_name",
    },
    View {
        name: "best_store_weekly",
        title: "Best store per week (by revenue)",
        order_by: "week_start DESC, store_name",
    },
    View {
        name: "hazelnut_revenue_weekly",
        title: "Weekly Hazelnut revenue",
        order_by: "week_start DESC",
    },
    View {
        name: "large_latte_revenue_daily",
        title: "Daily Large Latte revenue",
        order_by: "day DESC",
    },
    View {
        name: "product_sales_weekly",
        title: "Units and revenue per product per week",
        order_by: "week_start DESC, revenue DESC, product",
    },
    View {
        name: "store_sales_daily",
        title: "Revenue and transactions per store per day",
        order_by: "day DESC, revenue DESC, store_name",
    },
    View {
        name: "store_sales_weekly",
        title: "Revenue and transactions per store per week",
        order_by: "week_start DESC, revenue DESC, store_name",
    },
    View {
        name: "store_hourly_transactions",
        title: "Transactions per hour of the day per store",
        order_by: "store_name, hour",
    },
    View {
        name: "average_basket_weekly",
        title: "Average basket per store per week",
        order_by: "week_start DESC, store_name",
    },
    View {
        name: "payment_mix_weekly",
        title: "Cash and card per store per week",
        order_by: "week_start DESC, store_name",
    },
    View {
        name: "customers_new_returning_weekly",
        title: "New and returning customers per store per week",
        order_by: "week_start DESC, store_name",
    },
];

/// Everything a warehouse needs, in order: tables, ledger, (indexes),
/// views. Prints as `cafe-etl sql ddl --dialect ...`.
pub fn ddl(dialect: Dialect) -> String {
    let mut out = format!(
        "-- cafe-etl warehouse schema for {}: star schema, the {LEDGER_TABLE} ledger,\n\
         -- analytics views. Generated by `cafe-etl sql ddl --dialect {}`; safe to run again.\n\n",
        match dialect {
            Dialect::Redshift => "Amazon Redshift",
            Dialect::Postgres => "PostgreSQL 15+",
        },
        dialect.name()
    );
    out.push_str(&tables(dialect));
    out.push_str(VIEWS_SQL);
    out
}

/// The schema as single statements, in order, without comments or
/// semicolons: what a runner that takes one statement at a time sends (the
/// Redshift Data API, a worker's driver). The same text as [`ddl`].
pub fn statements(dialect: Dialect) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in ddl(dialect).lines() {
        let trimmed = line.trim();
        // Whole-line comments go; a statement never ends inside one.
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line.trim_end());
        // The generated DDL and sql/views.sql end each statement, and only
        // a statement, with a semicolon at the end of a line.
        if let Some(done) = current.strip_suffix(';') {
            out.push(done.to_string());
            current.clear();
        }
    }
    debug_assert!(current.is_empty(), "the schema ends with a statement");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_staged_column_has_a_type() {
        for table in LOADED {
            for c in table.columns() {
                let (kind, _) = column(table, c);
                assert!(!kind.sql().is_empty());
            }
            for k in key(table) {
                assert!(table.columns().contains(k), "{}.{k}", table.name());
                assert!(!column(table, k).1, "key column {k} is nullable");
            }
        }
    }

    #[test]
    fn dialects_parse_by_name() {
        for (s, want) in [
            ("redshift", Some(Dialect::Redshift)),
            ("Postgres", Some(Dialect::Postgres)),
            ("postgresql", Some(Dialect::Postgres)),
            ("mysql", None),
        ] {
            assert_eq!(s.parse::<Dialect>().ok(), want, "{s}");
        }
    }

    #[test]
    fn ddl_per_dialect() {
        // (dialect, must contain, must not contain)
        let cases: &[(Dialect, &[&str], &[&str])] = &[
            (
                Dialect::Redshift,
                &[
                    "DISTSTYLE KEY DISTKEY (transaction_id)",
                    "DISTSTYLE ALL",
                    "SORTKEY (occurred_at)",
                    "occurred_at TIMESTAMP NOT NULL ENCODE RAW",
                    "total_price DECIMAL(10,2) NOT NULL ENCODE AZ64",
                    "payment_method VARCHAR(4) NOT NULL ENCODE BYTEDICT",
                    "DEFAULT GETDATE()",
                    "PRIMARY KEY (transaction_id, product_id, unit_price)",
                    "CREATE TABLE IF NOT EXISTS load_lock (",
                    "INSERT INTO load_lock (lock_id, loads) SELECT 1, 0 \
                     WHERE NOT EXISTS (SELECT 1 FROM load_lock);",
                ],
                &["CREATE INDEX", "now()"],
            ),
            (
                Dialect::Postgres,
                &[
                    "CREATE INDEX IF NOT EXISTS transactions_occurred_at",
                    "total_price DECIMAL(10,2) NOT NULL,",
                    "FOREIGN KEY (store_id) REFERENCES stores (store_id)",
                    "now() AT TIME ZONE 'utc'",
                    "CREATE TABLE IF NOT EXISTS load_lock (",
                    "INSERT INTO load_lock (lock_id, loads) SELECT 1, 0 \
                     WHERE NOT EXISTS (SELECT 1 FROM load_lock);",
                    "THEN ALTER TABLE loaded_batches ADD COLUMN customer_key_id VARCHAR(16); END IF;",
                ],
                &["ENCODE", "DISTKEY", "SORTKEY", "GETDATE"],
            ),
        ];
        for (dialect, yes, no) in cases {
            let sql = tables(*dialect);
            for s in *yes {
                assert!(sql.contains(s), "{dialect:?} lacks {s}:\n{sql}");
            }
            for s in *no {
                assert!(!sql.contains(s), "{dialect:?} has {s}:\n{sql}");
            }
            for table in LOADED {
                for c in table.columns() {
                    assert!(sql.contains(&format!("    {c} ")), "{c}");
                }
            }
        }
    }

    #[test]
    fn views_file_and_list_agree() {
        let mut in_file: Vec<&str> = VIEWS_SQL
            .lines()
            .filter_map(|l| l.strip_prefix("CREATE OR REPLACE VIEW "))
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        let mut listed: Vec<&str> = VIEWS.iter().map(|v| v.name).collect();
        in_file.sort();
        listed.sort();
        assert_eq!(in_file, listed);
    }
}
