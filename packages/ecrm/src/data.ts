// Click-log data with Criteo's shape: a 0/1 label, 13 count features, 26 categorical features.
// The synthetic generator draws categories from a Zipf law (a few rows are hot, most are cold, as in
// real logs) and labels from a fixed hidden model, so a trained model's AUC measures learning.
// The reader parses Criteo Kaggle's TSV format into the same batches.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Rng } from '@kintsugi/cuda-core/nn';
import { hash2 } from './hash.js';
import { integer, positive, rangeError } from './validate.js';

export { hash2 };

export const DENSE_FEATURES = 13;
export const SPARSE_FEATURES = 26;

export interface Batch {
  size: number;
  /** Raw integer counts [size × 13] (what the TSV stores). */
  counts: Int32Array;
  /** log(1 + max(count, 0)) [size × 13]: the model's dense input, as DLRM preprocesses it. */
  dense: Float32Array;
  /** Row index per table [size × 26], each in [0, rowsPerTable). */
  sparse: Int32Array;
  labels: Float32Array;
}

export interface BatchSource {
  readonly rowsPerTable: number;
  /** The batch of training step `step`; the same step always gives the same batch (redone work). */
  batch(step: number): Batch;
}

function emptyBatch(size: number): Batch {
  return {
    size,
    counts: new Int32Array(size * DENSE_FEATURES),
    dense: new Float32Array(size * DENSE_FEATURES),
    sparse: new Int32Array(size * SPARSE_FEATURES),
    labels: new Float32Array(size),
  };
}

export interface SyntheticOptions {
  rowsPerTable: number;
  batchSize: number;
  seed?: number;
  /** Zipf exponent of category popularity (Criteo's heavy head ≈ 1.05). */
  zipf?: number;
}

/**
 * Spreads popular ranks over the table so hot rows are not all on one shard's first slots:
 * rank × 2654435761 mod rows, exact in doubles. The product needs up to 60 bits, so the multiplier
 * is split in 16-bit halves, each partial product staying below 2^53 (a BigInt per draw was a
 * third of a batch's cost).
 */
export function spreadRank(rank: number, rows: number): number {
  const high = 40503, low = 31153; // 2654435761 = 40503 · 2^16 + 31153
  return ((((rank * high) % rows) * 65536) + rank * low) % rows;
}

/** Buckets of the draws' guide table: a draw searches a few ranks instead of the whole table. */
const GUIDE_BUCKETS = 1 << 16;

export class SyntheticCriteo implements BatchSource {
  readonly rowsPerTable: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly zipf: number;
  readonly #cdf: Float64Array;
  readonly #guide: Int32Array;
  readonly #denseWeights: Float64Array;

  constructor(options: SyntheticOptions) {
    this.rowsPerTable = integer(options.rowsPerTable, 'options.rowsPerTable', 2, 2 ** 28);
    this.batchSize = integer(options.batchSize, 'options.batchSize', 1, 1 << 20);
    this.seed = options.seed === undefined ? 1 : integer(options.seed, 'options.seed', 0, 2 ** 32 - 1);
    this.zipf = options.zipf === undefined ? 1.05 : positive(options.zipf, 'options.zipf');
    const cdf = new Float64Array(this.rowsPerTable);
    let total = 0;
    for (let i = 0; i < cdf.length; i++) cdf[i] = total += 1 / (i + 1) ** this.zipf;
    for (let i = 0; i < cdf.length; i++) cdf[i] /= total;
    this.#cdf = cdf;
    // guide[g]: the first rank with cdf ≥ g / GUIDE_BUCKETS (the last rank if none).
    this.#guide = new Int32Array(GUIDE_BUCKETS + 1);
    for (let g = 0, i = 0; g <= GUIDE_BUCKETS; g++) {
      while (i < cdf.length - 1 && cdf[i] < g / GUIDE_BUCKETS) i++;
      this.#guide[g] = i;
    }
    const rng = new Rng(hash2(this.seed, 0xde45e));
    this.#denseWeights = Float64Array.from({ length: DENSE_FEATURES }, () => rng.normal() * 0.35);
  }

  /** The hidden per-row effect of row `index` of table `table` on the click logit. */
  truth(table: number, index: number): number {
    const h = hash2(hash2(this.seed, table + 1), index);
    // Roughly normal: the sum of four uniforms, centred, scaled to unit variance × 0.9.
    const u = ((h & 0xff) + ((h >>> 8) & 0xff) + ((h >>> 16) & 0xff) + (h >>> 24)) / 255 - 2;
    return u * Math.sqrt(3) * 0.9;
  }

  #draw(rng: Rng): number {
    const u = rng.next(), cdf = this.#cdf, bucket = Math.floor(u * GUIDE_BUCKETS);
    // The first rank with cdf ≥ u lies between the guide's bounds of u's bucket.
    let lo = this.#guide[bucket], hi = this.#guide[bucket + 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return spreadRank(lo, this.rowsPerTable);
  }

  batch(step: number): Batch {
    integer(step, 'step', 0);
    const rng = new Rng(hash2(this.seed, step + 1));
    const b = emptyBatch(this.batchSize);
    for (let s = 0; s < b.size; s++) {
      let logit = -0.6;
      for (let j = 0; j < DENSE_FEATURES; j++) {
        const count = Math.floor(Math.exp(rng.normal() * 1.2 + 0.5)) - 1;
        b.counts[s * DENSE_FEATURES + j] = count;
        const x = Math.log1p(Math.max(count, 0));
        b.dense[s * DENSE_FEATURES + j] = x;
        logit += this.#denseWeights[j] * (x - 1);
      }
      for (let t = 0; t < SPARSE_FEATURES; t++) {
        const index = this.#draw(rng);
        b.sparse[s * SPARSE_FEATURES + t] = index;
        logit += this.truth(t, index) * (t < 8 ? 0.5 : 0.15);
      }
      // One pairwise effect, so the interaction layer has something to find.
      logit += 0.4 * this.truth(0, b.sparse[s * SPARSE_FEATURES]) * this.truth(1, b.sparse[s * SPARSE_FEATURES + 1]);
      b.labels[s] = rng.next() < 1 / (1 + Math.exp(-logit)) ? 1 : 0;
    }
    return b;
  }
}

/** Criteo Kaggle TSV lines for a batch: label, I1..I13, C1..C26 as 8-digit hex. */
export function toCriteoTsv(batch: Batch): string {
  const lines: string[] = [];
  for (let s = 0; s < batch.size; s++) {
    const f = [String(batch.labels[s])];
    for (let j = 0; j < DENSE_FEATURES; j++) f.push(String(batch.counts[s * DENSE_FEATURES + j]));
    for (let t = 0; t < SPARSE_FEATURES; t++) f.push(batch.sparse[s * SPARSE_FEATURES + t].toString(16).padStart(8, '0'));
    lines.push(f.join('\t'));
  }
  return lines.join('\n') + '\n';
}

const INT = /^-?\d+$/;
const HEX = /^[0-9a-fA-F]{1,8}$/;

/**
 * Parses Criteo TSV lines. Empty integer fields (missing values) read as 0; an empty category reads
 * as row 0; a category's hex hash maps to row hash mod rowsPerTable, as DLRM's preprocessing does.
 */
export function parseCriteoTsv(text: string, options: { rowsPerTable: number; firstLine?: number }): Batch {
  const rows = integer(options.rowsPerTable, 'options.rowsPerTable', 1, 2 ** 31 - 1);
  const first = options.firstLine ?? 1;
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const b = emptyBatch(lines.length);
  lines.forEach((raw, s) => {
    const n = first + s;
    const f = raw.replace(/\r$/, '').split('\t');
    const fields = 1 + DENSE_FEATURES + SPARSE_FEATURES;
    if (f.length !== fields) throw rangeError(`line ${n}`, `${fields} tab-separated fields (label, 13 integers, 26 categories)`, f.length, true);
    if (f[0] !== '0' && f[0] !== '1') throw rangeError(`the label on line ${n}`, '0 or 1', f[0]);
    b.labels[s] = Number(f[0]);
    for (let j = 0; j < DENSE_FEATURES; j++) {
      const v = f[1 + j];
      if (v !== '' && !INT.test(v)) throw rangeError(`I${j + 1} on line ${n}`, 'an integer or an empty field', v);
      const count = v === '' ? 0 : Number(v);
      b.counts[s * DENSE_FEATURES + j] = count;
      b.dense[s * DENSE_FEATURES + j] = Math.log1p(Math.max(count, 0));
    }
    for (let t = 0; t < SPARSE_FEATURES; t++) {
      const v = f[1 + DENSE_FEATURES + t];
      if (v !== '' && !HEX.test(v)) throw rangeError(`C${t + 1} on line ${n}`, 'a hex hash of at most 8 digits or an empty field', v);
      b.sparse[s * SPARSE_FEATURES + t] = v === '' ? 0 : parseInt(v, 16) % rows;
    }
  });
  return b;
}

/** Reads up to maxLines lines of a Criteo TSV file, streaming (the full Kaggle file is 11 GB). */
export async function readCriteoTsv(path: string, options: { rowsPerTable: number; maxLines?: number }): Promise<Batch> {
  const max = options.maxLines ?? Infinity;
  const input = createReadStream(path, 'utf8');
  const lines: string[] = [];
  try {
    for await (const line of createInterface({ input, crlfDelay: Infinity })) {
      if (lines.length >= max) break;
      lines.push(line);
    }
  } finally {
    input.destroy();
  }
  return parseCriteoTsv(lines.join('\n'), { rowsPerTable: options.rowsPerTable });
}

/** Cuts a loaded file into fixed-size training batches, cycling over it. */
export class FileBatches implements BatchSource {
  readonly count: number;
  constructor(readonly data: Batch, readonly rowsPerTable: number, readonly batchSize: number) {
    integer(batchSize, 'batchSize', 1, data.size);
    this.count = Math.floor(data.size / batchSize);
  }
  batch(step: number): Batch {
    return sliceBatch(this.data, (step % this.count) * this.batchSize, this.batchSize);
  }
}

export function sliceBatch(b: Batch, start: number, size: number): Batch {
  const end = start + size;
  return {
    size,
    counts: b.counts.slice(start * DENSE_FEATURES, end * DENSE_FEATURES),
    dense: b.dense.slice(start * DENSE_FEATURES, end * DENSE_FEATURES),
    sparse: b.sparse.slice(start * SPARSE_FEATURES, end * SPARSE_FEATURES),
    labels: b.labels.slice(start, end),
  };
}

/** Area under the ROC curve (Mann–Whitney U, ties count half). */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const n = scores.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let pos = 0, rankSum = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]] === scores[order[i]]) j++;
    const rank = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) if (labels[order[t]] > 0.5) {
      pos++;
      rankSum += rank;
    }
    i = j + 1;
  }
  const neg = n - pos;
  if (pos === 0 || neg === 0) return 0.5;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}
