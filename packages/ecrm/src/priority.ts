// Background work (a rebuild's reads and decodes) runs on a worker thread at idle CPU priority, so
// it takes CPU that training leaves idle rather than time from training.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { setThreadBackground } from '@kintsugi/cuda-core';

/** Lowers the calling thread alone (Linux: a thread id is a valid target of setpriority). */
function lowerThreadPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid)) setPriority(tid, 19);
  } catch {
    // Elsewhere the thread keeps normal priority: slower training beside it, same result.
  }
}

/**
 * Makes the calling worker thread a background one: idle scheduling (a training thread waking up
 * preempts it at once) and native kernels run on it alone, not on the pool's normal-priority
 * threads (see setThreadBackground). Where the OS refuses idle scheduling, the lowest nice value.
 */
export function runInBackground(): void {
  if (!setThreadBackground()) lowerThreadPriority();
}
