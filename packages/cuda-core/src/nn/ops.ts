// The nn layers reach the kernels only through cuda-core's public functions (gemm, conv2d,
// embeddingBag), so a CUDA backend behind them serves nn unchanged. Small calls run synchronously:
// below roughly a third of a millisecond of arithmetic the AsyncWorker round trip costs more than it
// saves, and blocking the JS thread that briefly is harmless. Larger calls are awaited off-thread.
import { conv2d, conv2dBackward, conv2dBackwardSync, conv2dParams, conv2dSync, type Conv2dGradients, type Conv2dOptions } from '../conv.js';
import { embeddingBag, embeddingBagBackward, embeddingBagBackwardSync, embeddingBagSync, type EmbeddingBagBackwardOptions, type EmbeddingBagOptions } from '../embedding.js';
import { gemm, gemmSync, type GemmOptions } from '../gemm.js';
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

/** a += b elementwise (same size, both contiguous). */
export function addInto(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

