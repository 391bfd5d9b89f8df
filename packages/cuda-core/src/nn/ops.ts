// The nn layers reach the kernels only through cuda-core's public functions (gemm, conv2d,
// embeddingBag), so a CUDA backend behind them serves nn unchanged. Small calls run synchronously:
// below roughly a third of a millisecond of arithmetic the AsyncWorker round trip costs more than it
// saves, and blocking the JS thread that briefly is harmless. Larger calls are awaited off-thread.
import { conv2d, conv2dBackward, conv2dBackwardSync, conv2dParams, conv2dSync, type Conv2dGradients, type Conv2dOptions } from '../conv.js';
import { embeddingBag, embeddingBagBackward, embeddingBagBackwardSync, embeddingBagSync, type EmbeddingBagBackwardOptions, type EmbeddingBagOptions } from '../embedding.js';
import { gemm, gemmSync, type GemmOptions } from '../gemm.js';
import { native } from '../addon.js';
import { Tensor } from '../tensor.js';

/** FLOPs below which a kernel call runs synchronously. */
export const SYNC_FLOPS = 4e6;

export async function matmul(a: Tensor<'float32'>, b: Tensor<'float32'>, options: GemmOptions = {}): Promise<Tensor<'float32'>> {
  const m = options.transA ? a.shape[1] : a.shape[0];
  const k = options.transA ? a.shape[0] : a.shape[1];
  const n = options.transB ? b.shape[0] : b.shape[1];
  return 2 * m * n * k < SYNC_FLOPS ? gemmSync(a, b, options) : gemm(a, b, options);
}

export async function convForward(x: Tensor<'float32'>, w: Tensor<'float32'>, bias: Tensor<'float32'> | null, options: Conv2dOptions): Promise<Tensor<'float32'>> {
  const { flops } = conv2dParams(x.shape, w.shape, options);
  return flops < SYNC_FLOPS ? conv2dSync(x, w, bias, options) : conv2d(x, w, bias, options);
}

export async function convBackward(x: Tensor<'float32'>, w: Tensor<'float32'>, dy: Tensor<'float32'>, options: Conv2dOptions & { bias: boolean }): Promise<Conv2dGradients> {
  const { flops } = conv2dParams(x.shape, w.shape, options);
  return flops < SYNC_FLOPS / 2 ? conv2dBackwardSync(x, w, dy, options) : conv2dBackward(x, w, dy, options);
}

export async function bagForward(table: Tensor<'float32'>, indices: Int32Array, offsets: Int32Array, options: EmbeddingBagOptions): Promise<Tensor<'float32'>> {
  return 2 * indices.length * table.shape[1] < SYNC_FLOPS ? embeddingBagSync(table, indices, offsets, options) : embeddingBag(table, indices, offsets, options);
}

export async function bagBackward(dy: Tensor<'float32'>, indices: Int32Array, offsets: Int32Array, options: EmbeddingBagBackwardOptions): Promise<Tensor<'float32'>> {
  return 2 * indices.length * dy.shape[1] < SYNC_FLOPS
    ? embeddingBagBackwardSync(dy, indices, offsets, options)
    : embeddingBagBackward(dy, indices, offsets, options);
}

/** Shape and settings of a batch-norm call: x is [n, c, hw]. */
export interface BatchNormCall {
  n: number;
  c: number;
  hw: number;
  eps: number;
  momentum: number;
  /** Batch statistics (training) or the running ones. */
  training: boolean;
}

/** About ten operations an element: a call over fewer elements than this runs synchronously. */
const SYNC_NORM_ELEMENTS = SYNC_FLOPS / 10;

/** The native batch-norm forward (see BatchNorm2d); writes xhat, y and invStd, updates the running stats. */
export async function batchNormForward(b: BatchNormCall, x: Float32Array, gamma: Float32Array, beta: Float32Array, runningMean: Float32Array, runningVar: Float32Array, xhat: Float32Array, y: Float32Array, invStd: Float64Array): Promise<void> {
  const args = [x, b.n, b.c, b.hw, b.eps, b.momentum, b.training, gamma, beta, runningMean, runningVar, xhat, y, invStd] as const;
  if (b.n * b.c * b.hw < SYNC_NORM_ELEMENTS) native.batchNormForward(false, ...args);
  else await native.batchNormForward(true, ...args);
}

/** The native batch-norm backward: dgamma and dbeta accumulate, dx is written whole. */
export async function batchNormBackward(b: BatchNormCall, dy: Float32Array, xhat: Float32Array, gamma: Float32Array, invStd: Float64Array, dgamma: Float32Array, dbeta: Float32Array, dx: Float32Array): Promise<void> {
  const args = [dy, b.n, b.c, b.hw, b.eps, b.momentum, b.training, xhat, gamma, invStd, dgamma, dbeta, dx] as const;
  if (b.n * b.c * b.hw < SYNC_NORM_ELEMENTS) native.batchNormBackward(false, ...args);
  else await native.batchNormBackward(true, ...args);
}

/**
 * A memory-bound elementwise call over fewer elements than this runs synchronously: a megabyte or
 * two moved, a fraction of a millisecond, less than the round trip to a runner thread saves.
 */
const SYNC_ELEMENTS = 1 << 18;

/** a += b elementwise (same length, not overlapping). */
export async function addInto(a: Float32Array, b: Float32Array): Promise<void> {
  if (a.length < SYNC_ELEMENTS) native.addInto(false, a, b);
  else await native.addInto(true, a, b);
}

/**
 * One element-wise Adagrad step in place, natively: `g' = g + weightDecay·w` (just g when
 * weightDecay is 0), `state += g'²`, `weights −= lr·g' / (√state + eps)`, in double precision
 * rounded to float32 where a JavaScript loop over Float32Arrays rounds (the same bits as that
 * loop; ~5 ns an element there). Synchronous: a step moves a few bytes a parameter.
 */
export function adagradUpdate(weights: Float32Array, grads: Float32Array, state: Float32Array, lr: number, eps: number, weightDecay = 0): void {
  native.adagradUpdate(false, weights, grads, state, lr, eps, weightDecay);
}

/** y = max(x, +0) on the bits (see ReLU). */
export async function reluForward(x: Float32Array, y: Float32Array): Promise<void> {
  if (x.length < SYNC_ELEMENTS) native.reluForward(false, x, y);
  else await native.reluForward(true, x, y);
}

/** dx = dy · (y > 0) + 0. */
export async function reluBackward(dy: Float32Array, y: Float32Array, dx: Float32Array): Promise<void> {
  if (dy.length < SYNC_ELEMENTS) native.reluBackward(false, dy, y, dx);
  else await native.reluBackward(true, dy, y, dx);
}

