// Fault injection (@kintsugi/abft/inject): bit flips in fp32 inputs, weights, accumulators (inside
// the fused GEMM, through the addon's test-only hook; on a GPU, the CUDA kernels' own injection) or
// outputs, at a chosen or random position and rate; and a campaign runner reporting recall,
// precision, false positives and corrections, on the CPU or a GPU.
import { _setFaultInjection, DeviceTensor, gemm, Tensor, type CudaWeightChecksums } from '@kintsugi/cuda-core';

import { deviceIndex, deviceWeightChecksums, protectedGemm, weightChecksums, type ProtectedGemmOptions, type Scheme } from './gemm.js';
import { finite, integer, oneOf, options as optionsOf, rangeError, typeError } from './validate.js';

export const targets = ['input', 'weight', 'accumulator', 'output'] as const;
export type Target = (typeof targets)[number];

const word = new Float32Array(1), bits = new Uint32Array(word.buffer);

/** `value` (as fp32) with bit `bit` (0 = mantissa LSB, 23..30 exponent, 31 sign) flipped. */
export function flipBitOf(value: number, bit: number): number {
  integer(bit, 'bit', 0, 31);
  word[0] = value;
  bits[0] ^= 1 << bit;
  return word[0];
}

export interface Flip {
  index: number;
  bit: number;
  before: number;
  after: number;
}

/** Flips bit `bit` of element `index` (flat, row-major) of `t` in place. */
export function flipTensorBit(t: Tensor<'float32'>, index: number, bit: number): Flip {
  if (!(t instanceof Tensor) || t.dtype !== 'float32') throw typeError('t', 'a float32 Tensor', t);
  if (!t.isContiguous) throw rangeError('t', 'a contiguous Tensor', `strides [${t.strides}]`, true);
  integer(index, 'index', 0, t.size - 1);
  integer(bit, 'bit', 0, 31);
  const d = t.contiguousData();
  const before = d[index];
  d[index] = flipBitOf(before, bit);
  return { index, bit, before, after: d[index] };
}

/** Deterministic generator (mulberry32) for reproducible campaigns. */
export function rng(seed: number): () => number {
  let s = integer(seed, 'seed', 0, 2 ** 32 - 1) >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export interface InjectOptions {
  /** Probability per element (each flipped element gets one bit). */
  rate: number;
  /** Bits to choose from (default all 32). */
  bits?: number[];
  seed?: number;
}

/** Flips random bits of `t` at `rate` per element; returns the flips. */
export function injectFaults(t: Tensor<'float32'>, options: InjectOptions): Flip[] {
  const o = optionsOf(options, 'options');
  const rate = finite(o.rate, 'options.rate', 0, 1);
  const choices = o.bits === undefined ? [...Array(32).keys()] : checkBits(o.bits, 'options.bits');
  const rand = rng(o.seed === undefined ? 1 : integer(o.seed, 'options.seed', 0, 2 ** 32 - 1));
  const flips: Flip[] = [];
  if (rate === 0) return flips;
  // Geometric skips: O(flips), not O(size), at small rates.
  let i = -1;
  for (;;) {
    i += rate >= 1 ? 1 : 1 + Math.floor(Math.log(1 - rand()) / Math.log(1 - rate));
    if (i >= t.size) break;
    flips.push(flipTensorBit(t, i, choices[Math.floor(rand() * choices.length)]));
  }
  return flips;
}

function checkBits(value: unknown, name: string): number[] {
  if (!Array.isArray(value) || value.length === 0) throw typeError(name, 'a non-empty array of bit positions', value);
  return value.map((b, i) => integer(b, `${name}[${i}]`, 0, 31));
}

/** Arms a one-shot flip of bit `bit` of accumulator C(row, col) in the next fused ('thread') GEMM. */
export function armAccumulatorFault(spec: { row: number; col: number; bit: number } | null): void {
  if (spec === null) {
    _setFaultInjection(null);
    return;
  }
  const o = optionsOf(spec, 'spec');
  _setFaultInjection({ row: integer(o.row, 'spec.row', 0, 2 ** 31 - 1), col: integer(o.col, 'spec.col', 0, 2 ** 31 - 1), bit: integer(o.bit, 'spec.bit', 0, 31) });
}

export interface CampaignOptions {
  /** GEMM shapes [m, n, k] (op(B) plays the weights). */
  shapes?: [number, number, number][];
  schemes?: Exclude<Scheme, 'none'>[];
  targets?: Target[];
  bits?: number[];
  /** Trials per (shape, scheme, target, bit). */
  trials?: number;
  /** Clean runs per (shape, scheme) for the false-positive rate. */
  cleanRuns?: number;
  seed?: number;
  /** An output element changed by more than `significance` × its magnitude (|A|·|B|)_ij counts as a fault to catch. */
  significance?: number;
  /** 'cpu' (default) or 'cuda:N': where the protected GEMM under test runs (inputs and weights are flipped in host copies, accumulators by the kernels). */
  device?: string;
}

export interface CampaignRow {
  scheme: string;
  target: Target;
  bit: number;
  trials: number;
  /** Faults that changed some output element beyond the significance threshold. */
  significant: number;
  /** Of those, detected. */
  detected: number;
  /** Trials with any detection (significant or not). */
  alarms: number;
  /** Alarms on trials whose fault changed nothing beyond the threshold. */
  benignAlarms: number;
  /** Significant faults whose final output matches the clean one within the threshold. */
  corrected: number;
}

export interface CampaignResult {
  rows: CampaignRow[];
  clean: { scheme: string; runs: number; falsePositives: number }[];
  summary: { scheme: string; target: Target; significant: number; recall: number; precision: number; corrected: number; correctedRate: number }[];
}

/** Runs the GEMM fault-injection campaign. */
export async function runCampaign(options?: CampaignOptions): Promise<CampaignResult> {
  const o = optionsOf(options, 'options');
  const shapes = (o.shapes as [number, number, number][] | undefined) ?? [[8, 256, 512], [64, 128, 256]];
  const schemeList = o.schemes === undefined ? (['global', 'thread'] as const) : (o.schemes as unknown[]).map((s, i) => oneOf(s, `options.schemes[${i}]`, ['global', 'thread'] as const));
  const targetList = o.targets === undefined ? targets : (o.targets as unknown[]).map((t, i) => oneOf(t, `options.targets[${i}]`, targets));
  const bitList = o.bits === undefined ? [31, 30, 28, 26, 23, 22, 20, 16, 10] : checkBits(o.bits, 'options.bits');
  const trials = o.trials === undefined ? 10 : integer(o.trials, 'options.trials', 1, 1e6);
  const cleanRuns = o.cleanRuns === undefined ? 20 : integer(o.cleanRuns, 'options.cleanRuns', 0, 1e6);
  const significance = o.significance === undefined ? 1e-2 : finite(o.significance, 'options.significance', 0);
  const rand = rng(o.seed === undefined ? 7 : integer(o.seed, 'options.seed', 0, 2 ** 32 - 1));
  const index = o.device === undefined ? null : deviceIndex(o.device);
  const rows = new Map<string, CampaignRow>();
  const clean: CampaignResult['clean'] = [];
  for (const [si, [m, n, k]] of shapes.entries()) {
    const A = Tensor.random([m, k], 11 + si), B = Tensor.random([k, n], 23 + si);
    const absA = new Tensor<'float32'>(A.data.map(Math.abs), A.shape), absB = new Tensor<'float32'>(B.data.map(Math.abs), B.shape);
    const magnitude = await gemm(absA, absB);  // (|A|·|B|)_ij: the scale of each output element
    const ref = await gemm(A, B);
    for (const scheme of schemeList) {
      const sums = weightChecksums(B);
      // The GPU global scheme's checksums, like the host ones, come from the clean weights once, so
      // that a weight flipped later disagrees with them (the GPU thread scheme takes none: it checks
      // against the operands it reads).
      const deviceSums = index !== null && scheme === 'global' ? await cleanDeviceChecksums(B, index) : undefined;
      const run = (a: Tensor<'float32'>, b: Tensor<'float32'>, extra: Pick<ProtectedGemmOptions, 'correct' | 'inject'> = {}) =>
        protectedGemm(a, b, index === null ? { scheme, checksums: sums, ...extra } : { scheme, device: `cuda:${index}`, ...(deviceSums ? { cudaChecksums: deviceSums } : {}), ...extra });
      let fp = 0;
      for (let r = 0; r < cleanRuns; r++) {
        const x = Tensor.random([m, k], 1000 + r);
        const res = await run(x, B);
        if (res.report.events.length > 0) fp++;
      }
      clean.push({ scheme: `${scheme} ${m}x${n}x${k}`, runs: cleanRuns, falsePositives: fp });
      for (const target of targetList) {
        for (const bit of bitList) {
          const key = `${scheme}|${target}|${bit}`;
          const row = rows.get(key) ?? { scheme, target, bit, trials: 0, significant: 0, detected: 0, alarms: 0, benignAlarms: 0, corrected: 0 };
          rows.set(key, row);
          for (let t = 0; t < trials; t++) {
            const a = A.clone(), b = B.clone();
            let events = 0;
            let out: Tensor<'float32'>;
            const i = Math.floor(rand() * m), j = Math.floor(rand() * n);
            if (target === 'input') flipTensorBit(a, Math.floor(rand() * a.size), bit);
            if (target === 'weight') flipTensorBit(b, Math.floor(rand() * b.size), bit);  // after the offline checksums
            let faulty: Tensor<'float32'>;
            // Faults the protected GEMM injects itself: on the CPU, the fused kernel's accumulator;
            // on a GPU, the accumulator of either scheme, which for the global scheme is the stored
            // output between the GEMM and its check (where the CPU global case flips it below).
            if (target === 'accumulator' ? scheme === 'thread' || index !== null : target === 'output' && scheme === 'global' && index !== null) {
              const fault = { row: i, col: j, bit };
              const injected = (correct: boolean) => {
                if (index === null) armAccumulatorFault(fault);
                return run(a, b, index === null ? { correct } : { correct, inject: fault });
              };
              // The uncorrected result shows what the fault did.
              faulty = (await injected(false)).out;
              const res = await injected(true);
              out = res.out;
              events = res.report.events.length;
            } else if (target === 'accumulator' || target === 'output') {
              // Accumulator (non-fused GEMM: the flipped register is what is stored) or output memory.
              const base = await gemm(a, b);
              base.set(flipBitOf(base.get(i, j), bit), i, j);
              faulty = base;
              if (scheme === 'thread') {
                // Fused checks run inside the GEMM: a flip of the stored output after it is invisible to them.
                const res = await run(a, b);
                if (target === 'accumulator') throw new Error('unreachable');
                res.out.set(flipBitOf(res.out.get(i, j), bit), i, j);
                out = res.out;
                events = res.report.events.length;
              } else {
                const { globalCheck } = await import('./gemm.js');
                out = faulty.clone();
                const rep = await globalCheck(a, b, out, { scheme: 'global', transA: false, transB: false, check: 'two-sided', tolerance: 1, correct: true, layer: 'campaign', checksums: sums, m, n, k });
                events = rep.events.length;
              }
            } else {
              const probe = await gemm(a, b);
              faulty = probe;
              const res = await run(a, b);
              out = res.out;
              events = res.report.events.length;
            }
            const beyond = (c: Tensor<'float32'>) => {
              for (let q = 0; q < c.size; q++) {
                const d = Math.abs(c.data[q] - ref.data[q]);
                if (!(d <= significance * magnitude.data[q])) return true;
              }
              return false;
            };
            const isSignificant = beyond(faulty);
            row.trials++;
            if (events > 0) row.alarms++;
            if (isSignificant) {
              row.significant++;
              if (events > 0) row.detected++;
              if (!beyond(out)) row.corrected++;
            } else if (events > 0) {
              row.benignAlarms++;
            }
          }
        }
      }
      deviceSums?.sums.dispose();  // (garbage collection frees it if a trial throws)
    }
  }
  const all = [...rows.values()];
  const summary: CampaignResult['summary'] = [];
  for (const scheme of schemeList)
    for (const target of targetList) {
      const rs = all.filter((r) => r.scheme === scheme && r.target === target);
      const sig = rs.reduce((s, r) => s + r.significant, 0), det = rs.reduce((s, r) => s + r.detected, 0);
      const alarms = rs.reduce((s, r) => s + r.alarms, 0), corr = rs.reduce((s, r) => s + r.corrected, 0);
      summary.push({ scheme, target, significant: sig, recall: sig ? det / sig : 1, precision: alarms ? det / alarms : 1, corrected: corr, correctedRate: sig ? corr / sig : 1 });
    }
  return { rows: all, clean, summary };
}

/** Checksums of a host weight matrix on GPU `device` (the upload is freed once they are computed). */
async function cleanDeviceChecksums(b: Tensor<'float32'>, device: number): Promise<CudaWeightChecksums> {
  const B = await DeviceTensor.from(b, { device });
  try {
    return deviceWeightChecksums(B);
  } finally {
    B.dispose();
  }
}
