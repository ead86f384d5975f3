//! `cafe-etl token --store <slug> --ttl 30d`: mints (or checks) a branch
//! upload token for the edge worker, with the current key id. The secrets are
//! read from environment variables, never from the command line, so they stay
//! out of shell history and process listings: `UPLOAD_SECRETS`
//! (`kid=secret,...`, current first, as the worker reads it) or else
//! `UPLOAD_SECRET` (one secret, key id `k1`).

use super::Outcome;
use anyhow::{anyhow, bail, Context, Result};
use cafe_etl::token::{self, Claims, Secrets, Verifier};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["store", "verify"])))]
pub struct Args {
    /// Store the token is for: a slug (`isle-of-wight`) or a store name as
    /// the exports spell it (`Isle of Wight`), which is turned into its slug.
    #[arg(long)]
    store: Option<String>,
    /// How long the token is valid: a number and a unit, s m h d or w (at
    /// most 400 days, the worker's cap).
    #[arg(long, default_value = "30d", conflicts_with = "expires")]
    ttl: String,
    /// Expiry as a Unix time instead of --ttl.
    #[arg(long, value_name = "UNIX")]
    expires: Option<u64>,
    /// Environment variable holding the secrets as `kid=secret,...`, current
    /// first (the worker's UPLOAD_SECRETS). Default: UPLOAD_SECRETS, or else
    /// UPLOAD_SECRET.
    #[arg(long, value_name = "VAR", conflicts_with = "secret_env")]
    secrets_env: Option<String>,
    /// Environment variable holding one secret, used under the key id
    /// --kid (the worker's UPLOAD_SECRET is key id k1).
    #[arg(long, value_name = "VAR")]
    secret_env: Option<String>,
    /// Key id of the secret in --secret-env.
    #[arg(long, default_value = token::LEGACY_KID, requires = "secret_env")]
    kid: String,
    /// Check this token instead of minting one, as the worker would (with
    /// REVOKED_BEFORE and TOKEN_MAX_DAYS from the environment when set):
    /// prints its key id, store and expiry, exit code 1 when it is not valid
    /// now.
    #[arg(long, value_name = "TOKEN", conflicts_with_all = ["store", "expires"])]
    verify: Option<String>,
}

fn now() -> Result<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .context("the system clock is before 1970")
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

fn secrets(args: &Args) -> Result<Secrets> {
    let not_set =
        |v: &str, what: &str| anyhow!("environment variable {v} is not set; it should hold {what}");
    let r = if let Some(v) = &args.secrets_env {
        Secrets::parse(&var(v).ok_or_else(|| not_set(v, "the upload secrets as kid=secret,..."))?)
    } else if let Some(v) = &args.secret_env {
        let s = var(v).ok_or_else(|| not_set(v, "the upload secret"))?;
        Secrets::single(&args.kid, &s, &format!("environment variable {v}"))
    } else {
        let (many, one) = (var("UPLOAD_SECRETS"), var("UPLOAD_SECRET"));
        if many.is_none() && one.is_none() {
            bail!("environment variables UPLOAD_SECRETS and UPLOAD_SECRET are not set; set UPLOAD_SECRETS to the worker's kid=secret,... (current first), or pass --secrets-env VAR or --secret-env VAR");
        }
        Secrets::from_vars(many.as_deref(), one.as_deref())
    };
    r.map_err(|e| anyhow!("{e} (a new secret: `openssl rand -hex 32`)"))
}

pub fn run(args: Args) -> Result<Outcome> {
    let secrets = secrets(&args)?;
    let now = now()?;
    if let Some(t) = args.verify {
        let v = Verifier::with_limits(
            secrets,
            var("REVOKED_BEFORE").as_deref(),
            var("TOKEN_MAX_DAYS").as_deref(),
        )?;
        return match v.verify(t.trim(), now) {
            Ok(Claims {
                kid,
                store,
                expires,
            }) => {
                println!(
                    "valid: store {store}, key id {kid}, expires {} ({expires})",
                    token::utc(expires)
                );
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
        bail!(
            "--store {name:?} has no letters or digits to make a store slug of (at most {} bytes)",
            token::MAX_SLUG_LEN
        );
    }
    let expires = match args.expires {
        Some(e) => e,
        None => now
            .checked_add(token::parse_ttl(&args.ttl)?)
            .context("the expiry overflows")?,
    };
    if expires <= now {
        bail!(
            "--expires {expires} is in the past ({}), the token would never be valid",
            token::utc(expires)
        );
    }
    if expires - now > token::DEFAULT_MAX_LIFETIME {
        bail!(
            "--expires {expires} ({}) is more than {} days away, and the worker refuses longer tokens",
            token::utc(expires),
            token::DEFAULT_MAX_LIFETIME / 86_400
        );
    }
    let (kid, secret) = secrets.current();
    let t = token::mint(kid, secret, &slug, expires)?;
    if slug != name {
        eprintln!(
            "store {name:?} has the slug {slug} (its worker STORE_NAMES entry: {slug}={})",
            name.trim()
        );
    }
    eprintln!(
        "token for store {slug}, key id {kid}, valid until {} ({expires})",
        token::utc(expires)
    );
    println!("{t}");
    Ok(Outcome::Clean)
}
