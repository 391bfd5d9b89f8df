// Protected GEMM behind one API, three schemes:
//  - 'global' (Huang–Abraham): plain GEMM, then the row checksums C·e compared with A·(B·e)
//    from B's row sums computed once offline (weights), in one native pass over A and C; on a
//    mismatch the column checksums e^T·C vs (e^T·A)·B locate the element.
//  - 'thread': the native fused path — checksums of every micro-kernel register tile from its
//    accumulators, compared once per tile after the K loop (two-sided by default).
//  - 'none'.
// Thresholds: |residual| <= BOUND_SCALE · tolerance · eps32 · magnitude, magnitude = the same
// checksum over |A| and |B| (calibrated for zero false positives in native/tests/test_abft.cc:
// the worst clean residual stays below 1/8 of the bound).
import {
  abftGroupSums, abftRowCheck, colSums, cudaDevice, cudaGemm, cudaGemmChecked, cudaWeightChecksums, DeviceTensor, gemm, gemmChecked, gemmRowChecked, Tensor,
  weightedColSums, weightedRowSums, type AbftAction, type AbftCheck, type AbftGroupSums, type AbftTileEvent, type CudaFault, type CudaWeightChecksums,
  type RowCheck,
} from '@kintsugi/cuda-core';

import { bool, finite, oneOf, options as optionsOf, rangeError, typeError } from './validate.js';

export const schemes = ['none', 'global', 'thread'] as const;
export type Scheme = (typeof schemes)[number];
export type Action = AbftAction;

export const EPS32 = 2 ** -24;
/** Same scale as the native thread-level bound (kAbftBoundScale). */
export const BOUND_SCALE = 128;

/** One detection: where, how large, and what was done. */
export interface AbftEvent {
  layer: string;
  scheme: Scheme;
  /** Located element (row, col) of the GEMM output, or -1 when not located to one element. */
  row: number;
  col: number;
  /** The checksum difference that fired and the bound it exceeded. */
  residual: number;
  bound: number;
  /** Value before / after the repair (located elements only). */
  before?: number;
  after?: number;
  /** Rows recomputed (global scheme) or the tile (thread scheme), when not a single element. */
  region?: { row0: number; col0: number; rows: number; cols: number };
  action: Action;
}

export interface ProtectionReport {
  scheme: Scheme;
  events: AbftEvent[];
  /** Largest |residual| / bound seen (> 1 means something was flagged). */
  maxRatio: number;
}

/** Offline checksums of constant op(B) (k x n): row sums for 'global', group sums for 'thread'. */
export interface WeightChecksums {
  readonly k: number;
  readonly n: number;
  readonly transB: boolean;
  readonly rowSums: Float64Array;
  readonly absRowSums: Float64Array;
  readonly groups: AbftGroupSums;
}

function abs(t: Tensor<'float32'>): Tensor<'float32'> {
  const src = t.contiguousData();
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = Math.abs(src[i]);
  return new Tensor<'float32'>(out, t.shape);
}

function checkMatrix(t: unknown, name: string): Tensor<'float32'> {
  if (!(t instanceof Tensor)) throw typeError(name, 'a Tensor', t);
  if (t.dtype !== 'float32') throw typeError(name, "a float32 Tensor", `a ${t.dtype} Tensor`, true);
  if (t.ndim !== 2) throw rangeError(name, 'a 2-D Tensor', `shape [${t.shape}]`, true);
  return t as Tensor<'float32'>;
}

/** Computes B's checksums once (B is the constant operand: weights). */
export function weightChecksums(b: Tensor<'float32'>, options: { transB?: boolean } = {}): WeightChecksums {
  const B = checkMatrix(b, 'b');
  const o = optionsOf(options, 'options');
  const transB = o.transB === undefined ? false : bool(o.transB, 'options.transB');
  const [k, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  return buildChecksums(B, abs(B), k, n, transB);
}

function buildChecksums(B: Tensor<'float32'>, absB: Tensor<'float32'>, k: number, n: number, transB: boolean): WeightChecksums {
  const rowSums = new Float64Array(k), absRowSums = new Float64Array(k);
  const d = B.contiguousData(), ad = absB.contiguousData();
  if (transB) {
    for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) { rowSums[p] += d[j * k + p]; absRowSums[p] += ad[j * k + p]; }
  } else {
    for (let p = 0; p < k; p++) { let s = 0, m = 0; for (let j = 0; j < n; j++) { s += d[p * n + j]; m += ad[p * n + j]; } rowSums[p] = s; absRowSums[p] = m; }
  }
  return { k, n, transB, rowSums, absRowSums, groups: abftGroupSums(B, { transB }) };
}

export interface ProtectedGemmOptions {
  scheme?: Scheme;
  transA?: boolean;
  transB?: boolean;
  /** Offline checksums of op(B) (weightChecksums); computed per call when absent. */
  checksums?: WeightChecksums;
  /** Thread scheme: 'two-sided' (default) or 'one-sided'. */
  check?: AbftCheck;
  /** Multiplies the calibrated bound (default 1). */
  tolerance?: number;
  /** Repair what is found (default true). */
  correct?: boolean;
  /** Name used in events. */
  layer?: string;
  /** Added to every row of C after the GEMM (a Linear layer's bias); its sums enter the check. */
  bias?: Float32Array;
  /** CPU: the m x n row-major output to write (reused across calls: no fresh pages per call). */
  out?: Tensor<'float32'>;
  /** Run on a GPU ('cuda:0', ...): host Tensors are uploaded and the result downloaded. Implied by DeviceTensor inputs. */
  device?: string;
  /** GPU global scheme: the weights' checksums on the device (cudaWeightChecksums). */
  cudaChecksums?: CudaWeightChecksums;
  /** GPU only: flip bit `bit` of the accumulator of C(row, col) (fault-injection campaigns). */
  inject?: CudaFault | CudaFault[];
}

interface Normalized {
  scheme: Scheme;
  transA: boolean;
  transB: boolean;
  check: AbftCheck;
  tolerance: number;
  correct: boolean;
  layer: string;
  checksums?: WeightChecksums;
  bias?: Float32Array;
  out?: Tensor<'float32'>;
}

/** The options the CPU and GPU paths read alike, with their defaults, checked in this order. */
function sharedOptions(o: Record<string, unknown>): Omit<Normalized, 'checksums' | 'bias'> {
  return {
    scheme: o.scheme === undefined ? 'global' : oneOf(o.scheme, 'options.scheme', schemes),
    transA: o.transA === undefined ? false : bool(o.transA, 'options.transA'),
    transB: o.transB === undefined ? false : bool(o.transB, 'options.transB'),
    check: o.check === undefined ? 'two-sided' : oneOf(o.check, 'options.check', ['one-sided', 'two-sided'] as const),
    tolerance: o.tolerance === undefined ? 1 : finite(o.tolerance, 'options.tolerance', Number.MIN_VALUE),
    correct: o.correct === undefined ? true : bool(o.correct, 'options.correct'),
    layer: o.layer === undefined ? 'gemm' : String(o.layer),
  };
}

function normalize(a: Tensor<'float32'>, b: Tensor<'float32'>, options: unknown): Normalized & { m: number; n: number; k: number } {
  const o = optionsOf(options, 'options');
  const { scheme, transA, transB, check, tolerance, correct, layer } = sharedOptions(o);
  const [m, k] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [kb, n] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (kb !== k) throw rangeError('b', `${k} rows in op(b) (the columns of op(a))`, `shape [${b.shape}]${transB ? ' transposed' : ''}`, true);
  let checksums: WeightChecksums | undefined;
  if (o.checksums !== undefined) {
    const c = o.checksums as WeightChecksums;
    if (c === null || typeof c !== 'object' || !(c.rowSums instanceof Float64Array) || !(c.absRowSums instanceof Float64Array) || !c.groups) {
      throw typeError('options.checksums', 'checksums from weightChecksums()', c);
    }
    if (c.k !== k || c.n !== n || c.rowSums.length !== k || c.absRowSums.length !== k) {
      throw rangeError('options.checksums', `checksums of a ${k} x ${n} op(b)`, `checksums of a ${c.k} x ${c.n} matrix (${c.rowSums.length} row sums)`, true);
    }
    if (c.transB !== transB) throw rangeError('options.checksums', `checksums computed with transB = ${transB}`, `transB = ${c.transB}`, true);
    checksums = c;
  }
  let bias: Float32Array | undefined;
  if (o.bias !== undefined) {
    if (!(o.bias instanceof Float32Array)) throw typeError('options.bias', 'a Float32Array', o.bias);
    if (o.bias.length !== n) throw rangeError('options.bias', `${n} elements`, `${o.bias.length} elements`, true);
    bias = o.bias;
  }
  let out: Tensor<'float32'> | undefined;
  if (o.out !== undefined) {
    if (!(o.out instanceof Tensor) || o.out.dtype !== 'float32') throw typeError('options.out', 'a float32 Tensor', o.out);
    if (o.out.ndim !== 2 || o.out.shape[0] !== m || o.out.shape[1] !== n || !o.out.isContiguous) {
      throw rangeError('options.out', `a contiguous [${m}, ${n}] Tensor`, `shape [${o.out.shape}]${o.out.isContiguous ? '' : ' (not contiguous)'}`, true);
    }
    out = o.out as Tensor<'float32'>;
  }
  return { scheme, transA, transB, check, tolerance, correct, layer, checksums, bias, out, m, n, k };
}

function addBias(out: Tensor<'float32'>, bias: Float32Array): void {
  const d = out.data, n = bias.length;
  for (let r = 0; r < out.shape[0]; r++) for (let j = 0; j < n; j++) d[r * n + j] += bias[j];
}

/** 'cuda:N' -> N (checked against the GPUs present; CudaUnavailableError without one). */
export function cudaIndex(device: unknown, name = 'options.device', expected = "'cuda' or 'cuda:N'"): number {
  const m = typeof device === 'string' ? /^cuda(?::(\d+))?$/.exec(device) : null;
  if (!m) throw rangeError(name, expected, device);
  return cudaDevice(m[1] === undefined ? 0 : Number(m[1]), name);
}

/** 'cpu' -> null, 'cuda' / 'cuda:N' -> N (as cudaIndex): for options that may name either. */
export function deviceIndex(device: unknown, name = 'options.device'): number | null {
  const expected = "'cpu' or 'cuda:N'";
  if (typeof device !== 'string') throw typeError(name, expected, device);
  return device === 'cpu' ? null : cudaIndex(device, name, expected);
}

/**
 * C = op(A)·op(B) (+ bias), protected by the chosen scheme; errors found are repaired in place.
 * DeviceTensors (or `device: 'cuda:N'`) run the GPU schemes (cudaGemmChecked) and return a
 * DeviceTensor (a Tensor for host inputs).
 */
export async function protectedGemm(a: DeviceTensor, b: DeviceTensor, options?: ProtectedGemmOptions): Promise<{ out: DeviceTensor; report: ProtectionReport }>;
export async function protectedGemm(a: Tensor<'float32'>, b: Tensor<'float32'>, options?: ProtectedGemmOptions): Promise<{ out: Tensor<'float32'>; report: ProtectionReport }>;
export async function protectedGemm(a: Tensor<'float32'> | DeviceTensor, b: Tensor<'float32'> | DeviceTensor, options?: ProtectedGemmOptions): Promise<{ out: Tensor<'float32'> | DeviceTensor; report: ProtectionReport }> {
  const device = (options as { device?: unknown } | undefined)?.device;
  if (a instanceof DeviceTensor || b instanceof DeviceTensor || device !== undefined) return gpuProtectedGemm(a, b, options ?? {});
  return cpuProtectedGemm(a, b, options);
}

/** Flagged regions of a fused (CPU or GPU) or GPU global check as events: located elements keep their values, the rest their region. */
function regionEvents(events: readonly AbftTileEvent[], layer: string, scheme: Scheme): AbftEvent[] {
  return events.map((e) => ({
    layer, scheme, row: e.row, col: e.col, residual: e.residual, bound: e.bound,
    ...(e.row >= 0 ? { before: e.before, after: e.after } : { region: { row0: e.row0, col0: e.col0, rows: e.rows, cols: e.cols } }),
    action: e.action,
  }));
}

async function gpuProtectedGemm(a: unknown, b: unknown, options: ProtectedGemmOptions): Promise<{ out: Tensor<'float32'> | DeviceTensor; report: ProtectionReport }> {
  const o = optionsOf(options, 'options');
  const onHost = !(a instanceof DeviceTensor);
  if (onHost !== !(b instanceof DeviceTensor)) throw typeError('b', onHost ? 'a Tensor (as a)' : 'a DeviceTensor (as a)', b);
  const index = o.device !== undefined ? cudaIndex(o.device) : (a as DeviceTensor).device;
  if (!onHost && (a as DeviceTensor).device !== index) throw rangeError('options.device', `cuda:${(a as DeviceTensor).device} (where a lives)`, o.device);
  const { scheme, transA, transB, check, tolerance, correct, layer } = sharedOptions(o);
  if (o.checksums !== undefined) throw typeError('options.checksums', 'undefined on the GPU (pass cudaChecksums from cudaWeightChecksums)', 'host checksums', true);
  if (o.out !== undefined) throw typeError('options.out', 'undefined on the GPU (the result is a new DeviceTensor or its download)', 'an output Tensor', true);
  let A: DeviceTensor, B: DeviceTensor;
  if (onHost) {
    A = await DeviceTensor.from(checkMatrix(a, 'a'), { device: index });
    B = await DeviceTensor.from(checkMatrix(b, 'b'), { device: index });
  } else {
    [A, B] = [a as DeviceTensor, b as DeviceTensor];
  }
  try {
    let out: DeviceTensor;
    let report: ProtectionReport;
    if (scheme === 'none') {
      out = cudaGemm(A, B, { transA, transB });
      report = { scheme: 'none', events: [], maxRatio: 0 };
    } else {
      const r = await cudaGemmChecked(A, B, {
        scheme, check, tolerance, correct, transA, transB,
        ...(o.cudaChecksums !== undefined ? { weightChecksums: o.cudaChecksums as CudaWeightChecksums } : {}),
        ...(o.inject !== undefined ? { inject: o.inject as CudaFault } : {}),
      });
      out = r.out;
      report = { scheme, events: regionEvents(r.report.events, layer, scheme), maxRatio: r.report.maxRatio };
    }
    if (!onHost) {
      if (o.bias !== undefined) throw typeError('options.bias', 'undefined for DeviceTensor inputs (add the bias on the device)', 'a bias', true);
      return { out, report };
    }
    const host = (await out.download()) as Tensor<'float32'>;
    out.dispose();
    if (o.bias !== undefined) {
      if (!(o.bias instanceof Float32Array) || o.bias.length !== host.shape[1]) throw rangeError('options.bias', `a Float32Array of ${host.shape[1]} elements`, o.bias);
      addBias(host, o.bias);
    }
    return { out: host, report };
  } finally {
    if (onHost) {
      A.dispose();
      B.dispose();
    }
  }
}

/** Device checksums of a constant op(B) for the GPU global scheme (computed once per weight). */
export function deviceWeightChecksums(b: DeviceTensor, options: { transB?: boolean } = {}): CudaWeightChecksums {
  return cudaWeightChecksums(b, options);
}

async function cpuProtectedGemm(a: Tensor<'float32'>, b: Tensor<'float32'>, options?: ProtectedGemmOptions): Promise<{ out: Tensor<'float32'>; report: ProtectionReport }> {
  const A = checkMatrix(a, 'a'), B = checkMatrix(b, 'b');
  const o = normalize(A, B, options);
  if (o.scheme === 'none') {
    const out = await plainGemm(A, B, o);
    return { out, report: { scheme: 'none', events: [], maxRatio: 0 } };
  }
  if (o.scheme === 'thread') {
    const { out, report } = await gemmChecked(A, B, {
      transA: o.transA, transB: o.transB, check: o.check, tolerance: o.tolerance, correct: o.correct, groupSums: o.checksums?.groups,
      ...(o.out ? { out: o.out } : {}),
    });
    if (o.bias) addBias(out, o.bias);
    return { out, report: { scheme: 'thread', events: regionEvents(report.events, o.layer, 'thread'), maxRatio: report.maxRatio } };
  }
  // The GEMM and the row check in one native job; the located-error path (rare) reads more.
  const sums = o.checksums ?? buildChecksums(B, abs(B), o.k, o.n, o.transB);
  const { out, check } = await gemmRowChecked(A, B, sums.rowSums, sums.absRowSums, { transA: o.transA, transB: o.transB, ...biasOutput(o) });
  const report = await globalCheck(A, B, out, { ...o, checksums: sums }, check);
  return { out, report };
}

/** The output to write (options.out or a new one); with a bias, preloaded with it and accumulated into (beta = 1). */
function biasOutput(o: Normalized & { m: number; n: number }): { out?: Tensor<'float32'>; beta?: number } {
  if (!o.bias) return o.out ? { out: o.out } : {};
  const out = o.out ?? Tensor.zeros([o.m, o.n], 'float32');
  const d = out.contiguousData();
  for (let r = 0; r < o.m; r++) d.set(o.bias, r * o.n);
  return { out, beta: 1 };
}

async function plainGemm(A: Tensor<'float32'>, B: Tensor<'float32'>, o: Normalized & { m: number; n: number }): Promise<Tensor<'float32'>> {
  return gemm(A, B, { transA: o.transA, transB: o.transB, ...biasOutput(o) });
}

function exactElement(A: Tensor<'float32'>, B: Tensor<'float32'>, o: Normalized & { k: number }, i: number, j: number): number {
  let s = 0;
  for (let p = 0; p < o.k; p++) {
    const av = o.transA ? A.get(p, i) : A.get(i, p);
    const bv = o.transB ? B.get(j, p) : B.get(p, j);
    s += av * bv;
  }
  return Math.fround(s + (o.bias ? o.bias[j] : 0));
}

/**
 * The global (Huang–Abraham) check of C against op(A) and op(B); repairs in place. `rows`: the
 * row check already made with the GEMM (gemmRowChecked); computed here when absent.
 */
export async function globalCheck(A: Tensor<'float32'>, B: Tensor<'float32'>, C: Tensor<'float32'>, o: Normalized & { m: number; n: number; k: number }, rows?: RowCheck): Promise<ProtectionReport> {
  const sums = o.checksums ?? buildChecksums(B, abs(B), o.k, o.n, o.transB);
  const opA = o.transA ? A.transpose() : A;
  const rc = rows ?? (await abftRowCheck(opA, sums.rowSums, sums.absRowSums, C));
  let biasSum = 0, biasAbs = 0;
  if (o.bias) for (const v of o.bias) { biasSum += v; biasAbs += Math.abs(v); }
  const bound = (mag: number) => BOUND_SCALE * o.tolerance * EPS32 * mag + 1e-30;
  const badRows: number[] = [];
  const residuals: number[] = [];
  let worst = 0;
  for (let i = 0; i < o.m; i++) {
    const r = rc.actual[i] - rc.expected[i] - biasSum;
    const bd = bound(rc.magnitude[i] + biasAbs);
    const ratio = Math.abs(r) / bd;
    worst = Math.max(worst, Number.isNaN(ratio) ? Infinity : ratio);
    if (!(ratio <= 1)) { badRows.push(i); residuals.push(r); }
  }
  const report: ProtectionReport = { scheme: 'global', events: [], maxRatio: worst };
  if (badRows.length === 0) return report;
  // Locate: column checksums e^T·C vs (e^T·op(A))·op(B), with magnitudes from |A| and |B|.
  const absA = abs(opA.contiguous()), absB = abs(B);
  const [eA, eAbs] = await Promise.all([colSums(opA.contiguous()), colSums(absA)]);
  const f32 = (t: Tensor<'float64'>) => new Tensor<'float32'>(Float32Array.from(t.data));
  const colWant = o.transB ? await weightedRowSums(B, f32(eA)) : await weightedColSums(B, f32(eA));
  const colMag = o.transB ? await weightedRowSums(absB, f32(eAbs)) : await weightedColSums(absB, f32(eAbs));
  const colGot = await colSums(C);
  const badCols: number[] = [];
  for (let j = 0; j < o.n; j++) {
    const r = colGot.data[j] - colWant.data[j] - (o.bias ? o.m * o.bias[j] : 0);
    if (!(Math.abs(r) <= bound(colMag.data[j] + (o.bias ? o.m * Math.abs(o.bias[j]) : 0)))) badCols.push(j);
  }
  if (badRows.length === 1 && badCols.length === 1) {
    const [i, j] = [badRows[0], badCols[0]];
    const before = C.get(i, j);
    const after = o.correct ? exactElement(A, B, o, i, j) : before;
    if (o.correct) C.set(after, i, j);
    report.events.push({ layer: o.layer, scheme: 'global', row: i, col: j, residual: residuals[0], bound: bound(rc.magnitude[i] + biasAbs), before, after, action: o.correct ? 'corrected' : 'detected' });
    return report;
  }
  // Several rows or columns: recompute the flagged rows.
  for (let q = 0; q < badRows.length; q++) {
    const i = badRows[q];
    if (o.correct) {
      const rowA = o.transA ? A.slice(1, i, i + 1).transpose() : A.slice(0, i, i + 1);
      const row = await gemm(rowA.contiguous(), B, { transB: o.transB });
      for (let j = 0; j < o.n; j++) C.set(row.data[j] + (o.bias ? o.bias[j] : 0), i, j);
    }
    report.events.push({
      layer: o.layer, scheme: 'global', row: -1, col: -1, residual: residuals[q], bound: bound(rc.magnitude[i] + biasAbs),
      region: { row0: i, col0: 0, rows: 1, cols: o.n }, action: o.correct ? 'recomputed' : 'detected',
    });
  }
  return report;
}
