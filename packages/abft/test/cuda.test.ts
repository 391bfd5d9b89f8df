// The GPU schemes of @kintsugi/abft. Without a GPU every entry point fails with CudaUnavailableError;
// with one, the protected GEMM and model are compared with the CPU and injected faults must be corrected.
import { describe, expect, it } from 'vitest';
import { cudaGemmChecked, cudaStatus, CudaUnavailableError, DeviceTensor, gemm, Tensor } from '@kintsugi/cuda-core';
import { Conv2d, Flatten, Linear, manualSeed, ReLU, Sequential } from '@kintsugi/cuda-core/nn';

import { abftCommand, cudaMachineBalance, protectedGemm, ProtectedLinear, protectModel, runCudaOverhead } from '../src/index.js';
import { runCampaign } from '../src/inject.js';

const gpus = cudaStatus().deviceCount;

const mlp = () => {
  manualSeed(5);
  return new Sequential(new Flatten(), new Linear(64, 128), new ReLU(), new Linear(128, 10));
};
const sample = () => Tensor.random([4, 1, 8, 8], 9);
const near = (got: Tensor<'float32'>, want: Tensor<'float32'>, tol = 1e-3) => {
  for (let i = 0; i < want.size; i++) expect(Math.abs(got.data[i] - want.data[i])).toBeLessThan(tol * (1 + Math.abs(want.data[i])));
};

describe('GPU ABFT without a GPU', () => {
  it.skipIf(gpus > 0)('every GPU entry point gives CudaUnavailableError', async () => {
    const a = Tensor.random([4, 8], 1), b = Tensor.random([8, 5], 2);
    await expect(protectedGemm(a, b, { device: 'cuda:0' })).rejects.toThrow(CudaUnavailableError);
    await expect(protectedGemm(a, b, { device: 'cuda:0', scheme: 'thread' })).rejects.toThrow(/No CUDA device is available/);
    expect(() => cudaMachineBalance(0)).toThrow(CudaUnavailableError);
    expect(() => new ProtectedLinear(new Linear(8, 5), { device: 'cuda:0' })).toThrow(CudaUnavailableError);
    await expect(runCudaOverhead({ device: 'cuda:0', quick: true })).rejects.toThrow(CudaUnavailableError);
    expect(() => DeviceTensor.empty([2, 2])).toThrow(CudaUnavailableError);
    // The device is checked before the rest of the model: no sample needed to learn there is no GPU.
    await expect(protectModel(mlp(), { device: 'cuda:0' })).rejects.toThrow(CudaUnavailableError);
    await expect(protectModel(mlp(), { device: 'cuda', sample: sample(), scheme: 'thread' })).rejects.toThrow(/No CUDA device is available/);
    await expect(runCampaign({ device: 'cuda:0', trials: 1, cleanRuns: 0 })).rejects.toThrow(CudaUnavailableError);
    await expect(abftCommand(['campaign', '--device', 'cuda:0', '--trials', '1'])).rejects.toThrow(CudaUnavailableError);
  });

  it('bad device names and option mixes are rejected before any GPU work', async () => {
    const a = Tensor.random([4, 8], 1), b = Tensor.random([8, 5], 2);
    await expect(protectedGemm(a, b, { device: 'gpu0' })).rejects.toThrow("Expected 'cuda' or 'cuda:N' for options.device but received \"gpu0\"");
    await expect(cudaGemmChecked({} as never, {} as never)).rejects.toThrow(/Expected a DeviceTensor for a/);
    for (const device of ['gpu', 'cuda:-1', 'cuda:x', 'CUDA:0', '']) {
      const message = `Expected 'cpu' or 'cuda:N' for options.device but received ${JSON.stringify(device)}`;
      await expect(protectModel(mlp(), { device, sample: sample() })).rejects.toThrow(RangeError);
      await expect(protectModel(mlp(), { device, sample: sample() })).rejects.toThrow(message);
      await expect(runCampaign({ device })).rejects.toThrow(message);
    }
    await expect(protectModel(mlp(), { device: 0 as never })).rejects.toThrow(TypeError);
    await expect(protectModel(mlp(), { device: 0 as never })).rejects.toThrow("Expected 'cpu' or 'cuda:N' for options.device but received 0");
    await expect(abftCommand(['campaign', '--device', 'gpu'])).rejects.toThrow(RangeError);
  });

  it("device 'cpu' is the default: every layer's decision says so, with the balance's source", async () => {
    const model = new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new Flatten(), new Linear(256, 10));
    const x = sample();
    const pm = await protectModel(model, { device: 'cpu', sample: x, balance: { peakFlops: 100e9, bandwidth: 20e9 }, confirm: false });
    const d = pm.explain();
    expect(d.map((e) => [e.type, e.device, e.source])).toEqual([['Conv2d', 'cpu', 'given'], ['Linear', 'cpu', 'given']]);
    expect(d[0].reason).not.toMatch(/no GPU path/);
    const fixed = await protectModel(model, { scheme: 'thread' });
    expect(fixed.explain().map((e) => [e.device, e.source, e.scheme])).toEqual([['cpu', undefined, 'global'], ['cpu', undefined, 'thread']]);
  });
});

describe.skipIf(gpus === 0)('GPU ABFT on a GPU', () => {
  it('global and thread schemes match the CPU and correct an injected accumulator flip', async () => {
    const a = Tensor.random([70, 300], 1, -1, 1), b = Tensor.random([300, 130], 2, -1, 1);
    const ref = await gemm(a, b);
    for (const scheme of ['global', 'thread'] as const) {
      const clean = await protectedGemm(a, b, { device: 'cuda:0', scheme });
      expect(clean.report.events).toEqual([]);
      for (let i = 0; i < ref.size; i++) expect(Math.abs(clean.out.data[i] - ref.data[i])).toBeLessThan(1e-3 * (1 + Math.abs(ref.data[i])));
      const A = await DeviceTensor.from(a), B = await DeviceTensor.from(b);
      const hit = await cudaGemmChecked(A, B, { scheme, inject: { row: 17, col: 50, bit: 30 } });
      expect(hit.report.faultFired).toBe(true);
      expect(hit.report.events[0]).toMatchObject({ row: 17, col: 50, action: 'corrected' });
      const host = (await hit.out.download()) as Tensor<'float32'>;
      expect(Math.abs(host.get(17, 50) - ref.get(17, 50))).toBeLessThan(1e-3);
      for (const t of [A, B, hit.out]) t.dispose();
    }
  });

  it('ProtectedLinear on cuda:0 agrees with the CPU layer; the overhead table runs', async () => {
    const layer = new Linear(64, 32);
    const x = Tensor.random([8, 64], 3);
    const cpu = await new ProtectedLinear(layer).forward(x);
    const gpu = await new ProtectedLinear(layer, { device: 'cuda:0', scheme: 'thread' }).forward(x);
    for (let i = 0; i < cpu.size; i++) expect(Math.abs(gpu.data[i] - cpu.data[i])).toBeLessThan(1e-4 * (1 + Math.abs(cpu.data[i])));
    expect(await abftCommand(['overhead', '--quick', '--device', 'cuda:0'])).toBe(0);
  });

  it('protectModel on cuda:0: table balance, a decision per Linear, outputs as on the CPU; a layer fault is corrected', async () => {
    const model = mlp(), x = sample();
    const pm = await protectModel(model, { sample: x, device: 'cuda:0', confirm: false });
    const d = pm.explain();
    expect(d).toHaveLength(2);
    for (const e of d) expect(e).toMatchObject({ type: 'Linear', device: 'cuda:0', source: 'table', dtype: 'float32', balance: cudaMachineBalance(0).balance });
    expect(pm.machine).toMatchObject({ source: 'table' });
    expect(pm.machine!.device).toMatch(/cuda:0/);
    near(await pm.forward(x), await model.forward(x));
    expect(pm.events).toEqual([]);
    // A fault in the first layer's GEMM on its device: the global scheme flips the stored output
    // between the GEMM and its check, the thread scheme an accumulator.
    const layer = pm.layers[1] as ProtectedLinear;
    const h = await model.layers[0].forward(x) as Tensor<'float32'>;
    const want = await layer.layer.forward(h);
    for (const scheme of ['global', 'thread'] as const) {
      const r = await protectedGemm(h, layer.layer.weight.value, {
        device: layer.device, scheme, transB: true, bias: layer.layer.bias!.value.contiguousData(), inject: { row: 2, col: 40, bit: 30 },
      });
      expect(r.report.events[0], scheme).toMatchObject({ row: 2, col: 40, action: 'corrected' });
      near(r.out, want);
    }
    // A Conv2d stays on the CPU, and its decision says so.
    const conv = await protectModel(new Sequential(new Conv2d(1, 4, 3, { padding: 1 }), new Flatten(), new Linear(256, 10)), { sample: x, device: 'cuda:0', confirm: false });
    expect(conv.explain().map((e) => e.device)).toEqual(['cpu', 'cuda:0']);
    expect(conv.explain()[0].reason).toMatch(/Conv2d has no GPU path: runs on the CPU/);
  });

  it('the campaign runs on cuda:0: no false positives, accumulator and output faults found and corrected', async () => {
    const r = await runCampaign({ device: 'cuda:0', shapes: [[8, 128, 256]], trials: 3, cleanRuns: 5, bits: [30, 27, 23], targets: ['accumulator', 'output', 'input'] });
    for (const c of r.clean) expect(c.falsePositives).toBe(0);
    const get = (scheme: string, target: string) => r.summary.find((s) => s.scheme === scheme && s.target === target)!;
    for (const s of ['global', 'thread']) {
      expect(get(s, 'accumulator').recall).toBeGreaterThanOrEqual(0.99);
      expect(get(s, 'accumulator').correctedRate).toBe(1);
    }
    expect(get('global', 'output').recall).toBeGreaterThanOrEqual(0.99);
    expect(get('global', 'output').correctedRate).toBe(1);
    expect(await abftCommand(['campaign', '--device', 'cuda:0', '--trials', '1', '--clean', '1', '--bits', '30'])).toBe(0);
  });
});
