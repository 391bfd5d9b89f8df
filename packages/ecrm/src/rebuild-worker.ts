// The background rebuild of a replacement server, on a worker thread: it reads slots from the k
// sources (its own connections) — every slot in contiguous ranges, or for a data block whose touched
// set is known only the slots updated since the initialisation, the most updated first — decodes
// them and hands them to the server's main thread, which installs them. The thread runs at idle
// priority, taking CPU that training leaves idle rather than time from training's processes.
//
// A spare starts this thread while it stands by, before any failure: starting one (an isolate and
// these modules) costs tens of ms of CPU, which would otherwise land in the step that found the
// failure. The spare then rehearses a takeover on scratch servers with it (a rehearsal job, at
// normal priority), so the real job runs compiled code, and the thread waits for that job.
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
   * For a data block: the updates seen per slot since the deterministic initialisation (0: none,
   * saturating at 255). Only touched slots are read and decoded, the most updated first; the
   * others hold their initial rows, which the server computes itself. Null: every slot is read.
   */
  touched: Uint8Array | null;
  /**
   * A rehearsal on scratch servers before any failure: the thread keeps its priority, and also sorts
   * a touched set as large as the real block's (tableSlots), so that the real sort runs compiled.
   */
  rehearsal?: { tableSlots: number };
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
    // Reads of rangeSlots slots each: contiguous ranges, or the touched slots, the most updated
    // first. Those are the rows training asks for next (embedding accesses are skewed), so a
    // first small read of them ends most degraded reads soon. All of it at idle priority, the
    // first read too: with the reference Criteo Kaggle MLPs (the trainer's GEMMs on both cores),
    // a first read at normal priority slowed the step after the failure's from ~10 to ~22 ms of
    // compute; at idle priority the recovery time went from 61 and 72 ms to 49 and 51 ms
    // (medians of 10 and 6 interleaved pairs of failures at step 370; longest pause 30 and 32
    // against 29 ms; fully rebuilt after 240 instead of 180 ms).
    if (job.rehearsal) touchedReads(new Uint8Array(job.rehearsal.tableSlots).fill(1, 0, job.rehearsal.tableSlots >> 4), job.rangeSlots);
    else runInBackground();
    const reads = job.touched ? touchedReads(job.touched, job.rangeSlots) : rangeReads(job.slots, job.rangeSlots);
    for (const [n, read] of reads.entries()) {
      const slots = 'slots' in read ? read.slots : null;
      const start = 'slots' in read ? 0 : read.start, count = 'slots' in read ? read.slots.length : read.count;
      let retries = 0;
      const { step, data } = await readStripe(parts, (_, i) => conns[i], read, () => retries++, n >= FOREGROUND_READS);
      const decoded = decodeStripe(job.role, codec, parts, data);
      // Handed over by transfer: each array must own its whole buffer (a view into a received
      // frame is copied out first; transferring would take the frame's buffer with it).
      const own = (f: Float32Array) => (f.byteOffset === 0 && f.byteLength === f.buffer.byteLength ? f : f.slice());
      const coded = own(decoded.coded), states = decoded.states.map(own);
      const msg: RebuildMessage = { kind: 'range', start, count, slots, step, coded, states, retries };
      parentPort!.postMessage(msg, [coded.buffer, ...states.map((s) => s.buffer), ...(slots ? [slots.buffer] : [])] as ArrayBuffer[]);
      if (job.pauseMs > 0) await new Promise((r) => setTimeout(r, job.pauseMs));
    }
    parentPort!.postMessage({ kind: 'done' } satisfies RebuildMessage);
  } finally {
    for (const c of conns) c.close();
  }
}

function rangeReads(slots: number, rangeSlots: number): { start: number; count: number }[] {
  return Array.from({ length: Math.ceil(slots / rangeSlots) }, (_, i) => ({ start: i * rangeSlots, count: Math.min(slots, (i + 1) * rangeSlots) - i * rangeSlots }));
}

/**
 * Reads its sources serve on their main threads: the first ones, of the hottest rows, which
 * training asks for next. The rest they serve from their background threads (READ_BACKGROUND), on
 * CPU training leaves idle. Over 28 interleaved pairs of failures at step 370 the recovery time's
 * median went from 42 to 35 ms (and over 16 pairs with every read in the background, from 41 to
 * 38 ms); the rebuild takes longer, ~300 instead of ~200 ms to full recovery.
 */
const FOREGROUND_READS = 2;

/** First read of the hottest touched slots: small, so it lands within a step of the failure. */
const HOTTEST_FIRST = 4096;

/**
 * The touched slots (touched[s] = updates seen, saturating at 255), the most updated first (a
 * counting sort), in reads of at most rangeSlots: the first at most HOTTEST_FIRST.
 */
function touchedReads(touched: Uint8Array, rangeSlots: number): { slots: Int32Array }[] {
  // Indexed loops: a typed array's iterator made the first sort of 650k slots take ~15 ms.
  const count = new Int32Array(256), slots = touched.length;
  for (let s = 0; s < slots; s++) count[touched[s]]++;
  const at = new Int32Array(256);
  let n = 0;
  for (let c = 255; c >= 1; c--) {
    at[c] = n;
    n += count[c];
  }
  const order = new Int32Array(n);
  for (let s = 0; s < slots; s++) {
    const c = touched[s];
    if (c !== 0) order[at[c]++] = s;
  }
  const reads: { slots: Int32Array }[] = [];
  for (let i = 0; i < n;) {
    const size = Math.min(rangeSlots, reads.length === 0 ? HOTTEST_FIRST : rangeSlots);
    reads.push({ slots: order.slice(i, i + size) });
    i += size;
  }
  return reads;
}

// Jobs run one after another (rehearsals, then the real one); errors reach the main thread as the
// worker's 'error' event, and end the thread.
let jobs = Promise.resolve();
parentPort!.on('message', (job: RebuildJob) => {
  jobs = jobs.then(() => run(job));
});
