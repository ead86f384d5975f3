// A test-only worker (never deployed: wrangler.toml's `main` is src/index.js) that
// runs the PostgreSQL runner on workerd, as the queue consumer does, so that the
// tests drive it over HTTP: POST / with {statements, connectionString?, stallMs?} runs one load on one
// connection and answers {rows, copied}, or {error: {name, code, transient,
// message}} with status 500.
import { createPostgres, postgresConnectionString } from '../src/loader/postgres.js';
import { S3 } from '../src/s3.js';

export default {
  async fetch(request, env) {
    // `connectionString` overrides the binding (the tests of a refused connection
    // and of a wrong password).
    const { statements, connectionString, stallMs } = await request.json();
    // As the worker reads S3_PREFIX (src/lib.js parseConfig): the root, then a slash.
    const root = String(env.S3_PREFIX ?? '').replace(/^\/+|\/+$/g, '');
    const prefix = root === '' ? '' : `${root}/`;
    const s3 = new S3(
      {
        endpoint: env.S3_ENDPOINT,
        bucket: env.S3_BUCKET,
        region: 'us-east-1',
        accessKeyId: env.S3_ACCESS_KEY_ID,
        secretAccessKey: env.S3_SECRET_ACCESS_KEY,
      },
      { attempts: 3, baseMs: 50, capMs: 500, totalMs: 5_000, timeoutMs: 5_000 },
    );
    const lines = [];
    const runner = createPostgres({
      connectionString: connectionString ?? postgresConnectionString(env),
      s3,
      prefix,
      log: (o) => lines.push(o),
      ...(stallMs ? { stallMs } : {}),
    });
    try {
      const { rows, copied } = await runner.apply(statements);
      return Response.json({ rows, copied, log: lines });
    } catch (e) {
      const error = { name: e.name, code: e.code, transient: e.transient, message: e.message };
      return Response.json({ error, log: lines }, { status: 500 });
    } finally {
      await runner.close();
    }
  },
};
