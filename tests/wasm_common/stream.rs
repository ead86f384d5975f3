//! The one stream reader (`Pipeline.pushStream`, `BatchHasher.hashStream`):
//! a `ReadableStream` read to its end in the chunks it gives, with progress
//! and drain callbacks, cancellation and read errors, under Node and in
//! Chromium. The streams and callbacks are real JavaScript ones, made by
//! the helpers below, as the page's Web Worker and the edge worker make
//! theirs.

use super::{
    assert_same, entries, files, get, gunzip, options, pipeline, real_files, to_json, tricky_export,
};
use cafe_etl::wasm;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use serde_json::{json, Value};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

/// JavaScript helpers: a stream that logs its pulls and its cancel, a
/// drain callback that logs and answers with a Promise settled later.
const HELPERS: &str = r#"
return {
  // A stream of `chunks` (Uint8Arrays, or anything to hand out as it is),
  // pulled one at a time (highWaterMark 0: nothing is read ahead), failing
  // with `error` after them when given.
  stream(chunks, log, error) {
    let i = 0;
    return new ReadableStream({
      pull(c) {
        log.push('pull');
        if (i < chunks.length) c.enqueue(chunks[i++]);
        else if (error !== undefined) c.error(error);
        else c.close();
      },
      cancel(reason) { log.push('cancel'); log.push(reason); },
    }, { highWaterMark: 0 });
  },
  // onDrain: logs 'drain', keeps the files, answers with a Promise that
  // settles on a later timer turn ('drained' logged then), rejected with
  // `failAt`'s error at that call.
  drainer(log, kept, failAt, error) {
    let n = 0;
    return (files) => {
      const call = n++;
      log.push('drain');
      kept.push(files);
      return new Promise((resolve, reject) => setTimeout(() => {
        log.push('drained');
        if (call === failAt) reject(error); else resolve();
      }, 1));
    };
  },
  // onProgress: keeps each {bytes, rows}.
  recorder(kept) { return (p) => { kept.push(p); }; },
  thrower(error) { return () => { throw error; }; },
  coded(message, code) { const e = new Error(message); e.code = code; return e; },
  notReadable() { return new DOMException('The requested file could not be read', 'NotReadableError'); },
  abortAfter(controller, reason, n) {
    let calls = 0;
    return () => { if (++calls === n) controller.abort(reason); };
  },
  controller() { return new AbortController(); },
  // Calls `f` when called, and keeps what it threw.
  calling(f, kept) { return () => { try { f(); } catch (e) { kept.push(e); } }; },
};
"#;

fn helpers() -> JsValue {
    Function::new_no_args(HELPERS)
        .call0(&JsValue::UNDEFINED)
        .unwrap()
}

fn call(h: &JsValue, name: &str, args: &[&JsValue]) -> JsValue {
    let f: Function = get(h, name).unchecked_into();
    f.apply(h, &args.iter().map(|a| (*a).clone()).collect::<Array>())
        .unwrap()
}

fn chunk_array(pieces: &[&[u8]]) -> Array {
    pieces
        .iter()
        .map(|p| JsValue::from(Uint8Array::from(*p)))
        .collect()
}

/// Stream options from (key, value) pairs.
fn obj(pairs: &[(&str, &JsValue)]) -> Option<JsValue> {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).unwrap();
    }
    Some(o.into())
}

fn log_strings(log: &Array) -> Vec<String> {
    log.iter()
        .map(|v| v.as_string().unwrap_or_else(|| "<value>".to_string()))
        .collect()
}

/// Staged files kept by the drainer, concatenated per path, then `finish`'s.
fn joined(kept: &Array, result: &JsValue) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let parts = kept.iter().flat_map(|f| entries(&f)).chain(files(result));
    for (k, v) in parts {
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some((_, buf)) => buf.extend_from_slice(&v),
            None => out.push((k, v)),
        }
    }
    out
}

async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

#[wasm_bindgen_test]
async fn push_stream_in_odd_chunks_gives_what_push_gives() {
    let h = helpers();
    let tricky = tricky_export();
    let mut inputs: Vec<(&str, &[u8])> = vec![("chesterfield_25-08-2021_09-00-00.csv", &tricky)];
    let reals = real_files();
    inputs.extend(reals.iter().map(|r| (r.name, r.bytes)));
    for (name, bytes) in inputs {
        let id = wasm::batch_id(bytes);
        let staged = wasm::transform(bytes, options(json!({ "source": name }))).unwrap();
        let want_report = to_json(&get(&staged, "report"));
        let want_files = files(&staged);
        for size in [1, 7, 997, 65536] {
            if size == 1 && bytes.len() > 4096 {
                continue;
            }
            let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
            // Checking: the same report as push() in the same pieces.
            let (checked, _) = pipeline(json!({ "source": name }), &pieces, 0);
            let p = wasm::Pipeline::new(options(json!({ "source": name }))).unwrap();
            let log = Array::new();
            let stream = call(&h, "stream", &[&chunk_array(&pieces), &log]);
            settle(p.push_stream(stream, None).unwrap()).await.unwrap();
            let mut p = p;
            let report = to_json(&get(&p.finish().unwrap(), "report"));
            assert_same(
                &report,
                &checked,
                &format!("{name}: check in {size}-byte chunks"),
            );

            // Staging, drained as it goes: the same report and table bytes
            // as transform().
            let p = wasm::Pipeline::new(options(json!({ "source": name, "batchId": id }))).unwrap();
            let kept = Array::new();
            let drainer = call(&h, "drainer", &[&log, &kept, &JsValue::from(-1)]);
            let stream = call(&h, "stream", &[&chunk_array(&pieces), &log]);
            let o = obj(&[
                ("onDrain", &drainer),
                ("drainEveryBytes", &JsValue::from(3000)),
            ]);
            settle(p.push_stream(stream, o).unwrap()).await.unwrap();
            let mut p = p;
            let result = p.finish().unwrap();
            assert_same(
                &to_json(&get(&result, "report")),
                &want_report,
                &format!("{name}: stage in {size}-byte chunks"),
            );
            // Drained in the order tables had bytes; compared by path.
            let mut got = joined(&kept, &result);
            got.sort();
            let mut want_files = want_files.clone();
            want_files.sort();
            assert_eq!(got.len(), want_files.len(), "{name}");
            for ((k1, v1), (k2, v2)) in got.iter().zip(&want_files) {
                assert_eq!(k1, k2);
                if k1.ends_with(".gz") {
                    assert_eq!(gunzip(v1), gunzip(v2), "{name}: {k1}, {size}-byte chunks");
                } else {
                    assert_eq!(v1, v2, "{name}: {k1}");
                }
            }
            // Every byte went through a drain but what finish() flushes:
            // the drainer ran at least once per 3000 bytes.
            assert!(kept.length() as usize >= bytes.len() / (3000 + size));
        }
    }
}

#[wasm_bindgen_test]
async fn progress_grows_to_the_whole_stream() {
    let h = helpers();
    let real = &real_files()[0];
    let pieces: Vec<&[u8]> = real.bytes.chunks(1000).collect();
    let p = wasm::Pipeline::new(options(json!({ "source": real.name }))).unwrap();
    let log = Array::new();
    let kept = Array::new();
    let o = obj(&[
        ("onProgress", &call(&h, "recorder", &[&kept])),
        ("progressEveryBytes", &JsValue::from(4000)),
    ]);
    let stream = call(&h, "stream", &[&chunk_array(&pieces), &log]);
    settle(p.push_stream(stream, o).unwrap()).await.unwrap();
    let mut p = p;
    let report = to_json(&get(&p.finish().unwrap(), "report"));
    let seen: Vec<(u64, u64)> = kept
        .iter()
        .map(|v| {
            let v = to_json(&v);
            (v["bytes"].as_u64().unwrap(), v["rows"].as_u64().unwrap())
        })
        .collect();
    // One call per 4000 bytes (every fourth chunk), and one for the rest.
    assert_eq!(seen.len(), real.bytes.len().div_ceil(4000), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{seen:?}"
    );
    assert_eq!(seen[0].0, 4000);
    // Rows are counted as they are read (past the first few KiB the
    // pipeline looks at before it starts).
    assert!(seen[seen.len() / 2].1 > 0, "{seen:?}");
    let last = *seen.last().unwrap();
    assert_eq!(last.0, real.bytes.len() as u64);
    assert_eq!(last.1, report["rows_read"].as_u64().unwrap());
}

#[wasm_bindgen_test]
async fn a_drain_promise_is_awaited_before_the_next_read() {
    let h = helpers();
    let real = &real_files()[0];
    let id = wasm::batch_id(real.bytes);
    let pieces: Vec<&[u8]> = real.bytes.chunks(5000).collect();
    let p = wasm::Pipeline::new(options(json!({ "source": real.name, "batchId": id }))).unwrap();
    let log = Array::new();
    let kept = Array::new();
    let drainer = call(&h, "drainer", &[&log, &kept, &JsValue::from(-1)]);
    let stream = call(&h, "stream", &[&chunk_array(&pieces), &log]);
    settle(
        p.push_stream(stream, obj(&[("onDrain", &drainer)]))
            .unwrap(),
    )
    .await
    .unwrap();
    // Default drainEveryBytes 0: a drain per chunk, each settled before the
    // stream is pulled again; the last pull finds the end.
    let mut want = Vec::new();
    for _ in &pieces {
        want.extend(["pull", "drain", "drained"]);
    }
    want.push("pull");
    assert_eq!(log_strings(&log), want);
    assert_eq!(kept.length() as usize, pieces.len());
    let mut p = p;
    assert!(p.finish().is_ok());
}

/// pushStream's rejection, with the stream's log.
async fn failing(
    h: &JsValue,
    pieces: &[&[u8]],
    stream_error: Option<&JsValue>,
    opts: &[(&str, &JsValue)],
) -> (JsValue, Array, wasm::Pipeline) {
    let p = wasm::Pipeline::new(options(json!({ "source": "x.csv" }))).unwrap();
    let log = Array::new();
    let mut args = vec![JsValue::from(chunk_array(pieces)), log.clone().into()];
    if let Some(e) = stream_error {
        args.push(e.clone());
    }
    let refs: Vec<&JsValue> = args.iter().collect();
    let stream = call(h, "stream", &refs);
    let e = settle(p.push_stream(stream, obj(opts)).unwrap())
        .await
        .unwrap_err();
    (e, log, p)
}

#[wasm_bindgen_test]
async fn a_callback_error_stops_the_read_cancels_the_stream_and_comes_back_unchanged() {
    let h = helpers();
    let input = tricky_export();
    let pieces: Vec<&[u8]> = input.chunks(40).collect();
    let err = call(
        &h,
        "coded",
        &[&"the callback's own".into(), &"own_code".into()],
    );
    let never = Array::new();
    for opts in [
        vec![
            ("onProgress", call(&h, "thrower", &[&err])),
            ("progressEveryBytes", 0.into()),
        ],
        vec![("onDrain", call(&h, "thrower", &[&err]))],
        // A Promise rejected on a later turn, at the second drain.
        vec![(
            "onDrain",
            call(&h, "drainer", &[&never, &Array::new(), &1.into(), &err]),
        )],
    ] {
        let named: Vec<(&str, &JsValue)> = opts.iter().map(|(k, v)| (*k, v)).collect();
        let (e, log, mut p) = failing(&h, &pieces, None, &named).await;
        assert!(e == err, "the very error thrown, got {e:?}");
        assert_eq!(get(&e, "code").as_string().as_deref(), Some("own_code"));
        let log = log_strings(&log);
        let n = log.iter().filter(|s| *s == "pull").count();
        assert!(
            n < pieces.len(),
            "stopped early: {n} pulls of {}",
            pieces.len()
        );
        assert_eq!(&log[log.len() - 2..], ["cancel", "<value>"], "{log:?}");
        // Not busy any more: finish() answers (with a report of the part read).
        assert!(p.finish().is_ok());
    }
}

#[wasm_bindgen_test]
async fn a_stream_that_fails_rejects_with_a_clear_message() {
    let h = helpers();
    let input = tricky_export();
    let pieces: Vec<&[u8]> = input.chunks(100).collect();

    // Whatever the stream failed with (the browser could not read the file;
    // an Error of the stream's own source): code `read`, the original as
    // cause, its name and text in the message.
    let dom = call(&h, "notReadable", &[]);
    let own = call(&h, "coded", &[&"too large".into(), &"too_large".into()]);
    for (failure, want) in [
        (&dom, "read error: the stream could not be read (NotReadableError: The requested file could not be read)"),
        (&own, "read error: the stream could not be read (Error: too large)"),
    ] {
        let (e, log, mut p) = failing(&h, &pieces, Some(failure), &[]).await;
        let (code, message) = super::js_error_code(e.clone());
        assert_eq!((code.as_str(), message.as_str()), ("read", want));
        assert!(get(&e, "cause") == *failure);
        // Read to the failure, nothing cancelled (the stream is errored).
        assert_eq!(log.length() as usize, pieces.len() + 1);
        assert!(p.finish().is_ok(), "not busy any more");
    }

    // A thrown non-Error, and a chunk that is not bytes.
    let (e, _, _) = failing(&h, &pieces, Some(&"oops".into()), &[]).await;
    assert_eq!(
        super::js_error_code(e),
        (
            "read".to_string(),
            "read error: the stream could not be read (it failed without an Error)".to_string()
        )
    );
    let p = wasm::Pipeline::new(JsValue::UNDEFINED).unwrap();
    let log = Array::new();
    let stream = call(&h, "stream", &[&Array::of1(&"text".into()), &log]);
    let e = settle(p.push_stream(stream, None).unwrap())
        .await
        .unwrap_err();
    let (code, message) = super::js_error_code(e);
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "read",
            "read error: a chunk of the stream is not a Uint8Array"
        )
    );
    assert_eq!(log_strings(&log), ["pull", "cancel", "<value>"]);

    // Bad options: a `config` error at the call; not a stream: a rejection.
    for o in [
        obj(&[("onDrain", &1.into())]),
        obj(&[("progressEveryBytes", &(-1).into())]),
        obj(&[("signal", &"soon".into())]),
    ] {
        let s = call(&h, "stream", &[&Array::new(), &Array::new()]);
        let e = p.push_stream(s, o).expect_err("bad options refused");
        assert_eq!(super::js_error_code(e).0, "config");
    }
    let e = settle(p.push_stream(JsValue::from(3), None).unwrap())
        .await
        .unwrap_err();
    let (code, message) = super::js_error_code(e);
    assert_eq!(code, "config");
    assert_eq!(
        message,
        "config error: the stream given is not a ReadableStream"
    );
}

#[wasm_bindgen_test]
async fn an_abort_signal_stops_the_read_with_its_reason() {
    let h = helpers();
    let input = tricky_export();
    let pieces: Vec<&[u8]> = input.chunks(30).collect();
    let controller = call(&h, "controller", &[]);
    let signal = get(&controller, "signal");
    let reason = call(&h, "coded", &[&"cancelled".into(), &"cancelled".into()]);
    // Aborted from the progress callback after the second chunk: no third.
    let on_progress = call(&h, "abortAfter", &[&controller, &reason, &2.into()]);
    let (e, log, mut p) = failing(
        &h,
        &pieces,
        None,
        &[
            ("signal", &signal),
            ("onProgress", &on_progress),
            ("progressEveryBytes", &0.into()),
        ],
    )
    .await;
    assert!(e == reason, "the signal's reason, got {e:?}");
    let log = log_strings(&log);
    assert_eq!(log, ["pull", "pull", "cancel", "<value>"], "{log:?}");
    assert_eq!(p.bytes(), 60.0);
    assert!(p.finish().is_ok());

    // Aborted before the call: nothing is read.
    let p = wasm::Pipeline::new(JsValue::UNDEFINED).unwrap();
    let log = Array::new();
    let stream = call(&h, "stream", &[&chunk_array(&pieces), &log]);
    let e = settle(p.push_stream(stream, obj(&[("signal", &signal)])).unwrap())
        .await
        .unwrap_err();
    assert!(e == reason);
    assert_eq!(log.length(), 0);
}

#[wasm_bindgen_test]
async fn input_while_a_stream_is_read_is_refused_as_busy() {
    let h = helpers();
    let input = tricky_export();
    let pieces: Vec<&[u8]> = input.chunks(100).collect();
    let p = wasm::Pipeline::new(options(json!({ "source": "x.csv" }))).unwrap();
    let log = Array::new();
    let stream = call(&h, "stream", &[&chunk_array(&pieces), &log]);
    let running = p.push_stream(stream, None).unwrap();
    let mut p = p;
    for e in [
        p.push(b"x").unwrap_err(),
        p.finish().unwrap_err(),
        p.push_stream(call(&h, "stream", &[&Array::new(), &Array::new()]), None)
            .unwrap_err(),
    ] {
        let (code, message) = super::js_error_code(e);
        assert_eq!(code, "busy", "{message}");
    }
    // drain() and takeRejectsCsv() serve the callbacks meanwhile.
    assert!(p.drain().is_ok());
    settle(running).await.unwrap();
    let report = to_json(&get(&p.finish().unwrap(), "report"));
    assert_eq!(report["bytes"], input.len());
    assert_eq!(report["rows_read"], 5);
}

#[wasm_bindgen_test]
async fn rejects_csv_taken_from_the_drain_callback_is_the_whole_download() {
    let h = helpers();
    let input = tricky_export();
    let o = || options(json!({ "source": "x.csv", "rejectsCsv": true, "skipBatchId": true }));
    let mut whole = wasm::Pipeline::new(o()).unwrap();
    whole.push(&input).unwrap();
    let want = get(&whole.finish().unwrap(), "rejectsCsv")
        .dyn_into::<Uint8Array>()
        .unwrap()
        .to_vec();
    assert!(!want.is_empty());

    let p = wasm::Pipeline::new(o()).unwrap();
    // The callback calls back into the pipeline, as the page's worker does.
    let taken = std::rc::Rc::new(std::cell::RefCell::new(Vec::<u8>::new()));
    let p = std::rc::Rc::new(std::cell::RefCell::new(p));
    let (t, q) = (taken.clone(), p.clone());
    let cb = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |_files: JsValue| {
        let bytes = q.borrow_mut().take_rejects_csv().unwrap();
        t.borrow_mut().extend_from_slice(&bytes);
    });
    let pieces: Vec<&[u8]> = input.chunks(50).collect();
    let stream = call(&h, "stream", &[&chunk_array(&pieces), &Array::new()]);
    let running = p
        .borrow()
        .push_stream(stream, obj(&[("onDrain", cb.as_ref())]))
        .unwrap();
    settle(running).await.unwrap();
    let rest = get(&p.borrow_mut().finish().unwrap(), "rejectsCsv")
        .dyn_into::<Uint8Array>()
        .unwrap()
        .to_vec();
    let mut got = taken.borrow().clone();
    assert!(!got.is_empty(), "the callback took part of the download");
    got.extend_from_slice(&rest);
    assert_eq!(got, want);
}

#[wasm_bindgen_test]
async fn the_sha256_option_compares_all_64_digits() {
    let h = helpers();
    let real = &real_files()[2];
    let native: Value = serde_json::from_str(real.report).unwrap();
    let mut hasher = wasm::BatchHasher::new();
    let log = Array::new();
    let kept = Array::new();
    let pieces: Vec<&[u8]> = real.bytes.chunks(4096).collect();
    let stream = call(&h, "stream", &[&chunk_array(&pieces), &log]);
    let o = obj(&[
        ("onProgress", &call(&h, "recorder", &[&kept])),
        ("progressEveryBytes", &8192.into()),
    ]);
    settle(hasher.hash_stream(stream, o).unwrap())
        .await
        .unwrap();
    let sha = hasher.sha256().unwrap();
    let id = native["batch_id"].as_str().unwrap();
    assert_eq!(&sha[..32], id);
    assert_eq!(kept.length() as usize, real.bytes.len().div_ceil(8192));
    assert_eq!(
        to_json(&kept.get(kept.length() - 1)),
        json!({ "bytes": real.bytes.len() })
    );

    let filler = if sha[32..] == "0".repeat(32) {
        "1"
    } else {
        "0"
    };
    let other = format!("{id}{}", filler.repeat(32));
    for (given, ok) in [(sha.to_uppercase(), true), (other, false)] {
        let p = wasm::Pipeline::new(options(
            json!({ "source": real.name, "batchId": id, "sha256": given }),
        ))
        .unwrap();
        let stream = call(&h, "stream", &[&chunk_array(&pieces), &Array::new()]);
        settle(p.push_stream(stream, None).unwrap()).await.unwrap();
        let mut p = p;
        match (p.finish(), ok) {
            (Ok(r), true) => assert_same(&to_json(&get(&r, "report")), &native, real.name),
            (Err(e), false) => {
                let (code, message) = super::js_error_code(e);
                assert_eq!(code, "batch_id_mismatch");
                assert!(
                    message.starts_with("stage error: the bytes have SHA-256 "),
                    "{message}"
                );
            }
            (r, ok) => panic!("{given}: expected ok={ok}, got {:?}", r.is_ok()),
        }
    }
    let e = wasm::Pipeline::new(options(json!({ "batchId": id, "sha256": "abc" })))
        .err()
        .unwrap();
    assert_eq!(super::js_error_code(e).0, "config");
}
