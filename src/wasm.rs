//! The WebAssembly binding: a thin, coarse layer over the core for the
//! browser page and the edge worker. Bytes come in as `Uint8Array`, results
//! go out as plain objects.
//!
//! Errors: every export throws a plain JavaScript `Error` whose `message` is
//! the core's user-facing text (`stage error: ...`) and whose `code` is a
//! stable name (`CodedError` in the TypeScript declarations): the core's
//! [`ErrorCode`](crate::ErrorCode) (`config`, `bad_batch_id`,
//! `batch_id_mismatch`, `io`, `finished`), a token's reason or a store rule's
//! code. JavaScript matches `e.code`, never the text, which may be reworded.
//! (wasm-bindgen's `JsError` carries a message only, so the binding builds
//! the `Error` itself with `js_sys::Error` and sets `code` on it.)

use crate::{warehouse, Config, ErrorCode, Pipeline as CorePipeline, Report, Table};
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `check`, `transform` and `new Pipeline`. */
export interface PipelineOptions {
  /** File name the bytes came from (its date is compared with the rows'). */
  source?: string;
  /** Batch id (first 32 hex digits of the file's SHA-256). Required to stage
   *  with `new Pipeline`, since it goes into every transaction row; without it
   *  the pipeline only checks. `transform` computes it. */
  batchId?: string;
  /** Secret for the customer key (HMAC-SHA256 of the normalised name). */
  customerKeySecret?: string;
  /** The zlib level of the table files, 0 (store) to 9 (default: the
   *  measured level in the README, "Performance"). */
  gzipLevel?: number;
  /** Most issues listed in the report (all are counted; default 10000). */
  maxIssues?: number;
  /** Staged rows kept for the preview (default 20). */
  previewRows?: number;
  /** Bytes of product and store text the transform remembers per batch
   *  (default 16 MiB); the edge worker lowers it to fit its 128 MB isolate. */
  maxCacheBytes?: number;
  /** When only checking, skip the SHA-256 of the bytes (the report's
   *  batch_id is then ""): without SHA instructions in WebAssembly the hash
   *  is about a third of the work. Ignored when staging. */
  skipBatchId?: boolean;
  /** With `batchId`: the whole SHA-256 the bytes must have (64 hex digits,
   *  either case, as in `X-Content-SHA256`). `finish()` then compares all 64
   *  digits, not only the batch id's 32, and throws `batch_id_mismatch`
   *  when they differ: the pipeline hashes the bytes anyway, so the caller
   *  needs no hash of its own. */
  sha256?: string;
  /** Also make the rejected rows' spreadsheet download (`RejectsCsv`):
   *  `takeRejectsCsv()` hands over its bytes so far, `finish()` the rest as
   *  `rejectsCsv`. Works when only checking (no batch id needed). */
  rejectsCsv?: boolean;
}

export type Severity = "error" | "warning";
/** The layout a file was written in. */
export type ReportFormat = "current" | "legacy-2020" | "unknown";
export type IssueCode =
  | "field_count" | "bad_timestamp" | "bad_store" | "bad_basket" | "bad_price"
  | "total_mismatch" | "bad_payment" | "encoding" | "empty_file" | "not_csv"
  | "record_too_long" | "unterminated_quote" | "date_mismatch" | "line_break_in_field"
  | "too_many_rejects";

/** One problem, pinned to a 1-based line (0: the whole file). */
export interface Issue {
  line: number;
  column: number | null;
  code: IssueCode;
  severity: Severity;
  message: string;
}

export interface TableCounts {
  stores: number;
  products: number;
  transactions: number;
  basket_items: number;
  rejects: number;
}

export interface StoreSummary { store: string; transactions: number; revenue_pence: number; }
export interface ProductSummary {
  product: string; size: string; name: string; flavour: string;
  quantity: number; revenue_pence: number;
}
export interface HourSummary { hour: number; transactions: number; revenue_pence: number; }

export interface Summary {
  revenue_pence: number;
  transactions: number;
  items: number;
  cash_transactions: number;
  card_transactions: number;
  first_at: string | null;
  last_at: string | null;
  by_store: StoreSummary[];
  top_products: ProductSummary[];
  by_hour: HourSummary[];
}

/** A staged row as it leaves the shop: no name, no card number. */
export interface PreviewRow {
  line: number;
  occurred_at: string;
  store: string;
  payment_method: "CASH" | "CARD";
  total_price: string;
  items: string[];
  has_customer_key: boolean;
}

/** The batch report (also `batches/<batch_id>.json`). */
export interface Report {
  batch_id: string;
  source: string;
  format: ReportFormat;
  /** Which secret made the customer keys: 16 hex digits of an HMAC of a
   *  fixed label, or "none" (the warehouse refuses to mix them). */
  customer_key_id: string;
  bytes: number;
  lines: number;
  refused: boolean;
  rows_read: number;
  rows_staged: number;
  rows_rejected: number;
  header_lines: number;
  blank_lines: number;
  issues: Issue[];
  issues_total: number;
  issues_omitted: number;
  errors: number;
  warnings: number;
  issue_counts: Record<string, number>;
  tables: TableCounts;
  summary: Summary;
  preview: PreviewRow[];
}

/** Staging-layout path (`transactions/<batch_id>.csv.gz`, ...,
 *  `batches/<batch_id>.json`) to bytes. */
export type StagedFiles = Record<string, Uint8Array>;

/** The worker's access settings, as the text of its variables (absent or
 *  empty: unset). See worker/README.md. */
export interface AccessConfig {
  /** `kid=secret,...`, current first, at most two. */
  uploadSecrets?: string;
  /** One secret, key id `k1` (read when `uploadSecrets` is unset). */
  uploadSecret?: string;
  /** `slug=time,...`: a store's tokens expiring at or before its time are refused. */
  revokedBefore?: string;
  /** Longest lifetime left a token may have, in days (default 400). */
  tokenMaxDays?: string;
  /** `slug=Canonical Name,...`: the one spelling of each branch's store. */
  storeNames?: string;
}

/** A valid token's claims. */
export interface TokenClaims { kid: string; store: string; expires: number; }

/** What `onProgress` of `Pipeline.pushStream` is given. */
export interface StreamProgress {
  /** Bytes read from the stream and pushed so far. */
  bytes: number;
  /** Data rows read so far. */
  rows: number;
}

/** What `onProgress` of `BatchHasher.hashStream` is given. */
export interface HashProgress {
  /** Bytes read from the stream and hashed so far. */
  bytes: number;
}

/** Options of `BatchHasher.hashStream` (and of `Pipeline.pushStream`). */
export interface HashStreamOptions {
  /** Called after every `progressEveryBytes` bytes, and at the end for
   *  the bytes since the last call. A throw stops the reading: the stream is cancelled and the
   *  Promise rejects with what was thrown. */
  onProgress?: (progress: HashProgress) => void;
  /** Bytes between two `onProgress` calls (default 1 MiB; 0: every chunk). */
  progressEveryBytes?: number;
  /** Stops the reading at the next chunk: the stream is cancelled and the
   *  Promise rejects with `signal.reason` as it is. */
  signal?: AbortSignal;
}

/** Options of `Pipeline.pushStream`. */
export interface PushStreamOptions extends Omit<HashStreamOptions, "onProgress"> {
  onProgress?: (progress: StreamProgress) => void;
  /** Called with what `drain()` returns after every `drainEveryBytes`
   *  bytes (staging: the compressed table bytes; checking: `{}`), and once
   *  at the end for the bytes since the last call. A Promise returned is
   *  awaited before the next chunk is read (backpressure: the edge
   *  worker's S3 writes); a throw or a rejection stops the reading as for
   *  `onProgress`. The callback may call `drain()` and `takeRejectsCsv()`. */
  onDrain?: (files: StagedFiles) => void | Promise<unknown>;
  /** Bytes between two `onDrain` calls (default 0: every chunk). */
  drainEveryBytes?: number;
}

/** The core's error codes (`ErrorCode` in src/error.rs). */
export type ErrorCode = "config" | "bad_batch_id" | "batch_id_mismatch" | "io" | "finished";
/** Why a token is refused (`TokenError::reason` in src/token.rs). */
export type TokenErrorCode =
  | "malformed" | "unknown_kid" | "bad_signature" | "expired" | "too_long" | "revoked" | "empty_secret";
/** Why a file's stores break the one-store-per-branch rule. */
export type StoreErrorCode = "wrong_store" | "store_not_registered";

/** Why `Pipeline.pushStream` or `BatchHasher.hashStream` failed by
 *  itself: `read` (the stream failed, e.g. a file changed on disk or a
 *  request body cut off, or gave a chunk that is not a `Uint8Array`; what
 *  it failed with is the error's `cause`), `busy` (input given while a
 *  stream is being read). What a callback throws, and a signal's reason,
 *  reject the Promise unchanged. */
export type StreamErrorCode = "read" | "busy";

/** Why `loadPlan`, `warehouseSchema`, `quarantineStatements`,
 *  `ledgerQuery` or `loadedKeyIdsQuery` refuse: each a permanent refusal (the same input fails
 *  again). */
export type WarehouseErrorCode =
  | "bad_marker" | "mixed_customer_keys" | "statement_too_long" | "bad_batch_id"
  | "bad_failure" | "too_many_ids" | "config";

/** What every export throws: an `Error` with the core's text and a stable
 *  `code` to match (never the text). `verifyToken`, `mintToken`: a
 *  `TokenErrorCode`; `checkStores`: a `StoreErrorCode`; bad settings or
 *  options: `config`; the pipeline: an `ErrorCode`; the warehouse
 *  statements: a `WarehouseErrorCode`. */
export interface CodedError extends Error {
  code: ErrorCode | TokenErrorCode | StoreErrorCode | WarehouseErrorCode | StreamErrorCode;
}

export interface TransformResult {
  report: Report;
  /** Empty when the file was refused. The marker comes last. */
  files: StagedFiles;
  /** With the `rejectsCsv` option (`Pipeline` only): the download's bytes
   *  not taken yet. All of them, in order, are a CSV for a spreadsheet: a
   *  UTF-8 byte order mark, a header line, the rows of
   *  `rejects/<batch_id>.csv.gz` (no name, no card number) with CRLF line
   *  ends, every cell starting with = + - @, a tab or a carriage return
   *  prefixed with a single quote so that it is shown, not run. */
  rejectsCsv?: Uint8Array;
}

/** One batch of `loadPlan`: its marker (`batches/<id>.json` as parsed
 *  JSON, the batch's `Report`) and, for Redshift manifests, the byte size
 *  of each table object. */
export interface LoadPlanBatch {
  marker: Report;
  sizes?: { stores: number; products: number; transactions: number; basket_items: number };
}

export type WarehouseDialect = "postgresql" | "postgres" | "redshift";

export interface LoadPlanInput {
  batches: LoadPlanBatch[];
  dialect: WarehouseDialect;
  /** Where Redshift reads the staging root (required for Redshift). */
  s3?: { url: string; iamRole?: string; region?: string };
  /** The longest statement, in bytes (default: the Data API's 100,000). */
  maxStatementBytes?: number;
  /** The warehouse's customer key ids (the rows of `loadedKeyIdsQuery`):
   *  batches of another secret are refused with `mixed_customer_keys`, as
   *  `cafe-etl load` refuses them. Absent: one secret per plan only. */
  loadedKeyIds?: string[];
}

/** One statement of a load. All run in order in ONE transaction. A `copy`
 *  for PostgreSQL is `COPY ... FROM STDIN WITH (FORMAT csv)`: send each of
 *  `keys` (relative to the staging root) gunzipped, in order. For Redshift
 *  it reads the manifest and runs as it is. */
export type LoadStatement =
  | { kind: "sql"; sql: string; why?: string }
  | { kind: "copy"; table: string; sql: string; keys: string[] };

export interface LoadPlan {
  /** 16 hex digits, from the batch ids: the same batches, the same plan. */
  planId: string;
  batchIds: string[];
  /** Redshift only: write each `body` at `key` (relative to the staging
   *  root) before running the statements. */
  manifests: { table: string; key: string; body: string }[];
  statements: LoadStatement[];
}

/** A batch to quarantine in `load_failures`. */
export interface LoadFailure {
  batch_id: string;
  store?: string | null;
  /** 1 to 64 of a-z, 0-9, _. */
  code: string;
  /** Plain words: no personal data, no bucket or key names. */
  reason: string;
}

/** The Redshift Data API's limits the core plans for. */
export interface DataApiLimits {
  /** Bytes of one SQL statement. */
  maxStatementBytes: number;
  /** Statements of one BatchExecuteStatement. */
  maxBatchStatements: number;
}

/** A table file of the staging layout, in commit order. */
export type TableName = "stores" | "products" | "transactions" | "basket_items" | "rejects";

/** The two index entries of a commit, relative to the staging root (`indexKeys`). */
export interface IndexKeys {
  /** `index/stores/<slug>/<10^13 - 1 - unix_ms, 13 digits>-<batch_id>`: newest first in LIST order. */
  store: string;
  /** `index/commits/<yyyy-mm-dd>/<hh-mm-ss.mmm>Z-<batch_id>`: by UTC day and time. */
  commit: string;
}

/** Which index an entry is in. */
export type IndexKind = "store" | "commit";

/** What an index key records (`indexEntry`). */
export interface IndexEntry {
  kind: IndexKind;
  batchId: string;
  /** The commit time, Unix milliseconds. */
  unixMs: number;
}
"#;

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Options {
    source: Option<String>,
    batch_id: Option<String>,
    customer_key_secret: Option<String>,
    gzip_level: Option<u32>,
    max_issues: Option<usize>,
    preview_rows: Option<usize>,
    max_cache_bytes: Option<usize>,
    skip_batch_id: bool,
    rejects_csv: bool,
    sha256: Option<String>,
}

impl Options {
    fn parse(value: JsValue) -> Result<Options, JsValue> {
        if value.is_undefined() || value.is_null() {
            return Ok(Options::default());
        }
        serde_wasm_bindgen::from_value(value).map_err(|e| {
            js_error(&crate::Error::coded(
                ErrorCode::Config,
                format!("options: {e}"),
            ))
        })
    }

    fn config(&self) -> Config {
        let mut c = Config::default();
        c.clean.customer_key_secret = self.customer_key_secret.clone().filter(|s| !s.is_empty());
        if let Some(level) = self.gzip_level {
            c.stage.gzip_level = Some(level.min(9));
        }
        if let Some(n) = self.max_issues {
            c.validate.max_issues = n;
        }
        if let Some(n) = self.preview_rows {
            c.transform.preview_rows = n;
        }
        if let Some(n) = self.max_cache_bytes {
            c.transform.max_cache_bytes = n;
        }
        c.skip_batch_id = self.skip_batch_id;
        c
    }
}

fn to_js<T: serde::Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let s = serde_wasm_bindgen::Serializer::json_compatible();
    value
        .serialize(&s)
        .map_err(|e| js_error(&crate::Error::coded(ErrorCode::Io, e.to_string())))
}

/// The thrown value for a core error: its text, and its code as `code`.
fn js_error(e: &crate::Error) -> JsValue {
    coded(e.code().as_str(), &e.to_string())
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    // Setting a property on a plain object cannot fail.
    let _ = Reflect::set(obj, &JsValue::from_str(key), value);
}

fn result_object(report: &Report, files: &[(String, Vec<u8>)]) -> Result<JsValue, JsValue> {
    let out = Object::new();
    set(&out, "report", &to_js(report)?);
    let map = Object::new();
    for (path, bytes) in files {
        set(&map, path, &Uint8Array::from(&bytes[..]).into());
    }
    set(&out, "files", &map.into());
    Ok(out.into())
}

/// `result` with the rest of the rejected rows' download, when asked for.
fn with_rejects(result: JsValue, rejects: Option<crate::RejectsCsv>) -> Result<JsValue, JsValue> {
    if let Some(mut csv) = rejects {
        set(
            result.unchecked_ref(),
            "rejectsCsv",
            &Uint8Array::from(&csv.take()[..]).into(),
        );
    }
    Ok(result)
}

/// Validates a whole file held in memory and returns its report.
#[wasm_bindgen(unchecked_return_type = "Report")]
pub fn check(
    bytes: &[u8],
    #[wasm_bindgen(unchecked_param_type = "PipelineOptions")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let o = Options::parse(options)?;
    let report = crate::check(bytes, o.source.as_deref().unwrap_or(""), &o.config());
    to_js(&report)
}

/// Transforms a whole file held in memory: the report and every file of the
/// staging layout, byte for byte what the CLI writes.
#[wasm_bindgen(unchecked_return_type = "TransformResult")]
pub fn transform(
    bytes: &[u8],
    #[wasm_bindgen(unchecked_param_type = "PipelineOptions")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let o = Options::parse(options)?;
    let staged = crate::transform(bytes, o.source.as_deref().unwrap_or(""), &o.config())
        .map_err(|e| js_error(&e))?;
    result_object(&staged.report, &staged.files)
}

/// The batch id of a whole file: first 32 hex digits of its SHA-256.
#[wasm_bindgen(js_name = batchId)]
pub fn batch_id(bytes: &[u8]) -> String {
    crate::batch_id(bytes)
}

/// The batch id of a file from its SHA-256 in hex (64 digits, either case):
/// `null` when it is not one. For a hash made elsewhere (WebCrypto, the
/// `X-Content-SHA256` header).
#[wasm_bindgen(js_name = batchIdOfSha256, unchecked_return_type = "string | null")]
pub fn batch_id_of_sha256(sha256: &str) -> JsValue {
    crate::batch_id_of_sha256(sha256).map_or(JsValue::NULL, |id| JsValue::from_str(&id))
}

/// Whether `id` is a batch id (32 lowercase hex digits), e.g. in a URL.
#[wasm_bindgen(js_name = isBatchId)]
pub fn is_batch_id(id: &str) -> bool {
    crate::is_batch_id(id)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct AccessOptions {
    upload_secrets: Option<String>,
    upload_secret: Option<String>,
    revoked_before: Option<String>,
    token_max_days: Option<String>,
    store_names: Option<String>,
}

/// An `Error` with a stable `code` beside its text.
fn coded(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    set(&e, "code", &JsValue::from_str(code));
    e.into()
}

fn config_error(e: impl std::fmt::Display) -> JsValue {
    coded(ErrorCode::Config.as_str(), &e.to_string())
}

impl AccessOptions {
    fn parse(value: JsValue) -> Result<AccessOptions, JsValue> {
        if value.is_undefined() || value.is_null() {
            return Ok(AccessOptions::default());
        }
        serde_wasm_bindgen::from_value(value)
            .map_err(|e| config_error(format!("access settings: {e}")))
    }

    fn verifier(&self) -> Result<crate::token::Verifier, JsValue> {
        crate::token::Verifier::from_vars(
            self.upload_secrets.as_deref(),
            self.upload_secret.as_deref(),
            self.revoked_before.as_deref(),
            self.token_max_days.as_deref(),
        )
        .map_err(config_error)
    }

    fn store_names(&self) -> Result<crate::token::StoreNames, JsValue> {
        crate::token::StoreNames::parse(self.store_names.as_deref().unwrap_or(""))
            .map_err(config_error)
    }
}

/// The slug of a store name (ASCII only: `Isle of Wight` → `isle-of-wight`),
/// the one rule the CLI and the worker share.
#[wasm_bindgen(js_name = storeSlug)]
pub fn store_slug(name: &str) -> String {
    crate::token::store_slug(name)
}

/// A token for the store slug `store`, valid until `expires` (Unix seconds),
/// signed with `secret` under the key id `kid` (default `k1`, the key id of a
/// lone `UPLOAD_SECRET`). For tests and tools; `cafe-etl token` is the
/// operator's way.
#[wasm_bindgen(js_name = mintToken)]
pub fn mint_token(
    secret: &str,
    store: &str,
    expires: f64,
    kid: Option<String>,
) -> Result<String, JsValue> {
    if !(expires.is_finite() && expires >= 0.0 && expires.fract() == 0.0 && expires < 1e12) {
        return Err(coded(
            "malformed",
            "the expiry is not a whole Unix time in seconds",
        ));
    }
    let kid = kid.unwrap_or_else(|| crate::token::LEGACY_KID.to_string());
    crate::token::mint(&kid, secret.as_bytes(), store, expires as u64)
        .map_err(|e| coded(e.reason(), &e.to_string()))
}

/// Checks the access settings (`AccessConfig`); throws a `CodedError` with
/// code `config` naming the first bad variable (never a secret).
#[wasm_bindgen(js_name = checkAccessConfig)]
pub fn check_access_config(
    #[wasm_bindgen(unchecked_param_type = "AccessConfig")] config: JsValue,
) -> Result<(), JsValue> {
    let o = AccessOptions::parse(config)?;
    o.verifier()?;
    o.store_names()?;
    Ok(())
}

/// Checks a token against the access settings at `nowSeconds`: its claims,
/// or a `CodedError` (the token's reason, or `config`).
#[wasm_bindgen(js_name = verifyToken, unchecked_return_type = "TokenClaims")]
pub fn verify_token(
    token: &str,
    #[wasm_bindgen(unchecked_param_type = "AccessConfig")] config: JsValue,
    now_seconds: f64,
) -> Result<JsValue, JsValue> {
    let v = AccessOptions::parse(config)?.verifier()?;
    let now = if now_seconds.is_finite() && now_seconds > 0.0 {
        now_seconds as u64
    } else {
        0
    };
    let c = v
        .verify(token, now)
        .map_err(|e| coded(e.reason(), &e.to_string()))?;
    let out = Object::new();
    set(&out, "kid", &JsValue::from_str(&c.kid));
    set(&out, "store", &JsValue::from_str(&c.store));
    set(&out, "expires", &JsValue::from_f64(c.expires as f64));
    Ok(out.into())
}

#[derive(Deserialize)]
struct StoreRows {
    store: String,
    #[serde(default)]
    transactions: u64,
}

/// The one-store-per-branch rule: the stores of a file's staged rows (the
/// report's `summary.by_store`) must all be the registered name of the
/// token's store `slug` (`storeNames`). Throws a `CodedError`
/// (`wrong_store`, `store_not_registered`, `config`) whose one-sentence
/// message names only the token's store and a spelling of it found.
#[wasm_bindgen(js_name = checkStores)]
pub fn check_stores(
    #[wasm_bindgen(unchecked_param_type = "AccessConfig")] config: JsValue,
    slug: &str,
    #[wasm_bindgen(unchecked_param_type = "StoreSummary[]")] by_store: JsValue,
) -> Result<(), JsValue> {
    let names = AccessOptions::parse(config)?.store_names()?;
    let rows: Vec<StoreRows> = serde_wasm_bindgen::from_value(by_store)
        .map_err(|e| config_error(format!("by_store: {e}")))?;
    names
        .check(
            slug,
            rows.iter().map(|r| (r.store.as_str(), r.transactions)),
        )
        .map_err(|e| coded(e.code(), &e.to_string()))
}

/// Which secret made a batch's customer keys: 16 hex digits of an HMAC of
/// a fixed label, or `none` without a secret (the report's
/// `customer_key_id`). The worker can log it, never the secret.
#[wasm_bindgen(js_name = customerKeyId)]
pub fn customer_key_id(secret: Option<String>) -> String {
    crate::clean::customer_key_id(secret.as_deref())
}

/// The keys of a batch relative to the staging root, in commit order: the
/// five table files, then the marker (the layout of src/stage.rs). The
/// worker puts its bucket prefix before them.
#[wasm_bindgen(js_name = stagingKeys)]
pub fn staging_keys(batch_id: &str) -> Vec<String> {
    crate::stage::batch_keys(batch_id)
}

/// The tables a load copies into the warehouse, in load order (every
/// staged table but the rejects).
#[wasm_bindgen(js_name = loadedTables, unchecked_return_type = "TableName[]")]
pub fn loaded_tables() -> Result<JsValue, JsValue> {
    to_js(&warehouse::schema::LOADED)
}

/// The table files of the staging layout, in commit order.
#[wasm_bindgen(js_name = stagingTables, unchecked_return_type = "TableName[]")]
pub fn staging_tables() -> Result<JsValue, JsValue> {
    to_js(&Table::ALL)
}

/// What a key relative to the staging root names: a table (its name),
/// `"marker"`, or `null` for anything else (the worker words its errors
/// with it, never naming the key).
#[wasm_bindgen(js_name = stagedObject, unchecked_return_type = "TableName | \"marker\" | null")]
pub fn staged_object(key: &str) -> Result<JsValue, JsValue> {
    match crate::stage::Staged::of_key(key) {
        Some(crate::stage::Staged::Table(t)) => to_js(&t),
        Some(crate::stage::Staged::Marker) => Ok(JsValue::from_str("marker")),
        None => Ok(JsValue::NULL),
    }
}

/// A commit time from JavaScript (a `Date.now()` number) as the index
/// takes it: a whole number of Unix ms from 0 to 10^13 - 1 (13
/// digits, year 2286), else a `config` error.
fn index_ms(ms: f64) -> Result<u64, JsValue> {
    if ms.is_finite() && ms >= 0.0 && ms.fract() == 0.0 {
        // A whole f64 in range converts exactly; the layout checks the range.
        let ms = ms as u64;
        if crate::stage::commits_day_prefix(ms).is_some() {
            return Ok(ms);
        }
    }
    Err(js_error(&crate::Error::coded(
        ErrorCode::Config,
        format!("index: {ms} is not a time in Unix ms from 0 to 10^13 - 1"),
    )))
}

/// The two index entries a commit writes before its marker (the staging
/// layout's index, src/stage.rs), relative to the root: one store's
/// batches newest first, and every commit by UTC day. The worker puts its
/// bucket prefix before them.
#[wasm_bindgen(js_name = indexKeys, unchecked_return_type = "IndexKeys")]
pub fn index_keys(store_slug: &str, batch_id: &str, unix_ms: f64) -> Result<JsValue, JsValue> {
    let ms = index_ms(unix_ms)?;
    // In the index's range (`index_ms`), so never `None`.
    to_js(&crate::stage::index_keys(store_slug, batch_id, ms))
}

/// `index/stores/<slug>/`: the folder a store's batches are listed from.
#[wasm_bindgen(js_name = storeIndexPrefix)]
pub fn store_index_prefix(store_slug: &str) -> String {
    crate::stage::store_index_prefix(store_slug)
}

/// `index/commits/<yyyy-mm-dd>/`: the folder of one UTC day's commits.
#[wasm_bindgen(js_name = commitsDayPrefix)]
pub fn commits_day_prefix(unix_ms: f64) -> Result<String, JsValue> {
    let ms = index_ms(unix_ms)?;
    Ok(crate::stage::commits_day_prefix(ms).unwrap_or_default())
}

/// What an index key (relative to the root) records, or `null` for any
/// other key (a reader skips it).
#[wasm_bindgen(js_name = indexEntry, unchecked_return_type = "IndexEntry | null")]
pub fn index_entry(key: &str) -> Result<JsValue, JsValue> {
    crate::stage::parse_index_key(key).map_or(Ok(JsValue::NULL), |e| to_js(&e))
}

/// The parts of a report the refusal rule reads.
#[derive(Deserialize)]
struct RefusalView {
    #[serde(default)]
    refused: bool,
    #[serde(default)]
    issues: Vec<crate::Issue>,
}

/// Why a report's file was refused, in one sentence to show
/// (`Report::refusal_message`); `null` when it was not refused.
#[wasm_bindgen(js_name = refusalMessage, unchecked_return_type = "string | null")]
pub fn refusal_message(
    #[wasm_bindgen(unchecked_param_type = "Report")] report: JsValue,
) -> Result<JsValue, JsValue> {
    let v: RefusalView = serde_wasm_bindgen::from_value(report).map_err(|e| {
        js_error(&crate::Error::coded(
            ErrorCode::Config,
            format!("report: {e}"),
        ))
    })?;
    let report = Report {
        refused: v.refused,
        issues: v.issues,
        ..Report::default()
    };
    Ok(report
        .refusal_message()
        .map_or(JsValue::NULL, |m| JsValue::from_str(&m)))
}

/// The crate version, for logs.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Default bytes between two progress callbacks of a stream read.
const PROGRESS_EVERY_BYTES: f64 = 1024.0 * 1024.0;

/// The options of `pushStream` / `hashStream`. Read by hand, not by serde:
/// functions and an `AbortSignal` are JS objects to keep as they are.
struct StreamOptions {
    on_progress: Option<Function>,
    progress_every: f64,
    on_drain: Option<Function>,
    drain_every: f64,
    signal: Option<web_sys::AbortSignal>,
}

impl StreamOptions {
    fn parse(value: &JsValue) -> Result<StreamOptions, JsValue> {
        let mut o = StreamOptions {
            on_progress: None,
            progress_every: PROGRESS_EVERY_BYTES,
            on_drain: None,
            drain_every: 0.0,
            signal: None,
        };
        if value.is_undefined() || value.is_null() {
            return Ok(o);
        }
        if !value.is_object() {
            return Err(stream_config("the stream options are not an object"));
        }
        o.on_progress = callback(value, "onProgress")?;
        o.on_drain = callback(value, "onDrain")?;
        o.progress_every = byte_count(value, "progressEveryBytes", PROGRESS_EVERY_BYTES)?;
        o.drain_every = byte_count(value, "drainEveryBytes", 0.0)?;
        let signal = field(value, "signal");
        if !(signal.is_undefined() || signal.is_null()) {
            // Duck-typed (`aborted`, `reason`): any runtime's AbortSignal.
            if !signal.is_object() {
                return Err(stream_config("signal is not an AbortSignal"));
            }
            o.signal = Some(signal.unchecked_into());
        }
        Ok(o)
    }
}

fn field(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn stream_config(message: &str) -> JsValue {
    js_error(&crate::Error::coded(
        ErrorCode::Config,
        format!("stream options: {message}"),
    ))
}

fn callback(options: &JsValue, key: &str) -> Result<Option<Function>, JsValue> {
    let f = field(options, key);
    if f.is_undefined() || f.is_null() {
        Ok(None)
    } else {
        f.dyn_into::<Function>()
            .map(Some)
            .map_err(|_| stream_config(&format!("{key} is not a function")))
    }
}

fn byte_count(options: &JsValue, key: &str, default: f64) -> Result<f64, JsValue> {
    let v = field(options, key);
    if v.is_undefined() || v.is_null() {
        return Ok(default);
    }
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(stream_config(&format!(
            "{key} is not a number of bytes (0 or more)"
        ))),
    }
}

/// A `read` error: the stream itself failed. `cause` keeps the original
/// (never shown: a browser's text may name a path).
fn read_error(what: &str, cause: &JsValue) -> JsValue {
    let e = coded("read", &format!("read error: {what}"));
    set(e.unchecked_ref(), "cause", cause);
    e
}

/// What a failed `reader.read()` becomes: whatever the stream failed with
/// (a browser's `TypeError: network error` or `NotReadableError` for a file
/// changed on disk, a request body cut off, a source's own Error), code
/// `read`, the original as `cause`. Its name and text are kept in the
/// message: a runtime's words, never the bytes read.
fn read_failure(e: JsValue) -> JsValue {
    let name = field(&e, "name").as_string();
    let text = field(&e, "message").as_string();
    let what = match (name, text) {
        (Some(n), Some(t)) if !t.is_empty() => {
            format!("{n}: {}", t.chars().take(200).collect::<String>())
        }
        (Some(n), _) => n,
        _ => "it failed without an Error".to_string(),
    };
    read_error(&format!("the stream could not be read ({what})"), &e)
}

fn busy() -> JsValue {
    coded(
        "busy",
        "config error: a stream is being read into this object; wait for its Promise",
    )
}

/// Throws the signal's reason, as it is, once it is aborted.
fn check_signal(signal: Option<&web_sys::AbortSignal>) -> Result<(), JsValue> {
    match signal {
        Some(s) if s.aborted() => Err(s.reason()),
        _ => Ok(()),
    }
}

/// A callback's result as something to await: `None` when it returned
/// nothing (most calls: no Promise to wrap).
fn awaitable(value: JsValue) -> Option<Promise> {
    if value.is_undefined() {
        None
    } else {
        Some(Promise::resolve(&value))
    }
}

/// The one stream reader: reads `stream` (of `Uint8Array` chunks) to its
/// end, handing each chunk's bytes to `chunk`, and awaits the Promise it may
/// return before reading on. On any failure the stream is cancelled with
/// the error as its reason and the error is returned. The chunks are copied
/// into one reused buffer, so a long stream allocates nothing per chunk.
async fn read_stream(
    stream: &JsValue,
    signal: Option<&web_sys::AbortSignal>,
    mut chunk: impl FnMut(&[u8]) -> Result<Option<Promise>, JsValue>,
) -> Result<(), JsValue> {
    check_signal(signal)?;
    // getReader through Reflect so that a locked stream or a non-stream is a
    // thrown Error, not a trap in WebAssembly.
    let get_reader = field(stream, "getReader")
        .dyn_into::<Function>()
        .map_err(|_| {
            js_error(&crate::Error::coded(
                ErrorCode::Config,
                "the stream given is not a ReadableStream".to_string(),
            ))
        })?;
    let reader: web_sys::ReadableStreamDefaultReader = get_reader
        .call0(stream)
        .map_err(read_failure)?
        .unchecked_into();
    let mut buf: Vec<u8> = Vec::new();
    let result = async {
        loop {
            check_signal(signal)?;
            let step = JsFuture::from(reader.read()).await.map_err(read_failure)?;
            check_signal(signal)?;
            if field(&step, "done").as_bool() == Some(true) {
                return Ok(());
            }
            let value = field(&step, "value")
                .dyn_into::<Uint8Array>()
                .map_err(|v| read_error("a chunk of the stream is not a Uint8Array", &v))?;
            buf.resize(value.length() as usize, 0);
            value.copy_to(&mut buf);
            if let Some(wait) = chunk(&buf)? {
                JsFuture::from(wait).await?;
                check_signal(signal)?;
            }
        }
    }
    .await;
    if let Err(e) = &result {
        // Not awaited (a source's cancel may take its time); its own failure
        // is of no interest, but must not surface as an unhandled rejection.
        let cancelled = reader.cancel_with_reason(e);
        wasm_bindgen_futures::spawn_local(async move {
            let _ = JsFuture::from(cancelled).await;
        });
    }
    result
}

/// Marks an object busy while a stream is read into it: set when
/// `pushStream`/`hashStream` is called (before its future first runs),
/// cleared when the read ends or its future is dropped.
struct Busy(Rc<Cell<bool>>);

impl Busy {
    fn start(flag: &Rc<Cell<bool>>) -> Busy {
        flag.set(true);
        Busy(flag.clone())
    }
}

/// `busy` while a stream is being read into the object: its own methods
/// wait for the stream's end.
fn idle(flag: &Cell<bool>) -> Result<(), JsValue> {
    if flag.get() {
        Err(busy())
    } else {
        Ok(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// SHA-256 of a file fed in chunks; `finish()` gives the batch id.
#[wasm_bindgen]
pub struct BatchHasher {
    // Shared with a `hashStream` under way (its future outlives the call).
    inner: Rc<RefCell<Option<crate::BatchHasher>>>,
    busy: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl BatchHasher {
    /// A fresh hasher.
    #[wasm_bindgen(constructor)]
    pub fn new() -> BatchHasher {
        BatchHasher {
            inner: Rc::new(RefCell::new(Some(crate::BatchHasher::new()))),
            busy: Rc::new(Cell::new(false)),
        }
    }

    /// Adds a chunk.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        idle(&self.busy)?;
        self.inner
            .borrow_mut()
            .as_mut()
            .ok_or_else(|| finished("hasher"))?
            .update(chunk);
        Ok(())
    }

    /// Reads a `ReadableStream` of `Uint8Array` chunks to its end and hashes
    /// it (see `HashStreamOptions`); then `sha256()` or `finish()`.
    #[wasm_bindgen(js_name = hashStream, unchecked_return_type = "Promise<void>")]
    pub fn hash_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ReadableStream<Uint8Array>")] stream: JsValue,
        #[wasm_bindgen(unchecked_param_type = "HashStreamOptions")] options: Option<JsValue>,
    ) -> Result<Promise, JsValue> {
        idle(&self.busy)?;
        if self.inner.borrow().is_none() {
            return Err(finished("hasher"));
        }
        let o = StreamOptions::parse(&options.unwrap_or(JsValue::UNDEFINED))?;
        let inner = self.inner.clone();
        let busy = Busy::start(&self.busy);
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let _busy = busy;
            let mut bytes = 0f64;
            let mut since = 0f64;
            let progress = |bytes: f64| -> Result<(), JsValue> {
                if let Some(f) = &o.on_progress {
                    let p = Object::new();
                    set(&p, "bytes", &JsValue::from_f64(bytes));
                    f.call1(&JsValue::UNDEFINED, &p)?;
                }
                Ok(())
            };
            read_stream(&stream, o.signal.as_ref(), |chunk| {
                if let Some(h) = inner.borrow_mut().as_mut() {
                    h.update(chunk);
                }
                bytes += chunk.len() as f64;
                since += chunk.len() as f64;
                if since >= o.progress_every {
                    since = 0.0;
                    progress(bytes)?;
                }
                Ok(None)
            })
            .await?;
            if since > 0.0 {
                progress(bytes)?;
            }
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// The full SHA-256 in hex (64 digits); the hasher is then finished.
    pub fn sha256(&mut self) -> Result<String, JsValue> {
        idle(&self.busy)?;
        Ok(self
            .inner
            .borrow_mut()
            .take()
            .ok_or_else(|| finished("hasher"))?
            .sha256_hex())
    }

    /// The batch id (32 hex digits); the hasher is then finished.
    pub fn finish(&mut self) -> Result<String, JsValue> {
        idle(&self.busy)?;
        Ok(self
            .inner
            .borrow_mut()
            .take()
            .ok_or_else(|| finished("hasher"))?
            .finish())
    }
}

impl Default for BatchHasher {
    fn default() -> Self {
        BatchHasher::new()
    }
}

enum Inner {
    Check(CorePipeline<std::io::Sink>),
    Stage(CorePipeline<Vec<u8>>, String),
}

impl Inner {
    fn push(&mut self, chunk: &[u8]) -> Result<(), crate::Error> {
        match self {
            Inner::Check(p) => p.push(chunk),
            Inner::Stage(p, _) => p.push(chunk),
        }
    }

    fn rows_read(&self) -> u64 {
        match self {
            Inner::Check(p) => p.rows_read(),
            Inner::Stage(p, _) => p.rows_read(),
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            Inner::Check(p) => p.bytes(),
            Inner::Stage(p, _) => p.bytes(),
        }
    }

    /// The compressed table bytes since the last drain, per staging path.
    fn drain(&mut self) -> Object {
        let out = Object::new();
        if let Inner::Stage(p, id) = self {
            if let Some(w) = p.tables_mut() {
                for t in Table::ALL {
                    let buf = w.get_mut(t);
                    if !buf.is_empty() {
                        set(&out, &t.key(id), &Uint8Array::from(&buf[..]).into());
                        buf.clear();
                    }
                }
            }
        }
        out
    }
}

/// A file fed in chunks (from `File.stream()` or a request body), so memory
/// stays flat whatever its size. With `batchId` in the options it stages:
/// `drain()` hands over the compressed table bytes produced so far (to
/// stream them on), `finish()` the rest and the report. `pushStream` reads
/// a whole `ReadableStream` into it: the one chunk loop of the page and the
/// edge worker.
#[wasm_bindgen]
pub struct Pipeline {
    // Shared with a `pushStream` under way (its future outlives the call);
    // borrowed only within one synchronous step, never across an await, so
    // the stream's callbacks may call `drain()` and `takeRejectsCsv()`.
    inner: Rc<RefCell<Option<Inner>>>,
    busy: Rc<Cell<bool>>,
}

fn finished(what: &str) -> JsValue {
    js_error(&crate::Error::coded(
        ErrorCode::Finished,
        format!("the {what} is finished"),
    ))
}

#[wasm_bindgen]
impl Pipeline {
    /// A new pipeline; see `PipelineOptions`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "PipelineOptions")] options: JsValue,
    ) -> Result<Pipeline, JsValue> {
        let o = Options::parse(options)?;
        let source = o.source.clone().unwrap_or_default();
        let inner = match &o.batch_id {
            Some(id) => {
                let mut p = CorePipeline::transform(o.config(), &source, id, |_| Vec::new())
                    .map_err(|e| js_error(&e))?;
                if let Some(sha) = &o.sha256 {
                    p = p.expect_sha256(sha).map_err(|e| js_error(&e))?;
                }
                Inner::Stage(
                    if o.rejects_csv {
                        p.with_rejects_csv()
                    } else {
                        p
                    },
                    id.clone(),
                )
            }
            None => {
                let p = CorePipeline::check(o.config(), &source);
                Inner::Check(if o.rejects_csv {
                    p.with_rejects_csv()
                } else {
                    p
                })
            }
        };
        Ok(Pipeline {
            inner: Rc::new(RefCell::new(Some(inner))),
            busy: Rc::new(Cell::new(false)),
        })
    }

    /// Feeds the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        idle(&self.busy)?;
        self.inner
            .borrow_mut()
            .as_mut()
            .ok_or_else(|| finished("pipeline"))?
            .push(chunk)
            .map_err(|e| js_error(&e))
    }

    /// Reads a `ReadableStream` of `Uint8Array` chunks to its end, pushing
    /// each chunk, with progress and drain callbacks (see
    /// `PushStreamOptions`); then `finish()`. While it runs, `push`,
    /// `finish` and another `pushStream` throw `busy`. After a rejection the
    /// pipeline holds part of the stream: free it.
    #[wasm_bindgen(js_name = pushStream, unchecked_return_type = "Promise<void>")]
    pub fn push_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ReadableStream<Uint8Array>")] stream: JsValue,
        #[wasm_bindgen(unchecked_param_type = "PushStreamOptions")] options: Option<JsValue>,
    ) -> Result<Promise, JsValue> {
        idle(&self.busy)?;
        if self.inner.borrow().is_none() {
            return Err(finished("pipeline"));
        }
        let o = StreamOptions::parse(&options.unwrap_or(JsValue::UNDEFINED))?;
        let inner = self.inner.clone();
        let busy = Busy::start(&self.busy);
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let _busy = busy;
            let progress = || -> Result<(), JsValue> {
                if let Some(f) = &o.on_progress {
                    let (bytes, rows) = match inner.borrow().as_ref() {
                        Some(p) => (p.bytes() as f64, p.rows_read() as f64),
                        None => (0.0, 0.0),
                    };
                    let p = Object::new();
                    set(&p, "bytes", &JsValue::from_f64(bytes));
                    set(&p, "rows", &JsValue::from_f64(rows));
                    f.call1(&JsValue::UNDEFINED, &p)?;
                }
                Ok(())
            };
            // The drained files go to the callback outside the borrow, so it
            // may call back into the pipeline.
            let drain = || -> Result<Option<Promise>, JsValue> {
                match &o.on_drain {
                    Some(f) => {
                        let files = match inner.borrow_mut().as_mut() {
                            Some(p) => p.drain(),
                            None => return Err(finished("pipeline")),
                        };
                        Ok(awaitable(f.call1(&JsValue::UNDEFINED, &files)?))
                    }
                    None => Ok(None),
                }
            };
            let (mut since_progress, mut since_drain) = (0f64, 0f64);
            read_stream(&stream, o.signal.as_ref(), |chunk| {
                inner
                    .borrow_mut()
                    .as_mut()
                    .ok_or_else(|| finished("pipeline"))?
                    .push(chunk)
                    .map_err(|e| js_error(&e))?;
                since_progress += chunk.len() as f64;
                since_drain += chunk.len() as f64;
                if since_progress >= o.progress_every {
                    since_progress = 0.0;
                    progress()?;
                }
                if since_drain >= o.drain_every {
                    since_drain = 0.0;
                    return drain();
                }
                Ok(None)
            })
            .await?;
            // What came since the last drain, then the final figures.
            if since_drain > 0.0 {
                if let Some(wait) = drain()? {
                    JsFuture::from(wait).await?;
                }
            }
            if since_progress > 0.0 {
                progress()?;
            }
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Bytes pushed so far.
    #[wasm_bindgen(getter)]
    pub fn bytes(&self) -> f64 {
        self.inner
            .borrow()
            .as_ref()
            .map_or(0.0, |p| p.bytes() as f64)
    }

    /// Data rows read so far.
    #[wasm_bindgen(getter, js_name = rowsRead)]
    pub fn rows_read(&self) -> f64 {
        self.inner
            .borrow()
            .as_ref()
            .map_or(0.0, |p| p.rows_read() as f64)
    }

    /// Compressed table bytes produced since the last call, per staging path
    /// (only tables with new bytes are listed). Concatenated in order with
    /// what `finish()` returns, they are the complete gzip files.
    #[wasm_bindgen(unchecked_return_type = "StagedFiles")]
    pub fn drain(&mut self) -> Result<JsValue, JsValue> {
        match self.inner.borrow_mut().as_mut() {
            Some(p) => Ok(p.drain().into()),
            None => Err(finished("pipeline")),
        }
    }

    /// The rejected rows' download made since the last call (empty without
    /// the `rejectsCsv` option), so that a long one need not sit in
    /// WebAssembly memory; see `TransformResult.rejectsCsv`.
    #[wasm_bindgen(js_name = takeRejectsCsv)]
    pub fn take_rejects_csv(&mut self) -> Result<Vec<u8>, JsValue> {
        let mut inner = self.inner.borrow_mut();
        let csv = match inner.as_mut().ok_or_else(|| finished("pipeline"))? {
            Inner::Check(p) => p.rejects_csv_mut(),
            Inner::Stage(p, _) => p.rejects_csv_mut(),
        };
        Ok(csv.map(|c| c.take()).unwrap_or_default())
    }

    /// Ends the input: the report, and (when staging and not refused) the
    /// remaining bytes of each table file followed by the marker
    /// `batches/<batch_id>.json`. Fails if the bytes pushed do not have the
    /// batch id given at the start (or the `sha256` option's SHA-256).
    #[wasm_bindgen(unchecked_return_type = "TransformResult")]
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        idle(&self.busy)?;
        let inner = self.inner.borrow_mut().take();
        match inner.ok_or_else(|| finished("pipeline"))? {
            Inner::Check(p) => {
                let f = p.finish().map_err(|e| js_error(&e))?;
                with_rejects(result_object(&f.report, &[])?, f.rejects_csv)
            }
            Inner::Stage(p, id) => {
                let f = p.finish().map_err(|e| js_error(&e))?;
                if f.report.refused {
                    return with_rejects(result_object(&f.report, &[])?, f.rejects_csv);
                }
                let mut files: Vec<(String, Vec<u8>)> = Table::ALL
                    .iter()
                    .zip(f.tables.unwrap_or_default())
                    .map(|(t, b)| (t.key(&id), b))
                    .collect();
                files.push((crate::marker_key(&id), f.report.to_json().into_bytes()));
                with_rejects(result_object(&f.report, &files)?, f.rejects_csv)
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadPlanInput {
    batches: Vec<LoadPlanBatch>,
    dialect: String,
    #[serde(default)]
    s3: Option<S3Input>,
    #[serde(default)]
    max_statement_bytes: Option<f64>,
    #[serde(default)]
    loaded_key_ids: Vec<String>,
}

#[derive(Deserialize)]
struct LoadPlanBatch {
    // Kept a JS value and read as its JSON text by the core's one marker
    // reader, as natively from the file: no second JSON model in wasm.
    #[serde(with = "serde_wasm_bindgen::preserve")]
    marker: JsValue,
    #[serde(default)]
    sizes: Option<TableSizes>,
}

#[derive(Deserialize)]
struct TableSizes {
    stores: u64,
    products: u64,
    transactions: u64,
    basket_items: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Input {
    url: String,
    #[serde(default)]
    iam_role: Option<String>,
    #[serde(default)]
    region: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadPlanOutput {
    plan_id: String,
    batch_ids: Vec<String>,
    manifests: Vec<ManifestOutput>,
    statements: Vec<warehouse::Statement>,
}

#[derive(serde::Serialize)]
struct ManifestOutput {
    table: &'static str,
    key: String,
    body: String,
}

/// A warehouse error as a `CodedError`: its stable code (`config` when it
/// has none), the core's text.
fn core_error(e: warehouse::Error) -> JsValue {
    coded(e.code().unwrap_or("config"), &e.to_string())
}

/// A bad argument of a warehouse export, in `phase`: code `config`.
fn input_error(phase: warehouse::Phase, message: impl std::fmt::Display) -> JsValue {
    core_error(warehouse::Error::new(phase, message.to_string()))
}

fn plan_input(message: impl std::fmt::Display) -> JsValue {
    input_error(warehouse::Phase::Plan, message)
}

fn dialect(name: &str) -> Result<warehouse::Dialect, JsValue> {
    name.parse().map_err(plan_input)
}

/// An optional text setting: absent or empty is unset.
fn setting(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// The statements of one load of `batches` for `dialect`, the very ones
/// `cafe-etl load` runs: see `LoadPlanInput` and `LoadPlan`. Throws a
/// `CodedError` with the core's text (`plan error: ...`): `bad_marker` (a
/// marker that is not a batch report), `mixed_customer_keys` (batches of
/// different customer-key secrets), `statement_too_long`, `config` (an
/// unknown dialect, Redshift without `s3`, input of the wrong shape).
#[wasm_bindgen(js_name = loadPlan, unchecked_return_type = "LoadPlan")]
pub fn load_plan(
    #[wasm_bindgen(unchecked_param_type = "LoadPlanInput")] input: JsValue,
) -> Result<JsValue, JsValue> {
    let input: LoadPlanInput = serde_wasm_bindgen::from_value(input)
        .map_err(|e| plan_input(format!("loadPlan input: {e}")))?;
    let dialect = dialect(&input.dialect)?;
    if input.batches.is_empty() {
        return Err(plan_input("no batch to load"));
    }
    let mut batches = Vec::with_capacity(input.batches.len());
    for (i, b) in input.batches.into_iter().enumerate() {
        let json: String = js_sys::JSON::stringify(&b.marker)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default();
        let json = json.into_bytes();
        let sizes = b
            .sizes
            .map(|s| [s.stores, s.products, s.transactions, s.basket_items]);
        let batch = warehouse::Batch::from_marker(&json, 0, sizes).map_err(|problem| {
            core_error(
                warehouse::Error::new(
                    warehouse::Phase::Plan,
                    format!("the marker of batch {} {problem}", i + 1),
                )
                .with_code("bad_marker"),
            )
        })?;
        batches.push(batch);
    }
    // One customer-key secret per warehouse, the rule `cafe-etl load`
    // applies: the caller gives the warehouse's key ids (the rows of
    // `loadedKeyIdsQuery`); none, and it is `cafe-etl load-plan`'s rule
    // (one secret per plan).
    if let Some(bad) = input
        .loaded_key_ids
        .iter()
        .find(|k| !k.is_empty() && !crate::clean::is_customer_key_id(k))
    {
        let shown: String = bad
            .chars()
            .take(20)
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        return Err(plan_input(format!(
            "loadedKeyIds: {shown:?} is not a customer key id (16 hex digits or none)"
        )));
    }
    warehouse::keys::check(&input.loaded_key_ids, &batches, warehouse::Phase::Plan)
        .map_err(core_error)?;
    let s3 = match input.s3 {
        None => None,
        Some(s) => {
            let mut t = warehouse::S3Target::new(&s.url).map_err(plan_input)?;
            if let Some(role) = setting(s.iam_role) {
                t = t.with_iam_role(&role).map_err(plan_input)?;
            }
            if let Some(region) = setting(s.region) {
                t = t.with_region(&region).map_err(plan_input)?;
            }
            Some(t)
        }
    };
    let mut options = warehouse::StatementOptions {
        s3: s3.clone(),
        ..Default::default()
    };
    if let Some(n) = input.max_statement_bytes {
        if !(n.is_finite() && n >= 1.0) {
            return Err(plan_input("maxStatementBytes is not a positive number"));
        }
        options.max_statement_bytes = n as usize;
    }
    let plan = warehouse::Plan::new(batches);
    let statements = plan.statements(dialect, &options).map_err(core_error)?;
    let manifests = match (dialect, &s3) {
        (warehouse::Dialect::Redshift, Some(s3)) => plan
            .manifests(s3)
            .into_iter()
            .map(|(t, key, body)| ManifestOutput {
                table: t.name(),
                key,
                body,
            })
            .collect(),
        _ => Vec::new(),
    };
    let out = LoadPlanOutput {
        plan_id: plan.id().to_string(),
        batch_ids: plan.batches().iter().map(|b| b.id().to_string()).collect(),
        manifests,
        statements,
    };
    to_js(&out)
}

/// The warehouse schema as single statements (tables, the ledger, the
/// lock and `load_failures` tables, the views), each safe to run again.
/// Throws a `CodedError` (`config`) for an unknown dialect.
#[wasm_bindgen(js_name = warehouseSchema, unchecked_return_type = "string[]")]
pub fn warehouse_schema(
    #[wasm_bindgen(unchecked_param_type = "WarehouseDialect")] dialect_name: &str,
) -> Result<JsValue, JsValue> {
    to_js(&warehouse::schema::statements(dialect(dialect_name)?))
}

/// The statements that record a quarantined batch in `load_failures` (one
/// row per batch: recording it again updates that row), to run in one
/// transaction. Throws a `CodedError` (`load error: ...`): `bad_batch_id`,
/// `bad_failure` (a code or reason that will not do), `config`.
#[wasm_bindgen(js_name = quarantineStatements, unchecked_return_type = "string[]")]
pub fn quarantine_statements(
    #[wasm_bindgen(unchecked_param_type = "LoadFailure")] failure: JsValue,
    #[wasm_bindgen(unchecked_param_type = "WarehouseDialect")] dialect_name: &str,
) -> Result<JsValue, JsValue> {
    let f: warehouse::Failure = serde_wasm_bindgen::from_value(failure)
        .map_err(|e| input_error(warehouse::Phase::Load, format!("failure: {e}")))?;
    let sql = warehouse::quarantine_statements(&f, dialect(dialect_name)?).map_err(core_error)?;
    to_js(&sql)
}

/// A query giving `batch_id, loaded_at` of those of `batchIds` in the
/// ledger. Throws a `CodedError` (`load error: ...`): `bad_batch_id`,
/// `too_many_ids` (over 2,000), `config`.
#[wasm_bindgen(js_name = ledgerQuery)]
pub fn ledger_query(
    #[wasm_bindgen(unchecked_param_type = "string[]")] batch_ids: JsValue,
    #[wasm_bindgen(unchecked_param_type = "WarehouseDialect")] dialect_name: &str,
) -> Result<String, JsValue> {
    let ids: Vec<String> = serde_wasm_bindgen::from_value(batch_ids)
        .map_err(|e| input_error(warehouse::Phase::Load, format!("batch ids: {e}")))?;
    warehouse::ledger_query(&ids, dialect(dialect_name)?).map_err(core_error)
}

/// The query giving the warehouse's customer key ids (one column,
/// `customer_key_id`), the one `cafe-etl load` runs: its rows are
/// `loadPlan`'s `loadedKeyIds`. Throws a `CodedError` (`config`) for an
/// unknown dialect.
#[wasm_bindgen(js_name = loadedKeyIdsQuery)]
pub fn loaded_key_ids_query(
    #[wasm_bindgen(unchecked_param_type = "WarehouseDialect")] dialect_name: &str,
) -> Result<String, JsValue> {
    dialect(dialect_name)?;
    Ok(warehouse::keys::loaded_key_ids_query())
}

/// The Redshift Data API's limits the statements are made for.
#[wasm_bindgen(js_name = dataApiLimits, unchecked_return_type = "DataApiLimits")]
pub fn data_api_limits() -> Result<JsValue, JsError> {
    let out = Object::new();
    set(
        &out,
        "maxStatementBytes",
        &JsValue::from_f64(warehouse::DATA_API_MAX_STATEMENT_BYTES as f64),
    );
    set(
        &out,
        "maxBatchStatements",
        &JsValue::from_f64(warehouse::DATA_API_MAX_BATCH_STATEMENTS as f64),
    );
    Ok(out.into())
}
