// Reading and decoding stripes: what a replacement server needs from its k sources to rebuild
// rows, shared by degraded reads (on the server's main thread, latency first) and the background
// rebuild (on a low-priority worker thread).
import { bytes, floats, type ParityCodec } from './codec.js';
import { Op, Writer, type Connection } from './protocol.js';
import { rangeError } from './validate.js';

export const READ_CODED = 0;
export const READ_STATE = 1;
export const READ_FULL = 2;
/**
 * Or'ed into a read's part: a background read (a rebuild's), which a source may serve from its
 * idle-priority thread (see gather-worker.ts); degraded reads leave it out, they are latency first.
 */
export const READ_BACKGROUND = 0x100;

/** One read of a stripe: a source block and which part of its rows (coded rows, or state). */
export interface Part {
  block: number;
  part: number;
  /** For state on a parity server: which data shard's replica. */
  which: number;
}

/** The parts of the config a stripe's reads and decode depend on. */
export interface StripeRole {
  role: 'data' | 'parity';
  index: number;
  k: number;
  r: number;
  state: 'encoded' | 'replicated';
}

/**
 * What to read from the sources: the coded rows of each, and with replicated state (which is not
 * in the code) a data rebuild's state from a parity's replica, a parity rebuild's from the data.
 */
export function stripeParts(c: StripeRole, blocks: number[]): Part[] {
  const parts: Part[] = blocks.map((block) => ({ block, part: READ_CODED, which: 0 }));
  if (c.state === 'replicated') {
    if (c.role === 'data') {
      const parity = blocks.find((b) => b >= c.k);
      if (parity === undefined) throw rangeError('rebuild sources', 'a parity server (it holds the replicated state)', 'none', true);
      parts.push({ block: parity, part: READ_STATE, which: c.index });
    } else for (const block of blocks) parts.push({ block, part: READ_STATE, which: 0 });
  }
  return parts;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads every part at one committed step (a consistent stripe): either the given slots or a
 * contiguous range. A commit landing between the reads makes them disagree: read again.
 */
export async function readStripe(
  parts: Part[], source: (part: Part, index: number) => Connection, what: { slots: Int32Array } | { start: number; count: number }, onRetry: () => void,
  background = false,
): Promise<{ step: number; data: Float32Array[] }> {
  for (let attempt = 0; ; attempt++) {
    const replies = await Promise.all(parts.map((p, i) => {
      const w = new Writer().u32(p.part | (background ? READ_BACKGROUND : 0)).u32(p.which);
      return 'slots' in what
        ? source(p, i).request(Op.read, w.array(what.slots).build())
        : source(p, i).request(Op.readRange, w.u32(what.start).u32(what.count).build());
    }));
    const steps = replies.map((r) => r.u32() - 1);
    if (steps.every((s) => s === steps[0])) return { step: steps[0], data: replies.map((r) => r.f32sView()) };
    onRetry();
    if (attempt > 1000) throw rangeError('rebuild reads', 'sources at one committed step', `steps ${steps.join(', ')}`, true);
    await sleep(attempt < 3 ? 0 : 1);
  }
}

/** This server's coded rows of a stripe (decoded, or re-encoded for a parity) and the state read. */
export function decodeStripe(c: StripeRole, codec: ParityCodec, parts: Part[], data: Float32Array[]): { coded: Float32Array; states: Float32Array[] } {
  const blocks: (Uint8Array | null)[] = new Array(c.k + c.r).fill(null);
  parts.forEach((p, i) => {
    if (p.part === READ_CODED) blocks[p.block] = bytes(data[i]);
  });
  // Decoded blocks are fresh arrays: viewed as floats, copied only when not 4-byte aligned.
  const coded = c.role === 'data' ? floats(codec.decode(blocks)[c.index]) : floats(codec.encode(blocks.slice(0, c.k) as Uint8Array[])[c.index]);
  return { coded, states: parts.flatMap((p, i) => (p.part === READ_STATE ? [data[i]] : [])) };
}
