// The producer side of the loader's queue: after a batch's marker is written, the
// upload sends `{batch_id, store, committed_at}` to LOAD_QUEUE (the contract of issue
// 9). The upload is committed by then, so a failed send never fails it: the cron
// sweep (sweep.js) finds a committed batch that no message announced.

/**
 * Sends the load message for a committed batch, when the worker has a LOAD_QUEUE
 * binding. Never throws: the outcome goes in the upload's log line as `queued`
 * (`sent`, `failed`, or `no_queue`), with the error's text when it failed.
 */
export async function announce(queue, message, log = {}) {
  if (!queue || typeof queue.send !== 'function') {
    log.queued = 'no_queue';
    return false;
  }
  try {
    await queue.send(message, { contentType: 'json' });
    log.queued = 'sent';
    return true;
  } catch (e) {
    log.queued = 'failed';
    // The message holds ids only; the queue's error text names no person.
    console.error(JSON.stringify({ event: 'enqueue', outcome: 'failed', batch_id: message.batch_id, error: String(e?.message ?? e).slice(0, 300) }));
    return false;
  }
}

/** The commit time of a staged batch: its marker's Last-Modified, or now. */
export function committedAt(headers) {
  const t = Date.parse(headers?.get?.('last-modified') ?? '');
  return new Date(Number.isFinite(t) ? t : Date.now()).toISOString();
}
