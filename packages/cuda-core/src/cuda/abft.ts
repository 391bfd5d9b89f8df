// Checksum-protected GEMM on the GPU (see native/include/kintsugi/cuda_abft.h):
//  - 'global' (Huang–Abraham): the plain GEMM, then one fused pass comparing every row sum of C
//    with op(A)·(op(B)·e) from the weights' checksums (cudaAbftWeightSums, computed once);
//    a flagged row is located to a column by the column checks.
//  - 'thread': the SIMT kernel with each thread checksumming its own 8x8 register tile
//    (one-sided: column sums; two-sided: also row sums), compared once after the K loop.
// Flagged regions are recomputed in fp64 from A and B on the device: one wrong element is
// corrected in place, several are rewritten. Bounds follow the CPU's model (128·tol·eps32·Σ|a||b|).
import { decodeAbftEvents, EVENT_FIELDS, type AbftAction, type AbftTileEvent } from '../abft.js';
import { native } from '../addon.js';
import { boolean, finiteNumber, integer, oneOf, plainObject, rangeError, typeError } from '../validate.js';
import { checkDeviceTensor, DeviceTensor, streamHandle, type CudaStream } from './memory.js';

type FloatDType = 'float32' | 'float16' | 'bfloat16';
const floatDTypes: readonly FloatDType[] = ['float32', 'float16', 'bfloat16'];

export type CudaAbftScheme = 'global' | 'thread';
export type CudaAbftAction = AbftAction;

/** One flagged region of C: a row (global), a thread tile (rows row0+{0..3, 64..67}, likewise columns) or one of its lines. */
export type CudaAbftEvent = AbftTileEvent;

export interface CudaAbftReport {
  scheme: CudaAbftScheme;
  /** Row checks (global) or per-thread tile checks (thread) performed. */
  checks: number;
  /** Largest |residual| / bound (> 1: something was flagged). */
  maxRatio: number;
  eventCount: number;
  events: CudaAbftEvent[];
  detected: boolean;
  /** Every flagged region held a located (and, when correcting, repaired) error or was recomputed. */
  corrected: boolean;
  /** An injected fault was applied. */
  faultFired: boolean;
}

/** Checksums of a constant op(B) for the global scheme: 2k float64 values on the device. */
export interface CudaWeightChecksums {
  readonly k: number;
  readonly n: number;
  readonly transB: boolean;
  readonly sums: DeviceTensor;
}

export interface CudaFault {
  row: number;
  col: number;
  bit: number;
}

export interface CudaGemmCheckedOptions {
  scheme?: CudaAbftScheme;
  /** Thread scheme: 'two-sided' (default, rows and columns) or 'one-sided' (columns). */
  check?: 'one-sided' | 'two-sided';
  tolerance?: number;
  correct?: boolean;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** float32 m x n output (created when absent). */
  out?: DeviceTensor;
  /** Global scheme: precomputed checksums of op(B) (cudaWeightChecksums). */
  weightChecksums?: CudaWeightChecksums;
  /** Flip bit `bit` of the accumulator of C(row, col) (one fault, or two). */
  inject?: CudaFault | CudaFault[];
  maxEvents?: number;
  /** A uint8 DeviceTensor of at least cudaAbftWorkspaceBytes() bytes, reused across calls (timing loops); one is allocated per call otherwise. */
  workspace?: DeviceTensor;
  stream?: CudaStream | null;
}

/** Bytes of workspace a checked GEMM with these settings needs. */
export function cudaAbftWorkspaceBytes(scheme: CudaAbftScheme, k: number, options: { maxEvents?: number; weightChecksums?: boolean } = {}): number {
  return native.cudaAbftWorkspaceBytes(oneOf(scheme, 'scheme', ['global', 'thread'] as const), integer(k, 'k', 0, 2 ** 31 - 1),
    integer(options.maxEvents ?? 64, 'options.maxEvents', 1, 65536), options.weightChecksums === true);
}

const HEADER = 4;

/** The global scheme's checksums of op(B) (k x n): Σ_j op(B)(p, j) and Σ_j |op(B)(p, j)|, once per weight. */
export function cudaWeightChecksums(b: DeviceTensor, options: { transB?: boolean; stream?: CudaStream | null } = {}): CudaWeightChecksums {
  const B = checkDeviceTensor(b, 'b', floatDTypes, 2);
  const o = plainObject(options, 'options') as { transB?: boolean; stream?: CudaStream | null };
  const transB = o.transB === undefined ? false : boolean(o.transB, 'options.transB');
  const [k, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  const sums = DeviceTensor.empty([2 * k], { device: B.device, dtype: 'float64' });
  native.cudaAbftWeightSums(B.device, streamHandle(o.stream, B.device), B.dtype as FloatDType, transB, k, n, B.buffer, 0, Math.max(1, B.shape[1]), sums.buffer, 0);
  return { k, n, transB, sums };
}

function faultArray(inject: unknown, m: number, n: number, elementBits: number): Int32Array | null {
  if (inject === undefined) return null;
  const list = Array.isArray(inject) ? inject : [inject];
  if (list.length < 1 || list.length > 2) throw rangeError('options.inject', 'one or two faults', `${list.length} faults`, true);
  const f = new Int32Array([-1, -1, 0, -1, -1, 0]);
  list.forEach((x, i) => {
    const name = Array.isArray(inject) ? `options.inject[${i}]` : 'options.inject';
    const o = plainObject(x, name) as unknown as CudaFault;
    f[3 * i] = integer(o.row, `${name}.row`, 0, m - 1);
    f[3 * i + 1] = integer(o.col, `${name}.col`, 0, n - 1);
    f[3 * i + 2] = integer(o.bit, `${name}.bit`, 0, elementBits - 1);
  });
  return f;
}

function planChecked(a: unknown, b: unknown, options: unknown) {
  const A = checkDeviceTensor(a, 'a', floatDTypes, 2);
  const B = checkDeviceTensor(b, 'b', floatDTypes, 2);
  if (A.dtype !== B.dtype) throw typeError('b', `a ${A.dtype} DeviceTensor (the dtype of a)`, `dtype ${B.dtype}`, true);
  if (B.device !== A.device) throw rangeError('b', `a DeviceTensor on device ${A.device}`, `device ${B.device}`, true);
  const o = plainObject(options, 'options') as CudaGemmCheckedOptions;
  const scheme = o.scheme === undefined ? 'global' : oneOf(o.scheme, 'options.scheme', ['global', 'thread'] as const);
  const check = o.check === undefined ? 'two-sided' : oneOf(o.check, 'options.check', ['one-sided', 'two-sided'] as const);
  const tolerance = o.tolerance === undefined ? 1 : finiteNumber(o.tolerance, 'options.tolerance');
  if (!(tolerance > 0)) throw rangeError('options.tolerance', 'a number > 0', tolerance);
  const correct = o.correct === undefined ? true : boolean(o.correct, 'options.correct');
  const transA = o.transA === undefined ? false : boolean(o.transA, 'options.transA');
  const transB = o.transB === undefined ? false : boolean(o.transB, 'options.transB');
  const alpha = o.alpha === undefined ? 1 : finiteNumber(o.alpha, 'options.alpha');
  const maxEvents = o.maxEvents === undefined ? 64 : integer(o.maxEvents, 'options.maxEvents', 1, 65536);
  const [m, k] = transA ? [A.shape[1], A.shape[0]] : [A.shape[0], A.shape[1]];
  const [kb, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  if (kb !== k) throw rangeError('b', `${k} rows in op(b) (the columns of op(a))`, `shape [${B.shape}]${transB ? ' transposed' : ''}`, true);
  let sums: CudaWeightChecksums | undefined;
  if (o.weightChecksums !== undefined) {
    const w = o.weightChecksums;
    if (w === null || typeof w !== 'object' || !(w.sums instanceof DeviceTensor)) throw typeError('options.weightChecksums', 'checksums from cudaWeightChecksums()', w);
    if (w.k !== k || w.n !== n || w.transB !== transB) throw rangeError('options.weightChecksums', `checksums of a ${k} x ${n} op(b) (transB = ${transB})`, `checksums of a ${w.k} x ${w.n} op(b) (transB = ${w.transB})`, true);
    if (w.sums.device !== A.device) throw rangeError('options.weightChecksums', `checksums on device ${A.device}`, `device ${w.sums.device}`, true);
    sums = w;
  }
  const faults = faultArray(o.inject, m, n, 32);
  let out: DeviceTensor;
  if (o.out !== undefined) {
    out = checkDeviceTensor(o.out, 'options.out', ['float32'], 2);
    if (out.shape[0] !== m || out.shape[1] !== n) throw rangeError('options.out', `shape [${m}, ${n}]`, `shape [${out.shape}]`, true);
    if (out.device !== A.device) throw rangeError('options.out', `a DeviceTensor on device ${A.device}`, `device ${out.device}`, true);
  } else {
    out = DeviceTensor.empty([m, n], { device: A.device, dtype: 'float32' });
  }
  const wsBytes = native.cudaAbftWorkspaceBytes(scheme, k, maxEvents, sums !== undefined);
  let workspace: DeviceTensor, ownWorkspace = true;
  if (o.workspace !== undefined) {
    workspace = checkDeviceTensor(o.workspace, 'options.workspace', ['uint8']);
    if (workspace.size < wsBytes) throw rangeError('options.workspace', `at least ${wsBytes} bytes`, `${workspace.size} bytes`, true);
    if (workspace.device !== A.device) throw rangeError('options.workspace', `a DeviceTensor on device ${A.device}`, `device ${workspace.device}`, true);
    ownWorkspace = false;
  } else {
    workspace = DeviceTensor.empty([Math.max(16, wsBytes)], { device: A.device, dtype: 'uint8' });
  }
  const release = () => { if (ownWorkspace) workspace.dispose(); };
  const stream = streamHandle(o.stream, A.device);
  const report = new Float64Array(HEADER + EVENT_FIELDS * maxEvents);
  const call = (phase: 'launch' | 'finish') => native.cudaGemmChecked(phase, A.device, stream, scheme, check, tolerance, correct, transA, transB, m, n, k, alpha,
    A.buffer, 0, Math.max(1, A.shape[1]), B.buffer, 0, Math.max(1, B.shape[1]), out.buffer, 0, Math.max(1, n), A.dtype as FloatDType,
    workspace.buffer, 0, sums ? sums.sums.buffer : null, 0, faults, maxEvents, report);
  return { scheme, out, release, report, call };
}

function decode(scheme: CudaAbftScheme, r: Float64Array): CudaAbftReport {
  const count = r[2];
  const events = decodeAbftEvents(r, HEADER, count);
  return {
    scheme, checks: r[0], maxRatio: r[1], eventCount: count, events, detected: count > 0,
    corrected: count > 0 && events.length > 0 && events.every((e) => e.action !== 'detected'), faultFired: r[3] !== 0,
  };
}

/**
 * C = alpha·op(A)·op(B) on the GPU with ABFT: detects, locates and (by default) corrects in place.
 * Resolves when C is checked; the report lists every flagged region and what was done.
 */
export async function cudaGemmChecked(a: DeviceTensor, b: DeviceTensor, options: CudaGemmCheckedOptions = {}): Promise<{ out: DeviceTensor; report: CudaAbftReport }> {
  const p = planChecked(a, b, options);
  try {
    p.call('launch');
    await p.call('finish');
  } finally {
    p.release();
  }
  return { out: p.out, report: decode(p.scheme, p.report) };
}

/**
 * Enqueues a checked GEMM on the stream and returns at once (for timing clean runs with
 * timeCuda); `finish()` waits, repairs what was flagged and returns the report.
 */
export function cudaGemmCheckedLaunch(a: DeviceTensor, b: DeviceTensor, options: CudaGemmCheckedOptions = {}): { out: DeviceTensor; finish: () => Promise<CudaAbftReport> } {
  const p = planChecked(a, b, options);
  try {
    p.call('launch');
  } catch (e) {
    p.release();
    throw e;
  }
  let done: Promise<CudaAbftReport> | null = null;
  const finish = () => {
    done ??= (async () => {
      try {
        await p.call('finish');
      } finally {
        p.release();
      }
      return decode(p.scheme, p.report);
    })();
    return done;
  };
  return { out: p.out, finish };
}

/** Flips bit `bit` of element `index` (row-major) of a float DeviceTensor on the device: an input or output soft error. */
export function cudaFlipBit(t: DeviceTensor, index: number, bit: number, stream?: CudaStream | null): void {
  const T = checkDeviceTensor(t, 't', floatDTypes);
  const bits = T.dtype === 'float32' ? 32 : 16;
  native.cudaFlipBit(T.device, streamHandle(stream, T.device), T.dtype as FloatDType, T.buffer, 0, T.size, integer(index, 'index', 0, T.size - 1), integer(bit, 'bit', 0, bits - 1));
}
