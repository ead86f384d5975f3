//! `cafe-etl token --store <slug> --ttl 30d`: mints (or checks) a branch
//! upload token for the edge worker. The secret is read from an environment
//! variable, never from the command line, so it stays out of shell history
//! and process listings.

use super::Outcome;
use cafe_etl::token::{self, Claims};
use std::time::{SystemTime, UNIX_EPOCH};

/// Shortest secret accepted, in bytes.
const MIN_SECRET: usize = 16;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["store", "verify"])))]
pub struct Args {
    /// Store the token is for: a slug (`isle-of-wight`) or a store name as
    /// the exports spell it (`Isle of Wight`), which is turned into its slug.
    #[arg(long)]
    store: Option<String>,
    /// How long the token is valid: a number and a unit, s m h d or w.
    #[arg(long, default_value = "30d", conflicts_with = "expires")]
    ttl: String,
    /// Expiry as a Unix time instead of --ttl.
    #[arg(long, value_name = "UNIX")]
    expires: Option<u64>,
    /// Environment variable holding the upload secret (the worker's
    /// UPLOAD_SECRET).
    #[arg(long, value_name = "VAR", default_value = "UPLOAD_SECRET")]
    secret_env: String,
    /// Check this token instead of minting one: prints its store and expiry,
    /// exit code 1 when it is not valid now.
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["store", "expires"])]
    verify: Option<String>,
}

fn now() -> Result<u64, String> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|e| format!("the system clock is before 1970: {e}"))
}

fn secret(var: &str) -> Result<Vec<u8>, String> {
    let s = std::env::var(var).map_err(|_| {
        format!("environment variable {var} is not set; it should hold the upload secret (the worker's UPLOAD_SECRET)")
    })?;
    if s.len() < MIN_SECRET {
        return Err(format!(
            "environment variable {var} holds {} bytes; an upload secret needs at least {MIN_SECRET} (for example `openssl rand -hex 32`)",
            s.len()
        ));
    }
    Ok(s.into_bytes())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time (proleptic Gregorian).
fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

pub fn run(args: Args) -> Result<Outcome, String> {
    let secret = secret(&args.secret_env)?;
    let now = now()?;
    if let Some(t) = args.verify {
        return match token::verify(&secret, t.trim(), now) {
            Ok(Claims { store, expires }) => {
                println!("valid: store {store}, expires {} ({expires})", utc(expires));
                Ok(Outcome::Clean)
            }
            Err(e) => {
                eprintln!("cafe-etl: not valid: {e}");
                Ok(Outcome::Rejected)
            }
        };
    }
    let name = args.store.unwrap_or_default();
    let slug = token::store_slug(&name);
    if slug.is_empty() || !token::is_slug(&slug) {
        return Err(format!(
            "--store {name:?} has no letters or digits to make a store slug of (at most {} bytes)",
            token::MAX_SLUG_LEN
        ));
    }
    let expires = match args.expires {
        Some(e) => e,
        None => now
            .checked_add(token::parse_ttl(&args.ttl)?)
            .ok_or("the expiry overflows")?,
    };
    if expires <= now {
        return Err(format!(
            "--expires {expires} is in the past ({}), the token would never be valid",
            utc(expires)
        ));
    }
    let t = token::mint(&secret, &slug, expires).map_err(|e| e.to_string())?;
    if slug != name {
        eprintln!("store {name:?} has the slug {slug}");
    }
    eprintln!(
        "token for store {slug}, valid until {} ({expires})",
        utc(expires)
    );
    println!("{t}");
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_767_225_599), "2025-12-31 23:59:59 UTC");
    }
}
