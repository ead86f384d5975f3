//! Stage 1: bytes to records.
//!
//! A push parser for RFC 4180 CSV: feed it chunks of any size, it calls you
//! back with each complete record. It keeps no more than one record in
//! memory, so a file of any size streams through in flat memory, and a chunk
//! boundary anywhere (inside a quoted field, between `\r` and `\n`, in the
//! middle of a multi-byte UTF-8 character) does not change the result: the
//! state machine works on bytes and decodes a record only once it is whole.
//!
//! It is lenient the way spreadsheet exports need: `\n`, `\r\n` or `\r` end a
//! record, blank lines are skipped, a UTF-8 byte order mark is dropped, a
//! quote inside an unquoted field is kept as a character, a record that is not
//! valid UTF-8 is read as Windows-1252 (and flagged, so the caller can warn).
//! Each record carries the 1-based physical line it starts on.
//!
//! Kept by hand: `csv` pulls from a `Read` (a browser or a worker has chunks
//! to push), and `csv-core`, which takes pushes, would still need this
//! module's record cap, line tracking and Windows-1252 fallback around it;
//! this one is fuzzed chunked against one-shot (`fuzz/run`).

use memchr::{memchr2, memchr3};

/// Limits of the reader. Both keep memory bounded on hostile input.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Longest record kept, in bytes. Longer records are reported as
    /// `record_too_long` with their fields dropped.
    pub max_record_bytes: usize,
    /// Most fields in one record.
    pub max_fields: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_record_bytes: 64 * 1024,
            max_fields: 512,
        }
    }
}

/// One record as read: the fields, decoded, and where it starts.
#[derive(Debug)]
pub struct RawRecord<'a> {
    text: &'a str,
    ends: &'a [usize],
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// 0-based byte offset where the record starts.
    pub byte: u64,
    /// The bytes were not valid UTF-8 and were read as Windows-1252.
    pub reencoded: bool,
    /// The record exceeded [`Config::max_record_bytes`] or
    /// [`Config::max_fields`]; its fields are not available.
    pub too_long: bool,
    /// The input ended inside a quoted field.
    pub unterminated_quote: bool,
    /// Line breaks inside quoted fields: legal CSV, but no till writes
    /// them, so they mean a quote left open that swallowed the next lines.
    pub line_breaks: u32,
}

impl<'a> RawRecord<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the record has no fields (only when `too_long`).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th field (0-based).
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).map(move |i| self.get(i).unwrap_or(""))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    StartRecord,
    StartField,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// The push parser. See the [module docs](self).
#[derive(Debug)]
pub struct Reader {
    config: Config,
    state: State,
    /// Bytes of the current record's fields, back to back.
    out: Vec<u8>,
    /// End offset of each field in `out`.
    ends: Vec<usize>,
    /// Re-encoded copy for records that were not UTF-8.
    decoded: String,
    decoded_ends: Vec<usize>,
    /// Count of `\n` consumed so far.
    newlines: u64,
    /// Bytes consumed so far (the BOM included).
    offset: u64,
    record_line: u64,
    record_byte: u64,
    too_long: bool,
    /// Line breaks inside quotes in the current record.
    line_breaks: u32,
    /// The last record ended on `\r`, so a `\n` next completes its CRLF.
    ended_on_cr: bool,
    /// Lines with nothing on them, skipped.
    empty_lines: u64,
    /// Leading bytes held back until we know whether they are a BOM.
    bom: Vec<u8>,
    bom_done: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes of an unquoted field looked at one by one before a vectorised
/// search takes over: a till's fields are mostly shorter.
const SHORT_FIELD: usize = 16;

impl Reader {
    /// A reader with the given limits.
    pub fn new(config: Config) -> Reader {
        Reader {
            config,
            state: State::StartRecord,
            out: Vec::with_capacity(1024),
            ends: Vec::with_capacity(16),
            decoded: String::new(),
            decoded_ends: Vec::new(),
            newlines: 0,
            offset: 0,
            record_line: 1,
            record_byte: 0,
            too_long: false,
            line_breaks: 0,
            ended_on_cr: false,
            empty_lines: 0,
            bom: Vec::with_capacity(3),
            bom_done: false,
        }
    }

    /// Physical lines seen so far (a final line without `\n` counts once it
    /// is finished).
    pub fn lines(&self) -> u64 {
        self.newlines
    }

    /// Empty lines skipped so far (lines of only commas or spaces are
    /// records; the caller tells those apart).
    pub fn empty_lines(&self) -> u64 {
        self.empty_lines
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Feeds a chunk; `emit` is called for each record completed by it. An
    /// error returned by `emit` stops the push and is returned.
    pub fn push<E>(
        &mut self,
        mut chunk: &[u8],
        emit: &mut impl FnMut(&RawRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.bom_done {
            // The BOM may arrive split over chunks: hold back a prefix of it.
            while !chunk.is_empty() && self.bom.len() < 3 && chunk[0] == BOM[self.bom.len()] {
                self.bom.push(chunk[0]);
                chunk = &chunk[1..];
            }
            if self.bom.len() == 3 {
                self.offset += 3;
                self.bom.clear();
                self.bom_done = true;
            } else if !chunk.is_empty() {
                // Not a BOM after all: replay what was held back.
                self.bom_done = true;
                let held = std::mem::take(&mut self.bom);
                self.parse(&held, emit)?;
            } else {
                return Ok(());
            }
        }
        self.parse(chunk, emit)
    }

    /// Ends the input: flushes a last record that has no final newline.
    pub fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(&RawRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.bom_done {
            self.bom_done = true;
            let held = std::mem::take(&mut self.bom);
            self.parse(&held, emit)?;
        }
        let unterminated = matches!(self.state, State::Quoted);
        match self.state {
            State::StartRecord => Ok(()),
            _ => {
                self.end_field();
                self.state = State::StartRecord;
                // The last line had no newline; count it as a line all the same.
                self.newlines += 1;
                self.emit_record(unterminated, emit)
            }
        }
    }

    fn parse<E>(
        &mut self,
        chunk: &[u8],
        emit: &mut impl FnMut(&RawRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut i = 0;
        let base = self.offset;
        while i < chunk.len() {
            match self.state {
                State::StartRecord => {
                    let b = chunk[i];
                    if b == b'\n' {
                        if !std::mem::take(&mut self.ended_on_cr) {
                            self.empty_lines += 1;
                        }
                        self.newlines += 1;
                        i += 1;
                    } else if b == b'\r' {
                        i += 1;
                    } else {
                        self.ended_on_cr = false;
                        self.record_line = self.newlines + 1;
                        self.record_byte = base + i as u64;
                        self.state = State::StartField;
                    }
                }
                State::StartField => {
                    let b = chunk[i];
                    if b == b'"' {
                        self.state = State::Quoted;
                        i += 1;
                    } else if b == b',' {
                        // An empty field, ended here rather than by a
                        // search: a hostile row may hold 511 of them.
                        self.end_field();
                        i += 1;
                    } else {
                        self.state = State::Unquoted;
                    }
                }
                State::Unquoted => {
                    let rest = &chunk[i..];
                    // Most fields are short: look at the first bytes one by
                    // one before paying memchr's set-up.
                    let near = rest.len().min(SHORT_FIELD);
                    let found = match rest[..near]
                        .iter()
                        .position(|&b| matches!(b, b',' | b'\n' | b'\r'))
                    {
                        Some(n) => Some(n),
                        None => memchr3(b',', b'\n', b'\r', &rest[near..]).map(|n| n + near),
                    };
                    match found {
                        None => {
                            self.put(rest);
                            i = chunk.len();
                        }
                        Some(n) => {
                            self.put(&rest[..n]);
                            let b = rest[n];
                            i += n + 1;
                            self.end_field();
                            if b == b',' {
                                self.state = State::StartField;
                            } else {
                                if b == b'\n' {
                                    self.newlines += 1;
                                }
                                self.ended_on_cr = b == b'\r';
                                self.state = State::StartRecord;
                                self.offset = base + i as u64;
                                self.emit_record(false, emit)?;
                            }
                        }
                    }
                }
                State::Quoted => {
                    let rest = &chunk[i..];
                    match memchr2(b'"', b'\n', rest) {
                        Some(n) if rest[n] == b'\n' => {
                            // A line break inside quotes: part of the field.
                            self.put(&rest[..=n]);
                            self.newlines += 1;
                            self.line_breaks += 1;
                            i += n + 1;
                        }
                        Some(n) => {
                            self.put(&rest[..n]);
                            i += n + 1;
                            self.state = State::QuoteInQuoted;
                        }
                        None => {
                            self.put(rest);
                            i = chunk.len();
                        }
                    }
                }
                State::QuoteInQuoted => {
                    let b = chunk[i];
                    i += 1;
                    match b {
                        b'"' => {
                            self.put(b"\"");
                            self.state = State::Quoted;
                        }
                        b',' => {
                            self.end_field();
                            self.state = State::StartField;
                        }
                        b'\n' | b'\r' => {
                            if b == b'\n' {
                                self.newlines += 1;
                            }
                            self.ended_on_cr = b == b'\r';
                            self.end_field();
                            self.state = State::StartRecord;
                            self.offset = base + i as u64;
                            self.emit_record(false, emit)?;
                        }
                        _ => {
                            // `"ab"cd`: keep going as an unquoted field.
                            self.put(&[b]);
                            self.state = State::Unquoted;
                        }
                    }
                }
            }
        }
        self.offset = base + chunk.len() as u64;
        Ok(())
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.too_long {
            return;
        }
        if self.out.len() + bytes.len() > self.config.max_record_bytes {
            self.too_long = true;
            return;
        }
        self.out.extend_from_slice(bytes);
    }

    #[inline]
    fn end_field(&mut self) {
        if self.too_long {
            return;
        }
        if self.ends.len() >= self.config.max_fields {
            self.too_long = true;
            return;
        }
        self.ends.push(self.out.len());
    }

    fn emit_record<E>(
        &mut self,
        unterminated_quote: bool,
        emit: &mut impl FnMut(&RawRecord<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let too_long = self.too_long;
        if too_long {
            self.out.clear();
            self.ends.clear();
        }
        let result = match std::str::from_utf8(&self.out) {
            Ok(text) => emit(&RawRecord {
                text,
                ends: &self.ends,
                line: self.record_line,
                byte: self.record_byte,
                reencoded: false,
                too_long,
                unterminated_quote,
                line_breaks: self.line_breaks,
            }),
            Err(_) => {
                self.decoded.clear();
                self.decoded_ends.clear();
                let mut start = 0;
                for &end in &self.ends {
                    crate::cp1252::decode_into(&self.out[start..end], &mut self.decoded);
                    self.decoded_ends.push(self.decoded.len());
                    start = end;
                }
                emit(&RawRecord {
                    text: &self.decoded,
                    ends: &self.decoded_ends,
                    line: self.record_line,
                    byte: self.record_byte,
                    reencoded: true,
                    too_long,
                    unterminated_quote,
                    line_breaks: self.line_breaks,
                })
            }
        };
        self.out.clear();
        self.ends.clear();
        self.too_long = false;
        self.line_breaks = 0;
        result
    }
}

/// Reads a whole in-memory input and collects owned records; for tests and
/// small inputs.
pub fn records(input: &[u8], config: Config) -> Vec<(u64, Vec<String>)> {
    let mut reader = Reader::new(config);
    let mut out = Vec::new();
    let mut emit = |r: &RawRecord<'_>| -> Result<(), ()> {
        out.push((r.line, r.iter().map(str::to_owned).collect()));
        Ok(())
    };
    let _ = reader.push(input, &mut emit);
    let _ = reader.finish(&mut emit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(input: &[u8]) -> Vec<(u64, Vec<String>)> {
        records(input, Config::default())
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn table() {
        // (input, each record as (line, fields))
        type Records = Vec<(u64, Vec<String>)>;
        let cases: &[(&[u8], Records)] = &[
            (
                b"a,b\nc,d\n",
                vec![(1, s(&["a", "b"])), (2, s(&["c", "d"]))],
            ),
            (
                b"a,b\r\nc,d",
                vec![(1, s(&["a", "b"])), (2, s(&["c", "d"]))],
            ),
            (b"\n\na\n\n\nb\n", vec![(3, s(&["a"])), (6, s(&["b"]))]),
            (b"\xEF\xBB\xBFa,b\n", vec![(1, s(&["a", "b"]))]),
            (b"\"x, \"\"y\"\"\",z\n", vec![(1, s(&["x, \"y\"", "z"]))]),
            (
                b"\"multi\nline\",z\nnext\n",
                vec![(1, s(&["multi\nline", "z"])), (3, s(&["next"]))],
            ),
            (b"a,,\n", vec![(1, s(&["a", "", ""]))]),
            (b",,\r\n,\n", vec![(1, s(&["", "", ""])), (2, s(&["", ""]))]),
            // Fields longer than the byte-by-byte look (16 bytes).
            (
                b"0123456789abcdefghij,0123456789abcdefghij\r\nx\n",
                vec![
                    (1, s(&["0123456789abcdefghij", "0123456789abcdefghij"])),
                    (2, s(&["x"])),
                ],
            ),
            (b"a,\"b\"c\n", vec![(1, s(&["a", "bc"]))]),
            (b"a\rb\r", vec![(1, s(&["a"])), (1, s(&["b"]))]),
            (b"caf\xE9\n", vec![(1, s(&["café"]))]),
            (b"", vec![]),
            (
                b"\xEF\xBB",
                vec![(1, s(&["\u{EF}\u{BB}"]))]
                    .into_iter()
                    .map(|(l, _)| (l, vec!["ï»".to_string()]))
                    .collect(),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                &rec(input),
                want,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn every_split_point_gives_the_same_records() {
        let input = "\u{feff}25/08/2021 09:00,Leeds,\"Large Latte - 2.45, Regular Café - 1.20\",3.65,CARD,\r\n\"q\"\"x\",é\r\n\nlast".as_bytes();
        let whole = rec(input);
        for split in 0..=input.len() {
            let mut reader = Reader::new(Config::default());
            let mut got = Vec::new();
            let mut emit = |r: &RawRecord<'_>| -> Result<(), ()> {
                got.push((r.line, r.iter().map(str::to_owned).collect::<Vec<_>>()));
                Ok(())
            };
            reader.push(&input[..split], &mut emit).unwrap();
            reader.push(&input[split..], &mut emit).unwrap();
            reader.finish(&mut emit).unwrap();
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn long_records_are_cut_and_flagged() {
        let mut input = vec![b'x'; 200];
        input.extend_from_slice(b"\nok\n");
        let mut reader = Reader::new(Config {
            max_record_bytes: 100,
            max_fields: 4,
        });
        let mut got = Vec::new();
        let mut emit = |r: &RawRecord<'_>| -> Result<(), ()> {
            got.push((r.line, r.too_long, r.len()));
            Ok(())
        };
        reader.push(&input, &mut emit).unwrap();
        reader.push(b"a,b,c,d,e\n", &mut emit).unwrap();
        reader.finish(&mut emit).unwrap();
        assert_eq!(got, vec![(1, true, 0), (2, false, 1), (3, true, 0)]);
    }

    #[test]
    fn unterminated_quote_is_flagged() {
        let mut reader = Reader::new(Config::default());
        let mut flags = Vec::new();
        let mut emit = |r: &RawRecord<'_>| -> Result<(), ()> {
            flags.push(r.unterminated_quote);
            Ok(())
        };
        reader.push(b"a,\"open\nstill", &mut emit).unwrap();
        reader.finish(&mut emit).unwrap();
        assert_eq!(flags, vec![true]);
    }
}
