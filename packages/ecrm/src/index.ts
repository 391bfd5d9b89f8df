// Bit-exact XOR parity over k equally sized shards of an embedding table: the parity follows
// every update through delta propagation (parity ^= old ^ new) and rebuilds any one lost shard.
import { xorEncode, xorInto } from '@kintsugi/cuda-core';

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
    if (!Array.isArray(shards) || shards.length < 1) throw new RangeError(`Expected at least 1 shard for shards but received ${Array.isArray(shards) ? shards.length : typeof shards}`);
    return new XorParityGroup(shards.length, await xorEncode(shards));
  }

  get parity(): Uint8Array {
    return this.#parity;
  }

  /** Applies an update of `before` → `after` at byte `offset` of one shard to the parity. */
  async update(offset: number, before: Uint8Array, after: Uint8Array): Promise<void> {
    if (before.length !== after.length) throw new RangeError(`Expected ${before.length} bytes for after but received ${after.length}`);
    if (!Number.isInteger(offset) || offset < 0 || offset + before.length > this.bytes) {
      throw new RangeError(`Expected an offset in [0, ${this.bytes - before.length}] for offset but received ${offset}`);
    }
    const delta = await xorEncode([before, after]);
    await xorInto(this.#parity.subarray(offset, offset + delta.length), delta);
  }

  /** The lost shard, from the parity and the k − 1 survivors. */
  async recover(survivors: Uint8Array[]): Promise<Uint8Array> {
    if (survivors.length !== this.k - 1) throw new RangeError(`Expected ${this.k - 1} surviving shards for survivors but received ${survivors.length}`);
    return xorEncode([this.#parity, ...survivors]);
  }
}
