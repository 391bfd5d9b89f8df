import { describe, expect, it } from 'vitest';
import { gemm, Tensor } from '@kintsugi/cuda-core';

import { ParityCode, concatEncode, concatQueryShape, defaultCoefficients } from '../../src/parm/index.js';

// For a linear model F(X) = X·W the ideal parity model is F itself (F(Σ c_i X_i) = Σ c_i F(X_i)),
// so every decode must be exact up to float rounding.
const W = Tensor.random([20, 10], 3);
const linear = async (x: Float32Array) => (await gemm(Tensor.from(x, [x.length / 20, 20]), W)).contiguousData() as Float32Array;

describe('ParityCode (summation encoder, subtraction decoder)', () => {
  it('decodes any single loss exactly on a linear model, k = 2…4 and 8, batched', async () => {
    for (const k of [2, 3, 4, 8]) {
      const code = new ParityCode({ k });
      const queries = Array.from({ length: k }, (_, i) => Tensor.random([5 * 20], 100 + i).data); // 5 rows each
      const outputs = await Promise.all(queries.map(linear));
      const parity = await linear(await code.encode(queries));
      const target = code.encodeOutputs(outputs); // what a parity model is trained to output
      for (let j = 0; j < parity.length; j++) expect(parity[j]).toBeCloseTo(target[j], 3);
      for (let m = 0; m < k; m++) {
        const got = await code.decode([parity], outputs.map((o, i) => (i === m ? null : o)));
        for (let j = 0; j < got[m].length; j++) expect(got[m][j]).toBeCloseTo(outputs[m][j], 3);
        expect(got.filter((_, i) => i !== m)).toEqual(outputs.filter((_, i) => i !== m));
      }
    }
  });

  it('r = 2 with distinct coefficients recovers any two losses (and one loss from either parity)', async () => {
    for (const k of [2, 3, 4]) {
      const code = new ParityCode({ k, r: 2 });
      expect(code.coefficients).toEqual(defaultCoefficients(k, 2));
      expect(code.coefficients[1]).toEqual(Array.from({ length: k }, (_, i) => i + 1));
      const queries = Array.from({ length: k }, (_, i) => Tensor.random([3 * 20], 200 + i).data);
      const outputs = await Promise.all(queries.map(linear));
      const parities = [await linear(await code.encode(queries, 0)), await linear(await code.encode(queries, 1))];
      for (let a = 0; a < k; a++) {
        for (let b = a + 1; b < k; b++) {
          const got = await code.decode(parities, outputs.map((o, i) => (i === a || i === b ? null : o)));
          for (const m of [a, b]) for (let j = 0; j < got[m].length; j++) expect(got[m][j]).toBeCloseTo(outputs[m][j], 2);
        }
        const one = await code.decode([null, parities[1]], outputs.map((o, i) => (i === a ? null : o)));
        for (let j = 0; j < one[a].length; j++) expect(one[a][j]).toBeCloseTo(outputs[a][j], 3);
      }
    }
  });

  it('rejects bad codes and more losses than parities', async () => {
    expect(() => new ParityCode({ k: 1 })).toThrow('Expected an integer in [2, 64] for k but received 1');
    expect(() => new ParityCode({ k: 3, r: 4 })).toThrow(/for r but received 4/);
    expect(() => new ParityCode({ k: 10, encoder: 'concat' })).toThrow(/2 \(side by side\), 3 or 4 \(2×2 grid\) or 5…9 \(3×3 grid\)/);
    expect(() => new ParityCode({ k: 2, r: 2, coefficients: [[1, 1], [2, 2]] })).toThrow(/singular set for losses \[0,1\]/);
    const code = new ParityCode({ k: 3 });
    const o = new Float32Array(4);
    await expect(code.decode([o], [null, null, o])).rejects.toThrow('Expected at most 1 unavailable (one per available parity) for outputs but received 2 unavailable');
    await expect(code.encode([o, o])).rejects.toThrow(/3 queries/);
  });
});

describe('concatenation encoder', () => {
  // Image i of batch b has pixel (c, y, x) = 1000·i + 100·b + 10·y + x (c = 0) — every value unique.
  const image = (i: number, batch: number, h: number, w: number) => {
    const a = new Float32Array(batch * h * w);
    for (let b = 0; b < batch; b++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) a[b * h * w + y * w + x] = 1000 * i + 100 * b + 10 * y + x;
    return a;
  };

  it('k = 2 puts the two images side by side at half width (1×2 averages)', () => {
    const [h, w] = [4, 6];
    const out = concatEncode([image(0, 2, h, w), image(1, 2, h, w)], [1, h, w]);
    expect(out.length).toBe(2 * h * w);
    for (let b = 0; b < 2; b++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const q = x < w / 2 ? 0 : 1, xs = (x % (w / 2)) * 2;
          expect(out[b * h * w + y * w + x]).toBe(1000 * q + 100 * b + 10 * y + xs + 0.5);
        }
      }
    }
  });

  it('k = 4 tiles a 2×2 grid at half size (2×2 averages), query i at row ⌊i/2⌋, column i mod 2', async () => {
    const [h, w] = [28, 28];
    const qs = [0, 1, 2, 3].map((i) => image(i, 1, h, w));
    const out = await new ParityCode({ k: 4, encoder: 'concat' }).encode(qs, 0, [1, h, w]);
    expect(out.length).toBe(h * w);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const q = (y < 14 ? 0 : 2) + (x < 14 ? 0 : 1);
        const ys = (y % 14) * 2, xs = (x % 14) * 2;
        expect(out[y * w + x]).toBeCloseTo(1000 * q + 10 * ys + xs + 5.5, 3); // mean of 10y + x over the 2×2 block
      }
    }
  });

  it('k = 3 fills three tiles of the 2×2 grid and leaves the fourth at 0', async () => {
    const [h, w] = [4, 4];
    const qs = [0, 1, 2].map((i) => image(i + 1, 1, h, w));
    const out3 = await new ParityCode({ k: 3, encoder: 'concat' }).encode(qs, 0, [1, h, w]);
    const out4 = concatEncode([...qs, new Float32Array(h * w)], [1, h, w]);
    expect(Array.from(out3)).toEqual(Array.from(out4));
    for (let y = 2; y < 4; y++) for (let x = 2; x < 4; x++) expect(out3[y * w + x]).toBe(0);
    expect(out3[0]).toBe(1000 + 5.5);
  });

  it('k = 5…9 tiles a 3×3 grid of ⌊H/3⌋ × ⌊W/3⌋ tiles (3×3 averages); pixels past the last whole block are dropped', () => {
    const [h, w] = [7, 7]; // 2×2 tiles; source row and column 6 fall outside every block
    const qs = Array.from({ length: 8 }, (_, i) => image(i, 1, h, w));
    const out = concatEncode(qs, [1, h, w]);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const q = Math.floor(y / 2) * 3 + Math.floor(x / 2);
        // Mean of 10y' + x' over the 3×3 block at (3·(y mod 2), 3·(x mod 2)): its centre.
        const want = y < 6 && x < 6 && q < 8 ? 1000 * q + 10 * (3 * (y % 2) + 1) + 3 * (x % 2) + 1 : 0;
        expect(out[y * w + x]).toBeCloseTo(want, 3);
      }
    }
  });

  it('a k = 2 code may stack its images ([2, 1] grid, 2×1 averages) instead of side by side', async () => {
    const [h, w] = [4, 6];
    const out = await new ParityCode({ k: 2, encoder: 'concat', grid: [2, 1] }).encode([image(0, 1, h, w), image(1, 1, h, w)], 0, [1, h, w]);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const q = y < h / 2 ? 0 : 1, ys = (y % (h / 2)) * 2;
        expect(out[y * w + x]).toBe(1000 * q + 10 * ys + x + 5); // mean of rows ys and ys + 1
      }
    }
    expect(() => new ParityCode({ k: 3, encoder: 'concat', grid: [2, 1] })).toThrow('Expected [rows, cols] of 1…3 each with rows·cols ≥ k = 3 for grid but received an array of length 2');
    expect(() => new ParityCode({ k: 2, encoder: 'concat', grid: [4, 1] })).toThrow(/rows·cols ≥ k = 2 for grid/);
  });

  it('a full canvas keeps every image at full resolution: [C, rows·H, cols·W], empty tiles 0', async () => {
    const [h, w] = [3, 5];
    // Two channels, so the channel planes of the canvas are checked too.
    const two = (i: number, batch: number) => {
      const a = new Float32Array(batch * 2 * h * w);
      for (let b = 0; b < batch; b++) for (let c = 0; c < 2; c++) for (let p = 0; p < h * w; p++) a[(b * 2 + c) * h * w + p] = 1000 * i + 100 * b + 50 * c + p;
      return a;
    };
    const code = new ParityCode({ k: 3, encoder: 'concat', canvas: 'full' });
    expect(code.queryShape([2, h, w])).toEqual([2, 2 * h, 2 * w]);
    const out = await code.encode([two(0, 2), two(1, 2), two(2, 2)], 0, [2, h, w]);
    expect(out.length).toBe(2 * 2 * 4 * h * w);
    const [ch, cw] = [2 * h, 2 * w];
    for (let b = 0; b < 2; b++) {
      for (let c = 0; c < 2; c++) {
        for (let y = 0; y < ch; y++) {
          for (let x = 0; x < cw; x++) {
            const q = (y < h ? 0 : 2) + (x < w ? 0 : 1);
            const want = q < 3 ? 1000 * q + 100 * b + 50 * c + (y % h) * w + (x % w) : 0;
            expect(out[((b * 2 + c) * ch + y) * cw + x]).toBe(want);
          }
        }
      }
    }
    expect(concatQueryShape([1, 28, 28], [1, 2], 'full')).toEqual([1, 28, 56]);
    expect(concatQueryShape([1, 28, 28], [1, 2])).toEqual([1, 28, 28]);
    expect(new ParityCode({ k: 2, encoder: 'concat' }).queryShape([1, 28, 28])).toEqual([1, 28, 28]);
    expect(new ParityCode({ k: 2, encoder: 'concat', canvas: 'full' }).spec.canvas).toBe('full');
    expect(new ParityCode({ k: 2, encoder: 'concat' }).spec).not.toHaveProperty('canvas'); // the default is not written
    expect(() => new ParityCode({ k: 2, encoder: 'concat', canvas: 'big' as 'full' })).toThrow('Expected same | full for canvas but received "big"');
    expect(() => concatEncode([new Float32Array(4), new Float32Array(4)], [1, 2, 2], undefined, 'wide' as 'full')).toThrow('Expected same | full for canvas but received "wide"');
    expect(() => new ParityCode({ k: 2, canvas: 'full' })).toThrow(/nothing for a summation code \(canvases are for concatenation\) for canvas/);
  });

  it('checks shapes', () => {
    expect(() => concatEncode([new Float32Array(1), new Float32Array(1)], [1, 1, 1])).toThrow('Expected at least 1 rows and 2 columns for imageShape but received [1,1,1]');
    expect(() => concatEncode([new Float32Array(16), new Float32Array(8)], [1, 4, 4])).toThrow('Expected a Float32Array of 16 values for queries[1] but received 8 values');
  });
});
