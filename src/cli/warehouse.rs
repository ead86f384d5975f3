//! The warehouse subcommands:
//!
//! - `cafe-etl sql ddl --dialect redshift|postgres`: the schema, ledger and views;
//! - `cafe-etl load-plan --root DIR --s3-url s3://bucket/prefix`: manifests
//!   written under the root, the Redshift load script on stdout;
//! - `cafe-etl load --postgres URL --root DIR`: the same plan run against
//!   PostgreSQL;
//! - `cafe-etl insights --postgres URL`: the analytics views as tables.

use super::{quiet_pipe, shown, Outcome};
use anyhow::{anyhow, Context, Result};
use cafe_etl::warehouse::{
    plan::{parse_since, Plan, S3Target},
    postgres::{self as pg, LoadOptions},
    schema, Dialect, Phase, View, VIEWS,
};
use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    #[command(subcommand)]
    what: SqlWhat,
}

#[derive(clap::Subcommand, Debug)]
enum SqlWhat {
    /// The star schema, the loaded_batches ledger and the analytics views,
    /// safe to run again.
    Ddl {
        /// redshift or postgres.
        #[arg(long)]
        dialect: Dialect,
    },
}

#[derive(clap::Args, Debug)]
pub struct LoadPlanArgs {
    /// Root of the staging layout, on this machine (`transform --out`).
    #[arg(long)]
    root: PathBuf,
    /// Where the same root is in S3, which is where Redshift COPY reads:
    /// s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    s3_url: String,
    /// IAM role Redshift assumes to read the bucket: an ARN, or `default`
    /// for the cluster's default role.
    #[arg(long, value_name = "ARN", default_value = "default")]
    iam_role: String,
    /// Region of the bucket, when it is not the cluster's.
    #[arg(long)]
    region: Option<String>,
    /// Only batches staged (marker written) at or after this UTC time:
    /// YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// A file of batch ids already loaded, one per line (e.g. from
    /// `SELECT batch_id FROM loaded_batches`), left out of the manifests.
    /// Without it the script still skips them, after copying.
    #[arg(long, value_name = "FILE")]
    loaded: Option<PathBuf>,
}

/// The warehouse connection, shared by `load` and `insights`.
#[derive(clap::Args, Debug)]
pub struct Postgres {
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/warehouse;
    /// better given in the environment, out of the process list.
    #[arg(
        long = "postgres",
        value_name = "URL",
        env = "CAFE_ETL_POSTGRES",
        hide_env_values = true
    )]
    url: String,
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    postgres: Postgres,
    /// Root of the staging layout (`transform --out`).
    #[arg(long)]
    root: PathBuf,
    /// Only batches staged (marker written) at or after this UTC time:
    /// YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Plan the batches the ledger already has too, and let the load script
    /// drop them, as a Redshift plan made offline does. Same result, slower.
    #[arg(long)]
    include_loaded: bool,
}

#[derive(clap::Args, Debug)]
pub struct InsightsArgs {
    #[command(flatten)]
    postgres: Postgres,
    /// Rows shown per view, newest first.
    #[arg(long, default_value_t = 10)]
    limit: u64,
    /// Show only these views (repeat the option); `--view list` names them.
    #[arg(long = "view", value_name = "NAME")]
    views: Vec<String>,
}

/// Writes to stdout (or stderr) at once. A reader that went away (`| head`)
/// is not an error: there is nobody left to tell ([`quiet_pipe`]).
fn emit(text: &str, to_stderr: bool) -> Result<()> {
    quiet_pipe(if to_stderr {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    })
}

/// An option's value refused by the core's parser, whose text says why:
/// `--s3-url: the S3 URL "x" should start with s3://`.
fn option<T>(name: &'static str, parsed: Result<T, String>) -> Result<T> {
    parsed.map_err(anyhow::Error::msg).context(name)
}

/// `--since`, whose refusal names the option itself.
fn since(s: Option<&str>) -> Result<Option<u64>> {
    s.map(parse_since).transpose().map_err(anyhow::Error::msg)
}

/// `cafe-etl sql ddl`: prints the warehouse SQL of a dialect.
pub fn sql(args: SqlArgs) -> Result<Outcome> {
    match args.what {
        SqlWhat::Ddl { dialect } => emit(&schema::ddl(dialect), false)?,
    }
    Ok(Outcome::Clean)
}

/// `cafe-etl load-plan`: writes the manifests of the complete staged
/// batches and prints their Redshift load script.
pub fn load_plan(args: LoadPlanArgs) -> Result<Outcome> {
    let mut s3 = option("--s3-url", S3Target::new(&args.s3_url))?;
    s3 = option("--iam-role", s3.with_iam_role(&args.iam_role))?;
    if let Some(r) = &args.region {
        s3 = option("--region", s3.with_region(r))?;
    }
    let since = since(args.since.as_deref())?;
    let loaded: HashSet<String> = match &args.loaded {
        None => HashSet::new(),
        Some(path) => std::fs::read_to_string(path)
            .with_context(shown(path))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
    };
    let scan = cafe_etl::warehouse::scan(&args.root)?;
    let complete = scan.complete.len();
    let batches: Vec<_> = scan
        .complete
        .into_iter()
        .filter(|b| since.is_none_or(|s| b.staged_at_ms >= s))
        .filter(|b| !loaded.contains(b.id()))
        .collect();
    // A broken batch is named on stderr and left out; the others plan.
    for b in &scan.broken {
        emit(&format!("{b}\n"), true)?;
    }
    let skipped = skipped_note(
        scan.incomplete.len(),
        complete - batches.len(),
        "left out by --since or --loaded",
    ) + &broken_note(scan.broken.len());
    // Exit 1 when a batch was skipped as broken, as for a refused file:
    // what could be planned still is.
    let outcome = match scan.broken.is_empty() {
        true => Outcome::Clean,
        false => Outcome::Rejected,
    };
    if batches.is_empty() {
        emit(
            &format!("nothing to plan: no complete batch to load{skipped}\n"),
            true,
        )?;
        return Ok(outcome);
    }
    // Offline, the warehouse's key id is unknown: the batches of one plan
    // must at least agree with each other.
    cafe_etl::warehouse::keys::check(&[], &batches, Phase::Plan)?;
    let plan = Plan::new(batches);
    // The script first: a plan it cannot make writes no manifests.
    let script = plan.redshift_script(&s3)?;
    let paths = plan.write_manifests(&args.root, &s3)?;
    emit(&script, false)?;
    let dir = paths[0]
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    emit(
        &format!(
            "plan {}: {} batches; manifests in {dir}: upload the root to {} before running the script{skipped}\n",
            plan.id(),
            plan.batches().len(),
            args.s3_url.trim_end_matches('/'),
        ),
        true,
    )?;
    Ok(outcome)
}

/// `; N broken batches skipped (see above)`, or nothing.
fn broken_note(broken: usize) -> String {
    match broken {
        0 => String::new(),
        1 => "; 1 broken batch skipped (named above)".into(),
        n => format!("; {n} broken batches skipped (named above)"),
    }
}

fn skipped_note(incomplete: usize, left_out: usize, why: &str) -> String {
    let mut parts = Vec::new();
    if incomplete > 0 {
        parts.push(format!(
            "{incomplete} batch{} without marker (incomplete) left alone",
            if incomplete == 1 { "" } else { "es" }
        ));
    }
    if left_out > 0 {
        parts.push(format!("{left_out} {why}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

/// `cafe-etl load`: loads the complete staged batches not yet loaded into
/// PostgreSQL.
pub fn load(args: LoadArgs) -> Result<Outcome> {
    let options = LoadOptions {
        since: since(args.since.as_deref())?,
        include_loaded: args.include_loaded,
    };
    let mut client = pg::connect(&args.postgres.url, Phase::Load)?;
    let report = pg::load(&mut client, &args.root, &options)?;
    for b in &report.broken {
        emit(&format!("{b}\n"), true)?;
    }
    emit(
        &load_summary(&report, &args.root.display().to_string()),
        false,
    )?;
    // Exit 1 when a batch was skipped as broken; the others are loaded.
    Ok(match report.broken.is_empty() {
        true => Outcome::Clean,
        false => Outcome::Rejected,
    })
}

/// What a load did, for people: the totals, rows per table, what was
/// left alone and why.
fn load_summary(report: &pg::LoadReport, root: &str) -> String {
    let mut notes = Vec::new();
    if report.incomplete > 0 {
        notes.push(format!("{} without marker (incomplete)", report.incomplete));
    }
    if report.already_loaded > 0 {
        notes.push(format!("{} already loaded", report.already_loaded));
    }
    if report.before_since > 0 {
        notes.push(format!("{} staged before --since", report.before_since));
    }
    if !report.broken.is_empty() {
        notes.push(format!(
            "{} broken (a table object missing: {})",
            report.broken.len(),
            report
                .broken
                .iter()
                .map(|b| b.object.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" (skipped: {})", notes.join(", "))
    };
    if report.planned == 0 {
        return format!(
            "nothing to load: {} in {root}{notes}\n",
            super::count(report.complete as u64, "complete batch", "complete batches")
        );
    }
    let mut s = format!(
        "loaded {} in {:.2} s: {} rows copied, {:.0} rows/s{notes}\n",
        super::count(report.planned as u64, "batch", "batches"),
        report.elapsed.as_secs_f64(),
        report.rows_copied(),
        report.rows_per_second()
    );
    s.push_str(&format!(
        "  {:<16} {:>10} {:>10}\n",
        "table", "copied", "added"
    ));
    for t in &report.tables {
        s.push_str(&format!(
            "  {:<16} {:>10} {:>10}\n",
            t.table.name(),
            t.copied,
            t.added
        ));
    }
    s.push_str(&format!(
        "  {:<16} {:>10} {:>10}\n",
        schema::LEDGER_TABLE,
        report.planned,
        report.recorded
    ));
    s
}

/// The views asked for, by name, in the order of [`VIEWS`].
fn chosen_views(names: &[String]) -> Result<Vec<View>> {
    if names.is_empty() {
        return Ok(VIEWS.to_vec());
    }
    let known: Vec<&str> = VIEWS.iter().map(|v| v.name).collect();
    for n in names {
        if !known.contains(&n.as_str()) {
            return Err(anyhow!(
                "--view {n:?} is not a view; the views are: {}",
                known.join(", ")
            ));
        }
    }
    Ok(VIEWS
        .iter()
        .filter(|v| names.iter().any(|n| n == v.name))
        .copied()
        .collect())
}

/// `cafe-etl insights`: prints the analytics views of a PostgreSQL
/// warehouse as tables.
pub fn insights(args: InsightsArgs) -> Result<Outcome> {
    if args.views.iter().any(|v| v == "list") {
        let list: String = VIEWS
            .iter()
            .map(|v| format!("{:<32} {}\n", v.name, v.title))
            .collect();
        emit(&list, false)?;
        return Ok(Outcome::Clean);
    }
    let views = chosen_views(&args.views)?;
    let mut client = pg::connect(&args.postgres.url, Phase::Query)?;
    let tables = pg::insights(&mut client, &views, args.limit)?;
    let mut shown: Vec<String> = tables.iter().map(render).collect();
    for (t, text) in tables.iter().zip(shown.iter_mut()) {
        if t.view.name == CUSTOMERS_VIEW && t.rows.is_empty() {
            let (all, keyed) = pg::customer_key_counts(&mut client)?;
            text.push_str(&no_customers_note(all, keyed));
        }
    }
    emit(&shown.join("\n"), false)?;
    Ok(Outcome::Clean)
}

/// The view that counts customers by their key.
const CUSTOMERS_VIEW: &str = "customers_new_returning_weekly";

/// Why the customers view is empty, when the reason is that no loaded
/// transaction has a customer key.
fn no_customers_note(transactions: u64, keyed: u64) -> String {
    if transactions == 0 || keyed > 0 {
        return String::new();
    }
    format!(
        "  why: none of the {} has a customer key (their batches were staged without a \
         customer-key secret). Stage with the worker's secret: \
         `cafe-etl transform --customer-key-secret-env CUSTOMER_KEY_SECRET ...` \
         (docs/warehouse.md, \"Customer keys\").\n",
        super::count(transactions, "loaded transaction", "loaded transactions")
    )
}

fn is_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A view as an aligned text table: numbers to the right, NULL as blank.
fn render(t: &pg::Insight) -> String {
    let mut s = format!("{} ({})\n", t.view.title, t.view.name);
    if t.rows.is_empty() {
        s.push_str("  (no rows)\n");
        return s;
    }
    let cells: Vec<Vec<&str>> = t
        .rows
        .iter()
        .map(|r| r.iter().map(|c| c.as_deref().unwrap_or("")).collect())
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|r| r[i].chars().count())
            .chain([t.columns[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..t.columns.len()).map(width).collect();
    let numeric: Vec<bool> = (0..t.columns.len())
        .map(|i| cells.iter().all(|r| r[i].is_empty() || is_number(r[i])))
        .collect();
    let line = |s: &mut String, row: &[&str]| {
        let mut l = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            l.push(' ');
            if numeric[i] {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(pad));
            }
            l.push(' ');
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    let header: Vec<&str> = t.columns.iter().map(String::as_str).collect();
    line(&mut s, &header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    line(&mut s, &rule);
    for r in &cells {
        line(&mut s, r);
    }
    if t.total > t.rows.len() as u64 {
        s.push_str(&format!("  ({} of {} rows)\n", t.rows.len(), t.total));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right() {
        let t = pg::Insight {
            view: VIEWS[3],
            columns: vec!["week_start".into(), "units".into(), "revenue".into()],
            rows: vec![
                vec![
                    Some("2021-08-30".into()),
                    Some("1".into()),
                    Some("2.85".into()),
                ],
                vec![
                    Some("2021-08-23".into()),
                    Some("3".into()),
                    Some("17.95".into()),
                ],
            ],
            total: 3,
        };
        let want = "\
Weekly Hazelnut revenue (hazelnut_revenue_weekly)
  week_start  units  revenue
  ----------  -----  -------
  2021-08-30      1     2.85
  2021-08-23      3    17.95
  (2 of 3 rows)
";
        assert_eq!(render(&t), want);
    }

    #[test]
    fn refused_options_are_named_before_the_reason() {
        let s3 = || S3Target::new("s3://bucket/x").unwrap();
        // (error, as `main` prints it after `cafe-etl: `)
        let cases: Vec<(anyhow::Error, &str)> = vec![
            (
                option("--s3-url", S3Target::new("https://b/x")).unwrap_err(),
                "--s3-url: the S3 URL \"https://b/x\" should start with s3://",
            ),
            (
                option("--iam-role", s3().with_iam_role("admin")).unwrap_err(),
                "--iam-role: the IAM role \"admin\" should be an IAM role ARN (arn:aws:iam::...:role/...) or default",
            ),
            (
                option("--region", s3().with_region("EU")).unwrap_err(),
                "--region: the region \"EU\" should be an AWS region like eu-west-2",
            ),
            (
                since(Some("last week")).unwrap_err(),
                "--since \"last week\" is not a time; expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
            ),
            (
                chosen_views(&["nope".to_string()]).unwrap_err(),
                "--view \"nope\" is not a view; the views are: ",
            ),
        ];
        for (e, want) in cases {
            let got = format!("{e:#}");
            assert!(got.starts_with(want), "{got}");
        }
        assert_eq!(since(None).unwrap(), None);
        assert_eq!(since(Some("2021-08-25")).unwrap(), Some(1_629_849_600_000));
    }

    #[test]
    fn view_names_are_checked() {
        for (names, want) in [
            (vec![], Ok(VIEWS.len())),
            (vec!["best_store_daily".to_string()], Ok(1)),
            (vec!["nope".to_string()], Err("is not a view")),
        ] {
            match (chosen_views(&names), want) {
                (Ok(v), Ok(n)) => assert_eq!(v.len(), n),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, _) => panic!("{names:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn load_summaries() {
        use cafe_etl::Table;
        let nothing = pg::LoadReport {
            complete: 3,
            already_loaded: 2,
            incomplete: 1,
            ..Default::default()
        };
        let loaded = pg::LoadReport {
            complete: 2,
            planned: 2,
            recorded: 2,
            tables: vec![pg::TableLoad {
                table: Table::Transactions,
                copied: 300,
                added: 250,
            }],
            elapsed: std::time::Duration::from_millis(1500),
            ..Default::default()
        };
        for (report, want) in [
            (
                nothing,
                "nothing to load: 3 complete batches in /s (skipped: 1 without marker (incomplete), 2 already loaded)\n",
            ),
            (
                loaded,
                "loaded 2 batches in 1.50 s: 300 rows copied, 200 rows/s\n  \
                 table                copied      added\n  \
                 transactions            300        250\n  \
                 loaded_batches            2          2\n",
            ),
        ] {
            assert_eq!(load_summary(&report, "/s"), want);
        }
    }

    #[test]
    fn an_empty_customers_view_says_why() {
        for (all, keyed, want) in [
            (0, 0, None),
            (5, 2, None),
            (1, 0, Some("none of the 1 loaded transaction has")),
            (268, 0, Some("none of the 268 loaded transactions has")),
        ] {
            let note = no_customers_note(all, keyed);
            match want {
                None => assert_eq!(note, ""),
                Some(w) => {
                    assert!(note.contains(w), "{note}");
                    assert!(note.contains("--customer-key-secret-env"), "{note}");
                }
            }
        }
    }

    #[test]
    fn skipped_notes() {
        for (inc, out, want) in [
            (0, 0, ""),
            (1, 0, "; 1 batch without marker (incomplete) left alone"),
            (
                2,
                3,
                "; 2 batches without marker (incomplete) left alone, 3 old",
            ),
        ] {
            assert_eq!(skipped_note(inc, out, "old"), want);
        }
    }
}
