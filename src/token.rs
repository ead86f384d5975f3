//! Branch upload tokens: `<store_slug>.<expires_unix>.<hex HMAC-SHA256>`.
//!
//! The edge worker accepts an upload only with a token for one store; it
//! refuses (403) a file holding rows of any other store. A token is
//!
//! ```text
//! leeds.1767225600.<64 hex digits of HMAC-SHA256(UPLOAD_SECRET, "leeds.1767225600")>
//! ```
//!
//! valid while the current Unix time is *before* `expires_unix`. The worker
//! checks it in JavaScript with WebCrypto; both implementations are tested
//! against the shared vectors in `tests/data/token-vectors.json`.
//!
//! Pure functions only (the caller passes the clock), so this module builds
//! for wasm32 as well.
//!
//! ```
//! use cafe_etl::token::{mint, verify, TokenError};
//! let secret = b"a secret of at least 16 bytes";
//! let token = mint(secret, "leeds", 1_767_225_600).unwrap();
//! assert!(token.starts_with("leeds.1767225600."));
//! let claims = verify(secret, &token, 1_767_225_599).unwrap();
//! assert_eq!((claims.store.as_str(), claims.expires), ("leeds", 1_767_225_600));
//! assert!(matches!(verify(secret, &token, 1_767_225_600), Err(TokenError::Expired { .. })));
//! assert_eq!(verify(b"another secret", &token, 0), Err(TokenError::BadSignature));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Longest store slug a token may carry.
pub const MAX_SLUG_LEN: usize = 64;

/// Most digits of the expiry (enough for any date anyone will mean).
pub const MAX_EXPIRES_DIGITS: usize = 12;

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The store slug the token is for.
    pub store: String,
    /// Unix time (seconds) from which the token is no longer valid.
    pub expires: u64,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not `<slug>.<digits>.<64 lowercase hex>`; the text says which part.
    Malformed(&'static str),
    /// Well formed, but not signed with this secret.
    BadSignature,
    /// Signed, but `now >= expires`.
    Expired {
        /// When it expired (Unix seconds).
        expires: u64,
    },
    /// The secret given to mint or verify is empty.
    EmptySecret,
}

impl TokenError {
    /// A short machine-readable reason: `malformed`, `bad_signature`,
    /// `expired` or `empty_secret` (the same words the worker uses).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired { .. } => "expired",
            TokenError::EmptySecret => "empty_secret",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(
                f,
                "the token is malformed ({why}), expected <store_slug>.<expires_unix>.<64 hex digits>"
            ),
            TokenError::BadSignature => {
                f.write_str("the token's signature does not match (wrong secret or altered token)")
            }
            TokenError::Expired { expires } => write!(f, "the token expired at Unix time {expires}"),
            TokenError::EmptySecret => f.write_str("the token secret is empty"),
        }
    }
}

impl std::error::Error for TokenError {}

/// The slug of a store name: ASCII letters and digits lowercased, every run
/// of anything else (spaces, punctuation, non-ASCII letters) one `-`, none
/// at either end. `"Isle of Wight"` → `isle-of-wight`, `"London_Piccadilly"`
/// → `london-piccadilly`.
///
/// ```
/// assert_eq!(cafe_etl::token::store_slug("  Isle of Wight "), "isle-of-wight");
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

/// A token for `store` (a slug) valid until `expires` (Unix seconds).
pub fn mint(secret: &[u8], store: &str, expires: u64) -> Result<String, TokenError> {
    if !is_slug(store) {
        return Err(TokenError::Malformed(
            "the store is not a slug: lowercase letters, digits and single dashes",
        ));
    }
    let payload = format!("{store}.{expires}");
    if payload.len() - store.len() - 1 > MAX_EXPIRES_DIGITS {
        return Err(TokenError::Malformed("the expiry has too many digits"));
    }
    let sig = mac(secret, &payload)?.finalize().into_bytes();
    Ok(format!("{payload}.{}", hex::encode(sig)))
}

/// Checks a token's form, signature (in constant time) and expiry against
/// the current Unix time `now`, in that order.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(store), Some(expires), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "it does not have three dot-separated parts",
        ));
    };
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
    let payload = &token[..store.len() + 1 + expires.len()];
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
    Ok(Claims {
        store: store.to_string(),
        expires,
    })
}

/// Parses a time to live such as `30d`, `12h`, `90m`, `3600s` or `2w` into
/// seconds. A bare number is refused, so that `30` is never read as seconds
/// by mistake.
///
/// ```
/// assert_eq!(cafe_etl::token::parse_ttl("30d"), Ok(30 * 86_400));
/// assert!(cafe_etl::token::parse_ttl("30").is_err());
/// ```
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let unit = s.chars().last().unwrap_or(' ');
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => {
            return Err(format!(
                "time to live {s:?} needs a unit: s, m, h, d or w (for example 30d)"
            ))
        }
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| {
        format!("time to live {s:?} is not a whole number followed by s, m, h, d or w")
    })?;
    match n.checked_mul(scale) {
        Some(0) => Err(format!("time to live {s:?} is zero")),
        Some(secs) if secs <= 10 * 366 * 86_400 => Ok(secs),
        _ => Err(format!("time to live {s:?} is longer than 10 years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for (name, slug) in [
            ("Leeds", "leeds"),
            ("Isle of Wight", "isle-of-wight"),
            ("london_piccadilly", "london-piccadilly"),
            ("  St. Ives -- Harbour ", "st-ives-harbour"),
            ("Zürich", "z-rich"),
            ("", ""),
            ("!!!", ""),
        ] {
            assert_eq!(store_slug(name), slug, "{name:?}");
            assert_eq!(is_slug(&store_slug(name)), !slug.is_empty(), "{name:?}");
        }
    }

    #[test]
    fn round_trip_and_tampering() {
        let s = b"0123456789abcdef0123456789abcdef";
        let t = mint(s, "isle-of-wight", 2_000_000_000).unwrap();
        assert_eq!(verify(s, &t, 1).unwrap().store, "isle-of-wight");
        let forged = t.replacen("isle-of-wight", "leeds", 1);
        assert_eq!(verify(s, &forged, 1), Err(TokenError::BadSignature));
        let later = t.replacen("2000000000", "2000000001", 1);
        assert_eq!(verify(s, &later, 1), Err(TokenError::BadSignature));
        assert_eq!(
            verify(s, &t.to_uppercase(), 1).unwrap_err().reason(),
            "malformed"
        );
        assert_eq!(verify(b"", &t, 1), Err(TokenError::EmptySecret));
        assert_eq!(mint(s, "Leeds", 1).unwrap_err().reason(), "malformed");
        assert_eq!(
            mint(s, "leeds", 1_000_000_000_000).unwrap_err().reason(),
            "malformed"
        );
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90m"), Ok(5_400));
        assert_eq!(parse_ttl("2w"), Ok(1_209_600));
        assert!(parse_ttl("0d").is_err());
        assert!(parse_ttl("d").is_err());
        assert!(parse_ttl("-1d").is_err());
        assert!(parse_ttl("99999y").is_err());
        assert!(parse_ttl("4000d").is_err());
    }
}
