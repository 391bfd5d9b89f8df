// The background rebuild of a replacement server, on a worker thread at idle CPU priority:
// it reads contiguous ranges of slots from the k sources (its own connections), decodes them and
// hands each range to the server's main thread, which installs it with one copy. Reading and
// decoding a 44 MB shard moves ~180 MB through sockets; at idle priority that work takes CPU that
// training leaves idle rather than time from training's own processes.
//
// A spare starts this thread while it stands by, before any failure: starting one (an isolate and
// these modules) costs tens of ms of CPU, which would otherwise land in the step that found the
// failure. The thread then waits for its job as a message.
import { parentPort } from 'node:worker_threads';

import { createCodec, type CodeMode } from './codec.js';
import { runInBackground } from './priority.js';
import { Connection, describeAddress, type Address } from './protocol.js';
import { decodeStripe, readStripe, stripeParts, type StripeRole } from './stripe.js';

export interface RebuildJob {
  role: StripeRole;
  mode: CodeMode;
  sources: (Address & { block: number })[];
  slots: number;
  rangeSlots: number;
  pauseMs: number;
  timeoutMs: number;
  /**
   * For a data block: its slots that may have been updated (1) since the deterministic
   * initialisation. Only these are read and decoded; the others hold their initial rows, which
   * the server computes itself. Null: every slot is read.
   */
  touched: Uint8Array | null;
}

/**
 * Decoded rows for the main thread (their buffers are transferred, not copied): a whole range of
 * slots from `start`, or the listed `slots` of it.
 */
export type RebuildMessage =
  | { kind: 'range'; start: number; count: number; slots: Int32Array | null; step: number; coded: Float32Array; states: Float32Array[]; retries: number }
  | { kind: 'done' };

async function run(job: RebuildJob): Promise<void> {
  const codec = createCodec(job.mode, job.role.k, job.role.r);
  const conns: Connection[] = [];
  try {
    // A connection per part read (a parity holding replicated state serves two), each with one
    // range in flight that is decoded (or copied out) before the next is asked for: its replies
    // can share one buffer.
    const parts = stripeParts(job.role, job.sources.map((s) => s.block));
    for (const p of parts) {
      const s = job.sources.find((src) => src.block === p.block)!;
      conns.push(await Connection.connect(s, `rebuild source ${s.block} (${describeAddress(s)})`, job.timeoutMs, true));
    }
    // Reads of rangeSlots slots each: contiguous ranges, or with a touched set, its next slots.
    for (let start = 0; start < job.slots;) {
      const slots = job.touched ? nextTouched(job.touched, start, job.rangeSlots) : null;
      if (slots?.length === 0) break;
      const count = slots ? slots[slots.length - 1] + 1 - start : Math.min(job.slots, start + job.rangeSlots) - start;
      let retries = 0;
      const { step, data } = await readStripe(parts, (_, i) => conns[i], slots ? { slots } : { start, count }, () => retries++);
      const decoded = decodeStripe(job.role, codec, parts, data);
      // Handed over by transfer: each array must own its whole buffer (a view into a received
      // frame is copied out first; transferring would take the frame's buffer with it).
      const own = (f: Float32Array) => (f.byteOffset === 0 && f.byteLength === f.buffer.byteLength ? f : f.slice());
      const coded = own(decoded.coded), states = decoded.states.map(own);
      const msg: RebuildMessage = { kind: 'range', start, count, slots, step, coded, states, retries };
      parentPort!.postMessage(msg, [coded.buffer, ...states.map((s) => s.buffer), ...(slots ? [slots.buffer] : [])] as ArrayBuffer[]);
      start += count;
      if (job.pauseMs > 0) await new Promise((r) => setTimeout(r, job.pauseMs));
    }
    parentPort!.postMessage({ kind: 'done' } satisfies RebuildMessage);
  } finally {
    for (const c of conns) c.close();
  }
}

/** Up to `most` touched slots from `start` on, in order. */
function nextTouched(touched: Uint8Array, start: number, most: number): Int32Array {
  const out = new Int32Array(most);
  let n = 0;
  for (let s = start; s < touched.length && n < most; s++) if (touched[s]) out[n++] = s;
  return out.slice(0, n);
}

runInBackground();
// One job per thread; errors reach the main thread as the worker's 'error' event.
parentPort!.once('message', (job: RebuildJob) => void run(job));
