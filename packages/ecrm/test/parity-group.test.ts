import { describe, expect, it } from 'vitest';
import { Tensor } from '@kintsugi/cuda-core';

import { XorParityGroup } from '../src/index.js';

const bytesOf = (f: Float32Array) => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);

describe('XOR parity over embedding shards', () => {
  it('recovers any lost shard bit-exactly after many float updates', async () => {
    const shards = [0, 1, 2, 3].map((i) => Tensor.random([256, 16], i + 1).data);
    const group = await XorParityGroup.create(shards.map(bytesOf));
    // 200 row updates (like optimizer steps) propagated as deltas.
    for (let step = 0; step < 200; step++) {
      const s = step % 4, row = (step * 37) % 256;
      const rowBytes = bytesOf(shards[s].subarray(row * 16, row * 16 + 16));
      const before = rowBytes.slice();
      for (let d = 0; d < 16; d++) shards[s][row * 16 + d] -= 0.01 * Math.sin(step + d);
      await group.update(row * 16 * 4, before, rowBytes);
    }
    for (let lost = 0; lost < 4; lost++) {
      const rebuilt = await group.recover(shards.filter((_, i) => i !== lost).map(bytesOf));
      expect(Buffer.from(rebuilt).equals(Buffer.from(bytesOf(shards[lost])))).toBe(true);
    }
  });

  it('rejects bad updates and survivor counts', async () => {
    const group = await XorParityGroup.create([new Uint8Array(8), new Uint8Array(8)]);
    await expect(group.update(6, new Uint8Array(4), new Uint8Array(4))).rejects.toThrow(/offset/);
    await expect(group.update(0, new Uint8Array(4), new Uint8Array(3))).rejects.toThrow(RangeError);
    await expect(group.recover([])).rejects.toThrow(/1 surviving shards/);
  });
});
