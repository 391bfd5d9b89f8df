// Kept for compatibility: verification of any C against A and B with fp64 checksum kernels.
// Global (Huang–Abraham) checksum verification of a GEMM: C = A·B is checked through
// e^T·C = (e^T·A)·B (column checksums) and C·e = A·(B·e) (row checksums), computed with the
// native fp64-accumulating checksum kernels. The threshold follows a floating-point error bound
// on each checksum, scaled by the magnitudes involved, so clean results never trip it.
import { colSums, rowSums, Tensor, weightedColSums, weightedRowSums } from '@kintsugi/cuda-core';

export interface GemmVerification {
  /** True when every row and column checksum agrees within its bound. */
  ok: boolean;
  /** Rows and columns of C whose checksums disagree. */
  badRows: number[];
  badCols: number[];
  /** Largest |residual| / bound over rows and columns (> 1 means detected). */
  worstRatio: number;
}

const FP32_EPS = 2 ** -24;

function vector(values: ArrayLike<number>): Tensor<'float32'> {
  return new Tensor<'float32'>(Float32Array.from(values));
}

function absolute(t: Tensor<'float32'>): Tensor<'float32'> {
  return new Tensor<'float32'>(t.toArray().map(Math.abs), t.shape);
}

/**
 * Checks C against A (m×k) and B (k×n). Bound per checksum: γ·Σ|terms|, with γ = (k + n + 2)·eps
 * for rows (k-term products summed over n columns) and (k + m + 2)·eps for columns.
 */
export async function verifyGemm(a: Tensor<'float32'>, b: Tensor<'float32'>, c: Tensor<'float32'>): Promise<GemmVerification> {
  const [m, k] = a.shape;
  const n = b.shape[1];
  const [aColSums, bRowSums] = await Promise.all([colSums(a), rowSums(b)]);
  const absA = absolute(a), absB = absolute(b);
  const [absAColSums, absBRowSums] = await Promise.all([colSums(absA), rowSums(absB)]);
  const [cRows, cCols, wantRows, wantCols, rowScale, colScale] = await Promise.all([
    rowSums(c),
    colSums(c),
    weightedRowSums(a, vector(bRowSums.data)), // A·(B·e)
    weightedColSums(b, vector(aColSums.data)), // (e^T·A)·B
    // Magnitude scales: |A|·(|B|·e) per row of C and (e^T·|A|)·|B| per column of C.
    weightedRowSums(absA, vector(absBRowSums.data)),
    weightedColSums(absB, vector(absAColSums.data)),
  ]);
  const badRows: number[] = [], badCols: number[] = [];
  let worst = 0;
  const check = (got: number, want: number, scale: number, gamma: number, index: number, bad: number[]) => {
    const bound = gamma * scale + Number.MIN_VALUE;
    const ratio = Math.abs(got - want) / bound;
    if (!(ratio <= 1)) bad.push(index);
    worst = Math.max(worst, Number.isNaN(ratio) ? Infinity : ratio);
  };
  for (let i = 0; i < m; i++) check(cRows.data[i], wantRows.data[i], rowScale.data[i], (k + n + 2) * FP32_EPS * 2, i, badRows);
  for (let j = 0; j < n; j++) check(cCols.data[j], wantCols.data[j], colScale.data[j], (k + m + 2) * FP32_EPS * 2, j, badCols);
  return { ok: badRows.length === 0 && badCols.length === 0, badRows, badCols, worstRatio: worst };
}

/** Flips one bit of one element of `t` in place (a simulated soft error); returns the old value. */
export function flipBit(t: Tensor<'float32'>, indices: number[], bit: number): number {
  const old = t.get(...indices);
  const word = new Float32Array([old]);
  const bits = new Uint32Array(word.buffer);
  bits[0] ^= 1 << bit;
  t.set(word[0], ...indices);
  return old;
}
