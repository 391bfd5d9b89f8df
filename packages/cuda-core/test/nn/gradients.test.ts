// Finite-difference checks of every layer's explicit backward. Tolerance: |analytic − numeric| ≤
// atol + rtol·|numeric| with central differences of step eps on float32 forwards summed in float64:
// eps 1e-2, atol 1e-3, rtol 1e-2 unless a test says otherwise (float32 rounding of f ≈ 1e-6, so
// the difference quotient is good to ~1e-4). Probes whose ±eps step moves a ReLU input across zero
// are skipped (f has a kink there), and at most 20% may be; single layers get inputs away from kinks.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/index.js';
import {
  AvgPool2d, BatchNorm2d, binaryCrossEntropyWithLogits, Conv2d, crossEntropy, Dropout, EmbeddingBag, Flatten, GlobalAvgPool2d, Linear,
  manualSeed, MaxPool2d, mse, ReLU, ResidualBlock, Sequential, Softmax,
} from '../../src/nn/index.js';
import { awayFromZero, distinct, dot64, gradCheck, randomTensor } from './helpers.js';
import { addInto, batchNormBackward, batchNormForward, reluBackward, reluForward } from '../../src/nn/ops.js';

async function expectGradientsMatch(...args: Parameters<typeof gradCheck>): Promise<void> {
  const { mismatches, checked, skipped } = await gradCheck(...args);
  // Probes straddling a ReLU kink are skipped; most must still be checked.
  expect(checked).toBeGreaterThan(0);
  expect(skipped).toBeLessThan(0.2 * (checked + skipped));
  expect(mismatches).toEqual([]);
}

describe('finite-difference gradient checks', () => {
  it('Linear (with and without bias, a batch of 5)', async () => {
    manualSeed(1);
    await expectGradientsMatch(new Linear(7, 4), randomTensor([5, 7], 2));
    await expectGradientsMatch(new Linear(3, 6, { bias: false }), randomTensor([2, 3], 3));
  });

  it('Linear accumulates its bias gradient: dy\'s column sums, added over backward calls', async () => {
    for (const n of [1, 300, 700]) {
      const layer = new Linear(3, 5);
      const x = randomTensor([n, 3], 4), dy = randomTensor([n, 5], 5);
      await layer.forward(x);
      await layer.backward(dy);
      await layer.backward(dy);
      const want = Array.from({ length: 5 }, (_, j) => 2 * Array.from({ length: n }, (_, r) => dy.data[r * 5 + j]).reduce((a, b) => a + b, 0));
      want.forEach((v, j) => expect(layer.bias!.grad.data[j]).toBeCloseTo(v, 3));
    }
  });

  it('Conv2d: 3×3 padding 1, 3×3 stride 2, 1×1', async () => {
    manualSeed(2);
    await expectGradientsMatch(new Conv2d(2, 3, 3, { padding: 1 }), randomTensor([2, 2, 5, 5], 4));
    await expectGradientsMatch(new Conv2d(3, 2, 3, { stride: 2, bias: false }), randomTensor([1, 3, 7, 6], 5));
    await expectGradientsMatch(new Conv2d(4, 3, 1), randomTensor([2, 4, 3, 3], 6));
  });

  it('MaxPool2d 2×2 (fast path) and 3×3 stride 2 padding 1 (general path)', async () => {
    await expectGradientsMatch(new MaxPool2d(2), distinct([2, 2, 4, 6], 7));
    await expectGradientsMatch(new MaxPool2d(3, { stride: 2, padding: 1 }), distinct([1, 2, 5, 5], 8));
  });

  it('AvgPool2d and GlobalAvgPool2d', async () => {
    await expectGradientsMatch(new AvgPool2d(2), randomTensor([2, 3, 4, 4], 9));
    await expectGradientsMatch(new AvgPool2d(3, { stride: 2, padding: 1 }), randomTensor([1, 2, 5, 5], 10));
    await expectGradientsMatch(new GlobalAvgPool2d(), randomTensor([3, 4, 2, 3], 11));
  });

  it('ReLU, Flatten and Softmax', async () => {
    await expectGradientsMatch(new ReLU(), awayFromZero([4, 5], 12));
    await expectGradientsMatch(new Flatten(), randomTensor([2, 3, 2, 2], 13));
    await expectGradientsMatch(new Softmax(), randomTensor([3, 6], 14, -3, 3));
  });

  it('ReLU edge values: -Inf and -0 give +0, +Inf and the largest float pass, gradients masked', async () => {
    const relu = new ReLU();
    const x = Float32Array.of(-Infinity, -0, 0, Infinity, 3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -1e-45, 2.5);
    const y = (await relu.forward(new Tensor(x, [x.length]))).data;
    expect(Array.from(y)).toEqual([0, 0, 0, Infinity, x[4], 0, x[6], 0, 2.5]);  // x[6]: the smallest subnormal
    expect(Object.is(y[1], 0)).toBe(true);  // +0, not -0
    const dx = (await relu.backward(new Tensor(new Float32Array(x.length).fill(-2), [x.length]))).data;
    expect(Array.from(dx)).toEqual([0, 0, 0, -2, -2, 0, -2, 0, -2]);
  });

  it('native ReLU and addInto: bit-level edge values, large (async) arrays, clear errors', async () => {
    const n = 600_001;  // past the synchronous limit, odd
    const x = randomTensor([n], 41, -1, 1).data;
    const bits = new Uint32Array(x.buffer);
    bits[0] = 0xffc00001;  // a NaN with its sign bit set → +0
    bits[1] = 0x7fc00001;  // a positive NaN passes unchanged
    x[2] = -0;
    const y = new Float32Array(n);
    await reluForward(x, y);
    const yb = new Uint32Array(y.buffer);
    expect(yb[0]).toBe(0);
    expect(yb[1]).toBe(0x7fc00001);
    expect(Object.is(y[2], 0)).toBe(true);
    for (let i = 3; i < n; i++) if (y[i] !== Math.max(x[i], 0)) throw new Error(`relu at ${i}: ${y[i]} for ${x[i]}`);
    const dy = randomTensor([n], 42, -1, 1).data;
    dy[3] = Infinity;
    const dx = new Float32Array(n);
    await reluBackward(dy, y, dx);
    for (let i = 0; i < n; i++) {
      const want = dy[i] * +(y[i] > 0) + 0;
      if (!Object.is(dx[i], want) && !(Number.isNaN(dx[i]) && Number.isNaN(want))) throw new Error(`relu backward at ${i}: ${dx[i]}, expected ${want}`);
    }
    const a = Float32Array.from(dy), b = randomTensor([n], 43).data;
    await addInto(a, b);
    for (let i = 0; i < n; i++) if (a[i] !== Math.fround(dy[i] + b[i])) throw new Error(`addInto at ${i}`);
    await expect(addInto(new Float32Array(4), new Float32Array(5))).rejects.toThrow(/b/);
    await expect(addInto(a, a.subarray(1))).rejects.toThrow();
    await expect(reluForward(new Float32Array(8), new Float32Array(7))).rejects.toThrow(/y/);
    await expect(reluBackward(new Float32Array(8), new Float32Array(8), new Float32Array(3))).rejects.toThrow(/dx/);
  });

  it('BatchNorm2d in training mode (batch statistics) and eval mode (running statistics)', async () => {
    const bn = new BatchNorm2d(3);
    // Non-trivial affine parameters so their gradients and the scaling are exercised.
    bn.weight.value.data.set([1.5, -0.7, 0.9]);
    bn.bias.value.data.set([0.1, 0.2, -0.3]);
    await expectGradientsMatch(bn, randomTensor([4, 3, 3, 2], 15, -2, 2));
    bn.runningMean.data.set([0.2, -0.1, 0.05]);
    bn.runningVar.data.set([0.5, 2, 1.2]);
    await expectGradientsMatch(bn.eval(), randomTensor([2, 3, 2, 2], 16));
  });

  it('BatchNorm2d forward and running statistics match a float64 reference, small and large (async) inputs', async () => {
    for (const [shape, offset] of [[[2, 3, 2, 2], 0], [[16, 5, 40, 40], 1e4]] as const) {
      const bn = new BatchNorm2d(shape[1], { momentum: 0.3 });
      bn.weight.value.data.set(Array.from({ length: shape[1] }, (_, i) => 0.5 + i));
      bn.bias.value.data.set(Array.from({ length: shape[1] }, (_, i) => i - 1));
      const x = randomTensor([...shape], 31, -2, 2);
      for (let i = 0; i < x.data.length; i++) x.data[i] += offset;  // a large mean: two passes keep the variance
      const y = (await bn.forward(x)).data;
      const [n, c, h, w] = shape, hw = h * w;
      for (let ch = 0; ch < c; ch++) {
        let sum = 0, sq = 0;
        for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) sum += x.data[(b * c + ch) * hw + i];
        const mean = sum / (n * hw);
        for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) sq += (x.data[(b * c + ch) * hw + i] - mean) ** 2;
        const variance = sq / (n * hw), inv = 1 / Math.sqrt(variance + 1e-5);
        for (let b = 0; b < n; b++) {
          for (let i = 0; i < hw; i++) {
            const at = (b * c + ch) * hw + i;
            expect(Math.abs(y[at] - ((0.5 + ch) * (x.data[at] - mean) * inv + ch - 1))).toBeLessThan(1e-4 * (1 + ch));
          }
        }
        expect(bn.runningMean.data[ch]).toBeCloseTo(0.3 * mean, 2);
        expect(bn.runningVar.data[ch]).toBeCloseTo(0.7 + 0.3 * variance * (n * hw) / (n * hw - 1), 4);
      }
    }
  });

  it('batch-norm kernels refuse short arrays, bad settings and one value per channel', async () => {
    const call = { n: 2, c: 3, hw: 4, eps: 1e-5, momentum: 0.1, training: true };
    const f = (k: number) => new Float32Array(k);
    await expect(batchNormForward(call, f(23), f(3), f(3), f(3), f(3), f(24), f(24), new Float64Array(3))).rejects.toThrow(/x/);
    await expect(batchNormForward(call, f(24), f(2), f(3), f(3), f(3), f(24), f(24), new Float64Array(3))).rejects.toThrow(/gamma/);
    await expect(batchNormForward({ ...call, eps: 0 }, f(24), f(3), f(3), f(3), f(3), f(24), f(24), new Float64Array(3))).rejects.toThrow(/eps/);
    await expect(batchNormForward({ ...call, momentum: 2 }, f(24), f(3), f(3), f(3), f(3), f(24), f(24), new Float64Array(3))).rejects.toThrow(/momentum/);
    await expect(batchNormForward({ ...call, n: 1, hw: 1 }, f(3), f(3), f(3), f(3), f(3), f(3), f(3), new Float64Array(3))).rejects.toThrow(/more than one value/);
    const x = f(24);
    await expect(batchNormForward(call, x, f(3), f(3), f(3), f(3), x, f(24), new Float64Array(3))).rejects.toThrow(/overlap|share/);
    await expect(batchNormBackward(call, f(24), f(24), f(3), new Float64Array(2), f(3), f(3), f(24))).rejects.toThrow(/invStd/);
    await expect(new BatchNorm2d(3).forward(randomTensor([1, 3, 1, 1], 1))).rejects.toThrow(/more than one value per channel/);
  });

  it('Sequential of conv, BN, ReLU, pool, flatten and linear', async () => {
    manualSeed(3);
    const model = new Sequential(new Conv2d(1, 3, 3, { padding: 1 }), new BatchNorm2d(3), new ReLU(), new MaxPool2d(2), new Flatten(), new Linear(12, 4));
    // eps 1e-3 keeps kink crossings rare; float32 noise in the quotient then needs atol 5e-3.
    await expectGradientsMatch(model, randomTensor([2, 1, 4, 4], 17), { eps: 1e-3, atol: 5e-3, rtol: 2e-2, maxChecks: 25 });
  });

  it('ResidualBlock with identity and with projection shortcut, training and eval mode', async () => {
    for (const [cin, cout, stride] of [[2, 2, 1], [2, 3, 2]]) {
      for (const seed of [4, 5]) {
        manualSeed(seed);
        const block = new ResidualBlock(cin, cout, stride);
        const opts = { eps: 1e-3, atol: 5e-3, rtol: 2e-2, maxChecks: 20 };
        await expectGradientsMatch(block, randomTensor([4, cin, 5, 5], seed + 10), opts);
        for (const [name, t] of block.namedBuffers()) t.data.set(name.endsWith('Mean') ? [0.1, -0.2, 0.05].slice(0, cout) : [0.8, 1.5, 1.1].slice(0, cout));
        await expectGradientsMatch(block.eval(), randomTensor([2, cin, 5, 5], seed + 20), opts);
      }
    }
  });

  it('EmbeddingBag sum and mean, with per-sample weights and repeated rows', async () => {
    for (const mode of ['sum', 'mean'] as const) {
      manualSeed(5);
      const bag = new EmbeddingBag(6, 3, { mode });
      const indices = Int32Array.from([0, 2, 2, 5, 1, 3]);
      const offsets = Int32Array.from([0, 3, 3, 6]); // the middle bag is empty
      const weights = Float32Array.from([0.5, 1, 2, -1, 0.25, 3]);
      const r = randomTensor([3, 3], 20);
      const f = async () => dot64((await bag.forward({ indices, offsets, weights })).data, r.data);
      bag.zeroGrad();
      await bag.forward({ indices, offsets, weights });
      await bag.backward(r);
      expect([...bag.weight.rows!]).toEqual([0, 1, 2, 3, 5]);
      const w = bag.weight.value.data;
      for (let i = 0; i < w.length; i++) {
        const saved = w[i];
        w[i] = saved + 1e-2;
        const fp = await f();
        w[i] = saved - 1e-2;
        const fm = await f();
        w[i] = saved;
        expect(Math.abs(bag.weight.grad.data[i] - (fp - fm) / 2e-2)).toBeLessThan(1e-3);
      }
      expect(bag.weight.grad.data.slice(4 * 3, 5 * 3)).toEqual(new Float32Array(3)); // row 4 untouched
    }
  });

  it('losses: cross-entropy, MSE and BCE-with-logits gradients', () => {
    const logits = randomTensor([4, 5], 21, -3, 3);
    const labels = Int32Array.from([0, 4, 2, 2]);
    const target = randomTensor([4, 5], 22, 0, 1);
    const cases: [string, (x: Tensor<'float32'>) => { loss: number; grad: Tensor<'float32'> }][] = [
      ['crossEntropy', (x) => crossEntropy(x, labels)],
      ['mse', (x) => mse(x, target)],
      ['bce', (x) => binaryCrossEntropyWithLogits(x, target)],
    ];
    for (const [name, fn] of cases) {
      const { grad } = fn(logits);
      for (let i = 0; i < logits.size; i++) {
        const saved = logits.data[i];
        logits.data[i] = saved + 1e-2;
        const lp = fn(logits).loss;
        logits.data[i] = saved - 1e-2;
        const lm = fn(logits).loss;
        logits.data[i] = saved;
        expect(Math.abs(grad.data[i] - (lp - lm) / 2e-2), `${name}[${i}]`).toBeLessThan(1e-4);
      }
    }
  });

  it('Dropout: backward uses exactly the forward mask; eval is the identity', async () => {
    const d = new Dropout(0.25);
    const x = awayFromZero([50, 40], 23);
    const y = await d.forward(x);
    const dx = await d.backward(Tensor.fromArray(new Array<number>(2000).fill(1), [50, 40]));
    let kept = 0;
    for (let i = 0; i < x.size; i++) {
      const m = y.data[i] / x.data[i];
      expect(m === 0 || Math.abs(m - 1 / 0.75) < 1e-6).toBe(true);
      expect(dx.data[i]).toBeCloseTo(m, 6);
      if (m !== 0) kept++;
    }
    expect(kept / x.size).toBeGreaterThan(0.7);
    expect(kept / x.size).toBeLessThan(0.8);
    d.eval();
    expect(await d.forward(x)).toBe(x);
  });
});
