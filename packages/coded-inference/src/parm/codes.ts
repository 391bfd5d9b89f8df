// ParM's codes over whole batches: the encoder turns k queries (k batches of equal shape, row-major
// [B, C, H, W]) into the r parity queries, and the decoder rebuilds up to r unavailable predictions
// from the parity models' outputs and the predictions that arrived.
//
// Summation (P_t = Σ_i c_{t,i}·X_i) reuses SummationCode, so one parity row is exactly the code the
// serving frontend uses. Concatenation (ParM §4.2) tiles the k queries, downsampled, into one image
// of the same size: k = 2 side by side at half width, k = 4 a 2×2 grid at half size; or, with a
// full canvas, at full resolution into one image rows·H × cols·W (for fully convolutional models
// ending in global pooling, which accept any size). Either way the parity model is trained to
// output Σ_i c_{t,i}·F(X_i), so the decoder is the same subtraction.
import { SummationCode } from '../index.js';
import { expected } from '../serving/protocol.js';

export const encoderNames = ['sum', 'concat'] as const;
export type EncoderName = (typeof encoderNames)[number];

/**
 * The concatenation encoder's canvas: 'same' — the parity query has one query's size, each image
 * downsampled into its tile (the parity model costs what the deployed model costs); 'full' — every
 * image at full resolution on a canvas rows·H × cols·W (a parity query then costs about rows·cols
 * deployed queries, and the parity model needs a fully convolutional, globally pooled architecture).
 */
export const canvasNames = ['same', 'full'] as const;
export type CanvasName = (typeof canvasNames)[number];

/** What a parity model file records about its code (metadata "kintsugi.parm"). */
export interface CodeSpec {
  k: number;
  r: number;
  encoder: EncoderName;
  /** r rows of k coefficients: parity t = Σ_i coefficients[t][i]·X_i (for concat: of the outputs). */
  coefficients: number[][];
  /** Concatenation only: the tile grid [rows, cols] when it is not concatGrid(k)'s. */
  grid?: [number, number];
  /** Concatenation only: 'full' when the images keep their resolution (absent: 'same'). */
  canvas?: CanvasName;
}

/**
 * Default coefficients: parity 0 sums (all ones, ParM's code); parity t > 0 uses (i + 1)^t, a
 * Vandermonde row, so any r of the k + r blocks determine the rest (every r×r minor of the
 * Vandermonde rows on distinct positive nodes is non-zero).
 */
export function defaultCoefficients(k: number, r: number): number[][] {
  return Array.from({ length: r }, (_, t) => Array.from({ length: k }, (_, i) => (i + 1) ** t));
}

/**
 * A tile grid given for k queries: whole numbers with rows·cols ≥ k, at most 3×3 (a k = 2 code
 * may stack its two images, [2, 1], instead of the default side by side: a garment keeps its
 * width, which tells sleeves from none, and loses height).
 */
export function checkGrid(grid: readonly unknown[], k: number): [number, number] {
  const [rows, cols] = grid as number[];
  if (!Array.isArray(grid) || grid.length !== 2 || ![rows, cols].every((d) => Number.isInteger(d) && d >= 1 && d <= 3) || rows * cols < k) {
    throw new RangeError(expected('grid', `[rows, cols] of 1…3 each with rows·cols ≥ k = ${k}`, grid));
  }
  return [rows, cols];
}

/** "RxC" (one digit each, as `--grid` takes it) as [rows, cols]; undefined for other text. */
export function parseGrid(text: string): [number, number] | undefined {
  const m = /^(\d)x(\d)$/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** The default tile grid [rows, cols] of a concatenation code with k queries. */
export function concatGrid(k: number): [rows: number, cols: number] {
  if (k === 2) return [1, 2];
  if (k === 3 || k === 4) return [2, 2];
  if (Number.isInteger(k) && k >= 5 && k <= 9) return [3, 3];
  throw new RangeError(expected('k of a concatenation encoder', '2 (side by side), 3 or 4 (2×2 grid) or 5…9 (3×3 grid)', k));
}

/**
 * Tiles k batches of images [B, C, H, W] into one batch of the same shape. The grid has `rows` ×
 * `cols` tiles of ⌊H/rows⌋ × ⌊W/cols⌋ pixels; each image is downsampled into its tile by averaging
 * rows × cols pixel blocks (1×2 for k = 2, 2×2 for k = 3 and 4, 3×3 for k = 5…9) and placed at
 * grid row ⌊i / cols⌋, column i mod cols. Source pixels past the last whole block (28 = 3·9 + 1)
 * are dropped; output pixels no tile covers, and the tiles of missing queries (k < rows·cols),
 * stay 0 (the normalised data's mean), a constant the parity model learns to ignore.
 * With canvas 'full' the images are copied unchanged into a batch [B, C, rows·H, cols·W].
 */
export function concatEncode(queries: Float32Array[], imageShape: readonly [number, number, number], grid?: readonly [number, number], canvas: CanvasName = 'same'): Float32Array {
  const k = queries.length;
  const [gridRows, gridCols] = grid ? checkGrid(grid, k) : concatGrid(k);
  if (!(canvasNames as readonly string[]).includes(canvas)) throw new RangeError(expected('canvas', canvasNames.join(' | '), canvas));
  const [c, h, w] = imageShape;
  if (!(h >= gridRows && w >= gridCols)) throw new RangeError(expected('imageShape', `at least ${gridRows} rows and ${gridCols} columns`, `[${imageShape}]`, true));
  const px = c * h * w;
  const n = queries[0].length;
  if (n % px !== 0) throw new RangeError(expected('queries[0]', `a multiple of ${px} values (whole [${imageShape}] images)`, `${n} values`, true));
  queries.forEach((q, i) => {
    if (!(q instanceof Float32Array) || q.length !== n) throw new RangeError(expected(`queries[${i}]`, `a Float32Array of ${n} values`, q instanceof Float32Array ? `${q.length} values` : typeof q, true));
  });
  if (canvas === 'full') return fullCanvas(queries, imageShape, gridRows, gridCols);
  const th = Math.floor(h / gridRows), tw = Math.floor(w / gridCols); // tile size
  const inv = 1 / (gridRows * gridCols);
  const out = new Float32Array(n);
  for (let b = 0; b < n / px; b++) {
    for (let q = 0; q < k; q++) {
      const src = queries[q];
      const r0 = Math.floor(q / gridCols) * th, c0 = (q % gridCols) * tw;
      for (let ch = 0; ch < c; ch++) {
        const base = b * px + ch * h * w;
        for (let y = 0; y < th; y++) {
          for (let x = 0; x < tw; x++) {
            let s = 0;
            for (let dy = 0; dy < gridRows; dy++) for (let dx = 0; dx < gridCols; dx++) s += src[base + (y * gridRows + dy) * w + x * gridCols + dx];
            out[base + (r0 + y) * w + c0 + x] = s * inv;
          }
        }
      }
    }
  }
  return out;
}

/** concatEncode's full-resolution canvas: [B, C, rows·H, cols·W], empty tiles 0. */
function fullCanvas(queries: Float32Array[], imageShape: readonly [number, number, number], gridRows: number, gridCols: number): Float32Array {
  const [c, h, w] = imageShape;
  const px = c * h * w, cw = gridCols * w, cpx = c * gridRows * h * cw;
  const batch = queries[0].length / px;
  const out = new Float32Array(batch * cpx);
  for (let b = 0; b < batch; b++) {
    queries.forEach((src, q) => {
      const r0 = Math.floor(q / gridCols) * h, c0 = (q % gridCols) * w;
      for (let ch = 0; ch < c; ch++) {
        for (let y = 0; y < h; y++) {
          const from = b * px + (ch * h + y) * w;
          out.set(src.subarray(from, from + w), b * cpx + (ch * gridRows * h + r0 + y) * cw + c0);
        }
      }
    });
  }
  return out;
}

/** The shape of one parity query of a concatenation code for images of `imageShape`. */
export function concatQueryShape(imageShape: readonly [number, number, number], grid: readonly [number, number], canvas: CanvasName = 'same'): [number, number, number] {
  const [c, h, w] = imageShape;
  return canvas === 'full' ? [c, grid[0] * h, grid[1] * w] : [c, h, w];
}

/** A (k, r) parity code: r parity models, each fed one encoded query per group of k. */
export class ParityCode {
  readonly k: number;
  readonly r: number;
  readonly encoder: EncoderName;
  readonly coefficients: number[][];
  /** One summation code per parity row (its coefficients). */
  readonly rows: SummationCode[];

  /** The concatenation encoder's tile grid (undefined for summation). */
  readonly grid: [number, number] | undefined;
  /** The concatenation encoder's canvas (undefined for summation). */
  readonly canvas: CanvasName | undefined;

  constructor(spec: { k: number; r?: number; encoder?: EncoderName; coefficients?: number[][]; grid?: [number, number]; canvas?: CanvasName }) {
    const k = spec.k, r = spec.r ?? 1, encoder = spec.encoder ?? 'sum';
    if (!Number.isInteger(k) || k < 2 || k > 64) throw new RangeError(expected('k', 'an integer in [2, 64]', k));
    if (!Number.isInteger(r) || r < 1 || r > k) throw new RangeError(expected('r', `an integer in [1, ${k}]`, r));
    if (!(encoderNames as readonly string[]).includes(encoder)) throw new RangeError(expected('encoder', encoderNames.join(' | '), encoder));
    if (spec.grid !== undefined && encoder !== 'concat') throw new RangeError(expected('grid', 'nothing for a summation code (tiles are for concatenation)', spec.grid));
    this.grid = encoder === 'concat' ? (spec.grid !== undefined ? checkGrid(spec.grid, k) : concatGrid(k)) : undefined;
    if (spec.canvas !== undefined && (encoder !== 'concat' || !(canvasNames as readonly string[]).includes(spec.canvas))) {
      throw new RangeError(expected('canvas', encoder === 'concat' ? canvasNames.join(' | ') : 'nothing for a summation code (canvases are for concatenation)', spec.canvas));
    }
    this.canvas = encoder === 'concat' ? spec.canvas ?? 'same' : undefined;
    const coefficients = spec.coefficients ?? defaultCoefficients(k, r);
    if (!Array.isArray(coefficients) || coefficients.length !== r) throw new RangeError(expected('coefficients', `${r} rows`, coefficients));
    this.rows = coefficients.map((row) => new SummationCode(k, row));
    this.k = k;
    this.r = r;
    this.encoder = encoder;
    this.coefficients = coefficients.map((row) => Array.from(row));
    // Every set of up to r losses must be solvable from the r parities.
    for (const lost of subsets(k, r)) {
      if (Math.abs(determinant(lost.map((_, a) => lost.map((m) => this.coefficients[a][m])))) < 1e-9) {
        throw new RangeError(expected('coefficients', `rows that recover any ${r} losses`, `a singular set for losses [${lost}]`, true));
      }
    }
  }

  get spec(): CodeSpec {
    const custom = this.grid && this.grid.join() !== concatGrid(this.k).join();
    return {
      k: this.k, r: this.r, encoder: this.encoder, coefficients: this.coefficients.map((r) => r.slice()),
      ...(custom ? { grid: [...this.grid!] as [number, number] } : {}), ...(this.canvas === 'full' ? { canvas: this.canvas } : {}),
    };
  }

  /** The shape of one parity query for queries of `imageShape` (differs only for a full canvas). */
  queryShape(imageShape: readonly [number, number, number]): [number, number, number] {
    return this.grid ? concatQueryShape(imageShape, this.grid, this.canvas) : [imageShape[0], imageShape[1], imageShape[2]];
  }

  /**
   * The query of parity model t for k equally sized batches. Summation weights the queries by
   * row t's coefficients; concatenation tiles them (the coefficients then only weight the outputs).
   */
  async encode(queries: Float32Array[], t = 0, imageShape: readonly [number, number, number] = [1, 28, 28]): Promise<Float32Array> {
    if (!Number.isInteger(t) || t < 0 || t >= this.r) throw new RangeError(expected('t', `an integer in [0, ${this.r - 1}]`, t));
    if (queries.length !== this.k) throw new RangeError(expected('queries', `${this.k} queries`, `${queries.length}`, true));
    if (this.encoder === 'concat') return concatEncode(queries, imageShape, this.grid, this.canvas);
    return this.rows[t].encode(queries);
  }

  /** What parity model t is trained to output: Σ_i c_{t,i}·F(X_i) (computed in float64). */
  encodeOutputs(outputs: Float32Array[], t = 0): Float32Array {
    const c = this.coefficients[t];
    const n = outputs[0].length;
    const out = new Float32Array(n);
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < this.k; i++) s += c[i] * outputs[i][j];
      out[j] = s;
    }
    return out;
  }

  /**
   * Rebuilds the unavailable outputs (null entries of `outputs`) from the parity outputs (null for
   * an unavailable parity). One loss with parity 0 is SummationCode's subtraction decoder; more
   * losses solve the small linear system over the first available parities. Returns all k outputs.
   */
  async decode(parityOutputs: (Float32Array | null)[], outputs: (Float32Array | null)[]): Promise<Float32Array[]> {
    if (outputs.length !== this.k) throw new RangeError(expected('outputs', `${this.k} entries`, `${outputs.length}`, true));
    if (parityOutputs.length !== this.r) throw new RangeError(expected('parityOutputs', `${this.r} entries`, `${parityOutputs.length}`, true));
    const lost = outputs.flatMap((o, i) => (o === null ? [i] : []));
    if (lost.length === 0) return outputs as Float32Array[];
    const parities = parityOutputs.flatMap((p, t) => (p === null ? [] : [t]));
    if (lost.length > parities.length) throw new RangeError(expected('outputs', `at most ${parities.length} unavailable (one per available parity)`, `${lost.length} unavailable`, true));
    const result = outputs.slice();
    if (lost.length === 1) {
      const t = parities[0];
      result[lost[0]] = await this.rows[t].decode(parityOutputs[t]!, outputs, lost[0]);
      return result as Float32Array[];
    }
    const use = parities.slice(0, lost.length);
    const n = parityOutputs[use[0]]!.length;
    // Residuals: parity t minus the known outputs' share = Σ_{m lost} c_{t,m}·y_m.
    const residual = use.map((t) => {
      const res = Float64Array.from(parityOutputs[t]!);
      outputs.forEach((o, i) => {
        if (o === null) return;
        const c = this.coefficients[t][i];
        for (let j = 0; j < n; j++) res[j] -= c * o[j];
      });
      return res;
    });
    const inv = invert(use.map((t) => lost.map((m) => this.coefficients[t][m])));
    lost.forEach((m, a) => {
      const y = new Float32Array(n);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let b = 0; b < use.length; b++) s += inv[a][b] * residual[b][j];
        y[j] = s;
      }
      result[m] = y;
    });
    return result as Float32Array[];
  }
}

/** All subsets of {0..k-1} of size 1..r. */
function subsets(k: number, r: number): number[][] {
  const out: number[][] = [];
  const rec = (start: number, cur: number[]) => {
    if (cur.length > 0) out.push(cur.slice());
    if (cur.length === r) return;
    for (let i = start; i < k; i++) rec(i + 1, [...cur, i]);
  };
  rec(0, []);
  return out;
}

function determinant(m: number[][]): number {
  const a = m.map((r) => r.slice());
  const n = a.length;
  let det = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(a[i][c]) > Math.abs(a[p][c])) p = i;
    if (a[p][c] === 0) return 0;
    if (p !== c) { [a[p], a[c]] = [a[c], a[p]]; det = -det; }
    det *= a[c][c];
    for (let i = c + 1; i < n; i++) {
      const f = a[i][c] / a[c][c];
      for (let j = c; j < n; j++) a[i][j] -= f * a[c][j];
    }
  }
  return det;
}

/** Gauss–Jordan inverse of a small matrix (float64). */
function invert(m: number[][]): number[][] {
  const n = m.length;
  const a = m.map((r, i) => [...r, ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let i = c + 1; i < n; i++) if (Math.abs(a[i][c]) > Math.abs(a[p][c])) p = i;
    [a[p], a[c]] = [a[c], a[p]];
    const d = a[c][c];
    for (let j = 0; j < 2 * n; j++) a[c][j] /= d;
    for (let i = 0; i < n; i++) {
      if (i === c) continue;
      const f = a[i][c];
      for (let j = 0; j < 2 * n; j++) a[i][j] -= f * a[c][j];
    }
  }
  return a.map((r) => r.slice(n));
}
