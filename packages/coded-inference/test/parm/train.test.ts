import { describe, expect, it } from 'vitest';
import { loadMnist, loadModelFile, mlp, manualSeed, resnetSmall, subset, type Module } from '@kintsugi/cuda-core/nn';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor } from '@kintsugi/cuda-core';

import { ParityCode, type ParityEpoch, addReconstructionLoss, inputSpec, parityModelLike, scaleHeadForCanvas, shiftImages, trainParityModel } from '../../src/parm/index.js';

describe('parity-model training', () => {
  it('lowers the reconstruction loss within a few epochs on a slice of MNIST', async () => {
    // An untrained deployed MLP is fine: the parity model only has to learn F(X1) + F(X2).
    manualSeed(3);
    const deployed = mlp();
    deployed.eval();
    const train = subset(await loadMnist('train'), 1400);
    const epochs: { loss: number; validationLoss: number; validationAccuracy: number }[] = [];
    const res = await trainParityModel({
      deployed, code: new ParityCode({ k: 2 }), train, input: inputSpec({}, 'mnist'),
      epochs: 4, validation: 400, init: 'random', lr: 3e-3, seed: 5, onEpoch: (e) => epochs.push(e),
    });
    expect(epochs).toHaveLength(4);
    expect(epochs[3].loss).toBeLessThan(epochs[0].loss * 0.7);
    expect(epochs[3].validationLoss).toBeLessThan(epochs[0].validationLoss);
    expect(res.bestValidationAccuracy).toBe(Math.max(...epochs.map((e) => e.validationAccuracy)));
    expect(res.model.parameterCount()).toBe(deployed.parameterCount());
  }, 60_000);
});

describe('full-canvas concatenation', () => {
  it('scales a globally pooled head so the parity model starts at Σ F(X_i), and refuses other heads', async () => {
    manualSeed(11);
    const deployed = resnetSmall();
    deployed.eval();
    const code = new ParityCode({ k: 3, encoder: 'concat', canvas: 'full' }); // 2×2 grid, one tile empty
    const parity = parityModelLike(deployed, 'deployed');
    scaleHeadForCanvas(parity, code);
    parity.eval();
    const x = new Tensor(Float32Array.from({ length: 2 * 56 * 56 }, (_, i) => Math.sin(i * 0.37)), [2, 1, 56, 56]);
    // Same features, head W·g + b → 4·W·g + 3·b: the parity output is 4·(deployed − b) + 3·b exactly.
    const b = deployed.stateDict().get('7.bias')!.data;
    const base = (await deployed.forward(x)).contiguousData(), scaled = (await parity.forward(x)).contiguousData();
    for (let i = 0; i < base.length; i++) expect(scaled[i]).toBeCloseTo(4 * (base[i] - b[i % 10]) + 3 * b[i % 10], 4);
    expect(() => scaleHeadForCanvas(parity, new ParityCode({ k: 2, encoder: 'concat' }))).toThrow("Expected a full-canvas concatenation code for scaleHeadForCanvas but received a concat code with a 'same' canvas");
    expect(() => scaleHeadForCanvas(parity, new ParityCode({ k: 2 }))).toThrow('Expected a full-canvas concatenation code for scaleHeadForCanvas but received a sum code');
    expect(() => scaleHeadForCanvas(parityModelLike(mlp(), 'random'), code)).toThrow('A full-canvas concatenation code needs a model that ends in GlobalAvgPool2d and Linear (fully convolutional, any input size); this one ends in ReLU, Linear');
  });

  it('trains and evaluates a parity model on the full canvas (28×56 queries for k = 2)', async () => {
    manualSeed(4);
    const deployed = resnetSmall();
    deployed.eval();
    const train = subset(await loadMnist('train'), 300);
    const code = new ParityCode({ k: 2, encoder: 'concat', canvas: 'full' });
    const input = inputSpec({}, 'mnist');
    const res = await trainParityModel({ deployed, code, train, input, epochs: 1, validation: 100, init: 'deployed', batchSize: 16, maxBatches: 2, seed: 2 });
    expect(res.history).toHaveLength(1);
    expect(Number.isFinite(res.history[0].validationLoss)).toBe(true);
    const y = await res.model.forward(new Tensor(new Float32Array(28 * 56), [1, 1, 28, 56]));
    expect(y.shape).toEqual([1, 10]);
  }, 60_000);
});

describe('decoded cross-entropy term', () => {
  // Loss of member j: −log softmax(F_j + (y − target)/c_j)[label_j], summed over j, mean over rows.
  const lossOf = (y: Float32Array, target: Float32Array, outs: Float32Array[], labels: number[][], c: number[], classes: number) =>
    addReconstructionLoss(y, target, outs, labels, c, classes, 2, new Float32Array(y.length));

  it('adds weight × the decoded predictions\' cross-entropy and its exact gradient', () => {
    const classes = 5, n = 3, c = [1, 2, 3];
    const rnd = (len: number, seed: number) => Float32Array.from({ length: len }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 3);
    const outs = c.map((_, j) => rnd(n * classes, j + 1));
    const target = new Float32Array(n * classes);
    outs.forEach((o, j) => o.forEach((v, i) => (target[i] += c[j] * v)));
    const y = rnd(n * classes, 9);
    const labels = [[0, 4, 2], [1, 1, 3], [4, 0, 0]];
    const grad = new Float32Array(n * classes).fill(0.25); // the term adds to what is there
    const loss = addReconstructionLoss(y, target, outs, labels, c, classes, 2, grad);
    // Reference loss in float64.
    let ref = 0;
    for (let j = 0; j < c.length; j++) {
      for (let r = 0; r < n; r++) {
        const d = Array.from({ length: classes }, (_, q) => outs[j][r * classes + q] + (y[r * classes + q] - target[r * classes + q]) / c[j]);
        const m = Math.max(...d);
        const lse = m + Math.log(d.reduce((s, v) => s + Math.exp(v - m), 0));
        ref += lse - d[labels[j][r]];
      }
    }
    expect(loss).toBeCloseTo((2 * ref) / n, 5);
    // Central differences of the loss against the gradient (minus the 0.25 already there).
    for (const i of [0, 4, 7, 14]) {
      const h = 1e-2;
      const up = Float32Array.from(y), down = Float32Array.from(y);
      up[i] += h;
      down[i] -= h;
      const fd = (lossOf(up, target, outs, labels, c, classes) - lossOf(down, target, outs, labels, c, classes)) / (2 * h);
      expect(grad[i] - 0.25).toBeCloseTo(fd, 3);
    }
  });

  it('starts a parity model from given weights of the same architecture, and refuses others', () => {
    manualSeed(1);
    const deployed = mlp();
    manualSeed(2);
    const earlier = mlp();
    const copy = parityModelLike(deployed, earlier);
    for (const [name, t] of copy.stateDict()) expect(Array.from(t.data)).toEqual(Array.from(earlier.stateDict().get(name)!.data));
    expect(() => parityModelLike(deployed, mlp(784, 5))).toThrow(/do not fit the deployed architecture/);
  });

  it('trains with the term on a slice of MNIST', async () => {
    manualSeed(3);
    const deployed = mlp();
    deployed.eval();
    const train = subset(await loadMnist('train'), 600);
    const losses: number[] = [];
    await trainParityModel({
      deployed, code: new ParityCode({ k: 2 }), train, input: inputSpec({}, 'mnist'), epochs: 2, validation: 200,
      init: 'random', lr: 3e-3, seed: 5, reconstructionWeight: 1, onEpoch: (e) => losses.push(e.loss),
    });
    expect(losses[1]).toBeLessThan(losses[0]);
    await expect(trainParityModel({ deployed, code: new ParityCode({ k: 2 }), train, input: inputSpec({}, 'mnist'), epochs: 1, reconstructionWeight: -1 })).rejects.toThrow('Expected a finite reconstructionWeight ≥ 0 but received -1');
  }, 60_000);
});

describe('random-shift augmentation', () => {
  it('translates each image by its own offsets and fills the uncovered border', () => {
    const shape = [2, 3, 4] as const; // two channels of 3×4
    const px = 24, n = 3;
    const x = Float32Array.from({ length: n * px }, (_, i) => i + 1);
    const dx = [1, -2, 0], dy = [0, 1, -3];
    const got = shiftImages(x, shape, dx, dy, -7);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < 2; c++) {
        for (let y = 0; y < 3; y++) {
          for (let xx = 0; xx < 4; xx++) {
            const sy = y - dy[i], sx = xx - dx[i];
            const want = sy >= 0 && sy < 3 && sx >= 0 && sx < 4 ? x[i * px + (c * 3 + sy) * 4 + sx] : -7;
            expect(got[i * px + (c * 3 + y) * 4 + xx]).toBe(want);
          }
        }
      }
    }
    expect(Array.from(shiftImages(x, shape, [0, 0, 0], [0, 0, 0], 0))).toEqual(Array.from(x));
    expect(() => shiftImages(x, shape, [0], [0, 0, 0], 0)).toThrow('Expected one shift per image (3) but received 1 and 3');
  });

  it('trains on shifted images with targets from the deployed model on those images', async () => {
    manualSeed(3);
    const deployed = mlp();
    deployed.eval();
    const train = subset(await loadMnist('train'), 600);
    const losses: number[] = [];
    const opts = { deployed, code: new ParityCode({ k: 2 }), train, input: inputSpec({}, 'mnist'), validation: 200, init: 'random' as const, lr: 3e-3, seed: 5 };
    await trainParityModel({ ...opts, epochs: 3, shift: 2, onEpoch: (e) => losses.push(e.loss) });
    expect(losses[2]).toBeLessThan(losses[0]);
    await expect(trainParityModel({ ...opts, epochs: 1, shift: 28 })).rejects.toThrow('Expected shift to be an integer in [0, 27] but received 28');
  }, 60_000);
});

// The shipped deployed MLP (97-98% on MNIST), so reconstruction accuracy means something.
async function shippedMlp() {
  const { model } = await loadModelFile(join(dirname(fileURLToPath(import.meta.url)), '../../models/mnist-mlp.safetensors'));
  (model as Module).eval();
  return model as Module;
}

describe('weight averaging', () => {
  it('scores the live and the averaged weights each epoch and keeps the best of all', async () => {
    const deployed = await shippedMlp();
    const train = subset(await loadMnist('train'), 600);
    const opts = { deployed, code: new ParityCode({ k: 2 }), train, input: inputSpec({}, 'mnist'), validation: 200, init: 'deployed' as const, lr: 1e-3, seed: 5 };
    const epochs: ParityEpoch[] = [];
    const res = await trainParityModel({ ...opts, epochs: 3, averageDecay: 0.9, onEpoch: (e) => epochs.push(e) });
    const scores = epochs.map((e) => Math.max(e.validationAccuracy, e.averageAccuracy!));
    for (const e of epochs) expect(e.averageAccuracy).toBeGreaterThan(0.2); // far above chance (0.1): the average is of trained weights
    expect(res.bestValidationAccuracy).toBe(Math.max(...scores));
    expect(scores[res.bestEpoch]).toBe(Math.max(...scores)); // ties go to the lower held-out MSE
    // Plain training reports no average.
    const plain: ParityEpoch[] = [];
    await trainParityModel({ ...opts, epochs: 1, maxBatches: 2, onEpoch: (e) => plain.push(e) });
    expect(plain[0].averageAccuracy).toBeUndefined();
    for (const bad of [1, -0.5, Number.NaN]) {
      await expect(trainParityModel({ ...opts, epochs: 1, averageDecay: bad })).rejects.toThrow(`Expected averageDecay in [0, 1) but received ${bad}`);
    }
  }, 60_000);

  it('draws the held-out images by the held-out seed, so rounds of one model can share them', async () => {
    const deployed = await shippedMlp();
    const train = subset(await loadMnist('train'), 600);
    const opts = { deployed, code: new ParityCode({ k: 2 }), train, input: inputSpec({}, 'mnist'), epochs: 1, validation: 200, init: 'deployed' as const, maxBatches: 1, lr: 0 };
    // lr 0: the weights stay the deployed ones, so the held-out score depends on the draw alone.
    const score = async (seed: number, validationSeed?: number) => (await trainParityModel({ ...opts, seed, validationSeed })).history[0].validationLoss;
    expect(await score(5, 9)).toBe(await score(6, 9));
    expect(await score(5)).not.toBe(await score(6));
  }, 60_000);

  it('keeps an exact moving average: a decay near 1 returns the starting weights when they score best', async () => {
    const deployed = await shippedMlp();
    const train = subset(await loadMnist('train'), 600);
    // Started from the deployed weights, with a learning rate that wrecks the live weights in a few
    // steps; the average (decay 1 − 1e-9) stays at the start, which reconstructs far better.
    const start = parityModelLike(deployed, 'deployed');
    const res = await trainParityModel({ deployed, code: new ParityCode({ k: 2 }), train, input: inputSpec({}, 'mnist'), epochs: 1, validation: 200, init: 'deployed', lr: 5, cosine: false, maxBatches: 3, averageDecay: 1 - 1e-9, seed: 5 });
    expect(res.history[0].averageAccuracy).toBeGreaterThan(res.history[0].validationAccuracy);
    for (const [name, t] of res.model.stateDict()) {
      const want = start.stateDict().get(name)!.data;
      for (let i = 0; i < want.length; i += 97) expect(t.data[i]).toBeCloseTo(want[i], 5);
    }
  }, 60_000);
});
