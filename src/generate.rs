//! Synthetic daily exports in the current format, for benchmarks, demos and
//! tests: the real menu (sizes, flavours, prices), opening hours with a
//! morning and a lunch peak, one cash sale in three, invented customers and
//! published test card numbers. The same seed gives the same bytes.

use chrono::{Datelike, Days, NaiveDate};
use std::io::{self, Write};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Config {
    /// Number of stores (taken from the chain's branch list, then numbered).
    pub stores: usize,
    /// Number of days, starting at `start`.
    pub days: u32,
    /// PRNG seed.
    pub seed: u64,
    /// First day, `(year, month, day)`.
    pub start: (u16, u8, u8),
    /// Average transactions per store and day.
    pub transactions_per_day: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            stores: 3,
            days: 7,
            seed: 1,
            start: (2021, 8, 25),
            transactions_per_day: 300,
        }
    }
}

/// The branches of the chain seen in the real exports.
pub const STORES: &[&str] = &[
    "Chesterfield",
    "Leeds",
    "Uppingham",
    "Birmingham",
    "London Camden",
    "London Soho",
    "Longridge",
    "Bradford",
    "Brighton",
    "Bristol",
    "Edinburgh",
    "Leicester",
    "Newcastle",
    "Nottingham",
    "Sheffield",
    "Southend-on-Sea",
    "Isle of Wight",
    "Manchester",
];

/// (name, flavours, regular price, large price) in pence.
const MENU: &[(&str, &[&str], u32, u32)] = &[
    ("Latte", &[], 215, 245),
    ("Flat white", &[], 215, 245),
    ("Cappuccino", &[], 215, 245),
    ("Americano", &[], 195, 225),
    ("Iced americano", &[], 215, 250),
    ("Filter coffee", &[], 150, 180),
    ("Mocha", &[], 230, 270),
    ("Cortado", &[], 205, 235),
    ("Espresso", &[], 150, 180),
    ("Chai latte", &[], 230, 260),
    ("Hot chocolate", &[], 220, 290),
    ("Hot Chocolate", &[], 140, 170),
    ("Luxury hot chocolate", &[], 240, 270),
    (
        "Flavoured latte",
        &["Hazelnut", "Caramel", "Vanilla", "Gingerbread"],
        255,
        285,
    ),
    (
        "Flavoured iced latte",
        &["Hazelnut", "Caramel", "Vanilla"],
        275,
        325,
    ),
    (
        "Flavoured hot chocolate",
        &["Hazelnut", "Caramel", "Vanilla"],
        260,
        290,
    ),
    (
        "Speciality Tea",
        &[
            "English breakfast",
            "Green",
            "Peppermint",
            "Darjeeling",
            "Earl Grey",
            "Fruit",
        ],
        130,
        160,
    ),
    (
        "Smoothies",
        &[
            "Berry Beautiful",
            "Carrot Kick",
            "Glowing Greens",
            "Summer Sunset",
        ],
        200,
        250,
    ),
    (
        "Frappes",
        &["Chocolate Cookie", "Coffee", "Strawberries & Cream"],
        275,
        325,
    ),
];

const FIRST: &[&str] = &[
    "Ada", "Bram", "Cleo", "Dev", "Edie", "Finn", "Gus", "Hana", "Ivo", "Juno", "Kit", "Lior",
    "Mina", "Noor", "Otto", "Pia", "Quin", "Rafe", "Suki", "Tove", "Uma", "Vik", "Wren", "Xan",
    "Yara", "Zeb",
];
const LAST: &[&str] = &[
    "Applewhite",
    "Brackenbury",
    "Copperfield",
    "Dunsmore",
    "Ellerby",
    "Fairweather",
    "Gosling",
    "Hartwell",
    "Inchbald",
    "Jessop",
    "Kettering",
    "Lockwood",
    "Merriman",
    "Northcott",
    "Oakhurst",
    "Pennyworth",
];
/// Published test card numbers (they pass the Luhn check and charge nobody).
pub const TEST_CARDS: &[&str] = &[
    "4111111111111111",
    "4012888888881881",
    "5555555555554444",
    "5105105105105100",
    "378282246310005",
    "6011111111111117",
];

/// A small, fast, seedable PRNG (xoshiro256**); no dependency, same numbers
/// on every platform.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    /// Seeds with SplitMix64.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Name of the `i`th store.
pub fn store_name(i: usize) -> String {
    if i < STORES.len() {
        STORES[i].to_string()
    } else {
        format!("{} {}", STORES[i % STORES.len()], i / STORES.len() + 1)
    }
}

/// `chesterfield_25-08-2021_09-00-00.csv`, as the tills name their exports.
pub fn file_name(store: &str, (y, m, d): (u16, u8, u8)) -> String {
    let slug: String = store
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{slug}_{d:02}-{m:02}-{y:04}_09-00-00.csv")
}

/// The calendar day `n` days after `start`; `None` when `start` is not a
/// day or the result is past year 65535.
pub fn add_days((y, m, d): (u16, u8, u8), n: u32) -> Option<(u16, u8, u8)> {
    let date = NaiveDate::from_ymd_opt(y.into(), m.into(), d.into())?
        .checked_add_days(Days::new(n.into()))?;
    Some((
        u16::try_from(date.year()).ok()?,
        date.month() as u8,
        date.day() as u8,
    ))
}

/// Relative trade in each hour 7..=18: a morning peak and a lunch peak.
const HOUR_WEIGHT: [u32; 12] = [6, 14, 12, 8, 7, 9, 13, 11, 7, 6, 5, 3];

/// Writes one store's export for one day.
pub fn write_day(
    out: &mut impl Write,
    rng: &mut Rng,
    store: &str,
    date: (u16, u8, u8),
    transactions: u32,
) -> io::Result<()> {
    let (y, m, d) = date;
    let total_weight: u32 = HOUR_WEIGHT.iter().sum();
    let mut line = String::with_capacity(256);
    let mut basket = String::with_capacity(200);
    for (h, w) in HOUR_WEIGHT.iter().enumerate() {
        let n = (transactions * w + total_weight / 2) / total_weight;
        let mut minutes: Vec<u32> = (0..n).map(|_| rng.below(60) as u32).collect();
        minutes.sort_unstable();
        for minute in minutes {
            basket.clear();
            let mut total = 0u32;
            let items = 1 + rng.below(4) + if rng.below(5) == 0 { rng.below(3) } else { 0 };
            for i in 0..items {
                let (name, flavours, regular, large) = *rng.pick(MENU);
                let large_size = rng.below(2) == 0;
                let price = if large_size { large } else { regular };
                if i > 0 {
                    basket.push_str(", ");
                }
                basket.push_str(if large_size { "Large " } else { "Regular " });
                basket.push_str(name);
                if !flavours.is_empty() {
                    basket.push_str(" - ");
                    basket.push_str(rng.pick::<&str>(flavours));
                }
                basket.push_str(&format!(" - {}.{:02}", price / 100, price % 100));
                total += price;
            }
            let cash = rng.below(3) == 0;
            line.clear();
            line.push_str(&format!(
                "{d:02}/{m:02}/{y:04} {:02}:{minute:02},{store},",
                7 + h
            ));
            line.push_str(rng.pick::<&str>(FIRST));
            line.push(' ');
            line.push_str(rng.pick::<&str>(LAST));
            line.push(',');
            if items > 1 {
                line.push('"');
                line.push_str(&basket);
                line.push('"');
            } else {
                line.push_str(&basket);
            }
            // Totals in the shortest form, as the tills write them.
            let mut t = format!("{}.{:02}", total / 100, total % 100);
            while t.ends_with('0') {
                t.pop();
            }
            if t.ends_with('.') {
                t.pop();
            }
            line.push_str(&format!(",{t},{},", if cash { "CASH" } else { "CARD" }));
            if !cash {
                line.push_str(rng.pick::<&str>(TEST_CARDS));
            }
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
    }
    Ok(())
}

/// Every (store, day) export of a configuration, in order: calls `open`
/// with each file name and writes that file to what it returns.
pub fn generate<W: Write>(
    config: &Config,
    mut open: impl FnMut(&str) -> io::Result<W>,
) -> io::Result<()> {
    let mut rng = Rng::new(config.seed);
    for day in 0..config.days {
        let date = add_days(config.start, day).ok_or_else(|| {
            io::Error::other(format!(
                "{day} days after {:?} is not a date this generator can write",
                config.start
            ))
        })?;
        for s in 0..config.stores {
            let store = store_name(s);
            let mut out = open(&file_name(&store, date))?;
            let spread = config.transactions_per_day / 4;
            let n = config.transactions_per_day - spread / 2 + rng.below(spread as u64 + 1) as u32;
            write_day(&mut out, &mut rng, &store, date, n)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_exports_are_valid_and_deterministic() {
        let mut files = Vec::new();
        let config = Config {
            stores: 2,
            days: 2,
            ..Config::default()
        };
        generate(&config, |name| {
            files.push(name.to_string());
            Ok(std::io::Cursor::new(Vec::new()))
        })
        .unwrap();
        assert_eq!(files.len(), 4);
        assert_eq!(files[0], "chesterfield_25-08-2021_09-00-00.csv");
        let mut a = Vec::new();
        let mut rng = Rng::new(7);
        write_day(&mut a, &mut rng, "Leeds", (2021, 8, 25), 300).unwrap();
        let mut b = Vec::new();
        write_day(&mut b, &mut Rng::new(7), "Leeds", (2021, 8, 25), 300).unwrap();
        assert_eq!(a, b);
        let r = crate::check(
            &a,
            "leeds_25-08-2021_09-00-00.csv",
            &crate::Config::default(),
        );
        assert_eq!(r.rows_rejected, 0, "{:?}", r.issues.first());
        assert_eq!(r.warnings, 0);
        assert!(r.rows_read >= 290);
        assert!(r.summary.by_hour[8].transactions > r.summary.by_hour[17].transactions);
    }

    #[test]
    fn calendar() {
        for (start, n, want) in [
            ((2021, 12, 31), 1, Some((2022, 1, 1))),
            ((2024, 2, 28), 1, Some((2024, 2, 29))),
            ((2023, 2, 28), 1, Some((2023, 3, 1))),
            ((2021, 8, 25), 0, Some((2021, 8, 25))),
            ((2021, 8, 25), 365, Some((2022, 8, 25))),
            ((2023, 2, 29), 0, None),
            ((2021, 8, 25), u32::MAX, None),
        ] {
            assert_eq!(add_days(start, n), want, "{start:?} + {n}");
        }
    }
}
