// Intensity-guided scheme selection (Kosaian & Rashmi, SC'21). A layer whose arithmetic intensity
// AI = 2MNK / (bytes · (MN + MK + KN)) is below the machine balance (peak FLOP/s ÷ memory
// bandwidth) is memory-bound: extra arithmetic next to the kernel is nearly free there, so the
// fused thread-level scheme is the prior; above it the kernel is compute-bound and the global
// scheme's separate O(MK + MN) passes are the prior. The balance is measured once per process
// (a short compute-bound GEMM and a streaming copy) and cached; timing both schemes on the layer
// itself can confirm or overturn the prior, and explain() shows which happened and why.
import { cpuInfo, cudaProperties, gpuPeakFlops, measureCpu, numThreads } from '@kintsugi/cuda-core';

import type { Scheme } from './gemm.js';

export interface MachineBalance {
  /** Achieved FLOP/s of a compute-bound fp32 GEMM (the FMA micro-benchmark). */
  peakFlops: number;
  /** Bytes/s of a streaming copy larger than the last-level cache. */
  bandwidth: number;
  /** peakFlops / bandwidth (FLOP per byte). */
  balance: number;
  device: string;
  source: 'measured' | 'given' | 'table';
}

let cached: MachineBalance | null = null;

function median(values: number[]): number {
  const s = [...values].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

function givenBalance(given: { peakFlops: number; bandwidth: number }, device: string): MachineBalance {
  return { peakFlops: given.peakFlops, bandwidth: given.bandwidth, balance: given.peakFlops / given.bandwidth, device, source: 'given' };
}

/** Measures (once per process) the device's FLOP/s and bandwidth; `given` overrides. */
export async function machineBalance(given?: { peakFlops: number; bandwidth: number }): Promise<MachineBalance> {
  const info = cpuInfo();
  const device = `${info.brand} (${numThreads()} threads, ${info.activeIsa})`;
  if (given) {
    cached = givenBalance(given, device);
    return cached;
  }
  if (cached) return cached;
  // The same FMA (1024³ sgemm) and streaming-copy measurement the utilization study uses.
  const { gemmFlops: peakFlops, bandwidth } = await measureCpu();
  cached = { peakFlops, bandwidth, balance: peakFlops / bandwidth, device, source: 'measured' };
  return cached;
}

/**
 * A GPU's balance from its datasheet figures: peak FLOP/s of the dtype from the per-architecture
 * table (gpuPeakFlops: SMs × SM clock × FLOPs per clock) over the theoretical DRAM bandwidth
 * (cudaProperties().memoryBandwidth); `given` figures override the table. CudaUnavailableError
 * without a GPU.
 */
export function cudaMachineBalance(device = 0, dtype: 'fp32' | 'fp16' | 'bf16' = 'fp32', given?: { peakFlops: number; bandwidth: number }): MachineBalance {
  const p = cudaProperties(device);
  const name = `${p.name} (cuda:${device}, ${dtype})`;
  if (given) return givenBalance(given, name);
  const peakFlops = gpuPeakFlops({ computeCapability: p.computeCapability, multiprocessors: p.multiprocessors, clockKHz: p.smClockKHz }, dtype);
  return { peakFlops, bandwidth: p.memoryBandwidth, balance: peakFlops / p.memoryBandwidth, device: name, source: 'table' };
}

/** AI of an M x N x K GEMM with `bytes`-wide elements. */
export function arithmeticIntensity(m: number, n: number, k: number, bytes = 4): number {
  return (2 * m * n * k) / (bytes * (m * n + m * k + k * n));
}

export interface LayerDecision {
  layer: string;
  type: string;
  /** GEMM view of the layer. */
  m: number;
  n: number;
  k: number;
  dtype: 'float32';
  /** Where the layer runs: 'cpu' or 'cuda:N'. */
  device: string;
  intensity: number;
  /** The balance the rule compared with (the model's device), and where it came from; NaN and absent for a fixed scheme. */
  balance: number;
  source?: MachineBalance['source'];
  bound: 'memory' | 'compute';
  /** The intensity rule's pick. */
  prior: Scheme;
  /** Median ms of each candidate on the layer, when timed. */
  timings?: Partial<Record<Scheme, number>>;
  scheme: Scheme;
  reason: string;
}

/** The intensity rule: memory-bound → thread-level, compute-bound → global. */
export function intensityRule(m: number, n: number, k: number, balance: number, available: readonly Scheme[], bytes = 4): { prior: Scheme; intensity: number; bound: 'memory' | 'compute' } {
  const intensity = arithmeticIntensity(m, n, k, bytes);
  const bound = intensity < balance ? 'memory' : 'compute';
  let prior: Scheme = bound === 'memory' ? 'thread' : 'global';
  if (!available.includes(prior)) prior = available.find((s) => s !== 'none') ?? 'none';
  return { prior, intensity, bound };
}

/**
 * The timing confirmation's margin: the rule's pick stays unless another scheme is faster by more
 * than this share of the unprotected layer's time. Half a point: a larger margin would keep a pick
 * that measurably costs more than the best scheme.
 */
export const OVERTURN_MARGIN = 0.005;

/** The scheme timing confirms: the prior, or the fastest candidate when it beats the prior by more than the margin. */
export function confirmedScheme(prior: Scheme, timings: Partial<Record<Scheme, number>>, candidates: readonly Scheme[]): Scheme {
  const best = candidates.reduce((x, y) => ((timings[y] ?? Infinity) < (timings[x] ?? Infinity) ? y : x));
  const margin = OVERTURN_MARGIN * (timings.none ?? 0);
  return best !== prior && (timings[best] ?? 0) + margin < (timings[prior] ?? 0) ? best : prior;
}

/**
 * Times candidate schemes with interleaved repetitions (noisy shared machines: median of
 * interleaved reps) and returns the median ms of each.
 */
export async function timeSchemes(run: (scheme: Scheme) => Promise<unknown>, candidates: readonly Scheme[], reps = 7): Promise<Partial<Record<Scheme, number>>> {
  const times: Record<string, number[]> = {};
  for (const s of candidates) {
    times[s] = [];
    await run(s);  // warm-up: first-touch buffers, offline checksums
  }
  for (let r = 0; r < reps; r++) {
    for (const s of r % 2 ? [...candidates].reverse() : candidates) {
      const t = performance.now();
      await run(s);
      times[s].push(performance.now() - t);
    }
  }
  const out: Partial<Record<Scheme, number>> = {};
  for (const s of candidates) out[s] = median(times[s]);
  return out;
}
