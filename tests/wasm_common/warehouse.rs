//! The load statements through the binding (`loadPlan`, `warehouseSchema`,
//! `quarantineStatements`, `ledgerQuery`): what the edge worker runs is what
//! the core makes for `cafe-etl load`, for batches the binding staged.

use super::{files, get, options, real_files, to_json};
use cafe_etl::warehouse::{self, Batch, Dialect, Plan, S3Target, StatementOptions};
use cafe_etl::wasm;
use serde_json::{json, Value};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

/// The code and message of a `CodedError`, checking that JavaScript sees
/// an `Error` with a code.
fn coded(err: JsValue) -> (String, String) {
    assert!(
        err.is_instance_of::<js_sys::Error>(),
        "a JS Error, got {err:?}"
    );
    let code = get(&err, "code").as_string().expect("a code");
    let e: js_sys::Error = err.unchecked_into();
    (code, String::from(e.message()))
}

/// The message of a `CodedError` with `code`.
#[track_caller]
fn message_with_code(err: JsValue, code: &str) -> String {
    let (got, message) = coded(err);
    assert_eq!(got, code, "{message}");
    message
}

/// The real exports staged by the binding, each as its `loadPlan` batch
/// (marker and sizes) and the core's [`Batch`] of the same marker bytes.
fn staged(secret: Option<&str>) -> Vec<(Value, Batch)> {
    real_files()
        .iter()
        .take(3)
        .map(|real| {
            let mut o = json!({ "source": real.name });
            if let Some(s) = secret {
                o["customerKeySecret"] = s.into();
            }
            let files = files(&wasm::transform(real.bytes, options(o)).unwrap());
            let marker = &files.last().unwrap().1;
            let len = |i: usize| files[i].1.len() as u64;
            let sizes = [len(0), len(1), len(2), len(3)];
            let input = json!({
                "marker": serde_json::from_slice::<Value>(marker).unwrap(),
                "sizes": { "stores": sizes[0], "products": sizes[1],
                           "transactions": sizes[2], "basket_items": sizes[3] },
            });
            (input, Batch::from_marker(marker, 0, Some(sizes)).unwrap())
        })
        .collect()
}

#[wasm_bindgen_test]
fn load_plan_gives_the_cores_statements_for_each_dialect() {
    let batches = staged(None);
    let inputs: Vec<Value> = batches.iter().map(|(i, _)| i.clone()).collect();
    let plan = Plan::new(batches.iter().map(|(_, b)| b.clone()).collect());
    let s3 = json!({ "url": "s3://cafe-staging/v1", "iamRole": "arn:aws:iam::1:role/r" });
    let target = S3Target::new("s3://cafe-staging/v1")
        .unwrap()
        .with_iam_role("arn:aws:iam::1:role/r")
        .unwrap();
    for (name, dialect, s3_in) in [
        ("postgresql", Dialect::Postgres, None),
        ("redshift", Dialect::Redshift, Some(s3.clone())),
    ] {
        let mut input = json!({ "batches": inputs, "dialect": name });
        if let Some(s) = &s3_in {
            input["s3"] = s.clone();
        }
        let out = to_json(&wasm::load_plan(options(input)).unwrap());
        let core = plan
            .statements(
                dialect,
                &StatementOptions {
                    s3: Some(target.clone()),
                    ..StatementOptions::default()
                },
            )
            .unwrap();
        assert_eq!(
            out["statements"],
            serde_json::to_value(&core).unwrap(),
            "{name}"
        );
        assert_eq!(out["planId"], plan.id(), "{name}");
        let ids: Vec<&str> = plan.batches().iter().map(Batch::id).collect();
        assert_eq!(out["batchIds"], json!(ids), "{name}");
        let copies: Vec<&Value> = out["statements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "copy")
            .collect();
        assert_eq!(copies.len(), 4, "{name}");
        for c in &copies {
            let table = c["table"].as_str().unwrap();
            let keys: Vec<String> = ids
                .iter()
                .map(|id| format!("{table}/{id}.csv.gz"))
                .collect();
            assert_eq!(c["keys"], json!(keys), "{name}");
        }
        let manifests = out["manifests"].as_array().unwrap();
        match dialect {
            Dialect::Postgres => {
                assert!(manifests.is_empty());
                assert!(copies[0]["sql"]
                    .as_str()
                    .unwrap()
                    .ends_with("FROM STDIN WITH (FORMAT csv)"));
            }
            Dialect::Redshift => {
                assert_eq!(manifests.len(), 4);
                for (m, (table, key, body)) in manifests.iter().zip(plan.manifests(&target)) {
                    assert_eq!(m["table"], table.name());
                    assert_eq!(m["key"], key.as_str());
                    assert_eq!(m["body"], body.as_str());
                }
                let body: Value =
                    serde_json::from_str(manifests[2]["body"].as_str().unwrap()).unwrap();
                let sizes = batches[0].1.sizes.unwrap();
                let first = &body["entries"][0];
                assert_eq!(
                    first["url"],
                    format!("s3://cafe-staging/v1/transactions/{}.csv.gz", ids[0])
                );
                // The plan sorts by id: find the size of that batch.
                let by_id = batches.iter().find(|(_, b)| b.id() == ids[0]).unwrap();
                assert_eq!(
                    first["meta"]["content_length"],
                    by_id.1.sizes.unwrap()[2],
                    "{sizes:?}"
                );
            }
        }
    }
}

#[wasm_bindgen_test]
fn load_plan_chunks_the_planned_batches_by_bytes() {
    let inputs: Vec<Value> = staged(None).into_iter().map(|(i, _)| i).collect();
    let out = |max: Option<u64>| {
        let mut input = json!({ "batches": inputs, "dialect": "postgresql" });
        if let Some(m) = max {
            input["maxStatementBytes"] = m.into();
        }
        wasm::load_plan(options(input))
    };
    let inserts = |plan: &Value| -> Vec<String> {
        plan["statements"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["sql"].as_str())
            .filter(|s| s.starts_with("INSERT INTO tmp_plan_batches"))
            .map(str::to_string)
            .collect()
    };
    let whole = inserts(&to_json(&out(None).unwrap()));
    assert_eq!(whole.len(), 1);
    // Room for one ledger row per statement (the longest statement of the
    // plan, a MERGE, still fits).
    let longest_row = whole[0].lines().skip(1).map(|l| l.len()).max().unwrap();
    let head = whole[0].lines().next().unwrap().len() + 1;
    let longest_other = to_json(&out(None).unwrap())["statements"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["sql"].as_str())
        .filter(|s| !s.starts_with("INSERT INTO tmp_plan_batches"))
        .map(str::len)
        .max()
        .unwrap();
    let max = (head + longest_row).max(longest_other) as u64;
    let chunked = inserts(&to_json(&out(Some(max)).unwrap()));
    assert!(chunked.len() >= 2, "{chunked:?}");
    assert!(chunked.iter().all(|s| s.len() as u64 <= max));
    let rows: usize = chunked.iter().map(|s| s.lines().count() - 1).sum();
    assert_eq!(rows, 3);
    // Too small for any statement: refused, with the core's words.
    let msg = message_with_code(out(Some(200)).err().unwrap(), "statement_too_long");
    assert!(msg.starts_with("plan error: "), "{msg}");
    assert!(msg.contains("bytes"), "{msg}");
}

#[wasm_bindgen_test]
fn bad_input_is_refused_with_the_cores_text() {
    let good = staged(None);
    let keyed = staged(Some("a demo secret of the worker"));
    let marker = good[0].0["marker"].clone();
    let mut no_id = marker.clone();
    no_id.as_object_mut().unwrap().remove("batch_id");
    let mut pii_in_a_count = marker.clone();
    pii_in_a_count["rows_read"] = "Ann Example".into();
    // (input, code, start of the message)
    let cases = [
        (
            json!({ "batches": [{ "marker": no_id }], "dialect": "postgresql" }),
            "bad_marker",
            "plan error: the marker of batch 1 is not a batch report: missing field `batch_id`",
        ),
        (
            json!({ "batches": [{ "marker": pii_in_a_count }], "dialect": "postgresql" }),
            "bad_marker",
            "plan error: the marker of batch 1 is not a batch report: invalid type",
        ),
        (
            json!({ "batches": [{ "marker": "not a report" }], "dialect": "postgresql" }),
            "bad_marker",
            "plan error: the marker of batch 1 is not a batch report",
        ),
        (
            json!({ "batches": [{ "marker": marker }], "dialect": "mysql" }),
            "config",
            "plan error: unknown dialect \"mysql\"",
        ),
        (
            json!({ "batches": [], "dialect": "postgresql" }),
            "config",
            "plan error: no batch to load",
        ),
        (
            json!({ "batches": [{ "marker": marker }], "dialect": "redshift" }),
            "config",
            "plan error: a Redshift load needs the S3 URL",
        ),
        (
            json!({ "batches": [{ "marker": marker }], "dialect": "redshift",
                    "s3": { "url": "https://bucket/x" } }),
            "config",
            "plan error: the S3 URL \"https://bucket/x\" should start with s3://",
        ),
        (
            json!({ "batches": [good[0].0, keyed[1].0], "dialect": "postgresql" }),
            "mixed_customer_keys",
            "plan error: the warehouse's customer keys have key id",
        ),
    ];
    for (input, code, want) in cases {
        let msg = message_with_code(wasm::load_plan(options(input.clone())).err().unwrap(), code);
        assert!(msg.starts_with(want), "{msg}\nfor {input}");
        assert!(!msg.contains("Ann"), "{msg}");
    }
    // Empty settings are unset, as the worker's variables are.
    let input = json!({ "batches": [{ "marker": marker }], "dialect": "redshift",
                        "s3": { "url": "s3://b/p/", "iamRole": "", "region": "" } });
    let plan = to_json(&wasm::load_plan(options(input)).unwrap());
    assert!(plan["statements"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["sql"]
            .as_str()
            .unwrap()
            .contains("FROM 's3://b/p/manifests/")));
    // The customer-key rule is the one `cafe-etl load-plan` applies.
    let batches = vec![good[0].1.clone(), keyed[1].1.clone()];
    let core = warehouse::keys::check(&[], &batches, warehouse::Phase::Plan)
        .unwrap_err()
        .to_string();
    let msg = coded(
        wasm::load_plan(options(
            json!({ "batches": [good[0].0, keyed[1].0], "dialect": "postgresql" }),
        ))
        .err()
        .unwrap(),
    )
    .1;
    assert_eq!(msg, core);
}

#[wasm_bindgen_test]
fn schema_quarantine_and_ledger_query_are_the_cores() {
    for (name, dialect) in [
        ("postgresql", Dialect::Postgres),
        ("redshift", Dialect::Redshift),
    ] {
        let schema = to_json(&wasm::warehouse_schema(name).unwrap());
        assert_eq!(
            schema,
            json!(warehouse::schema::statements(dialect)),
            "{name}"
        );
        assert!(schema.as_array().unwrap().iter().any(|s| s
            .as_str()
            .unwrap()
            .starts_with("CREATE TABLE IF NOT EXISTS load_failures (")));

        let id = "0123456789abcdef0123456789abcdef";
        let failure = json!({ "batch_id": id, "store": "Leeds", "code": "copy_failed",
                              "reason": "a row the warehouse refused" });
        let sql = to_json(&wasm::quarantine_statements(options(failure), name).unwrap());
        let core = warehouse::quarantine_statements(
            &warehouse::Failure {
                batch_id: id.into(),
                store: Some("Leeds".into()),
                code: "copy_failed".into(),
                reason: "a row the warehouse refused".into(),
            },
            dialect,
        )
        .unwrap();
        assert_eq!(sql, json!(core), "{name}");

        let ids = json!([id]);
        assert_eq!(
            wasm::ledger_query(options(ids), name).unwrap(),
            warehouse::ledger_query(&[id.to_string()], dialect).unwrap()
        );
    }
    let bad_id = json!({ "batch_id": "Ann Example", "code": "copy_failed", "reason": "x" });
    let msg = message_with_code(
        wasm::quarantine_statements(options(bad_id), "postgresql")
            .err()
            .unwrap(),
        "bad_batch_id",
    );
    assert!(msg.starts_with("load error: a batch id is 32"), "{msg}");
    assert!(!msg.contains("Ann"), "{msg}");
    let msg = message_with_code(
        wasm::ledger_query(options(json!(["x' OR 1=1"])), "redshift")
            .err()
            .unwrap(),
        "bad_batch_id",
    );
    assert!(msg.starts_with("load error: a batch id is 32"), "{msg}");
    let msg = message_with_code(wasm::warehouse_schema("oracle").err().unwrap(), "config");
    assert!(msg.starts_with("plan error: unknown dialect"), "{msg}");
    let limits = to_json(&wasm::data_api_limits().unwrap());
    assert_eq!(
        limits,
        json!({ "maxStatementBytes": warehouse::DATA_API_MAX_STATEMENT_BYTES,
                "maxBatchStatements": warehouse::DATA_API_MAX_BATCH_STATEMENTS })
    );
}

#[wasm_bindgen_test]
fn load_plan_refuses_batches_of_another_secret_than_the_warehouses() {
    let keyed = staged(Some("a demo secret of the worker"));
    let other = staged(Some("another demo secret"));
    let key = |b: &Batch| b.report.customer_key_id.clone();
    let (ours, theirs) = (key(&keyed[0].1), key(&other[0].1));
    assert_ne!(ours, theirs);
    for name in ["postgresql", "redshift"] {
        assert_eq!(
            wasm::loaded_key_ids_query(name).unwrap(),
            warehouse::keys::loaded_key_ids_query()
        );
    }
    let plan = |batches: Value, loaded: Value| {
        wasm::load_plan(options(json!({
            "batches": batches, "dialect": "postgresql", "loadedKeyIds": loaded
        })))
    };
    // (batches, the warehouse's key ids, refused)
    for (batches, loaded, refused) in [
        (json!([keyed[0].0]), json!([ours, "none"]), false),
        (json!([keyed[0].0]), json!([]), false),
        (json!([other[0].0]), json!([]), false),
        (json!([other[0].0]), json!(["none"]), false),
        (json!([other[0].0]), json!([ours]), true),
        (json!([keyed[0].0, other[1].0]), json!([ours]), true),
    ] {
        match (plan(batches.clone(), loaded.clone()), refused) {
            (Ok(_), false) => {}
            (Err(e), true) => {
                let msg = message_with_code(e, "mixed_customer_keys");
                // The core's very text, as `cafe-etl load` gives it.
                let planned: Vec<Batch> = batches
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| {
                        let m = serde_json::to_vec(&b["marker"]).unwrap();
                        Batch::from_marker(&m, 0, None).unwrap()
                    })
                    .collect();
                let ids: Vec<String> = serde_json::from_value(loaded.clone()).unwrap();
                let core = warehouse::keys::check(&ids, &planned, warehouse::Phase::Plan)
                    .unwrap_err()
                    .to_string();
                assert_eq!(msg, core);
                assert!(msg.contains("restage"), "{msg}");
            }
            (got, want) => panic!("{batches} {loaded}: {got:?}, refused expected {want}"),
        }
    }
    // A key id that is not one is refused, not matched.
    let msg = message_with_code(
        plan(json!([keyed[0].0]), json!(["x' OR 1=1"]))
            .err()
            .unwrap(),
        "config",
    );
    assert!(msg.starts_with("plan error: loadedKeyIds:"), "{msg}");
}
