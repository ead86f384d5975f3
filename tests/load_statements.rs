//! Every statement the core emits for a load parses as SQL of its dialect:
//! sqlparser's `RedshiftSqlDialect` for Redshift, `PostgreSqlDialect` for
//! PostgreSQL. The same statements run in the edge worker (through wasm)
//! and in `cafe-etl load`; Redshift cannot run here, so parsing is the check
//! that what the Data API receives is SQL at all (tests/warehouse.rs runs
//! the PostgreSQL ones for real).
//!
//! The plan is of the real exports of tests/data/real, staged by the core,
//! with the statement size forced small so the planned-batches list is cut
//! into several INSERTs.
#![cfg(not(target_arch = "wasm32"))]

use cafe_etl::warehouse::{
    self, schema, Batch, Dialect, Failure, Plan, S3Target, Statement, StatementOptions,
    DATA_API_MAX_BATCH_STATEMENTS, DATA_API_MAX_STATEMENT_BYTES,
};
use sqlparser::dialect::{Dialect as SqlDialect, PostgreSqlDialect, RedshiftSqlDialect};
use sqlparser::parser::Parser;
use std::path::Path;

/// The real exports of tests/data/real that stage (a refused file has no
/// marker), as batches read back from their markers.
fn real_batches() -> Vec<Batch> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    paths.sort();
    let mut config = cafe_etl::Config::default();
    config.clean.customer_key_secret = Some("a secret of these tests".into());
    let mut out = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let staged = cafe_etl::transform(&bytes, name, &config).unwrap();
        if staged.report.refused {
            continue;
        }
        let marker = &staged.files.last().unwrap().1;
        let sizes = [0, 1, 2, 3].map(|i| staged.files[i].1.len() as u64);
        out.push(Batch::from_marker(marker, 0, Some(sizes)).unwrap());
    }
    assert!(out.len() >= 5, "{} real batches", out.len());
    out
}

/// Parses `sql` as one statement of `dialect`.
fn parses(dialect: &dyn SqlDialect, sql: &str) -> Result<(), String> {
    match Parser::parse_sql(dialect, sql) {
        Ok(v) if v.len() == 1 => Ok(()),
        Ok(v) => Err(format!("{} statements in one", v.len())),
        Err(e) => Err(e.to_string()),
    }
}

fn inserts(statements: &[Statement]) -> usize {
    statements
        .iter()
        .filter(|s| s.sql().starts_with("INSERT INTO tmp_plan_batches"))
        .count()
}

#[test]
fn every_load_statement_parses_in_its_dialect() {
    let plan = Plan::new(real_batches());
    let n = plan.batches().len();
    let targets = [
        S3Target::new("s3://cafe-staging/prod").unwrap(),
        S3Target::new("s3://cafe-staging/prod/")
            .unwrap()
            .with_iam_role("arn:aws:iam::123456789012:role/cafe-loader")
            .unwrap()
            .with_region("eu-west-2")
            .unwrap(),
    ];
    for s3 in targets {
        let whole = StatementOptions {
            s3: Some(s3.clone()),
            ..StatementOptions::default()
        };
        let default = plan.statements(Dialect::Redshift, &whole).unwrap();
        assert_eq!(inserts(&default), 1);
        // A plan this size is one BatchExecuteStatement call.
        assert!(default.len() <= DATA_API_MAX_BATCH_STATEMENTS);
        // Small enough that every two ledger rows need an INSERT of their
        // own, large enough for the longest other statement.
        let longest = default
            .iter()
            .filter(|s| !s.sql().starts_with("INSERT INTO tmp_plan_batches"))
            .map(|s| s.sql().len())
            .max()
            .unwrap();
        let small = StatementOptions {
            s3: Some(s3),
            max_statement_bytes: longest,
        };
        for (dialect, parser) in [
            (Dialect::Redshift, &RedshiftSqlDialect {} as &dyn SqlDialect),
            (Dialect::Postgres, &PostgreSqlDialect {}),
        ] {
            for options in [&whole, &small] {
                let statements = plan.statements(dialect, options).unwrap();
                if options.max_statement_bytes < DATA_API_MAX_STATEMENT_BYTES {
                    assert!(
                        inserts(&statements) >= 3,
                        "{dialect:?}: {} INSERTs for {n} batches",
                        inserts(&statements)
                    );
                }
                let rows: usize = statements
                    .iter()
                    .filter(|s| s.sql().starts_with("INSERT INTO tmp_plan_batches"))
                    .map(|s| s.sql().lines().count() - 1)
                    .sum();
                assert_eq!(rows, n, "{dialect:?}: every batch listed once");
                for s in &statements {
                    assert!(s.sql().len() <= options.max_statement_bytes);
                    if let Err(e) = parses(parser, s.sql()) {
                        panic!("{dialect:?} does not parse: {e}\n{}", s.sql());
                    }
                }
            }
        }
    }
}

#[test]
fn schema_quarantine_and_ledger_statements_parse() {
    let failure = Failure {
        batch_id: "0123456789abcdef0123456789abcdef".into(),
        store: Some("King's Lynn \\ North".into()),
        code: "copy_failed".into(),
        reason: "a row the warehouse refused: it's too long".into(),
    };
    let ids = vec![
        "0123456789abcdef0123456789abcdef".to_string(),
        "fedcba9876543210fedcba9876543210".to_string(),
    ];
    for (dialect, parser) in [
        (Dialect::Redshift, &RedshiftSqlDialect {} as &dyn SqlDialect),
        (Dialect::Postgres, &PostgreSqlDialect {}),
    ] {
        let mut all = warehouse::quarantine_statements(&failure, dialect).unwrap();
        all.push(warehouse::ledger_query(&ids, dialect).unwrap());
        all.push(warehouse::ledger_query(&[], dialect).unwrap());
        for sql in &all {
            if let Err(e) = parses(parser, sql) {
                panic!("{dialect:?} does not parse: {e}\n{sql}");
            }
        }
        let schema = schema::statements(dialect);
        assert!(schema
            .iter()
            .any(|s| s.starts_with("CREATE TABLE IF NOT EXISTS load_failures (")));
        assert!(schema.len() <= DATA_API_MAX_BATCH_STATEMENTS);
        for sql in &schema {
            let Some(sql) = parsable_part(dialect, sql) else {
                continue;
            };
            if let Err(e) = parses(parser, &sql) {
                panic!("{dialect:?} schema does not parse: {e}\n{sql}");
            }
        }
    }
}

/// What sqlparser 0.64 can check of a valid schema statement of ours.
/// Redshift: its CREATE TABLE knows no column `ENCODE` nor the table's
/// `DISTSTYLE` / `DISTKEY` / `SORTKEY` lines, so those are taken out and
/// the rest is parsed. PostgreSQL: an anonymous PL/pgSQL block (`DO $$ ...
/// $$`) is not parsed at all (`None`).
fn parsable_part(dialect: Dialect, sql: &str) -> Option<String> {
    match dialect {
        Dialect::Redshift if sql.starts_with("CREATE TABLE") => Some(
            sql.lines()
                .filter(|l| !l.starts_with("DISTSTYLE") && !l.starts_with("SORTKEY"))
                .map(|l| match l.find(" ENCODE ") {
                    Some(i) => {
                        let comma = if l.ends_with(',') { "," } else { "" };
                        format!("{}{comma}", &l[..i])
                    }
                    None => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Dialect::Postgres if sql.starts_with("DO $$") => None,
        _ => Some(sql.to_string()),
    }
}

/// A batch with a generated id and source (quotes, backslashes, any
/// letters): enough for its ledger row.
fn generated(id: u128, source: String) -> Batch {
    let report = cafe_etl::Report {
        batch_id: format!("{id:032x}"),
        source,
        customer_key_id: "none".into(),
        ..cafe_etl::Report::default()
    };
    Batch::from_marker(&serde_json::to_vec(&report).unwrap(), 0, None).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 64, failure_persistence: None, ..Default::default()
    })]

    /// Whatever the batches and the limit: either every statement fits and
    /// the INSERTs list every batch once, in id order, or the plan is
    /// refused because one ledger row alone cannot fit.
    #[test]
    fn chunking_lists_every_batch_once_within_the_limit(
        batches in proptest::collection::btree_map(
            proptest::prelude::any::<u128>(), "[a-zA-Z0-9 '\\\\\"é_.-]{0,300}", 1..40),
        max in 200usize..6000,
        redshift in proptest::prelude::any::<bool>(),
    ) {
        let dialect = if redshift { Dialect::Redshift } else { Dialect::Postgres };
        let plan = Plan::new(batches.into_iter().map(|(id, s)| generated(id, s)).collect());
        let options = StatementOptions {
            s3: Some(S3Target::new("s3://b/p").unwrap()),
            max_statement_bytes: max,
        };
        match plan.statements(dialect, &options) {
            Ok(statements) => {
                let mut listed = Vec::new();
                for s in &statements {
                    proptest::prop_assert!(s.sql().len() <= max);
                    if let Some(rows) = s.sql().strip_prefix("INSERT INTO tmp_plan_batches") {
                        for line in rows.lines().skip(1) {
                            listed.push(line[2..34].to_string());
                        }
                    }
                }
                let ids: Vec<String> =
                    plan.batches().iter().map(|b| b.id().to_string()).collect();
                proptest::prop_assert_eq!(listed, ids);
            }
            Err(e) => {
                let msg = e.to_string();
                proptest::prop_assert!(msg.starts_with("plan error: "), "{}", msg);
                proptest::prop_assert_eq!(e.code(), Some("statement_too_long"), "{}", msg);
            }
        }
    }
}
