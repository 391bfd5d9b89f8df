// GEMM on Tensors (views map to BLAS leading dimensions and transposes without copies) and the
// BLAS-style sgemm on raw Float32Arrays.
import { native, type Layout, type NativePackedMatrix } from './addon.js';
import { checkTensor, Tensor } from './tensor.js';
import { boolean, finiteNumber, integer, oneOf, plainObject, rangeError, typeError } from './validate.js';

export interface GemmOptions {
  /** Use A transposed (A is then k x m). */
  transA?: boolean;
  /** Use B transposed (B is then n x k). */
  transB?: boolean;
  alpha?: number;
  /** Scale of the existing C; only meaningful with `out`. */
  beta?: number;
  /** Output m x n (written in place). Created when absent. */
  out?: Tensor<'float32'>;
}

// A 2-D float32 view as a row-major BLAS operand: data from its first element, leading dimension,
// and whether its storage is the transpose of its logical shape. Copies only when neither stride is 1.
export interface Operand {
  data: Float32Array;
  ld: number;
  transposed: boolean;
}

export function operand(t: Tensor<'float32'>): Operand {
  const [rows, cols] = t.shape;
  const [s0, s1] = t.strides;
  const data = t.data;
  const size = (rows - 1) * s0 + (cols - 1) * s1 + 1;
  if (rows === 0 || cols === 0) return { data: data.subarray(t.offset, t.offset), ld: Math.max(1, cols), transposed: false };
  if (s1 === 1 || cols === 1) {
    const ld = rows === 1 ? Math.max(1, cols) : s0;
    if (ld >= cols) return { data: data.subarray(t.offset, t.offset + size), ld, transposed: false };
  }
  if (s0 === 1 || rows === 1) {
    const ld = cols === 1 ? Math.max(1, rows) : s1;
    if (ld >= rows) return { data: data.subarray(t.offset, t.offset + size), ld, transposed: true };
  }
  const copy = t.clone();
  return { data: copy.data, ld: Math.max(1, cols), transposed: false };
}

export interface GemmPlan {
  args: Parameters<typeof native.sgemm> extends [unknown, ...infer R] ? R : never;
  out: Tensor<'float32'>;
}

/** Checked arguments of a native sgemm call for Tensors (shared with the checked GEMMs). */
export function gemmPlan(a: unknown, b: unknown, options: unknown): GemmPlan {
  const A = checkTensor(a, 'a', ['float32'], 2);
  const B = checkTensor(b, 'b', ['float32'], 2);
  const o = plainObject(options, 'options') as GemmOptions;
  const transA = o.transA === undefined ? false : boolean(o.transA, 'options.transA');
  const transB = o.transB === undefined ? false : boolean(o.transB, 'options.transB');
  const alpha = o.alpha === undefined ? 1 : finiteNumber(o.alpha, 'options.alpha');
  const beta = o.beta === undefined ? 0 : finiteNumber(o.beta, 'options.beta');
  const [m, k] = transA ? [A.shape[1], A.shape[0]] : [A.shape[0], A.shape[1]];
  const [kb, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  if (kb !== k) throw rangeError('b', `${k} rows in op(b) (the columns of op(a))`, `shape [${B.shape}]${transB ? ' transposed' : ''}`, true);
  let out: Tensor<'float32'>;
  if (o.out !== undefined) {
    out = checkTensor(o.out, 'options.out', ['float32'], 2);
    if (out.shape[0] !== m || out.shape[1] !== n) throw rangeError('options.out', `shape [${m}, ${n}]`, `shape [${out.shape}]`, true);
  } else {
    if (beta !== 0) throw rangeError('options.beta', '0 when no options.out is given', beta);
    out = Tensor.empty([m, n], 'float32');
  }
  const opA = operand(A), opB = operand(B);
  const ta = transA !== opA.transposed, tb = transB !== opB.transposed;
  const [s0, s1] = out.strides;
  const cData = out.data.subarray(out.offset);
  if (s1 === 1 || n <= 1) {
    const ldc = m <= 1 ? Math.max(1, n) : Math.max(1, n, s0);
    return { args: ['row', ta, tb, m, n, k, alpha, opA.data, opA.ld, opB.data, opB.ld, beta, cData, ldc], out };
  }
  if (s0 === 1 || m <= 1) {
    // Column-major C: compute C^T = op(B)^T op(A)^T in row-major terms.
    const ldc = n <= 1 ? Math.max(1, m) : Math.max(1, m, s1);
    return { args: ['row', !tb, !ta, n, m, k, alpha, opB.data, opB.ld, opA.data, opA.ld, beta, cData, ldc], out };
  }
  throw rangeError('options.out', 'a Tensor with a unit stride', `strides [${out.strides}]`, true);
}

// Calls under this many FLOPs run on the calling thread even through the Promise API (GEMMs,
// checked GEMMs, conv2d forward): that is at most about 0.15 ms of one core's arithmetic, while
// the round trip to a worker thread and back (queue, wake-up, completion callback) costs
// 25-100 µs on a busy machine.
export const INLINE_FLOPS = 16e6;

/** Whether a GEMM plan's work is small enough to run inline (INLINE_FLOPS). */
export function runsInline(m: number, n: number, k: number): boolean {
  return 2 * m * n * k < INLINE_FLOPS;
}

/** C = alpha * op(A) * op(B) + beta * C on float32 2-D tensors, off the JS thread (small ones inline). */
export async function gemm(a: Tensor<'float32'>, b: Tensor<'float32'>, options?: GemmOptions): Promise<Tensor<'float32'>> {
  const p = gemmPlan(a, b, options);
  const [, , , m, n, k] = p.args;
  if (runsInline(m, n, k)) native.sgemm(false, ...p.args);
  else await native.sgemm(true, ...p.args);
  return p.out;
}

/** Synchronous gemm for small matrices (it blocks the JS thread while it runs). */
export function gemmSync(a: Tensor<'float32'>, b: Tensor<'float32'>, options?: GemmOptions): Tensor<'float32'> {
  const p = gemmPlan(a, b, options);
  native.sgemm(false, ...p.args);
  return p.out;
}

/** BLAS-style arguments over raw Float32Arrays. */
export interface SgemmArgs {
  layout?: Layout;
  transA?: boolean;
  transB?: boolean;
  m: number;
  n: number;
  k: number;
  alpha?: number;
  a: Float32Array;
  lda: number;
  b: Float32Array;
  ldb: number;
  beta?: number;
  c: Float32Array;
  ldc: number;
}

function sgemmArgs(args: unknown): GemmPlan['args'] {
  const o = plainObject(args, 'args');
  if (args === undefined) throw typeError('args', 'an sgemm argument object', args);
  const layout = o.layout === undefined ? 'row' : oneOf(o.layout, 'args.layout', ['row', 'col'] as const);
  const flag = (key: string) => (o[key] === undefined ? false : boolean(o[key], `args.${key}`));
  const dim = (key: string) => integer(o[key], `args.${key}`, 0, 2 ** 31 - 1);
  const ld = (key: string) => integer(o[key], `args.${key}`, 1, 2 ** 31 - 1);
  const arr = (key: string) => {
    if (!(o[key] instanceof Float32Array)) throw typeError(`args.${key}`, 'a Float32Array', o[key]);
    return o[key] as Float32Array;
  };
  const alpha = o.alpha === undefined ? 1 : finiteNumber(o.alpha, 'args.alpha');
  const beta = o.beta === undefined ? 0 : finiteNumber(o.beta, 'args.beta');
  return [layout, flag('transA'), flag('transB'), dim('m'), dim('n'), dim('k'), alpha, arr('a'), ld('lda'), arr('b'), ld('ldb'), beta, arr('c'), ld('ldc')];
}

/** cblas_sgemm semantics on raw arrays; resolves with `c`. beta = 0 never reads C. */
export async function sgemm(args: SgemmArgs): Promise<Float32Array> {
  return native.sgemm(true, ...sgemmArgs(args));
}
export function sgemmSync(args: SgemmArgs): Float32Array {
  return native.sgemm(false, ...sgemmArgs(args));
}

const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? (Symbol.for('nodejs.dispose') as typeof Symbol.dispose);

/**
 * Constant weights packed once into the GEMM micro-kernel's panel format, multiplied many times:
 * `y = x · W` (W is k x n, or n x k with transB, as a Linear layer stores it).
 */
export class PackedWeights {
  readonly k: number;
  readonly n: number;
  #handle: NativePackedMatrix | null;

  constructor(weights: Tensor<'float32'>, options: { transB?: boolean } = {}) {
    const W = checkTensor(weights, 'weights', ['float32'], 2);
    const o = plainObject(options, 'options');
    const transB = o.transB === undefined ? false : boolean(o.transB, 'options.transB');
    const op = operand(W);
    const t = transB !== op.transposed;
    [this.k, this.n] = transB ? [W.shape[1], W.shape[0]] : [W.shape[0], W.shape[1]];
    this.#handle = native.packB('row', t, this.k, this.n, op.data, op.ld);
  }

  get disposed(): boolean {
    return this.#handle === null || this.#handle.disposed;
  }

  #plan(x: unknown, options: unknown): { args: Parameters<typeof native.sgemmPacked> extends [unknown, ...infer R] ? R : never; out: Tensor<'float32'> } {
    if (this.#handle === null) throw typeError('weights', 'live PackedWeights', 'disposed PackedWeights', true);
    const X = checkTensor(x, 'x', ['float32'], 2);
    const o = plainObject(options, 'options') as { alpha?: number; beta?: number; out?: Tensor<'float32'> };
    if (X.shape[1] !== this.k) throw rangeError('x', `${this.k} columns`, `shape [${X.shape}]`, true);
    const m = X.shape[0];
    const alpha = o.alpha === undefined ? 1 : finiteNumber(o.alpha, 'options.alpha');
    const beta = o.beta === undefined ? 0 : finiteNumber(o.beta, 'options.beta');
    let out: Tensor<'float32'>;
    if (o.out !== undefined) {
      out = checkTensor(o.out, 'options.out', ['float32'], 2);
      if (out.shape[0] !== m || out.shape[1] !== this.n) throw rangeError('options.out', `shape [${m}, ${this.n}]`, `shape [${out.shape}]`, true);
      if (!out.isContiguous) throw rangeError('options.out', 'a contiguous Tensor', `strides [${out.strides}]`, true);
    } else {
      if (beta !== 0) throw rangeError('options.beta', '0 when no options.out is given', beta);
      out = Tensor.empty([m, this.n], 'float32');
    }
    const op = operand(X);
    return { args: ['row', op.transposed, m, alpha, op.data, op.ld, this.#handle, beta, out.contiguousData(), Math.max(1, this.n)], out };
  }

  async matmul(x: Tensor<'float32'>, options?: { alpha?: number; beta?: number; out?: Tensor<'float32'> }): Promise<Tensor<'float32'>> {
    const p = this.#plan(x, options);
    await native.sgemmPacked(true, ...p.args);
    return p.out;
  }
  matmulSync(x: Tensor<'float32'>, options?: { alpha?: number; beta?: number; out?: Tensor<'float32'> }): Tensor<'float32'> {
    const p = this.#plan(x, options);
    native.sgemmPacked(false, ...p.args);
    return p.out;
  }

  dispose(): void {
    this.#handle?.dispose();
    this.#handle = null;
  }
  [disposeSymbol](): void {
    this.dispose();
  }
}
