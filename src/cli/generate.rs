//! `cafe-etl generate`: synthetic exports in the current format.

use super::{shown, Outcome};
use anyhow::{Context, Result};
use cafe_etl::generate::{self, Config};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of stores.
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Number of days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// PRNG seed: the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Average transactions per store and day.
    #[arg(long, default_value_t = 300)]
    transactions_per_day: u32,
    /// First day, dd-mm-yyyy.
    #[arg(long, default_value = "25-08-2021")]
    start: String,
    /// Write everything into this one file (inside --out) instead of one
    /// file per store and day; for benchmarks.
    #[arg(long, value_name = "FILE_NAME")]
    single: Option<String>,
    /// Output folder (created if missing).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<Outcome> {
    let start = cafe_etl::date_from_file_name(&format!("x_{}_x", args.start))
        .with_context(|| format!("--start {:?} is not a date as dd-mm-yyyy", args.start))?;
    let config = Config {
        stores: args.stores,
        days: args.days,
        seed: args.seed,
        start,
        transactions_per_day: args.transactions_per_day,
    };
    std::fs::create_dir_all(&args.out).with_context(shown(&args.out))?;
    let mut count = 0usize;
    let result = match &args.single {
        Some(name) => {
            let path = args.out.join(name);
            let file = std::fs::File::create(&path).with_context(shown(&path))?;
            let shared = std::rc::Rc::new(std::cell::RefCell::new(BufWriter::with_capacity(
                1 << 20,
                file,
            )));
            let r = generate::generate(&config, |_| {
                count += 1;
                Ok(SharedWriter(shared.clone()))
            });
            let flushed = shared.borrow_mut().flush();
            r.and(flushed)
        }
        None => generate::generate(&config, |name| {
            count += 1;
            std::fs::File::create(args.out.join(name)).map(|f| BufWriter::with_capacity(1 << 16, f))
        }),
    };
    result.with_context(shown(&args.out))?;
    eprintln!("wrote {count} store-days to {}", args.out.display());
    Ok(Outcome::Clean)
}

struct SharedWriter<W: Write>(std::rc::Rc<std::cell::RefCell<W>>);

impl<W: Write> Write for SharedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
