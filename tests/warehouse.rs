//! The warehouse side end to end: staged batches through `load-plan` (the
//! Redshift script, parsed here with sqlparser's Redshift dialect) and
//! `load` (run against a real PostgreSQL), the analytics views, `insights`
//! and the Grafana dashboard.
//!
//! The PostgreSQL tests need `CAFE_ETL_TEST_POSTGRES`, the URL of a
//! database they may create schemas in; `scripts/test-warehouse` starts
//! the local cluster and sets it. Without it they say plainly that they are
//! skipped, and fail under CI (`CI` set), where skipping would hide them.
//! Each test works in a schema of its own, so they run in parallel.
#![cfg(not(target_arch = "wasm32"))]

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use cafe_etl::warehouse::{self, postgres as wpg, schema, Dialect, Failure, Plan, VIEWS};
use cafe_etl::{marker_key, Table};
use postgres::{Client, NoTls, SimpleQueryMessage};
use sqlparser::ast::{CopySource, CopyTarget, Statement};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const URL_VAR: &str = "CAFE_ETL_TEST_POSTGRES";
const SECRET_VAR: &str = "CAFE_ETL_TEST_CUSTOMER_KEY_SECRET";

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Says a test was skipped where a person sees it: straight to stderr,
/// past the test harness's capture (which only takes `eprintln!`).
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {why}");
}

/// The test database, or `None` (said plainly) outside CI.
fn database_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => panic!(
            "{URL_VAR} is not set, so {test} cannot reach PostgreSQL; in CI run the warehouse \
             tests through scripts/test-warehouse, which starts PostgreSQL and sets it"
        ),
        _ => {
            skipped(&format!(
                "{test}: {URL_VAR} is not set; scripts/test-warehouse starts PostgreSQL and runs these tests"
            ));
            None
        }
    }
}

/// The fixture exports staged by the CLI into a temporary folder: the
/// folder (deleted when dropped) and the staging root in it.
fn staged_fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("staging");
    stage(&fixture_dir(), &root);
    (dir, root)
}

/// A fresh schema of its own for one test.
struct Db {
    url: String,
    client: Client,
}

fn fresh_db(test: &str) -> Option<Db> {
    let base = database_url(test)?;
    let schema = format!("test_{}", &test[..test.len().min(50)]);
    let mut admin =
        Client::connect(&base, NoTls).unwrap_or_else(|e| panic!("{URL_VAR} does not connect: {e}"));
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let client = Client::connect(&url, NoTls).unwrap();
    Some(Db { url, client })
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/warehouse")
}

fn real_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real/current")
}

fn cafe_etl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cafe-etl"))
        .args(args)
        .env(SECRET_VAR, "a warehouse test secret")
        .env_remove("CAFE_ETL_POSTGRES")
        .output()
        .expect("cafe-etl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs cafe-etl and wants exit code 0; gives stdout and stderr together.
fn ok(args: &[&str]) -> (String, String) {
    let out = cafe_etl(args);
    assert!(
        out.status.success(),
        "cafe-etl {args:?} exited {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// `cafe-etl load-plan` of the staging root `root` for the S3 URL `s3`,
/// with `extra` options.
fn plan_args<'a>(root: &'a Path, s3: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "load-plan",
        "--root",
        root.to_str().unwrap(),
        "--s3-url",
        s3,
    ];
    args.extend(extra);
    args
}

/// The exit code `transform`'s per-file lines call for: 1 when a row was
/// rejected, a file refused, or a batch skipped as staged with another
/// secret; else 0.
fn exit_code_called_for(stdout: &str) -> i32 {
    let rejected = stdout.lines().any(|l| {
        l.contains(": refused, nothing staged:")
            || (l.contains(": staged batch ") && !l.contains(" staged, 0 rejected,"))
            || l.contains(" is already staged with ")
    });
    i32::from(rejected)
}

/// Stages `inputs` under `root` with a customer-key secret, with the exit
/// code its per-file lines call for.
fn stage(inputs: &Path, root: &Path) -> String {
    let out = cafe_etl(&[
        "transform",
        "--out",
        root.to_str().unwrap(),
        "--customer-key-secret-env",
        SECRET_VAR,
        inputs.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(exit_code_called_for(&stdout)),
        "transform: {stdout}{}",
        text(&out.stderr)
    );
    stdout + &text(&out.stderr)
}

fn load(url: &str, root: &Path, extra: &[&str]) -> String {
    let mut args = vec!["load", "--postgres", url, "--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&args).0
}

/// `cafe-etl load` of `root`, whatever its outcome.
fn try_load(url: &str, root: &Path) -> Output {
    cafe_etl(&["load", "--postgres", url, "--root", root.to_str().unwrap()])
}

/// Rows of a query as text (NULL as the empty string).
fn rows(client: &mut Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

fn count(client: &mut Client, sql: &str) -> u64 {
    rows(client, sql)[0][0].parse().unwrap()
}

/// Row count and an md5 of every row of each table (the ledger without
/// `loaded_at`, which is when, not what).
fn fingerprint(client: &mut Client) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for t in schema::LOADED {
        let name = t.name();
        let r = rows(
            client,
            &format!(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {name} t"
            ),
        );
        out.insert(name.to_string(), r[0].clone());
    }
    let r = rows(
        client,
        "SELECT count(*), md5(coalesce(string_agg(concat_ws(',', batch_id, source, rows_staged, \
         rows_rejected, revenue, first_at), '|' ORDER BY batch_id), '')) FROM loaded_batches",
    );
    out.insert("loaded_batches".into(), r[0].clone());
    out
}

/// The names and card numbers of raw exports, as one case-insensitive
/// searcher, and how many there are.
fn personal_data(files: &[PathBuf]) -> (AhoCorasick, usize) {
    let mut needles = BTreeSet::new();
    for f in files {
        for rec in csv_records(f) {
            if rec.len() >= 7 {
                for field in [&rec[2], &rec[6]] {
                    let v = field.trim();
                    if v.len() >= 3 {
                        needles.insert(v.to_string());
                    }
                }
            }
        }
    }
    let n = needles.len();
    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .build(needles)
        .unwrap();
    (ac, n)
}

fn assert_no_personal_data(ac: &AhoCorasick, what: &str, haystack: &str) {
    if let Some(m) = ac.find(haystack) {
        panic!(
            "{what} holds personal data at byte {} (pattern {})",
            m.start(),
            m.pattern().as_usize()
        );
    }
}

/// Every text column of every table and view in the test's schema.
fn assert_no_personal_data_in_db(ac: &AhoCorasick, client: &mut Client) -> usize {
    let cols = rows(
        client,
        "SELECT table_name, column_name FROM information_schema.columns \
         WHERE table_schema = current_schema() \
         AND data_type IN ('character', 'character varying', 'text') ORDER BY 1, 2",
    );
    for c in &cols {
        let values = rows(
            client,
            &format!(
                "SELECT DISTINCT {col}::text FROM {t} WHERE {col} IS NOT NULL",
                t = c[0],
                col = c[1]
            ),
        );
        for v in values {
            assert_no_personal_data(ac, &format!("column {}.{}", c[0], c[1]), &v[0]);
        }
    }
    cols.len()
}

fn csv_records(path: &Path) -> Vec<csv::StringRecord> {
    let bytes = std::fs::read(path).unwrap();
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&bytes[..])
        .records()
        .map(|r| r.unwrap())
        .collect()
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn csv_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    files
}

fn batch_of(file: &Path) -> String {
    cafe_etl::batch_id(&std::fs::read(file).unwrap())
}

/// `6.45` or `4` or `6.5` as pence, without the core's parser.
fn pence(s: &str) -> i64 {
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let frac = format!("{frac:0<2}");
    int.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap()
}

#[test]
fn pence_reader_table() {
    for (s, p) in [("4", 400), ("6.5", 650), ("6.45", 645), ("0.05", 5)] {
        assert_eq!(pence(s), p, "{s}");
    }
}

#[test]
fn load_plan_writes_manifests_and_a_redshift_script_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("staging");
    let staged = stage(&fixture_dir(), &root);
    let files = csv_files(&fixture_dir());
    let (pii, _) = personal_data(&files);
    assert_no_personal_data(&pii, "transform output", &staged);
    // One batch still being staged: its marker is not there yet.
    let unmarked = batch_of(&fixture_dir().join("york_01-09-2021_09-00-00.csv"));
    std::fs::remove_file(root.join(marker_key(&unmarked))).unwrap();

    let s3 = "s3://cafe-staging/prod";
    let role = "arn:aws:iam::123456789012:role/cafe-loader";
    let (script, note) = ok(&plan_args(
        &root,
        s3,
        &["--iam-role", role, "--region", "eu-west-2"],
    ));
    assert!(
        note.contains("5 batches") && note.contains("1 batch without marker"),
        "{note}"
    );
    assert_no_personal_data(&pii, "the load script", &script);

    let statements = Parser::parse_sql(&RedshiftSqlDialect {}, &script)
        .unwrap_or_else(|e| panic!("the Redshift script does not parse: {e}\n{script}"));
    assert!(matches!(
        statements.first(),
        Some(Statement::StartTransaction { .. })
    ));
    assert!(matches!(statements.last(), Some(Statement::Commit { .. })));

    // One COPY per loaded table, from its manifest, with explicit columns.
    let mut copied = Vec::new();
    for st in &statements {
        if let Statement::Copy {
            source:
                CopySource::Table {
                    table_name,
                    columns,
                },
            to: false,
            target: CopyTarget::File { filename },
            ..
        } = st
        {
            let table = schema::LOADED
                .into_iter()
                .find(|t| table_name.to_string() == format!("tmp_copy_{}", t.name()))
                .unwrap_or_else(|| panic!("COPY into {table_name}"));
            let cols: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            assert_eq!(cols, table.columns(), "{table_name}");
            let sql = st.to_string();
            for option in [
                "MANIFEST",
                "CSV",
                "GZIP",
                "EMPTYASNULL",
                "TIMEFORMAT 'YYYY-MM-DD HH:MI:SS'",
                &format!("IAM_ROLE '{role}'"),
                "REGION 'eu-west-2'",
            ] {
                assert!(sql.contains(option), "{option} missing: {sql}");
            }
            copied.push((table, filename.clone()));
        }
    }
    assert_eq!(
        copied.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        schema::LOADED.to_vec()
    );
    let merges: Vec<String> = statements
        .iter()
        .filter_map(|s| match s {
            Statement::Merge(m) => Some(m.table.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(merges, ["transactions", "basket_items"]);
    // Stores and products: an INSERT ... SELECT with an anti-join against
    // the target, so a load never rewrites the rows the table has.
    for name in ["stores", "products"] {
        let insert = statements
            .iter()
            .find_map(|s| match s {
                Statement::Insert(i) if i.table.to_string() == name => Some(i),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no insert into {name}"));
        let body = insert
            .source
            .as_ref()
            .expect("INSERT ... SELECT")
            .to_string();
        assert!(
            body.contains(&format!("FROM tmp_new_{name} s LEFT JOIN {name} t ON t.")),
            "{body}"
        );
        assert!(body.ends_with("_id IS NULL"), "{body}");
    }
    // Loads queue on the one-row lock table, never on the ledger the
    // dashboards read.
    let locks: Vec<String> = statements
        .iter()
        .filter(|s| matches!(s, Statement::Lock(_) | Statement::LockTables { .. }))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert!(locks[0].contains("load_lock"), "{locks:?}");
    assert!(
        statements[2]
            .to_string()
            .starts_with("UPDATE load_lock SET plan_id = "),
        "{}",
        statements[2]
    );
    let ledger = statements
        .iter()
        .position(|s| s.to_string().starts_with("INSERT INTO loaded_batches"))
        .expect("a ledger insert");
    let last_merge = statements
        .iter()
        .rposition(|s| matches!(s, Statement::Merge(_)))
        .unwrap();
    assert!(ledger > last_merge, "the ledger is written after the rows");

    // Each manifest is where the COPY reads it, and lists every complete
    // batch's file with its size.
    let plan_dir = std::fs::read_dir(root.join("manifests"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut ids: Vec<String> = files
        .iter()
        .map(|f| batch_of(f))
        .filter(|id| *id != unmarked)
        .collect();
    ids.sort();
    for (table, url) in &copied {
        let manifest = plan_dir.join(format!("{}.manifest", table.name()));
        let rel = manifest.strip_prefix(&root).unwrap().to_str().unwrap();
        assert_eq!(url, &format!("{s3}/{rel}"));
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert_no_personal_data(&pii, "a manifest", &text);
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        let entries = m["entries"].as_array().unwrap();
        let listed: Vec<String> = entries
            .iter()
            .map(|e| e["url"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = ids
            .iter()
            .map(|id| format!("{s3}/{}", table.key(id)))
            .collect();
        assert_eq!(listed, want);
        for (e, id) in entries.iter().zip(&ids) {
            assert_eq!(e["mandatory"], true);
            let size = std::fs::metadata(root.join(table.key(id))).unwrap().len();
            assert_eq!(e["meta"]["content_length"].as_u64(), Some(size));
        }
    }

    // The views parse as Redshift SQL too.
    let views = Parser::parse_sql(&RedshiftSqlDialect {}, schema::VIEWS_SQL)
        .unwrap_or_else(|e| panic!("sql/views.sql does not parse as Redshift SQL: {e}"));
    assert_eq!(views.len(), VIEWS.len());
    assert!(views
        .iter()
        .all(|v| matches!(v, Statement::CreateView { .. })));

    // Nothing left to plan: staged before --since, or listed as loaded.
    let (script, note) = ok(&plan_args(&root, s3, &["--since", "2999-01-01"]));
    assert!(
        script.is_empty() && note.starts_with("nothing to plan"),
        "{note}"
    );
    let loaded = dir.path().join("loaded.txt");
    std::fs::write(&loaded, ids.join("\n")).unwrap();
    let (script, _) = ok(&plan_args(
        &root,
        s3,
        &["--loaded", loaded.to_str().unwrap()],
    ));
    assert!(script.is_empty());

    // Usage errors exit 2 with the reason.
    for (args, why) in [
        (
            vec!["--s3-url", "https://bucket/x"],
            "should start with s3://",
        ),
        (
            vec!["--s3-url", s3, "--since", "last week"],
            "is not a time",
        ),
        (vec!["--s3-url", s3, "--iam-role", "admin"], "IAM role ARN"),
    ] {
        let mut a = vec!["load-plan", "--root", root.to_str().unwrap()];
        a.extend(args);
        let out = cafe_etl(&a);
        assert_eq!(out.status.code(), Some(2), "{a:?}");
        assert!(text(&out.stderr).contains(why), "{}", text(&out.stderr));
    }
}

/// The flags the docs' `psql -f` lines must set: without ON_ERROR_STOP,
/// psql runs on past a failed statement and exits 0.
const STOP_ON_ERROR: &str = "-v ON_ERROR_STOP=1";

#[test]
fn docs_run_load_scripts_with_psql_stopping_on_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut runs = 0;
    for doc in ["docs/warehouse.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for line in text.lines().map(str::trim) {
            if line.starts_with("psql ") && line.contains(" -f ") {
                runs += 1;
                assert!(line.contains(STOP_ON_ERROR), "{doc}: {line}");
            }
        }
    }
    assert!(runs > 0, "no `psql ... -f` line in the docs");

    // And what the flag is for: a failing load script exits non-zero.
    let Some(db) = fresh_db("docs_run_load_scripts_with_psql") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("load.sql");
    std::fs::write(
        &script,
        "BEGIN;\nCREATE TABLE t (x INTEGER);\nINSERT INTO t VALUES (1 / 0);\nCOMMIT;\n",
    )
    .unwrap();
    let run = |flags: &[&str]| {
        Command::new("psql")
            .args(flags)
            .args(["-q", "-d", &db.url, "-f"])
            .arg(&script)
            .output()
            .expect("psql runs (PostgreSQL's client is installed with the server)")
    };
    assert_eq!(run(&[]).status.code(), Some(0), "psql's default hides it");
    let stopped = run(&STOP_ON_ERROR.split(' ').collect::<Vec<_>>());
    assert_eq!(stopped.status.code(), Some(3), "{}", text(&stopped.stderr));
    assert!(text(&stopped.stderr).contains("division by zero"));
}

#[test]
fn sql_ddl_prints_each_dialect() {
    let (redshift, _) = ok(&["sql", "ddl", "--dialect", "redshift"]);
    let (postgres, _) = ok(&["sql", "ddl", "--dialect", "postgres"]);
    assert_eq!(redshift, schema::ddl(schema::Dialect::Redshift));
    assert_eq!(postgres, schema::ddl(schema::Dialect::Postgres));
    assert!(redshift.contains("DISTKEY (transaction_id)") && redshift.contains("ENCODE AZ64"));
    assert!(!postgres.contains("DISTKEY"));
    let out = cafe_etl(&["sql", "ddl", "--dialect", "oracle"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected redshift or postgres"));
}

#[test]
fn unreachable_database_is_a_clear_error_without_the_password() {
    // Port 1 on the loopback: nothing listens there.
    let url = "postgres://someone:hunter2secret@127.0.0.1:1/warehouse";
    let root = tempfile::tempdir().unwrap();
    // (command, the phase its error names)
    for (args, phase) in [
        (
            vec![
                "load",
                "--postgres",
                url,
                "--root",
                root.path().to_str().unwrap(),
            ],
            "load",
        ),
        (vec!["insights", "--postgres", url], "query"),
    ] {
        let out = cafe_etl(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        let want = format!("cafe-etl: {phase} error: cannot connect to PostgreSQL");
        assert!(err.starts_with(&want), "{err}");
        assert!(!err.contains("hunter2secret"), "{err}");
    }
}

#[test]
fn fixture_answers_the_briefs_four_questions() {
    let Some(mut db) = fresh_db("fixture_answers_the_briefs_four_questions") else {
        return;
    };
    let (_dir, root) = staged_fixture();
    let out = load(&db.url, &root, &[]);
    assert!(out.starts_with("loaded 6 batches"), "{out}");
    let c = &mut db.client;

    // Six batches, two of them the same day of Leeds (a re-export with one
    // more sale): 13 staged transactions, 11 distinct; Gus's row is rejected.
    assert_eq!(count(c, "SELECT count(*) FROM stores"), 2);
    assert_eq!(count(c, "SELECT count(*) FROM products"), 7);
    assert_eq!(count(c, "SELECT count(*) FROM transactions"), 11);
    assert_eq!(count(c, "SELECT count(*) FROM basket_items"), 14);
    assert_eq!(count(c, "SELECT count(*) FROM loaded_batches"), 6);

    // Each view on the hand-checked rows: (query, rows expected).
    let views: &[(&str, &[&[&str]])] = &[
        // 1. Coffees sold per type per week (weeks start on Monday).
        (
            "SELECT week_start, coffee_type, units FROM coffees_sold_per_type_weekly \
             ORDER BY week_start, units DESC, coffee_type",
            &[
                &["2021-08-23", "Latte", "6"],
                &["2021-08-23", "Flavoured latte", "2"],
                &["2021-08-23", "Mocha", "2"],
                &["2021-08-23", "Flavoured iced latte", "1"],
                &["2021-08-30", "Latte", "3"],
                &["2021-08-30", "Americano", "1"],
                &["2021-08-30", "Flavoured latte", "1"],
            ],
        ),
        // 2. Best store per day and per week, by revenue.
        (
            "SELECT day, store_name, revenue, transactions FROM best_store_daily ORDER BY day",
            &[
                &["2021-08-25", "Leeds", "12.05", "3"],
                &["2021-08-26", "York", "7.45", "2"],
                &["2021-08-31", "Leeds", "9.40", "3"],
                &["2021-09-01", "York", "2.45", "1"],
            ],
        ),
        (
            "SELECT week_start, store_name, revenue FROM best_store_weekly ORDER BY week_start",
            &[
                &["2021-08-23", "York", "14.90"],
                &["2021-08-30", "Leeds", "9.40"],
            ],
        ),
        // 3. Weekly Hazelnut revenue.
        (
            "SELECT week_start, units, revenue FROM hazelnut_revenue_weekly ORDER BY week_start",
            &[&["2021-08-23", "3", "7.95"], &["2021-08-30", "1", "2.85"]],
        ),
        // 4. Daily Large Latte revenue.
        (
            "SELECT day, units, revenue FROM large_latte_revenue_daily ORDER BY day",
            &[
                &["2021-08-25", "3", "7.35"],
                &["2021-08-26", "2", "4.90"],
                &["2021-08-31", "1", "2.45"],
                &["2021-09-01", "1", "2.45"],
            ],
        ),
        // The rest of the views, on the same hand-checked rows.
        (
            "SELECT week_start, store_name, new_customers, returning_customers \
             FROM customers_new_returning_weekly ORDER BY week_start, store_name",
            &[
                &["2021-08-23", "Leeds", "3", "0"],
                &["2021-08-23", "York", "3", "0"],
                &["2021-08-30", "Leeds", "1", "2"],
                &["2021-08-30", "York", "0", "1"],
            ],
        ),
        (
            "SELECT week_start, store_name, cash_transactions, card_transactions, cash_revenue, \
             card_revenue, card_share_pct FROM payment_mix_weekly ORDER BY week_start, store_name",
            &[
                &["2021-08-23", "Leeds", "1", "2", "2.45", "9.60", "66.7"],
                &["2021-08-23", "York", "1", "3", "2.15", "12.75", "75.0"],
                &["2021-08-30", "Leeds", "1", "2", "1.95", "7.45", "66.7"],
                &["2021-08-30", "York", "0", "1", "0.00", "2.45", "100.0"],
            ],
        ),
        (
            "SELECT week_start, store_name, transactions, average_basket, average_items \
             FROM average_basket_weekly ORDER BY week_start, store_name",
            &[
                &["2021-08-23", "Leeds", "3", "4.02", "1.67"],
                &["2021-08-23", "York", "4", "3.73", "1.50"],
                &["2021-08-30", "Leeds", "3", "3.13", "1.33"],
                &["2021-08-30", "York", "1", "2.45", "1.00"],
            ],
        ),
        (
            "SELECT store_name, hour, transactions, days, per_day FROM store_hourly_transactions \
             WHERE store_name = 'Leeds' ORDER BY hour",
            &[
                &["Leeds", "8", "1", "1", "1.0"],
                &["Leeds", "9", "2", "1", "2.0"],
                &["Leeds", "10", "1", "1", "1.0"],
                &["Leeds", "12", "1", "1", "1.0"],
                &["Leeds", "16", "1", "1", "1.0"],
            ],
        ),
        (
            "SELECT store_name, sum(revenue) FROM store_sales_weekly GROUP BY store_name ORDER BY 1",
            &[&["Leeds", "21.45"], &["York", "17.35"]],
        ),
        (
            "SELECT product, units, revenue FROM product_sales_weekly \
             WHERE week_start = '2021-08-30' ORDER BY revenue DESC, product",
            &[
                &["Large Latte", "2", "4.90"],
                &["Large Flavoured latte - Hazelnut", "1", "2.85"],
                &["Regular Latte", "1", "2.15"],
                &["Regular Americano", "1", "1.95"],
            ],
        ),
    ];
    for (sql, want) in views {
        assert_eq!(rows(c, sql), table(want), "{sql}");
    }

    // A transaction of both Leeds 31/08 batches keeps the first batch id.
    let first = batch_of(&fixture_dir().join("leeds_31-08-2021_09-00-00.csv"));
    let second = batch_of(&fixture_dir().join("leeds_31-08-2021_17-00-00.csv"));
    let kept = rows(
        c,
        "SELECT batch_id FROM transactions WHERE occurred_at = '2021-08-31 08:55:00'",
    );
    assert_eq!(kept, vec![vec![first.clone().min(second.clone())]]);
    assert_eq!(
        count(
            c,
            &format!("SELECT rows_rejected FROM loaded_batches WHERE batch_id = '{first}'")
        ),
        1
    );

    // insights prints every view, readably, without personal data.
    let (pii, _) = personal_data(&csv_files(&fixture_dir()));
    let (shown, _) = ok(&["insights", "--postgres", &db.url, "--limit", "5"]);
    for v in VIEWS {
        assert!(
            shown.contains(&format!("{} ({})", v.title, v.name)),
            "{}",
            v.name
        );
    }
    assert!(shown.contains("2021-08-23      3     7.95"), "{shown}");
    assert_no_personal_data(&pii, "insights", &shown);
    let cols = assert_no_personal_data_in_db(&pii, &mut db.client);
    assert!(cols > 20, "only {cols} text columns searched");

    // Losing the ledger, or planning loaded batches again, changes no row.
    let before = fingerprint(&mut db.client);
    let out = load(&db.url, &root, &[]);
    assert!(out.starts_with("nothing to load"), "{out}");
    db.client
        .batch_execute("DELETE FROM loaded_batches")
        .unwrap();
    let out = load(&db.url, &root, &[]);
    assert!(out.starts_with("loaded 6 batches"), "{out}");
    let out = load(&db.url, &root, &["--include-loaded"]);
    assert!(out.starts_with("loaded 6 batches"), "{out}");
    for t in ["stores", "products", "transactions", "basket_items"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(t) && l.ends_with(" 0")),
            "{t} gained rows:\n{out}"
        );
    }
    assert_eq!(fingerprint(&mut db.client), before);
}

#[test]
fn an_empty_warehouse_says_what_to_do() {
    let Some(db) = fresh_db("an_empty_warehouse_says_what_to_do") else {
        return;
    };
    let out = cafe_etl(&["insights", "--postgres", &db.url]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("cafe-etl: query error: reading coffees_sold_per_type_weekly: relation")
            && err.contains("`cafe-etl load` creates the views"),
        "{err}"
    );
    // Everything staged before --since: the schema is made, nothing loaded.
    let (_dir, root) = staged_fixture();
    let out = load(&db.url, &root, &["--since", "2999-01-01"]);
    assert!(
        out.starts_with("nothing to load: 6 complete batches")
            && out.contains("6 staged before --since"),
        "{out}"
    );
    let (shown, _) = ok(&[
        "insights",
        "--postgres",
        &db.url,
        "--view",
        "best_store_daily",
    ]);
    assert_eq!(
        shown,
        "Best store per day (by revenue) (best_store_daily)\n  (no rows)\n"
    );
}

#[test]
fn two_loads_at_once_load_each_batch_once() {
    let Some(mut db) = fresh_db("two_loads_at_once_load_each_batch_once") else {
        return;
    };
    let (_dir, root) = staged_fixture();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_cafe-etl"))
            .args(["load", "--postgres", &db.url, "--root"])
            .arg(&root)
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    for out in [&a, &b] {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let c = &mut db.client;
    assert_eq!(count(c, "SELECT count(*) FROM loaded_batches"), 6);
    assert_eq!(count(c, "SELECT count(*) FROM transactions"), 11);
    assert_eq!(count(c, "SELECT count(*) FROM basket_items"), 14);
}

/// Each row of a table with its `xmin`: the transaction that last wrote
/// it. A row rewritten (by an update, even to the same values) gets a new one.
fn row_versions(client: &mut Client, table: &str, key: &str) -> Vec<Vec<String>> {
    rows(
        client,
        &format!("SELECT {key}, xmin::text FROM {table} ORDER BY {key}"),
    )
}

#[test]
fn reloading_leaves_store_and_product_rows_untouched() {
    let Some(mut db) = fresh_db("reloading_leaves_store_and_product_rows_untouched") else {
        return;
    };
    let (_dir, root) = staged_fixture();
    let c = &mut db.client;
    let first = wpg::load(c, &root, &wpg::LoadOptions::default()).unwrap();
    assert_eq!(first.recorded, 6);
    let stores = row_versions(c, "stores", "store_id");
    let products = row_versions(c, "products", "product_id");
    assert!(!stores.is_empty() && !products.is_empty());
    // A warehouse made before the lock table: the next load makes it, with
    // its one row.
    c.batch_execute("DROP TABLE load_lock").unwrap();
    // Every batch planned again: the script drops them as loaded, but the
    // stores and products of all six are copied and offered to the tables.
    let again = wpg::load(
        c,
        &root,
        &wpg::LoadOptions {
            include_loaded: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((again.planned, again.recorded), (6, 0));
    let offered: u64 = again
        .tables
        .iter()
        .filter(|t| matches!(t.table, Table::Stores | Table::Products))
        .map(|t| t.copied)
        .sum();
    assert!(offered > 0, "the reload offered no dimension rows");
    assert_eq!(row_versions(c, "stores", "store_id"), stores);
    assert_eq!(row_versions(c, "products", "product_id"), products);
    assert_eq!(
        rows(c, "SELECT lock_id::text, loads::text FROM load_lock"),
        table(&[&["1", "1"]])
    );
    // The schema applied again (as every load does) adds no second row.
    wpg::apply_schema(c).unwrap();
    assert_eq!(count(c, "SELECT count(*) FROM load_lock"), 1);
}

#[test]
fn a_load_holding_the_lock_queues_loads_but_not_dashboards() {
    let Some(mut db) = fresh_db("a_load_holding_the_lock_queues_loads") else {
        return;
    };
    let (_dir, root) = staged_fixture();
    wpg::apply_schema(&mut db.client).unwrap();
    let batches = cafe_etl::warehouse::scan(&root).unwrap().complete;
    assert_eq!(batches.len(), 6);
    let first = Plan::new(batches[..3].to_vec());
    let all = Plan::new(batches.clone());

    // Load A: every step of its plan run, not committed: it holds the lock.
    let mut a = Client::connect(&db.url, NoTls).unwrap();
    let mut tx = a.transaction().unwrap();
    wpg::run_steps(&mut tx, &first, &root).unwrap();

    // Load B, of all six batches, from a connection of its own: it queues.
    let queued = format!("{}&application_name=queued_load", db.url);
    std::thread::scope(|s| {
        let b = s.spawn(|| {
            let mut b = Client::connect(&queued, NoTls).unwrap();
            wpg::execute(&mut b, &all, &root).unwrap()
        });
        let c = &mut db.client;
        let waiting_on_lock = "SELECT count(*) FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.application_name = 'queued_load' \
             AND l.relation = 'load_lock'::regclass";
        let mut tries = 0;
        while count(c, waiting_on_lock) == 0 {
            assert!(!b.is_finished(), "load B did not wait for load A");
            tries += 1;
            assert!(tries < 300, "load B never queued on load_lock");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }

        // A dashboard reads the ledger and every view meanwhile, with a
        // timeout that a lock wait would hit.
        let mut dash = Client::connect(&db.url, NoTls).unwrap();
        dash.batch_execute("SET statement_timeout = '5s'").unwrap();
        let ledger = dash
            .query_one("SELECT count(*) FROM loaded_batches", &[])
            .unwrap_or_else(|e| panic!("the dashboard's ledger read waited: {e}"));
        assert_eq!(ledger.get::<_, i64>(0), 0, "A has not committed");
        for v in VIEWS {
            dash.simple_query(&format!("SELECT * FROM {} LIMIT 5", v.name))
                .unwrap_or_else(|e| panic!("the dashboard's read of {} waited: {e}", v.name));
        }
        assert!(!b.is_finished(), "load B ran while A held the lock");
        assert_eq!(count(c, waiting_on_lock), 1);

        tx.commit().unwrap();
        let (tables, recorded) = b.join().unwrap();
        // B took the lock after A's commit, so its script saw A's batches
        // in the ledger and recorded only the other three.
        assert_eq!(recorded, 3);
        let copied: u64 = tables.iter().map(|t| t.copied).sum();
        assert!(copied > 0, "B copied nothing: {tables:?}");
    });
    let c = &mut db.client;
    assert_eq!(count(c, "SELECT count(*) FROM loaded_batches"), 6);
    assert_eq!(count(c, "SELECT count(*) FROM transactions"), 11);
    assert_eq!(count(c, "SELECT count(*) FROM basket_items"), 14);
    assert_eq!(
        rows(
            c,
            "SELECT lock_id::text, plan_id, loads::text FROM load_lock"
        ),
        table(&[&["1", all.id(), "2"]])
    );
}

#[test]
fn a_batch_whose_marker_names_a_missing_table_is_skipped_and_the_rest_load() {
    let Some(mut db) = fresh_db("a_batch_whose_marker_names_a_missing_table") else {
        return;
    };
    let (_dir, root) = staged_fixture();
    let files = csv_files(&fixture_dir());
    let broken = batch_of(&files[0]);
    let missing = format!("basket_items/{broken}.csv.gz");
    std::fs::remove_file(root.join(&missing)).unwrap();
    let said =
        format!("batch {broken} skipped: {missing} is missing, though the batch's marker is there");

    // The Redshift plan: the broken batch named on stderr, left out of the
    // manifests; the others planned. Exit 1, as for a refused file.
    let out = cafe_etl(&plan_args(&root, "s3://cafe-staging/v1", &[]));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&said), "{err}");
    assert!(err.contains("1 broken batch skipped"), "{err}");
    let manifests = root.join("manifests");
    let plan_dir = std::fs::read_dir(&manifests)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let m = std::fs::read_to_string(plan_dir.join("transactions.manifest")).unwrap();
    assert!(!m.contains(&broken), "the broken batch is not planned");
    assert_eq!(m.matches("\"url\"").count(), files.len() - 1);

    // The PostgreSQL load: the others load, the broken one is named.
    let out = try_load(&db.url, &root);
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{err}");
    assert!(err.contains(&said), "{err}");
    assert!(
        stdout.starts_with(&format!("loaded {} batches", files.len() - 1))
            && stdout.contains(&format!("1 broken (a table object missing: {missing})")),
        "{stdout}"
    );
    let c = &mut db.client;
    assert_eq!(
        count(c, "SELECT count(*) FROM loaded_batches"),
        files.len() as u64 - 1
    );
    assert_eq!(
        count(
            c,
            &format!("SELECT count(*) FROM loaded_batches WHERE batch_id = '{broken}'")
        ),
        0
    );

    // Once the batch is staged again (its marker removed, so `transform`
    // does not skip it), the next load takes it.
    std::fs::remove_file(root.join(format!("batches/{broken}.json"))).unwrap();
    stage(&fixture_dir(), &root);
    assert!(root.join(&missing).exists());
    let out = load(&db.url, &root, &[]);
    assert!(out.starts_with("loaded 1 batch in"), "{out}");
    assert_eq!(
        count(&mut db.client, "SELECT count(*) FROM loaded_batches"),
        files.len() as u64
    );
}

/// Grafana's macros, as it would expand them for a wide time range.
fn expand_grafana_macros(sql: &str) -> String {
    let mut out = sql
        .replace("$__timeFrom()", "'2000-01-01T00:00:00Z'")
        .replace("$__timeTo()", "'2100-01-01T00:00:00Z'");
    while let Some(start) = out.find("$__timeFilter(") {
        let end = start + out[start..].find(')').expect("a closed macro");
        let col = &out[start + "$__timeFilter(".len()..end];
        let expanded = format!("{col} BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'");
        out.replace_range(start..=end, &expanded);
    }
    assert!(
        !out.contains('$'),
        "a Grafana macro this test does not know: {sql}"
    );
    out
}

/// What each sales panel shows, as a query of the view that answers the
/// same question over every loaded day: the panel, over a range holding
/// every sale, must give the same rows.
const PANEL_VIEWS: &[(&str, &str)] = &[
    (
        "Coffees sold per type per week",
        "SELECT CAST(week_start AS TIMESTAMP) AS \"time\", coffee_type AS metric, units\nFROM coffees_sold_per_type_weekly\nORDER BY 1, 2",
    ),
    (
        "Weekly Hazelnut revenue",
        "SELECT CAST(week_start AS TIMESTAMP) AS \"time\", revenue AS \"Hazelnut revenue\"\nFROM hazelnut_revenue_weekly\nORDER BY 1",
    ),
    (
        "Best store per day",
        "SELECT day, store_name, revenue, transactions\nFROM best_store_daily\nORDER BY day DESC, store_name",
    ),
    (
        "Best store per week",
        "SELECT week_start, store_name, revenue, transactions\nFROM best_store_weekly\nORDER BY week_start DESC, store_name",
    ),
    (
        "Daily Large Latte revenue",
        "SELECT CAST(day AS TIMESTAMP) AS \"time\", revenue AS \"Large Latte revenue\"\nFROM large_latte_revenue_daily\nORDER BY 1",
    ),
    (
        "Revenue per store per day",
        "SELECT CAST(day AS TIMESTAMP) AS \"time\", store_name AS metric, revenue\nFROM store_sales_daily\nORDER BY 1, 2",
    ),
    (
        "Transactions per store per week",
        "SELECT week_start, store_name, transactions, units, revenue\nFROM store_sales_weekly\nORDER BY week_start DESC, revenue DESC",
    ),
    (
        "Top products in the time range",
        "SELECT product, SUM(units) AS units, SUM(revenue) AS revenue\nFROM product_sales_weekly\nGROUP BY product\nORDER BY revenue DESC, product\nLIMIT 20",
    ),
    (
        "Transactions per hour of the day (in the time range)",
        "SELECT store_name, hour, transactions, per_day, revenue\nFROM store_hourly_transactions\nORDER BY store_name, hour",
    ),
    (
        "Average basket per store per week",
        "SELECT CAST(week_start AS TIMESTAMP) AS \"time\", store_name AS metric, average_basket\nFROM average_basket_weekly\nORDER BY 1, 2",
    ),
    (
        "Card share of transactions per store per week",
        "SELECT CAST(week_start AS TIMESTAMP) AS \"time\", store_name AS metric, card_share_pct\nFROM payment_mix_weekly\nORDER BY 1, 2",
    ),
    (
        "New and returning customers per week",
        "SELECT CAST(week_start AS TIMESTAMP) AS \"time\", SUM(new_customers) AS \"new\", SUM(returning_customers) AS \"returning\"\nFROM customers_new_returning_weekly\nGROUP BY week_start\nORDER BY 1",
    ),
    (
        "Cash and card per store per week",
        "SELECT week_start, store_name, cash_transactions, card_transactions, cash_revenue, card_revenue, card_share_pct\nFROM payment_mix_weekly\nORDER BY week_start DESC, store_name",
    ),
    (
        "New and returning customers per store per week",
        "SELECT week_start, store_name, new_customers, returning_customers\nFROM customers_new_returning_weekly\nORDER BY week_start DESC, store_name",
    ),
];

/// The dashboard for Grafana's Redshift plugin, made from the PostgreSQL
/// one: the same panels and SQL, with what the plugin's query model wants
/// (`rawSQL`, and `format` as its number: 0 time series, 1 table; the
/// string the PostgreSQL data source takes does not parse there).
fn redshift_dashboard(postgres: &serde_json::Value) -> serde_json::Value {
    let mut d = postgres.clone();
    d["uid"] = "cafe-etl-redshift".into();
    d["title"] = format!("{} (Redshift)", postgres["title"].as_str().unwrap()).into();
    for p in d["panels"].as_array_mut().unwrap() {
        for t in p["targets"].as_array_mut().unwrap() {
            t["rawSQL"] = t["rawSql"].clone();
            t["format"] = match t["format"].as_str() {
                Some("time_series") => 0.into(),
                Some("table") => 1.into(),
                other => panic!("a format this test does not know: {other:?}"),
            };
        }
    }
    d
}

#[test]
fn grafana_dashboard_panels_filter_occurred_at_and_agree_with_the_views() {
    let grafana = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana");
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(grafana.join("dashboards/cafe-etl.json")).unwrap())
            .expect("the dashboard is JSON");
    // occurred_at is the till's local time, stored without a zone: the
    // dashboard must not shift it by the browser's zone.
    assert_eq!(dashboard["timezone"], "utc");
    assert_eq!(dashboard["uid"], "cafe-etl");
    let datasource =
        std::fs::read_to_string(grafana.join("provisioning/datasources/cafe-warehouse.yaml"))
            .unwrap();
    // The same dashboard on Redshift, through the Data API plugin.
    let redshift = std::fs::read_to_string(
        grafana.join("provisioning/datasources/cafe-warehouse-redshift.yaml"),
    )
    .expect("a data source file for the Redshift plugin");
    assert!(redshift.contains("type: grafana-redshift-datasource"));
    // Its dashboard is the PostgreSQL one, made fit for the plugin; with
    // CAFE_ETL_WRITE_GRAFANA=1 this test writes it after a change.
    let redshift_path = grafana.join("dashboards/cafe-etl-redshift.json");
    let want = serde_json::to_string_pretty(&redshift_dashboard(&dashboard)).unwrap() + "\n";
    if std::env::var_os("CAFE_ETL_WRITE_GRAFANA").is_some() {
        std::fs::write(&redshift_path, &want).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&redshift_path).unwrap_or_default(),
        want,
        "{} is not the PostgreSQL dashboard made for the Redshift plugin; \
         CAFE_ETL_WRITE_GRAFANA=1 cargo test --test warehouse grafana writes it",
        redshift_path.display()
    );
    let provider =
        std::fs::read_to_string(grafana.join("provisioning/dashboards/cafe-etl.yaml")).unwrap();
    assert!(provider.contains("type: file") && provider.contains("path:"));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    let mut ids = HashSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "{title}: id repeated"
        );
        let uid = p["datasource"]["uid"].as_str().unwrap();
        for file in [&datasource, &redshift] {
            assert!(
                file.contains(&format!("uid: {uid}")),
                "{title}: data source {uid} is not provisioned"
            );
        }
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"].as_str(), Some(uid), "{title}");
            queries.push((title.to_string(), t["rawSql"].as_str().unwrap().to_string()));
        }
    }
    // Every sales panel filters the base column with the time macro, so
    // Redshift's sort key (and PostgreSQL's index) prunes to the range; a
    // filter on a view's week_start or day reads every row.
    for (title, sql) in &queries {
        let args: Vec<&str> = sql
            .split("$__timeFilter(")
            .skip(1)
            .map(|rest| &rest[..rest.find(')').unwrap()])
            .collect();
        assert!(
            args.iter()
                .all(|a| *a == "t.occurred_at" || *a == "occurred_at"),
            "{title}: $__timeFilter on a derived column: {args:?}"
        );
        if sql.contains("FROM loaded_batches") {
            // The ledger: batches whose sales overlap the range.
            assert!(
                sql.contains("last_at >= $__timeFrom() AND first_at <= $__timeTo()"),
                "{title}: {sql}"
            );
        } else {
            assert!(
                !args.is_empty(),
                "{title}: no $__timeFilter(occurred_at): {sql}"
            );
            assert!(
                !VIEWS.iter().any(|v| sql.contains(v.name)),
                "{title}: reads a view, whose derived columns no sort key prunes"
            );
        }
    }
    for v in VIEWS {
        assert!(
            PANEL_VIEWS.iter().any(|(_, q)| q.contains(v.name)),
            "no panel shows what {} shows",
            v.name
        );
    }
    for (title, _) in PANEL_VIEWS {
        assert!(
            queries.iter().any(|(t, _)| t == title),
            "no panel {title:?}"
        );
    }

    let Some(mut db) = fresh_db("grafana_dashboard_panels") else {
        return;
    };
    let (_dir, root) = staged_fixture();
    // Through the library this time.
    let report = wpg::load(&mut db.client, &root, &wpg::LoadOptions::default()).unwrap();
    assert_eq!((report.planned, report.recorded), (6, 6));
    for (title, sql) in &queries {
        let mut got = rows(&mut db.client, &expand_grafana_macros(sql));
        assert!(
            !got.is_empty(),
            "panel {title:?} shows nothing on the fixture"
        );
        if let Some((_, view)) = PANEL_VIEWS.iter().find(|(t, _)| t == title) {
            let mut want = rows(&mut db.client, view);
            got.sort();
            want.sort();
            assert_eq!(got, want, "panel {title:?} and its view disagree");
        }
    }
    // A range that holds none of the fixture's sales shows none.
    let narrow = |sql: &str| {
        sql.replace("$__timeFilter(", "$__narrow(")
            .replace("$__timeFrom()", "'1990-01-01T00:00:00Z'")
            .replace("$__timeTo()", "'1990-01-02T00:00:00Z'")
    };
    for (title, sql) in &queries {
        let mut sql = narrow(sql);
        while let Some(start) = sql.find("$__narrow(") {
            let end = start + sql[start..].find(')').unwrap();
            let col = sql[start + "$__narrow(".len()..end].to_string();
            sql.replace_range(
                start..=end,
                &format!("{col} BETWEEN '1990-01-01T00:00:00Z' AND '1990-01-02T00:00:00Z'"),
            );
        }
        let got = rows(&mut db.client, &sql);
        assert!(
            got.is_empty()
                || got
                    .iter()
                    .all(|r| r.iter().all(|c| c.is_empty() || c == "0")),
            "panel {title:?} shows rows outside its range: {got:?}"
        );
    }
}

#[test]
fn real_corpus_loads_exactly_once() {
    let data = real_dir();
    if !data.is_dir() {
        if in_ci() {
            panic!("the real exports are not at {}", data.display());
        }
        skipped(&format!(
            "real_corpus_loads_exactly_once: no real exports at {}",
            data.display()
        ));
        return;
    }
    let Some(mut db) = fresh_db("real_corpus_loads_exactly_once") else {
        return;
    };
    let files = csv_files(&data);
    assert!(files.len() >= 100, "{} files", files.len());
    let (pii, needles) = personal_data(&files);
    assert!(needles > 1000, "only {needles} names and cards found");

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("staging");
    let staged = stage(&data, &root);
    assert_no_personal_data(&pii, "transform output", &staged);

    // A batch whose marker is not there yet is left alone...
    let held = batch_of(&files[0]);
    let marker = root.join(marker_key(&held));
    let aside = dir.path().join("held-marker.json");
    std::fs::rename(&marker, &aside).unwrap();
    let out = load(&db.url, &root, &[]);
    let want = format!("loaded {} batches", files.len() - 1);
    assert!(out.starts_with(&want), "{out}");
    assert!(out.contains("1 without marker"), "{out}");
    let c = &mut db.client;
    let held_rows = format!("SELECT count(*) FROM transactions WHERE batch_id = '{held}'");
    assert_eq!(count(c, &held_rows), 0);
    // ...and loaded once it is.
    std::fs::rename(&aside, &marker).unwrap();
    let out = load(&db.url, &root, &[]);
    assert!(out.starts_with("loaded 1 batch in"), "{out}");
    assert!(count(c, &held_rows) > 0);
    let throughput = out.clone();

    // Rows per table: one per distinct key in the staged files.
    for t in schema::LOADED {
        let mut keys = HashSet::new();
        let key_cols: Vec<usize> = schema::key(t)
            .iter()
            .map(|k| t.columns().iter().position(|c| c == k).unwrap())
            .collect();
        for f in &files {
            let body = gunzip(&root.join(t.key(&batch_of(f))));
            for rec in csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(body.as_bytes())
                .records()
            {
                let rec = rec.unwrap();
                keys.insert(
                    key_cols
                        .iter()
                        .map(|&i| rec[i].to_string())
                        .collect::<Vec<_>>(),
                );
            }
        }
        let n = count(c, &format!("SELECT count(*) FROM {}", t.name()));
        assert_eq!(n, keys.len() as u64, "{}", t.name());
    }

    // Revenue and transactions per store, summed here from the raw files
    // (rows the stage rejected left out, by their line).
    let mut want: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    let mut rejected = 0;
    for f in &files {
        let rejects: HashSet<u64> = gunzip(&root.join(Table::Rejects.key(&batch_of(f))))
            .lines()
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        rejected += rejects.len();
        let bytes = std::fs::read(f).unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&bytes[..]);
        for rec in reader.records() {
            let rec = rec.unwrap();
            let line = rec.position().unwrap().line();
            if rejects.contains(&line) {
                continue;
            }
            let e = want.entry(rec[1].trim().to_string()).or_default();
            e.0 += pence(&rec[4]);
            e.1 += 1;
        }
    }
    let got: BTreeMap<String, (i64, u64)> = rows(
        c,
        "SELECT s.store_name, (sum(t.total_price) * 100)::bigint, count(*) \
         FROM transactions t JOIN stores s USING (store_id) GROUP BY s.store_name",
    )
    .into_iter()
    .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].parse().unwrap())))
    .collect();
    assert_eq!(
        got, want,
        "revenue and transactions per store ({rejected} rows rejected)"
    );

    // No name or card number anywhere: tables, views, outputs.
    let cols = assert_no_personal_data_in_db(&pii, c);
    assert!(cols > 20, "only {cols} text columns searched");
    let (shown, _) = ok(&["insights", "--postgres", &db.url, "--limit", "50"]);
    assert_no_personal_data(&pii, "insights", &shown);
    let (script, _) = ok(&plan_args(&root, "s3://cafe-staging/prod", &[]));
    assert_no_personal_data(&pii, "the load script", &script);

    // Loading again changes nothing, even when the plan takes every batch.
    let before = fingerprint(&mut db.client);
    let out = load(&db.url, &root, &[]);
    assert!(out.starts_with("nothing to load"), "{out}");
    let out = load(&db.url, &root, &["--include-loaded"]);
    assert!(
        out.starts_with(&format!("loaded {} batches", files.len())),
        "{out}"
    );
    assert_eq!(fingerprint(&mut db.client), before);
    eprintln!(
        "real corpus, last load: {}",
        throughput.lines().next().unwrap()
    );
}

/// Stages one file with the secret in `secret` (an environment variable's
/// value), or without one; `--restage` when asked. The exit code is the one
/// its per-file line calls for.
fn stage_with(file: &Path, root: &Path, secret: Option<&str>, restage: bool) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cafe-etl"));
    c.args(["transform", "--out", root.to_str().unwrap()])
        .env_remove("CAFE_ETL_POSTGRES");
    if let Some(s) = secret {
        c.env("KEY_UNDER_TEST", s)
            .args(["--customer-key-secret-env", "KEY_UNDER_TEST"]);
    }
    if restage {
        c.arg("--restage");
    }
    let out = c.arg(file).output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(exit_code_called_for(&stdout)),
        "transform: {stdout}{}",
        text(&out.stderr)
    );
    stdout
}

#[test]
fn a_warehouse_takes_one_customer_key_secret() {
    let Some(mut db) = fresh_db("a_warehouse_takes_one_customer_key_secret") else {
        return;
    };
    let (worker, other) = (
        "the worker's customer key secret",
        "a secret picked for a backfill",
    );
    let worker_id = cafe_etl::clean::customer_key_id(Some(worker));
    let other_id = cafe_etl::clean::customer_key_id(Some(other));
    let dir = tempfile::tempdir().unwrap();
    let (uploads, backfill) = (dir.path().join("uploads"), dir.path().join("backfill"));
    let fixtures = csv_files(&fixture_dir());
    let (first, rest) = fixtures.split_first().unwrap();

    // The worker's batches come first: the warehouse's key id is its.
    stage_with(first, &uploads, Some(worker), false);
    load(&db.url, &uploads, &[]);
    let c = &mut db.client;
    assert_eq!(
        rows(c, "SELECT DISTINCT customer_key_id FROM loaded_batches"),
        table(&[&[&worker_id]])
    );
    let before = fingerprint(c);

    // A backfill without a secret, then with another one: refused whole,
    // saying how to restage; nothing of it lands.
    for (secret, says) in [
        (None, "staged without a customer-key secret".to_string()),
        (Some(other), format!("staged with key id {other_id}")),
    ] {
        let staged = stage_with(&rest[0], &backfill, secret, true);
        stage_with(&rest[1], &backfill, secret, true);
        assert!(staged.contains("staged batch"), "{staged}");
        let out = try_load(&db.url, &backfill);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!(
                "cafe-etl: load error: the warehouse's customer keys have key id {worker_id}, so 2 batches cannot join it: "
            )) && err.contains(&says)
                && err.contains("--restage --customer-key-secret-env CUSTOMER_KEY_SECRET")
                && err.contains("nothing was loaded"),
            "{err}"
        );
        assert!(
            !err.contains(worker) && !err.contains(other),
            "no secret in {err}"
        );
        assert_eq!(fingerprint(&mut db.client), before, "nothing loaded");
    }

    // transform over the staged backfill with the worker's secret says so,
    // and --restage makes it loadable.
    let said = stage_with(&rest[0], &backfill, Some(worker), false);
    assert!(
        said.contains(&format!("is already staged with the secret of key id {other_id}, not the secret of key id {worker_id}"))
            && said.contains("--restage"),
        "{said}"
    );
    for f in &rest[..2] {
        stage_with(f, &backfill, Some(worker), true);
    }
    let out = load(&db.url, &backfill, &[]);
    assert!(out.starts_with("loaded 2 batches"), "{out}");
    let c = &mut db.client;
    assert_eq!(
        rows(c, "SELECT DISTINCT customer_key_id FROM loaded_batches"),
        table(&[&[&worker_id]])
    );
}

#[test]
fn insights_says_why_the_customers_view_is_empty() {
    let Some(db) = fresh_db("insights_says_why_the_customers_view_is_empty") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("staging");
    let fixtures = csv_files(&fixture_dir());
    stage_with(&fixtures[0], &root, None, false);
    let out = load(&db.url, &root, &[]);
    assert!(out.starts_with("loaded 1 batch in "), "{out}");
    let customers_view = || {
        ok(&[
            "insights",
            "--postgres",
            &db.url,
            "--view",
            "customers_new_returning_weekly",
        ])
    };
    let (shown, _) = customers_view();
    assert!(
        shown.contains("(no rows)\n  why: none of the ")
            && shown.contains("has a customer key")
            && shown.contains("--customer-key-secret-env CUSTOMER_KEY_SECRET"),
        "{shown}"
    );
    // With keys, no such note.
    stage_with(
        &fixtures[1],
        &root,
        Some("the worker's customer key secret"),
        false,
    );
    load(&db.url, &root, &[]);
    let (shown, _) = customers_view();
    assert!(!shown.contains("why:"), "{shown}");
}

#[test]
fn quarantine_keeps_one_row_per_batch_and_the_ledger_query_names_loaded_ones() {
    let Some(mut db) = fresh_db("quarantine_keeps_one_row_per_batch") else {
        return;
    };
    let c = &mut db.client;
    // The schema one statement at a time, as the worker's runners send it.
    for sql in schema::statements(Dialect::Postgres) {
        c.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let (_dir, root) = staged_fixture();
    load(&db.url, &root, &[]);
    let loaded = rows(c, "SELECT batch_id FROM loaded_batches ORDER BY batch_id")[0][0].clone();

    let poison = "0123456789abcdef0123456789abcdef";
    let mut failure = Failure {
        batch_id: poison.into(),
        store: Some("King's Lynn".into()),
        code: "copy_failed".into(),
        reason: "a row the warehouse refused".into(),
    };
    let quarantine = |c: &mut Client, f: &Failure| {
        let mut tx = c.transaction().unwrap();
        for sql in warehouse::quarantine_statements(f, Dialect::Postgres).unwrap() {
            tx.batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        tx.commit().unwrap();
    };
    quarantine(c, &failure);
    failure.code = "missing_object".into();
    failure.reason = "a table object of the batch is missing".into();
    failure.store = None;
    quarantine(c, &failure);
    assert_eq!(
        rows(
            c,
            "SELECT batch_id, store, code, reason, attempts, first_failed_at <= failed_at \
             FROM load_failures"
        ),
        table(&[&[
            poison,
            "King's Lynn",
            "missing_object",
            "a table object of the batch is missing",
            "2",
            "t"
        ]])
    );

    let q =
        warehouse::ledger_query(&[loaded.clone(), poison.to_string()], Dialect::Postgres).unwrap();
    let found = rows(c, &q);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0][0], loaded);
    assert!(found[0][1].starts_with("20"), "loaded_at {:?}", found[0][1]);
}
