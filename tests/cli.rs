//! The command line: exit codes, messages naming the file, generate.
// Native only: processes, temp files and proptest do not run in wasm32,
// where `wasm-pack test` compiles every test file (this one to nothing).
#![cfg(not(target_arch = "wasm32"))]

mod common;
use common::*;
use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_cafe-etl"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = data("real/chesterfield_25-08-2021_09-00-00.csv");
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.54,CASH,\n",
    )
    .unwrap();
    let binary = dir.path().join("photo.csv");
    std::fs::write(&binary, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0").unwrap();
    let g = good.to_str().unwrap();
    assert_eq!(run(&["check", g]).0, Some(0));
    let (code, out, _) = run(&["check", g, bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("bad.csv: current, 1 rows read, 0 staged, 1 rejected"),
        "{out}"
    );
    assert!(out.contains("total_mismatch"));
    let (code, out, _) = run(&["check", binary.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("photo.csv: refused [not_csv]: photo.csv holds binary data"),
        "{out}"
    );
    let (code, _, err) = run(&["check", "/no/such/file.csv"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/no/such/file.csv"), "{err}");
    assert_eq!(run(&["check"]).0, Some(2), "usage error");
    assert_eq!(run(&["transform", g]).0, Some(2), "--out missing");
    let (code, _, err) = run(&[
        "transform",
        "--out",
        dir.path().join("o").to_str().unwrap(),
        "--customer-key-secret-env",
        "NO_SUCH_VAR_XYZ",
        g,
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("NO_SUCH_VAR_XYZ is not set"), "{err}");
}

#[test]
fn check_json_gives_the_reports() {
    let fixtures: Vec<String> = std::fs::read_dir(data("real"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["check", "--json"];
    args.extend(fixtures.iter().map(String::as_str));
    let (code, out, _) = run(&args);
    assert_eq!(code, Some(0));
    let reports: Vec<cafe_etl::Report> = serde_json::from_str(&out).unwrap();
    assert_eq!(reports.len(), 7);
    assert!(reports
        .iter()
        .all(|r| r.rows_rejected == 0 && r.batch_id.len() == 32));
}

#[test]
fn generate_writes_valid_deterministic_exports() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for d in [&a, &b] {
        let (code, _, err) = run(&[
            "generate",
            "--stores",
            "2",
            "--days",
            "3",
            "--seed",
            "9",
            "--out",
            d.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{err}");
    }
    let files = csv_files(&a);
    assert_eq!(files.len(), 6);
    for f in &files {
        let other = b.join(f.file_name().unwrap());
        assert_eq!(std::fs::read(f).unwrap(), std::fs::read(other).unwrap());
    }
    let (code, out, _) = run(&["check", a.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, _) = run(&[
        "generate",
        "--stores",
        "1",
        "--days",
        "1",
        "--single",
        "one.csv",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    assert!(a.join("one.csv").metadata().unwrap().len() > 10_000);
}
