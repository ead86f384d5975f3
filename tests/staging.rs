//! The staging layout: paths, gzip CSV that an independent reader parses,
//! columns in contract order, the marker last, the CLI and the library
//! writing the same bytes.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use cafe_etl::{Config, Report, Table};
use common::*;
use std::process::Command;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cafe-etl"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_table_has_its_columns_and_valid_values() {
    let bytes = read_data("real/isle-of-wight_2020-10-01.csv");
    let staged =
        cafe_etl::transform(&bytes, "isle-of-wight_2020-10-01.csv", &Config::default()).unwrap();
    let id = &staged.report.batch_id;
    assert_eq!(id, &cafe_etl::batch_id(&bytes));
    let paths: Vec<_> = staged.files.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        paths,
        [
            "stores",
            "products",
            "transactions",
            "basket_items",
            "rejects"
        ]
        .iter()
        .map(|t| format!("{t}/{id}.csv.gz"))
        .chain([format!("batches/{id}.json")])
        .collect::<Vec<_>>()
    );
    for t in Table::ALL {
        let rows = table(&staged, t);
        for r in &rows {
            assert_eq!(r.len(), t.columns().len(), "{t:?}");
        }
    }
    let tx = table(&staged, Table::Transactions);
    let items = table(&staged, Table::BasketItems);
    assert_eq!(tx.len(), 480);
    assert_eq!(staged.report.tables.transactions, 480);
    assert_eq!(staged.report.tables.basket_items, items.len() as u64);
    let mut total_from_items = 0i64;
    for r in &items {
        let q: i64 = r[2].parse().unwrap();
        let unit = pence(&r[3]);
        assert_eq!(pence(&r[4]), unit * q, "line_total = quantity x unit_price");
        total_from_items += pence(&r[4]);
    }
    let total: i64 = tx.iter().map(|r| pence(&r[4])).sum();
    assert_eq!(total, total_from_items);
    assert_eq!(total, staged.report.summary.revenue_pence);
    for r in &tx {
        assert!(r[2].len() == 19 && &r[2][4..5] == "-" && &r[2][13..14] == ":");
        assert!(r[3] == "CASH" || r[3] == "CARD");
        assert!(
            r[4].split('.').nth(1).is_some_and(|d| d.len() == 2),
            "2 decimals: {}",
            r[4]
        );
        assert_eq!(&r[7], id);
    }
    let item_count: i64 = tx.iter().map(|r| r[5].parse::<i64>().unwrap()).sum();
    assert_eq!(item_count as u64, staged.report.summary.items);
    let report: Report = serde_json::from_slice(&staged.files[5].1).unwrap();
    assert_eq!(report, staged.report);
}

fn pence(s: &str) -> i64 {
    let (a, b) = s.split_once('.').unwrap();
    a.parse::<i64>().unwrap() * 100 + b.parse::<i64>().unwrap()
}

#[test]
fn the_cli_writes_what_the_library_writes_and_skips_staged_batches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stage");
    let input = data("real/2021-02-23-isle-of-wight.csv");
    let o = cli(&[
        "transform",
        "--out",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bytes = std::fs::read(&input).unwrap();
    let staged =
        cafe_etl::transform(&bytes, "2021-02-23-isle-of-wight.csv", &Config::default()).unwrap();
    for (path, want) in &staged.files {
        let got = std::fs::read(out.join(path)).unwrap();
        assert!(
            got == *want,
            "{path} differs between the CLI and the library"
        );
    }
    // No temporary file is left behind.
    for t in Table::ALL {
        let names: Vec<_> = std::fs::read_dir(out.join(t.name()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
    let again = cli(&[
        "transform",
        "--out",
        out.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already staged"));
    assert_eq!(again.status.code(), Some(0));
}

#[test]
fn a_refused_file_stages_nothing_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let good = data("real/chesterfield_25-08-2021_09-00-00.csv");
    let out = dir.path().join("stage");
    let o = cli(&[
        "transform",
        "--out",
        out.to_str().unwrap(),
        empty.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("empty.csv: refused, nothing staged: [empty_file] empty.csv is empty"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_dir(out.join("batches")).unwrap().count(), 1);
}

/// Every real export's table files are one gzip member that flate2 and the
/// `gzip` program (an independent decoder, C zlib) both read, and the
/// levels at either end, store (0) and best (9), stage the same text: the
/// level changes the bytes, never the rows (checked on tests/data/real, as
/// level 9 is slow in a debug build).
#[test]
fn every_level_stages_the_same_text_and_gzip_reads_it() {
    let own = csv_files(&data("real"));
    let mut files = own.clone();
    match shared_corpus() {
        Some(dir) => files.extend(csv_files(&dir)),
        None => eprintln!("../shared/data/real is absent: checking tests/data/real only"),
    }
    let at = |level| Config {
        stage: cafe_etl::stage::Config {
            gzip_level: Some(level),
            ..Default::default()
        },
        ..Config::default()
    };
    let have_gzip = Command::new("gzip").arg("--version").output().is_ok();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let default = cafe_etl::transform(&bytes, "f.csv", &Config::default()).unwrap();
        let levels: Vec<_> = match own.contains(file) {
            true => [0, 9]
                .iter()
                .map(|&l| cafe_etl::transform(&bytes, "f.csv", &at(l)).unwrap())
                .collect(),
            false => Vec::new(),
        };
        for (i, (t, gz)) in default.files.iter().enumerate() {
            if !t.ends_with(".csv.gz") {
                continue;
            }
            let text = gunzip(gz);
            for other in &levels {
                assert_eq!(other.report, default.report);
                assert_eq!(gunzip(&other.files[i].1), text, "{} {t}", file.display());
            }
            if have_gzip {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("t.csv.gz");
                std::fs::write(&path, gz).unwrap();
                let out = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
                assert!(
                    out.status.success(),
                    "gzip -d failed on {} {t}",
                    file.display()
                );
                assert!(out.stdout == text.as_bytes(), "{} {t}", file.display());
            }
        }
    }
}

#[test]
fn streaming_in_small_chunks_writes_the_same_bytes() {
    let bytes = read_data("real/excel_spaced-header.csv");
    let id = cafe_etl::batch_id(&bytes);
    let whole = cafe_etl::transform(&bytes, "s.csv", &Config::default()).unwrap();
    for chunk in [1, 7, 4096] {
        let mut p =
            cafe_etl::Pipeline::transform(Config::default(), "s.csv", &id, |_| Vec::new()).unwrap();
        for c in bytes.chunks(chunk) {
            p.push(c).unwrap();
        }
        let f = p.finish().unwrap();
        assert_eq!(f.report, whole.report);
        for (i, t) in f.tables.unwrap().into_iter().enumerate() {
            assert!(t == whole.files[i].1, "chunk {chunk}, table {i}");
        }
    }
}

#[test]
fn past_the_cache_caps_rows_stay_right_and_memory_bounded() {
    // 60 distinct long product names (near the 200-byte limit) against caps
    // of 10 products / 4 KiB.
    let mut input = String::new();
    for i in 0..60 {
        let name = format!("Latte {i} {}", "x".repeat(185));
        input.push_str(&format!("25/08/2021 09:{:02},Leeds,Ann Example,\"Large {name} - 2.45, Large {name} - 2.45\",4.9,CASH,\n", i % 60));
    }
    let mut small = Config::default();
    small.transform.max_products = 10;
    small.transform.max_cache_bytes = 4096;
    let capped = cafe_etl::transform(input.as_bytes(), "leeds.csv", &small).unwrap();
    let full = cafe_etl::transform(input.as_bytes(), "leeds.csv", &Config::default()).unwrap();
    assert_eq!(capped.report.rows_staged, 60);
    // Transactions and basket lines are the same; products may repeat an id
    // (the loader keeps one row per id), but every product is there.
    for t in [Table::Transactions, Table::BasketItems, Table::Stores] {
        assert_eq!(table(&capped, t), table(&full, t), "{t:?}");
    }
    let ids = |s: &cafe_etl::StagedBatch| {
        let mut v: Vec<String> = table(s, Table::Products)
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(ids(&capped), ids(&full));
    assert_eq!(ids(&full).len(), 60);
    assert!(capped.report.summary.top_products.len() <= 10);
}

#[test]
fn check_counts_what_transform_writes() {
    for file in [
        "real/isle-of-wight_2020-10-01.csv",
        "real/chesterfield_25-08-2021_09-00-00.csv",
    ] {
        let bytes = read_data(file);
        let checked = check(&bytes, file);
        let staged = cafe_etl::transform(&bytes, file, &Config::default()).unwrap();
        assert_eq!(
            checked, staged.report,
            "{file}: check and transform report alike"
        );
        assert_eq!(
            checked.tables.basket_items,
            table(&staged, Table::BasketItems).len() as u64
        );
        let quick = Config {
            skip_batch_id: true,
            ..Config::default()
        };
        let unhashed = cafe_etl::check(&bytes, file, &quick);
        assert_eq!(unhashed.batch_id, "");
        assert_eq!(unhashed.tables, checked.tables);
    }
}

/// Every marker under `root` names tables that are there and whole: each
/// decodes as one complete gzip member with the rows its report counts.
/// Gives the number of markers.
fn markers_name_whole_tables(root: &std::path::Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(root.join("batches")).unwrap() {
        let path = entry.unwrap().path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if id.starts_with('.') {
            continue; // a marker not yet renamed into place names nothing
        }
        let report: Report = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: partial marker: {e}", path.display()));
        let counts = &report.tables;
        for (t, want) in Table::ALL.into_iter().zip([
            counts.stores,
            counts.products,
            counts.transactions,
            counts.basket_items,
            counts.rejects,
        ]) {
            let file = root.join(t.key(id));
            let gz = std::fs::read(&file)
                .unwrap_or_else(|e| panic!("marker {id} names {}: {e}", file.display()));
            assert_eq!(
                gunzip(&gz).lines().count() as u64,
                want,
                "{}",
                file.display()
            );
        }
        n += 1;
    }
    n
}

/// A backfill killed at any moment leaves no marker naming a missing or
/// partial table (markers are written per group, after the group's tables
/// are durable), and running it again completes it.
#[test]
fn a_backfill_killed_mid_run_leaves_no_marker_of_a_partial_table() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("exports");
    let o = cli(&[
        "generate",
        "--stores",
        "6",
        "--days",
        "20",
        "--transactions-per-day",
        "80",
        "--out",
        inputs.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let files = std::fs::read_dir(&inputs).unwrap().count();
    assert_eq!(files, 120);
    let mut killed_mid_run = 0;
    for (round, wait_for) in [1usize, 40].into_iter().enumerate() {
        let root = dir.path().join(format!("stage-{round}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cafe-etl"))
            .args(["transform", "--sync-every", "4", "--out"])
            .arg(&root)
            .arg(&inputs)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it once it has written `wait_for` markers (or has finished).
        let markers = || {
            std::fs::read_dir(root.join("batches"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        while markers() < wait_for && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        let complete = markers_name_whole_tables(&root);
        if !finished && complete < files {
            killed_mid_run += 1;
        }
        // Running it again stages what the killed run had not marked.
        let again = cli(&[
            "transform",
            "--out",
            root.to_str().unwrap(),
            inputs.to_str().unwrap(),
        ]);
        assert_eq!(
            again.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(markers_name_whole_tables(&root), files);
    }
    assert!(
        killed_mid_run > 0,
        "every run finished before it could be killed"
    );
}

/// An export where every table of the layout fills several of the writer's
/// 64 KiB buffers: 6,000 stores, 8,000 products, every third row rejected
/// with its own message.
fn busy_export() -> Vec<u8> {
    let mut csv = String::new();
    for i in 0..12_000u32 {
        let (h, m) = (8 + i / 60 % 10, i % 60);
        let total = if i % 3 == 2 {
            format!("{}.{:02}", 9 + i % 50, i % 100)
        } else {
            "3.65".to_string()
        };
        csv.push_str(&format!(
            "01/01/2024 {h:02}:{m:02},Branch {s:04},Ann Example,\"Large Blend {p:04} - 2.45, Regular Tea - 1.20\",{total},CARD,4111111111111111\n",
            s = i % 6_000,
            p = i % 8_000,
        ));
    }
    csv.into_bytes()
}

/// The table files compressed on threads of their own (natively, one big
/// file: `Config::stage.compression_threads`) are the same bytes as
/// compressed on the pipeline's thread, on the real exports and on a file
/// where every table is busy; so are the reports.
#[test]
fn compression_threads_stage_the_same_bytes() {
    let mut inputs: Vec<(String, Vec<u8>)> = csv_files(&data("real"))
        .into_iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&f).unwrap())
        })
        .collect();
    inputs.push(("leeds_01-01-2024_09-00-00.csv".into(), busy_export()));
    for (name, bytes) in &inputs {
        let staged = |threads: bool| {
            let mut config = Config::default();
            config.stage.compression_threads = threads;
            let id = cafe_etl::batch_id(bytes);
            let mut p = cafe_etl::Pipeline::transform(config, name, &id, |_| Vec::new()).unwrap();
            // Chunks of odd sizes, as a file read would give.
            for chunk in bytes.chunks(77_777) {
                p.push(chunk).unwrap();
            }
            p.finish().unwrap()
        };
        let (one, many) = (staged(false), staged(true));
        assert_eq!(one.report, many.report, "{name}");
        let (one, many) = (one.tables.unwrap(), many.tables.unwrap());
        for (t, (a, b)) in Table::ALL.iter().zip(one.iter().zip(&many)) {
            assert!(a == b, "{name}: {t:?} differs with compression threads");
        }
    }
    // The busy file did fill every table's buffer more than twice, so each
    // table had its thread.
    let (name, bytes) = inputs.last().unwrap();
    let staged = cafe_etl::transform(bytes, name, &Config::default()).unwrap();
    for t in Table::ALL {
        let text = gunzip(&staged.files[t as usize].1);
        assert!(text.len() > 2 * 65_536, "{t:?}: {} bytes", text.len());
    }
}
