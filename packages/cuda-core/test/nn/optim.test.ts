// Optimizer updates against hand-computed values, sparse-row behaviour, and the schedules.
import { describe, expect, it } from 'vitest';
import { setIsaLimit, Tensor } from '../../src/index.js';
import { adagradUpdate, Adagrad, Adam, CosineLR, EmbeddingBag, Parameter, RowwiseAdagrad, SGD, StepLR } from '../../src/nn/index.js';

function param(values: number[], grad: number[], shape = [values.length]): Parameter {
  const p = new Parameter(Tensor.fromArray(values, shape));
  p.grad.data.set(grad);
  return p;
}
const close = (a: ArrayLike<number>, b: number[], digits = 6) => b.forEach((v, i) => expect(a[i]).toBeCloseTo(v, digits));

describe('optimizers', () => {
  it('SGD with momentum and weight decay follows PyTorch (no dampening)', () => {
    const p = param([1, -2], [0.5, 0.25]);
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    opt.step(); // d = g + wd·w = [0.51, 0.23]; v = d; w -= 0.1·v
    close(p.value.data, [1 - 0.051, -2 - 0.023]);
    opt.step(); // d2 = g + wd·w; v = 0.9·v + d2
    const d2 = [0.5 + 0.01 * 0.949, 0.25 + 0.01 * -2.023];
    const v2 = [0.9 * 0.51 + d2[0], 0.9 * 0.23 + d2[1]];
    close(p.value.data, [0.949 - 0.1 * v2[0], -2.023 - 0.1 * v2[1]]);
  });

  it('Nesterov SGD uses g + μ·v', () => {
    const p = param([0], [1]);
    const opt = new SGD([p], { lr: 1, momentum: 0.5, nesterov: true });
    opt.step(); // v = 1, step = 1 + 0.5·1
    close(p.value.data, [-1.5]);
  });

  it('Adam: the first step moves every weight by lr·sign(g); later steps match the formula', () => {
    const p = param([1, 2, 3], [0.3, -4, 1e-3]);
    const opt = new Adam([p], { lr: 0.01 });
    opt.step();
    close(p.value.data, [0.99, 2.01, 2.99], 5);
    p.grad.data.set([0.1, 0.1, 0.1]);
    opt.step();
    const b1 = 0.9, b2 = 0.999;
    const g1 = [0.3, -4, 1e-3], w1 = [0.99, 2.01, 2.99];
    const expected = g1.map((g, i) => {
      const m = b1 * (1 - b1) * g + (1 - b1) * 0.1, v = b2 * (1 - b2) * g * g + (1 - b2) * 0.01;
      return w1[i] - (0.01 * (m / (1 - b1 ** 2))) / (Math.sqrt(v / (1 - b2 ** 2)) + 1e-8);
    });
    close(p.value.data, expected, 5);
  });

  it('Adagrad accumulates squared gradients element-wise', () => {
    const p = param([0, 0], [2, -1]);
    const opt = new Adagrad([p], { lr: 0.5 });
    opt.step(); // s = [4, 1]: step lr·g/sqrt(s) = [0.5, -0.5]
    close(p.value.data, [-0.5, 0.5]);
    opt.step(); // s = [8, 2]
    close(p.value.data, [-0.5 - 1 / Math.sqrt(8), 0.5 + 0.5 / Math.sqrt(2)]);
  });

  it('the native Adagrad step gives the bits of the same loop in JavaScript, on every ISA path', () => {
    // The loop it replaces: doubles, rounded to float32 by each Float32Array store.
    const jsStep = (w: Float32Array, g: Float32Array, s: Float32Array, lr: number, eps: number, wd: number) => {
      for (let i = 0; i < w.length; i++) {
        const gi = wd === 0 ? g[i] : g[i] + wd * w[i];
        s[i] += gi * gi;
        w[i] -= (lr * gi) / (Math.sqrt(s[i]) + eps);
      }
    };
    let seed = 9;
    const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * scale);
    const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
    try {
      for (const isa of ['avx512', 'avx2', 'portable'] as const) {
        setIsaLimit(isa);
        // Odd lengths around the 8-wide groups, and a gradient spread over many binades.
        for (const n of [0, 1, 7, 8, 9, 17, 1001]) {
          for (const [lr, eps, wd] of [[0.02, 1e-10, 0], [0.5, 1e-8, 0.01], [3, 0, -0.2]]) {
            const w = random(n, 4), g = random(n, 1).map((v, i) => v * 10 ** ((i % 9) - 4)), s = random(n, 2).map(Math.abs);
            const w2 = w.slice(), s2 = s.slice();
            adagradUpdate(w, g, s, lr, eps, wd);
            jsStep(w2, g, s2, lr, eps, wd);
            expect(bits(w), `${isa} n=${n} wd=${wd}`).toEqual(bits(w2));
            expect(bits(s)).toEqual(bits(s2));
          }
        }
        // NaN and Inf: a NaN gradient poisons its weight and state only; an infinite one sends the
        // state to Inf and the step to Inf / Inf = NaN; a zero state and gradient with eps = 0 is 0 / 0.
        const w = Float32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1]), s = new Float32Array(9);
        const g = Float32Array.from([NaN, 1, Infinity, 0, 1, 1, 1, 1, -Infinity]);
        adagradUpdate(w, g, s, 0.1, 0, 0);
        const moved = Math.fround(1 - 0.1);
        expect(Array.from(w)).toEqual([NaN, moved, NaN, NaN, moved, moved, moved, moved, NaN]);
        expect(Array.from(s)).toEqual([NaN, 1, Infinity, 0, 1, 1, 1, 1, Infinity]);
      }
    } finally {
      setIsaLimit('avx512');
    }
  });

  it('the native Adagrad step refuses arrays of other lengths, shared memory and bad numbers', () => {
    const w = new Float32Array(8), g = new Float32Array(8), s = new Float32Array(8);
    expect(() => adagradUpdate(w, new Float32Array(7), s, 0.1, 1e-10)).toThrow(/Expected 8 elements \(as weights\) for grads but received 7/);
    expect(() => adagradUpdate(w, g, new Float32Array(9), 0.1, 1e-10)).toThrow(/Expected 8 elements \(as weights\) for state but received 9/);
    expect(() => adagradUpdate(w, w.subarray(0), s, 0.1, 1e-10)).toThrow(/overlap/);
    expect(() => adagradUpdate(w, g, s, NaN, 1e-10)).toThrow(/lr/);
    expect(() => adagradUpdate(w, g, new Float64Array(8) as unknown as Float32Array, 0.1, 1e-10)).toThrow(/state/);
  });

  it('row-wise Adagrad keeps one accumulator per row and updates only the rows a bag touched', async () => {
    const bag = new EmbeddingBag(5, 2, { mode: 'sum' });
    const before = bag.weight.value.data.slice();
    const opt = new RowwiseAdagrad(bag.parameters(), { lr: 0.1 });
    await bag.forward({ indices: Int32Array.from([1, 3, 3]), offsets: Int32Array.from([0, 1, 3]) });
    await bag.backward(Tensor.fromArray([1, 2, 0.5, -1], [2, 2]));
    const g3 = [1, -2]; // row 3 appears twice in bag 1
    opt.step();
    const w = bag.weight.value.data;
    for (const r of [0, 2, 4]) expect([w[2 * r], w[2 * r + 1]]).toEqual([before[2 * r], before[2 * r + 1]]);
    const s1 = (1 + 4) / 2, s3 = (1 + 4) / 2;
    close([w[2], w[3]], [before[2] - (0.1 * 1) / Math.sqrt(s1), before[3] - (0.1 * 2) / Math.sqrt(s1)], 5);
    close([w[6], w[7]], [before[6] - (0.1 * g3[0]) / Math.sqrt(s3), before[7] - (0.1 * g3[1]) / Math.sqrt(s3)], 5);
    opt.zeroGrad();
    expect(bag.weight.rows).toBeNull();
    expect(bag.weight.grad.data).toEqual(new Float32Array(10));
  });

  it('rejects a missing learning rate with the validation message shape', () => {
    expect(() => new SGD([param([1], [1])], {} as { lr: number })).toThrow(/^Expected a number for options.lr but received undefined$/);
    expect(() => new Adam([param([1], [1])], { beta1: 1 })).toThrow(/^Expected a number in \[0, 1\) for options.beta1 but received 1$/);
  });
});

describe('learning-rate schedules', () => {
  it('StepLR multiplies by gamma every stepSize steps', () => {
    const opt = new SGD([param([0], [0])], { lr: 1 });
    const s = new StepLR(opt, { stepSize: 2, gamma: 0.5 });
    expect([s.step(), s.step(), s.step(), s.step(), s.step()]).toEqual([1, 0.5, 0.5, 0.25, 0.25]);
  });

  it('CosineLR warms up linearly, then follows half a cosine to minLr', () => {
    const opt = new SGD([param([0], [0])], { lr: 1 });
    const s = new CosineLR(opt, { totalSteps: 12, warmupSteps: 2, minLr: 0.1 });
    expect(opt.lr).toBeCloseTo(0.5);
    expect(s.step()).toBeCloseTo(1);
    expect(s.step()).toBeCloseTo(1); // t = 2: start of the cosine
    for (let t = 3; t <= 7; t++) s.step(); // t = 7: 5 of the 10 cosine steps
    expect(opt.lr).toBeCloseTo(0.55); // halfway: (1 + 0.1) / 2
    for (let t = 8; t <= 20; t++) s.step();
    expect(opt.lr).toBeCloseTo(0.1);
  });
});
