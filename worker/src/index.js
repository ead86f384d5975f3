// The edge worker: a branch's daily till export goes in (PUT /v1/uploads/{file_name}),
// runs through the same WebAssembly core as the browser page, and comes out as the
// staging layout in an S3 bucket for Redshift COPY: five gzip CSV table files first,
// then the batch report `batches/<batch_id>.json` last, as the commit marker.
//
// The raw body (customer names, card numbers) is never written anywhere and never
// logged: only the cleaned table files the core produces leave this worker.
//
// This module only wires the entry points: `fetch` is src/routes.js, `queue` the
// loader's consumer, `scheduled` its sweep. The module map is in worker/README.md.

import { wasm } from './core.js';
import { consume } from './loader/consumer.js';
import { sweep } from './loader/sweep.js';
import { handle } from './routes.js';

export { S3, S3Error } from './s3.js';

export default {
  /** The HTTP routes (src/routes.js). */
  fetch: handle,
  /** The loader's queue consumer (src/loader/consumer.js). */
  async queue(batch, env, ctx) {
    wasm();
    await consume(batch, env, ctx);
  },
  /** The cron sweep (src/loader/sweep.js). */
  async scheduled(controller, env, ctx) {
    wasm();
    await sweep(env, { now: controller?.scheduledTime ?? Date.now() });
  },
};
