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
