// Embedding bags (the sparse side of recommendation models): gather-sum forward and the
// scatter-add backward, with CSR-style offsets (bags + 1 entries, first 0, last = indices.length).
import { native, type BagMode } from './addon.js';
import { checkTensor, outputTensor, Tensor } from './tensor.js';
import { finiteNumber, oneOf, plainObject, rangeError, typeError } from './validate.js';

export interface EmbeddingBagOptions {
  mode?: BagMode;
  /** One weight per index (per-sample weights). */
  weights?: Float32Array;
}

function common(indices: unknown, offsets: unknown, options: unknown) {
  if (!(indices instanceof Int32Array)) throw typeError('indices', 'an Int32Array', indices);
  if (!(offsets instanceof Int32Array)) throw typeError('offsets', 'an Int32Array', offsets);
  if (offsets.length < 1) throw rangeError('offsets', 'bags + 1 offsets (at least 1)', offsets);
  const o = plainObject(options, 'options') as EmbeddingBagOptions & { scale?: number; rows?: number };
  const mode = o.mode === undefined ? 'sum' : oneOf(o.mode, 'options.mode', ['sum', 'mean'] as const);
  let weights: Float32Array | null = null;
  if (o.weights !== undefined) {
    if (!(o.weights instanceof Float32Array)) throw typeError('options.weights', 'a Float32Array', o.weights);
    weights = o.weights;
  }
  return { mode, weights, bags: offsets.length - 1, o };
}

function forwardPlan(table: unknown, indices: unknown, offsets: unknown, options: unknown) {
  const T = checkTensor(table, 'table', ['float32'], 2);
  const c = common(indices, offsets, options);
  const [rows, dim] = T.shape;
  const out = Tensor.zeros([c.bags, dim], 'float32');
  return { args: [T.contiguousData(), rows, dim, indices as Int32Array, offsets as Int32Array, c.weights, c.mode, out.data] as const, out };
}

/** out[b] = Σ (or mean) over bag b's rows of weight · table[row]. table: [rows, dim]. */
export async function embeddingBag(table: Tensor<'float32'>, indices: Int32Array, offsets: Int32Array, options?: EmbeddingBagOptions): Promise<Tensor<'float32'>> {
  const p = forwardPlan(table, indices, offsets, options);
  await native.embeddingBagForward(true, ...p.args);
  return p.out;
}
export function embeddingBagSync(table: Tensor<'float32'>, indices: Int32Array, offsets: Int32Array, options?: EmbeddingBagOptions): Tensor<'float32'> {
  const p = forwardPlan(table, indices, offsets, options);
  native.embeddingBagForward(false, ...p.args);
  return p.out;
}

export interface EmbeddingBagBackwardOptions extends EmbeddingBagOptions {
  /** Multiplies every contribution (e.g. -learningRate for a fused SGD step). Default 1. */
  scale?: number;
  /** Accumulate into this [rows, dim] tensor (e.g. the table itself); a zero one is made otherwise. */
  into?: Tensor<'float32'>;
  /** Rows of the table; required when `into` is absent. */
  rows?: number;
}

function backwardPlan(gradOut: unknown, indices: unknown, offsets: unknown, options: unknown) {
  const G = checkTensor(gradOut, 'gradOut', ['float32'], 2);
  const c = common(indices, offsets, options);
  const o = c.o as EmbeddingBagBackwardOptions;
  if (G.shape[0] !== c.bags) throw rangeError('gradOut', `${c.bags} rows (one per bag)`, `shape [${G.shape}]`, true);
  const dim = G.shape[1];
  const scale = o.scale === undefined ? 1 : finiteNumber(o.scale, 'options.scale');
  let into: Tensor<'float32'>;
  if (o.into !== undefined) {
    into = checkTensor(o.into, 'options.into', ['float32'], 2);
    if (into.shape[1] !== dim) throw rangeError('options.into', `${dim} columns`, `shape [${into.shape}]`, true);
    if (!into.isContiguous) throw rangeError('options.into', 'a contiguous Tensor', `strides [${into.strides}]`, true);
  } else {
    if (o.rows === undefined) throw typeError('options.rows', 'the number of table rows (or options.into)', undefined);
    into = Tensor.zeros([o.rows, dim], 'float32');
  }
  const rows = into.shape[0];
  return { args: [G.contiguousData(), rows, dim, indices as Int32Array, offsets as Int32Array, c.weights, c.mode, scale, into.contiguousData()] as const, into };
}

/** gradTable[row] += scale · weight · gradOut[bag] for every index (repeated rows accumulate). */
export async function embeddingBagBackward(gradOut: Tensor<'float32'>, indices: Int32Array, offsets: Int32Array, options: EmbeddingBagBackwardOptions): Promise<Tensor<'float32'>> {
  const p = backwardPlan(gradOut, indices, offsets, options);
  await native.embeddingBagBackward(true, ...p.args);
  return p.into;
}
export function embeddingBagBackwardSync(gradOut: Tensor<'float32'>, indices: Int32Array, offsets: Int32Array, options: EmbeddingBagBackwardOptions): Tensor<'float32'> {
  const p = backwardPlan(gradOut, indices, offsets, options);
  native.embeddingBagBackward(false, ...p.args);
  return p.into;
}

// The pairwise-dot interaction of recommendation models (DLRM): each sample's vectors (the bottom
// MLP's output and one embedding per sparse feature) dotted pairwise over the lower triangle, row
// by row — (1,0), (2,0), (2,1), (3,0), … — with `self` also the diagonal — (0,0), (1,0), (1,1), ….

export interface PairwiseDotsOptions {
  /** Include each vector's dot with itself (DLRM's "interaction itself"). Default false. */
  self?: boolean;
  /** Where to write the result (a contiguous float32 tensor of the result's shape); a new one otherwise. */
  out?: Tensor<'float32'>;
}

/** Pairs per sample for `vectors` vectors: v(v−1)/2, or v(v+1)/2 with `self`. */
export function pairwiseDotCount(vectors: number, self = false): number {
  return self ? (vectors * (vectors + 1)) / 2 : (vectors * (vectors - 1)) / 2;
}

function dotsPlan(z: unknown, options: unknown) {
  const Z = checkTensor(z, 'z', ['float32'], 3);
  const o = plainObject(options, 'options') as PairwiseDotsOptions;
  if (o.self !== undefined && typeof o.self !== 'boolean') throw typeError('options.self', 'a boolean', o.self);
  const self = o.self === true;
  const [n, vectors, dim] = Z.shape;
  return { Z, n, vectors, dim, self, pairs: pairwiseDotCount(vectors, self), o };
}

function forwardDotsPlan(z: unknown, options: unknown) {
  const p = dotsPlan(z, options);
  const out = outputTensor(p.o.out, 'options.out', [p.n, p.pairs]);
  return { args: [p.Z.contiguousData(), p.n, p.vectors, p.dim, p.self, out.data] as const, out };
}

/** out[s, pair(i, j)] = z[s, i] · z[s, j] for z [n, vectors, dim]; out is [n, pairs]. */
export async function pairwiseDots(z: Tensor<'float32'>, options: PairwiseDotsOptions = {}): Promise<Tensor<'float32'>> {
  const p = forwardDotsPlan(z, options);
  await native.pairwiseDotsForward(true, ...p.args);
  return p.out;
}
export function pairwiseDotsSync(z: Tensor<'float32'>, options: PairwiseDotsOptions = {}): Tensor<'float32'> {
  const p = forwardDotsPlan(z, options);
  native.pairwiseDotsForward(false, ...p.args);
  return p.out;
}

function backwardDotsPlan(z: unknown, gradOut: unknown, options: unknown) {
  const p = dotsPlan(z, options);
  const G = checkTensor(gradOut, 'gradOut', ['float32'], 2);
  if (G.shape[0] !== p.n || G.shape[1] !== p.pairs) throw rangeError('gradOut', `shape [${p.n}, ${p.pairs}] (samples, pairs)`, `shape [${G.shape}]`, true);
  const out = outputTensor(p.o.out, 'options.out', [p.n, p.vectors, p.dim]);
  return { args: [p.Z.contiguousData(), G.contiguousData(), p.n, p.vectors, p.dim, p.self, out.data] as const, out };
}

/** The gradient of z [n, vectors, dim] from the gradient of pairwiseDots' output [n, pairs]. */
export async function pairwiseDotsBackward(z: Tensor<'float32'>, gradOut: Tensor<'float32'>, options: PairwiseDotsOptions = {}): Promise<Tensor<'float32'>> {
  const p = backwardDotsPlan(z, gradOut, options);
  await native.pairwiseDotsBackward(true, ...p.args);
  return p.out;
}
export function pairwiseDotsBackwardSync(z: Tensor<'float32'>, gradOut: Tensor<'float32'>, options: PairwiseDotsOptions = {}): Tensor<'float32'> {
  const p = backwardDotsPlan(z, gradOut, options);
  native.pairwiseDotsBackward(false, ...p.args);
  return p.out;
}

// Row moves over tables of fixed-width rows (an embedding row with its optimizer state, a parity
// row), by 32-bit word so every bit survives: pass Int32Array views of float tables. The rows may
// be scattered over a table far larger than the caches; the native loop overlaps their misses.

function rowArgs(table: unknown, width: unknown, rows: unknown): number {
  if (!(table instanceof Int32Array)) throw typeError('table', 'an Int32Array (a view of the table\'s words)', table);
  if (!Number.isInteger(width) || (width as number) < 1) throw rangeError('width', 'a row width of at least 1 word', width);
  if (!(rows instanceof Int32Array)) throw typeError('rows', 'an Int32Array of row indices', rows);
  return width as number;
}

export interface GatherRowsOptions {
  /** First word of each row to copy (default 0). */
  col?: number;
  /** Words per row to copy (default: the rest of the row). */
  cols?: number;
  /** Where to write ([rows.length × cols]); a new array otherwise. */
  out?: Int32Array;
}

/** out[i] = table[rows[i]][col : col + cols], synchronously (small, latency-bound moves). */
export function gatherRowsSync(table: Int32Array, width: number, rows: Int32Array, options: GatherRowsOptions = {}): Int32Array {
  const w = rowArgs(table, width, rows);
  const o = plainObject(options, 'options') as GatherRowsOptions;
  const col = o.col ?? 0, cols = o.cols ?? w - col;
  const out = o.out ?? new Int32Array(rows.length * Math.max(0, cols));
  return native.gatherRows(false, table, w, rows, col, cols, out);
}

export interface ScatterRowsOptions {
  /** XOR the rows in (table[rows[i]] ^= src[i]) instead of copying them. */
  xor?: boolean;
  /**
   * A byte per table row: a copy skips the rows whose byte is set and sets the bytes of those it
   * writes (rows arriving from two places are each installed once, by whichever comes first; a
   * repeated row keeps its first entry). Not with `xor`.
   */
  present?: Uint8Array;
  /**
   * A byte per table row: every row written has its byte incremented, saturating at 255 (how often
   * each row was updated, counted in the same pass).
   */
  counts?: Uint8Array;
}

/** table[rows[i]] = src[i] (a repeated row keeps its last entry), or ^= src[i] with `xor`. */
export function scatterRowsSync(table: Int32Array, width: number, rows: Int32Array, src: Int32Array, options: ScatterRowsOptions = {}): Int32Array {
  const w = rowArgs(table, width, rows);
  if (!(src instanceof Int32Array)) throw typeError('src', 'an Int32Array of rows', src);
  const o = plainObject(options, 'options') as ScatterRowsOptions;
  if (o.present !== undefined && !(o.present instanceof Uint8Array)) throw typeError('options.present', 'a Uint8Array with a byte per table row', o.present);
  if (o.counts !== undefined && !(o.counts instanceof Uint8Array)) throw typeError('options.counts', 'a Uint8Array with a byte per table row', o.counts);
  return native.scatterRows(false, table, w, rows, src, o.xor === true, o.present ?? null, o.counts ?? null);
}

/**
 * A zeroed Float32Array on transparent huge pages where the OS offers them (Linux): a table read at
 * random rows (embedding rows, parity rows) misses the TLB far less, and its pages fault in and are
 * released 2 MB at a time. An ordinary array elsewhere. Freed when collected.
 */
export function largePageFloat32Array(length: number): Float32Array {
  if (!Number.isInteger(length) || length < 1 || length > 2 ** 38) throw rangeError('length', 'an integer in [1, 2^38]', length);
  return new Float32Array(native.largePages(length * 4));
}

/**
 * largePageFloat32Array's shared twin: a zeroed Float32Array over a SharedArrayBuffer, so worker
 * threads can read and write the same table, with huge pages advised for its interior (the
 * allocator maps the buffer; pages fault in as huge ones where the OS offers them).
 */
export function sharedLargePageFloat32Array(length: number): Float32Array<SharedArrayBuffer> {
  if (!Number.isInteger(length) || length < 1 || length > 2 ** 38) throw rangeError('length', 'an integer in [1, 2^38]', length);
  const out = new Float32Array(new SharedArrayBuffer(length * 4));
  native.adviseHugePages(out);
  return out;
}
