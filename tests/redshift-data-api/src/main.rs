//! A local stand-in for the Amazon Redshift Data API, for the worker's tests.
//!
//! No Redshift can run here, so the worker's Redshift runner
//! (`worker/src/loader/redshift.js`) is tested against this program instead. It
//! speaks the Data API's JSON 1.1 protocol on plain HTTP and, for every request:
//!
//! - recomputes the SigV4 signature with AWS's own signer (the `aws-sigv4`
//!   crate) from the access key and secret it was started with, and refuses a
//!   request whose signature, key id, scope or date is wrong (403, the error
//!   types AWS answers);
//! - checks the request's shape against the service model (required members,
//!   types, lengths, one of `WorkgroupName`/`ClusterIdentifier`, the
//!   authentication combinations, at most 40 statements of at most 100 KiB);
//!   it is stricter than AWS in one way: an unknown member is refused, so a
//!   misspelt member cannot pass unnoticed;
//! - parses every statement of a batch with sqlparser's Redshift dialect; a
//!   statement that does not parse, or holds more than one statement, fails as
//!   Redshift would fail it, and is listed in the log;
//! - answers in the Data API's response shapes (`Id`, `Status`, `SubStatements`,
//!   `HasResultSet`, typed `Records`, `ColumnMetadata`, error bodies with
//!   `__type` and the HTTP status of the error's kind).
//!
//! It never executes SQL. A batch "runs" for `run_ms`, then finishes (or fails,
//! see the faults). To answer the ledger query with something real, it keeps
//! the batch ids a committed batch put into `loaded_batches`: an `INSERT INTO
//! loaded_batches … SELECT … FROM t` records the ids (first value of each row)
//! that `INSERT INTO t (batch_id, …) VALUES …` put into `t` earlier in the same
//! batch (or the ids of an `INSERT INTO loaded_batches … VALUES …`); a
//! `SELECT … FROM loaded_batches` is answered from those, filtered by the
//! 32-hex-digit literals its text holds. Any other SELECT answers no rows.
//!
//! Faults, set at start (`--faults JSON`) or at run time (`POST
//! /_standin/faults`): throttle the next N calls (400 `ThrottlingException`),
//! answer the next N calls with 500 `InternalServerException`, fail the
//! statement containing a marker (its sub-statement `FAILED` with a COPY-like
//! error), keep the batch containing a marker running until it is cancelled.
//! `GET /_standin/log` lists every request and batch received (what the tests
//! assert on); `POST /_standin/reset` forgets everything.
//!
//! Usage: `STANDIN_ACCESS_KEY_ID=… STANDIN_SECRET_ACCESS_KEY=…
//! redshift-data-api-standin [--port N] [--region R] [--faults JSON]`; prints
//! `{"listening":"http://127.0.0.1:PORT"}` on stdout once it accepts requests.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlparser::ast::{SetExpr, Statement, TableFactor, TableObject};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;

/// The Data API's limit on statements per `BatchExecuteStatement` (service model: `SqlList` max 40).
const MAX_SQLS: usize = 40;
/// The Data API's limit on one statement: "The maximum query statement size is
/// 100 KB" (Redshift Management Guide, Data API considerations); read as KiB,
/// the more generous figure, so the runner's own (stricter or equal) check is
/// what a plan meets first.
const MAX_SQL_BYTES: usize = 100 * 1024;
/// Larger request bodies are refused before parsing (40 × 100 KiB and the JSON around them).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How far a request's `X-Amz-Date` may be from now (AWS allows 15 minutes).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
const SERVICE: &str = "redshift-data";

/// Faults to inject; every field is optional in the JSON.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct Faults {
    /// The next this many Data API calls get 400 `ThrottlingException`.
    throttle_next: u32,
    /// The next this many Data API calls get 500 `InternalServerException`.
    internal_error_next: u32,
    /// The next this many calls of `refuse_action` get 400 `ValidationException`.
    refuse_next: u32,
    /// The action `refuse_next` applies to (e.g. `DescribeStatement`).
    refuse_action: Option<String>,
    /// A statement whose text contains this fails (its batch is `FAILED`).
    fail_marker: Option<String>,
    /// The error text of that failed statement (default: a COPY error as Redshift words it).
    fail_error: Option<String>,
    /// A batch with a statement whose text contains this stays running until cancelled.
    hang_marker: Option<String>,
    /// How long a batch runs before it finishes (default 150 ms).
    run_ms: Option<u64>,
    /// Rows per `GetStatementResult` page (default 1000).
    page_rows: Option<usize>,
}

/// What the stand-in made of one statement.
#[derive(Debug, Clone, Serialize)]
struct Sub {
    sql: String,
    /// `None` when it parsed as exactly one statement; else why not.
    parse_error: Option<String>,
    /// The statement's kind as parsed (`Insert`, `Copy`, `Query`, ...).
    kind: String,
    #[serde(skip)]
    effect: Effect,
    status: &'static str,
    error: Option<String>,
    result_rows: i64,
    has_result_set: bool,
    #[serde(skip)]
    result: Option<ResultSet>,
}

#[derive(Debug, Clone, Default)]
enum Effect {
    #[default]
    None,
    /// `INSERT INTO table (batch_id, …) VALUES …`: the rows' first values.
    InsertValues {
        table: String,
        ids: Vec<String>,
        /// Each row's `customer_key_id` value, when the insert names that column.
        key_ids: Vec<Option<String>>,
        rows: usize,
    },
    /// `INSERT INTO loaded_batches … SELECT … FROM source`.
    LedgerFrom { source: String },
    /// `SELECT columns FROM table`, with the batch ids its text names.
    Select {
        table: String,
        columns: Vec<String>,
        ids: Vec<String>,
    },
}

#[derive(Debug, Clone)]
struct ResultSet {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

/// One `BatchExecuteStatement`.
#[derive(Debug, Clone, Serialize)]
struct Batch {
    id: String,
    request: Map<String, Value>,
    #[serde(skip)]
    created: SystemTime,
    #[serde(skip)]
    updated: SystemTime,
    run_ms: u64,
    hang: bool,
    fail_marker: Option<String>,
    fail_error: Option<String>,
    status: &'static str,
    error: Option<String>,
    cancelled: bool,
    subs: Vec<Sub>,
}

/// One request as received, for the tests.
#[derive(Debug, Clone, Serialize)]
struct Logged {
    action: String,
    status: u16,
    /// `ok`, or why the signature was refused.
    signature: String,
    /// The error type answered, if any.
    error: Option<String>,
    /// The error message answered, if any.
    message: Option<String>,
    body: Value,
}

struct State {
    access_key_id: String,
    secret_access_key: String,
    region: String,
    faults: Faults,
    batches: HashMap<String, Batch>,
    order: Vec<String>,
    tokens: HashMap<String, (String, Map<String, Value>)>,
    /// batch id → loaded_at, as committed batches recorded them.
    ledger: BTreeMap<String, String>,
    /// batch id → customer_key_id of the ledger's batches, when their
    /// insert gave one (so the key-id query has a real answer).
    key_ids: BTreeMap<String, String>,
    log: Vec<Logged>,
}

/// An error answer: HTTP status, `__type`, message (and extra members).
struct ApiError {
    status: u16,
    kind: &'static str,
    message: String,
    extra: Map<String, Value>,
}

fn api_error(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        kind,
        message: message.into(),
        extra: Map::new(),
    }
}

fn validation(message: impl Into<String>) -> ApiError {
    api_error(400, "ValidationException", message)
}

fn not_found(id: &str) -> ApiError {
    let mut e = api_error(
        400,
        "ResourceNotFoundException",
        format!("Query {id} does not exist"),
    );
    e.extra.insert("ResourceId".into(), json!(id));
    e
}

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn timestamp_text(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

// ---------------------------------------------------------------------------
// SigV4

/// Checks a request's SigV4 signature by signing the same request again with
/// `aws-sigv4` and comparing. Returns `Err((type, message))` on refusal.
fn check_signature(
    st: &State,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: SystemTime,
) -> Result<(), (&'static str, String)> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let auth = header("authorization").ok_or((
        "MissingAuthenticationTokenException",
        "Missing Authentication Token".to_string(),
    ))?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or((
        "IncompleteSignatureException",
        "Authorization header requires the AWS4-HMAC-SHA256 algorithm".to_string(),
    ))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let incomplete = |what: &str| {
        (
            "IncompleteSignatureException",
            format!("Authorization header requires '{what}' parameter"),
        )
    };
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err((
            "IncompleteSignatureException",
            "Credential must have exactly 5 slash-delimited elements".into(),
        ));
    }
    if scope[0] != st.access_key_id {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    if scope[2] != st.region {
        return Err((
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region, not '{}'.",
                scope[2]
            ),
        ));
    }
    if scope[3] != SERVICE {
        return Err((
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{SERVICE}'."),
        ));
    }
    let date = header("x-amz-date").ok_or((
        "IncompleteSignatureException",
        "Authorization requires the X-Amz-Date header".to_string(),
    ))?;
    let when = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            (
                "IncompleteSignatureException",
                format!("X-Amz-Date {date:?} is not a valid ISO 8601 basic date"),
            )
        })?
        .and_utc();
    if !date.starts_with(scope[1]) {
        return Err((
            "InvalidSignatureException",
            "Credential date does not match X-Amz-Date".into(),
        ));
    }
    let when: SystemTime = when.into();
    let skew = now
        .duration_since(when)
        .or_else(|_| when.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err((
            "InvalidSignatureException",
            "Signature expired: the request's date is more than 15 minutes from now".into(),
        ));
    }
    // Sign exactly the headers the client says it signed; one it names but did not send is refused.
    let mut to_sign: Vec<(&str, &str)> = Vec::new();
    for name in signed_headers.split(';') {
        match header(name) {
            Some(v) => to_sign.push((name, v)),
            None => {
                return Err((
                    "IncompleteSignatureException",
                    format!("signed header {name:?} is not in the request"),
                ))
            }
        }
    }
    if !signed_headers.split(';').any(|h| h == "host") {
        return Err((
            "InvalidSignatureException",
            "the Host header must be signed".into(),
        ));
    }
    let identity = Credentials::new(
        &st.access_key_id,
        &st.secret_access_key,
        None,
        None,
        "standin",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&st.region)
        .name(SERVICE)
        .time(when)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ("InternalFailure", e.to_string()))?
        .into();
    let signable =
        SignableRequest::new(method, url, to_sign.into_iter(), SignableBody::Bytes(body)).map_err(
            |e| {
                (
                    "IncompleteSignatureException",
                    format!("request cannot be signed: {e}"),
                )
            },
        )?;
    let (_, expected) = sign(signable, &params)
        .map_err(|e| ("InternalFailure", e.to_string()))?
        .into_parts();
    if expected != signature {
        return Err((
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Request shapes (service model redshift-data 2019-12-20)

fn check_members(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    for k in body.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(validation(format!(
                "unknown member {k:?} (this operation takes {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn opt_str<'a>(
    body: &'a Map<String, Value>,
    name: &str,
    min: usize,
    max: usize,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n < min || n > max {
                Err(validation(format!("1 validation error detected: Value at '{name}' failed to satisfy constraint: Member must have length between {min} and {max}")))
            } else {
                Ok(Some(s))
            }
        }
        Some(_) => Err(api_error(
            400,
            "SerializationException",
            format!("{name} must be a string"),
        )),
    }
}

fn is_uuid(s: &str) -> bool {
    let (base, sub) = match s.split_once(':') {
        Some((b, n)) => (b, Some(n)),
        None => (s, None),
    };
    let groups: Vec<&str> = base.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    groups.len() == 5
        && groups.iter().zip(lens).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && sub.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn cluster_id_ok(s: &str) -> bool {
    // ^[a-z]([a-z0-9]|-[a-z0-9])*$
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
        && !s.contains("--")
}

fn workgroup_ok(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        || (s.starts_with("arn:aws")
            && s.contains(":redshift-serverless:")
            && s.contains(":workgroup/"))
}

/// Checks a `BatchExecuteStatement` request; returns its statements.
fn check_batch_request(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    check_members(
        body,
        &[
            "ClientToken",
            "ClusterIdentifier",
            "Database",
            "DbUser",
            "ResultFormat",
            "SecretArn",
            "SessionId",
            "SessionKeepAliveSeconds",
            "Sqls",
            "StatementName",
            "WithEvent",
            "WorkgroupName",
        ],
    )?;
    let sqls = match body.get("Sqls") {
        None => return Err(validation("1 validation error detected: Value null at 'sqls' failed to satisfy constraint: Member must not be null")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(api_error(400, "SerializationException", "Sqls must be a list of strings")),
    };
    if sqls.is_empty() || sqls.len() > MAX_SQLS {
        return Err(validation(format!(
            "1 validation error detected: Value at 'sqls' failed to satisfy constraint: Member must have length less than or equal to {MAX_SQLS} and greater than or equal to 1 (it has {})",
            sqls.len()
        )));
    }
    let mut out = Vec::with_capacity(sqls.len());
    for (i, s) in sqls.iter().enumerate() {
        let Value::String(s) = s else {
            return Err(api_error(
                400,
                "SerializationException",
                format!("Sqls[{i}] must be a string"),
            ));
        };
        if s.trim().is_empty() {
            return Err(validation(format!("Sqls[{i}] is empty")));
        }
        if s.len() > MAX_SQL_BYTES {
            return Err(validation(format!(
                "Sqls[{i}] is {} bytes; the maximum query statement size is {MAX_SQL_BYTES} bytes",
                s.len()
            )));
        }
        out.push(s.clone());
    }
    let database = opt_str(body, "Database", 1, 127)?;
    if database.is_none() {
        return Err(validation("Database is required when authenticating using either Secrets Manager or temporary credentials"));
    }
    let cluster = opt_str(body, "ClusterIdentifier", 1, 63)?;
    let workgroup = opt_str(body, "WorkgroupName", 3, 128)?;
    match (cluster, workgroup) {
        (Some(_), Some(_)) => return Err(validation("Specify either ClusterIdentifier or WorkgroupName, not both")),
        (None, None) => return Err(validation("Either ClusterIdentifier or WorkgroupName must be specified")),
        (Some(c), None) if !cluster_id_ok(c) => {
            return Err(validation("Value at 'clusterIdentifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-z]([a-z0-9]|-[a-z0-9])*$"))
        }
        (None, Some(w)) if !workgroup_ok(w) => {
            return Err(validation("Value at 'workgroupName' failed to satisfy constraint: Member must be a workgroup name or ARN"))
        }
        _ => {}
    }
    let secret = opt_str(body, "SecretArn", 1, 2048)?;
    let db_user = opt_str(body, "DbUser", 1, 128)?;
    if secret.is_some() && db_user.is_some() {
        return Err(validation("Specify either SecretArn or DbUser, not both"));
    }
    if workgroup.is_some() && db_user.is_some() {
        return Err(validation("DbUser is not supported with WorkgroupName: a serverless workgroup takes the database user from the IAM identity, or a SecretArn"));
    }
    if let Some(s) = secret {
        if s.starts_with("arn:")
            && !(s.starts_with("arn:aws")
                && s.contains(":secretsmanager:")
                && s.contains(":secret:"))
        {
            return Err(validation("SecretArn is not a Secrets Manager secret ARN"));
        }
    }
    opt_str(body, "ClientToken", 1, 64)?;
    opt_str(body, "StatementName", 0, 500)?;
    if let Some(f) = opt_str(body, "ResultFormat", 1, 8)? {
        if f != "JSON" && f != "CSV" {
            return Err(validation("ResultFormat must be JSON or CSV"));
        }
    }
    if let Some(s) = opt_str(body, "SessionId", 1, 64)? {
        if !is_uuid(s) {
            return Err(validation("SessionId is not a UUID"));
        }
    }
    if let Some(v) = body.get("WithEvent") {
        if !v.is_boolean() {
            return Err(api_error(
                400,
                "SerializationException",
                "WithEvent must be a boolean",
            ));
        }
    }
    if let Some(v) = body.get("SessionKeepAliveSeconds") {
        match v.as_u64() {
            Some(n) if n <= 86_400 => {}
            _ => {
                return Err(validation(
                    "SessionKeepAliveSeconds must be a whole number from 0 to 86400",
                ))
            }
        }
    }
    Ok(out)
}

fn id_member(body: &Map<String, Value>, extra: &[&str]) -> Result<String, ApiError> {
    let mut allowed = vec!["Id"];
    allowed.extend_from_slice(extra);
    check_members(body, &allowed)?;
    match body.get("Id") {
        Some(Value::String(id)) if is_uuid(id) => Ok(id.clone()),
        Some(Value::String(_)) => Err(validation("Value at 'id' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\\d+)?$")),
        Some(_) => Err(api_error(400, "SerializationException", "Id must be a string")),
        None => Err(validation("1 validation error detected: Value null at 'id' failed to satisfy constraint: Member must not be null")),
    }
}

// ---------------------------------------------------------------------------
// Statements

fn unquote(s: &str) -> String {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        t[1..t.len() - 1].replace("''", "'")
    } else {
        t.to_string()
    }
}

/// The last part of a (possibly qualified) name, lowercased, unquoted.
fn base_name(name: &str) -> String {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_matches('"')
        .to_ascii_lowercase()
}

/// The 32-hex-digit literals of a statement's text (the batch ids it names).
fn batch_id_literals(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 33 < b.len() + 1 {
        if b[i] == b'\''
            && i + 33 < b.len()
            && b[i + 33] == b'\''
            && b[i + 1..i + 33].iter().all(|c| c.is_ascii_hexdigit())
        {
            out.push(sql[i + 1..i + 33].to_ascii_lowercase());
            i += 34;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `u[i..]` starts with the keyword `kw` as a whole word.
fn keyword_at(u: &[u8], i: usize, kw: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    u[i..].starts_with(kw.as_bytes())
        && (i == 0 || !word(u[i - 1]))
        && u.get(i + kw.len()).is_none_or(|c| !word(*c))
}

/// A CREATE TABLE without Redshift's column `ENCODE x` and table `DISTSTYLE x`,
/// `DISTKEY (...)`, `[COMPOUND | INTERLEAVED] SORTKEY (...)`; `None` for any other
/// statement or when there is none of them.
fn without_table_attributes(sql: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    if !upper.trim_start().starts_with("CREATE") || !upper.contains(" TABLE ") {
        return None;
    }
    let (b, u) = (sql.as_bytes(), upper.as_bytes());
    let skip_ws = |mut i: usize| {
        while i < u.len() && u[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let skip_word = |mut i: usize| {
        while i < u.len() && (u[i].is_ascii_alphanumeric() || u[i] == b'_') {
            i += 1;
        }
        i
    };
    let skip_group = |i: usize| {
        let j = skip_ws(i);
        if u.get(j) != Some(&b'(') {
            return i;
        }
        u[j..]
            .iter()
            .position(|c| *c == b')')
            .map_or(u.len(), |k| j + k + 1)
    };
    let mut out = Vec::with_capacity(b.len());
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        let mut end = None;
        for kw in ["ENCODE", "DISTSTYLE"] {
            if keyword_at(u, i, kw) {
                // Only with its value: a bare ENCODE stays, and fails to parse.
                let value = skip_ws(i + kw.len());
                end = Some(skip_word(value)).filter(|e| *e > value);
            }
        }
        for kw in [
            "COMPOUND SORTKEY",
            "INTERLEAVED SORTKEY",
            "DISTKEY",
            "SORTKEY",
        ] {
            if end.is_none() && keyword_at(u, i, kw) {
                end = Some(skip_group(i + kw.len()));
            }
        }
        match end {
            Some(e) => {
                changed = true;
                i = e;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    changed.then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Parses one statement with the Redshift dialect and notes what it does to the ledger.
fn analyse(sql: &str) -> (Option<String>, String, Effect) {
    let parsed = match Parser::parse_sql(&RedshiftSqlDialect {}, sql) {
        Ok(p) => p,
        Err(e) => {
            // sqlparser 0.64's Redshift dialect knows no column ENCODE nor the table
            // attributes DISTSTYLE / DISTKEY / SORTKEY (valid Redshift): a CREATE TABLE
            // is parsed without them, and the log says so.
            match without_table_attributes(sql)
                .map(|s| Parser::parse_sql(&RedshiftSqlDialect {}, &s))
            {
                Some(Ok(p)) if p.len() == 1 => return (None, "CreateTable".into(), Effect::None),
                _ => return (Some(e.to_string()), "unparsed".into(), Effect::None),
            }
        }
    };
    if parsed.len() != 1 {
        return (
            Some(format!(
                "{} statements in one Sqls entry; the Data API runs one per entry",
                parsed.len()
            )),
            "several".into(),
            Effect::None,
        );
    }
    let stmt = &parsed[0];
    let kind = format!("{stmt:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("")
        .to_string();
    if matches!(
        stmt,
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. }
    ) {
        return (
            Some("transaction control inside BatchExecuteStatement: the Data API runs the batch as one transaction itself".into()),
            kind,
            Effect::None,
        );
    }
    let effect = match stmt {
        Statement::Insert(ins) => {
            let table = match &ins.table {
                TableObject::TableName(n) => base_name(&n.to_string()),
                other => base_name(&other.to_string()),
            };
            let first_col = ins.columns.first().map(|c| base_name(&c.to_string()));
            let key_col = ins
                .columns
                .iter()
                .position(|c| base_name(&c.to_string()) == "customer_key_id");
            match ins.source.as_deref().map(|q| q.body.as_ref()) {
                Some(SetExpr::Values(v)) if first_col.as_deref() == Some("batch_id") => {
                    Effect::InsertValues {
                        table,
                        ids: v
                            .rows
                            .iter()
                            .filter_map(|r| r.content.first())
                            .map(|e| unquote(&e.to_string()))
                            .collect(),
                        key_ids: v
                            .rows
                            .iter()
                            .map(|r| {
                                key_col
                                    .and_then(|i| r.content.get(i))
                                    .map(|e| unquote(&e.to_string()))
                            })
                            .collect(),
                        rows: v.rows.len(),
                    }
                }
                Some(SetExpr::Values(v)) => Effect::InsertValues {
                    table,
                    ids: vec![],
                    key_ids: vec![],
                    rows: v.rows.len(),
                },
                Some(SetExpr::Select(s)) if table == "loaded_batches" => {
                    match s.from.first().map(|f| &f.relation) {
                        Some(TableFactor::Table { name, .. }) => Effect::LedgerFrom {
                            source: base_name(&name.to_string()),
                        },
                        _ => Effect::None,
                    }
                }
                _ => Effect::None,
            }
        }
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Select(s) => {
                let table = match s.from.first().map(|f| &f.relation) {
                    Some(TableFactor::Table { name, .. }) => base_name(&name.to_string()),
                    _ => String::new(),
                };
                let columns = s
                    .projection
                    .iter()
                    .map(|p| {
                        let t = p.to_string();
                        let t = t.rsplit(" AS ").next().unwrap_or(&t).to_string();
                        base_name(&t)
                    })
                    .collect();
                Effect::Select {
                    table,
                    columns,
                    ids: batch_id_literals(sql),
                }
            }
            _ => Effect::Select {
                table: String::new(),
                columns: vec!["?column?".into()],
                ids: vec![],
            },
        },
        _ => Effect::None,
    };
    (None, kind, effect)
}

const DEFAULT_FAIL_ERROR: &str = "Load into table 'tmp_copy_transactions' failed. Check 'sys_load_error_detail' system table for details.";

impl State {
    fn new_batch(
        &mut self,
        request: Map<String, Value>,
        sqls: Vec<String>,
        now: SystemTime,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let subs = sqls
            .into_iter()
            .map(|sql| {
                let (parse_error, kind, effect) = analyse(&sql);
                Sub {
                    sql,
                    parse_error,
                    kind,
                    effect,
                    status: "SUBMITTED",
                    error: None,
                    result_rows: -1,
                    has_result_set: false,
                    result: None,
                }
            })
            .collect::<Vec<_>>();
        let f = &self.faults;
        let hang = f
            .hang_marker
            .as_deref()
            .is_some_and(|m| subs.iter().any(|s| s.sql.contains(m)));
        let batch = Batch {
            id: id.clone(),
            request,
            created: now,
            updated: now,
            run_ms: f.run_ms.unwrap_or(150),
            hang,
            fail_marker: f.fail_marker.clone(),
            fail_error: f.fail_error.clone(),
            status: "SUBMITTED",
            error: None,
            cancelled: false,
            subs,
        };
        self.batches.insert(id.clone(), batch);
        self.order.push(id.clone());
        id
    }

    /// Moves a batch on to where it is at `now`: running, or finished (its
    /// ledger effects committed), or failed (nothing committed).
    fn advance(&mut self, id: &str, now: SystemTime) {
        let Some(b) = self.batches.get_mut(id) else {
            return;
        };
        if matches!(b.status, "FINISHED" | "FAILED" | "ABORTED") {
            return;
        }
        let elapsed = now.duration_since(b.created).unwrap_or_default();
        if b.hang || elapsed < Duration::from_millis(b.run_ms) {
            let status = if elapsed < Duration::from_millis(b.run_ms / 3) {
                "PICKED"
            } else {
                "STARTED"
            };
            if b.status != status {
                b.status = status;
                b.updated = now;
            }
            if let Some(first) = b.subs.first_mut() {
                first.status = if status == "STARTED" {
                    "STARTED"
                } else {
                    "PICKED"
                };
            }
            return;
        }
        b.updated = now;
        let failing = b.subs.iter().position(|s| {
            s.parse_error.is_some() || b.fail_marker.as_deref().is_some_and(|m| s.sql.contains(m))
        });
        if let Some(f) = failing {
            let error = match &b.subs[f].parse_error {
                Some(p) => format!("ERROR: syntax error (sqlparser, Redshift dialect: {p})"),
                None => format!(
                    "ERROR: {}",
                    b.fail_error.as_deref().unwrap_or(DEFAULT_FAIL_ERROR)
                ),
            };
            for (i, s) in b.subs.iter_mut().enumerate() {
                s.status = match i.cmp(&f) {
                    std::cmp::Ordering::Less => "FINISHED",
                    std::cmp::Ordering::Equal => "FAILED",
                    std::cmp::Ordering::Greater => "ABORTED",
                };
            }
            b.subs[f].error = Some(error.clone());
            b.status = "FAILED";
            b.error = Some(error);
            return;
        }
        // Run the effects in order on a copy of the ledger; commit it at the end.
        let mut ledger = self.ledger.clone();
        let mut key_ids = self.key_ids.clone();
        let mut tables: HashMap<String, Vec<String>> = HashMap::new();
        let mut table_keys: HashMap<String, String> = HashMap::new();
        let loaded_at = timestamp_text(now);
        for s in b.subs.iter_mut() {
            s.status = "FINISHED";
            s.result_rows = 0;
            match &s.effect {
                Effect::InsertValues {
                    table,
                    ids,
                    key_ids: keys,
                    rows,
                } => {
                    s.result_rows = *rows as i64;
                    for (id, key) in ids.iter().zip(keys) {
                        if let Some(k) = key.as_ref().filter(|k| k.as_str() != "NULL") {
                            table_keys.insert(id.clone(), k.clone());
                        }
                    }
                    if table == "loaded_batches" {
                        for id in ids {
                            ledger
                                .entry(id.clone())
                                .or_insert_with(|| loaded_at.clone());
                        }
                    } else {
                        tables
                            .entry(table.clone())
                            .or_default()
                            .extend(ids.iter().cloned());
                    }
                }
                Effect::LedgerFrom { source } => {
                    let ids = tables.get(source).cloned().unwrap_or_default();
                    s.result_rows =
                        ids.iter().filter(|id| !ledger.contains_key(*id)).count() as i64;
                    for id in ids {
                        if !ledger.contains_key(&id) {
                            if let Some(k) = table_keys.get(&id) {
                                key_ids.insert(id.clone(), k.clone());
                            }
                        }
                        ledger.entry(id).or_insert_with(|| loaded_at.clone());
                    }
                }
                Effect::Select {
                    table,
                    columns,
                    ids,
                } => {
                    let mut rows = Vec::new();
                    if table == "loaded_batches" && columns.as_slice() == ["customer_key_id"] {
                        // The distinct key ids of the ledger (the core's key-id query).
                        let distinct: std::collections::BTreeSet<&String> =
                            key_ids.values().collect();
                        rows = distinct.into_iter().map(|k| vec![json!(k)]).collect();
                    } else if table == "loaded_batches" {
                        for (id, at) in &ledger {
                            if !ids.is_empty() && !ids.contains(id) {
                                continue;
                            }
                            rows.push(
                                columns
                                    .iter()
                                    .map(|c| match c.as_str() {
                                        "batch_id" => json!(id),
                                        "loaded_at" => json!(at),
                                        _ => Value::Null,
                                    })
                                    .collect(),
                            );
                        }
                    }
                    s.has_result_set = true;
                    s.result_rows = rows.len() as i64;
                    s.result = Some(ResultSet {
                        columns: columns.clone(),
                        rows,
                    });
                }
                Effect::None => {}
            }
        }
        self.ledger = ledger;
        self.key_ids = key_ids;
        b.status = "FINISHED";
    }
}

// ---------------------------------------------------------------------------
// Actions

fn describe(st: &mut State, body: &Map<String, Value>, now: SystemTime) -> Result<Value, ApiError> {
    let id = id_member(body, &[])?;
    let (parent, sub) = match id.split_once(':') {
        Some((p, n)) => (p.to_string(), Some(n.parse::<usize>().unwrap_or(0))),
        None => (id.clone(), None),
    };
    st.advance(&parent, now);
    let b = st.batches.get(&parent).ok_or_else(|| not_found(&id))?;
    let mut out = Map::new();
    let req = &b.request;
    for k in [
        "ClusterIdentifier",
        "WorkgroupName",
        "Database",
        "DbUser",
        "SecretArn",
    ] {
        if let Some(v) = req.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let duration = b
        .updated
        .duration_since(b.created)
        .unwrap_or_default()
        .as_nanos() as i64;
    out.insert("CreatedAt".into(), json!(epoch(b.created)));
    out.insert("UpdatedAt".into(), json!(epoch(b.updated)));
    out.insert(
        "Duration".into(),
        json!(if b.status == "FINISHED" { duration } else { -1 }),
    );
    out.insert("RedshiftPid".into(), json!(1073815778_i64));
    out.insert(
        "ResultFormat".into(),
        req.get("ResultFormat").cloned().unwrap_or(json!("JSON")),
    );
    if let Some(n) = sub {
        let s = n
            .checked_sub(1)
            .and_then(|i| b.subs.get(i))
            .ok_or_else(|| not_found(&id))?;
        out.insert("Id".into(), json!(id));
        out.insert("Status".into(), json!(s.status));
        out.insert("QueryString".into(), json!(s.sql));
        out.insert("HasResultSet".into(), json!(s.has_result_set));
        out.insert("ResultRows".into(), json!(s.result_rows));
        out.insert(
            "ResultSize".into(),
            json!(if s.has_result_set {
                64 * s.result_rows.max(0)
            } else {
                -1
            }),
        );
        if let Some(e) = &s.error {
            out.insert("Error".into(), json!(e));
        }
        return Ok(Value::Object(out));
    }
    out.insert("Id".into(), json!(b.id));
    out.insert("Status".into(), json!(b.status));
    out.insert(
        "HasResultSet".into(),
        json!(b.subs.iter().any(|s| s.has_result_set)),
    );
    out.insert("ResultRows".into(), json!(-1));
    out.insert("ResultSize".into(), json!(-1));
    out.insert("RedshiftQueryId".into(), json!(0));
    if let Some(e) = &b.error {
        out.insert("Error".into(), json!(e));
    }
    let subs: Vec<Value> = b
        .subs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut m = json!({
                "Id": format!("{}:{}", b.id, i + 1),
                "Status": s.status,
                "QueryString": s.sql,
                "HasResultSet": s.has_result_set,
                "ResultRows": s.result_rows,
                "ResultSize": if s.has_result_set { 64 * s.result_rows.max(0) } else { -1 },
                "CreatedAt": epoch(b.created),
                "UpdatedAt": epoch(b.updated),
                "Duration": if s.status == "FINISHED" { duration / b.subs.len().max(1) as i64 } else { -1 },
                "RedshiftQueryId": 1000 + i as i64,
            });
            if let Some(e) = &s.error {
                m["Error"] = json!(e);
            }
            m
        })
        .collect();
    out.insert("SubStatements".into(), Value::Array(subs));
    Ok(Value::Object(out))
}

fn get_result(
    st: &mut State,
    body: &Map<String, Value>,
    now: SystemTime,
) -> Result<Value, ApiError> {
    let id = id_member(body, &["NextToken"])?;
    let offset = match body.get("NextToken") {
        None => 0,
        Some(Value::String(t)) => t
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| validation("NextToken is not one this service gave"))?,
        Some(_) => {
            return Err(api_error(
                400,
                "SerializationException",
                "NextToken must be a string",
            ))
        }
    };
    let (parent, sub) = match id.split_once(':') {
        Some((p, n)) => (p.to_string(), n.parse::<usize>().ok()),
        None => (id.clone(), None),
    };
    st.advance(&parent, now);
    let page = st.faults.page_rows.unwrap_or(1000).max(1);
    let b = st.batches.get(&parent).ok_or_else(|| not_found(&id))?;
    let s = match sub {
        Some(n) => n.checked_sub(1).and_then(|i| b.subs.get(i)).ok_or_else(|| not_found(&id))?,
        None if b.subs.len() == 1 => &b.subs[0],
        None => return Err(validation("Id of a multi-statement batch: give a sub-statement's Id (<id>:<n>) to fetch its result")),
    };
    if s.status != "FINISHED" {
        return Err(validation(format!("Query does not have result. Please check query status with DescribeStatement. (status {})", s.status)));
    }
    let Some(rs) = &s.result else {
        return Err(validation(
            "Query does not have result. Please check query status with DescribeStatement.",
        ));
    };
    let columns: Vec<Value> = rs
        .columns
        .iter()
        .map(|c| {
            let (type_name, length) = match c.as_str() {
                "loaded_at" => ("timestamp", 29),
                _ => ("varchar", 256),
            };
            json!({
                "isCaseSensitive": type_name == "varchar",
                "isCurrency": false,
                "isSigned": false,
                "label": c,
                "length": length,
                "name": c,
                "nullable": 1,
                "precision": length,
                "scale": 0,
                "schemaName": "public",
                "tableName": "loaded_batches",
                "typeName": type_name,
            })
        })
        .collect();
    let records: Vec<Value> = rs
        .rows
        .iter()
        .skip(offset)
        .take(page)
        .map(|row| {
            Value::Array(
                row.iter()
                    .map(|v| match v {
                        Value::Null => json!({"isNull": true}),
                        Value::String(s) => json!({"stringValue": s}),
                        Value::Bool(b) => json!({"booleanValue": b}),
                        Value::Number(n) if n.is_i64() => json!({"longValue": n}),
                        Value::Number(n) => json!({"doubleValue": n}),
                        other => json!({"stringValue": other.to_string()}),
                    })
                    .collect(),
            )
        })
        .collect();
    let mut out = json!({
        "ColumnMetadata": columns,
        "Records": records,
        "TotalNumRows": rs.rows.len(),
    });
    if offset + page < rs.rows.len() {
        out["NextToken"] = json!(format!("page-{}", offset + page));
    }
    Ok(out)
}

fn cancel(st: &mut State, body: &Map<String, Value>, now: SystemTime) -> Result<Value, ApiError> {
    let id = id_member(body, &[])?;
    let parent = id.split(':').next().unwrap_or(&id).to_string();
    st.advance(&parent, now);
    let b = st.batches.get_mut(&parent).ok_or_else(|| not_found(&id))?;
    if matches!(b.status, "FINISHED" | "FAILED" | "ABORTED") {
        return Err(validation(format!(
            "Could not cancel a query that is already in {} state with ID: {id}",
            b.status
        )));
    }
    b.cancelled = true;
    b.hang = false;
    b.status = "ABORTED";
    b.updated = now;
    for s in b.subs.iter_mut() {
        s.status = "ABORTED";
    }
    Ok(json!({"Status": true}))
}

fn batch_execute(
    st: &mut State,
    body: &Map<String, Value>,
    now: SystemTime,
) -> Result<Value, ApiError> {
    let sqls = check_batch_request(body)?;
    // Same ClientToken: the same statement (an idempotent retry), when the request is the same.
    if let Some(Value::String(token)) = body.get("ClientToken") {
        if let Some((id, earlier)) = st.tokens.get(token) {
            if earlier != body {
                return Err(validation(
                    "ClientToken was used before with another request (idempotency conflict)",
                ));
            }
            return Ok(batch_answer(
                st.batches.get(id).expect("a token's batch exists"),
            ));
        }
    }
    let id = st.new_batch(body.clone(), sqls, now);
    if let Some(Value::String(token)) = body.get("ClientToken") {
        st.tokens.insert(token.clone(), (id.clone(), body.clone()));
    }
    Ok(batch_answer(&st.batches[&id]))
}

fn batch_answer(b: &Batch) -> Value {
    let mut out = Map::new();
    out.insert("Id".into(), json!(b.id));
    out.insert("CreatedAt".into(), json!(epoch(b.created)));
    for k in [
        "ClusterIdentifier",
        "WorkgroupName",
        "Database",
        "DbUser",
        "SecretArn",
    ] {
        if let Some(v) = b.request.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// One Data API request: signature, faults, shape, action. Returns (status, body).
fn data_api(
    st: &mut State,
    target: Option<&str>,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, Value, Logged) {
    let now = SystemTime::now();
    let action = target
        .and_then(|t| t.strip_prefix("RedshiftData."))
        .unwrap_or("")
        .to_string();
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut logged = Logged {
        action: action.clone(),
        status: 200,
        signature: "ok".into(),
        error: None,
        message: None,
        body: parsed.clone(),
    };
    let result = (|| -> Result<Value, ApiError> {
        if let Err((kind, message)) = check_signature(st, "POST", url, headers, body, now) {
            logged.signature = message.clone();
            return Err(api_error(
                if kind == "InternalFailure" { 500 } else { 403 },
                kind,
                message,
            ));
        }
        let ct = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if ct != "application/x-amz-json-1.1" {
            return Err(api_error(
                400,
                "SerializationException",
                format!("Content-Type must be application/x-amz-json-1.1, not {ct:?}"),
            ));
        }
        if st.faults.throttle_next > 0 {
            st.faults.throttle_next -= 1;
            return Err(api_error(400, "ThrottlingException", "Rate exceeded"));
        }
        if st.faults.internal_error_next > 0 {
            st.faults.internal_error_next -= 1;
            return Err(api_error(
                500,
                "InternalServerException",
                "Internal server error (injected by the stand-in)",
            ));
        }
        if st.faults.refuse_next > 0 && st.faults.refuse_action.as_deref() == Some(action.as_str())
        {
            st.faults.refuse_next -= 1;
            return Err(validation(format!(
                "{action} refused (injected by the stand-in)"
            )));
        }
        let Value::Object(body) = &parsed else {
            return Err(api_error(
                400,
                "SerializationException",
                "the body is not a JSON object",
            ));
        };
        match action.as_str() {
            "BatchExecuteStatement" => batch_execute(st, body, now),
            "DescribeStatement" => describe(st, body, now),
            "GetStatementResult" => get_result(st, body, now),
            "CancelStatement" => cancel(st, body, now),
            "" => Err(api_error(
                400,
                "UnknownOperationException",
                "X-Amz-Target is missing or not RedshiftData.<Operation>",
            )),
            other => Err(api_error(
                400,
                "UnknownOperationException",
                format!("the stand-in does not implement {other}"),
            )),
        }
    })();
    match result {
        Ok(v) => (200, v, logged),
        Err(e) => {
            logged.status = e.status;
            logged.error = Some(e.kind.to_string());
            logged.message = Some(e.message.clone());
            let mut out = e.extra;
            out.insert("__type".into(), json!(e.kind));
            out.insert("message".into(), json!(e.message));
            (e.status, Value::Object(out), logged)
        }
    }
}

fn control(st: &mut State, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    match (method, path) {
        ("GET", "/_standin/log") => {
            let batches: Vec<&Batch> = st
                .order
                .iter()
                .filter_map(|id| st.batches.get(id))
                .collect();
            (
                200,
                json!({"requests": st.log, "batches": batches, "ledger": st.ledger, "key_ids": st.key_ids, "faults": st.faults}),
            )
        }
        ("POST", "/_standin/faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                st.faults = f;
                (200, json!({"faults": st.faults}))
            }
            Err(e) => (400, json!({"error": format!("faults: {e}")})),
        },
        ("POST", "/_standin/reset") => {
            st.faults = Faults::default();
            st.batches.clear();
            st.order.clear();
            st.tokens.clear();
            st.ledger.clear();
            st.key_ids.clear();
            st.log.clear();
            (200, json!({"reset": true}))
        }
        _ => (
            404,
            json!({"error": format!("no control route {method} {path}")}),
        ),
    }
}

fn main() {
    let mut port = 0u16;
    let mut region = "us-east-1".to_string();
    let mut faults = Faults::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--port" => {
                port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| fail("--port takes a number"))
            }
            "--region" => region = value("--region"),
            "--faults" => {
                faults = serde_json::from_str(&value("--faults"))
                    .unwrap_or_else(|e| fail(&format!("--faults: {e}")))
            }
            "-h" | "--help" => {
                println!("STANDIN_ACCESS_KEY_ID=… STANDIN_SECRET_ACCESS_KEY=… redshift-data-api-standin [--port N] [--region R] [--faults JSON]");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let key = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| fail(&format!("{name} is not set")))
    };
    let mut st = State {
        access_key_id: key("STANDIN_ACCESS_KEY_ID"),
        secret_access_key: key("STANDIN_SECRET_ACCESS_KEY"),
        region,
        faults,
        batches: HashMap::new(),
        order: Vec::new(),
        tokens: HashMap::new(),
        ledger: BTreeMap::new(),
        key_ids: BTreeMap::new(),
        log: Vec::new(),
    };
    let server = tiny_http::Server::http(("127.0.0.1", port))
        .unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
    let addr = server.server_addr().to_ip().expect("an IP listener");
    println!("{}", json!({"listening": format!("http://{addr}")}));
    for mut req in server.incoming_requests() {
        let method = req.method().as_str().to_string();
        let path = req.url().to_string();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let too_large = req
            .as_reader()
            .take(MAX_BODY_BYTES as u64 + 1)
            .read_to_end(&mut body)
            .is_err()
            || body.len() > MAX_BODY_BYTES;
        let (status, answer) = if path.starts_with("/_standin/") {
            control(&mut st, &method, &path, &body)
        } else if too_large {
            (
                413,
                json!({"__type": "SerializationException", "message": "request body too large"}),
            )
        } else if method != "POST" || path != "/" {
            (
                404,
                json!({"__type": "UnknownOperationException", "message": "the Data API takes POST / only"}),
            )
        } else {
            let host = headers
                .iter()
                .find(|(k, _)| k == "host")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| addr.to_string());
            let target = headers
                .iter()
                .find(|(k, _)| k == "x-amz-target")
                .map(|(_, v)| v.clone());
            let (status, answer, logged) = data_api(
                &mut st,
                target.as_deref(),
                &format!("http://{host}/"),
                &headers,
                &body,
            );
            st.log.push(logged);
            (status, answer)
        };
        let bytes = serde_json::to_vec(&answer).expect("JSON");
        let content_type = if path.starts_with("/_standin/") {
            "application/json"
        } else {
            "application/x-amz-json-1.1"
        };
        let mut res = tiny_http::Response::from_data(bytes)
            .with_status_code(status)
            .with_header(
                tiny_http::Header::from_bytes("Content-Type", content_type).expect("header"),
            )
            .with_header(
                tiny_http::Header::from_bytes("x-amzn-RequestId", uuid::Uuid::new_v4().to_string())
                    .expect("header"),
            );
        if let Some(kind) = answer.get("__type").and_then(|t| t.as_str()) {
            res = res.with_header(
                tiny_http::Header::from_bytes("x-amzn-ErrorType", kind).expect("header"),
            );
        }
        let _ = req.respond(res);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("redshift-data-api-standin: {message}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_analysed_for_the_ledger() {
        let cases: &[(&str, bool, &str)] = &[
            ("INSERT INTO tmp_plan_batches (batch_id, source) VALUES ('0123456789abcdef0123456789abcdef', 'a.csv')", true, "insert"),
            ("INSERT INTO loaded_batches (batch_id, source) SELECT batch_id, source FROM tmp_plan_batches", true, "ledger"),
            ("SELECT batch_id, loaded_at FROM loaded_batches WHERE batch_id IN ('0123456789abcdef0123456789abcdef')", true, "select"),
            ("BEGIN", false, ""),
            ("SELEC 1", false, ""),
            ("SELECT 1; SELECT 2", false, ""),
            ("CREATE TABLE IF NOT EXISTS t (\n    id CHAR(36) NOT NULL ENCODE RAW,\n    n INTEGER ENCODE AZ64\n)\nDISTSTYLE KEY\nDISTKEY (id)\nCOMPOUND SORTKEY (id, n)", true, ""),
            ("CREATE TABLE t (id INTEGER ENCODE)", false, ""),
        ];
        for (sql, ok, what) in cases {
            let (err, _, effect) = analyse(sql);
            assert_eq!(err.is_none(), *ok, "{sql}: {err:?}");
            match (*what, effect) {
                (
                    "insert",
                    Effect::InsertValues {
                        table, ids, rows, ..
                    },
                ) => {
                    assert_eq!(table, "tmp_plan_batches");
                    assert_eq!(ids, vec!["0123456789abcdef0123456789abcdef"]);
                    assert_eq!(rows, 1);
                }
                ("ledger", Effect::LedgerFrom { source }) => assert_eq!(source, "tmp_plan_batches"),
                (
                    "select",
                    Effect::Select {
                        table,
                        columns,
                        ids,
                    },
                ) => {
                    assert_eq!(table, "loaded_batches");
                    assert_eq!(columns, vec!["batch_id", "loaded_at"]);
                    assert_eq!(ids.len(), 1);
                }
                ("", _) => {}
                (w, e) => panic!("{sql}: expected {w}, got {e:?}"),
            }
        }
    }

    #[test]
    fn ids_and_names_follow_the_service_model() {
        for (id, ok) in [
            ("d9b6c0c9-0747-4bf4-b142-e8883122f766", true),
            ("d9b6c0c9-0747-4bf4-b142-e8883122f766:2", true),
            ("d9b6c0c9-0747-4bf4-b142-e8883122f766:", false),
            ("not-a-uuid", false),
        ] {
            assert_eq!(is_uuid(id), ok, "{id}");
        }
        for (c, ok) in [
            ("cafe-warehouse", true),
            ("Cafe", false),
            ("cafe--x", false),
            ("cafe-", false),
            ("1cafe", false),
        ] {
            assert_eq!(cluster_id_ok(c), ok, "{c}");
        }
    }
}

#[cfg(test)]
mod signature_tests {
    use super::*;

    fn state(secret: &str) -> State {
        State {
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: secret.into(),
            region: "eu-west-2".into(),
            faults: Faults::default(),
            batches: HashMap::new(),
            order: Vec::new(),
            tokens: HashMap::new(),
            ledger: BTreeMap::new(),
            key_ids: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    /// Headers of a request signed by `aws-sigv4` with `secret` at `when`.
    fn signed(secret: &str, body: &[u8], when: SystemTime) -> Vec<(String, String)> {
        let date = chrono::DateTime::<chrono::Utc>::from(when)
            .format("%Y%m%dT%H%M%SZ")
            .to_string();
        let base = vec![
            ("host".to_string(), "127.0.0.1:4599".to_string()),
            (
                "x-amz-target".to_string(),
                "RedshiftData.DescribeStatement".to_string(),
            ),
            ("x-amz-date".to_string(), date),
        ];
        let identity = Credentials::new("AKIAEXAMPLE", secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("eu-west-2")
            .name(SERVICE)
            .time(when)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:4599/",
            base.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut headers = base;
        for (k, v) in instructions.headers() {
            if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                headers.push((k.to_ascii_lowercase(), v.to_string()));
            }
        }
        headers
    }

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"Id":"d9b6c0c9-0747-4bf4-b142-e8883122f766"}"#;
        let now = SystemTime::now();
        let st = state("the-secret");
        let url = "http://127.0.0.1:4599/";
        type Case<'a> = (&'a str, Vec<(String, String)>, &'a [u8], Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "signed with the secret",
                signed("the-secret", body, now),
                body,
                None,
            ),
            (
                "another secret",
                signed("another", body, now),
                body,
                Some("InvalidSignatureException"),
            ),
            (
                "body changed after signing",
                signed("the-secret", body, now),
                b"{}",
                Some("InvalidSignatureException"),
            ),
            (
                "twenty minutes old",
                signed("the-secret", body, now - Duration::from_secs(1200)),
                body,
                Some("InvalidSignatureException"),
            ),
            (
                "no Authorization",
                signed("the-secret", body, now)
                    .into_iter()
                    .filter(|(k, _)| k != "authorization")
                    .collect(),
                body,
                Some("MissingAuthenticationTokenException"),
            ),
        ];
        for (what, headers, sent, want) in cases {
            let got = check_signature(&st, "POST", url, &headers, sent, now)
                .err()
                .map(|(kind, _)| kind);
            assert_eq!(got, want, "{what}");
        }
        let mut other_key = signed("the-secret", body, now);
        for (k, v) in other_key.iter_mut() {
            if k == "authorization" {
                *v = v.replace("AKIAEXAMPLE", "AKIAOTHER");
            }
        }
        assert_eq!(
            check_signature(&st, "POST", url, &other_key, body, now)
                .err()
                .map(|e| e.0),
            Some("UnrecognizedClientException")
        );
    }
}
