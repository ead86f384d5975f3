//! `cafe-etl transform --out DIR FILE|DIR...`: the staging layout on disk.
//!
//! Per file: hash the bytes (the batch id goes into every transaction row),
//! skip it if its marker is already there, stream it through the pipeline
//! into temporary files and rename them into place. Markers come last, per
//! group of files: once every table of the group is written, one barrier
//! makes them durable (a `syncfs` of the staging root on Linux, else an
//! fsync per table file), and only then are the group's markers written. A
//! marker therefore never names a missing or partial table, even after a
//! crash or a power cut, and a backfill of thousands of small files pays
//! for that once per group instead of six fsyncs per file.

use super::{
    count, input_files, quiet_pipe, read_chunks, said, secret_from_env, shown, source_name, Outcome,
};
use anyhow::{anyhow, bail, Context, Result};
use cafe_etl::{marker_key, BatchHasher, Config, Pipeline, Report, Table};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tempfile::NamedTempFile;

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
    /// The zlib level of the table files, 0 (store) to 9 (default: the
    /// measured level in the README, "Performance").
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
    gzip_level: Option<u32>,
    /// Worker threads, a file each (default: all cores). With fewer files
    /// than that, each big table file also gets a compressor thread.
    #[arg(long)]
    jobs: Option<usize>,
    /// Most files staged between two durability barriers: their tables are
    /// made durable together, then their markers are written. A crash
    /// re-stages at most one group.
    #[arg(long, value_name = "FILES", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    sync_every: u32,
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
    /// Its tables are in place; its marker waits for the group's barrier
    /// ([`commit`]).
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

/// Files up to this size are read once, into memory, then hashed and
/// staged from there: a backfill's daily exports (some 45 KB) cost one open
/// and one read each instead of two. Bigger files are read twice, streamed,
/// so memory stays flat.
const READ_ONCE: u64 = 4 << 20;

/// A temporary file beside `dir/<batch_id>...`: a dot name no reader takes
/// for a batch, removed if dropped before it is persisted.
fn temp_in(dir: &Path, batch_id: &str) -> Result<NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&format!(".{batch_id}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(shown(dir))
}

/// Stages the tables of one file under `root`, without its marker (see
/// [`commit`]). `claimed` holds the batch ids this run has taken, so that
/// two copies of one file stage once.
pub fn stage_file(
    path: &Path,
    root: &Path,
    config: &Config,
    restage: bool,
    progress: &ProgressBar,
    claimed: &Mutex<HashSet<String>>,
) -> Result<FileOutcome> {
    let name = source_name(path);
    // The bytes are read twice (the batch id goes into every row); instead
    // of hashing them twice, check the file did not change in between. A
    // small file is read once, into memory: the bytes staged are then the
    // bytes hashed.
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.len(), m.modified().ok()))
            .with_context(shown(p))
    };
    let before = stamp(path)?;
    let whole = match before.0 <= READ_ONCE {
        true => Some(std::fs::read(path).with_context(shown(path))?),
        false => None,
    };
    let batch_id = match &whole {
        Some(bytes) => cafe_etl::batch_id(bytes),
        None => {
            let mut hasher = BatchHasher::new();
            read_chunks(path, |c| {
                hasher.update(c);
                Ok(())
            })?;
            hasher.finish()
        }
    };
    let fresh = claimed
        .lock()
        .map_err(|_| anyhow!("a worker thread panicked"))?
        .insert(batch_id.clone());
    if !fresh {
        progress.inc(before.0);
        return Ok(FileOutcome::Duplicate(batch_id));
    }
    let marker = root.join(marker_key(&batch_id));
    if marker.exists() {
        if restage {
            // Incomplete from here until the new marker is in place.
            std::fs::remove_file(&marker).with_context(shown(&marker))?;
        } else {
            progress.inc(before.0);
            let want =
                cafe_etl::clean::customer_key_id(config.clean.customer_key_secret.as_deref());
            return Ok(match staged_key_id(&marker) {
                Some(staged) if staged != want => FileOutcome::OtherKey(batch_id, staged, want),
                _ => FileOutcome::Duplicate(batch_id),
            });
        }
    }
    // Dropped (so deleted) on any early return: nothing half-written stays.
    let mut temps = Vec::with_capacity(Table::ALL.len());
    for t in Table::ALL {
        temps.push(temp_in(&root.join(t.name()), &batch_id)?);
    }
    // Written through the temporary files' own handles (`&File` writes).
    let mut writers = temps
        .iter()
        .map(|f| BufWriter::with_capacity(1 << 16, f.as_file()))
        .collect::<Vec<_>>()
        .into_iter();
    let mut pipeline = Pipeline::transform(config.clone(), &name, &batch_id, move |_| {
        writers
            .next()
            .expect("one writer per table, opened in Table::ALL order")
    })
    .map_err(said)
    .context(name.clone())?;
    match &whole {
        Some(bytes) => {
            progress.inc(bytes.len() as u64);
            pipeline.push(bytes).map_err(said).context(name.clone())?;
        }
        None => {
            read_chunks(path, |c| {
                progress.inc(c.len() as u64);
                pipeline.push(c).map_err(said).context(name.clone())
            })?;
            if stamp(path)? != before {
                bail!("{name}: the file changed while it was read; nothing of it is staged");
            }
        }
    }
    let cafe_etl::Finished { report, tables, .. } =
        pipeline.finish().map_err(said).context(name.clone())?;
    if report.refused {
        return Ok(FileOutcome::Refused(report));
    }
    for (w, t) in tables.unwrap_or_default().into_iter().zip(Table::ALL) {
        w.into_inner()
            .map_err(|e| e.into_error())
            .with_context(shown(&root.join(t.name())))?;
    }
    // Into place, not yet durable: no marker names them until the barrier.
    for (temp, t) in temps.into_iter().zip(Table::ALL) {
        let key = root.join(t.key(&batch_id));
        temp.persist(&key)
            .map_err(|e| e.error)
            .with_context(shown(&key))?;
    }
    Ok(FileOutcome::Staged(report))
}

/// Makes every file written under `root` so far durable, with the renames
/// that put it in place: one `syncfs` of the staging root's file system on
/// Linux; elsewhere an fsync of each of `files` (those written since the
/// last barrier) and of their folders.
fn barrier(root: &Path, files: &[PathBuf]) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        let _ = files;
        let dir = File::open(root).with_context(shown(root))?;
        rustix::fs::syncfs(&dir)
            .map_err(std::io::Error::from)
            .with_context(shown(root))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let sync = |p: &Path| {
            File::open(p)
                .and_then(|f| f.sync_all())
                .with_context(shown(p))
        };
        let mut folders = std::collections::BTreeSet::new();
        for f in files {
            sync(f)?;
            folders.extend(f.parent());
        }
        for d in folders {
            // Not every system can open a folder to sync it (Windows).
            let _ = sync(d);
        }
        Ok(())
    }
}

/// Where a staged batch's marker goes.
fn marker_path(root: &Path, report: &Report) -> PathBuf {
    root.join(marker_key(&report.batch_id))
}

/// Ends a group: makes its tables durable, then writes each staged batch's
/// marker (atomically: a temporary file renamed into place).
pub fn commit(root: &Path, staged: &[&Report]) -> Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    let tables: Vec<PathBuf> = staged
        .iter()
        .flat_map(|r| Table::ALL.map(|t| root.join(t.key(&r.batch_id))))
        .collect();
    barrier(root, &tables)?;
    let batches = root.join("batches");
    // In parallel: creating a file is most of a marker's cost.
    staged.par_iter().try_for_each(|report| {
        let mut f = temp_in(&batches, &report.batch_id)?;
        f.write_all(report.to_json().as_bytes())
            .with_context(shown(f.path()))?;
        let marker = marker_path(root, report);
        f.persist(&marker)
            .map_err(|e| e.error)
            .with_context(shown(&marker))?;
        Ok(())
    })
}

/// The reports of the staged files among `done`.
fn staged_in(done: &[(PathBuf, Result<FileOutcome>)]) -> Vec<&Report> {
    done.iter()
        .filter_map(|(_, r)| match r {
            Ok(FileOutcome::Staged(report)) => Some(report),
            _ => None,
        })
        .collect()
}

/// Creates the layout's folders.
pub fn create_layout(root: &Path) -> Result<()> {
    for dir in Table::ALL.iter().map(|t| t.name()).chain(["batches"]) {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).with_context(shown(&d))?;
    }
    Ok(())
}

pub fn run(args: Args) -> Result<Outcome> {
    let mut config = Config::default();
    config.clean.customer_key_secret = secret_from_env(args.customer_key_secret_env.as_deref())?;
    config.stage.gzip_level = args.gzip_level;
    config.trust_batch_id = true;
    let files = input_files(&args.inputs)?;
    create_layout(&args.out)?;
    if let Some(jobs) = args.jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(jobs.max(1))
            .build_global()?;
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
    let claimed = Mutex::new(HashSet::new());
    let mut results: Vec<(PathBuf, Result<FileOutcome>)> = Vec::new();
    // The group staged last, whose markers are written (after its barrier)
    // while the next group is staged: the cores keep staging meanwhile.
    let mut previous: Vec<(PathBuf, Result<FileOutcome>)> = Vec::new();
    for group in files.chunks(args.sync_every as usize) {
        // Fewer files than cores (one big export): each table file gets a
        // compressor thread, so zlib runs beside the pipeline instead of on
        // its thread; the same bytes. Measured on the 100 MB export, 2 cores:
        // 1.63 s wall for 2.49 s CPU; 4.5 s against 8.8 s without, at load
        // 10 (README "Backfill"). With more files, a file per core is better.
        let mut config = config.clone();
        config.stage.compression_threads = group.len() < rayon::current_num_threads();
        let (done, committed) = rayon::join(
            || {
                group
                    .par_iter()
                    .map(|p| {
                        (
                            p.clone(),
                            stage_file(p, &args.out, &config, args.restage, &progress, &claimed),
                        )
                    })
                    .collect::<Vec<_>>()
            },
            || commit(&args.out, &staged_in(&previous)),
        );
        committed?;
        results.extend(std::mem::replace(&mut previous, done));
    }
    commit(&args.out, &staged_in(&previous))?;
    results.extend(previous);
    // The markers are durable before the run says it is done.
    let markers: Vec<PathBuf> = results
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(FileOutcome::Staged(report)) => Some(marker_path(&args.out, report)),
            _ => None,
        })
        .collect();
    if !markers.is_empty() {
        barrier(&args.out, &markers)?;
    }
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
                eprintln!("cafe-etl: {e:#}");
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
