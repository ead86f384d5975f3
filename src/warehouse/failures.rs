//! Batches that will not load, and what the ledger says of given batches.
//!
//! A batch whose load fails for a reason that will not go away (a COPY
//! error, a missing object) is quarantined: one row per batch in
//! `load_failures`, recording it again keeps that one row (the latest
//! reason, the first time, the number of attempts). The ledger query tells
//! a consumer or a status page which of some batches are loaded, and when.
//!
//! Every value that reaches the SQL is checked or escaped here: batch ids
//! are the core's ([`crate::is_batch_id`]) and never interpolated
//! unchecked, codes are a closed alphabet, free text is a literal.

use super::plan::{sql_literal, Value};
use super::schema::{now_utc, Dialect, FAILURES_TABLE, LEDGER_TABLE};
use super::{Error, Phase};
use crate::is_batch_id;

/// The longest `reason` kept, in bytes (the column's size).
pub const MAX_REASON_BYTES: usize = 1024;

/// The longest `store` kept, in bytes (the column's size).
pub const MAX_STORE_BYTES: usize = 256;

/// The most batch ids one ledger query asks about: 2,000 ids of 32 digits
/// quoted keep it near 72 KB, under the Data API's statement limit
/// ([`super::DATA_API_MAX_STATEMENT_BYTES`]).
pub const MAX_LEDGER_QUERY_IDS: usize = 2000;

/// A quarantined batch, as the consumer reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Failure {
    /// The batch id (32 hex digits).
    pub batch_id: String,
    /// The store it was uploaded for, when known.
    #[serde(default)]
    pub store: Option<String>,
    /// A stable code: lowercase letters, digits and `_`, at most 64.
    pub code: String,
    /// Plain words, no personal data, no bucket or key names (the caller's
    /// to ensure); control characters are dropped and the text is cut to
    /// [`MAX_REASON_BYTES`].
    pub reason: String,
}

/// Checks a batch id, never quoting it back (it may be anything).
fn batch_id_checked(id: &str) -> Result<(), Error> {
    if is_batch_id(id) {
        Ok(())
    } else {
        Err(Error::new(
            Phase::Load,
            format!(
                "a batch id is 32 lowercase hex digits; got {} characters that are not one",
                id.chars().count()
            ),
        )
        .with_code("bad_batch_id"))
    }
}

/// `text` without control characters, cut at a character boundary to at
/// most `max` bytes.
fn plain(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// The statements that record `failure` in `load_failures`, to run in one
/// transaction: the table locked (two quarantines of one batch at once
/// would each insert; Redshift does not enforce the primary key), the row
/// updated if there is one, inserted if not. Running them twice leaves one
/// row with `attempts` 2.
pub fn quarantine_statements(failure: &Failure, dialect: Dialect) -> Result<Vec<String>, Error> {
    batch_id_checked(&failure.batch_id)?;
    let code = &failure.code;
    if code.is_empty()
        || code.len() > 64
        || !code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::new(
            Phase::Load,
            "a failure code is 1 to 64 lowercase letters, digits or _",
        )
        .with_code("bad_failure"));
    }
    let reason = plain(&failure.reason, MAX_REASON_BYTES);
    if reason.trim().is_empty() {
        return Err(Error::new(
            Phase::Load,
            "a quarantined batch needs a reason in plain words",
        )
        .with_code("bad_failure"));
    }
    let text = |s: &str| sql_literal(&Value::Text(s.to_string()), dialect);
    let id = text(&failure.batch_id);
    let store = match &failure.store {
        Some(s) if !plain(s, MAX_STORE_BYTES).is_empty() => text(&plain(s, MAX_STORE_BYTES)),
        _ => "NULL".to_string(),
    };
    let (code, reason) = (text(code), text(&reason));
    let now = now_utc("", dialect);
    let now = now.trim();
    Ok(vec![
        format!("LOCK TABLE {FAILURES_TABLE}"),
        format!(
            "UPDATE {FAILURES_TABLE} SET store = COALESCE({store}, store), code = {code}, \
             reason = {reason}, attempts = attempts + 1, failed_at = {now} \
             WHERE batch_id = {id}"
        ),
        format!(
            "INSERT INTO {FAILURES_TABLE} (batch_id, store, code, reason, attempts) \
             SELECT {id}, {store}, {code}, {reason}, 1 \
             WHERE NOT EXISTS (SELECT 1 FROM {FAILURES_TABLE} WHERE batch_id = {id})"
        ),
    ])
}

/// `SELECT batch_id, loaded_at` of those of `batch_ids` the ledger holds.
/// Every id is checked first; none, and the query returns no row.
pub fn ledger_query(batch_ids: &[String], dialect: Dialect) -> Result<String, Error> {
    if batch_ids.len() > MAX_LEDGER_QUERY_IDS {
        return Err(Error::new(
            Phase::Load,
            format!(
                "{} batch ids in one ledger query; at most {MAX_LEDGER_QUERY_IDS}",
                batch_ids.len()
            ),
        )
        .with_code("too_many_ids"));
    }
    let mut ids = Vec::with_capacity(batch_ids.len());
    for id in batch_ids {
        batch_id_checked(id)?;
        ids.push(sql_literal(&Value::Text(id.clone()), dialect));
    }
    let filter = match ids.is_empty() {
        true => "1 = 0".to_string(),
        false => format!("batch_id IN ({})", ids.join(", ")),
    };
    Ok(format!(
        "SELECT batch_id, loaded_at FROM {LEDGER_TABLE} WHERE {filter} ORDER BY batch_id"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn failure(id: &str, code: &str, reason: &str) -> Failure {
        Failure {
            batch_id: id.into(),
            store: Some("Leeds".into()),
            code: code.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn quarantine_checks_what_reaches_the_sql() {
        // (failure, refusal)
        let cases: &[(Failure, Option<&str>)] = &[
            (
                failure(ID, "copy_failed", "a row the warehouse refused"),
                None,
            ),
            (
                failure("Ann Example", "copy_failed", "x"),
                Some("32 lowercase hex digits; got 11 characters"),
            ),
            (
                failure(&ID.to_uppercase(), "copy_failed", "x"),
                Some("32 lowercase hex digits"),
            ),
            (failure(ID, "Copy Failed", "x"), Some("a failure code is")),
            (failure(ID, "", "x"), Some("a failure code is")),
            (failure(ID, "missing_object", " \n"), Some("needs a reason")),
        ];
        for (f, refusal) in cases {
            for dialect in [Dialect::Postgres, Dialect::Redshift] {
                match (quarantine_statements(f, dialect), refusal) {
                    (Ok(sql), None) => {
                        assert_eq!(sql.len(), 3);
                        assert_eq!(sql[0], "LOCK TABLE load_failures");
                        assert!(sql[1].starts_with("UPDATE load_failures SET"));
                        assert!(sql[2].contains("WHERE NOT EXISTS"));
                        assert!(sql.iter().skip(1).all(|s| s.contains(ID)));
                    }
                    (Err(e), Some(want)) => {
                        let code = if want.contains("hex") {
                            "bad_batch_id"
                        } else {
                            "bad_failure"
                        };
                        assert_eq!(e.code(), Some(code), "{e}");
                        let msg = e.to_string();
                        assert!(
                            msg.starts_with("load error: ") && msg.contains(want),
                            "{msg}"
                        );
                        assert!(!msg.contains("Ann"), "{msg}");
                    }
                    (got, _) => panic!("{f:?}: {got:?}"),
                }
            }
        }
    }

    #[test]
    fn quarantine_text_is_escaped_plain_and_cut() {
        let mut f = failure(ID, "copy_failed", "it's a \\ bad\u{7} row");
        f.store = Some("O'Neill's\n".into());
        let pg = quarantine_statements(&f, Dialect::Postgres).unwrap();
        assert!(pg[2].contains("'O''Neill''s'"), "{}", pg[2]);
        assert!(pg[2].contains("'it''s a \\ bad row'"), "{}", pg[2]);
        assert!(pg[1].contains("failed_at = (now() AT TIME ZONE 'utc')"));
        let rs = quarantine_statements(&f, Dialect::Redshift).unwrap();
        assert!(rs[2].contains("'it''s a \\\\ bad row'"), "{}", rs[2]);
        assert!(rs[1].contains("failed_at = GETDATE()"));
        f.reason = "é".repeat(600);
        f.store = None;
        let long = quarantine_statements(&f, Dialect::Postgres).unwrap();
        assert!(long[2].contains(&format!("'{}'", "é".repeat(512))));
        assert!(long[2].contains(", NULL, "), "{}", long[2]);
    }

    #[test]
    fn ledger_query_takes_checked_ids_only() {
        let other = "fedcba9876543210fedcba9876543210".to_string();
        let q = ledger_query(&[ID.to_string(), other.clone()], Dialect::Redshift).unwrap();
        assert_eq!(
            q,
            format!(
                "SELECT batch_id, loaded_at FROM loaded_batches WHERE batch_id IN \
                 ('{ID}', '{other}') ORDER BY batch_id"
            )
        );
        assert!(ledger_query(&[], Dialect::Postgres)
            .unwrap()
            .contains("WHERE 1 = 0"));
        let e = ledger_query(&[ID.into(), "x' OR '1'='1".into()], Dialect::Postgres).unwrap_err();
        assert!(e.to_string().contains("32 lowercase hex digits"), "{e}");
        assert_eq!(e.code(), Some("bad_batch_id"));
        let many = vec![ID.to_string(); MAX_LEDGER_QUERY_IDS + 1];
        let e = ledger_query(&many, Dialect::Postgres).unwrap_err();
        assert_eq!(e.code(), Some("too_many_ids"));
        let most = vec![ID.to_string(); MAX_LEDGER_QUERY_IDS];
        assert!(
            ledger_query(&most, Dialect::Redshift).unwrap().len()
                < super::super::DATA_API_MAX_STATEMENT_BYTES
        );
    }
}
