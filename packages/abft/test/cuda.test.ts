// The GPU schemes of @kintsugi/abft. Without a GPU every entry point fails with CudaUnavailableError;
// with one, the protected GEMM is compared with the CPU and injected faults must be corrected.
import { describe, expect, it } from 'vitest';
import { cudaGemmChecked, cudaStatus, CudaUnavailableError, DeviceTensor, gemm, Tensor } from '@kintsugi/cuda-core';
import { Linear } from '@kintsugi/cuda-core/nn';

import { abftCommand, cudaMachineBalance, protectedGemm, ProtectedLinear, runCudaOverhead } from '../src/index.js';

const gpus = cudaStatus().deviceCount;

describe('GPU ABFT without a GPU', () => {
  it.skipIf(gpus > 0)('every GPU entry point gives CudaUnavailableError', async () => {
    const a = Tensor.random([4, 8], 1), b = Tensor.random([8, 5], 2);
    await expect(protectedGemm(a, b, { device: 'cuda:0' })).rejects.toThrow(CudaUnavailableError);
    await expect(protectedGemm(a, b, { device: 'cuda:0', scheme: 'thread' })).rejects.toThrow(/No CUDA device is available/);
    expect(() => cudaMachineBalance(0)).toThrow(CudaUnavailableError);
    expect(() => new ProtectedLinear(new Linear(8, 5), { device: 'cuda:0' })).toThrow(CudaUnavailableError);
    await expect(runCudaOverhead({ device: 'cuda:0', quick: true })).rejects.toThrow(CudaUnavailableError);
    expect(() => DeviceTensor.empty([2, 2])).toThrow(CudaUnavailableError);
  });

  it('bad device names and option mixes are rejected before any GPU work', async () => {
    const a = Tensor.random([4, 8], 1), b = Tensor.random([8, 5], 2);
    await expect(protectedGemm(a, b, { device: 'gpu0' })).rejects.toThrow("Expected 'cuda' or 'cuda:N' for options.device but received \"gpu0\"");
    await expect(cudaGemmChecked({} as never, {} as never)).rejects.toThrow(/Expected a DeviceTensor for a/);
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
});
