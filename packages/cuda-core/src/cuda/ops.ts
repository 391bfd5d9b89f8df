// The CUDA kernels on DeviceTensors: GEMM (ours or cuBLAS), conv2d, checksums, parity coding and
// embedding bags, plus GPU-side timing with events. GEMM, conv and checksums enqueue on a stream
// and return at once; coding and embedding calls resolve when done (they stage small tables).
import { native } from '../addon.js';
import { conv2dParams, type Conv2dOptions } from '../conv.js';
import { pairwiseDotCount } from '../embedding.js';
import { boolean, finiteNumber, integer, oneOf, plainObject, rangeError, typeError } from '../validate.js';
import { checkDeviceTensor, CudaEvent, cudaDevice, DeviceTensor, streamHandle, type CudaStream } from './memory.js';

type FloatDType = 'float32' | 'float16' | 'bfloat16';
const floatDTypes: readonly FloatDType[] = ['float32', 'float16', 'bfloat16'];

export interface CudaGemmOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Scale of the existing `out`; 0 (the default) overwrites it without reading it. */
  beta?: number;
  out?: DeviceTensor;
  /** dtype of a new output: float32 (default) or the inputs' dtype. */
  outDtype?: FloatDType;
  /** float32 inputs on TF32 tensor cores (sm_80+). */
  tf32?: boolean;
  backend?: 'kintsugi' | 'cublas';
  stream?: CudaStream | null;
}

/** C = alpha·op(A)·op(B) + beta·C on the GPU; A and B share a dtype, accumulation is fp32. */
export function cudaGemm(a: DeviceTensor, b: DeviceTensor, options: CudaGemmOptions = {}): DeviceTensor {
  const A = checkDeviceTensor(a, 'a', floatDTypes, 2);
  const B = checkDeviceTensor(b, 'b', floatDTypes, 2);
  if (A.dtype !== B.dtype) throw typeError('b', `a ${A.dtype} DeviceTensor (the dtype of a)`, `dtype ${B.dtype}`, true);
  if (B.device !== A.device) throw rangeError('b', `a DeviceTensor on device ${A.device}`, `device ${B.device}`, true);
  const o = plainObject(options, 'options') as CudaGemmOptions;
  const transA = o.transA === undefined ? false : boolean(o.transA, 'options.transA');
  const transB = o.transB === undefined ? false : boolean(o.transB, 'options.transB');
  const alpha = o.alpha === undefined ? 1 : finiteNumber(o.alpha, 'options.alpha');
  const beta = o.beta === undefined ? 0 : finiteNumber(o.beta, 'options.beta');
  const tf32 = o.tf32 === undefined ? false : boolean(o.tf32, 'options.tf32');
  const backend = o.backend === undefined ? 'kintsugi' : oneOf(o.backend, 'options.backend', ['kintsugi', 'cublas'] as const);
  const [m, k] = transA ? [A.shape[1], A.shape[0]] : [A.shape[0], A.shape[1]];
  const [kb, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  if (kb !== k) throw rangeError('b', `${k} rows in op(b) (the columns of op(a))`, `shape [${B.shape}]${transB ? ' transposed' : ''}`, true);
  let out: DeviceTensor;
  if (o.out !== undefined) {
    out = checkDeviceTensor(o.out, 'options.out', floatDTypes, 2);
    if (out.shape[0] !== m || out.shape[1] !== n) throw rangeError('options.out', `shape [${m}, ${n}]`, `shape [${out.shape}]`, true);
    if (out.device !== A.device) throw rangeError('options.out', `a DeviceTensor on device ${A.device}`, `device ${out.device}`, true);
  } else {
    if (beta !== 0) throw rangeError('options.beta', '0 when no options.out is given', beta);
    const dtype = o.outDtype === undefined ? 'float32' : oneOf(o.outDtype, 'options.outDtype', floatDTypes);
    out = DeviceTensor.empty([m, n], { device: A.device, dtype });
  }
  if (out.dtype !== 'float32' && out.dtype !== A.dtype) throw typeError('options.out', `a float32 or ${A.dtype} DeviceTensor`, `dtype ${out.dtype}`, true);
  native.cudaGemm(A.device, streamHandle(o.stream, A.device), backend, transA, transB, m, n, k, alpha,
    A.buffer, 0, Math.max(1, A.shape[1]), B.buffer, 0, Math.max(1, B.shape[1]), beta, out.buffer, 0, Math.max(1, n),
    A.dtype as FloatDType, out.dtype as FloatDType, tf32);
  return out;
}

/** Whether cuBLAS could be loaded (dlopen of libcublas.so.13/.12/.11), and which library or why not. */
export function cublasStatus(): { available: boolean; library?: string; reason?: string } {
  return native.cublasStatus();
}

export interface CudaConv2dOptions extends Conv2dOptions {
  out?: DeviceTensor;
  stream?: CudaStream | null;
}

function convPlan(x: DeviceTensor, w: DeviceTensor, options: CudaConv2dOptions) {
  const X = checkDeviceTensor(x, 'x', ['float32', 'float16'], 4);
  const W = checkDeviceTensor(w, 'w', ['float32', 'float16'], 4);
  if (W.dtype !== X.dtype) throw typeError('w', `a ${X.dtype} DeviceTensor`, `dtype ${W.dtype}`, true);
  if (W.device !== X.device) throw rangeError('w', `a DeviceTensor on device ${X.device}`, `device ${W.device}`, true);
  const { stream, out, ...shape } = plainObject(options, 'options') as CudaConv2dOptions;
  const p = conv2dParams(X.shape, W.shape, shape);
  if (p.layout !== 'nchw') throw rangeError('options.layout', "'nchw' (the CUDA convolution takes NCHW only; NHWC runs on the CPU)", p.layout);
  return { X, W, p, stream: streamHandle(stream, X.device), out };
}

function outputOf(out: DeviceTensor | undefined, shape: number[], like: DeviceTensor, name: string): DeviceTensor {
  if (out === undefined) return DeviceTensor.empty(shape, { device: like.device, dtype: like.dtype });
  const t = checkDeviceTensor(out, name, [like.dtype], shape.length);
  if (t.shape.some((d, i) => d !== shape[i])) throw rangeError(name, `shape [${shape}]`, `shape [${t.shape}]`, true);
  if (t.device !== like.device) throw rangeError(name, `a DeviceTensor on device ${like.device}`, `device ${t.device}`, true);
  return t;
}

/** y = conv2d(x, w) + bias on the GPU (NCHW, float32 or float16 with fp32 accumulation). */
export function cudaConv2d(x: DeviceTensor, w: DeviceTensor, bias?: DeviceTensor | null, options: CudaConv2dOptions = {}): DeviceTensor {
  const { X, W, p, stream, out } = convPlan(x, w, options);
  let B: DeviceTensor | null = null;
  if (bias !== undefined && bias !== null) {
    B = checkDeviceTensor(bias, 'bias', [X.dtype], 1);
    if (B.shape[0] !== p.cOut) throw rangeError('bias', `shape [${p.cOut}]`, `shape [${B.shape}]`, true);
  }
  const y = outputOf(out, [p.n, p.cOut, p.outH, p.outW], X, 'options.out');
  native.cudaConv2d('forward', X.device, stream, X.dtype as 'float32', p, X.buffer, 0, W.buffer, 0, y.buffer, 0, B ? B.buffer : null, 0);
  return y;
}

/** Gradients of conv2d on the GPU: dx from dy and w; dw (and db) from x and dy. */
export function cudaConv2dBackward(x: DeviceTensor, w: DeviceTensor, dy: DeviceTensor, options: CudaConv2dOptions & { bias?: boolean } = {}): { dx: DeviceTensor; dw: DeviceTensor; db?: DeviceTensor } {
  const { bias, ...rest } = plainObject(options, 'options') as CudaConv2dOptions & { bias?: boolean };
  const { X, W, p, stream } = convPlan(x, w, rest);
  const DY = checkDeviceTensor(dy, 'dy', [X.dtype], 4);
  const yShape = [p.n, p.cOut, p.outH, p.outW];
  if (DY.shape.some((d, i) => d !== yShape[i])) throw rangeError('dy', `shape [${yShape}]`, `shape [${DY.shape}]`, true);
  const dx = DeviceTensor.empty(X.shape, { device: X.device, dtype: X.dtype });
  const dw = DeviceTensor.empty(W.shape, { device: X.device, dtype: X.dtype });
  const db = bias ? DeviceTensor.empty([p.cOut], { device: X.device, dtype: X.dtype }) : undefined;
  native.cudaConv2d('backwardData', X.device, stream, X.dtype as 'float32', p, DY.buffer, 0, W.buffer, 0, dx.buffer, 0, null, 0);
  native.cudaConv2d('backwardWeight', X.device, stream, X.dtype as 'float32', p, X.buffer, 0, DY.buffer, 0, dw.buffer, 0, db ? db.buffer : null, 0);
  return db ? { dx, dw, db } : { dx, dw };
}

/** Row (axis 'rows': one per row) or column sums of a float32 matrix, accumulated in float64. */
export function cudaChecksum(a: DeviceTensor, axis: 'rows' | 'cols', stream?: CudaStream | null): DeviceTensor {
  const A = checkDeviceTensor(a, 'a', ['float32'], 2);
  const which = oneOf(axis, 'axis', ['rows', 'cols'] as const);
  const [m, n] = A.shape;
  const out = DeviceTensor.empty([which === 'rows' ? m : n], { device: A.device, dtype: 'float64' });
  native.cudaChecksum(which, A.device, streamHandle(stream, A.device), A.buffer, 0, m, n, Math.max(1, n), out.buffer, 0);
  return out;
}

function sameBlocks(blocks: unknown, name: string, dtype: 'uint8' | 'float32', minCount: number): DeviceTensor[] {
  if (!Array.isArray(blocks)) throw typeError(name, 'an array of DeviceTensors', blocks);
  if (blocks.length < minCount) throw rangeError(name, `at least ${minCount} blocks`, `${blocks.length} blocks`, true);
  const list = blocks.map((b, i) => checkDeviceTensor(b, `${name}[${i}]`, [dtype]));
  for (let i = 1; i < list.length; i++) {
    if (list[i].size !== list[0].size) throw rangeError(`${name}[${i}]`, `${list[0].size} elements (as ${name}[0])`, `${list[i].size} elements`, true);
    if (list[i].device !== list[0].device) throw rangeError(`${name}[${i}]`, `a DeviceTensor on device ${list[0].device}`, `device ${list[i].device}`, true);
  }
  return list;
}

function flat(blocks: DeviceTensor[]): (object | number)[] {
  return blocks.flatMap((b) => [b.buffer, 0]);
}

/** parity = XOR of the blocks (uint8 DeviceTensors of equal size); also decodes one lost block. */
export async function cudaXorEncode(blocks: DeviceTensor[], parity?: DeviceTensor, stream?: CudaStream | null): Promise<DeviceTensor> {
  const list = sameBlocks(blocks, 'blocks', 'uint8', 1);
  const out = parity ?? DeviceTensor.empty([list[0].size], { device: list[0].device, dtype: 'uint8' });
  sameBlocks([list[0], out], 'parity', 'uint8', 2);
  await native.cudaXorEncode(out.device, streamHandle(stream, out.device), flat(list), list[0].size, out.buffer, 0);
  return out;
}

/** parity = Σ coeffs[i]·blocks[i] over float32 DeviceTensors (coeffs default to ones). */
export async function cudaSumEncode(blocks: DeviceTensor[], options: { coeffs?: Float32Array; parity?: DeviceTensor; stream?: CudaStream | null } = {}): Promise<DeviceTensor> {
  const list = sameBlocks(blocks, 'blocks', 'float32', 1);
  const out = options.parity ?? DeviceTensor.empty([list[0].size], { device: list[0].device });
  sameBlocks([list[0], out], 'options.parity', 'float32', 2);
  await native.cudaSumEncode(out.device, streamHandle(options.stream, out.device), flat(list), options.coeffs ?? null, list[0].size, out.buffer, 0);
  return out;
}

/** The one missing block: (parity − Σ coeffs[i]·available[i]) / missingCoeff. */
export async function cudaSumDecode(parity: DeviceTensor, available: DeviceTensor[], options: { coeffs?: Float32Array; missingCoeff?: number; out?: DeviceTensor; stream?: CudaStream | null } = {}): Promise<DeviceTensor> {
  const P = checkDeviceTensor(parity, 'parity', ['float32']);
  const list = sameBlocks([P, ...available], 'available', 'float32', 1).slice(1);
  const out = options.out ?? DeviceTensor.empty([P.size], { device: P.device });
  sameBlocks([P, out], 'options.out', 'float32', 2);
  const missing = options.missingCoeff === undefined ? 1 : finiteNumber(options.missingCoeff, 'options.missingCoeff');
  await native.cudaSumDecode(P.device, streamHandle(options.stream, P.device), flat(list), options.coeffs ?? null, missing, P.size, P.buffer, 0, out.buffer, 0);
  return out;
}

export interface CudaEmbeddingBagOptions {
  weights?: Float32Array;
  mode?: 'sum' | 'mean';
  stream?: CudaStream | null;
}

/** out[bag] = Σ (or mean) of table rows named by indices[offsets[bag] .. offsets[bag+1]). */
export async function cudaEmbeddingBag(table: DeviceTensor, indices: Int32Array, offsets: Int32Array, options: CudaEmbeddingBagOptions & { out?: DeviceTensor } = {}): Promise<DeviceTensor> {
  const T = checkDeviceTensor(table, 'table', ['float32'], 2);
  const [rows, dim] = T.shape;
  const bags = offsets.length - 1;
  if (!(offsets instanceof Int32Array) || offsets.length < 1) throw typeError('offsets', 'an Int32Array of bags + 1 offsets', offsets);
  const out = options.out ? checkDeviceTensor(options.out, 'options.out', ['float32'], 2) : DeviceTensor.empty([bags, dim], { device: T.device });
  if (out.shape[0] !== bags || out.shape[1] !== dim) throw rangeError('options.out', `shape [${bags}, ${dim}]`, `shape [${out.shape}]`, true);
  await native.cudaEmbeddingBag('forward', T.device, streamHandle(options.stream, T.device), rows, dim, indices, offsets, options.weights ?? null,
    options.mode ?? 'sum', 1, T.buffer, 0, out.buffer, 0);
  return out;
}

/** gradTable[row] += scale · weight · gradOut[bag] for every index (repeated rows accumulate). */
export async function cudaEmbeddingBagBackward(gradOut: DeviceTensor, indices: Int32Array, offsets: Int32Array, gradTable: DeviceTensor, options: CudaEmbeddingBagOptions & { scale?: number } = {}): Promise<DeviceTensor> {
  const G = checkDeviceTensor(gradOut, 'gradOut', ['float32'], 2);
  const T = checkDeviceTensor(gradTable, 'gradTable', ['float32'], 2);
  const scale = options.scale === undefined ? 1 : finiteNumber(options.scale, 'options.scale');
  if (!(offsets instanceof Int32Array) || offsets.length < 1) throw typeError('offsets', 'an Int32Array of bags + 1 offsets', offsets);
  if (G.shape[0] !== offsets.length - 1 || G.shape[1] !== T.shape[1]) throw rangeError('gradOut', `shape [${offsets.length - 1}, ${T.shape[1]}]`, `shape [${G.shape}]`, true);
  await native.cudaEmbeddingBag('backward', T.device, streamHandle(options.stream, T.device), T.shape[0], T.shape[1], indices, offsets, options.weights ?? null,
    options.mode ?? 'sum', scale, G.buffer, 0, T.buffer, 0);
  return T;
}

export interface CudaPairwiseDotsOptions {
  /** Include each vector's dot with itself. Default false. */
  self?: boolean;
  out?: DeviceTensor;
  stream?: CudaStream | null;
}

function dotsShape(z: DeviceTensor, options: CudaPairwiseDotsOptions) {
  const Z = checkDeviceTensor(z, 'z', ['float32'], 3);
  if (options.self !== undefined && typeof options.self !== 'boolean') throw typeError('options.self', 'a boolean', options.self);
  const self = options.self === true;
  const [n, vectors, dim] = Z.shape;
  return { Z, n, vectors, dim, self, pairs: pairwiseDotCount(vectors, self) };
}

/** pairwiseDots on the GPU: out[s, pair(i, j)] = z[s, i] · z[s, j] for z [n, vectors, dim]. The CPU's bits. */
export async function cudaPairwiseDots(z: DeviceTensor, options: CudaPairwiseDotsOptions = {}): Promise<DeviceTensor> {
  const p = dotsShape(z, options);
  const out = outputOf(options.out, [p.n, p.pairs], p.Z, 'options.out');
  await native.cudaPairwiseDots('forward', p.Z.device, streamHandle(options.stream, p.Z.device), p.n, p.vectors, p.dim, p.self, p.Z.buffer, 0, null, 0, out.buffer, 0);
  return out;
}

/** The gradient of z [n, vectors, dim] from the gradient of cudaPairwiseDots' output [n, pairs]. */
export async function cudaPairwiseDotsBackward(z: DeviceTensor, gradOut: DeviceTensor, options: CudaPairwiseDotsOptions = {}): Promise<DeviceTensor> {
  const p = dotsShape(z, options);
  const G = checkDeviceTensor(gradOut, 'gradOut', ['float32'], 2);
  if (G.shape[0] !== p.n || G.shape[1] !== p.pairs) throw rangeError('gradOut', `shape [${p.n}, ${p.pairs}] (samples, pairs)`, `shape [${G.shape}]`, true);
  const out = outputOf(options.out, [p.n, p.vectors, p.dim], p.Z, 'options.out');
  await native.cudaPairwiseDots('backward', p.Z.device, streamHandle(options.stream, p.Z.device), p.n, p.vectors, p.dim, p.self, p.Z.buffer, 0, G.buffer, 0, out.buffer, 0);
  return out;
}

export interface CudaTiming {
  medianMs: number;
  minMs: number;
  maxMs: number;
  times: number[];
}

/** Times `launch` (which enqueues GPU work on `stream`) with CUDA events: warm-up runs, then `repeat` timed runs. */
export async function timeCuda(launch: () => void, options: { device?: number; stream?: CudaStream | null; warmup?: number; repeat?: number } = {}): Promise<CudaTiming> {
  const device = cudaDevice(options.device ?? 0, 'options.device');
  const warmup = integer(options.warmup ?? 2, 'options.warmup', 0, 1000);
  const repeat = integer(options.repeat ?? 10, 'options.repeat', 1, 100000);
  const stream = options.stream ?? null;
  const marks = Array.from({ length: repeat + 1 }, () => new CudaEvent(device));
  try {
    for (let i = 0; i < warmup; i++) launch();
    marks[0].record(stream);
    for (let i = 0; i < repeat; i++) {
      launch();
      marks[i + 1].record(stream);
    }
    await marks[repeat].synchronize();
    const times = marks.slice(1).map((end, i) => marks[i].elapsedMs(end));
    const sorted = [...times].sort((x, y) => x - y);
    return { medianMs: sorted[Math.floor(sorted.length / 2)], minMs: sorted[0], maxMs: sorted[sorted.length - 1], times };
  } finally {
    for (const e of marks) e.dispose();
  }
}
