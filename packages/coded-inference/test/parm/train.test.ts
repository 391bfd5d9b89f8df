import { describe, expect, it } from 'vitest';
import { loadMnist, mlp, manualSeed, subset } from '@kintsugi/cuda-core/nn';

import { ParityCode, inputSpec, trainParityModel } from '../../src/parm/index.js';

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
