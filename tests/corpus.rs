//! Every file of the shared real corpus (`../shared/data/real`) goes through
//! the pipeline with zero rejects, its row count matching the file, and no
//! personal data in any output. Says so plainly when the corpus is absent.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;

#[test]
fn every_real_file_transforms_with_zero_rejects_and_matching_counts() {
    let Some(root) = shared_corpus() else { return };
    let files = csv_files(&root);
    assert!(files.len() >= 160, "the corpus holds {} files", files.len());
    let mut total = 0;
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let staged = cafe_etl::transform(&bytes, &name, &cafe_etl::Config::default()).unwrap();
        let r = &staged.report;
        // Independent count: non-empty lines whose first field starts with a
        // digit (header lines start with a letter; no real basket spans lines).
        let data_lines = bytes
            .split(|&b| b == b'\n')
            .filter(|l| {
                l.iter()
                    .find(|b| !b" \r\xEF\xBB\xBF".contains(b))
                    .is_some_and(|b| b.is_ascii_digit())
            })
            .count() as u64;
        assert!(!r.refused, "{name}");
        assert_eq!(r.rows_rejected, 0, "{name}: {:?}", r.issues.first());
        assert_eq!(r.rows_read, data_lines, "{name}");
        assert_eq!(r.rows_staged, data_lines, "{name}");
        assert_eq!(r.warnings, 0, "{name}: {:?}", r.issues.first());
        let (names, cards) = personal_data(&bytes);
        let mut out = r.to_json();
        for (p, b) in &staged.files {
            if p.ends_with(".gz") {
                out.push_str(&gunzip(b));
            }
        }
        assert_no_personal_data(&out, &names, &cards, &name);
        total += r.rows_staged;
    }
    eprintln!("corpus: {total} rows staged, none rejected");
}
