// The commit marker (`batches/<batch_id>.json`, the batch report) read back: its
// report and the store it belongs to. An upload reads it to answer a duplicate, the
// batch routes to list and show batches.

import { reportStores } from './lib.js';
import { S3Error } from './s3.js';

/** Whether the marker's batch belongs to `store` (object metadata first, then its rows). */
export function markerStore(obj, report) {
  return obj.headers.get('x-amz-meta-store') || reportStores(report).join(',');
}

export function parseReport(obj) {
  try {
    return JSON.parse(new TextDecoder().decode(obj.body));
  } catch {
    throw new S3Error(`${obj.key} is not JSON`, { key: obj.key, op: 'reading', reason: 'it is not JSON' });
  }
}

