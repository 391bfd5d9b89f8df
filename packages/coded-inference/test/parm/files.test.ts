import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '@kintsugi/cuda-core';
import { loadModel, manualSeed, mlp, resnetSmall } from '@kintsugi/cuda-core/nn';

import { ParityCode, decodeParityModel, encodeParityModel, loadParityModel, saveParityModel, servingModelFromFile } from '../../src/parm/index.js';

const dir = await mkdtemp(join(tmpdir(), 'parm-files-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('parity model files', () => {
  it('round-trips weights and the code metadata (k, r, parity index, coefficients, encoder)', async () => {
    manualSeed(7);
    const model = mlp();
    const code = new ParityCode({ k: 3, r: 2 });
    const path = join(dir, 'p.safetensors');
    await saveParityModel(model, path, { ...code.spec, parityIndex: 1, dataset: 'mnist', deployed: 'mnist-mlp.safetensors', validationAccuracy: 0.9 }, { 'kintsugi.input': JSON.stringify({ shape: [1, 28, 28], classes: 10 }) });
    const loaded = await loadParityModel(path);
    expect(loaded.parm).toMatchObject({ k: 3, r: 2, parityIndex: 1, encoder: 'sum', coefficients: [[1, 1, 1], [1, 2, 3]], dataset: 'mnist', validationAccuracy: 0.9 });
    expect(loaded.code.coefficients).toEqual(code.coefficients);
    const x = Tensor.random([2, 1, 28, 28], 9);
    model.eval();
    expect(Array.from((await loaded.model.forward(x)).data)).toEqual(Array.from((await model.forward(x)).data));
    // Still an ordinary model file: loadModel and the serving adapter read it.
    expect((await loadModel(path)).parameterCount()).toBe(model.parameterCount());
    const serving = await servingModelFromFile(path, 'parity');
    expect(serving.inputShape).toEqual([1, 28, 28]);
    expect(Array.from(await serving.predict(x.contiguousData() as Float32Array, 2))).toEqual(Array.from((await model.forward(x)).data));
  });

  it('keeps a concatenation code\'s own tile grid', async () => {
    manualSeed(7);
    const model = mlp();
    const code = new ParityCode({ k: 2, encoder: 'concat', grid: [2, 1] });
    expect(code.spec.grid).toEqual([2, 1]);
    expect(new ParityCode({ k: 2, encoder: 'concat' }).spec).not.toHaveProperty('grid'); // the default is not written
    const path = join(dir, 'g.safetensors');
    await saveParityModel(model, path, { ...code.spec, parityIndex: 0 });
    const loaded = await loadParityModel(path);
    expect(loaded.code.grid).toEqual([2, 1]);
    expect(() => encodeParityModel(model, { k: 2, r: 1, encoder: 'sum', coefficients: [[1, 1]], parityIndex: 0, grid: [2, 1] })).toThrow(/nothing for a summation code/);
  });

  it('serves a full-canvas parity model at its canvas shape', async () => {
    manualSeed(3);
    const model = resnetSmall();
    const code = new ParityCode({ k: 2, encoder: 'concat', canvas: 'full' });
    const path = join(dir, 'full.safetensors');
    await saveParityModel(model, path, { ...code.spec, parityIndex: 0 }, { 'kintsugi.input': JSON.stringify({ mean: 0.13, std: 0.31, shape: [1, 28, 28] }) });
    expect((await loadParityModel(path)).code.canvas).toBe('full');
    const serving = await servingModelFromFile(path, 'parity');
    expect(serving.inputShape).toEqual([1, 28, 56]);
    expect((await serving.predict(new Float32Array(28 * 56), 1)).length).toBe(10);
  });

  it('refuses files without or with broken code metadata', async () => {
    manualSeed(1);
    const model = mlp();
    expect(() => encodeParityModel(model, { k: 2, r: 1, encoder: 'sum', coefficients: [[1, 1]], parityIndex: 1 })).toThrow('Expected an integer in [0, 0] for parity metadata.parityIndex but received 1');
    expect(() => encodeParityModel(model, { k: 2, r: 1, encoder: 'xor' as 'sum', coefficients: [[1, 1]], parityIndex: 0 })).toThrow(/sum \| concat for parity metadata.encoder/);
    const { encodeModel } = await import('@kintsugi/cuda-core/nn');
    expect(() => decodeParityModel(encodeModel(model), 'plain.safetensors')).toThrow(/Expected the parity code .* for plain.safetensors __metadata__\["kintsugi.parm"\] but received undefined/);
  });
});
