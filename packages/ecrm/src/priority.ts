// Background work (a rebuild's reads, decodes and the sources' range copies) runs on threads at the
// lowest CPU priority, so it takes CPU that training leaves idle rather than time from training.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/** Lowers the calling thread alone (Linux: a thread id is a valid target of setpriority). */
export function lowerThreadPriority(): void {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid)) setPriority(tid, 19);
  } catch {
    // Elsewhere the thread keeps normal priority: slower training beside it, same result.
  }
}
