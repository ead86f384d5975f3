// The Redshift runner: a load plan's statements through the Amazon Redshift Data API
// (https://docs.aws.amazon.com/redshift-data/latest/APIReference/), SigV4-signed with
// aws4fetch. No driver, no VPC, no open port: the worker only makes HTTPS calls.
//
// One `apply` is one `BatchExecuteStatement`: the Data API runs its statements, in
// order, as ONE transaction (all of it commits or none). Then `DescribeStatement` is
// polled with backoff until FINISHED / FAILED / ABORTED, within REDSHIFT_WAIT_MS; the
// last statement's rows come from `GetStatementResult` of its sub-statement
// (`<id>:<n>`). See docs/warehouse.md ("Redshift from the worker") for the set-up.

import { AwsClient } from 'aws4fetch';
import * as core from '../../../pkg/cafe_etl.js';
import { backoffDelay } from '../lib.js';
import { WarehouseError } from './errors.js';

const TARGET_PREFIX = 'RedshiftData.';
const CONTENT_TYPE = 'application/x-amz-json-1.1';
/** The longest Redshift error text kept in a WarehouseError (it goes to logs, the bucket, load_failures). */
const MAX_ERROR_CHARS = 300;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Configuration

function misconfigured(message) {
  // Transient on purpose: a wrong variable is the deployment's fault, not the
  // batch's. Quarantining every batch until someone fixes a typo would fill
  // load_failures and the dead-letter queue with good batches; retried, they load
  // once the variable is fixed (or reach the dead-letter queue after max_retries).
  return WarehouseError.transient('misconfigured', message);
}

function intVar(env, name, fallback, min, max) {
  const raw = env[name];
  if (raw === undefined || raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw misconfigured(`${name} is ${JSON.stringify(String(raw))}, expected a whole number from ${min} to ${max}`);
  }
  return n;
}

function textVar(env, name) {
  const v = env[name];
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/**
 * The Redshift runner's settings from the worker's environment (wrangler.toml
 * [vars] and secrets), checked. Throws a WarehouseError `misconfigured` naming the
 * first bad variable, never a secret's value.
 *
 * - `REDSHIFT_WORKGROUP` (serverless) or `REDSHIFT_CLUSTER_ID` (provisioned), one of them;
 * - `REDSHIFT_DATABASE`, `REDSHIFT_REGION`;
 * - `REDSHIFT_SECRET_ARN` (Secrets Manager) or `REDSHIFT_DB_USER` (provisioned, temporary
 *   credentials), or neither (the database user is the caller's IAM identity);
 * - secrets `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN` if temporary);
 * - `REDSHIFT_DATA_API_URL`: the endpoint, `https://redshift-data.<region>.amazonaws.com`
 *   unless set (http:// only with ENVIRONMENT = "development": the local stand-in);
 * - `REDSHIFT_WAIT_MS` (how long one load may run, default 5 minutes), `REDSHIFT_POLL_MS`,
 *   `REDSHIFT_POLL_CAP_MS`, `REDSHIFT_RETRY_ATTEMPTS`, `REDSHIFT_RETRY_BASE_MS`,
 *   `REDSHIFT_RETRY_CAP_MS`, `REDSHIFT_REQUEST_TIMEOUT_MS`.
 */
export function redshiftConfig(env) {
  const region = textVar(env, 'REDSHIFT_REGION');
  if (!region || !/^[a-z]{2}(-[a-z]+)+-\d$/.test(region)) {
    throw misconfigured('REDSHIFT_REGION must be an AWS region such as eu-west-2');
  }
  const development = env.ENVIRONMENT === 'development';
  let endpoint = textVar(env, 'REDSHIFT_DATA_API_URL') ?? `https://redshift-data.${region}.amazonaws.com`;
  endpoint = endpoint.replace(/\/+$/, '');
  if (!/^https?:\/\/[^/?#]+$/.test(endpoint)) {
    throw misconfigured('REDSHIFT_DATA_API_URL must be an http(s) origin such as https://redshift-data.eu-west-2.amazonaws.com');
  }
  // The statements carry the COPY role's ARN and the signed calls: plain HTTP only
  // for the local stand-in, as S3_ENDPOINT.
  if (!development && !endpoint.startsWith('https://')) {
    throw misconfigured('REDSHIFT_DATA_API_URL must be an https:// URL outside local development (ENVIRONMENT = "development")');
  }
  const database = textVar(env, 'REDSHIFT_DATABASE');
  if (!database) throw misconfigured('REDSHIFT_DATABASE is not set');
  const workgroup = textVar(env, 'REDSHIFT_WORKGROUP');
  const clusterId = textVar(env, 'REDSHIFT_CLUSTER_ID');
  if (workgroup && clusterId) throw misconfigured('set REDSHIFT_WORKGROUP (serverless) or REDSHIFT_CLUSTER_ID (provisioned), not both');
  if (!workgroup && !clusterId) throw misconfigured('REDSHIFT_WORKGROUP (serverless) or REDSHIFT_CLUSTER_ID (provisioned) must be set');
  if (clusterId && !/^[a-z]([a-z0-9]|-[a-z0-9])*$/.test(clusterId)) {
    throw misconfigured('REDSHIFT_CLUSTER_ID is not a cluster identifier (lowercase letters, digits, single hyphens)');
  }
  const secretArn = textVar(env, 'REDSHIFT_SECRET_ARN');
  const dbUser = textVar(env, 'REDSHIFT_DB_USER');
  if (secretArn && dbUser) throw misconfigured('set REDSHIFT_SECRET_ARN (Secrets Manager) or REDSHIFT_DB_USER (temporary credentials), not both');
  if (workgroup && dbUser) {
    throw misconfigured('REDSHIFT_DB_USER is for a provisioned cluster: a serverless workgroup takes its database user from the IAM identity, or from REDSHIFT_SECRET_ARN');
  }
  if (secretArn && !/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/.test(secretArn)) {
    throw misconfigured('REDSHIFT_SECRET_ARN is not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)');
  }
  const accessKeyId = textVar(env, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = textVar(env, 'AWS_SECRET_ACCESS_KEY');
  if (!accessKeyId) throw misconfigured('AWS_ACCESS_KEY_ID is not set (the Data API caller)');
  if (!secretAccessKey) throw misconfigured('AWS_SECRET_ACCESS_KEY is not set (the Data API caller)');
  return {
    endpoint,
    region,
    database,
    workgroup,
    clusterId,
    secretArn,
    dbUser,
    accessKeyId,
    secretAccessKey,
    sessionToken: textVar(env, 'AWS_SESSION_TOKEN'),
    waitMs: intVar(env, 'REDSHIFT_WAIT_MS', 300_000, 1, 14 * 60_000),
    poll: { baseMs: intVar(env, 'REDSHIFT_POLL_MS', 250, 1, 60_000), capMs: intVar(env, 'REDSHIFT_POLL_CAP_MS', 5_000, 1, 60_000) },
    retry: {
      attempts: intVar(env, 'REDSHIFT_RETRY_ATTEMPTS', 6, 1, 20),
      baseMs: intVar(env, 'REDSHIFT_RETRY_BASE_MS', 200, 1, 60_000),
      capMs: intVar(env, 'REDSHIFT_RETRY_CAP_MS', 5_000, 1, 60_000),
    },
    requestTimeoutMs: intVar(env, 'REDSHIFT_REQUEST_TIMEOUT_MS', 20_000, 1, 120_000),
  };
}

/**
 * The Data API's limits the core makes its statements for (`dataApiLimits()` of the
 * wasm module: statements per BatchExecuteStatement, bytes per statement).
 */
export function dataApiLimits() {
  if (typeof core.dataApiLimits !== 'function') {
    throw misconfigured('the wasm core has no dataApiLimits(): rebuild pkg/ (scripts/build-wasm)');
  }
  return core.dataApiLimits();
}

// ---------------------------------------------------------------------------
// Errors

/**
 * Redshift's own error text, made safe to log and store: S3 URLs, ARNs (the COPY
 * role's, the secret's), access key ids and anything after a credentials word are
 * replaced, whitespace folded, and the whole kept short.
 */
export function safeErrorText(text) {
  let t = String(text ?? '')
    .replace(/s3:\/\/[^\s'",;)]*/gi, 's3://…')
    .replace(/arn:aws[a-z-]*:[^\s'",;)]*/gi, 'arn:…')
    .replace(/(?:AKIA|ASIA)[A-Z0-9]{16}/g, '…')
    .replace(/(aws_access_key_id|aws_secret_access_key|secret_access_key|session_token|token|password|credentials)(\s*[=:]\s*|\s+)'?[^\s';]+'?/gi, '$1=…')
    .replace(/\s+/g, ' ')
    .trim();
  if (t.length > MAX_ERROR_CHARS) t = t.slice(0, MAX_ERROR_CHARS - 1) + '…';
  return t;
}

/** The error's short name from a JSON 1.1 `__type` (`com.amazonaws…#Name` or `Name:url`). */
export function errorType(type) {
  return String(type ?? '')
    .split('#')
    .pop()
    .split(':')[0];
}

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'ActiveStatementsExceededException',
  'ActiveSessionsExceededException',
]);
// Errors of the service or of reaching the database, not of the request: worth
// the same call again.
const UNAVAILABLE = new Set([
  'InternalServerException',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'BatchExecuteStatementException',
  'DatabaseConnectionException',
  'QueryTimeoutException',
]);
// The caller's credentials or permissions: the deployment's to fix, never the
// batch's fault (so not quarantined; the message reaches the dead-letter queue
// after the retries).
const ACCESS = new Set([
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'AccessDeniedException',
  'ExpiredTokenException',
  'MissingAuthenticationTokenException',
  'IncompleteSignatureException',
]);

/**
 * What a failed Data API answer is: `{code, transient, retry}` where `retry` says
 * the same call may be sent again now (with backoff).
 */
export function classifyAnswer(status, type) {
  const t = errorType(type);
  if (THROTTLING.has(t) || status === 429) return { code: 'throttled', transient: true, retry: true };
  if (UNAVAILABLE.has(t) || status >= 500) return { code: 'unavailable', transient: true, retry: true };
  if (ACCESS.has(t) || status === 401 || status === 403) {
    return { code: 'access_denied', transient: true, retry: t === 'ExpiredTokenException' };
  }
  // ValidationException, ResourceNotFoundException, anything else of the request.
  return { code: 'invalid_request', transient: false, retry: false };
}

// ---------------------------------------------------------------------------
// Results

function decodeField(field) {
  if (!field || field.isNull) return null;
  if ('stringValue' in field) return field.stringValue;
  if ('longValue' in field) return field.longValue;
  if ('doubleValue' in field) return field.doubleValue;
  if ('booleanValue' in field) return field.booleanValue;
  if ('blobValue' in field) return Uint8Array.from(atob(field.blobValue), (c) => c.charCodeAt(0));
  return null;
}

/** `GetStatementResult`'s typed `Records` as plain objects keyed by column name. */
export function decodeRecords(columnMetadata, records) {
  const names = (columnMetadata ?? []).map((c, i) => c.name ?? c.label ?? `column${i + 1}`);
  return (records ?? []).map((fields) => Object.fromEntries(fields.map((f, i) => [names[i] ?? `column${i + 1}`, decodeField(f)])));
}

// ---------------------------------------------------------------------------
// The statements

const TRANSACTION_CONTROL = /^\s*(BEGIN|COMMIT|END|ROLLBACK|ABORT|START\s+TRANSACTION)\b/i;

function describeStatement(st, index, total) {
  const what = typeof st === 'object' && st?.kind === 'copy' ? `the COPY into ${st.table}` : `${String(sqlOf(st)).trim().split(/\s+/, 1)[0].toUpperCase()}`;
  return `statement ${index + 1} of ${total} (${what})`;
}

function sqlOf(st) {
  return typeof st === 'string' ? st : st?.sql;
}

/**
 * The SQL texts of a plan's statements, checked against the Data API's limits:
 * throws a permanent WarehouseError when they cannot go in one batch.
 */
export function batchSqls(statements, limits) {
  const sqls = statements.map((st, i) => {
    const sql = sqlOf(st);
    if (typeof sql !== 'string' || sql.trim() === '') {
      throw WarehouseError.permanent('invalid_plan', `statement ${i + 1} of ${statements.length} has no SQL`);
    }
    if (TRANSACTION_CONTROL.test(sql)) {
      throw WarehouseError.permanent(
        'invalid_plan',
        `${describeStatement(st, i, statements.length)} is transaction control; the Data API runs the batch as one transaction itself`,
      );
    }
    return sql;
  });
  if (sqls.length > limits.maxBatchStatements) {
    throw WarehouseError.permanent(
      'too_many_statements',
      `the load has ${sqls.length} statements; one Data API batch (one transaction) takes at most ${limits.maxBatchStatements}: load fewer batches at once`,
    );
  }
  const encoder = new TextEncoder();
  sqls.forEach((sql, i) => {
    const bytes = encoder.encode(sql).length;
    if (bytes > limits.maxStatementBytes) {
      throw WarehouseError.permanent(
        'statement_too_large',
        `${describeStatement(statements[i], i, sqls.length)} is ${bytes} bytes; the Data API takes at most ${limits.maxStatementBytes} per statement`,
      );
    }
  });
  return sqls;
}

async function sha256Hex(text) {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------
// The runner

/**
 * The Redshift runner (the loader's runner interface, see worker/README.md):
 * `{ dialect: 'redshift', apply(statements, opts), close() }`.
 *
 * `cfg`: `redshiftConfig(env)`'s result (or `env`: the worker's environment); `log`: takes one object per event worth a
 * log line; `fetch`: the fetch to use (tests); `limits`: the Data API's limits
 * (default: the core's `dataApiLimits()`); `random`: for the backoff jitter (tests).
 */
export function createRedshift({ cfg, env, log = () => {}, fetch: fetchImpl = globalThis.fetch, limits = null, random = Math.random } = {}) {
  // `cfg` is redshiftConfig(env)'s result; the worker's env itself (as `env`, or as
  // `cfg`) is read the same way, so a caller cannot skip the checks.
  if (!cfg || typeof cfg.endpoint !== 'string') cfg = redshiftConfig(env ?? cfg ?? {});
  const aws = new AwsClient({
    accessKeyId: cfg.accessKeyId,
    secretAccessKey: cfg.secretAccessKey,
    sessionToken: cfg.sessionToken ?? undefined,
    service: 'redshift-data',
    region: cfg.region,
    retries: 0,
  });
  const url = `${cfg.endpoint}/`;
  const stats = { calls: 0, retries: 0 };

  /** One Data API call, retried with backoff while the answer says it may be. Returns the parsed answer. */
  async function call(action, body) {
    const { attempts, baseMs, capMs } = cfg.retry;
    const json = JSON.stringify(body);
    let last = null;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        stats.retries++;
        await sleep(backoffDelay(attempt, { baseMs, capMs }, random));
      }
      stats.calls++;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), cfg.requestTimeoutMs);
      let res;
      let text;
      try {
        const signed = await aws.sign(url, {
          method: 'POST',
          headers: { 'Content-Type': CONTENT_TYPE, 'X-Amz-Target': TARGET_PREFIX + action },
          body: json,
        });
        res = await fetchImpl(signed, { signal: controller.signal });
        text = await res.text();
      } catch (e) {
        const timedOut = controller.signal.aborted;
        last = WarehouseError.transient(
          timedOut ? 'timeout' : 'connection_lost',
          timedOut
            ? `the Redshift Data API did not answer ${action} within ${cfg.requestTimeoutMs} ms`
            : `the Redshift Data API could not be reached for ${action} (${safeErrorText(e?.message ?? e)})`,
        );
        log({ msg: 'redshift call failed', action, attempt: attempt + 1, code: last.code });
        continue;
      } finally {
        clearTimeout(timer);
      }
      let answer = null;
      try {
        answer = text ? JSON.parse(text) : {};
      } catch {
        answer = null;
      }
      if (res.status === 200 && answer && typeof answer === 'object') return answer;
      const type = errorType(answer?.__type ?? res.headers.get('x-amzn-errortype'));
      // A 200 whose body is not JSON is a broken answer (a proxy, a cut connection), not a refusal.
      const { code, transient, retry } = res.status === 200 ? { code: 'unavailable', transient: true, retry: true } : classifyAnswer(res.status, type);
      const said = safeErrorText(answer?.message ?? answer?.Message ?? (answer ? '' : 'an answer that is not JSON'));
      last = new WarehouseError(code, `the Redshift Data API refused ${action}: ${type || `HTTP ${res.status}`}${said ? `: ${said}` : ''}`, {
        transient,
      });
      log({ msg: 'redshift call refused', action, attempt: attempt + 1, status: res.status, type, code });
      if (!retry) break;
    }
    throw last;
  }

  /** Polls a statement until it ends or the wait is over; returns the last description. */
  async function waitFor(id, deadline) {
    let attempt = 0;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return null;
      // Backoff with jitter, at least half the step: a load takes seconds to minutes.
      const step = Math.min(cfg.poll.capMs, cfg.poll.baseMs * 2 ** Math.min(attempt, 16));
      await sleep(Math.min(left, Math.ceil(step / 2 + random() * (step / 2))));
      attempt++;
      const d = await call('DescribeStatement', { Id: id });
      if (d.Status === 'FINISHED' || d.Status === 'FAILED' || d.Status === 'ABORTED') return d;
    }
  }

  return {
    dialect: 'redshift',
    stats,

    /**
     * Runs the statements as one transaction; returns `{ rows }`, the last
     * statement's rows as plain objects (empty when it has none). `opts.planId`
     * names the batch (`StatementName`) and seeds its `ClientToken`.
     */
    async apply(statements, opts = {}) {
      const list = Array.isArray(statements) ? statements : [statements];
      if (list.length === 0) return { rows: [] };
      const sqls = batchSqls(list, limits ?? dataApiLimits());
      const started = Date.now();
      const planId = String(opts.planId ?? (await sha256Hex(sqls.join('\n;\n'))).slice(0, 32));
      const request = {
        Sqls: sqls,
        Database: cfg.database,
        ...(cfg.workgroup ? { WorkgroupName: cfg.workgroup } : { ClusterIdentifier: cfg.clusterId }),
        ...(cfg.secretArn ? { SecretArn: cfg.secretArn } : cfg.dbUser ? { DbUser: cfg.dbUser } : {}),
        StatementName: `cafe-etl load ${planId}`.slice(0, 500),
        // Idempotency of this call: its retries (a lost answer, throttling) carry the
        // same token, so the Data API starts the batch once. A later apply of the same
        // plan (the message retried) gets a new token and runs again; the plan's own
        // ledger check (batches in loaded_batches are deleted from the plan first)
        // makes that rerun load nothing twice.
        ClientToken: `${planId.slice(0, 27)}-${crypto.randomUUID()}`,
      };
      const submitted = await call('BatchExecuteStatement', request);
      const id = submitted.Id;
      if (typeof id !== 'string' || id === '') {
        throw WarehouseError.transient('unavailable', 'the Redshift Data API answered BatchExecuteStatement without a statement id');
      }
      log({ msg: 'redshift batch submitted', statement_id: id, statements: sqls.length, plan_id: planId });
      // From here the batch runs whatever happens to our calls: a call that fails now
      // says nothing about the batches, so it is transient whatever its kind (the
      // rerun is a no-op for whatever did commit).
      const afterSubmit = (e) => {
        if (e?.transient === false) {
          log({ msg: 'redshift call failed after submit', statement_id: id, code: e.code });
          return WarehouseError.transient(e.code, `${e.message} (after the load was submitted; it will be tried again)`);
        }
        return e;
      };
      let done = await waitFor(id, started + cfg.waitMs).catch((e) => {
        throw afterSubmit(e);
      });
      if (!done) {
        // Past the wait: cancel it, so it does not commit later behind the consumer's
        // back and hold the load lock; the next attempt runs the plan again, and
        // its ledger check skips whatever did commit.
        let cancelled = false;
        try {
          const c = await call('CancelStatement', { Id: id });
          cancelled = c.Status === true;
        } catch (e) {
          log({ msg: 'redshift cancel failed', statement_id: id, code: e?.code, reason: e?.message });
        }
        // It may have ended between the last poll and the cancel.
        const d = await call('DescribeStatement', { Id: id }).catch(() => null);
        if (d && (d.Status === 'FINISHED' || d.Status === 'FAILED')) {
          done = d;
        } else {
          log({ msg: 'redshift batch timed out', statement_id: id, wait_ms: cfg.waitMs, cancelled });
          throw WarehouseError.transient(
            'timeout',
            `the Redshift load was still running after ${Math.round(cfg.waitMs / 1000)} s and ${cancelled ? 'was cancelled' : 'could not be cancelled'}; ` +
              'a rerun is safe: batches already in loaded_batches are skipped',
          );
        }
      }
      if (done.Status === 'FAILED') {
        const subs = done.SubStatements ?? [];
        const at = subs.findIndex((s) => s.Status === 'FAILED');
        const st = at >= 0 ? list[at] : null;
        const where = at >= 0 ? describeStatement(st, at, list.length) : 'the load';
        const code = st && typeof st === 'object' && st.kind === 'copy' ? 'copy_failed' : 'statement_failed';
        const reason = safeErrorText((at >= 0 ? subs[at].Error : null) ?? done.Error ?? 'no error text');
        log({ msg: 'redshift batch failed', statement_id: id, failed: at + 1, code });
        throw WarehouseError.permanent(code, `${where} failed: ${reason}; nothing of the load was committed`);
      }
      if (done.Status === 'ABORTED') {
        // Cancelled by someone else (an operator, a cluster restart): nothing was
        // committed, and nothing is wrong with the batches.
        throw WarehouseError.transient('aborted', 'the Redshift load was cancelled before it committed; it will be tried again');
      }
      const subs = done.SubStatements ?? [];
      const last = subs[subs.length - 1];
      let rows = [];
      if (last?.HasResultSet || (!subs.length && done.HasResultSet)) {
        const resultId = last?.Id ?? `${id}:${list.length}`;
        let token;
        do {
          const page = await call('GetStatementResult', token ? { Id: resultId, NextToken: token } : { Id: resultId }).catch((e) => {
            throw afterSubmit(e);
          });
          rows = rows.concat(decodeRecords(page.ColumnMetadata, page.Records));
          token = page.NextToken || null;
        } while (token);
      }
      log({ msg: 'redshift batch finished', statement_id: id, statements: sqls.length, rows: rows.length, ms: Date.now() - started });
      return { rows, statementId: id };
    },

    /** Nothing to close: the Data API keeps no connection. */
    async close() {},
  };
}
