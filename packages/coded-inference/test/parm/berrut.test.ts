import { describe, expect, it } from 'vitest';

import { Flatten, Linear, Sequential, loadMnist, manualSeed, subset } from '@kintsugi/cuda-core/nn';
import { BerrutCode, LearnedDecoder, deployedOutputs, evaluateBerrut, inputSpec, approxiferPoints, berrutInterpolate, berrutWeights, chebyshevFirst, chebyshevSecond, choleskySolve } from '../../src/parm/index.js';

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
  it('ApproxIFER layout: k first-kind Chebyshev points and the k + s points cos(iπ/N), all distinct', () => {
    const code = new BerrutCode(8, 2, { systematic: false });
    expect(code.alphas).toEqual(chebyshevFirst(8));
    expect(code.n).toBe(10);
    expect(code.betas).toEqual(approxiferPoints(10));
    expect(approxiferPoints(4).map((v) => +v.toFixed(12))).toEqual([1, 0.707106781187, 0, -0.707106781187]);
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

describe('LearnedDecoder', () => {
  // A seeded linear model F(x) = W x + b and random queries.
  const rand = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const d = 6, c = 4, k = 4, s = 2;
  const r = rand(7);
  const W = Array.from({ length: c * d }, r), b = Array.from({ length: c }, r);
  const F = (x: Float32Array) => {
    const n = x.length / d, out = new Float32Array(n * c);
    for (let g = 0; g < n; g++) for (let o = 0; o < c; o++) {
      let v = b[o];
      for (let i = 0; i < d; i++) v += W[o * d + i] * x[g * d + i];
      out[g * c + o] = v;
    }
    return out;
  };
  const groups = (n: number, seed: number) => { const q = rand(seed); return Array.from({ length: k }, () => Float32Array.from({ length: n * d }, q)); };

  it('reconstructs a linear model exactly from any k returned outputs, where interpolation only approximates', () => {
    const code = new BerrutCode(k, s, { systematic: false });
    const fitQ = groups(50, 11);
    const dec = new LearnedDecoder(code, code.encode(fitQ).map(F), fitQ.map(F), 0); // no ridge: exact up to rounding
    const testQ = groups(20, 12);
    const outs = code.encode(testQ).map(F);
    for (const drop of [[0, 1], [2, 5], [3, 4]]) {
      const returned = outs.map((o, i) => (drop.includes(i) ? null : o));
      const got = dec.decode(returned), interp = code.decode(returned);
      let worstLearned = 0, worstInterp = 0;
      for (let j = 0; j < k; j++) {
        const want = F(testQ[j]);
        for (let e = 0; e < want.length; e++) {
          worstLearned = Math.max(worstLearned, Math.abs(got[j][e] - want[e]));
          worstInterp = Math.max(worstInterp, Math.abs(interp[j][e] - want[e]));
        }
      }
      expect(worstLearned).toBeLessThan(1e-3);
      expect(worstInterp).toBeGreaterThan(10 * worstLearned);
      expect(dec.weightsFor(returned.flatMap((o, i) => (o ? [i] : [])))).toHaveLength(k);
    }
  });

  it('rejects mismatched fitting data and too few returned outputs', () => {
    const code = new BerrutCode(k, s, { systematic: false });
    const fitQ = groups(10, 3);
    const outs = code.encode(fitQ).map(F);
    expect(() => new LearnedDecoder(code, outs.slice(1), fitQ.map(F))).toThrow('Expected 6 arrays (one per coded query) for codedOutputs but received 5');
    expect(() => new LearnedDecoder(code, outs, fitQ.map(F).slice(1))).toThrow('Expected 4 arrays (one per query) for targets but received 3');
    expect(() => new LearnedDecoder(code, outs, [...fitQ.map(F).slice(1), new Float32Array(3)])).toThrow(/Float32Arrays of one length/);
    expect(() => new LearnedDecoder(code, outs.map(() => new Float32Array(0)), fitQ.map(() => new Float32Array(0)))).toThrow('Expected outputs for at least one training group for codedOutputs but received none');
    const dec = new LearnedDecoder(code, outs, fitQ.map(F));
    expect(() => dec.decode(outs.map((o, i) => (i < 3 ? null : o)))).toThrow('Expected at least 4 returned outputs for outputs but received 3');
  });

  it('solves symmetric positive-definite systems and refuses singular ones', () => {
    const g = Float64Array.from([4, 2, 0.4, 2, 5, 1, 0.4, 1, 3]);
    const x = choleskySolve(g, Float64Array.from([1, 2, 3]), 3);
    for (let i = 0; i < 3; i++) expect(g[i * 3] * x[0] + g[i * 3 + 1] * x[1] + g[i * 3 + 2] * x[2]).toBeCloseTo([1, 2, 3][i], 12);
    expect(() => choleskySolve(Float64Array.from([1, 1, 1, 1]), Float64Array.from([1, 1]), 2)).toThrow(/positive-definite/);
  });
});

describe('evaluateBerrut', () => {
  it('with a fitted decoder reproduces an affine deployed model, which interpolation does not', async () => {
    manualSeed(4);
    const deployed = new Sequential(new Flatten(), new Linear(784, 10));
    deployed.eval();
    const mnist = await loadMnist('test');
    const spec = inputSpec({}, 'mnist');
    const test = await deployedOutputs(deployed, subset(mnist, 400), spec);
    const fit = await deployedOutputs(deployed, { ...mnist, images: mnist.images.subarray(400 * 784, 1200 * 784), labels: mnist.labels.subarray(400, 1200), count: 800 }, spec);
    const interp = await evaluateBerrut(test, deployed, 8, 1, { systematic: false });
    const learned = await evaluateBerrut(test, deployed, 8, 1, { systematic: false, fit });
    expect(interp).toMatchObject({ decoder: 'berrut', patterns: 9, reconstructed: 9 * 400, lost: 9 * 400 });
    expect(learned).toMatchObject({ decoder: 'learned', patterns: 9, reconstructed: 9 * 400 });
    expect(learned.agreement).toBe(1);
    expect(interp.agreement).toBeLessThan(0.99);
    // A systematic code returns the deployed predictions themselves for the queries that came back.
    const sys = await evaluateBerrut(test, deployed, 8, 1, { systematic: true, fit });
    expect(sys.lost).toBe(400);
    expect(sys.agreement).toBe(1);
  }, 60_000);
});
