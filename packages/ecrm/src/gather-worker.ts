// A source server's background reads, on a worker thread at idle priority: the gathers a
// replacement's background rebuild asks of this server run on CPU that training leaves idle
// instead of on the main thread beside training's requests. The rows are read from the shared
// store while the main thread goes on; it keeps a read only if nothing was written meanwhile (see
// ShardServer's #epoch), and reads again itself otherwise.
import { parentPort } from 'node:worker_threads';
import { gatherRowsSync } from '@kintsugi/cuda-core';
import { bits, f32words } from './codec.js';
import { runInBackground } from './priority.js';

/** Rows of `width` floats from a store shared with the main thread: listed slots or a range. */
export interface GatherJob {
  id: number;
  store: Float32Array;
  width: number;
  slots: Int32Array | null;
  start: number;
  count: number;
}

/** The rows, or null if the thread could not gather them (the main thread reads them then). */
export interface GatherResult {
  id: number;
  rows: Float32Array | null;
}

runInBackground();
parentPort!.on('message', (job: GatherJob) => {
  try {
    const rows = job.slots
      ? f32words(gatherRowsSync(bits(job.store), job.width, job.slots))
      : job.store.slice(job.start * job.width, (job.start + job.count) * job.width);
    parentPort!.postMessage({ id: job.id, rows } satisfies GatherResult, [rows.buffer as ArrayBuffer]);
  } catch {
    parentPort!.postMessage({ id: job.id, rows: null } satisfies GatherResult);
  }
});
