// An approximate code for large k and several stragglers, after ApproxIFER (Soleymani, Jahani-Nezhad,
// Mahdavifar, Maddah-Ali): no parity model is trained. The k queries are the values of a Berrut
// rational interpolant u at k points α_j (Chebyshev points of the first kind); the N = k + s workers
// each get u at one of N other points β_i (Chebyshev points of the second kind) and run the deployed
// model on it. From any N − s returned outputs, the prediction for query j is the Berrut interpolant
// of those outputs evaluated at α_j. Berrut's interpolant has no poles on the real line for any
// distinct nodes and is a weighted average (its weights sum to 1), which keeps the approximation
// stable where a polynomial one is not.
import { expected } from '../serving/protocol.js';

/**
 * Berrut weights of the interpolant through `nodes` at z: w_i = ((−1)^i / (z − x_i)) / Σ_l (−1)^l / (z − x_l),
 * with the signs alternating in the nodes' sorted order. At a node the weight is 1 there, 0 elsewhere.
 */
export function berrutWeights(nodes: readonly number[], z: number): Float64Array {
  const n = nodes.length;
  const w = new Float64Array(n);
  const hit = nodes.indexOf(z);
  if (hit >= 0) {
    w[hit] = 1;
    return w;
  }
  const order = nodes.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  let sum = 0;
  order.forEach(([x, i], rank) => {
    w[i] = (rank % 2 === 0 ? 1 : -1) / (z - x);
    sum += w[i];
  });
  for (let i = 0; i < n; i++) w[i] /= sum;
  return w;
}

/** Berrut's interpolant through (nodes[i], values[i]) evaluated at z. */
export function berrutInterpolate(nodes: readonly number[], values: readonly number[], z: number): number {
  const w = berrutWeights(nodes, z);
  let s = 0;
  for (let i = 0; i < w.length; i++) s += w[i] * values[i];
  return s;
}

/** Chebyshev points of the first kind, cos((2j + 1)π / 2n), j = 0..n−1. */
export const chebyshevFirst = (n: number): number[] => Array.from({ length: n }, (_, j) => Math.cos(((2 * j + 1) * Math.PI) / (2 * n)));
/** Chebyshev points of the second kind, cos(iπ / (n − 1)), i = 0..n−1 (n ≥ 2). */
export const chebyshevSecond = (n: number): number[] => Array.from({ length: n }, (_, i) => Math.cos((i * Math.PI) / (n - 1)));

/** Σ_i w[i]·blocks[i] in float64, rounded once. */
function combine(blocks: Float32Array[], w: ArrayLike<number>): Float32Array {
  const n = blocks[0].length;
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < blocks.length; i++) s += w[i] * blocks[i][j];
    out[j] = s;
  }
  return out;
}

export interface BerrutOptions {
  /**
   * true (default): the k queries are served as they are (their nodes are the α_j, where the
   * interpolant equals the query) and the s parity queries are u at s extra points between them;
   * a returned prediction is exact and only a lost one is interpolated. false: ApproxIFER as
   * published, every one of the k + s workers gets u at a Chebyshev point of the second kind and
   * all k predictions are interpolated.
   */
  systematic?: boolean;
}

export class BerrutCode {
  readonly k: number;
  /** Stragglers tolerated: N = k + s coded queries, any k of which decode. */
  readonly s: number;
  readonly systematic: boolean;
  /** The k query nodes (Chebyshev points of the first kind). */
  readonly alphas: number[];
  /** The N = k + s worker nodes; for a systematic code the first k are the alphas. */
  readonly betas: number[];

  constructor(k: number, s = 1, options: BerrutOptions = {}) {
    if (!Number.isInteger(k) || k < 1 || k > 256) throw new RangeError(expected('k', 'an integer in [1, 256]', k));
    if (!Number.isInteger(s) || s < 0 || s > 256) throw new RangeError(expected('s', 'an integer in [0, 256]', s));
    this.k = k;
    this.s = s;
    this.systematic = options.systematic !== false;
    this.alphas = chebyshevFirst(k);
    if (this.systematic && s > k - 1) throw new RangeError(expected('s', `an integer in [0, ${k - 1}] for a systematic code with k = ${k} (one parity point per gap between query points)`, s));
    // Systematic: the s parity points are the midpoints of s gaps between neighbouring query
    // points, spread evenly over the k − 1 gaps (s = 1: the middle gap).
    this.betas = this.systematic
      ? [...this.alphas, ...Array.from({ length: s }, (_, i) => {
        const g = Math.min(k - 2, Math.max(0, Math.round(((i + 0.5) * (k - 1)) / s - 0.5)));
        return (this.alphas[g] + this.alphas[g + 1]) / 2;
      })]
      : chebyshevSecond(Math.max(2, k + s));
  }

  /** Number of coded queries (workers). */
  get n(): number {
    return this.betas.length;
  }

  /** The N coded queries u(β_i) = Σ_j w_j(β_i)·X_j for k equally sized (batches of) queries. */
  encode(queries: Float32Array[]): Float32Array[] {
    if (queries.length !== this.k) throw new RangeError(expected('queries', `${this.k} queries`, `${queries.length}`, true));
    queries.forEach((q, i) => {
      if (!(q instanceof Float32Array) || q.length !== queries[0].length) throw new RangeError(expected(`queries[${i}]`, `a Float32Array of ${queries[0].length} values`, q instanceof Float32Array ? `${q.length} values` : typeof q, true));
    });
    // At a query node the weights are exactly one-hot, so a systematic code passes the query through.
    return this.betas.map((b) => combine(queries, berrutWeights(this.alphas, b)));
  }

  /**
   * Approximations of the k predictions F(X_j) from the outputs of the coded queries that
   * returned (null for a straggler): the Berrut interpolant of the returned outputs at α_j.
   */
  decode(outputs: (Float32Array | null)[]): Float32Array[] {
    if (outputs.length !== this.n) throw new RangeError(expected('outputs', `${this.n} entries (one per coded query)`, `${outputs.length}`, true));
    const have = outputs.flatMap((o, i) => (o instanceof Float32Array ? [i] : []));
    if (have.length < Math.min(this.k, this.n - this.s)) throw new RangeError(expected('outputs', `at least ${this.n - this.s} returned outputs`, `${have.length}`, true));
    const nodes = have.map((i) => this.betas[i]);
    const blocks = have.map((i) => outputs[i]!);
    return this.alphas.map((a) => combine(blocks, berrutWeights(nodes, a)));
  }
}
