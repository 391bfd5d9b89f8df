// Peak FLOP/s: the GPU table against NVIDIA's published figures, and the CPU's measured peak.
import { describe, expect, it } from 'vitest';

import { cpuFlopsPerCycle, cpuPeak, gpuPeakFlops, measureCpu } from '../../src/index.js';

const within = (value: number, want: number, rel: number) => expect(Math.abs(value / want - 1)).toBeLessThan(rel);

describe('gpuPeakFlops', () => {
  it.each([
    // [arch, SMs, MHz, dtype, published FLOP/s]
    ['8.0', 108, 1410, 'fp32', 19.5e12], // A100
    ['8.0', 108, 1410, 'tf32', 156e12],
    ['8.0', 108, 1410, 'fp16', 312e12],
    ['sm_80', 108, 1410, 'bf16', 312e12],
    ['9.0', 132, 1830, 'fp16', 989e12], // H100 SXM, dense
    ['9.0', 132, 1830, 'tf32', 494.7e12],
    ['9.0', 132, 1980, 'fp32', 67e12], // fp32 datasheet figure is at the 1980 MHz max boost
    ['7.5', 40, 1590, 'fp32', 8.1e12], // T4
    ['7.5', 40, 1590, 'fp16', 65e12],
    ['8.6', 82, 1695, 'fp32', 35.6e12], // RTX 3090
    ['8.6', 72, 1695, 'fp16', 125e12], // A10
    ['8.9', 58, 2040, 'fp32', 30.3e12], // L4
    ['8.9', 58, 2040, 'fp16', 121e12],
    ['89', 128, 2520, 'fp32', 82.6e12], // RTX 4090
  ] as const)('sm %s × %d SMs at %d MHz, %s ≈ %d', (cc, sms, mhz, dtype, want) => {
    within(gpuPeakFlops({ computeCapability: cc, multiprocessors: sms, clockKHz: mhz * 1e3 }, dtype), want, 0.01);
  });

  it('rejects unknown architectures and unsupported dtypes clearly', () => {
    expect(() => gpuPeakFlops({ computeCapability: '6.1', multiprocessors: 20, clockKHz: 1.5e6 })).toThrow(/one of sm_75, sm_80, sm_86, sm_89, sm_90 .* but received sm_61/);
    expect(() => gpuPeakFlops({ computeCapability: '7.5', multiprocessors: 40, clockKHz: 1.59e6 }, 'bf16')).toThrow(/Expected one of fp32, fp16 on sm_75 for dtype but received "bf16"/);
    expect(() => gpuPeakFlops({ computeCapability: 'ampere', multiprocessors: 1, clockKHz: 1 })).toThrow(RangeError);
    expect(() => gpuPeakFlops({ computeCapability: '8.0', multiprocessors: 0, clockKHz: 1e6 })).toThrow(/positive multiprocessors/);
  });
});

describe('CPU peak', () => {
  it('counts FLOPs per cycle from the ISA', () => {
    expect(cpuFlopsPerCycle({ brand: 'Intel Xeon Gold 6248', activeIsa: 'avx512' })).toBe(64);
    expect(cpuFlopsPerCycle({ brand: 'AMD EPYC 9654', activeIsa: 'avx512' })).toBe(32);
    expect(cpuFlopsPerCycle({ brand: 'Intel Core i7', activeIsa: 'avx2' })).toBe(32);
    expect(cpuFlopsPerCycle({ brand: 'any', activeIsa: 'portable' })).toBe(16);
  });

  it('measures a positive FMA rate and bandwidth once, and says which peak it uses', async () => {
    const m = await measureCpu();
    expect(m.gemmFlops).toBeGreaterThan(1e9);
    expect(m.bandwidth).toBeGreaterThan(1e8);
    expect(await measureCpu()).toBe(m); // cached
    const again = await measureCpu({ refresh: true }); // measured again, best kept
    expect(again.gemmFlops).toBeGreaterThanOrEqual(m.gemmFlops);
    expect(again.bandwidth).toBeGreaterThanOrEqual(m.bandwidth);
    const p = await cpuPeak();
    expect(p).toMatchObject({ source: 'measured', peakFlops: again.gemmFlops, bandwidth: again.bandwidth });
    if (p.theoreticalFlops !== null) {
      expect(p.theoreticalFlops).toBeCloseTo(p.threads * (p.clockMHz as number) * 1e6 * p.flopsPerCycle, 0);
      expect(await cpuPeak({ source: 'theoretical' })).toMatchObject({ source: 'theoretical', peakFlops: p.theoreticalFlops });
    }
  });
});
