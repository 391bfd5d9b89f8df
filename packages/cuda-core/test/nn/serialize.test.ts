// safetensors encoding and model files: round trips, the exact byte layout, and clear errors for
// truncated, corrupted or mismatched files.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/index.js';
import {
  BatchNorm2d, Conv2d, decodeModel, decodeSafetensors, EmbeddingBag, encodeModel, encodeSafetensors, Flatten, Linear, loadModel, loadModelFile,
  loadWeights, manualSeed, MaxPool2d, mlp, ReLU, ResidualBlock, Sequential, Softmax, Dropout, AvgPool2d, GlobalAvgPool2d,
} from '../../src/nn/index.js';
import { randomTensor } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kintsugi-models-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function withHeader(json: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

describe('safetensors', () => {
  it('round-trips dtypes, shapes and metadata with the documented layout', () => {
    const a = Tensor.fromArray([1.5, -2, 3, 4, 5, 6], [2, 3]);
    const b = Tensor.fromArray([7, -8], [2], 'int32');
    const c = Tensor.fromArray([1, 2, 3], [3], 'uint8');
    const bytes = encodeSafetensors({ a, b: b.transpose(0, 0), c }, { note: 'hi' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0); // data 8-byte aligned
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    expect(header).toEqual({
      __metadata__: { note: 'hi' },
      a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
      b: { dtype: 'I32', shape: [2], data_offsets: [24, 32] },
      c: { dtype: 'U8', shape: [3], data_offsets: [32, 35] },
    });
    expect(bytes.length).toBe(8 + n + 35);
    expect(new Float32Array(bytes.slice(8 + n, 8 + n + 24).buffer)).toEqual(a.data); // raw little-endian floats
    const back = decodeSafetensors(bytes);
    expect(back.metadata).toEqual({ note: 'hi' });
    expect(back.tensors.get('a')!.toArray()).toEqual(a.data);
    expect(back.tensors.get('b')!.dtype).toBe('int32');
    expect([...back.tensors.get('c')!.toArray()]).toEqual([1, 2, 3]);
    // A non-contiguous view is written in logical order.
    const t = decodeSafetensors(encodeSafetensors({ t: a.transpose() })).tensors.get('t')!;
    expect(t.shape).toEqual([3, 2]);
    expect([...t.toArray()]).toEqual([1.5, 4, -2, 5, 3, 6]);
  });

  it('rejects truncated and corrupted files with what was expected', () => {
    const good = encodeSafetensors({ w: Tensor.fromArray([1, 2, 3, 4], [2, 2]) });
    expect(() => decodeSafetensors(good.subarray(0, 5), 'f')).toThrow('Expected at least 8 bytes (the header length) for f but received 5 bytes (truncated)');
    expect(() => decodeSafetensors(good.subarray(0, 40), 'f')).toThrow(/^Expected a length in \[2, 32\] \(the file has 40 bytes\) for f header length but received \d+ \(truncated or not a safetensors file\)$/);
    expect(() => decodeSafetensors(good.subarray(0, good.length - 4), 'f')).toThrow(/for f tensor "w" data_offsets but received 16 \(file truncated\)$/);
    const extra = new Uint8Array(good.length + 4);
    extra.set(good);
    expect(() => decodeSafetensors(extra, 'f')).toThrow(/\(trailing or missing data\)$/);
    expect(() => decodeSafetensors(withHeader('{"w": {"dtype": "F32", "shape": [2], '), 'f')).toThrow(/^Expected valid UTF-8 JSON for f header but received unparseable text/);
    expect(() => decodeSafetensors(withHeader('{"w":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}', new Uint8Array(2)), 'f')).toThrow('Expected one of F32 | F64 | I32 | U8 for f tensor "w" dtype but received "BF16"');
    expect(() => decodeSafetensors(withHeader('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', new Uint8Array(8)), 'f')).toThrow('Expected 12 bytes for F32 [3] for f tensor "w" data_offsets but received 8 bytes');
    expect(() => decodeSafetensors(withHeader('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', new Uint8Array(3)), 'f')).toThrow(/gaps or overlaps/);
    expect(() => decodeSafetensors(withHeader('[1,2]'), 'f')).toThrow(TypeError);
  });
});

async function sameOutputs(a: Sequential, b: Sequential, x: Tensor<'float32'>): Promise<void> {
  a.eval();
  b.eval();
  expect((await b.forward(x)).data).toEqual((await a.forward(x)).data);
}

describe('model files', () => {
  it('saveModel / loadModel rebuild every layer type with weights and BatchNorm statistics', async () => {
    manualSeed(11);
    const model = new Sequential(
      new Conv2d(1, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU(), new MaxPool2d(2), new ResidualBlock(4, 6, 2),
      new AvgPool2d(1), new GlobalAvgPool2d(), new Dropout(0.2), new Linear(6, 5, { bias: false }), new Softmax(),
    );
    await model.forward(randomTensor([3, 1, 8, 8], 1)); // training-mode forward moves the running statistics
    const path = join(dir, 'all.safetensors');
    const { saveModel } = await import('../../src/nn/index.js');
    await saveModel(model, path, { 'kintsugi.dataset': 'unit-test' });
    const loaded = await loadModel(path);
    expect(loaded).toBeInstanceOf(Sequential);
    expect(loaded.training).toBe(false);
    expect([...loaded.stateDict().keys()]).toEqual([...model.stateDict().keys()]);
    expect([...model.stateDict().keys()]).toContain('4.shortcut.1.runningVar');
    await sameOutputs(model, loaded as Sequential, randomTensor([2, 1, 8, 8], 2));
    const file = await loadModelFile(path);
    expect(file.metadata['kintsugi.dataset']).toBe('unit-test');
    expect(file.config).toEqual(model.config());
  });

  it('a file whose shapes do not match the architecture is rejected before anything is copied', async () => {
    manualSeed(12);
    const small = new Sequential(new Flatten(), new Linear(784, 100), new ReLU(), new Linear(100, 10));
    const path = join(dir, 'small.safetensors');
    const { saveModel } = await import('../../src/nn/index.js');
    await saveModel(small, path);
    const target = mlp();
    const before = target.layers[1].parameters()[0].value.data.slice();
    await expect(loadWeights(target, path)).rejects.toThrow(/tensors .*5\.weight.* for this architecture for .*small\.safetensors but received a file without them/);
    const wide = new Sequential(new Flatten(), new Linear(784, 200), new ReLU(), new Linear(200, 10));
    await saveModel(wide, path);
    const other = new Sequential(new Flatten(), new Linear(784, 100), new ReLU(), new Linear(100, 10));
    await expect(loadWeights(other, path)).rejects.toThrow(/^Expected shape \[100,784\] for .*small\.safetensors tensor "1\.weight" but received shape \[200,784\]$/);
    expect(target.layers[1].parameters()[0].value.data).toEqual(before);
  });

  it('corrupted architecture metadata and truncated model files give clear errors', async () => {
    manualSeed(13);
    const bytes = encodeModel(mlp());
    expect(() => decodeModel(bytes.subarray(0, bytes.length - 1000), 'm')).toThrow(/file truncated/);
    const noConfig = encodeSafetensors({ w: Tensor.fromArray([1]) });
    expect(() => decodeModel(noConfig, 'm')).toThrow('Expected the architecture JSON (a file written by saveModel) for m __metadata__["kintsugi.config"] but received undefined');
    const badType = encodeSafetensors({}, { 'kintsugi.config': '{"type":"Transformer"}' });
    expect(() => decodeModel(badType, 'm')).toThrow(/^Expected a known layer type .* for config.type but received "Transformer"$/);
    const path = join(dir, 'flipped.safetensors');
    const flipped = bytes.slice();
    flipped[3] = 0x7f; // a high byte of the header length
    writeFileSync(path, flipped);
    await expect(loadModel(path)).rejects.toThrow(/header length but received \d+ \(truncated or not a safetensors file\)$/);
    expect(readFileSync(path).length).toBe(bytes.length);
  });

  it('EmbeddingBag tables are stored and rebuilt too (loadModelFile)', async () => {
    const bag = new EmbeddingBag(10, 4, { mode: 'sum' });
    const path = join(dir, 'bag.safetensors');
    const { saveModel } = await import('../../src/nn/index.js');
    await saveModel(bag, path);
    const { model } = await loadModelFile(path);
    expect(model).toBeInstanceOf(EmbeddingBag);
    expect((model as EmbeddingBag).weight.value.data).toEqual(bag.weight.value.data);
    await expect(loadModel(path)).rejects.toThrow(TypeError);
  });
});
