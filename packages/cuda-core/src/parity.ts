// Parity coding over equal-length blocks: XOR (bit-exact, for bytes) and weighted float sums
// (for learned parity models and float-sum erasure codes).
import { native } from './addon.js';
import { finiteNumber, integer, rangeError, typeError } from './validate.js';

function blockList<T extends Uint8Array | Float32Array>(blocks: unknown, name: string, Ctor: new (n: number) => T, min: number): T[] {
  if (!Array.isArray(blocks)) throw typeError(name, `an array of ${Ctor.name}`, blocks);
  if (blocks.length < min) throw rangeError(name, `at least ${min} blocks`, `${blocks.length} blocks`, true);
  blocks.forEach((b, i) => {
    if (!(b instanceof Ctor)) throw typeError(`${name}[${i}]`, `a ${Ctor.name}`, b);
    if (b.length !== (blocks[0] as T).length) throw rangeError(`${name}[${i}]`, `${(blocks[0] as T).length} elements (as ${name}[0])`, b.length);
  });
  return blocks as T[];
}

function coefficients(coeffs: unknown, count: number, name: string): Float32Array | null {
  if (coeffs === undefined || coeffs === null) return null;
  const values = coeffs instanceof Float32Array ? coeffs : Array.isArray(coeffs) ? Float32Array.from(coeffs.map((c, i) => finiteNumber(c, `${name}[${i}]`))) : null;
  if (!values) throw typeError(name, 'an array of numbers or a Float32Array', coeffs);
  if (values.length !== count) throw rangeError(name, `${count} coefficients`, values.length);
  return values;
}

/** XOR of the blocks. Decoding a lost block is the same call over the parity and the survivors. */
export async function xorEncode(blocks: Uint8Array[]): Promise<Uint8Array> {
  const list = blockList(blocks, 'blocks', Uint8Array, 1);
  return native.xorEncode(true, list, new Uint8Array(list[0].length));
}
export function xorEncodeSync(blocks: Uint8Array[]): Uint8Array {
  const list = blockList(blocks, 'blocks', Uint8Array, 1);
  return native.xorEncode(false, list, new Uint8Array(list[0].length));
}

/** dst ^= src in place (delta update of a parity: pass old ^ new). */
export async function xorInto(dst: Uint8Array, src: Uint8Array): Promise<Uint8Array> {
  return native.xorInto(true, dst, src);
}
export function xorIntoSync(dst: Uint8Array, src: Uint8Array): Uint8Array {
  return native.xorInto(false, dst, src);
}

/** parity = Σ coeffs[i] · blocks[i] (all ones by default). */
export async function sumEncode(blocks: Float32Array[], coeffs?: ArrayLike<number>): Promise<Float32Array> {
  const list = blockList(blocks, 'blocks', Float32Array, 1);
  return native.sumEncode(true, list, coefficients(coeffs, list.length, 'coeffs'), new Float32Array(list[0].length));
}
export function sumEncodeSync(blocks: Float32Array[], coeffs?: ArrayLike<number>): Float32Array {
  const list = blockList(blocks, 'blocks', Float32Array, 1);
  return native.sumEncode(false, list, coefficients(coeffs, list.length, 'coeffs'), new Float32Array(list[0].length));
}

function decodeArgs(parity: unknown, available: unknown, coeffs: unknown, missingCoeff: unknown) {
  if (!(parity instanceof Float32Array)) throw typeError('parity', 'a Float32Array', parity);
  const list = blockList(available, 'available', Float32Array, 0);
  const c = coefficients(coeffs ?? new Array(list.length).fill(1), list.length, 'coeffs') as Float32Array;
  const missing = missingCoeff === undefined ? 1 : finiteNumber(missingCoeff, 'missingCoeff');
  if (missing === 0) throw rangeError('missingCoeff', 'a non-zero coefficient', missing);
  return [parity, list, c, missing, new Float32Array(parity.length)] as const;
}

/** The one missing block: (parity − Σ coeffs[i] · available[i]) / missingCoeff. */
export async function sumDecode(parity: Float32Array, available: Float32Array[], coeffs?: ArrayLike<number>, missingCoeff = 1): Promise<Float32Array> {
  return native.sumDecode(true, ...decodeArgs(parity, available, coeffs, missingCoeff));
}
export function sumDecodeSync(parity: Float32Array, available: Float32Array[], coeffs?: ArrayLike<number>, missingCoeff = 1): Float32Array {
  return native.sumDecode(false, ...decodeArgs(parity, available, coeffs, missingCoeff));
}

/**
 * Systematic Reed–Solomon code over GF(2^8): k data blocks, r ≤ 4 parity blocks, any r losses
 * recoverable, bit-exact. The first parity block is the XOR of the data blocks.
 */
export class ReedSolomonCode {
  readonly k: number;
  readonly r: number;

  constructor(k: number, r: number) {
    this.k = integer(k, 'k', 1, 254);
    this.r = integer(r, 'r', 1, 4);
    if (k + r > 255) throw rangeError('r', `at most ${255 - k} parity blocks with k = ${k} (k + r <= 255)`, r);
  }

  #parity(data: unknown): [Uint8Array[], Uint8Array[]] {
    const list = blockList(data, 'data', Uint8Array, 1);
    if (list.length !== this.k) throw rangeError('data', `${this.k} data blocks`, `${list.length} blocks`, true);
    return [list, Array.from({ length: this.r }, () => new Uint8Array(list[0].length))];
  }

  /** The r parity blocks of k equally sized data blocks. */
  async encode(data: Uint8Array[]): Promise<Uint8Array[]> {
    const [list, parity] = this.#parity(data);
    await native.rsEncode(true, this.k, this.r, list, parity);
    return parity;
  }
  encodeSync(data: Uint8Array[]): Uint8Array[] {
    const [list, parity] = this.#parity(data);
    native.rsEncode(false, this.k, this.r, list, parity);
    return parity;
  }

  #blocks(blocks: unknown): [Uint8Array[], boolean[]] {
    if (!Array.isArray(blocks)) throw typeError('blocks', 'an array of k + r Uint8Array or null', blocks);
    const n = this.k + this.r;
    if (blocks.length !== n) throw rangeError('blocks', `${n} entries (k + r, null for lost blocks)`, `${blocks.length} entries`, true);
    const first = blocks.find((b) => b instanceof Uint8Array) as Uint8Array | undefined;
    if (!first) throw rangeError('blocks', `at least ${this.k} present blocks`, 'none', true);
    const present = blocks.map((b, i) => {
      if (b === null || b === undefined) return false;
      if (!(b instanceof Uint8Array)) throw typeError(`blocks[${i}]`, 'a Uint8Array or null', b);
      return true;
    });
    const lost = present.filter((p) => !p).length;
    if (lost > this.r) throw rangeError('blocks', `at most ${this.r} lost blocks`, `${lost} lost`, true);
    return [blocks.map((b) => (b instanceof Uint8Array ? b : new Uint8Array(first.length))), present];
  }

  /** All k + r blocks, with the lost ones (null entries) rebuilt. */
  async decode(blocks: (Uint8Array | null)[]): Promise<Uint8Array[]> {
    const [full, present] = this.#blocks(blocks);
    await native.rsDecode(true, this.k, this.r, full, present);
    return full;
  }
  decodeSync(blocks: (Uint8Array | null)[]): Uint8Array[] {
    const [full, present] = this.#blocks(blocks);
    native.rsDecode(false, this.k, this.r, full, present);
    return full;
  }

  /** Delta update in place when data block `dataIndex` changes: pass delta = old ^ new. */
  async updateParity(dataIndex: number, delta: Uint8Array, parity: Uint8Array[]): Promise<void> {
    await native.rsUpdateParity(true, this.k, this.r, dataIndex, delta, parity);
  }
  updateParitySync(dataIndex: number, delta: Uint8Array, parity: Uint8Array[]): void {
    native.rsUpdateParity(false, this.k, this.r, dataIndex, delta, parity);
  }
}
