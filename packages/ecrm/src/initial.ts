// The deterministic initial weights of the embedding rows. Every server computes them at start, and
// a replacement computes those of rows never updated since (see ShardServer's touched sets) instead
// of reading and decoding them from the survivors.
import { hash2 } from './hash.js';

/** Weight j of the row whose hash is h, uniform in [−1, 1). */
function unitWeight(h: number, j: number): number {
  return 2 * (hash2(h, j) / 4294967296) - 1;
}

/** The initial value of one weight: uniform ±sqrt(1/rows) as DLRM initialises, from the row id. */
export function initialWeight(seed: number, row: number, j: number, rowsPerTable: number): number {
  return unitWeight(hash2(seed, row), j) * Math.sqrt(1 / rowsPerTable);
}

/** Where a data block's rows come from: global row g = slot × k + index. */
export interface BlockLayout {
  seed: number;
  k: number;
  index: number;
  dim: number;
  totalRows: number;
  rowsPerTable: number;
}

/**
 * Writes the initial weights of `count` slots from `start` of a data block into `out`, row n at
 * at + n × width (weights first; the rest of each row, the optimizer state, is left as it is: zero
 * initially). Slots past the last row stay untouched (zero), as in every server's tables.
 */
export function initialRowsInto(b: BlockLayout, start: number, count: number, out: Float32Array, width: number, at = 0): void {
  const scale = Math.sqrt(1 / b.rowsPerTable);
  for (let n = 0; n < count; n++) {
    const g = (start + n) * b.k + b.index;
    if (g >= b.totalRows) break;
    // initialWeight, with the row's hash taken once for its dim weights.
    const h = hash2(b.seed, g);
    for (let j = 0; j < b.dim; j++) out[at + n * width + j] = unitWeight(h, j) * scale;
  }
}
