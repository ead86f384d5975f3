// The HTTP answers every route shares: JSON bodies with the safe headers, and the
// error that carries an answer decided on the way (401, 413, ...) up to `handle`.

/** An answer decided on the way (401, 413, ...): carries the status and JSON body. */
export class HttpError extends Error {
  constructor(status, error, message, extra = {}, headers = {}) {
    super(message);
    this.status = status;
    this.error = error;
    this.extra = extra;
    this.headers = headers;
  }
}

/** On every answer: no browser takes a JSON answer (or an error) for a script or a page. */
export const SAFE_HEADERS = { 'x-content-type-options': 'nosniff' };

/** A JSON answer, never cached. */
export function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body, null, 0), {
    status,
    headers: { ...SAFE_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers },
  });
}

/** The JSON body of an HttpError: its code, its sentence and its extra fields. */
export function errorBody(e) {
  return { error: e.error, message: e.message, ...e.extra };
}
