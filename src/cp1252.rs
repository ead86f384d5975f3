//! Windows-1252, the encoding a spreadsheet on a shop's PC saves in when it
//! does not save UTF-8. Small enough to keep here rather than pull in a
//! general encoding crate (which would triple the WebAssembly size).

/// The characters for bytes 0x80..=0x9F; the five bytes Windows-1252 leaves
/// undefined map to the C1 control of the same number, as browsers do.
const HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// Appends the Windows-1252 reading of `bytes` to `out`.
pub fn decode_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len());
    for &b in bytes {
        let c = match b {
            0x00..=0x7F => b as char,
            0x80..=0x9F => HIGH[(b - 0x80) as usize],
            // Latin-1 and Windows-1252 agree on 0xA0..=0xFF.
            _ => b as char,
        };
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_the_euro_the_pound_and_accents() {
        let mut s = String::new();
        super::decode_into(b"\x80 \xA3 caf\xE9 \x93q\x94 \x81", &mut s);
        assert_eq!(s, "\u{20AC} \u{A3} caf\u{E9} \u{201C}q\u{201D} \u{81}");
    }
}
