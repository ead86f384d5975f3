//! A gzip writer (RFC 1952, one member, one deflate stream per RFC 1951)
//! for table files whose writer knows where its values repeat.
//!
//! A general compressor finds repeats by hashing every byte it is given:
//! zlib-ng's fastest level spent about 40% of `transform` doing so. A table
//! writer already knows where to look: the batch id of the row above, the
//! last place a store id or a product id was written, the transaction id of
//! the item above, the date of the timestamp above. So each column remembers
//! where its recent values were written ([`Column`]), and a row is coded
//! with back-references found only at the starts of its fields, each
//! extended as far as the bytes agree (often across several fields: a
//! product id, its quantity and price). Nothing else is searched.
//!
//! Each block (about 128 KiB of text) is coded with its own Huffman codes,
//! from the block's back-reference counts and its predecessor's literal
//! counts, so a hexadecimal id costs about 4 bits a character where zlib's
//! fast levels spend 8. The output is an ordinary gzip file:
//! one member, dynamic-Huffman deflate blocks, the CRC-32 and length
//! trailer. Correctness never rests on the hints: a back-reference is only
//! emitted for bytes compared equal.

use std::io::{self, Write};

/// How far back a deflate back-reference may reach.
const WINDOW: usize = 32 * 1024;
/// Uncompressed bytes per deflate block: large enough that a block's code
/// tables (under 100 bytes) cost nothing, small enough to follow the data.
const BLOCK: usize = 128 * 1024;
/// Compressed bytes gathered before a write to the inner writer.
const OUT_CHUNK: usize = 64 * 1024;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
/// Shorter back-references cost more bits than the literals they replace
/// once literals have Huffman codes of 4-6 bits.
const GOOD_MATCH: usize = 6;
/// Slots per column: direct-mapped by a hash of the value.
const SLOTS: usize = 128;

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which code-length code lengths are sent (RFC 1951, 3.2.7).
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Length code (0..=28, to add to 257) of every match length 0..=258.
const LEN_SYM: [u8; 259] = {
    let mut t = [0u8; 259];
    let mut s = 0;
    while s < 28 {
        let mut l = LEN_BASE[s] as usize;
        while l < LEN_BASE[s] as usize + (1 << LEN_EXTRA[s]) && l <= 257 {
            t[l] = s as u8;
            l += 1;
        }
        s += 1;
    }
    // 258 has a code of its own; 284 with all extra bits set is not used.
    t[258] = 28;
    t
};

#[inline]
fn dist_sym(dist: usize) -> usize {
    let d = dist - 1;
    if d < 4 {
        d
    } else {
        let top = (usize::BITS - 1 - d.leading_zeros()) as usize;
        2 * top + ((d >> (top - 1)) & 1)
    }
}

/// One step of a block: literals taken from the window in order, or a
/// back-reference.
#[derive(Clone, Copy, Debug)]
enum Op {
    Literals(u32),
    Match { len: u16, dist: u16 },
}

/// Where one column's recent values were written, to refer back to them.
///
/// Give each column of a table its own: values of one column repeat each
/// other (a store id, a price), not values of another.
#[derive(Clone, Debug)]
pub struct Column {
    /// Stream position + 1 of a recent value with this slot's hash; 0: none.
    slots: [u64; SLOTS],
    /// Stream position + 1 of the column's last value.
    last: u64,
}

impl Default for Column {
    fn default() -> Column {
        Column {
            slots: [0; SLOTS],
            last: 0,
        }
    }
}

#[inline]
fn slot(value: &[u8]) -> usize {
    let n = value.len();
    let (a, b) = if n >= 8 {
        (
            u64::from_le_bytes(value[..8].try_into().unwrap()),
            u64::from_le_bytes(value[n - 8..].try_into().unwrap()),
        )
    } else {
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(value);
        (u64::from_le_bytes(a), 0)
    };
    let h = (a ^ b.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Bits gathered into bytes, first bit lowest (RFC 1951, 3.1.1).
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    #[inline(always)]
    fn put(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 32 && value >> n == 0);
        self.acc |= value << self.n;
        self.n += n;
        if self.n >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }

    /// Pads to a byte boundary and moves the whole bytes out.
    fn align(&mut self) {
        while self.n > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n = self.n.saturating_sub(8);
        }
        self.acc = 0;
    }
}

/// A gzip stream written a row at a time ([`GzipWriter::row`]), or as plain
/// text through [`Write`].
///
/// ```
/// use cafe_etl::deflate::{Column, GzipWriter};
/// use std::io::Read;
///
/// let mut gz = GzipWriter::new(Vec::new());
/// let mut columns = [Column::default(), Column::default()];
/// for row in ["Leeds,2.45\n", "York,2.45\n", "Leeds,2.45\n"] {
///     let comma = row.find(',').unwrap() as u32;
///     let fields = [(0, comma), (comma + 1, row.len() as u32 - 1)];
///     gz.row(&mut columns, row.as_bytes(), &fields);
/// }
/// let bytes = gz.finish().unwrap();
/// let mut text = String::new();
/// flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
/// assert_eq!(text, "Leeds,2.45\nYork,2.45\nLeeds,2.45\n");
/// ```
pub struct GzipWriter<W: Write> {
    inner: W,
    bits: Bits,
    /// Uncompressed text: the last [`WINDOW`] bytes before the current
    /// block, then the block's own.
    window: Vec<u8>,
    block_start: usize,
    /// Window index where literals not yet turned into ops begin.
    pending: usize,
    /// Stream position of `window[0]`.
    base: u64,
    ops: Vec<Op>,
    /// Window ranges of the current row's values.
    fields: Vec<(u32, u32)>,
    lit_freq: [u32; 286],
    dist_freq: [u32; 30],
    /// How often each byte was a literal in the last block. A block's
    /// literal codes are built from its predecessor's counts (each plus
    /// one, so every byte has a code): table text changes slowly, and the
    /// counting then rides along with the coding instead of being a pass of
    /// its own. Only the first block counts its own literals first.
    last_literals: Option<Box<[u32; 256]>>,
    crc: flate2::Crc,
    /// Set once the stream has been ended, or an inner write failed and
    /// the stream cannot be trusted.
    done: bool,
}

impl<W: Write> std::fmt::Debug for GzipWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipWriter")
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl<W: Write> GzipWriter<W> {
    /// Starts a gzip stream into `inner`. The header has no name and mtime
    /// 0, so the same text gives the same bytes on every run and machine.
    pub fn new(inner: W) -> GzipWriter<W> {
        let mut out = Vec::with_capacity(OUT_CHUNK + BLOCK);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        GzipWriter {
            inner,
            bits: Bits { out, acc: 0, n: 0 },
            window: Vec::with_capacity(WINDOW + BLOCK + 4096),
            block_start: 0,
            pending: 0,
            base: 0,
            ops: Vec::with_capacity(BLOCK / 8),
            fields: Vec::with_capacity(16),
            lit_freq: [0; 286],
            dist_freq: [0; 30],
            last_literals: None,
            crc: flate2::Crc::new(),
            done: false,
        }
    }

    /// Uncompressed bytes written so far.
    #[inline]
    pub fn position(&self) -> u64 {
        self.base + self.window.len() as u64
    }

    /// The inner writer, to drain what has been compressed so far.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Turns the bytes from `pending` up to `to` into a literal run.
    #[inline]
    fn literals_to(&mut self, to: usize) {
        if to > self.pending {
            let n = (to - self.pending) as u32;
            match self.ops.last_mut() {
                Some(Op::Literals(m)) => *m += n,
                _ => self.ops.push(Op::Literals(n)),
            }
            self.pending = to;
        }
    }

    /// Records a back-reference for `len` bytes at `pending`, `dist` back
    /// (callers cap `len` at [`MAX_MATCH`]).
    #[inline]
    fn matched(&mut self, dist: usize, len: usize) {
        debug_assert!((1..=WINDOW).contains(&dist) && (MIN_MATCH..=MAX_MATCH).contains(&len));
        self.lit_freq[257 + LEN_SYM[len] as usize] += 1;
        self.dist_freq[dist_sym(dist)] += 1;
        self.ops.push(Op::Match {
            len: len as u16,
            dist: dist as u16,
        });
        self.pending += len;
    }

    /// How many bytes from window index `at` repeat those `dist` back, at
    /// most `max`.
    #[inline]
    fn agree(&self, at: usize, dist: usize, max: usize) -> usize {
        let a = &self.window[at - dist..at - dist + max];
        let b = &self.window[at..at + max];
        let mut n = 0;
        while n + 8 <= max {
            let x = u64::from_le_bytes(a[n..n + 8].try_into().unwrap())
                ^ u64::from_le_bytes(b[n..n + 8].try_into().unwrap());
            if x != 0 {
                return n + (x.trailing_zeros() / 8) as usize;
            }
            n += 8;
        }
        while n < max && a[n] == b[n] {
            n += 1;
        }
        n
    }

    /// The distance back from window index `at` to a value a column saw at
    /// stream position `seen - 1`, if a back-reference can reach it.
    #[inline]
    fn reach(&self, at: usize, seen: u64) -> Option<usize> {
        let pos = self.base + at as u64;
        if seen == 0 || seen - 1 < self.base || seen > pos {
            return None;
        }
        let dist = pos - (seen - 1);
        (dist <= WINDOW as u64).then_some(dist as usize)
    }

    /// Appends a value of the next column of the current row.
    #[inline(always)]
    pub fn value(&mut self, value: &[u8]) {
        let start = self.window.len();
        self.window.extend_from_slice(value);
        self.fields.push((start as u32, self.window.len() as u32));
    }

    /// Appends a value of the next column of the current row, written by
    /// `write` (to quote it, say).
    #[inline]
    pub fn value_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.window.len();
        write(&mut self.window);
        self.fields.push((start as u32, self.window.len() as u32));
    }

    /// Appends bytes that belong to no column: separators, line ends.
    #[inline]
    pub fn separator(&mut self, b: u8) {
        self.window.push(b);
    }

    /// Appends one row. `fields[k]` is the byte range (start, end) of
    /// column `k`'s value in `text`, in order; the bytes between fields
    /// (separators, the line end) are written as they are.
    pub fn row(&mut self, columns: &mut [Column], text: &[u8], fields: &[(u32, u32)]) {
        let start = self.window.len() as u32;
        self.window.extend_from_slice(text);
        self.fields
            .extend(fields.iter().map(|&(a, b)| (start + a, start + b)));
        self.end_row(columns);
    }

    /// Ends the current row (its values given by [`GzipWriter::value`] and
    /// [`GzipWriter::separator`]), `columns[k]` being what column `k` last
    /// wrote.
    ///
    /// Where a value starts, the column's recent value of the same text (or
    /// its last value, for a shared beginning) is tried as a back-reference,
    /// extended past the value while the bytes agree.
    pub fn end_row(&mut self, columns: &mut [Column]) {
        let row_end = self.window.len();
        let fields = std::mem::take(&mut self.fields);
        for (column, &(start, end)) in columns.iter_mut().zip(&fields) {
            let (at, end) = (start as usize, end as usize);
            if end - at < MIN_MATCH {
                continue;
            }
            let pos = self.base + at as u64 + 1;
            let s = slot(&self.window[at..end]);
            let seen = column.slots[s];
            column.slots[s] = pos;
            let last = std::mem::replace(&mut column.last, pos);
            if at < self.pending {
                continue; // inside a back-reference already
            }
            let max = (row_end - at).min(MAX_MATCH);
            let mut best = (0, 0);
            if let Some(dist) = self.reach(at, seen) {
                best = (self.agree(at, dist, max), dist);
            }
            // The column's last value, for a shared beginning (a date), unless
            // the whole value has been found already.
            if best.0 < end - at && last != seen {
                if let Some(dist) = self.reach(at, last) {
                    let n = self.agree(at, dist, max);
                    if n > best.0 {
                        best = (n, dist);
                    }
                }
            }
            if best.0 >= GOOD_MATCH {
                self.literals_to(at);
                self.matched(best.1, best.0);
            }
        }
        self.fields = fields;
        self.fields.clear();
        self.literals_to(row_end);
        if row_end - self.block_start >= BLOCK {
            self.end_block(false);
        }
    }

    /// Codes the pending ops as one dynamic-Huffman block.
    fn end_block(&mut self, last: bool) {
        debug_assert_eq!(self.pending, self.window.len());
        self.crc.update(&self.window[self.block_start..]);

        match &self.last_literals {
            Some(last) => {
                for (f, &n) in self.lit_freq.iter_mut().zip(last.iter()) {
                    *f = n + 1;
                }
            }
            None => count_literals(
                &mut self.lit_freq,
                &self.ops,
                &self.window[self.block_start..],
            ),
        }
        self.lit_freq[256] += 1; // end of block
        at_least_two(&mut self.lit_freq);
        at_least_two(&mut self.dist_freq);
        let mut lit_len = [0u8; 286];
        let mut dist_len = [0u8; 30];
        huffman_lengths(&self.lit_freq, 15, &mut lit_len);
        huffman_lengths(&self.dist_freq, 15, &mut dist_len);
        let mut lit_code = [0u16; 286];
        let mut dist_code = [0u16; 30];
        canonical_codes(&lit_len, &mut lit_code);
        canonical_codes(&dist_len, &mut dist_code);

        let n_lit = 257.max(lit_len.iter().rposition(|&l| l > 0).map_or(0, |i| i + 1));
        let n_dist = 1.max(dist_len.iter().rposition(|&l| l > 0).map_or(0, |i| i + 1));
        let mut lens = [0u8; 286 + 30];
        lens[..n_lit].copy_from_slice(&lit_len[..n_lit]);
        lens[n_lit..n_lit + n_dist].copy_from_slice(&dist_len[..n_dist]);
        let mut rle = Vec::with_capacity(n_lit + n_dist);
        run_lengths(&lens[..n_lit + n_dist], &mut rle);
        let mut cl_freq = [0u32; 19];
        for &(sym, _) in &rle {
            cl_freq[sym as usize] += 1;
        }
        at_least_two(&mut cl_freq);
        let mut cl_len = [0u8; 19];
        let mut cl_code = [0u16; 19];
        huffman_lengths(&cl_freq, 7, &mut cl_len);
        canonical_codes(&cl_len, &mut cl_code);
        let n_cl = 4.max(
            CL_ORDER
                .iter()
                .rposition(|&s| cl_len[s] > 0)
                .map_or(0, |i| i + 1),
        );

        let bits = &mut self.bits;
        bits.put(last as u64, 1);
        bits.put(2, 2); // dynamic Huffman
        bits.put((n_lit - 257) as u64, 5);
        bits.put((n_dist - 1) as u64, 5);
        bits.put((n_cl - 4) as u64, 4);
        for &s in &CL_ORDER[..n_cl] {
            bits.put(cl_len[s] as u64, 3);
        }
        for &(sym, extra) in &rle {
            let s = sym as usize;
            bits.put(cl_code[s] as u64, cl_len[s] as u32);
            match sym {
                16 => bits.put(extra as u64, 2),
                17 => bits.put(extra as u64, 3),
                18 => bits.put(extra as u64, 7),
                _ => {}
            }
        }

        // Code and length of every literal/length symbol in one word.
        let mut lit = [0u32; 286];
        for s in 0..286 {
            lit[s] = lit_code[s] as u32 | (lit_len[s] as u32) << 16;
        }
        let mut seen = [[0u32; 256]; 2];
        let mut at = self.block_start;
        for op in &self.ops {
            match *op {
                Op::Literals(n) => {
                    let end = at + n as usize;
                    // Two literals a time: codes are at most 15 bits.
                    let mut pairs = self.window[at..end].chunks_exact(2);
                    for p in &mut pairs {
                        let (e, f) = (lit[p[0] as usize], lit[p[1] as usize]);
                        bits.put(
                            (e & 0xffff) as u64 | ((f & 0xffff) as u64) << (e >> 16),
                            (e >> 16) + (f >> 16),
                        );
                        seen[0][p[0] as usize] += 1;
                        seen[1][p[1] as usize] += 1;
                    }
                    for &b in pairs.remainder() {
                        let e = lit[b as usize];
                        bits.put((e & 0xffff) as u64, e >> 16);
                        seen[0][b as usize] += 1;
                    }
                    at = end;
                }
                Op::Match { len, dist } => {
                    let s = LEN_SYM[len as usize] as usize;
                    let e = lit[257 + s];
                    let d = dist_sym(dist as usize);
                    bits.put(
                        (e & 0xffff) as u64 | ((len - LEN_BASE[s]) as u64) << (e >> 16),
                        (e >> 16) + LEN_EXTRA[s] as u32,
                    );
                    bits.put(
                        dist_code[d] as u64 | ((dist - DIST_BASE[d]) as u64) << dist_len[d],
                        dist_len[d] as u32 + DIST_EXTRA[d] as u32,
                    );
                    at += len as usize;
                }
            }
        }
        bits.put(lit_code[256] as u64, lit_len[256] as u32);
        let last = self.last_literals.get_or_insert_with(|| Box::new([0; 256]));
        for (l, (a, b)) in last.iter_mut().zip(seen[0].iter().zip(&seen[1])) {
            *l = a + b;
        }
        self.ops.clear();
        self.lit_freq = [0; 286];
        self.dist_freq = [0; 30];

        // Keep only what a back-reference can reach.
        if self.window.len() > WINDOW {
            let drop = self.window.len() - WINDOW;
            self.window.drain(..drop);
            self.base += drop as u64;
        }
        self.block_start = self.window.len();
        self.pending = self.window.len();
    }

    fn write_out(&mut self) -> io::Result<()> {
        if let Err(e) = self.inner.write_all(&self.bits.out) {
            self.done = true;
            return Err(e);
        }
        self.bits.out.clear();
        Ok(())
    }

    /// Writes compressed bytes out once enough have gathered. Call between
    /// rows; errors of the inner writer surface here.
    pub fn pump(&mut self) -> io::Result<()> {
        if self.done {
            return Err(io::Error::other(
                "gzip stream already ended, or its writer failed",
            ));
        }
        if self.bits.out.len() >= OUT_CHUNK {
            self.write_out()?;
        }
        Ok(())
    }

    /// Ends the current block and byte-aligns the stream with an empty
    /// stored block (a "sync flush"), so that everything written so far can
    /// be decompressed from what `inner` has received.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.done {
            return Err(io::Error::other(
                "gzip stream already ended, or its writer failed",
            ));
        }
        if !self.ops.is_empty() {
            self.end_block(false);
        }
        self.bits.put(0, 3); // not last, stored
        self.bits.align();
        self.bits.out.extend_from_slice(&[0, 0, 0xff, 0xff]);
        self.write_out()?;
        self.inner.flush()
    }

    /// Ends the stream (last block, CRC-32 and length) and gives the inner
    /// writer back.
    pub fn finish(mut self) -> io::Result<W> {
        if self.done {
            return Err(io::Error::other(
                "gzip stream already ended, or its writer failed",
            ));
        }
        if self.ops.is_empty() {
            // An empty last block with the fixed codes: end of block is 7 zero bits.
            self.bits.put(1, 1);
            self.bits.put(1, 2);
            self.bits.put(0, 7);
        } else {
            self.end_block(true);
        }
        self.bits.align();
        let crc = self.crc.sum();
        let size = self.position() as u32;
        self.bits.out.extend_from_slice(&crc.to_le_bytes());
        self.bits.out.extend_from_slice(&size.to_le_bytes());
        self.write_out()?;
        self.done = true;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    /// Plain text, all literals.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.window.extend_from_slice(buf);
        self.literals_to(self.window.len());
        if self.window.len() - self.block_start >= BLOCK {
            self.end_block(false);
        }
        self.pump()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        GzipWriter::flush(self)
    }
}

/// Adds the literals of `ops` (taken from `text` in order) to their
/// counts. Four tables, so that a run of one byte does not wait on its own
/// last increment.
fn count_literals(freq: &mut [u32; 286], ops: &[Op], text: &[u8]) {
    let mut f = [[0u32; 256]; 4];
    let mut at = 0;
    for op in ops {
        match *op {
            Op::Literals(n) => {
                let run = &text[at..at + n as usize];
                let mut quads = run.chunks_exact(4);
                for q in &mut quads {
                    f[0][q[0] as usize] += 1;
                    f[1][q[1] as usize] += 1;
                    f[2][q[2] as usize] += 1;
                    f[3][q[3] as usize] += 1;
                }
                for &b in quads.remainder() {
                    f[0][b as usize] += 1;
                }
                at += n as usize;
            }
            Op::Match { len, .. } => at += len as usize,
        }
    }
    for b in 0..256 {
        freq[b] += f[0][b] + f[1][b] + f[2][b] + f[3][b];
    }
}

/// A Huffman code needs two symbols to be complete; a lone one (or none)
/// gets company that is never sent.
fn at_least_two(freq: &mut [u32]) {
    let mut used = freq.iter().filter(|&&f| f > 0).count();
    for f in freq.iter_mut() {
        if used >= 2 {
            break;
        }
        if *f == 0 {
            *f = 1;
            used += 1;
        }
    }
}

/// Code lengths of an optimal prefix code for `freq`, none longer than
/// `max`: Huffman's by two queues over sorted weights, then the lengths
/// folded into `max` bits (as miniz does) and given out most frequent
/// first. Unused symbols get 0.
fn huffman_lengths(freq: &[u32], max: usize, lens: &mut [u8]) {
    let mut leaves: Vec<(u32, u16)> = freq
        .iter()
        .enumerate()
        .filter(|(_, &f)| f > 0)
        .map(|(s, &f)| (f, s as u16))
        .collect();
    leaves.sort_unstable();
    lens.iter_mut().for_each(|l| *l = 0);
    let n = leaves.len();
    debug_assert!(n >= 2);
    // Nodes 0..n are the leaves, n.. the joins, made in order of weight.
    let mut weight: Vec<u64> = leaves.iter().map(|&(f, _)| f as u64).collect();
    weight.reserve(n);
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut leaf, mut join) = (0usize, n);
    for _ in 0..n - 1 {
        let mut pick = || {
            let take_leaf = leaf < n && (join >= weight.len() || weight[leaf] <= weight[join]);
            if take_leaf {
                leaf += 1;
                leaf - 1
            } else {
                join += 1;
                join - 1
            }
        };
        let a = pick();
        let b = pick();
        let node = weight.len();
        weight.push(weight[a] + weight[b]);
        parent[a] = node;
        parent[b] = node;
    }
    let mut depth = vec![0usize; 2 * n - 1];
    let mut count = [0usize; 64];
    for i in (0..2 * n - 2).rev() {
        depth[i] = depth[parent[i]] + 1;
        if i < n {
            count[depth[i].min(63)] += 1;
        }
    }
    // Fold lengths over `max` into `max`, then lengthen shorter codes until
    // the code is exactly complete again.
    for i in max + 1..64 {
        count[max] += count[i];
        count[i] = 0;
    }
    let mut total: u64 = (1..=max).map(|i| (count[i] as u64) << (max - i)).sum();
    while total != 1 << max {
        count[max] -= 1;
        for i in (1..max).rev() {
            if count[i] != 0 {
                count[i] -= 1;
                count[i + 1] += 2;
                break;
            }
        }
        total -= 1;
    }
    // Least frequent first get the longest codes.
    let mut next = 0;
    for len in (1..=max).rev() {
        for _ in 0..count[len] {
            lens[leaves[next].1 as usize] = len as u8;
            next += 1;
        }
    }
}

/// Canonical codes for `lens` (RFC 1951, 3.2.2), bit-reversed because
/// deflate sends Huffman codes from their first bit.
fn canonical_codes(lens: &[u8], codes: &mut [u16]) {
    let mut count = [0u16; 16];
    for &l in lens {
        count[l as usize] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    for (s, &l) in lens.iter().enumerate() {
        if l > 0 {
            let c = next[l as usize];
            next[l as usize] += 1;
            codes[s] = c.reverse_bits() >> (16 - l);
        }
    }
}

/// The code-length sequence in the code-length alphabet: 0-15 as they are,
/// 16 repeats the last length 3-6 times, 17 and 18 are runs of zeros
/// (3-10, 11-138). Each entry is (symbol, extra bits value).
fn run_lengths(lens: &[u8], out: &mut Vec<(u8, u8)>) {
    let mut i = 0;
    while i < lens.len() {
        let l = lens[i];
        let mut run = 1;
        while i + run < lens.len() && lens[i + run] == l {
            run += 1;
        }
        i += run;
        if l == 0 {
            let mut r = run;
            while r >= 11 {
                let k = r.min(138);
                out.push((18, (k - 11) as u8));
                r -= k;
            }
            if r >= 3 {
                out.push((17, (r - 3) as u8));
                r = 0;
            }
            out.extend(std::iter::repeat_n((0, 0), r));
        } else {
            out.push((l, 0));
            let mut r = run - 1;
            while r >= 3 {
                let k = r.min(6);
                out.push((16, (k - 3) as u8));
                r -= k;
            }
            out.extend(std::iter::repeat_n((l, 0), r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Just;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut d = flate2::read::GzDecoder::new(bytes);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("valid gzip");
        // One member: nothing may follow it.
        assert!(d.into_inner().is_empty(), "bytes after the gzip member");
        out
    }

    #[test]
    fn length_and_distance_symbols() {
        let cases: &[(usize, u8)] = &[
            (3, 0),
            (10, 7),
            (11, 8),
            (12, 8),
            (13, 9),
            (257, 27),
            (258, 28),
            (227, 27),
        ];
        for &(len, sym) in cases {
            assert_eq!(LEN_SYM[len], sym, "length {len}");
        }
        for dist in 1..=WINDOW {
            let s = dist_sym(dist);
            assert!(DIST_BASE[s] as usize <= dist, "distance {dist}");
            assert!(
                dist < DIST_BASE[s] as usize + (1 << DIST_EXTRA[s]),
                "distance {dist}"
            );
        }
    }

    #[test]
    fn lengths_form_complete_codes_within_the_limit() {
        let cases: Vec<Vec<u32>> = vec![
            vec![1, 1],
            vec![5, 0, 0, 1],
            (0..286).map(|i| 1 << (i % 31)).collect(), // skewed: forces folding
            (0..19).map(|i| i * i + 1).collect(),
            (0..30)
                .map(|i| if i % 2 == 0 { 0 } else { 1000 - i })
                .collect(),
        ];
        for (k, freq) in cases.iter().enumerate() {
            for max in [7usize, 15] {
                if freq.iter().filter(|&&f| f > 0).count() > 1 << max {
                    continue;
                }
                let mut lens = vec![0u8; freq.len()];
                huffman_lengths(freq, max, &mut lens);
                let kraft: f64 = lens
                    .iter()
                    .filter(|&&l| l > 0)
                    .map(|&l| 0.5f64.powi(l as i32))
                    .sum();
                assert_eq!(kraft, 1.0, "case {k}, max {max}: {lens:?}");
                assert!(lens.iter().all(|&l| (l as usize) <= max), "case {k}");
                for (s, &f) in freq.iter().enumerate() {
                    assert_eq!(f > 0, lens[s] > 0, "case {k} symbol {s}");
                }
            }
        }
    }

    #[test]
    fn run_lengths_expand_back() {
        let lens: Vec<u8> = [
            vec![0; 150],
            vec![8; 20],
            vec![0; 5],
            vec![3; 2],
            vec![0; 12],
            vec![7],
        ]
        .concat();
        let mut rle = Vec::new();
        run_lengths(&lens, &mut rle);
        let mut back = Vec::new();
        for (sym, extra) in rle {
            match sym {
                16 => {
                    let l = *back.last().unwrap();
                    back.extend(std::iter::repeat_n(l, 3 + extra as usize));
                }
                17 => back.extend(std::iter::repeat_n(0, 3 + extra as usize)),
                18 => back.extend(std::iter::repeat_n(0, 11 + extra as usize)),
                l => back.push(l),
            }
        }
        assert_eq!(back, lens);
    }

    #[test]
    fn empty_stream() {
        let gz = GzipWriter::new(Vec::new()).finish().unwrap();
        assert_eq!(gunzip(&gz), b"");
    }

    /// Writes `rows` (fields joined by commas) through `row`, flushing
    /// after the rows listed in `flush_after`, and checks every step.
    fn round_trip(rows: &[Vec<Vec<u8>>], flush_after: &[usize]) -> Vec<u8> {
        let mut gz = GzipWriter::new(Vec::new());
        let mut columns: Vec<Column> = vec![Column::default(); 8];
        let mut expected = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let mut text = Vec::new();
            let mut fields = Vec::new();
            for (k, v) in row.iter().enumerate() {
                if k > 0 {
                    text.push(b',');
                }
                fields.push((text.len() as u32, (text.len() + v.len()) as u32));
                text.extend_from_slice(v);
            }
            text.push(b'\n');
            gz.row(&mut columns[..row.len()], &text, &fields);
            expected.extend_from_slice(&text);
            if flush_after.contains(&i) {
                gz.flush().unwrap();
                // Everything so far decodes from what has been written.
                let mut d = flate2::read::DeflateDecoder::new(&gz.get_mut()[10..]);
                let mut got = vec![0u8; expected.len()];
                d.read_exact(&mut got).unwrap();
                assert_eq!(got, expected);
            }
        }
        let bytes = gz.finish().unwrap();
        assert_eq!(gunzip(&bytes), expected);
        bytes
    }

    #[test]
    fn round_trips_table_rows_and_flushes() {
        let rows: Vec<Vec<Vec<u8>>> = (0..200_000u32)
            .map(|i| {
                vec![
                    format!("{:08x}-aaaa-bbbb-cccc-{:012x}", i / 3, (i / 3) * 7919),
                    format!("{:08x}-dddd-eeee-ffff-{:012x}", i % 37, (i % 37) * 31),
                    format!(
                        "2023-05-{:02} {:02}:{:02}:00",
                        1 + i / 20_000,
                        (i / 60) % 24,
                        i % 60
                    ),
                    format!("{}.{:02}", i % 5, i % 100),
                    "1".to_string(),
                ]
                .into_iter()
                .map(String::into_bytes)
                .collect()
            })
            .collect();
        let text: usize = rows
            .iter()
            .map(|r| r.iter().map(Vec::len).sum::<usize>() + r.len())
            .sum();
        let bytes = round_trip(&rows, &[7, 50_007, 150_000]);
        assert!(bytes.len() * 3 < text, "{} of {}", bytes.len(), text);
    }

    #[test]
    fn long_values_repeats_and_short_rows() {
        let long = vec![b'x'; 1000];
        let rows: Vec<Vec<Vec<u8>>> = vec![
            vec![long.clone(), long.clone()],
            vec![long.clone()],
            vec![b"abcabcabc".to_vec(), long[..600].to_vec()],
            vec![b"abcabcabd".to_vec(), long[..259].to_vec()],
            vec![b"".to_vec(), long[..260].to_vec()],
            vec![b"ab".to_vec()],
            vec![],
        ];
        round_trip(&rows, &[1]);
    }

    #[test]
    fn plain_text_through_write() {
        let mut gz = GzipWriter::new(Vec::new());
        let text: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        gz.write_all(&text).unwrap();
        assert_eq!(gunzip(&gz.finish().unwrap()), text);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 64, failure_persistence: None, ..Default::default()
        })]
        /// Any rows, any flushes: the stream decodes to exactly the text.
        #[test]
        fn any_rows_round_trip(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::collection::vec(proptest::prop_oneof![Just(b'a'), Just(b'b'), Just(b','), proptest::num::u8::ANY], 0..40),
                    0..6),
                0..400),
            flush_after in proptest::collection::vec(0usize..400, 0..3),
        ) {
            round_trip(&rows, &flush_after);
        }
    }
}
