//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod rows;

use std::io::Read;
use std::path::{Path, PathBuf};

/// `tests/data/<rel>`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Bytes of `tests/data/<rel>`.
pub fn read_data(rel: &str) -> Vec<u8> {
    std::fs::read(data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The shared corpus, `../shared/data/real`, when present.
pub fn shared_corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("NOTE: ../shared/data/real is absent: the whole-corpus test is skipped (the fixtures in tests/data/real still run)");
        None
    }
}

/// Every `.csv` below a folder, sorted.
pub fn csv_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = files_below(dir);
    out.retain(|p| p.extension().is_some_and(|x| x == "csv"));
    out
}

/// Decompresses a staged table file, which must be one gzip member (the
/// safest form for any reader) of UTF-8.
pub fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    let mut d = flate2::read::GzDecoder::new(bytes);
    d.read_to_string(&mut s).expect("valid gzip of UTF-8");
    assert!(d.into_inner().is_empty(), "bytes after the gzip member");
    s
}

/// Parses CSV text (no header) with the independent `csv` crate.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("RFC 4180").iter().map(str::to_owned).collect())
        .collect()
}

/// The staged rows of one table of an in-memory batch.
pub fn table(staged: &cafe_etl::StagedBatch, t: cafe_etl::Table) -> Vec<Vec<String>> {
    let (path, bytes) = &staged.files[t as usize];
    assert!(path.starts_with(t.name()));
    parse_csv(&gunzip(bytes))
}

/// The personal data of an export, read independently of the crate: the
/// customer names (third field) and the card numbers (digit runs of 12 or
/// more in the seventh field; legacy cards are `"network,PAN"`).
pub fn personal_data(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut names = Vec::new();
    let mut cards = Vec::new();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    for rec in rdr.records().flatten() {
        if rec.len() < 7
            || rec
                .get(0)
                .is_none_or(|t| !t.trim().starts_with(|c: char| c.is_ascii_digit()))
        {
            continue;
        }
        let name = rec[2].trim();
        if name.len() >= 3 {
            names.push(name.to_string());
        }
        let digits: String = rec[6].chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.len() >= 12 {
            cards.push(digits);
        }
        // Spreadsheet-damaged cards: `5.49417E+15` keeps its mantissa.
        if rec[6].contains('E') {
            cards.push(rec[6].trim().to_string());
        }
    }
    names.sort();
    names.dedup();
    cards.sort();
    cards.dedup();
    (names, cards)
}

/// Asserts that no name or card number occurs in `text` (one pass of an
/// Aho-Corasick automaton: the whole corpus has thousands of names).
pub fn assert_no_personal_data(text: &str, names: &[String], cards: &[String], what: &str) {
    let needles: Vec<&str> = names
        .iter()
        .chain(cards)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if needles.is_empty() {
        return;
    }
    let ac = aho_corasick::AhoCorasick::new(&needles).expect("valid patterns");
    if let Some(m) = ac.find(text) {
        let kind = if m.pattern().as_usize() < names.len() {
            "a customer name"
        } else {
            "a card number"
        };
        panic!("{what} contains {kind}");
    }
}

/// Checks a whole file in memory with default options.
pub fn check(bytes: &[u8], source: &str) -> cafe_etl::Report {
    cafe_etl::check(bytes, source, &cafe_etl::Config::default())
}

/// (line, code) of every issue.
pub fn issue_codes(r: &cafe_etl::Report) -> Vec<(u64, &'static str)> {
    r.issues.iter().map(|i| (i.line, i.code.as_str())).collect()
}

/// Every file below a folder, sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
