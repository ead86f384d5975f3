//! `cafe-etl check FILE...`: validate only.

use super::{
    count, input_files, quiet_pipe, read_chunks, said, secret_from_env, shown, source_name, Outcome,
};
use anyhow::{Context, Result};
use cafe_etl::{Config, Pipeline, Report};
use rayon::prelude::*;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Export files, or folders of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Print the reports as a JSON array instead of tables.
    #[arg(long)]
    json: bool,
    /// Issues shown per file in the table (all are counted).
    #[arg(long, default_value_t = 50)]
    max_issues: usize,
    /// Environment variable holding the customer-key secret (only changes
    /// whether the preview shows a key).
    #[arg(long, value_name = "VAR")]
    customer_key_secret_env: Option<String>,
}

/// Checks one file, streaming it.
pub fn check_file(path: &std::path::Path, config: &Config) -> Result<Report> {
    let mut pipeline = Pipeline::check(config.clone(), &source_name(path));
    read_chunks(path, |chunk| {
        pipeline.push(chunk).map_err(said).with_context(shown(path))
    })?;
    pipeline
        .finish()
        .map(|f| f.report)
        .map_err(said)
        .with_context(shown(path))
}

pub fn run(args: Args) -> Result<Outcome> {
    let mut config = Config::default();
    config.clean.customer_key_secret = secret_from_env(args.customer_key_secret_env.as_deref())?;
    let files = input_files(&args.inputs)?;
    let results: Vec<Result<Report>> = files.par_iter().map(|p| check_file(p, &config)).collect();
    let mut outcome = Outcome::Clean;
    let mut reports = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for result in results {
        match result {
            Ok(report) => {
                if report.refused || report.rows_rejected > 0 {
                    outcome = outcome.max(Outcome::Rejected);
                }
                if !args.json {
                    quiet_pipe(print_report(&mut out, &report, args.max_issues))?;
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("cafe-etl: {e:#}");
                outcome = Outcome::Failed;
            }
        }
    }
    if args.json {
        let written = serde_json::to_writer_pretty(&mut out, &reports)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush());
        quiet_pipe(written)?;
    }
    Ok(outcome)
}

/// The human-readable form: one summary line, then a table of issues.
pub fn print_report(out: &mut impl Write, r: &Report, max_issues: usize) -> std::io::Result<()> {
    if let Some(refusal) = r.refusal() {
        writeln!(
            out,
            "{}: refused [{}]: {}",
            r.source, refusal.code, refusal.message
        )?;
        return Ok(());
    }
    // `check` writes nothing: it says what `transform` would stage.
    writeln!(
        out,
        "{}: {}, {} read, {} would be staged, {} rejected, {}",
        r.source,
        r.format.as_str(),
        count(r.rows_read, "row", "rows"),
        r.rows_staged,
        r.rows_rejected,
        count(r.warnings, "warning", "warnings")
    )?;
    if r.issues.is_empty() {
        return Ok(());
    }
    let shown = &r.issues[..r.issues.len().min(max_issues)];
    let code_w = shown
        .iter()
        .map(|i| i.code.as_str().len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "  {:>6}  {:>3}  {:<8}  {:<code_w$}  MESSAGE",
        "LINE", "COL", "SEVERITY", "CODE"
    )?;
    for i in shown {
        let col = i
            .column
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        let sev = match i.severity {
            cafe_etl::Severity::Error => "error",
            cafe_etl::Severity::Warning => "warning",
        };
        writeln!(
            out,
            "  {:>6}  {:>3}  {:<8}  {:<code_w$}  {}",
            i.line,
            col,
            sev,
            i.code.as_str(),
            i.message
        )?;
    }
    let more = r.issues_total - shown.len() as u64;
    if more > 0 {
        writeln!(
            out,
            "  ... and {} more (--max-issues, or --json for the full list)",
            count(more, "issue", "issues")
        )?;
    }
    Ok(())
}
