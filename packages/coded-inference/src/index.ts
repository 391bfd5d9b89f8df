// ParM's coding layer: the summation encoder turns k queries into one parity query
// P = Σ c_i·X_i, and the subtraction decoder reconstructs an unavailable prediction from the
// parity model's output and the k − 1 predictions that did arrive: F(X_j) ≈ (F_P(P) − Σ_{i≠j} c_i·F(X_i)) / c_j.
import { sumDecode, sumEncode } from '@kintsugi/cuda-core';

export class SummationCode {
  readonly k: number;
  readonly coefficients: Float32Array;

  constructor(k: number, coefficients?: ArrayLike<number>) {
    if (!Number.isInteger(k) || k < 1 || k > 64) throw new RangeError(`Expected an integer in [1, 64] for k but received ${k}`);
    this.k = k;
    this.coefficients = coefficients ? Float32Array.from(coefficients) : new Float32Array(k).fill(1);
    if (this.coefficients.length !== k) throw new RangeError(`Expected ${k} coefficients for coefficients but received ${this.coefficients.length}`);
    if (this.coefficients.some((c) => c === 0 || !Number.isFinite(c))) throw new RangeError('Expected finite non-zero values for coefficients but received a zero or non-finite value');
  }

  /** The parity query for k equally sized queries. */
  encode(queries: Float32Array[]): Promise<Float32Array> {
    if (queries.length !== this.k) return Promise.reject(new RangeError(`Expected ${this.k} queries for queries but received ${queries.length}`));
    return sumEncode(queries, this.coefficients);
  }

  /**
   * Reconstructs the prediction of query `missing` from the parity output and the other
   * predictions (`outputs[missing]` is ignored and may be null).
   */
  decode(parityOutput: Float32Array, outputs: (Float32Array | null)[], missing: number): Promise<Float32Array> {
    if (outputs.length !== this.k) return Promise.reject(new RangeError(`Expected ${this.k} outputs for outputs but received ${outputs.length}`));
    if (!Number.isInteger(missing) || missing < 0 || missing >= this.k) return Promise.reject(new RangeError(`Expected an integer in [0, ${this.k - 1}] for missing but received ${missing}`));
    const available: Float32Array[] = [], coeffs: number[] = [];
    for (let i = 0; i < this.k; i++) {
      if (i === missing) continue;
      const o = outputs[i];
      if (!(o instanceof Float32Array)) return Promise.reject(new TypeError(`Expected a Float32Array for outputs[${i}] but received ${o === null ? 'null' : typeof o}`));
      available.push(o);
      coeffs.push(this.coefficients[i]);
    }
    return sumDecode(parityOutput, available, coeffs, this.coefficients[missing]);
  }
}
export * from './serving/index.js';
