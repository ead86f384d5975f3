//! Native builds only: a table file compressed on a thread of its own.
//!
//! One big export is one pipeline thread; without this, that thread also
//! runs zlib for every table, about half of `transform`'s CPU. Here the
//! pipeline thread hands each gathered 64 KiB of a table's CSV to that
//! table's compressor thread and writes the compressed bytes that come back
//! to the table's writer itself, in order. The compressor gets exactly the
//! `write_all`, `flush` and `finish` calls the single-threaded writer makes,
//! in the same order and with the same slices, so the files are the same
//! bytes. The thread only computes (its gzip stream writes into memory):
//! every write to the caller's writer, and so every I/O error, stays on the
//! caller's thread. A table that never fills a buffer (stores, products, most
//! reject files) gets no thread at all.

use super::Then;
use flate2::write::GzEncoder;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

/// Buffers of one table in flight at once, each a slice of CSV going to the
/// compressor with the buffer its compressed bytes come back in: enough that
/// neither thread waits for the other in the steady state, few enough that
/// memory stays flat (some 3 x 80 KiB per busy table).
const DEPTH: usize = 3;

/// A slice of a table's CSV on its way to the compressor, and the buffer its
/// compressed bytes come back in. Both buffers are reused from job to job.
struct Job {
    csv: Vec<u8>,
    gz: Vec<u8>,
    then: Then,
}

/// What the compressor thread runs: its gzip stream, jobs in, done jobs
/// (or the error of one) out.
type Work = fn(GzEncoder<Vec<u8>>, Receiver<Job>, SyncSender<io::Result<Job>>);

enum State {
    /// Compressing on the caller's thread: until the first full buffer, or
    /// for good if no thread could be started.
    Here(GzEncoder<Vec<u8>>),
    /// On its thread.
    Thread {
        jobs: SyncSender<Job>,
        done: Receiver<io::Result<Job>>,
        thread: Option<JoinHandle<()>>,
    },
}

/// One table's gzip stream compressed on its own thread, its compressed
/// bytes written to `out` on the caller's thread in order.
pub(super) struct Compressor<W> {
    out: W,
    state: State,
    /// Done jobs, ready to be used again.
    spare: Vec<Job>,
    /// Jobs sent and not yet back.
    in_flight: usize,
    /// Capacity of a new job's CSV buffer (the table's gathering buffer).
    buffer: usize,
    /// Whether a thread was asked for (once per stream).
    tried: bool,
}

/// The error of a compressor thread that stopped without a word: it
/// panicked, and its channels closed as it unwound (the panic stays in
/// that thread; the caller gets this error, the process goes on).
fn stopped() -> io::Error {
    io::Error::other("its compressor thread stopped (it panicked)")
}

impl<W: Write> Compressor<W> {
    /// A stream compressed by `gz` (a gzip stream into memory, set up as the
    /// single-threaded writer would be) into `out`, with new CSV buffers of
    /// `buffer` bytes.
    pub(super) fn new(out: W, gz: GzEncoder<Vec<u8>>, buffer: usize) -> Compressor<W> {
        Compressor {
            out,
            state: State::Here(gz),
            spare: Vec::new(),
            in_flight: 0,
            buffer,
            tried: false,
        }
    }

    /// The writer the compressed bytes go to.
    pub(super) fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The writer, once the stream is finished ([`Then::Finish`]).
    pub(super) fn into_inner(self) -> W {
        self.out
    }

    /// Moves the gzip stream to a thread running `work`; stays on this
    /// thread if the system will not start one.
    fn start(&mut self, work: Work) {
        self.tried = true;
        let (give, take) = sync_channel(1);
        let (jobs, todo) = sync_channel(DEPTH);
        let (finished, done) = sync_channel(DEPTH);
        let started = std::thread::Builder::new()
            .name("cafe-etl gzip".into())
            .spawn(move || {
                // The stream comes once the thread exists: if it cannot be
                // started, the stream is still here.
                if let Ok(gz) = take.recv() {
                    work(gz, todo, finished);
                }
            });
        if let Ok(thread) = started {
            let thread = State::Thread {
                jobs,
                done,
                thread: Some(thread),
            };
            if let State::Here(gz) = std::mem::replace(&mut self.state, thread) {
                // Cannot fail: the channel holds one, and a thread that
                // stopped at once is reported by the first receive.
                let _ = give.send(gz);
            }
        }
    }

    /// Hands the CSV bytes gathered in `csv` to the compressor (leaving
    /// `csv` empty, and giving it a used buffer back when there is one),
    /// then does `then`. After [`Then::Flush`] and [`Then::Finish`] every
    /// compressed byte so far is in the writer.
    pub(super) fn send(&mut self, csv: &mut Vec<u8>, then: Then) -> io::Result<()> {
        if then == Then::Nothing && !self.tried {
            // A full buffer: the table is big enough to pay for a thread.
            self.start(compress);
        }
        match &mut self.state {
            State::Here(gz) => {
                // The single-threaded writer's calls, on this thread.
                if !csv.is_empty() {
                    gz.write_all(csv)?;
                    csv.clear();
                }
                match then {
                    Then::Nothing => {}
                    Then::Flush => gz.flush()?,
                    Then::Finish => gz.try_finish()?,
                }
                self.out.write_all(gz.get_mut())?;
                gz.get_mut().clear();
            }
            State::Thread { .. } => self.hand_over(csv, then)?,
        }
        if then == Then::Flush {
            self.out.flush()?;
        }
        Ok(())
    }

    /// [`send`](Compressor::send) with the thread running.
    fn hand_over(&mut self, csv: &mut Vec<u8>, then: Then) -> io::Result<()> {
        let mut job = match self.spare.pop() {
            Some(job) => job,
            None if self.in_flight < DEPTH => Job {
                csv: Vec::with_capacity(self.buffer),
                gz: Vec::new(),
                then,
            },
            None => self.receive()?,
        };
        std::mem::swap(csv, &mut job.csv);
        job.then = then;
        if let State::Thread { jobs, .. } = &self.state {
            // Never blocks: at most DEPTH jobs exist, the channel holds DEPTH.
            jobs.send(job).map_err(|_| stopped())?;
            self.in_flight += 1;
        }
        self.collect()?;
        if then != Then::Nothing {
            while self.in_flight > 0 {
                let job = self.receive()?;
                self.spare.push(job);
            }
        }
        if then == Then::Finish {
            if let State::Thread { thread, .. } = &mut self.state {
                if let Some(t) = thread.take() {
                    t.join().map_err(|_| stopped())?;
                }
            }
        }
        Ok(())
    }

    /// Writes out the jobs the compressor has done so far, without waiting.
    fn collect(&mut self) -> io::Result<()> {
        loop {
            let State::Thread { done, .. } = &self.state else {
                return Ok(());
            };
            match done.try_recv() {
                Ok(job) => {
                    let job = self.written(job)?;
                    self.spare.push(job);
                }
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) if self.in_flight == 0 => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(stopped()),
            }
        }
    }

    /// Waits for the compressor's next done job and writes it out.
    fn receive(&mut self) -> io::Result<Job> {
        let State::Thread { done, .. } = &self.state else {
            unreachable!("only called with a thread running")
        };
        let job = done.recv().map_err(|_| stopped())?;
        self.written(job)
    }

    /// Writes a done job's compressed bytes to the writer; the job is empty
    /// after.
    fn written(&mut self, job: io::Result<Job>) -> io::Result<Job> {
        self.in_flight -= 1;
        let mut job = job?;
        self.out.write_all(&job.gz)?;
        job.gz.clear();
        Ok(job)
    }
}

/// The compressor thread: each job's CSV into `gz`, then the flush or the
/// end it asks for, and its compressed bytes back in the job's buffer.
fn compress(mut gz: GzEncoder<Vec<u8>>, todo: Receiver<Job>, done: SyncSender<io::Result<Job>>) {
    for mut job in todo {
        let step = |gz: &mut GzEncoder<Vec<u8>>, job: &Job| -> io::Result<()> {
            if !job.csv.is_empty() {
                gz.write_all(&job.csv)?;
            }
            match job.then {
                Then::Nothing => Ok(()),
                Then::Flush => gz.flush(),
                Then::Finish => gz.try_finish(),
            }
        };
        let result = step(&mut gz, &job);
        job.csv.clear();
        std::mem::swap(gz.get_mut(), &mut job.gz);
        let last = job.then == Then::Finish || result.is_err();
        if done.send(result.map(|()| job)).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz() -> GzEncoder<Vec<u8>> {
        flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::new(2))
    }

    /// Slices of CSV through a compressor (threaded once the first slice is
    /// sent) and through a plain gzip stream: the same bytes, flushes and
    /// all.
    #[test]
    fn the_threaded_stream_is_the_plain_stream() {
        let slices: Vec<Vec<u8>> = (0..40u32)
            .map(|i| {
                (0..(i * 997) % 70_000)
                    .map(|j| b"0123456789,abcdef\n"[((i + j) % 18) as usize])
                    .collect()
            })
            .collect();
        let mut plain = gz();
        let mut threaded = Compressor::new(Vec::new(), gz(), 1024);
        for (i, s) in slices.iter().enumerate() {
            let then = if i % 13 == 12 {
                Then::Flush
            } else {
                Then::Nothing
            };
            if !s.is_empty() {
                plain.write_all(s).unwrap();
            }
            if then == Then::Flush {
                plain.flush().unwrap();
                // Everything so far is out after a flush, as with GzEncoder.
                let mut sent = s.clone();
                threaded.send(&mut sent, then).unwrap();
                assert_eq!(threaded.get_mut(), plain.get_ref());
            } else {
                let mut sent = s.clone();
                threaded.send(&mut sent, then).unwrap();
                assert!(sent.is_empty(), "the slice was taken");
            }
        }
        assert!(matches!(threaded.state, State::Thread { .. }));
        threaded.send(&mut Vec::new(), Then::Finish).unwrap();
        assert_eq!(threaded.into_inner(), plain.finish().unwrap());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Any slicing of any bytes, with sync flushes anywhere: the
        /// threaded stream is the plain one.
        #[test]
        fn any_slices_give_the_plain_streams_bytes(
            slices in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2_000), 0..80_000usize, proptest::prelude::any::<bool>()),
                1..12,
            )
        ) {
            let mut plain = gz();
            let mut threaded = Compressor::new(Vec::new(), gz(), 1024);
            for (seed, len, flush) in slices {
                // A long slice repeats its seed: compressible, as CSV is.
                let s: Vec<u8> = seed.iter().copied().cycle().take(if seed.is_empty() { 0 } else { len }).collect();
                let then = if flush { Then::Flush } else { Then::Nothing };
                if !s.is_empty() {
                    plain.write_all(&s).unwrap();
                }
                if flush {
                    plain.flush().unwrap();
                }
                threaded.send(&mut s.clone(), then).unwrap();
            }
            threaded.send(&mut Vec::new(), Then::Finish).unwrap();
            proptest::prop_assert_eq!(threaded.into_inner(), plain.finish().unwrap());
        }
    }

    /// A writer that fails from its first byte on (a full disk).
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("no space left on device"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_is_an_error_on_the_callers_thread() {
        let mut c = Compressor::new(Full, gz(), 1024);
        let mut result = Ok(());
        for _ in 0..DEPTH * 4 {
            result = c.send(&mut vec![b'x'; 70_000], Then::Nothing);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = c.send(&mut Vec::new(), Then::Finish);
        }
        assert_eq!(result.unwrap_err().to_string(), "no space left on device");
    }

    #[test]
    fn a_panicking_compressor_is_an_error_not_an_abort() {
        let mut c = Compressor::new(Vec::new(), gz(), 1024);
        c.start(|_gz, todo, _done| {
            let _ = todo.recv();
            panic!("compressor bug");
        });
        assert!(matches!(c.state, State::Thread { .. }));
        let mut result = Ok(());
        for _ in 0..DEPTH * 2 {
            result = c.send(&mut vec![b'x'; 10], Then::Nothing);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = c.send(&mut Vec::new(), Then::Finish);
        }
        assert_eq!(
            result.unwrap_err().to_string(),
            "its compressor thread stopped (it panicked)"
        );
    }
}
