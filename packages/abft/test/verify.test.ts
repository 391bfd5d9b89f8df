import { describe, expect, it } from 'vitest';
import { gemm, Tensor } from '@kintsugi/cuda-core';

import { flipBit, verifyGemm } from '../src/index.js';

describe('global checksum verification of GEMM', () => {
  it('clean results pass on random and edge shapes (no false positives)', async () => {
    for (const [m, n, k] of [[1, 1, 1], [7, 5, 3], [64, 48, 200], [3, 100, 1000]]) {
      for (let seed = 1; seed <= 3; seed++) {
        const a = Tensor.random([m, k], seed * 10 + m), b = Tensor.random([k, n], seed * 20 + n, -100, 100);
        const c = await gemm(a, b);
        const v = await verifyGemm(a, b, c);
        expect(v.ok, `${m}x${n}x${k}`).toBe(true);
        expect(v.worstRatio).toBeLessThan(1);
      }
    }
  });

  it('a flipped exponent or mantissa bit is detected and located', async () => {
    const a = Tensor.random([32, 64], 5), b = Tensor.random([64, 16], 6);
    for (const bit of [30, 27, 23, 20]) {
      const c = await gemm(a, b);
      flipBit(c, [9, 4], bit);
      const v = await verifyGemm(a, b, c);
      expect(v.ok).toBe(false);
      expect(v.badRows).toEqual([9]);
      expect(v.badCols).toEqual([4]);
    }
  });

  it('NaN in the output is always detected', async () => {
    const a = Tensor.random([4, 4], 7), b = Tensor.random([4, 4], 8);
    const c = await gemm(a, b);
    c.set(NaN, 1, 2);
    const v = await verifyGemm(a, b, c);
    expect(v.ok).toBe(false);
    expect(v.badRows).toContain(1);
  });
});
