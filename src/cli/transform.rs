//! `cafe-etl transform --out DIR FILE|DIR...`: the staging layout on disk.
//!
//! Per file: hash the bytes (the batch id goes into every transaction row),
//! skip it if its marker is already there, stream it through the pipeline
//! into temporary files, rename them into place, and write the marker last,
//! so a batch folder is either complete with its marker or ignored.

use super::{count, input_files, quiet_pipe, secret_from_env, source_name, Outcome, CHUNK};
use cafe_etl::{marker_key, BatchHasher, Config, Pipeline, Report, Table};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Export files, or folders of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Root of the staging layout.
    #[arg(long)]
    out: PathBuf,
    /// Environment variable holding the customer-key secret; without it the
    /// customer_key column is empty.
    #[arg(long, value_name = "VAR")]
    customer_key_secret_env: Option<String>,
    /// Compress the table files with zlib at this level (0-9) instead of the
    /// default gzip writer, which knows where each column repeats (faster
    /// than zlib at 1, with smaller files; zlib at 6 is smaller still, at
    /// half the speed).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
    gzip_level: Option<u32>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print the full report of each file as JSON lines instead of a summary line.
    #[arg(long)]
    json: bool,
    /// Stage again the files whose batch is already staged (by default they
    /// are skipped): after a change of customer-key secret, say. The batch's
    /// marker is removed first, so a loader never sees it half rewritten.
    #[arg(long)]
    restage: bool,
}

/// What happened to one file.
pub enum FileOutcome {
    Staged(Report),
    Duplicate(String),
    /// Already staged, with keys of another secret (or with none): skipped,
    /// and said so. Batch id, the staged key id, this run's key id.
    OtherKey(String, String, String),
    Refused(Report),
}

/// The customer key id a staged marker records, if it can be read.
fn staged_key_id(marker: &Path) -> Option<String> {
    let text = std::fs::read(marker).ok()?;
    let report: Report = serde_json::from_slice(&text).ok()?;
    Some(report.customer_key_id)
}

fn io_err(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

fn read_chunks(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => each(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path, e)),
        }
    }
}

/// Stages one file under `root`.
pub fn stage_file(
    path: &Path,
    root: &Path,
    config: &Config,
    restage: bool,
    progress: &ProgressBar,
) -> Result<FileOutcome, String> {
    let name = source_name(path);
    // The bytes are read twice (the batch id goes into every row); instead
    // of hashing them twice, check the file did not change in between.
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.len(), m.modified().ok()))
            .map_err(|e| io_err(p, e))
    };
    let before = stamp(path)?;
    let mut hasher = BatchHasher::new();
    read_chunks(path, |c| {
        hasher.update(c);
        Ok(())
    })?;
    let batch_id = hasher.finish();
    let marker = root.join(marker_key(&batch_id));
    if marker.exists() {
        if restage {
            // Incomplete from here until the new marker is in place.
            std::fs::remove_file(&marker).map_err(|e| io_err(&marker, e))?;
        } else {
            progress.inc(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
            let want =
                cafe_etl::clean::customer_key_id(config.clean.customer_key_secret.as_deref());
            return Ok(match staged_key_id(&marker) {
                Some(staged) if staged != want => FileOutcome::OtherKey(batch_id, staged, want),
                _ => FileOutcome::Duplicate(batch_id),
            });
        }
    }
    let tmp = |t: Table| root.join(t.name()).join(format!(".{batch_id}.csv.gz.tmp"));
    let cleanup = || {
        for t in Table::ALL {
            let _ = std::fs::remove_file(tmp(t));
        }
    };
    let mut writers = Vec::with_capacity(Table::ALL.len());
    for t in Table::ALL {
        match File::create(tmp(t)) {
            Ok(f) => writers.push(BufWriter::with_capacity(1 << 16, f)),
            Err(e) => {
                cleanup();
                return Err(io_err(&tmp(t), e));
            }
        }
    }
    let mut writers = writers.into_iter();
    let mut pipeline = Pipeline::transform(config.clone(), &name, &batch_id, |_| {
        writers
            .next()
            .expect("one writer per table, opened in Table::ALL order")
    })
    .map_err(|e| format!("{name}: {e}"))?;
    let streamed = read_chunks(path, |c| {
        progress.inc(c.len() as u64);
        pipeline.push(c).map_err(|e| format!("{name}: {e}"))
    });
    let finished = streamed
        .and_then(|()| match stamp(path)? == before {
            true => Ok(()),
            false => Err(format!(
                "{name}: the file changed while it was read; nothing of it is staged"
            )),
        })
        .and_then(|()| pipeline.finish().map_err(|e| format!("{name}: {e}")));
    let finished = match finished {
        Ok(f) => f,
        Err(e) => {
            cleanup();
            return Err(e);
        }
    };
    let report = finished.report;
    if report.refused {
        cleanup();
        return Ok(FileOutcome::Refused(report));
    }
    for (w, t) in finished
        .tables
        .unwrap_or_default()
        .into_iter()
        .zip(Table::ALL)
    {
        let file = w
            .into_inner()
            .map_err(|e| io_err(&tmp(t), e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&tmp(t), e))?;
        std::fs::rename(tmp(t), root.join(t.key(&batch_id))).map_err(|e| io_err(&tmp(t), e))?;
    }
    // The marker last, and atomically: its presence means the batch is complete.
    let marker_tmp = root.join("batches").join(format!(".{batch_id}.json.tmp"));
    let mut f = File::create(&marker_tmp).map_err(|e| io_err(&marker_tmp, e))?;
    f.write_all(report.to_json().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&marker_tmp, e))?;
    std::fs::rename(&marker_tmp, &marker).map_err(|e| io_err(&marker, e))?;
    Ok(FileOutcome::Staged(report))
}

/// Creates the layout's folders.
pub fn create_layout(root: &Path) -> Result<(), String> {
    for dir in Table::ALL.iter().map(|t| t.name()).chain(["batches"]) {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
    }
    Ok(())
}

pub fn run(args: Args) -> Result<Outcome, String> {
    let mut config = Config::default();
    config.clean.customer_key_secret = secret_from_env(args.customer_key_secret_env.as_deref())?;
    config.stage.gzip_level = args.gzip_level;
    config.trust_batch_id = true;
    let files = input_files(&args.inputs)?;
    create_layout(&args.out)?;
    if let Some(jobs) = args.jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .build_global()
            .map_err(|e| e.to_string())?;
    }
    let total: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let results: Vec<(PathBuf, Result<FileOutcome, String>)> = files
        .par_iter()
        .map(|p| {
            let staged = stage_file(p, &args.out, &config, args.restage, &progress);
            (p.clone(), staged)
        })
        .collect();
    progress.finish_and_clear();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut outcome = Outcome::Clean;
    let (mut staged, mut rejected, mut read) = (0u64, 0u64, 0u64);
    for (path, result) in results {
        let name = source_name(&path);
        let line = match result {
            Ok(FileOutcome::Staged(r)) => {
                if r.rows_rejected > 0 {
                    outcome = outcome.max(Outcome::Rejected);
                }
                read += r.rows_read;
                staged += r.rows_staged;
                rejected += r.rows_rejected;
                if args.json {
                    serde_json::to_string(&r).unwrap_or_default()
                } else {
                    format!(
                        "{name}: staged batch {} ({}): {} read, {} staged, {} rejected, {}",
                        r.batch_id,
                        r.format.as_str(),
                        count(r.rows_read, "row", "rows"),
                        r.rows_staged,
                        r.rows_rejected,
                        count(r.warnings, "warning", "warnings")
                    )
                }
            }
            Ok(FileOutcome::Duplicate(id)) => {
                format!("{name}: batch {id} is already staged, skipped")
            }
            Ok(FileOutcome::OtherKey(id, staged, want)) => {
                outcome = outcome.max(Outcome::Rejected);
                let made = |k: &str| match k {
                    cafe_etl::clean::NO_CUSTOMER_KEY => "no customer-key secret".to_string(),
                    k => format!("the secret of key id {k}"),
                };
                format!(
                    "{name}: batch {id} is already staged with {}, not {} as asked: skipped; \
                     --restage stages it again with this run's secret (a warehouse takes one secret's keys)",
                    made(&staged),
                    made(&want)
                )
            }
            Ok(FileOutcome::Refused(r)) => {
                outcome = outcome.max(Outcome::Rejected);
                let why = r
                    .refusal()
                    .map(|i| format!("[{}] {}", i.code, i.message))
                    .unwrap_or_default();
                if args.json {
                    serde_json::to_string(&r).unwrap_or_default()
                } else {
                    format!("{name}: refused, nothing staged: {why}")
                }
            }
            Err(e) => {
                eprintln!("cafe-etl: {e}");
                outcome = Outcome::Failed;
                continue;
            }
        };
        quiet_pipe(writeln!(out, "{line}"))?;
    }
    if !args.json && files.len() > 1 {
        quiet_pipe(writeln!(
            out,
            "total: {} files, {} read, {staged} staged, {rejected} rejected",
            files.len(),
            count(read, "row", "rows")
        ))?;
    }
    Ok(outcome)
}
