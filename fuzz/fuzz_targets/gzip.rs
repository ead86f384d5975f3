//! The gzip writer of the table files (src/deflate.rs), over any rows: what
//! it writes must decode, with a strict decoder, to exactly the text given,
//! after any sync flushes, and be one gzip member.
#![no_main]

use cafe_etl::deflate::{Column, GzipWriter};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

fuzz_target!(|data: &[u8]| {
    let mut gz = GzipWriter::new(Vec::new());
    let mut columns = vec![Column::default(); 8];
    let mut expected = Vec::new();
    // Lines are rows and commas part fields; a line starting with 0xff is
    // a sync flush, one starting with 0xfe is plain text through `Write`.
    // Rows are repeated to reach past blocks and the 32 KiB window.
    let repeat = 1 + data.first().map_or(0, |b| (b % 4) as usize) * 40;
    for _ in 0..repeat {
        for line in data.split(|&b| b == b'\n') {
            match line.first() {
                Some(0xff) => {
                    gz.flush().unwrap();
                    continue;
                }
                Some(0xfe) => {
                    gz.write_all(&line[1..]).unwrap();
                    expected.extend_from_slice(&line[1..]);
                    continue;
                }
                _ => {}
            }
            let mut text = line.to_vec();
            text.push(b'\n');
            let mut fields = Vec::new();
            let mut start = 0u32;
            for (i, &b) in text.iter().enumerate() {
                if b == b',' || b == b'\n' {
                    fields.push((start, i as u32));
                    start = i as u32 + 1;
                }
            }
            fields.truncate(columns.len());
            gz.row(&mut columns[..fields.len()], &text, &fields);
            expected.extend_from_slice(&text);
        }
    }
    let bytes = gz.finish().unwrap();
    let mut d = flate2::read::GzDecoder::new(&bytes[..]);
    let mut got = Vec::new();
    d.read_to_end(&mut got).expect("valid gzip");
    assert!(got == expected, "decoded text differs");
    assert!(d.into_inner().is_empty(), "bytes after the gzip member");
});
