//! Any bytes, cut into chunks anywhere, through the whole pipeline (read,
//! clean, validate, transform, stage): no panic, conservation holds, the
//! chunked result equals the one-shot result, and the staged files are gzip.
#![no_main]

use cafe_etl::{Config, Pipeline};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so cuts land everywhere.
    let (chunk, input) = match data.split_first() {
        Some((c, rest)) => (1 + *c as usize, rest),
        None => (1, data),
    };
    let mut config = Config::default();
    config.read.max_record_bytes = 4096;
    config.validate.max_issues = 50;
    config.clean.customer_key_secret = Some("fuzz".into());
    let whole = cafe_etl::transform(input, "leeds_25-08-2021_09-00-00.csv", &config).expect("transform never fails in memory");
    let r = &whole.report;
    assert_eq!(r.rows_read, r.rows_staged + r.rows_rejected);
    assert_eq!(r.tables.transactions, r.rows_staged);
    assert_eq!(r.tables.rejects, r.rows_rejected);
    assert!(r.issues.len() <= 51);

    let id = cafe_etl::batch_id(input);
    let mut p = Pipeline::transform(config, "leeds_25-08-2021_09-00-00.csv", &id, |_| Vec::new()).unwrap();
    for c in input.chunks(chunk) {
        p.push(c).unwrap();
    }
    let f = p.finish().unwrap();
    assert_eq!(&f.report, r);
    if !r.refused {
        for (t, (_, bytes)) in f.tables.unwrap().iter().zip(&whole.files) {
            assert!(t == bytes);
        }
    }
});
