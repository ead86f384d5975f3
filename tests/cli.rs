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
        out.contains("bad.csv: current, 1 row read, 0 would be staged, 1 rejected, 0 warnings"),
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

#[test]
fn check_says_what_would_be_staged_with_plurals() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("two.csv");
    std::fs::write(
        &f,
        "25/08/2021 09:00,Leeds,Ann Example,Large Latte - 2.45,2.45,CASH,\n\
         25/08/2021 09:05,Leeds,Bo Example,Large Latte - 2.45,2.45,CARD,4111111111111111\n\
         25/08/2021 09:06\n",
    )
    .unwrap();
    let (code, out, _) = run(&["check", f.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("two.csv: current, 3 rows read, 2 would be staged, 1 rejected, 0 warnings"),
        "{out}"
    );
    assert!(out.contains("found 1 field, expected 7"), "{out}");
    // `check` stages nothing, and never says it did.
    assert!(
        !out.replace("would be staged", "").contains(" staged,"),
        "{out}"
    );
}

#[test]
fn a_text_file_is_refused_as_not_csv() {
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let (code, out, err) = run(&["check", readme.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        out.starts_with("README.md: refused [not_csv]: README.md looks like Markdown text ("),
        "{out}"
    );
    assert_eq!(
        out.lines().count(),
        1,
        "one line, no table of field_count issues: {out}"
    );
    assert!(!out.contains("field_count"), "{out}");
}

#[test]
fn check_json_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&[
        "generate",
        "--stores",
        "12",
        "--days",
        "2",
        "--seed",
        "3",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    // More than a pipe holds (64 KiB), so the writer does meet the closed end.
    let (_, full, _) = run(&["check", "--json", dir.path().to_str().unwrap()]);
    assert!(full.len() > 1 << 17, "{} bytes", full.len());
    {
        let args = ["check", "--json"];
        // What `cafe-etl check --json DIR | head -c 100` does: the reader
        // goes away after the first bytes, long before the output ends.
        let mut child = Command::new(env!("CARGO_BIN_EXE_cafe-etl"))
            .args(args)
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 100];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err, "", "no \"Broken pipe\" message");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn transform_says_when_a_batch_was_staged_with_another_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("staging");
    let good = data("real/chesterfield_25-08-2021_09-00-00.csv");
    let g = good.to_str().unwrap();
    let o = out.to_str().unwrap();
    let stage = |secret: Option<&str>, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cafe-etl"));
        c.args(["transform", "--out", o]).args(extra);
        if let Some(s) = secret {
            c.env("KEY_SECRET", s)
                .args(["--customer-key-secret-env", "KEY_SECRET"]);
        }
        let r = c.arg(g).output().unwrap();
        (
            r.status.code(),
            String::from_utf8_lossy(&r.stdout).into_owned(),
        )
    };
    let marker_key_id = || {
        let dir = out.join("batches");
        let f = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let r: cafe_etl::Report = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        r.customer_key_id
    };
    let worker = cafe_etl::clean::customer_key_id(Some("the worker's secret"));
    assert_eq!(stage(Some("the worker's secret"), &[]).0, Some(0));
    assert_eq!(marker_key_id(), worker);
    // The same secret: a plain duplicate.
    let (code, text) = stage(Some("the worker's secret"), &[]);
    assert_eq!(code, Some(0));
    assert!(text.contains("is already staged, skipped"), "{text}");
    // No secret: said so, with the way out.
    let (code, text) = stage(None, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "is already staged with the secret of key id {worker}, not no customer-key secret as asked"
        )) && text.contains("--restage"),
        "{text}"
    );
    assert_eq!(
        marker_key_id(),
        worker,
        "nothing rewritten without --restage"
    );
    let (code, text) = stage(None, &["--restage"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("staged batch"), "{text}");
    assert_eq!(marker_key_id(), "none");
}
