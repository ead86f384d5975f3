//! Command-line front end. Each subcommand lives in its own module; this one
//! parses arguments and maps outcomes to exit codes:
//! 0 all rows staged, 1 a row rejected or a file refused, 2 usage or I/O error.
//!
//! Errors are [`anyhow::Error`]s: what was being done (a file's path, "writing
//! the output") is their context, printed before the cause as
//! `cafe-etl: context: cause`.

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

mod check;
mod generate;
mod token;
mod transform;
mod warehouse;

/// Clean, validate and stage café till exports for the warehouse.
#[derive(Parser, Debug)]
#[command(name = "cafe-etl", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate exports and list every problem per file; writes nothing.
    Check(check::Args),
    /// Write the staging layout (gzip CSV per table, report last) for each file.
    Transform(transform::Args),
    /// Write realistic synthetic exports in the current format.
    Generate(generate::Args),
    /// Mint (or check) a branch upload token for the edge worker.
    Token(token::Args),
    /// Print the warehouse SQL: `sql ddl --dialect redshift|postgres`.
    Sql(warehouse::SqlArgs),
    /// Write COPY manifests for the complete staged batches and print the
    /// Redshift load script.
    LoadPlan(warehouse::LoadPlanArgs),
    /// Load the complete staged batches not yet loaded into PostgreSQL.
    Load(warehouse::LoadArgs),
    /// Print the analytics views of a PostgreSQL warehouse.
    Insights(warehouse::InsightsArgs),
}

/// Outcome of a subcommand, as an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything staged.
    Clean = 0,
    /// A row rejected or a file refused.
    Rejected = 1,
    /// Usage or I/O error.
    Failed = 2,
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(a) => check::run(a),
        Command::Transform(a) => transform::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Token(a) => token::run(a),
        Command::Sql(a) => warehouse::sql(a),
        Command::LoadPlan(a) => warehouse::load_plan(a),
        Command::Load(a) => warehouse::load(a),
        Command::Insights(a) => warehouse::insights(a),
    };
    match result {
        Ok(outcome) => outcome as i32,
        Err(e) => {
            // `{:#}`: the context, then each cause, separated by ": ".
            eprintln!("cafe-etl: {e:#}");
            Outcome::Failed as i32
        }
    }
}

/// Reads the customer-key secret from the named environment variable.
pub fn secret_from_env(var: Option<&str>) -> Result<Option<String>> {
    match var {
        None => Ok(None),
        Some(var) => match std::env::var(var) {
            Ok(s) if !s.is_empty() => Ok(Some(s)),
            Ok(_) => Err(anyhow!(
                "environment variable {var} is empty; it should hold the customer-key secret"
            )),
            Err(_) => Err(anyhow!(
                "environment variable {var} is not set; it should hold the customer-key secret"
            )),
        },
    }
}

/// The context of an error about `path`: its name as given.
pub fn shown(path: &Path) -> impl FnOnce() -> String + '_ {
    || path.display().to_string()
}

/// An error whose text already says its cause (the core's
/// [`cafe_etl::Error`], walkdir's), as one message: kept as a source chain,
/// `{:#}` would print the cause twice.
pub fn said(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::msg(e.to_string())
}

/// Expands the FILE|DIR arguments: directories give their `.csv` files,
/// recursively, in name order.
pub fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).with_context(shown(input))?;
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(input)
                .follow_links(true)
                .sort_by_file_name()
            {
                let entry = entry.map_err(said).with_context(shown(input))?;
                let path = entry.path();
                if entry.file_type().is_file()
                    && path
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
                {
                    out.push(path.to_path_buf());
                }
            }
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

/// The file name shown in messages and stored as the batch's `source`.
pub fn source_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A count and its noun, singular for one: `1 row`, `2 rows`, `1 batch`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Chunk size for streaming a file through the pipeline.
pub const CHUNK: usize = 256 * 1024;

/// Streams a file to `each` in chunks of at most [`CHUNK`] bytes: the
/// memory used does not grow with the file. Errors name the file.
pub fn read_chunks(path: &Path, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut file = std::fs::File::open(path).with_context(shown(path))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => each(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(shown(path)),
        }
    }
}

/// Maps a write error to the command's error, except a reader that went
/// away (`check --json | head`): there is nobody left to tell, so the
/// command ends quietly.
pub fn quiet_pipe(result: std::io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing the output")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_their_context_then_their_cause_once() {
        use std::io::{Error as IoError, ErrorKind};
        let missing = || IoError::new(ErrorKind::NotFound, "no such file");
        let core = || cafe_etl::Error::io(cafe_etl::Stage::Stage, "stores table", missing());
        // (error, as `main` prints it)
        let cases: Vec<(anyhow::Error, &str)> = vec![
            (
                Err::<(), _>(missing())
                    .with_context(shown(Path::new("/x/a.csv")))
                    .unwrap_err(),
                "/x/a.csv: no such file",
            ),
            (
                Err::<(), _>(said(core()))
                    .context("a.csv")
                    .unwrap_err(),
                "a.csv: stage error: stores table: no such file",
            ),
            (
                quiet_pipe(Err(IoError::other("disk full"))).unwrap_err(),
                "writing the output: disk full",
            ),
            (
                secret_from_env(Some("CAFE_ETL_NO_SUCH_VAR_IN_TESTS")).unwrap_err(),
                "environment variable CAFE_ETL_NO_SUCH_VAR_IN_TESTS is not set; it should hold the customer-key secret",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(format!("{e:#}"), want);
        }
        assert!(quiet_pipe(Err(IoError::new(ErrorKind::BrokenPipe, "gone"))).is_ok());
    }

    #[test]
    fn counts_are_singular_for_one() {
        for (n, want) in [(0, "0 batches"), (1, "1 batch"), (2, "2 batches")] {
            assert_eq!(count(n, "batch", "batches"), want);
        }
    }
}
