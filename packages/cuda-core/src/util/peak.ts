// Peak FLOP/s of a device: the denominator of FLOP-based utilization (Kosaian & Phanishayee).
// GPUs: SM count × SM clock × FLOPs per clock per SM, from a per-architecture table. CPUs: a
// measured FMA rate (a large cached sgemm), with a theoretical figure from the clock beside it.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';

import { cpuInfo, numThreads } from '../device.js';
import { gemm } from '../gemm.js';
import { Tensor } from '../tensor.js';
import { rangeError } from '../validate.js';

export const dtypes = ['fp32', 'tf32', 'fp16', 'bf16'] as const;
export type Dtype = (typeof dtypes)[number];

/** Bytes per element as stored in memory (tf32 is stored as fp32). */
export const dtypeBytes: Record<Dtype, number> = { fp32: 4, tf32: 4, fp16: 2, bf16: 2 };

/**
 * Dense FLOPs per clock per SM (one FMA = 2 FLOPs). fp32 is the SIMT rate; tf32/fp16/bf16 are
 * tensor-core rates without sparsity, fp16 with fp32 accumulation on data-centre parts. Checked
 * against NVIDIA's whitepapers and datasheets (SMs × boost clock × entry):
 * - sm_75 Turing T4: 40 SMs, 1590 MHz. fp32 64 FMA → 128: 8.1 TFLOPS. 8 tensor cores × 64 FMA
 *   = 512 FMA → 1024: 65 TFLOPS fp16. Turing has no tf32/bf16 tensor cores.
 * - sm_80 Ampere A100: 108 SMs, 1410 MHz. fp32 64 FMA → 128: 19.5 TFLOPS. 4 tensor cores ×
 *   256 FMA = 1024 FMA → 2048: 312 TFLOPS fp16/bf16; tf32 runs at half: 156 TFLOPS.
 * - sm_86 Ampere GA10x (A10, RTX 3090): fp32 doubled to 128 FMA → 256 (3090: 82 SMs × 1695 MHz
 *   = 35.6 TFLOPS). Tensor cores 512 FMA → 1024 fp16/bf16, 512 tf32 (A10: 72 SMs × 1695 MHz =
 *   125 / 62.5 TFLOPS). GeForce cards halve the fp16 rate with fp32 accumulation (3090: 71).
 * - sm_89 Ada (L4, RTX 4090): same per-SM rates as sm_86 (L4: 58 SMs × 2040 MHz = 30.3 fp32,
 *   121 fp16, 60 tf32; 4090: 128 SMs × 2520 MHz = 82.6 fp32). fp8 is outside this table.
 * - sm_90 Hopper H100 SXM5: 132 SMs. fp32 128 FMA → 256; 4 tensor cores × 512 FMA = 2048 FMA →
 *   4096 fp16/bf16, 2048 tf32. At 1830 MHz: 989 TFLOPS fp16 dense, 495 tf32, 61.8 fp32. The
 *   datasheet's 67 TFLOPS fp32 is quoted at the 1980 MHz maximum boost (132 × 1.98 GHz × 256).
 */
export const flopsPerClockPerSm: Record<string, Partial<Record<Dtype, number>>> = {
  sm_75: { fp32: 128, fp16: 1024 },
  sm_80: { fp32: 128, tf32: 1024, fp16: 2048, bf16: 2048 },
  sm_86: { fp32: 256, tf32: 512, fp16: 1024, bf16: 1024 },
  sm_89: { fp32: 256, tf32: 512, fp16: 1024, bf16: 1024 },
  sm_90: { fp32: 256, tf32: 2048, fp16: 4096, bf16: 4096 },
};

/** What the table needs of a GPU; a CUDA entry of devices() is one. */
export interface GpuSpec {
  /** '8.0', 'sm_80' or '80'. */
  computeCapability?: string;
  multiprocessors: number;
  /** SM clock in kHz (what the driver reports as the maximum clock). */
  clockKHz?: number;
}

/** 'sm_80' from '8.0', '80' or 'sm_80'. */
export function smArch(computeCapability: string | undefined): string {
  const m = /^(?:sm_?)?(\d)\.?(\d)$/i.exec(String(computeCapability).trim());
  if (!m) throw rangeError('computeCapability', `a compute capability like "8.0" or "sm_80"`, computeCapability);
  return `sm_${m[1]}${m[2]}`;
}

/** Peak dense FLOP/s of a GPU for a dtype; throws for an architecture or dtype not in the table. */
export function gpuPeakFlops(spec: GpuSpec, dtype: Dtype = 'fp32'): number {
  const arch = smArch(spec.computeCapability);
  const row = flopsPerClockPerSm[arch];
  if (!row) throw rangeError('computeCapability', `one of ${Object.keys(flopsPerClockPerSm).join(', ')} (no peak FLOP/s table for other architectures)`, arch, true);
  const perClock = row[dtype];
  if (perClock === undefined) throw rangeError('dtype', `one of ${Object.keys(row).join(', ')} on ${arch}`, dtype);
  if (!(spec.multiprocessors > 0) || !((spec.clockKHz ?? 0) > 0)) throw rangeError('spec', 'positive multiprocessors and clockKHz', `${spec.multiprocessors} SMs at ${spec.clockKHz} kHz`, true);
  return spec.multiprocessors * (spec.clockKHz as number) * 1e3 * perClock;
}

export interface CpuMeasurement {
  /** Best FLOP/s of 1024³ sgemm calls (the FMA micro-benchmark). */
  gemmFlops: number;
  /** Bytes/s of a 64 MiB copy (read + write), larger than the last-level cache. */
  bandwidth: number;
  threads: number;
}

let measured: { threads: number; value: CpuMeasurement } | null = null;

/**
 * Measures the CPU's achievable FMA rate and memory bandwidth once per process and thread count;
 * `refresh` measures again and keeps the best of all measurements. Best rather than median of the
 * repetitions: both are capabilities, and noise (another process on a shared machine) only slows
 * a run down.
 */
export async function measureCpu(options: { refresh?: boolean } = {}): Promise<CpuMeasurement> {
  const threads = numThreads();
  const previous = measured?.threads === threads ? measured.value : null;
  if (previous && !options.refresh) return previous;
  // A 1024³ GEMM runs at the kernel's peak on every thread (a smaller one is dominated by the call
  // and thread wake-up, and understated the 2-core peak by 3×).
  const n = 1024;
  const a = Tensor.random([n, n], 1), b = Tensor.random([n, n], 2), out = Tensor.zeros([n, n], 'float32');
  await gemm(a, b, { out });
  const words = 16 << 20;
  const src = new Float32Array(words).fill(1), dst = new Float32Array(words);
  dst.set(src);
  const flopTimes: number[] = [], copyTimes: number[] = [];
  // Many short rounds rather than a few long ones: on a shared machine one of them is more likely
  // to land in a quiet moment.
  for (let r = 0; r < 10; r++) {
    let t = performance.now();
    for (let i = 0; i < 2; i++) await gemm(a, b, { out });
    flopTimes.push((performance.now() - t) / 2);
    t = performance.now();
    dst.set(src);
    copyTimes.push(performance.now() - t);
  }
  const value = {
    gemmFlops: Math.max((2 * n ** 3) / (Math.min(...flopTimes) / 1e3), previous?.gemmFlops ?? 0),
    bandwidth: Math.max((2 * 4 * words) / (Math.min(...copyTimes) / 1e3), previous?.bandwidth ?? 0),
    threads,
  };
  measured = { threads, value };
  return value;
}

/** The CPU clock in MHz when the OS reports one (Linux VMs often report 0 to os.cpus()). */
export function cpuClockMHz(): number | null {
  const speed = cpus()[0]?.speed ?? 0;
  if (speed > 0) return speed;
  try {
    const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m && Number(m[1]) > 0) return Number(m[1]);
  } catch {
    // not Linux: fall through to the brand string
  }
  const b = /@\s*([\d.]+)\s*GHz/i.exec(cpuInfo().brand);
  return b ? Number(b[1]) * 1e3 : null;
}

/**
 * fp32 FLOPs per cycle per core of the active ISA, assuming two FMA pipes: AVX-512 2 × 16 lanes ×
 * 2; AVX2+FMA 2 × 8 × 2; the portable path's SSE code 4 lanes × (mul + add) × 2 pipes. AMD's
 * Zen 4 runs AVX-512 on 256-bit pipes, so AMD gets the AVX2 rate (Zen 5 is not told apart).
 */
export function cpuFlopsPerCycle(info: { brand: string; activeIsa: string }): number {
  const isa = info.activeIsa.toLowerCase();
  if (isa.includes('avx512')) return /AMD/i.test(info.brand) ? 32 : 64;
  if (isa.includes('avx2')) return 32;
  return 16;
}

export interface CpuPeak {
  /** Set when the figures disagree enough to distrust the peak (a busy machine, say). */
  warning: string | null;
  /** The peak utilization is computed against. */
  peakFlops: number;
  source: 'measured' | 'theoretical';
  measuredFlops: number;
  /** threads × clock × FLOPs/cycle, null when the OS reports no clock. */
  theoreticalFlops: number | null;
  clockMHz: number | null;
  flopsPerCycle: number;
  threads: number;
  bandwidth: number;
  isa: string;
}

/**
 * The CPU's peak fp32 FLOP/s. The measured GEMM rate is used by default: the reported clock is
 * the base clock (turbo can beat it) and threads may be SMT siblings sharing FMA pipes, so the
 * theoretical figure can miss either way. `source: 'theoretical'` uses it instead when known;
 * `refresh` measures again (see measureCpu).
 */
export async function cpuPeak(options: { source?: 'measured' | 'theoretical'; refresh?: boolean } = {}): Promise<CpuPeak> {
  const info = cpuInfo();
  const m = await measureCpu({ refresh: options.refresh });
  const clockMHz = cpuClockMHz();
  const flopsPerCycle = cpuFlopsPerCycle(info);
  const threads = Math.min(m.threads, info.logicalCores);
  const theoreticalFlops = clockMHz ? threads * clockMHz * 1e6 * flopsPerCycle : null;
  if (options.source === 'theoretical' && theoreticalFlops === null) {
    throw rangeError('options.source', '"measured" (the OS reports no CPU clock for a theoretical peak)', 'theoretical');
  }
  const useTheoretical = options.source === 'theoretical';
  const warning = theoreticalFlops !== null && m.gemmFlops < theoreticalFlops / 2
    ? `the measured peak (${(m.gemmFlops / 1e9).toFixed(1)} GFLOP/s) is under half the theoretical one (${(theoreticalFlops / 1e9).toFixed(1)}): the machine may be busy, and utilization overstated`
    : null;
  return {
    warning,
    peakFlops: useTheoretical ? (theoreticalFlops as number) : m.gemmFlops,
    source: useTheoretical ? 'theoretical' : 'measured',
    measuredFlops: m.gemmFlops,
    theoreticalFlops,
    clockMHz,
    flopsPerCycle,
    threads,
    bandwidth: m.bandwidth,
    isa: info.activeIsa,
  };
}
