// Parity codes over embedding rows. A data row is its bytes (weights, and optimizer state when the
// state is encoded); parity row p of a stripe is a function of the k data rows at the same slot.
// Every code is linear, so a change of one data row reaches the parity as a delta: the owner sends
// delta(before, after) and the parity server applies it — difference propagation.
import { ReedSolomonCode, sumDecodeSync, sumEncodeSync, xorEncode, xorEncodeSync, xorInto, xorIntoSync } from '@kintsugi/cuda-core';
import { integer, oneOf, rangeError } from './validate.js';

export type CodeMode = 'xor' | 'rs' | 'sum';
export const codeModes: readonly CodeMode[] = ['xor', 'rs', 'sum'];

export interface ParityCodec {
  readonly mode: CodeMode;
  readonly k: number;
  readonly r: number;
  /** Whether decoding reproduces the lost bytes exactly after any number of updates. */
  readonly exact: boolean;
  /** What the owner of a data row sends when the row changes from `before` to `after`. */
  delta(before: Uint8Array, after: Uint8Array): Uint8Array;
  /** Folds a delta of data block `dataIndex` into parity block `parityIndex` in place. */
  apply(parityIndex: number, dataIndex: number, delta: Uint8Array, parity: Uint8Array): void;
  /** The r parity blocks of k data blocks. */
  encode(data: Uint8Array[]): Uint8Array[];
  /** All k + r blocks with the null (lost) ones rebuilt; at most r may be null. */
  decode(blocks: (Uint8Array | null)[]): Uint8Array[];
}

/** A float32 view of bytes; copies only when the bytes are not 4-byte aligned. */
export function floats(b: Uint8Array): Float32Array {
  if (b.byteOffset % 4 === 0) return new Float32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
  return new Float32Array(b.slice().buffer);
}
/** The bytes of floats (a view). */
export const bytes = (f: Float32Array) => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
/** The same memory as 32-bit words: copies through these keep every bit (float copies may not). */
export const bits = (f: Float32Array) => new Int32Array(f.buffer, f.byteOffset, f.length);
export const f32words = (w: Int32Array) => new Float32Array(w.buffer, w.byteOffset, w.length);

function checkLost(blocks: (Uint8Array | null)[], n: number, r: number): number[] {
  if (!Array.isArray(blocks) || blocks.length !== n) throw rangeError('blocks', `${n} entries (k + r, null for lost ones)`, Array.isArray(blocks) ? `${blocks.length} entries` : blocks, Array.isArray(blocks));
  const lost = blocks.flatMap((b, i) => (b ? [] : [i]));
  if (lost.length > r) throw rangeError('blocks', `at most ${r} lost blocks`, `${lost.length} lost`, true);
  return lost;
}

class XorCodec implements ParityCodec {
  readonly mode = 'xor';
  readonly r = 1;
  readonly exact = true;
  constructor(readonly k: number) {}
  delta(before: Uint8Array, after: Uint8Array): Uint8Array {
    return xorEncodeSync([before, after]);
  }
  apply(_p: number, _j: number, delta: Uint8Array, parity: Uint8Array): void {
    xorIntoSync(parity, delta);
  }
  encode(data: Uint8Array[]): Uint8Array[] {
    return [xorEncodeSync(data)];
  }
  decode(blocks: (Uint8Array | null)[]): Uint8Array[] {
    const lost = checkLost(blocks, this.k + 1, 1);
    const out = blocks.slice() as Uint8Array[];
    // Every block is the XOR of all the others, data and parity alike.
    for (const i of lost) out[i] = xorEncodeSync(blocks.filter((b): b is Uint8Array => b !== null));
    return out;
  }
}

class ReedSolomonCodec implements ParityCodec {
  readonly mode = 'rs';
  readonly exact = true;
  readonly #code: ReedSolomonCode;
  constructor(readonly k: number, readonly r: number) {
    this.#code = new ReedSolomonCode(k, r);
  }
  delta(before: Uint8Array, after: Uint8Array): Uint8Array {
    return xorEncodeSync([before, after]);
  }
  apply(parityIndex: number, dataIndex: number, delta: Uint8Array, parity: Uint8Array): void {
    // The kernel updates all r parities at once; a parity server holds one, so the others are
    // scratch (r ≤ 4 small rows: cheaper than a second GF(2^8) implementation here).
    const all = Array.from({ length: this.r }, (_, p) => (p === parityIndex ? parity : new Uint8Array(delta.length)));
    this.#code.updateParitySync(dataIndex, delta, all);
  }
  encode(data: Uint8Array[]): Uint8Array[] {
    return this.#code.encodeSync(data);
  }
  decode(blocks: (Uint8Array | null)[]): Uint8Array[] {
    checkLost(blocks, this.k + this.r, this.r);
    return this.#code.decodeSync(blocks);
  }
}

/** The paper's float-sum parity: cheap, but rounding makes decoded rows drift from the lost ones. */
class SumCodec implements ParityCodec {
  readonly mode = 'sum';
  readonly r = 1;
  readonly exact = false;
  constructor(readonly k: number) {}
  delta(before: Uint8Array, after: Uint8Array): Uint8Array {
    const b = floats(before), a = floats(after);
    const d = new Float32Array(a.length);
    for (let i = 0; i < d.length; i++) d[i] = a[i] - b[i];
    return bytes(d);
  }
  apply(_p: number, _j: number, delta: Uint8Array, parity: Uint8Array): void {
    const d = floats(delta), p = floats(parity);
    for (let i = 0; i < d.length; i++) p[i] += d[i];
    if (p.buffer !== parity.buffer) parity.set(bytes(p));
  }
  encode(data: Uint8Array[]): Uint8Array[] {
    return [bytes(sumEncodeSync(data.map(floats)))];
  }
  decode(blocks: (Uint8Array | null)[]): Uint8Array[] {
    const lost = checkLost(blocks, this.k + 1, 1);
    const out = blocks.slice() as Uint8Array[];
    if (lost.length === 0) return out;
    const i = lost[0];
    const data = blocks.slice(0, this.k);
    out[i] = i === this.k
      ? this.encode(data as Uint8Array[])[0]
      : bytes(sumDecodeSync(floats(blocks[this.k]!), data.filter((b): b is Uint8Array => b !== null).map(floats)));
    return out;
  }
}

export function createCodec(mode: CodeMode, k: number, r = 1): ParityCodec {
  oneOf(mode, 'mode', codeModes);
  integer(k, 'k', 1, 254);
  integer(r, 'r', 1, 4);
  if (mode !== 'rs' && r !== 1) throw rangeError('r', `1 for mode '${mode}' (use 'rs' for more parities)`, r);
  if (mode === 'xor') return new XorCodec(k);
  if (mode === 'sum') return new SumCodec(k);
  return new ReedSolomonCodec(k, r);
}

/**
 * Bit-exact XOR parity over k equally sized shards held in one process: the parity follows every
 * update (parity ^= old ^ new) and rebuilds any one lost shard. The distributed servers use the
 * same code row by row through ParityCodec.
 */
export class XorParityGroup {
  readonly k: number;
  readonly bytes: number;
  #parity: Uint8Array;

  private constructor(k: number, parity: Uint8Array) {
    this.k = k;
    this.bytes = parity.length;
    this.#parity = parity;
  }

  /** The group's parity from its k shards (as raw bytes, e.g. a Float32Array's buffer). */
  static async create(shards: Uint8Array[]): Promise<XorParityGroup> {
    if (!Array.isArray(shards) || shards.length < 1) throw rangeError('shards', 'at least 1 shard', Array.isArray(shards) ? shards.length : typeof shards, true);
    return new XorParityGroup(shards.length, await xorEncode(shards));
  }

  get parity(): Uint8Array {
    return this.#parity;
  }

  /** Applies an update of `before` → `after` at byte `offset` of one shard to the parity. */
  async update(offset: number, before: Uint8Array, after: Uint8Array): Promise<void> {
    if (before.length !== after.length) throw rangeError('after', `${before.length} bytes`, after.length, true);
    if (!Number.isInteger(offset) || offset < 0 || offset + before.length > this.bytes) {
      throw rangeError('offset', `an offset in [0, ${this.bytes - before.length}]`, offset);
    }
    const delta = await xorEncode([before, after]);
    await xorInto(this.#parity.subarray(offset, offset + delta.length), delta);
  }

  /** The lost shard, from the parity and the k − 1 survivors. */
  async recover(survivors: Uint8Array[]): Promise<Uint8Array> {
    if (survivors.length !== this.k - 1) throw rangeError('survivors', `${this.k - 1} surviving shards`, survivors.length, true);
    return xorEncode([this.#parity, ...survivors]);
  }
}
