//! The WebAssembly binding in headless Chromium (`wasm_bindgen_test_configure!
//! (run_in_browser)`, run by scripts/test-wasm through chromedriver): the
//! shared checks of `wasm_common`, plus what only a browser has: a `Blob`
//! read with `stream()` in the chunks the browser chooses, as the page's Web
//! Worker does, and the staged gzip opened by the browser's own
//! `DecompressionStream`, as the page's rejected-rows download does.
#![cfg(target_arch = "wasm32")]

mod wasm_common;

use cafe_etl::wasm;
use js_sys::{Array, Promise, Uint8Array};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use wasm_common::{assert_same, assert_same_text, files, get, options, real_files, to_json};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen]
extern "C" {
    type Blob;
    #[wasm_bindgen(constructor)]
    fn new(parts: &Array) -> Blob;
    #[wasm_bindgen(method)]
    fn stream(this: &Blob) -> ReadableStream;

    type ReadableStream;
    #[wasm_bindgen(method, js_name = getReader)]
    fn get_reader(this: &ReadableStream) -> Reader;
    #[wasm_bindgen(method, js_name = pipeThrough)]
    fn pipe_through(this: &ReadableStream, pair: &JsValue) -> ReadableStream;

    type Reader;
    #[wasm_bindgen(method)]
    fn read(this: &Reader) -> Promise;

    type DecompressionStream;
    #[wasm_bindgen(constructor)]
    fn new(format: &str) -> DecompressionStream;
}

fn blob(bytes: &[u8]) -> Blob {
    Blob::new(&Array::of1(&Uint8Array::from(bytes)))
}

/// Every chunk of a stream, as the browser hands them out.
async fn chunks(stream: ReadableStream) -> Vec<Vec<u8>> {
    let reader = stream.get_reader();
    let mut out = Vec::new();
    loop {
        let step = JsFuture::from(reader.read()).await.unwrap();
        if get(&step, "done").as_bool().unwrap() {
            return out;
        }
        out.push(
            get(&step, "value")
                .dyn_into::<Uint8Array>()
                .unwrap()
                .to_vec(),
        );
    }
}

#[wasm_bindgen_test]
async fn a_blob_streamed_in_browser_chunks_gives_the_one_shot_result() {
    // About 4.7 MB: the legacy export (CRLF line ends) sixty times over, so
    // the browser splits it into chunks at places of its choosing (Chromium:
    // about 1 MiB for a Blob in memory, 64 KiB for a file on disk).
    let real = real_files()
        .into_iter()
        .find(|r| r.name == "isle-of-wight_2020-10-01.csv")
        .unwrap();
    let input: Vec<u8> = real.bytes.repeat(60);
    let parts = chunks(blob(&input).stream()).await;
    assert!(parts.len() > 2, "the browser gave {} chunks", parts.len());
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), input.len());

    let source = real.name;
    let expected = to_json(&wasm::check(&input, options(json!({ "source": source }))).unwrap());
    assert_eq!(expected["rows_read"].as_u64().unwrap(), 60 * 480);

    // As the page's worker does it: a check pipeline and a hasher side by side.
    let mut p = wasm::Pipeline::new(options(json!({ "source": source }))).unwrap();
    let mut h = wasm::BatchHasher::new();
    for part in &parts {
        p.push(part).unwrap();
        h.update(part).unwrap();
    }
    let result = p.finish().unwrap();
    assert_same(
        &to_json(&get(&result, "report")),
        &expected,
        "streamed check",
    );
    let sha = h.sha256().unwrap();
    assert_eq!(&sha[..32], expected["batch_id"].as_str().unwrap());
    assert_eq!(sha.len(), 64);
}

#[wasm_bindgen_test]
async fn the_browser_gunzips_the_staged_files_to_the_native_rows() {
    for real in real_files() {
        let result = wasm::transform(real.bytes, options(json!({ "source": real.name }))).unwrap();
        for ((path, gz), (_, expected)) in files(&result).iter().zip(real.tables.iter()) {
            let pair: JsValue = DecompressionStream::new("gzip").into();
            let parts = chunks(blob(gz).stream().pipe_through(&pair)).await;
            let text = String::from_utf8(parts.concat()).unwrap();
            assert_same_text(
                &text,
                expected,
                &format!("{}: {path} through DecompressionStream", real.name),
            );
        }
        let report: Value = to_json(&get(&result, "report"));
        assert!(report["rows_read"].as_u64().unwrap() > 0);
    }
}

#[wasm_bindgen_test]
async fn push_stream_reads_a_blob_in_browser_chunks_as_the_page_worker_does() {
    // The page's worker hands `File.stream()` to the core's reader: the
    // browser's own chunks and stream, no loop in between.
    let real = real_files()
        .into_iter()
        .find(|r| r.name == "isle-of-wight_2020-10-01.csv")
        .unwrap();
    let input: Vec<u8> = real.bytes.repeat(60);
    let expected = to_json(&wasm::check(&input, options(json!({ "source": real.name }))).unwrap());

    let mut p = wasm::Pipeline::new(options(json!({ "source": real.name }))).unwrap();
    JsFuture::from(p.push_stream(blob(&input).stream().into(), None).unwrap())
        .await
        .unwrap();
    assert_eq!(p.bytes(), input.len() as f64);
    let result = p.finish().unwrap();
    assert_same(
        &to_json(&get(&result, "report")),
        &expected,
        "pushStream of a Blob",
    );

    let mut h = wasm::BatchHasher::new();
    JsFuture::from(h.hash_stream(blob(&input).stream().into(), None).unwrap())
        .await
        .unwrap();
    let sha = h.sha256().unwrap();
    assert_eq!(&sha[..32], expected["batch_id"].as_str().unwrap());
}
