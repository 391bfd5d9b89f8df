import { describe, expect, it } from 'vitest';

import { BerrutCode, berrutInterpolate, berrutWeights, chebyshevFirst, chebyshevSecond } from '../../src/parm/index.js';

describe('Berrut rational interpolation', () => {
  it('passes through the nodes and reproduces constants exactly', () => {
    const nodes = chebyshevSecond(9);
    const values = nodes.map((x) => Math.sin(3 * x));
    nodes.forEach((x, i) => expect(berrutInterpolate(nodes, values, x)).toBe(values[i]));
    for (const z of [-0.93, -0.2, 0.01, 0.5, 0.99]) {
      expect(berrutInterpolate(nodes, nodes.map(() => 2.5), z)).toBeCloseTo(2.5, 12);
      const w = berrutWeights(nodes, z);
      expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    }
  });

  it('is exact on the one rational function of its form and has O(h) error on smooth ones', () => {
    // With two nodes the interpolant is linear: any line is reproduced exactly.
    for (const z of [-0.7, 0.1, 0.4]) expect(berrutInterpolate([-0.5, 0.5], [1, 3], z)).toBeCloseTo(2 + 2 * z, 12);
    // Smooth functions converge at rate O(h): the max error on [-1, 1] shrinks as nodes are added.
    const f = (x: number) => Math.exp(x) + x * x;
    const maxErr = (n: number) => {
      const nodes = chebyshevSecond(n);
      const vals = nodes.map(f);
      let e = 0;
      for (let i = 0; i <= 200; i++) {
        const z = -1 + i / 100;
        e = Math.max(e, Math.abs(berrutInterpolate(nodes, vals, z) - f(z)));
      }
      return e;
    };
    const e8 = maxErr(8), e16 = maxErr(16), e32 = maxErr(32);
    expect(e8).toBeLessThan(0.3);
    expect(e16).toBeLessThan(e8 * 0.7);
    expect(e32).toBeLessThan(e16 * 0.7);
    expect(e32).toBeLessThan(0.08);
  });

  it('has no poles: weights stay finite between and beside the nodes, for any node order', () => {
    const nodes = [0.3, -0.8, 0.9, -0.1, 0.55]; // unsorted
    for (let i = 0; i <= 100; i++) {
      const v = berrutInterpolate(nodes, [1, -1, 2, 0.5, 3], -1 + i / 50);
      expect(Number.isFinite(v)).toBe(true);
      expect(Math.abs(v)).toBeLessThan(10);
    }
  });
});

describe('BerrutCode (ApproxIFER)', () => {
  it('ApproxIFER layout: k first-kind and k + s second-kind Chebyshev points, all distinct', () => {
    const code = new BerrutCode(8, 2, { systematic: false });
    expect(code.alphas).toEqual(chebyshevFirst(8));
    expect(code.n).toBe(10);
    for (const a of code.alphas) for (const b of code.betas) expect(Math.abs(a - b)).toBeGreaterThan(1e-3);
  });

  it('decodes constant queries exactly under any stragglers, for a model that is linear (affine)', () => {
    const code = new BerrutCode(4, 2);
    const q = new Float32Array([1, -2, 3.5]);
    const coded = code.encode([q, q, q, q]);
    for (const c of coded) for (let j = 0; j < 3; j++) expect(c[j]).toBeCloseTo(q[j], 5);
    const F = (x: Float32Array) => Float32Array.from(x, (v) => 2 * v + 1);
    const outs = coded.map(F);
    const dec = code.decode(outs.map((o, i) => (i === 1 || i === 4 ? null : o)));
    for (const d of dec) for (let j = 0; j < 3; j++) expect(d[j]).toBeCloseTo(2 * q[j] + 1, 4);
  });

  it('approximates smoothly varying queries with bounded error, and worse with more stragglers', () => {
    // Query j holds g(α_j) for a smooth g, the model is the identity: the decode error is the
    // interpolation error of encode-then-decode.
    const g = (x: number) => [Math.cos(x), x * x, 1 / (2 + x)];
    const err = (k: number, s: number, drop: number[]) => {
      const code = new BerrutCode(k, s);
      const coded = code.encode(code.alphas.map((a) => Float32Array.from(g(a))));
      const dec = code.decode(coded.map((o, i) => (drop.includes(i) ? null : o)));
      return Math.max(...dec.flatMap((d, j) => Array.from(d, (v, c) => Math.abs(v - g(code.alphas[j])[c]))));
    };
    expect(err(8, 0, [])).toBeLessThan(0.1);
    expect(err(8, 1, [4])).toBeLessThan(0.2);
    expect(err(16, 1, [8])).toBeLessThan(err(8, 1, [4]));
  });

  it('systematic layout: queries pass through, returned predictions are exact, parity points sit in the gaps', async () => {
    const code = new BerrutCode(8, 3);
    expect(code.betas.slice(0, 8)).toEqual(code.alphas);
    const sorted = [...code.alphas].sort((a, b) => a - b);
    for (const b of code.betas.slice(8)) {
      const gap = sorted.findIndex((a, i) => i < 7 && a < b && b < sorted[i + 1]);
      expect(gap).toBeGreaterThanOrEqual(0);
    }
    const qs = Array.from({ length: 8 }, (_, j) => Float32Array.from([j, 1 - 2 * j, 0.5]));
    const coded = code.encode(qs);
    for (let j = 0; j < 8; j++) expect(Array.from(coded[j])).toEqual(Array.from(qs[j]));
    const F = (x: Float32Array) => Float32Array.from(x, (v) => Math.tanh(v));
    const outs = coded.map(F);
    const dec = code.decode(outs.map((o, i) => (i === 2 || i === 9 ? null : o)));
    for (const j of [0, 1, 3, 4, 5, 6, 7]) expect(Array.from(dec[j])).toEqual(Array.from(outs[j]));
    for (const v of dec[2]) expect(Number.isFinite(v) && Math.abs(v) <= 1.5).toBe(true);
    expect(() => new BerrutCode(3, 3)).toThrow(/Expected an integer in \[0, 2\] for a systematic code with k = 3/);
  });

  it('rejects too many stragglers', () => {
    const code = new BerrutCode(3, 1);
    const o = new Float32Array(2);
    expect(() => code.decode([o, null, null, o])).toThrow('Expected at least 3 returned outputs for outputs but received 2');
    expect(() => code.encode([o, o])).toThrow(/3 queries/);
  });
});
