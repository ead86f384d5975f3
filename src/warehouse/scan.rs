//! The staging root on disk: which batches are complete, and the
//! manifests written beside them. Native only (it reads and writes files);
//! everything it finds becomes [`Batch`]es for the pure [`super::plan`].

use super::plan::{read_marker, Batch, Plan, S3Target};
use super::schema::LOADED;
use super::{Error, Phase};
use crate::{is_batch_id, marker_key};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

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
        let report = match read_marker(&text) {
            Ok(r) => r,
            Err(problem) => {
                skip(key, problem);
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
        // What `--since` compares with; the core keeps it as a number (it
        // reads no clock).
        let staged_at_ms = entry
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| io(&path, e))?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
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
            staged_at_ms,
            sizes: Some(sizes),
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

impl Plan {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::plan::tests::{LEEDS, YORK};
    use crate::Table;
    use std::io::Write;

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
        assert_eq!(scan.complete[0].sizes.unwrap()[0], gz);
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
}
