import { describe, expect, it } from 'vitest';
import { gemm, Tensor } from '@kintsugi/cuda-core';

import { SummationCode } from '../src/index.js';

describe('summation encoder and subtraction decoder', () => {
  it('reconstructs a linear model exactly up to rounding for any missing query', async () => {
    // For a linear model F(X) = X·W the parity model is F itself, so decoding is exact.
    const W = Tensor.random([20, 10], 1);
    const model = async (x: Float32Array) => (await gemm(Tensor.from(x, [1, 20]), W)).data;
    for (const k of [2, 3, 4]) {
      const code = new SummationCode(k, k === 3 ? [1, 2, 3] : undefined);
      const queries = Array.from({ length: k }, (_, i) => Tensor.random([20], 10 + i).data);
      const outputs = await Promise.all(queries.map(model));
      const parityOut = await model(await code.encode(queries));
      for (let missing = 0; missing < k; missing++) {
        const got = await code.decode(parityOut, outputs.map((o, i) => (i === missing ? null : o)), missing);
        for (let j = 0; j < 10; j++) expect(got[j]).toBeCloseTo(outputs[missing][j], 4);
      }
    }
  });

  it('rejects bad arguments with clear errors', async () => {
    expect(() => new SummationCode(0)).toThrow(RangeError);
    expect(() => new SummationCode(2, [1, 0])).toThrow(/non-zero/);
    const code = new SummationCode(2);
    await expect(code.encode([new Float32Array(2)])).rejects.toThrow(/2 queries/);
    await expect(code.decode(new Float32Array(2), [null, null], 0)).rejects.toThrow(/outputs\[1\]/);
    await expect(code.decode(new Float32Array(2), [new Float32Array(2), null], 2)).rejects.toThrow(/missing/);
  });
});
