// DLRM (Naumov et al.) on cuda-core/nn: dense features through the bottom MLP, sparse features
// through embedding bags, pairwise dot products of all those vectors, then the top MLP to a click
// logit. The embedding rows live on the shard servers; a step works on a compact table of just the
// rows its batch touches (a batch touches few rows: ~8,900 of 200M in MLPerf's DLRM).
import { embeddingBagBackwardSync, embeddingBagSync, pairwiseDotsBackwardSync, pairwiseDotsSync, Tensor } from '@kintsugi/cuda-core';
import { adagradUpdate, Linear, ReLU, Rng, Sequential, type Module } from '@kintsugi/cuda-core/nn';
import { DENSE_FEATURES, SPARSE_FEATURES, type Batch } from './data.js';
import { integer } from './validate.js';

/**
 * The MLPs' hidden layer widths. `kaggle`: DLRM's reference configuration for Criteo Kaggle
 * (facebookresearch/dlrm: bottom MLP 13-512-256-64-16, top MLP 512-256-1, 16-wide embeddings);
 * `small`: one 64-wide hidden layer each, for tests and quick runs.
 */
export const DLRM_ARCHITECTURES = {
  kaggle: { bottom: [512, 256, 64], top: [512, 256] },
  small: { bottom: [64], top: [64] },
} as const;
export type DlrmArchitecture = keyof typeof DLRM_ARCHITECTURES;

export interface DlrmOptions {
  dim: number;
  bottom?: number[];
  top?: number[];
  seed?: number;
}

function mlp(sizes: number[], rng: Rng, reluLast: boolean): Sequential {
  const layers: Module[] = [];
  for (let i = 0; i + 1 < sizes.length; i++) {
    layers.push(new Linear(sizes[i], sizes[i + 1], { rng }));
    if (i + 2 < sizes.length || reluLast) layers.push(new ReLU());
  }
  return new Sequential(...layers);
}

/** The batch's embedding lookups as global row ids (table t, row i → t·rows + i), deduplicated. */
export interface Lookup {
  /** Distinct global rows, in first-use order. */
  rows: Int32Array;
  /** For each (sample, table), the position of its row in `rows` [size × 26]. */
  local: Int32Array;
}

export function lookupRows(batch: Batch, rowsPerTable: number): Lookup {
  const local = new Int32Array(batch.size * SPARSE_FEATURES);
  // An open-addressing table of global row → position (a Map here cost ~0.7 ms of a 256-sample
  // step): at least twice as many slots as lookups, keys stored + 1 so that 0 means empty.
  let bits = 10;
  while (1 << bits < 2 * local.length) bits++;
  const mask = (1 << bits) - 1;
  const keys = new Float64Array(mask + 1), at = new Int32Array(mask + 1);
  const rows = new Int32Array(local.length);
  let count = 0;
  for (let i = 0; i < local.length; i++) {
    const g = (i % SPARSE_FEATURES) * rowsPerTable + batch.sparse[i];
    let h = Math.imul(g, 0x9e3779b1) >>> (32 - bits); // Fibonacci hashing: the product's top bits
    while (keys[h] !== 0 && keys[h] !== g + 1) h = (h + 1) & mask;
    if (keys[h] === 0) {
      keys[h] = g + 1;
      at[h] = count;
      rows[count++] = g;
    }
    local[i] = at[h];
  }
  return { rows: rows.slice(0, count), local };
}

export class DLRM {
  readonly dim: number;
  readonly bottom: Sequential;
  readonly top: Sequential;
  readonly vectors = SPARSE_FEATURES + 1;
  readonly pairs: number;
  #z: Float32Array | null = null;
  #n = 0;
  #lookup: { local: Int32Array; offsets: Int32Array; rows: number } | null = null;

  constructor(options: DlrmOptions) {
    this.dim = integer(options.dim, 'options.dim', 1, 4096);
    const rng = new Rng(options.seed ?? 7);
    this.pairs = (this.vectors * (this.vectors - 1)) / 2;
    this.bottom = mlp([DENSE_FEATURES, ...(options.bottom ?? DLRM_ARCHITECTURES.small.bottom), this.dim], rng, true);
    this.top = mlp([this.dim + this.pairs, ...(options.top ?? DLRM_ARCHITECTURES.small.top), 1], rng, false);
  }

  parameters() {
    return [...this.bottom.parameters(), ...this.top.parameters()];
  }

  /** Click logits [size, 1]. `table` holds the lookup's rows ([lookup.rows.length, dim]). */
  async forward(batch: Batch, lookup: Lookup, table: Float32Array): Promise<Tensor<'float32'>> {
    const n = batch.size, d = this.dim, V = this.vectors;
    const x = await this.bottom.forward(new Tensor(batch.dense, [n, DENSE_FEATURES]));
    // One-hot features are bags of one row; multi-hot data would only change the offsets.
    const offsets = Int32Array.from({ length: lookup.local.length + 1 }, (_, i) => i);
    const emb = embeddingBagSync(new Tensor(table, [lookup.rows.length, d]), lookup.local, offsets).data;
    this.#lookup = { local: lookup.local, offsets, rows: lookup.rows.length };
    // z[s] = [x_s, e_s,0, …, e_s,25]: the vectors whose pairwise dots are the interactions.
    const z = new Float32Array(n * V * d), xd = x.contiguousData();
    for (let s = 0; s < n; s++) {
      z.set(xd.subarray(s * d, (s + 1) * d), s * V * d);
      z.set(emb.subarray(s * (V - 1) * d, (s + 1) * (V - 1) * d), (s * V + 1) * d);
    }
    this.#z = z;
    this.#n = n;
    // The pairwise dots run natively (as JavaScript loops they were about half of a step's
    // trainer CPU); the top MLP's input is [x_s, dots_s] per sample.
    const width = d + this.pairs, P = this.pairs;
    const dots = pairwiseDotsSync(new Tensor(z, [n, V, d])).data;
    const inter = new Float32Array(n * width);
    for (let s = 0; s < n; s++) {
      inter.set(xd.subarray(s * d, (s + 1) * d), s * width);
      inter.set(dots.subarray(s * P, (s + 1) * P), s * width + d);
    }
    return this.top.forward(new Tensor(inter, [n, width]));
  }

  /** Backpropagates the logit gradient; returns the gradient of the lookup's rows [rows × dim]. */
  async backward(gradLogits: Tensor<'float32'>): Promise<Float32Array> {
    const z = this.#z, lookup = this.#lookup;
    if (!z || !lookup) throw new Error('DLRM.backward needs a preceding forward');
    const n = this.#n, d = this.dim, V = this.vectors, width = d + this.pairs;
    const gi = (await this.top.backward(gradLogits)).contiguousData();
    const P = this.pairs, gDots = new Float32Array(n * P);
    for (let s = 0; s < n; s++) gDots.set(gi.subarray(s * width + d, (s + 1) * width), s * P);
    const gz = pairwiseDotsBackwardSync(new Tensor(z, [n, V, d]), new Tensor(gDots, [n, P])).data;
    // x_s also feeds the top MLP directly.
    for (let s = 0; s < n; s++) {
      const o = s * width, zs = s * V * d;
      for (let c = 0; c < d; c++) gz[zs + c] += gi[o + c];
    }
    const gx = new Float32Array(n * d), ge = new Float32Array(n * (V - 1) * d);
    for (let s = 0; s < n; s++) {
      gx.set(gz.subarray(s * V * d, (s * V + 1) * d), s * d);
      ge.set(gz.subarray((s * V + 1) * d, (s + 1) * V * d), s * (V - 1) * d);
    }
    await this.bottom.backward(new Tensor(gx, [n, d]));
    return embeddingBagBackwardSync(new Tensor(ge, [n * (V - 1), d]), lookup.local, lookup.offsets, { rows: lookup.rows }).data;
  }
}

/** Element-wise Adagrad over dense parameters (the MLPs), with state that can be saved. */
export class DenseAdagrad {
  readonly state: Float32Array[];
  constructor(readonly params: { value: { data: Float32Array }; grad: { data: Float32Array } }[], readonly lr: number, readonly eps = 1e-10) {
    this.state = params.map((p) => new Float32Array(p.value.data.length));
  }
  zeroGrad(): void {
    for (const p of this.params) p.grad.data.fill(0);
  }
  /** One step, natively (the same bits as the loop `s += g²; w −= lr·g / (√s + eps)` in
   * JavaScript, which took ~2.4 ms a step for the reference model's 475,000 MLP weights). */
  step(): void {
    this.params.forEach((p, i) => adagradUpdate(p.value.data, p.grad.data, this.state[i], this.lr, this.eps));
  }
  /** Weights and state, copied (a trainer checkpoint). */
  snapshot(): Float32Array[] {
    return [...this.params.map((p) => p.value.data.slice()), ...this.state.map((s) => s.slice())];
  }
  restore(snapshot: Float32Array[]): void {
    this.params.forEach((p, i) => p.value.data.set(snapshot[i]));
    this.state.forEach((s, i) => s.set(snapshot[this.params.length + i]));
  }
}
