import { describe, expect, it } from 'vitest';
import { Tensor } from '@kintsugi/cuda-core';
import { createCodec } from '../src/index.js';

const bytes = (f: Float32Array) => new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/** k data blocks, their parity kept by deltas through 300 float updates, like optimizer steps. */
function evolve(mode: 'xor' | 'rs' | 'sum', k: number, r: number) {
  const codec = createCodec(mode, k, r);
  const data = Array.from({ length: k }, (_, i) => Tensor.random([64, 8], i + 1).data);
  const parity = codec.encode(data.map(bytes));
  for (let step = 0; step < 300; step++) {
    const j = step % k, row = (step * 37) % 64, view = data[j].subarray(row * 8, row * 8 + 8);
    const before = bytes(view).slice();
    for (let d = 0; d < 8; d++) view[d] -= 0.013 * Math.sin(step * 0.7 + d);
    const delta = codec.delta(before, bytes(view));
    parity.forEach((p, i) => codec.apply(i, j, delta, p.subarray(row * 32, row * 32 + 32)));
  }
  return { codec, data, parity };
}

describe('parity codecs', () => {
  it('xor rebuilds any one lost data or parity block bit-exactly after many updates', () => {
    const { codec, data, parity } = evolve('xor', 4, 1);
    for (let lost = 0; lost <= 4; lost++) {
      const blocks = [...data.map(bytes), parity[0]].map((b, i) => (i === lost ? null : b));
      const rebuilt = codec.decode(blocks)[lost];
      expect(same(rebuilt, lost < 4 ? bytes(data[lost]) : parity[0])).toBe(true);
    }
  });

  it('rs with r = 2 rebuilds every pair of lost blocks bit-exactly', () => {
    const { codec, data, parity } = evolve('rs', 4, 2);
    const all = [...data.map(bytes), ...parity];
    for (let a = 0; a < 6; a++) for (let b = a + 1; b < 6; b++) {
      const out = codec.decode(all.map((x, i) => (i === a || i === b ? null : x)));
      expect(same(out[a], all[a]) && same(out[b], all[b])).toBe(true);
    }
    expect(() => codec.decode(all.map((x, i) => (i < 3 ? null : x)))).toThrow(/at most 2 lost blocks/);
  });

  it('float sum parity drifts from the data after updates (why xor/rs are used)', () => {
    const { codec, data, parity } = evolve('sum', 4, 1);
    const rebuilt = new Float32Array(codec.decode([null, ...data.slice(1).map(bytes), parity[0]])[0].slice().buffer);
    let maxErr = 0;
    for (let i = 0; i < rebuilt.length; i++) maxErr = Math.max(maxErr, Math.abs(rebuilt[i] - data[0][i]));
    expect(maxErr).toBeLessThan(1e-4); // close …
    expect(same(bytes(rebuilt), bytes(data[0]))).toBe(false); // … but not the same bits
  });

  it('rejects bad parameters with the offending values', () => {
    expect(() => createCodec('xor', 4, 2)).toThrow(/Expected 1 for mode 'xor'.* but received 2/);
    expect(() => createCodec('lrc' as never, 4)).toThrow(/Expected one of 'xor' \| 'rs' \| 'sum' for mode but received "lrc"/);
    expect(() => createCodec('rs', 0, 2)).toThrow(/for k/);
  });
});
