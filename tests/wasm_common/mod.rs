//! Checks of the WebAssembly binding (`cafe_etl::wasm`, what `pkg/` exports)
//! shared by the Node suite (tests/wasm_node.rs) and the browser suite
//! (tests/wasm_browser.rs). They call the binding the way JavaScript does:
//! options and results are JS values, errors are JS `Error`s.

#![allow(dead_code)]

#[path = "../common/rows.rs"]
mod rows;
mod stream;
mod warehouse;

use cafe_etl::wasm;
use js_sys::{Object, Reflect, Uint8Array};
use serde_json::{json, Value};
use std::io::Read;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

/// A real export with its native CLI output (tests/data/real/native/, made
/// by its `regenerate` script).
pub struct Real {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub report: &'static str,
    pub tables: [(&'static str, &'static str); 5],
}

macro_rules! real {
    ($name:literal, $input:literal, $fixture:literal) => {
        Real {
            name: $name,
            bytes: include_bytes!($input),
            report: include_str!(concat!("../data/real/native/", $fixture, "/report.json")),
            tables: [
                (
                    "stores",
                    include_str!(concat!("../data/real/native/", $fixture, "/stores.csv")),
                ),
                (
                    "products",
                    include_str!(concat!("../data/real/native/", $fixture, "/products.csv")),
                ),
                (
                    "transactions",
                    include_str!(concat!(
                        "../data/real/native/",
                        $fixture,
                        "/transactions.csv"
                    )),
                ),
                (
                    "basket_items",
                    include_str!(concat!(
                        "../data/real/native/",
                        $fixture,
                        "/basket_items.csv"
                    )),
                ),
                (
                    "rejects",
                    include_str!(concat!("../data/real/native/", $fixture, "/rejects.csv")),
                ),
            ],
        }
    };
}

pub fn real_files() -> Vec<Real> {
    vec![
        real!(
            "chesterfield_25-08-2021_09-00-00.csv",
            "../data/real/chesterfield_25-08-2021_09-00-00.csv",
            "chesterfield_25-08-2021_09-00-00"
        ),
        real!(
            "isle-of-wight_2020-10-01.csv",
            "../data/real/isle-of-wight_2020-10-01.csv",
            "isle-of-wight_2020-10-01"
        ),
        real!(
            "excel_leeds_09-05-2023_with-header.csv",
            "../data/real/excel_leeds_09-05-2023_with-header.csv",
            "excel_leeds_09-05-2023_with-header"
        ),
        real!(
            "chesterfield_26-08-2021_09-00-00.csv",
            "../data/e2e/chesterfield_26-08-2021_09-00-00.csv",
            "bad-rows"
        ),
    ]
}

/// Where two JSON values first differ (a path and both sides, shortened),
/// so a failure does not print two whole reports.
pub fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if let Some(d) = first_difference(va, vb, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(va, vb, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => {
            let short = |v: &Value| v.to_string().chars().take(300).collect::<String>();
            Some(format!("{path}: {} != {}", short(a), short(b)))
        }
    }
}

#[track_caller]
pub fn assert_same(a: &Value, b: &Value, what: &str) {
    if let Some(d) = first_difference(a, b, "") {
        panic!("{what}: {d}");
    }
}

/// Where two texts first differ, by line.
#[track_caller]
pub fn assert_same_text(a: &str, b: &str, what: &str) {
    if a != b {
        let line = a
            .lines()
            .zip(b.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(a.lines().count().min(b.lines().count()));
        panic!(
            "{what}: differs at line {}: {:?} != {:?} ({} and {} lines)",
            line + 1,
            a.lines().nth(line),
            b.lines().nth(line),
            a.lines().count(),
            b.lines().count()
        );
    }
}

/// A JS options object from JSON (plain objects, not Maps).
pub fn options(v: Value) -> JsValue {
    let s = serde_wasm_bindgen::Serializer::json_compatible();
    serde::Serialize::serialize(&v, &s).unwrap()
}

/// A JS value (report, result) as JSON, to compare.
pub fn to_json(v: &JsValue) -> Value {
    serde_wasm_bindgen::from_value(v.clone()).unwrap()
}

pub fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap()
}

/// A `StagedFiles` object as (path, bytes), in the object's key order.
pub fn entries(files: &JsValue) -> Vec<(String, Vec<u8>)> {
    Object::keys(files.unchecked_ref::<Object>())
        .iter()
        .map(|k| {
            let key = k.as_string().unwrap();
            let bytes = get(files, &key).dyn_into::<Uint8Array>().unwrap().to_vec();
            (key, bytes)
        })
        .collect()
}

/// `files` of a TransformResult.
pub fn files(result: &JsValue) -> Vec<(String, Vec<u8>)> {
    entries(&get(result, "files"))
}

pub fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// The message of a binding error, checking that JavaScript sees an `Error`.
pub fn js_error_message(err: impl Into<JsValue>) -> String {
    let value: JsValue = err.into();
    assert!(
        value.is_instance_of::<js_sys::Error>(),
        "a JS Error, got {value:?}"
    );
    let e: js_sys::Error = value.unchecked_into();
    assert_eq!(String::from(e.name()), "Error");
    String::from(e.message())
}

/// The `code` and message of a binding error (a `CodedError`).
pub fn js_error_code(err: impl Into<JsValue>) -> (String, String) {
    let value: JsValue = err.into();
    let code = get(&value, "code")
        .as_string()
        .unwrap_or_else(|| panic!("an Error with a string code, got {value:?}"));
    (code, js_error_message(value))
}

/// Runs a whole input through a streaming Pipeline, fed in the given pieces;
/// returns the TransformResult as (report JSON, files with drained parts
/// concatenated).
pub fn pipeline(
    opts: Value,
    pieces: &[&[u8]],
    drain_every: usize,
) -> (Value, Vec<(String, Vec<u8>)>) {
    let mut p = wasm::Pipeline::new(options(opts)).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |parts: Vec<(String, Vec<u8>)>| {
        for (k, v) in parts {
            match out.iter_mut().find(|(key, _)| *key == k) {
                Some((_, buf)) => buf.extend_from_slice(&v),
                None => out.push((k, v)),
            }
        }
    };
    for (i, piece) in pieces.iter().enumerate() {
        p.push(piece).unwrap();
        if drain_every > 0 && i % drain_every == drain_every - 1 {
            add(entries(&p.drain().unwrap()));
        }
    }
    let result = p.finish().unwrap();
    add(files(&result));
    (to_json(&get(&result, "report")), out)
}

/// A small current-format export built to break naive chunking: a UTF-8 BOM,
/// CRLF line ends, 2-, 3- and 4-byte UTF-8 characters (names, a flavour), a
/// Windows-1252 byte (read as such, with a warning), quoted baskets, a bad
/// row and no final newline.
pub fn tricky_export() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice("\u{FEFF}".as_bytes());
    v.extend_from_slice(
        "25/08/2021 09:00,Chesterfield,Zoë Exämple,\"Regular Flavoured latte - Crème brûlée - 2.55, Large Latte - 2.45\",5,CARD,4111111111111111\r\n"
            .as_bytes(),
    );
    v.extend_from_slice(
        "25/08/2021 09:05,Chesterfield,Ann Example 😀,Large Latte - 2.45,2.45,CASH,\r\n".as_bytes(),
    );
    v.extend_from_slice(
        b"25/08/2021 09:07,Chesterfield,Jos\xe9 Example,Large Latte - 2.45,2.45,CASH,\r\n",
    );
    v.extend_from_slice("25/08/2021 09:09,Chesterfield,Bo Example,Large Latte - 2.45,2.54,CARD,5555555555554444\r\n".as_bytes());
    v.extend_from_slice("25/08/2021 09:12,Chesterfield,Cy Example,\"Large Latte - 2.45, Regular Latte - 2.15\",4.6,CASH,".as_bytes());
    v
}

#[wasm_bindgen_test]
fn every_split_point_gives_the_same_report_and_files() {
    let input = tricky_export();
    let source = "chesterfield_25-08-2021_09-00-00.csv";
    let whole = wasm::check(&input, options(json!({ "source": source }))).unwrap();
    let expected = to_json(&whole);
    // The input does exercise what it is meant to.
    assert_eq!(expected["rows_read"], 5);
    assert_eq!(expected["rows_rejected"], 1);
    assert_eq!(expected["issue_counts"]["encoding"], 1);
    assert!(expected["preview"].to_string().contains("Crème brûlée"));
    assert!(input.windows(2).filter(|w| w == b"\r\n").count() >= 4);

    let staged = wasm::transform(&input, options(json!({ "source": source }))).unwrap();
    let staged_report = to_json(&get(&staged, "report"));
    let staged_files = files(&staged);
    let id = staged_report["batch_id"].as_str().unwrap().to_string();

    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        let (report, _) = pipeline(json!({ "source": source }), &[a, b], 0);
        assert_same(&report, &expected, &format!("check, split at byte {i}"));
        let (report, out) = pipeline(json!({ "source": source, "batchId": id }), &[a, b], 1);
        assert_same(
            &report,
            &staged_report,
            &format!("stage, split at byte {i}"),
        );
        assert_eq!(out.len(), staged_files.len());
        for ((k1, v1), (k2, v2)) in out.iter().zip(&staged_files) {
            assert_eq!(k1, k2);
            if k1.ends_with(".gz") {
                assert_eq!(gunzip(v1), gunzip(v2), "{k1}, split at byte {i}");
            } else {
                assert_eq!(v1, v2, "{k1}, split at byte {i}");
            }
        }
    }
    // One byte at a time.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(pipeline(json!({ "source": source }), &bytes, 0).0, expected);
    // A CRLF split between two chunks at every line end, then three-way splits
    // around each multi-byte character.
    for (i, w) in input.windows(2).enumerate() {
        if w == b"\r\n" || (w[0] >= 0xC0 && w[1] & 0xC0 == 0x80) {
            let pieces = [
                &input[..i],
                &input[i..i + 1],
                &input[i + 1..i + 2],
                &input[i + 2..],
            ];
            assert_eq!(
                pipeline(json!({ "source": source }), &pieces, 0).0,
                expected,
                "pieces around byte {i}"
            );
        }
    }
}

#[wasm_bindgen_test]
fn real_exports_check_and_transform_as_the_native_cli() {
    for real in real_files() {
        let native: Value = serde_json::from_str(real.report).unwrap();
        let opts = || options(json!({ "source": real.name }));

        // `check` writes no table, so its report does not count basket items
        // (the tables' other counts it does); everything else is the same.
        let report = to_json(&wasm::check(real.bytes, opts()).unwrap());
        let mut without_tables = native.clone();
        without_tables["tables"]["basket_items"] = report["tables"]["basket_items"].clone();
        assert_same(
            &report,
            &without_tables,
            &format!("{}: check report", real.name),
        );
        assert!(report["rows_read"].as_u64().unwrap() > 0);
        assert_eq!(
            report["rows_read"].as_u64().unwrap(),
            report["rows_staged"].as_u64().unwrap() + report["rows_rejected"].as_u64().unwrap()
        );

        let result = wasm::transform(real.bytes, opts()).unwrap();
        assert_same(
            &to_json(&get(&result, "report")),
            &native,
            &format!("{}: transform report", real.name),
        );
        let files = files(&result);
        let id = native["batch_id"].as_str().unwrap();
        let paths: Vec<&str> = files.iter().map(|(k, _)| k.as_str()).collect();
        let expected_paths: Vec<String> = [
            "stores",
            "products",
            "transactions",
            "basket_items",
            "rejects",
        ]
        .iter()
        .map(|t| format!("{t}/{id}.csv.gz"))
        .chain([format!("batches/{id}.json")])
        .collect();
        assert_eq!(
            paths, expected_paths,
            "{}: the staging layout, marker last",
            real.name
        );
        for ((path, bytes), (table, text)) in files.iter().zip(real.tables.iter()) {
            assert!(path.starts_with(table));
            assert_same_text(
                &gunzip(bytes),
                text,
                &format!("{}: {path} against the native CLI's", real.name),
            );
        }
        let marker: Value = serde_json::from_slice(&files[5].1).unwrap();
        assert_same(&marker, &native, &format!("{}: marker", real.name));
        let transactions = gunzip(&files[2].1);
        assert_eq!(
            transactions.lines().count() as u64,
            native["rows_staged"].as_u64().unwrap(),
            "{}: one transaction row per staged row",
            real.name
        );
    }
}

#[wasm_bindgen_test]
fn real_exports_stream_in_chunks_with_drain_as_transform() {
    for real in real_files() {
        let id = wasm::batch_id(real.bytes);
        let pieces: Vec<&[u8]> = real.bytes.chunks(997).collect();
        let (report, out) = pipeline(json!({ "source": real.name, "batchId": id }), &pieces, 5);
        let native: Value = serde_json::from_str(real.report).unwrap();
        assert_same(&report, &native, real.name);
        assert_eq!(out.len(), 6, "{}: five tables and the marker", real.name);
        for (table, text) in real.tables {
            let (path, bytes) = out
                .iter()
                .find(|(k, _)| k.starts_with(&format!("{table}/")))
                .unwrap();
            assert_same_text(&gunzip(bytes), text, &format!("{}: {path}", real.name));
        }
        assert_eq!(
            out.last().unwrap().0,
            format!("batches/{id}.json"),
            "marker last"
        );
    }
}

#[wasm_bindgen_test]
fn errors_are_js_errors_with_the_core_text_and_a_stable_code() {
    // A batch id that is not one: the core's own message, word for word.
    let core = cafe_etl::Pipeline::transform(
        cafe_etl::Config::default(),
        "x.csv",
        "not-a-batch-id",
        |_| Vec::new(),
    )
    .err()
    .expect("the core refuses it");
    let err = wasm::Pipeline::new(options(
        json!({ "source": "x.csv", "batchId": "not-a-batch-id" }),
    ))
    .err()
    .unwrap();
    assert_eq!(
        js_error_code(err),
        ("bad_batch_id".to_string(), core.to_string())
    );
    assert_eq!(core.code().as_str(), "bad_batch_id");
    assert!(core.to_string().starts_with("config error:"), "{core}");

    // Bytes that are not those of the batch id given at the start.
    let real = &real_files()[0];
    let mut p = wasm::Pipeline::new(options(
        json!({ "source": real.name, "batchId": wasm::batch_id(b"other bytes") }),
    ))
    .unwrap();
    p.push(real.bytes).unwrap();
    let (code, msg) = js_error_code(p.finish().err().unwrap());
    assert_eq!(code, "batch_id_mismatch");
    assert!(
        msg.starts_with("stage error: the bytes have batch id"),
        "{msg}"
    );
    assert!(msg.contains("the file changed while it was read"), "{msg}");

    // A finished pipeline.
    let mut p = wasm::Pipeline::new(JsValue::UNDEFINED).unwrap();
    p.push(real.bytes).unwrap();
    p.finish().unwrap();
    let finished = (
        "finished".to_string(),
        "config error: the pipeline is finished".to_string(),
    );
    assert_eq!(js_error_code(p.push(b"more").err().unwrap()), finished);
    assert_eq!(js_error_code(p.finish().err().unwrap()), finished);
    assert_eq!(js_error_code(p.drain().err().unwrap()), finished);

    // Options of the wrong type.
    let (code, msg) = js_error_code(
        wasm::check(b"", options(json!({ "maxIssues": "many" })))
            .err()
            .unwrap(),
    );
    assert_eq!(code, "config");
    assert!(msg.starts_with("config error: options:"), "{msg}");

    // A finished hasher.
    let mut h = wasm::BatchHasher::new();
    h.finish().unwrap();
    assert_eq!(
        js_error_code(h.update(b"x").err().unwrap()),
        (
            "finished".to_string(),
            "config error: the hasher is finished".to_string()
        )
    );
}

#[wasm_bindgen_test]
fn refused_files_stage_nothing() {
    for (bytes, code) in [
        (&b""[..], "empty_file"),
        (&b"PK\x03\x04\x14\x00\x00\x00binary"[..], "not_csv"),
    ] {
        let result = wasm::transform(bytes, options(json!({ "source": "x.csv" }))).unwrap();
        let report = to_json(&get(&result, "report"));
        assert_eq!(report["refused"], true);
        assert_eq!(report["issues"][0]["code"], code);
        assert!(files(&result).is_empty());
    }
}

#[wasm_bindgen_test]
fn batch_hasher_streams_the_sha256() {
    let mut h = wasm::BatchHasher::new();
    h.update(b"a").unwrap();
    h.update(b"bc").unwrap();
    assert_eq!(
        h.sha256().unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );

    let real = &real_files()[1];
    let mut h = wasm::BatchHasher::new();
    for chunk in real.bytes.chunks(4093) {
        h.update(chunk).unwrap();
    }
    let id = h.finish().unwrap();
    assert_eq!(id, wasm::batch_id(real.bytes));
    let native: Value = serde_json::from_str(real.report).unwrap();
    assert_eq!(id, native["batch_id"].as_str().unwrap());
}

#[wasm_bindgen_test]
fn no_personal_data_in_any_output() {
    let input = tricky_export();
    let result = wasm::transform(
        &input,
        options(json!({ "source": "chesterfield_25-08-2021_09-00-00.csv" })),
    )
    .unwrap();
    let mut all = to_json(&get(&result, "report")).to_string();
    for (_, bytes) in files(&result) {
        all.push_str(&if bytes.starts_with(&[0x1f, 0x8b]) {
            gunzip(&bytes)
        } else {
            String::from_utf8(bytes).unwrap()
        });
    }
    for pii in [
        "Zoë",
        "Exämple",
        "Ann Example",
        "😀",
        "Jos",
        "Bo Example",
        "Cy Example",
        "4111111111111111",
        "5555555555554444",
    ] {
        assert!(!all.contains(pii), "{pii} in the output");
    }
}

#[wasm_bindgen_test]
fn no_name_or_card_number_in_any_result_whatever_the_row_shape() {
    // Every name shape (commas, quotes, extra spaces) and card shape (bare,
    // spaced, dotted, dashed...) in every position, with a field dropped,
    // added or neither: the same rows tests/privacy.rs stages natively.
    let names = ["Zvann", "Qxample", "Zvnick"];
    let lines = rows::enumeration("Zvann", "Qxample");
    let mut needles: Vec<String> = names.map(String::from).to_vec();
    for card in rows::TEST_CARDS {
        for shape in 0..rows::CARD_SHAPES.len() {
            needles.extend(rows::card_needles(&rows::typed_card(shape, card)));
        }
    }
    let excused = rows::names_in_store_column(&lines, &names);
    let input = lines.join("\n") + "\n";
    let opts = || options(json!({ "source": "leeds_25-08-2021_09-00-00.csv" }));

    let result = wasm::transform(input.as_bytes(), opts()).unwrap();
    let report = to_json(&get(&result, "report"));
    assert!(report["rows_rejected"].as_u64().unwrap() > lines.len() as u64 / 2);
    let mut all = report.to_string();
    for (_, bytes) in files(&result) {
        all.push_str(&if bytes.starts_with(&[0x1f, 0x8b]) {
            gunzip(&bytes)
        } else {
            String::from_utf8(bytes).unwrap()
        });
    }
    assert!(all.contains("[withheld]"), "the reject file was read");
    all.push_str(&to_json(&wasm::check(input.as_bytes(), opts()).unwrap()).to_string());
    if let Some(found) = rows::find_personal_data(&all, &excused, &needles) {
        panic!("a WebAssembly result holds personal data: {found:?}");
    }
}

#[wasm_bindgen_test]
fn customer_key_id_is_the_cores_and_rides_in_the_report() {
    let input = tricky_export();
    let source = "chesterfield_25-08-2021_09-00-00.csv";
    let secret = "a demo secret of the worker";
    let keyed = wasm::transform(
        &input,
        options(json!({ "source": source, "customerKeySecret": secret })),
    )
    .unwrap();
    let report = to_json(&get(&keyed, "report"));
    let want = cafe_etl::clean::customer_key_id(Some(secret));
    assert_eq!(report["customer_key_id"], want.as_str());
    assert_eq!(wasm::customer_key_id(Some(secret.into())), want);
    let marker = files(&keyed)
        .into_iter()
        .find(|(k, _)| k.starts_with("batches/"))
        .unwrap();
    assert!(String::from_utf8(marker.1)
        .unwrap()
        .contains(&format!("\"customer_key_id\": \"{want}\"")));
    let plain = wasm::check(&input, options(json!({ "source": source }))).unwrap();
    assert_eq!(to_json(&plain)["customer_key_id"], "none");
    assert_eq!(wasm::customer_key_id(None), "none");
    assert!(!report.to_string().contains(secret));
}

#[wasm_bindgen_test]
fn max_cache_bytes_caps_the_product_cache_and_keeps_the_rows() {
    // The edge worker lowers the cache to fit its 128 MB isolate: past the cap a
    // product or store is written again (the loader keeps one row per id), nothing else moves.
    let input = tricky_export();
    let id = wasm::batch_id(&input);
    let opts = |cap: Option<u64>| {
        let mut o =
            serde_json::json!({"source": "chesterfield_25-08-2021_09-00-00.csv", "batchId": id});
        if let Some(n) = cap {
            o["maxCacheBytes"] = n.into();
        }
        o
    };
    let (report, files) = pipeline(opts(None), &[&input], 0);
    let (capped_report, capped) = pipeline(opts(Some(0)), &[&input], 0);
    let text = |files: &[(String, Vec<u8>)], table: &str| {
        let (_, bytes) = files
            .iter()
            .find(|(k, _)| k.starts_with(&format!("{table}/")))
            .unwrap();
        gunzip(bytes)
    };
    for table in ["transactions", "basket_items", "rejects"] {
        assert_eq!(text(&files, table), text(&capped, table), "{table}");
    }
    let distinct = |t: &str| {
        t.lines()
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<String>>()
    };
    for table in ["stores", "products"] {
        let (all, some) = (text(&files, table), text(&capped, table));
        assert_eq!(distinct(&all), distinct(&some), "{table}: the same rows");
        assert!(
            some.lines().count() > all.lines().count(),
            "{table}: repeated past the cap"
        );
    }
    assert_eq!(report["rows_staged"], capped_report["rows_staged"]);
}

#[wasm_bindgen_test]
fn staging_keys_tables_and_key_kinds_are_the_cores_layout() {
    let id = "0123456789abcdef0123456789abcdef";
    let keys = wasm::staging_keys(id);
    assert_eq!(keys, cafe_etl::stage::batch_keys(id));
    // The files `transform` stages are these keys, in this order.
    let real = &real_files()[0];
    let result = wasm::transform(real.bytes, options(json!({ "source": real.name }))).unwrap();
    let staged: Vec<String> = files(&result).into_iter().map(|(k, _)| k).collect();
    let batch = to_json(&get(&result, "report"))["batch_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(staged, wasm::staging_keys(&batch));
    let tables = to_json(&wasm::staging_tables().unwrap());
    assert_eq!(
        tables,
        json!([
            "stores",
            "products",
            "transactions",
            "basket_items",
            "rejects"
        ])
    );
    let kinds: Vec<Value> = keys
        .iter()
        .map(|k| to_json(&wasm::staged_object(k).unwrap()))
        .collect();
    assert_eq!(
        Value::Array(kinds),
        json!([
            "stores",
            "products",
            "transactions",
            "basket_items",
            "rejects",
            "marker"
        ])
    );
    assert!(wasm::staged_object("index/stores/leeds/1-x")
        .unwrap()
        .is_null());
}

#[wasm_bindgen_test]
fn index_keys_are_the_cores() {
    let id = "0123456789abcdef0123456789abcdef";
    // 2026-12-01T20:05:03.123Z, a `Date.now()` number.
    let at = 1_796_155_503_123.0;
    let keys = to_json(&wasm::index_keys("leeds", id, at).unwrap());
    let core = cafe_etl::stage::index_keys("leeds", id, 1_796_155_503_123).unwrap();
    assert_eq!(keys, json!({ "store": core.store, "commit": core.commit }));
    assert_eq!(
        to_json(&wasm::index_entry(&core.commit).unwrap()),
        json!({ "kind": "commit", "batchId": id, "unixMs": 1_796_155_503_123u64 })
    );
    assert!(wasm::index_entry("batches/x.json").unwrap().is_null());
    assert_eq!(wasm::store_index_prefix("leeds"), "index/stores/leeds/");
    assert_eq!(
        wasm::commits_day_prefix(at).unwrap(),
        "index/commits/2026-12-01/"
    );
    // Not a time the index holds: a `config` error, not a key.
    for bad in [-1.0, 0.5, f64::NAN, 1e13] {
        let (code, message) = js_error_code(wasm::index_keys("leeds", id, bad).unwrap_err());
        assert_eq!(code, "config", "{bad}");
        assert!(message.starts_with("config error: index:"), "{message}");
    }
}

#[wasm_bindgen_test]
fn batch_id_rules_are_the_cores() {
    let mut h = wasm::BatchHasher::new();
    h.update(b"some bytes").unwrap();
    let sha = h.sha256().unwrap();
    let id = wasm::batch_id(b"some bytes");
    assert_eq!(wasm::batch_id_of_sha256(&sha).as_string(), Some(id.clone()));
    assert_eq!(
        wasm::batch_id_of_sha256(&sha.to_uppercase()).as_string(),
        Some(id.clone())
    );
    assert!(wasm::batch_id_of_sha256(&id).is_null());
    assert!(wasm::is_batch_id(&id));
    assert!(!wasm::is_batch_id(&sha));
}

#[wasm_bindgen_test]
fn refusal_message_is_the_cores_sentence() {
    let result = wasm::transform(b"", options(json!({ "source": "empty.csv" }))).unwrap();
    let report = get(&result, "report");
    let msg = wasm::refusal_message(report.clone()).unwrap().as_string();
    let core = cafe_etl::check(b"", "empty.csv", &cafe_etl::Config::default());
    assert_eq!(msg, core.refusal_message());
    assert!(msg.unwrap().starts_with("empty.csv is empty"));
    let real = &real_files()[0];
    let ok = wasm::check(real.bytes, options(json!({ "source": real.name }))).unwrap();
    assert!(wasm::refusal_message(ok).unwrap().is_null());
    let (code, _) = js_error_code(wasm::refusal_message(JsValue::from_str("x")).err().unwrap());
    assert_eq!(code, "config");
}

#[wasm_bindgen_test]
fn rejects_csv_comes_from_the_core_in_pieces() {
    let input = tricky_export();
    let mut p = wasm::Pipeline::new(options(
        json!({ "source": "chesterfield_25-08-2021.csv", "rejectsCsv": true, "skipBatchId": true }),
    ))
    .unwrap();
    let mut csv = Vec::new();
    for piece in input.chunks(17) {
        p.push(piece).unwrap();
        csv.extend(p.take_rejects_csv().unwrap());
    }
    let result = p.finish().unwrap();
    csv.extend(
        get(&result, "rejectsCsv")
            .dyn_into::<Uint8Array>()
            .unwrap()
            .to_vec(),
    );
    let report = to_json(&get(&result, "report"));
    // The core's own download of the same bytes, whole.
    let mut core =
        cafe_etl::Pipeline::check(cafe_etl::Config::default(), "chesterfield_25-08-2021.csv")
            .with_rejects_csv();
    core.push(&input).unwrap();
    let mut want = core.finish().unwrap().rejects_csv.unwrap();
    assert_eq!(csv, want.take());
    assert_eq!(want.rows(), report["rows_rejected"].as_u64().unwrap());
    assert!(want.rows() >= 1);
    let text = String::from_utf8(csv).unwrap();
    assert!(text.starts_with("\u{FEFF}line,codes,message,"), "{text}");
    for personal in ["Example", "4111111111111111", "5555555555554444"] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    // Without the option there is nothing to take and no `rejectsCsv`.
    let mut p = wasm::Pipeline::new(JsValue::UNDEFINED).unwrap();
    p.push(&input).unwrap();
    assert!(p.take_rejects_csv().unwrap().is_empty());
    assert!(get(&p.finish().unwrap(), "rejectsCsv").is_undefined());
}
