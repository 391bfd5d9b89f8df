// Adagrad as the embedding shards and the trainer apply it. The state lives beside the weights so it
// can be encoded, replicated and checkpointed with them (nn's optimizers keep theirs private). The
// formulas are those of @kintsugi/cuda-core/nn's Adagrad and RowwiseAdagrad. (The MLPs' optimizer,
// DenseAdagrad, is in model.ts: shard processes load this file without the nn module.)
import { oneOf } from './validate.js';

export type EmbeddingOptimizer = 'rowwise-adagrad' | 'adagrad';
export const embeddingOptimizers: readonly EmbeddingOptimizer[] = ['rowwise-adagrad', 'adagrad'];

/** Floats of optimizer state per embedding row. */
export function stateWidth(kind: EmbeddingOptimizer, dim: number): number {
  return oneOf(kind, 'optimizer', embeddingOptimizers) === 'adagrad' ? dim : 1;
}

/**
 * Updates one row in place. `row` holds dim weights then the state; g is the row's gradient.
 * Row-wise: one accumulator (mean squared gradient), as DLRM/FBGEMM use for tables. `rowOffset`:
 * where the row starts in `row` (rows packed in one array, without a view per row).
 */
export function adagradRow(kind: EmbeddingOptimizer, row: Float32Array, dim: number, g: Float32Array, gOffset: number, lr: number, eps: number, rowOffset = 0): void {
  const r = rowOffset;
  if (kind === 'rowwise-adagrad') {
    let sq = 0;
    for (let j = 0; j < dim; j++) sq += g[gOffset + j] * g[gOffset + j];
    row[r + dim] += sq / dim;
    const scale = lr / (Math.sqrt(row[r + dim]) + eps);
    for (let j = 0; j < dim; j++) row[r + j] -= scale * g[gOffset + j];
    return;
  }
  for (let j = 0; j < dim; j++) {
    const gj = g[gOffset + j];
    row[r + dim + j] += gj * gj;
    row[r + j] -= (lr * gj) / (Math.sqrt(row[r + dim + j]) + eps);
  }
}
