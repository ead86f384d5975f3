//! Branch upload tokens, the store slug rule, and the one-store-per-branch
//! rule of the edge worker. One place for all three: the CLI mints and checks
//! tokens with this module, and the worker calls it through the wasm module
//! (`storeSlug`, `verifyToken`, `checkStores` in `src/wasm.rs`).
//!
//! A token is `<kid>.<store_slug>.<expires_unix>.<hex HMAC-SHA256>`:
//!
//! ```text
//! k2.leeds.1767225600.<64 hex digits of HMAC-SHA256(secret of k2, "k2.leeds.1767225600")>
//! ```
//!
//! The key id (`kid`) names the secret it was signed with, so a secret is
//! rotated without stopping every branch: the worker holds the current and
//! the previous secret ([`Secrets`], `UPLOAD_SECRETS=k2=…,k1=…`), the CLI mints
//! with the current one. A token is valid while the current Unix time is
//! before `expires_unix`, if it expires at most [`DEFAULT_MAX_LIFETIME`]
//! after now (a longer one is refused: a lost token cannot outlive the cap),
//! and if its store has not revoked it ([`Revocations`], `REVOKED_BEFORE`).
//!
//! Pure functions only (the caller passes the clock and the configuration
//! text), so this module builds for wasm32 as well.
//!
//! ```
//! use cafe_etl::token::{mint, Secrets, Verifier, TokenError};
//! let secrets = Secrets::parse("k2=a secret of at least 16 bytes").unwrap();
//! let token = mint("k2", b"a secret of at least 16 bytes", "leeds", 1_767_225_600).unwrap();
//! assert!(token.starts_with("k2.leeds.1767225600."));
//! let v = Verifier::new(secrets);
//! let claims = v.verify(&token, 1_767_225_599).unwrap();
//! assert_eq!((claims.store.as_str(), claims.expires), ("leeds", 1_767_225_600));
//! assert!(matches!(v.verify(&token, 1_767_225_600), Err(TokenError::Expired { .. })));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Longest store slug a token may carry.
pub const MAX_SLUG_LEN: usize = 64;

/// Longest key id.
pub const MAX_KID_LEN: usize = 16;

/// Most digits of the expiry (enough for any date anyone will mean).
pub const MAX_EXPIRES_DIGITS: usize = 12;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Most secrets held at once: the current one and the previous one.
pub const MAX_SECRETS: usize = 2;

/// Longest lifetime a token may have left when it is checked, unless
/// configured otherwise (`TOKEN_MAX_DAYS`): 400 days.
pub const DEFAULT_MAX_LIFETIME: u64 = 400 * 86_400;

/// The key id of a lone secret given without one (`UPLOAD_SECRET`, or
/// `cafe-etl token --secret-env VAR`), so the configuration of before key
/// ids keeps working: `UPLOAD_SECRET=s` is `UPLOAD_SECRETS=k1=s`.
pub const LEGACY_KID: &str = "k1";

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The key id of the secret it was signed with.
    pub kid: String,
    /// The store slug the token is for.
    pub store: String,
    /// Unix time (seconds) from which the token is no longer valid.
    pub expires: u64,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not `<kid>.<slug>.<digits>.<64 lowercase hex>`; the text says which part.
    Malformed(&'static str),
    /// Well formed, but its key id is none of the secrets held (a secret
    /// rotated out, or a token for another deployment).
    UnknownKid(String),
    /// Well formed, but not signed with its key id's secret.
    BadSignature,
    /// Signed, but `now >= expires`.
    Expired {
        /// When it expired (Unix seconds).
        expires: u64,
    },
    /// Signed, but it expires more than the lifetime cap after now.
    TooLong {
        /// Its expiry (Unix seconds).
        expires: u64,
        /// The cap, in seconds past now.
        max_lifetime: u64,
    },
    /// Signed, but its store revoked every token expiring at or before a time.
    Revoked {
        /// The store's revocation time (Unix seconds).
        before: u64,
    },
    /// The secret given to mint is empty.
    EmptySecret,
}

impl TokenError {
    /// A short machine-readable reason: `malformed`, `unknown_kid`,
    /// `bad_signature`, `expired`, `too_long`, `revoked` or `empty_secret`
    /// (the worker answers it as `reason`, the wasm error as `code`).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::UnknownKid(_) => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired { .. } => "expired",
            TokenError::TooLong { .. } => "too_long",
            TokenError::Revoked { .. } => "revoked",
            TokenError::EmptySecret => "empty_secret",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(
                f,
                "the token is malformed ({why}), expected <kid>.<store_slug>.<expires_unix>.<64 hex digits>"
            ),
            TokenError::UnknownKid(kid) => write!(
                f,
                "the token's key id {kid} is not one this service holds (its secret was rotated out): ask head office for a new token"
            ),
            TokenError::BadSignature => {
                f.write_str("the token's signature does not match (wrong secret or altered token)")
            }
            TokenError::Expired { expires } => {
                write!(f, "the token expired at {}", utc(*expires))
            }
            TokenError::TooLong { expires, max_lifetime } => write!(
                f,
                "the token is valid until {}, more than the {} days this service accepts: ask head office for a shorter one",
                utc(*expires),
                max_lifetime / 86_400
            ),
            TokenError::Revoked { before } => write!(
                f,
                "the token was revoked (this store's tokens expiring at or before {} are refused): ask head office for a new one",
                utc(*before)
            ),
            TokenError::EmptySecret => f.write_str("the token secret is empty"),
        }
    }
}

impl std::error::Error for TokenError {}

/// `YYYY-MM-DD HH:MM:SS UTC` for a Unix time (proleptic Gregorian).
pub fn utc(unix: u64) -> String {
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

/// The slug of a store name, the one rule for the CLI, the worker and the
/// store check: ASCII letters and digits lowercased, every run of anything
/// else (spaces, punctuation, and every non-ASCII character, look-alikes
/// such as the Kelvin sign `K` or `İ` included) one `-`, none at either end.
/// `"Isle of Wight"` → `isle-of-wight`, `"London_Piccadilly"` →
/// `london-piccadilly`, `"Zürich"` → `z-rich`. ASCII only on purpose: Unicode
/// case folding maps look-alikes onto ASCII letters (the Kelvin sign
/// lowercases to `k`), so a branch could reach another's slug with them.
///
/// ```
/// assert_eq!(cafe_etl::token::store_slug("  Isle of Wight "), "isle-of-wight");
/// assert_eq!(cafe_etl::token::store_slug("\u{212A}ent"), "ent");
/// ```
pub fn store_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut gap = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

/// True for a slug as [`store_slug`] makes them: `[a-z0-9]+(-[a-z0-9]+)*`,
/// at most [`MAX_SLUG_LEN`] bytes.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SLUG_LEN
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True for a key id: 1 to [`MAX_KID_LEN`] lowercase ASCII letters, digits,
/// `-` or `_` (no dot, since dots separate the token's parts).
pub fn is_kid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn mac(secret: &[u8], payload: &str) -> Result<Hmac<Sha256>, TokenError> {
    if secret.is_empty() {
        return Err(TokenError::EmptySecret);
    }
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::EmptySecret)?;
    m.update(payload.as_bytes());
    Ok(m)
}

/// Hex to bytes, lowercase only (`hex::decode` takes either case; a token
/// has one spelling).
fn unhex_lower(s: &str) -> Option<Vec<u8>> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(s).ok()
}

/// A token for `store` (a slug) valid until `expires` (Unix seconds), signed
/// with `secret` under the key id `kid`.
pub fn mint(kid: &str, secret: &[u8], store: &str, expires: u64) -> Result<String, TokenError> {
    if !is_kid(kid) {
        return Err(TokenError::Malformed(
            "the key id is not 1 to 16 lowercase letters, digits, - or _",
        ));
    }
    if !is_slug(store) {
        return Err(TokenError::Malformed(
            "the store is not a slug: lowercase letters, digits and single dashes",
        ));
    }
    let digits = expires.to_string();
    if digits.len() > MAX_EXPIRES_DIGITS {
        return Err(TokenError::Malformed("the expiry has too many digits"));
    }
    let payload = format!("{kid}.{store}.{digits}");
    let sig = mac(secret, &payload)?.finalize().into_bytes();
    Ok(format!("{payload}.{}", hex::encode(sig)))
}

/// A problem in the token configuration (`UPLOAD_SECRETS`, `UPLOAD_SECRET`,
/// `REVOKED_BEFORE`, `TOKEN_MAX_DAYS`, `STORE_NAMES`). The text names the
/// variable and the entry, never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn entries(spec: &str) -> impl Iterator<Item = &str> {
    spec.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// The secrets tokens are signed with, by key id; the first is the current
/// one (what new tokens are minted with), the other the previous one (still
/// accepted while the branches get new tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    keys: Vec<(String, Vec<u8>)>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: a secret never reaches a log.
        f.debug_list()
            .entries(self.keys.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Secrets {
    /// Parses `UPLOAD_SECRETS`: `kid=secret,kid=secret`, current first, at
    /// most [`MAX_SECRETS`]. A secret is everything after the first `=` (so
    /// base64 padding is kept) and holds at least [`MIN_SECRET_LEN`] bytes.
    pub fn parse(spec: &str) -> Result<Secrets, ConfigError> {
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, entry) in entries(spec).enumerate() {
            let n = i + 1;
            let Some((kid, secret)) = entry.split_once('=') else {
                return Err(ConfigError(format!(
                    "UPLOAD_SECRETS entry {n} is not kid=secret"
                )));
            };
            let kid = kid.trim();
            if !is_kid(kid) {
                return Err(ConfigError(format!(
                    "UPLOAD_SECRETS entry {n}: the key id is not 1 to {MAX_KID_LEN} lowercase letters, digits, - or _"
                )));
            }
            Self::check_secret(secret, &format!("UPLOAD_SECRETS entry {n} ({kid})"))?;
            if keys.iter().any(|(k, _)| k == kid) {
                return Err(ConfigError(format!(
                    "UPLOAD_SECRETS names the key id {kid} twice"
                )));
            }
            keys.push((kid.to_string(), secret.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err(ConfigError(
                "UPLOAD_SECRETS holds no kid=secret entry".into(),
            ));
        }
        if keys.len() > MAX_SECRETS {
            return Err(ConfigError(format!(
                "UPLOAD_SECRETS holds {} secrets; keep the current and the previous one only",
                keys.len()
            )));
        }
        Ok(Secrets { keys })
    }

    /// One secret under a key id (`UPLOAD_SECRET` is [`LEGACY_KID`]).
    pub fn single(kid: &str, secret: &str, what: &str) -> Result<Secrets, ConfigError> {
        if !is_kid(kid) {
            return Err(ConfigError(format!(
                "the key id {kid:?} is not 1 to {MAX_KID_LEN} lowercase letters, digits, - or _"
            )));
        }
        Self::check_secret(secret, what)?;
        Ok(Secrets {
            keys: vec![(kid.to_string(), secret.as_bytes().to_vec())],
        })
    }

    /// The worker's secrets from its variables: `UPLOAD_SECRETS` when set
    /// (and not empty), else `UPLOAD_SECRET` under [`LEGACY_KID`].
    pub fn from_vars(secrets: Option<&str>, secret: Option<&str>) -> Result<Secrets, ConfigError> {
        match (secrets.filter(|s| !s.trim().is_empty()), secret.filter(|s| !s.is_empty())) {
            (Some(spec), _) => Secrets::parse(spec),
            (None, Some(s)) => Secrets::single(LEGACY_KID, s, "UPLOAD_SECRET"),
            (None, None) => Err(ConfigError(
                "UPLOAD_SECRETS is not set (kid=secret,... with the current secret first; UPLOAD_SECRET alone is read as key id k1)".into(),
            )),
        }
    }

    fn check_secret(secret: &str, what: &str) -> Result<(), ConfigError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError(format!(
                "{what} must hold at least {MIN_SECRET_LEN} bytes"
            )));
        }
        Ok(())
    }

    /// The current key id and secret: what new tokens are minted with.
    pub fn current(&self) -> (&str, &[u8]) {
        let (k, s) = &self.keys[0];
        (k, s)
    }

    /// The secret of a key id.
    pub fn get(&self, kid: &str) -> Option<&[u8]> {
        self.keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, s)| &s[..])
    }

    /// The key ids held, current first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }
}

/// Parses a time: Unix seconds (`1767225600`), a date (`2026-01-01`, its
/// midnight UTC) or a UTC time (`2026-01-01T12:00:00Z`).
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= MAX_EXPIRES_DIGITS && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = match b.len() {
        10 => (0, 0, 0),
        20 if b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z' => {
            (num(11..13)?, num(14..16)?, num(17..19)?)
        }
        _ => return None,
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || d < 1
        || d > month_days[(m - 1) as usize]
        || hh > 23
        || mm > 59
        || ss > 59
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3_600 + mm * 60 + ss).ok()
}

/// Per-store revocation times (`REVOKED_BEFORE`: `slug=time,...`, a time as
/// [`parse_time`] reads it). A token carries no issue time (the format has
/// none), so a store's time `T` refuses every token of that store that
/// expires at or before `T`: set `T` to the lost token's expiry (`cafe-etl
/// token --verify` prints it) or the latest expiry minted for the store, and
/// give the branch a token expiring later. Other stores are not touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    stores: Vec<(String, u64)>,
}

impl Revocations {
    /// Parses `REVOKED_BEFORE`; empty is none.
    pub fn parse(spec: &str) -> Result<Revocations, ConfigError> {
        let mut stores: Vec<(String, u64)> = Vec::new();
        for (i, entry) in entries(spec).enumerate() {
            let n = i + 1;
            let (slug, time) = entry
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("REVOKED_BEFORE entry {n} is not slug=time")))?;
            let slug = slug.trim();
            if !is_slug(slug) {
                return Err(ConfigError(format!(
                    "REVOKED_BEFORE entry {n}: {slug:?} is not a store slug (lowercase letters, digits and single dashes)"
                )));
            }
            let t = parse_time(time).ok_or_else(|| {
                ConfigError(format!(
                    "REVOKED_BEFORE entry {n} ({slug}): {:?} is not a time (Unix seconds, 2026-01-31 or 2026-01-31T12:00:00Z)",
                    time.trim()
                ))
            })?;
            if stores.iter().any(|(s, _)| s == slug) {
                return Err(ConfigError(format!(
                    "REVOKED_BEFORE names the store {slug} twice"
                )));
            }
            stores.push((slug.to_string(), t));
        }
        Ok(Revocations { stores })
    }

    /// The revocation time of a store, if any.
    pub fn before(&self, slug: &str) -> Option<u64> {
        self.stores.iter().find(|(s, _)| s == slug).map(|&(_, t)| t)
    }
}

/// Checks tokens against a secret set, a lifetime cap and per-store
/// revocation times.
#[derive(Clone, Debug)]
pub struct Verifier {
    /// The secrets, current first.
    pub secrets: Secrets,
    /// Per-store revocation times.
    pub revoked: Revocations,
    /// Longest lifetime left accepted, in seconds.
    pub max_lifetime: u64,
}

impl Verifier {
    /// A verifier with no revocation and the default cap.
    pub fn new(secrets: Secrets) -> Verifier {
        Verifier {
            secrets,
            revoked: Revocations::default(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
        }
    }

    /// The worker's verifier from its variables' text (absent is `None`):
    /// `UPLOAD_SECRETS`/`UPLOAD_SECRET`, `REVOKED_BEFORE`, `TOKEN_MAX_DAYS`.
    pub fn from_vars(
        secrets: Option<&str>,
        secret: Option<&str>,
        revoked_before: Option<&str>,
        max_days: Option<&str>,
    ) -> Result<Verifier, ConfigError> {
        Verifier::with_limits(
            Secrets::from_vars(secrets, secret)?,
            revoked_before,
            max_days,
        )
    }

    /// A verifier of `secrets` with `REVOKED_BEFORE` and `TOKEN_MAX_DAYS`
    /// as text (absent is none and the default cap).
    pub fn with_limits(
        secrets: Secrets,
        revoked_before: Option<&str>,
        max_days: Option<&str>,
    ) -> Result<Verifier, ConfigError> {
        let max_lifetime = match max_days.map(str::trim).filter(|s| !s.is_empty()) {
            None => DEFAULT_MAX_LIFETIME,
            Some(s) => match s.parse::<u64>() {
                Ok(d @ 1..=3660) => d * 86_400,
                _ => {
                    return Err(ConfigError(format!(
                        "TOKEN_MAX_DAYS is {s:?}, expected a whole number of days from 1 to 3660"
                    )))
                }
            },
        };
        Ok(Verifier {
            secrets,
            revoked: Revocations::parse(revoked_before.unwrap_or(""))?,
            max_lifetime,
        })
    }

    /// Checks a token's form, key id, signature (in constant time), expiry,
    /// lifetime and revocation against the current Unix time `now`, in that
    /// order.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(kid), Some(store), Some(expires), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed(
                "it does not have four dot-separated parts",
            ));
        };
        if !is_kid(kid) {
            return Err(TokenError::Malformed("the key id part is not a key id"));
        }
        if !is_slug(store) {
            return Err(TokenError::Malformed("the store part is not a slug"));
        }
        if expires.is_empty()
            || expires.len() > MAX_EXPIRES_DIGITS
            || !expires.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(TokenError::Malformed(
                "the expiry is not a Unix time in decimal digits",
            ));
        }
        let sig = match unhex_lower(sig) {
            Some(bytes) if bytes.len() == 32 => bytes,
            _ => {
                return Err(TokenError::Malformed(
                    "the signature is not 64 lowercase hex digits",
                ))
            }
        };
        let secret = self
            .secrets
            .get(kid)
            .ok_or_else(|| TokenError::UnknownKid(kid.to_string()))?;
        let payload = &token[..kid.len() + 1 + store.len() + 1 + expires.len()];
        mac(secret, payload)?
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        // At most 12 digits: always fits.
        let expires: u64 = expires
            .parse()
            .map_err(|_| TokenError::Malformed("the expiry is out of range"))?;
        if now >= expires {
            return Err(TokenError::Expired { expires });
        }
        if expires - now > self.max_lifetime {
            return Err(TokenError::TooLong {
                expires,
                max_lifetime: self.max_lifetime,
            });
        }
        if let Some(before) = self.revoked.before(store) {
            if expires <= before {
                return Err(TokenError::Revoked { before });
            }
        }
        Ok(Claims {
            kid: kid.to_string(),
            store: store.to_string(),
            expires,
        })
    }
}

/// The registered spelling of each branch's store (`STORE_NAMES`:
/// `slug=Canonical Name,...`), so one branch is one store id in the
/// warehouse: the store id is made from the store name as staged, and
/// `Leeds`, `LEEDS` and `Leeds!!` share the slug `leeds` but would be three
/// stores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreNames {
    names: Vec<(String, String)>,
}

/// Why the worker refuses a file's stores (403, nothing staged). The texts
/// name the token's store and a spelling of it found in the file, never
/// another store's name or anything else from the rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreRefusal {
    /// A staged row spells the token's store otherwise than registered.
    Misspelt {
        /// The token's slug.
        slug: String,
        /// The registered name.
        canonical: String,
        /// The spelling found.
        found: String,
        /// Staged rows with that spelling.
        rows: u64,
    },
    /// Staged rows belong to another store (not named).
    OtherStore {
        /// The token's slug.
        slug: String,
        /// Staged rows of other stores.
        rows: u64,
    },
    /// The token's store has no registered name.
    NotRegistered {
        /// The token's slug.
        slug: String,
    },
}

impl StoreRefusal {
    /// `wrong_store` (rows spelt otherwise, or of another store) or
    /// `store_not_registered`.
    pub fn code(&self) -> &'static str {
        match self {
            StoreRefusal::Misspelt { .. } | StoreRefusal::OtherStore { .. } => "wrong_store",
            StoreRefusal::NotRegistered { .. } => "store_not_registered",
        }
    }
}

fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

impl fmt::Display for StoreRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreRefusal::Misspelt {
                slug,
                canonical,
                found,
                rows: n,
            } => write!(
                f,
                "nothing was staged because this file spells the store {found:?} on {}, where branch {slug} is registered as {canonical:?}",
                rows(*n)
            ),
            StoreRefusal::OtherStore { slug, rows: n } => write!(
                f,
                "nothing was staged because this file has {} of another branch, and this token is for branch {slug} only",
                rows(*n)
            ),
            StoreRefusal::NotRegistered { slug } => write!(
                f,
                "nothing was staged because branch {slug} has no registered store name in this upload service (STORE_NAMES); ask head office to add it"
            ),
        }
    }
}

impl std::error::Error for StoreRefusal {}

impl StoreNames {
    /// Parses `STORE_NAMES`: `slug=Canonical Name,...`. Each name's slug must
    /// be its key (so `leeds=York` is refused), names are trimmed and hold
    /// no comma.
    pub fn parse(spec: &str) -> Result<StoreNames, ConfigError> {
        let mut names: Vec<(String, String)> = Vec::new();
        for (i, entry) in entries(spec).enumerate() {
            let n = i + 1;
            let (slug, name) = entry.split_once('=').ok_or_else(|| {
                ConfigError(format!("STORE_NAMES entry {n} is not slug=Store Name"))
            })?;
            let (slug, name) = (slug.trim(), name.trim());
            if !is_slug(slug) {
                return Err(ConfigError(format!(
                    "STORE_NAMES entry {n}: {slug:?} is not a store slug (lowercase letters, digits and single dashes)"
                )));
            }
            if store_slug(name) != slug {
                return Err(ConfigError(format!(
                    "STORE_NAMES entry {n}: the name {name:?} has the slug {:?}, not {slug}",
                    store_slug(name)
                )));
            }
            if names.iter().any(|(s, _)| s == slug) {
                return Err(ConfigError(format!(
                    "STORE_NAMES names the store {slug} twice"
                )));
            }
            names.push((slug.to_string(), name.to_string()));
        }
        Ok(StoreNames { names })
    }

    /// The registered name of a slug.
    pub fn name(&self, slug: &str) -> Option<&str> {
        self.names
            .iter()
            .find(|(s, _)| s == slug)
            .map(|(_, n)| n.as_str())
    }

    /// Checks the stores of a file's staged rows (`(name, rows)`, e.g. the
    /// report's `summary.by_store`) for a token of store `slug`: every one
    /// must be the registered name exactly. A misspelling of the token's own
    /// store is reported first (it is the one staff can fix), with the
    /// spelling found; other stores are counted, never named.
    pub fn check<'a>(
        &self,
        slug: &str,
        stores: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<(), StoreRefusal> {
        let Some(canonical) = self.name(slug) else {
            return Err(StoreRefusal::NotRegistered {
                slug: slug.to_string(),
            });
        };
        let mut misspelt: Option<(&str, u64)> = None;
        let mut other = 0u64;
        for (name, n) in stores {
            if name == canonical {
                continue;
            }
            if store_slug(name) == slug {
                if misspelt.is_none() {
                    misspelt = Some((name, n));
                }
            } else {
                other += n.max(1);
            }
        }
        if let Some((found, n)) = misspelt {
            return Err(StoreRefusal::Misspelt {
                slug: slug.to_string(),
                canonical: canonical.to_string(),
                found: found.to_string(),
                rows: n,
            });
        }
        if other > 0 {
            return Err(StoreRefusal::OtherStore {
                slug: slug.to_string(),
                rows: other,
            });
        }
        Ok(())
    }
}

/// Parses a time to live such as `30d`, `12h`, `90m`, `3600s` or `2w` into
/// seconds, at most [`DEFAULT_MAX_LIFETIME`] (the worker refuses longer
/// tokens). A bare number is refused, so that `30` is never read as seconds
/// by mistake.
///
/// ```
/// assert_eq!(cafe_etl::token::parse_ttl("30d"), Ok(30 * 86_400));
/// assert!(cafe_etl::token::parse_ttl("30").is_err());
/// ```
pub fn parse_ttl(s: &str) -> Result<u64, ConfigError> {
    let s = s.trim();
    let unit = s.chars().last().unwrap_or(' ');
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => {
            return Err(ConfigError(format!(
                "time to live {s:?} needs a unit: s, m, h, d or w (for example 30d)"
            )))
        }
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| {
        ConfigError(format!(
            "time to live {s:?} is not a whole number followed by s, m, h, d or w"
        ))
    })?;
    match n.checked_mul(scale) {
        Some(0) => Err(ConfigError(format!("time to live {s:?} is zero"))),
        Some(secs) if secs <= DEFAULT_MAX_LIFETIME => Ok(secs),
        _ => Err(ConfigError(format!(
            "time to live {s:?} is longer than {} days, which the upload service refuses",
            DEFAULT_MAX_LIFETIME / 86_400
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "0123456789abcdef0123456789abcdef";
    const S2: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn slugs() {
        for (name, slug) in [
            ("Leeds", "leeds"),
            ("Isle of Wight", "isle-of-wight"),
            ("london_piccadilly", "london-piccadilly"),
            ("  St. Ives -- Harbour ", "st-ives-harbour"),
            ("Zürich", "z-rich"),
            // Look-alikes are not letters here: Kelvin sign, dotted capital I,
            // fullwidth letters, a combining acute accent.
            ("\u{212A}ing's Lynn", "ing-s-lynn"),
            ("\u{130}pswich", "pswich"),
            ("\u{FF2C}eeds", "eeds"),
            ("Leeds\u{301}", "leeds"),
            ("", ""),
            ("!!!", ""),
        ] {
            assert_eq!(store_slug(name), slug, "{name:?}");
            assert_eq!(is_slug(&store_slug(name)), !slug.is_empty(), "{name:?}");
        }
    }

    fn verifier() -> Verifier {
        Verifier::new(Secrets::parse(&format!("k2={S2}, k1={S1}")).unwrap())
    }

    #[test]
    fn round_trip_rotation_and_tampering() {
        let v = verifier();
        assert_eq!(v.secrets.current().0, "k2");
        let now = 1_000_000;
        let t = mint("k2", S2.as_bytes(), "isle-of-wight", now + 100).unwrap();
        assert_eq!(v.verify(&t, now).unwrap().store, "isle-of-wight");
        // The previous secret is still accepted, an unknown one is not.
        let old = mint("k1", S1.as_bytes(), "leeds", now + 100).unwrap();
        assert_eq!(v.verify(&old, now).unwrap().kid, "k1");
        let gone = mint("k0", S1.as_bytes(), "leeds", now + 100).unwrap();
        assert_eq!(
            v.verify(&gone, now),
            Err(TokenError::UnknownKid("k0".into()))
        );
        // A kid swapped onto another secret's signature.
        let swapped = old.replacen("k1.", "k2.", 1);
        assert_eq!(v.verify(&swapped, now), Err(TokenError::BadSignature));
        let forged = t.replacen("isle-of-wight", "leeds", 1);
        assert_eq!(v.verify(&forged, now), Err(TokenError::BadSignature));
        assert_eq!(
            v.verify(&t.to_uppercase(), now).unwrap_err().reason(),
            "malformed"
        );
        assert_eq!(mint("k1", b"", "leeds", 1), Err(TokenError::EmptySecret));
        assert_eq!(
            mint("k1", b"s", "Leeds", 1).unwrap_err().reason(),
            "malformed"
        );
        assert_eq!(
            mint("K1", b"s", "leeds", 1).unwrap_err().reason(),
            "malformed"
        );
        assert_eq!(
            mint("k1", b"s", "leeds", 1_000_000_000_000)
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn lifetime_cap_and_revocation() {
        let mut v = verifier();
        let now = 1_767_225_600;
        let cap = mint("k2", S2.as_bytes(), "leeds", now + DEFAULT_MAX_LIFETIME).unwrap();
        assert!(v.verify(&cap, now).is_ok());
        let long = mint("k2", S2.as_bytes(), "leeds", now + DEFAULT_MAX_LIFETIME + 1).unwrap();
        assert_eq!(v.verify(&long, now).unwrap_err().reason(), "too_long");
        // Valid again once it is within the cap.
        assert!(v.verify(&long, now + 1).is_ok());
        v.revoked = Revocations::parse(&format!("leeds={}", now + 3_600)).unwrap();
        let lost = mint("k2", S2.as_bytes(), "leeds", now + 3_600).unwrap();
        let new = mint("k2", S2.as_bytes(), "leeds", now + 3_601).unwrap();
        let york = mint("k2", S2.as_bytes(), "york", now + 60).unwrap();
        assert_eq!(
            v.verify(&lost, now),
            Err(TokenError::Revoked {
                before: now + 3_600
            })
        );
        assert!(v.verify(&new, now).is_ok());
        assert!(v.verify(&york, now).is_ok(), "other stores untouched");
    }

    #[test]
    fn configuration() {
        for bad in [
            "",
            "k1",
            "K1=0123456789abcdef",
            "k1=short",
            "k1=0123456789abcdef,k1=0123456789abcdeg",
            "a=0123456789abcdef,b=0123456789abcdef,c=0123456789abcdef",
            "k.1=0123456789abcdef",
        ] {
            let e = Secrets::parse(bad).unwrap_err();
            assert!(e.0.starts_with("UPLOAD_SECRETS"), "{bad:?}: {e}");
            assert!(
                !e.0.contains("0123456789abcdef"),
                "the secret is never shown: {e}"
            );
        }
        // Base64 padding stays part of the secret.
        let s = Secrets::parse("k3=c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap();
        assert_eq!(s.get("k3"), Some(&b"c2VjcmV0LXNlY3JldC1zZWNyZXQ="[..]));
        assert!(!format!("{s:?}").contains("c2Vj"));
        let legacy = Secrets::from_vars(None, Some(S1)).unwrap();
        assert_eq!(legacy.current(), (LEGACY_KID, S1.as_bytes()));
        let both = Secrets::from_vars(Some(&format!("k2={S2}")), Some(S1)).unwrap();
        assert_eq!(both.kids().collect::<Vec<_>>(), ["k2"]);
        assert!(Secrets::from_vars(Some(" "), None).is_err());
        assert!(Verifier::from_vars(None, Some(S1), None, Some("0")).is_err());
        assert_eq!(
            Verifier::from_vars(None, Some(S1), Some(""), Some("30"))
                .unwrap()
                .max_lifetime,
            30 * 86_400
        );
        for bad in [
            "leeds",
            "Leeds=1",
            "leeds=yesterday",
            "leeds=1,leeds=2",
            "leeds=2026-02-30",
        ] {
            assert!(Revocations::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1767225600"), Some(1_767_225_600));
        assert_eq!(parse_time("2026-01-01"), Some(1_767_225_600));
        assert_eq!(parse_time("2026-01-01T00:00:01Z"), Some(1_767_225_601));
        assert_eq!(parse_time("2000-02-29"), Some(951_782_400));
        for bad in [
            "",
            "2026-1-01",
            "2026-01-01 00:00:00",
            "2025-02-29",
            "2026-01-01T24:00:00Z",
            "-5",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
        assert_eq!(utc(1_767_225_599), "2025-12-31 23:59:59 UTC");
    }

    #[test]
    fn store_names() {
        let names = StoreNames::parse("leeds=Leeds, isle-of-wight=Isle of Wight").unwrap();
        let ok = names.check("leeds", [("Leeds", 10)]);
        assert_eq!(ok, Ok(()));
        let misspelt = names
            .check("leeds", [("Leeds", 3), ("Other Place", 2), ("LEEDS", 1)])
            .unwrap_err();
        assert_eq!(misspelt.code(), "wrong_store");
        let text = misspelt.to_string();
        assert!(text.contains("\"LEEDS\" on 1 row,"), "{text}");
        assert!(
            !text.contains("Other"),
            "another store is never named: {text}"
        );
        let other = names.check("leeds", [("York", 4)]).unwrap_err();
        assert_eq!(
            other,
            StoreRefusal::OtherStore {
                slug: "leeds".into(),
                rows: 4
            }
        );
        assert!(!other.to_string().contains("York"));
        let none = names.check("york", [("York", 1)]).unwrap_err();
        assert_eq!(none.code(), "store_not_registered");
        for bad in [
            "leeds=York",
            "leeds",
            "Leeds=Leeds",
            "leeds=Leeds,leeds=LEEDS",
        ] {
            assert!(StoreNames::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90m"), Ok(5_400));
        assert_eq!(parse_ttl("2w"), Ok(1_209_600));
        assert_eq!(parse_ttl("400d"), Ok(DEFAULT_MAX_LIFETIME));
        assert!(parse_ttl("401d").is_err());
        assert!(parse_ttl("0d").is_err());
        assert!(parse_ttl("d").is_err());
        assert!(parse_ttl("-1d").is_err());
        assert!(parse_ttl("99999y").is_err());
    }
}
