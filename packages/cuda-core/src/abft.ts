// Checksum-protected GEMM (algorithm-based fault tolerance) on Tensors: the native fused path
// checks every micro-kernel register tile after its K loop and repairs what it finds; the
// group sums of constant weights are computed once; the global row check verifies any C
// against A and B's offline row sums. @kintsugi/abft builds its schemes on these.
import { native } from './addon.js';
import { gemmPlan, operand, runsInline, type GemmOptions } from './gemm.js';
import { checkTensor, outputTensor, Tensor } from './tensor.js';
import { boolean, finiteNumber, integer, oneOf, plainObject, rangeError, typeError } from './validate.js';

export type AbftCheck = 'one-sided' | 'two-sided';
export type AbftAction = 'corrected' | 'recomputed' | 'detected';

/** One flagged register tile of a checked GEMM (coordinates in C). */
export interface AbftTileEvent {
  row0: number;
  col0: number;
  rows: number;
  cols: number;
  /** Checksum difference that fired, and the bound it exceeded. */
  residual: number;
  bound: number;
  /** The located element (-1 when the error could not be pinned to one element). */
  row: number;
  col: number;
  before: number;
  after: number;
  action: AbftAction;
}

export interface AbftGemmReport {
  /** Tile checks performed. */
  tiles: number;
  /** Largest |residual| / bound over every tile (> 1 means a tile was flagged). */
  maxRatio: number;
  /** Flagged tiles (at most `maxEvents` listed; `eventCount` counts all). */
  events: AbftTileEvent[];
  eventCount: number;
}

/** Group sums of constant op(B) (k x n), reusable across checked GEMMs with that B. */
export interface AbftGroupSums {
  readonly k: number;
  readonly n: number;
  readonly width: number;
  readonly sums: Float32Array;
}

export interface GemmCheckedOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Output m x n, contiguous (written in place). Created when absent. */
  out?: Tensor<'float32'>;
  /** 'two-sided' (default): one checksum per tile; 'one-sided': one per tile row. */
  check?: AbftCheck;
  /** Multiplies the calibrated error bound (default 1). */
  tolerance?: number;
  /** Locate and repair flagged tiles in place (default true). */
  correct?: boolean;
  /** Precomputed group sums of op(B) (from abftGroupSums). */
  groupSums?: AbftGroupSums;
  /** Most events to return (default 64). */
  maxEvents?: number;
}

/** Numbers per event in a native report (CPU and GPU): row0, col0, rows, cols, residual, bound, row, col, before, after, action. */
export const EVENT_FIELDS = 11;
const ACTIONS: AbftAction[] = ['corrected', 'recomputed', 'detected'];

/** The events listed in a native report after its `header` numbers: `count` raised, as many as the report holds. */
export function decodeAbftEvents(report: Float64Array, header: number, count: number): AbftTileEvent[] {
  const shown = Math.min(count, Math.floor((report.length - header) / EVENT_FIELDS));
  const events: AbftTileEvent[] = [];
  for (let e = 0; e < shown; e++) {
    const d = report.subarray(header + e * EVENT_FIELDS, header + (e + 1) * EVENT_FIELDS);
    events.push({
      row0: d[0], col0: d[1], rows: d[2], cols: d[3], residual: d[4], bound: d[5], row: d[6], col: d[7], before: d[8], after: d[9],
      action: ACTIONS[d[10]],
    });
  }
  return events;
}

/** Columns per checksum group for the active kernels. */
export function abftGroupWidth(): number {
  return native.abftGroupWidth();
}

/** Group sums (value and magnitude per row and column group) of op(B); compute once per weight. */
export function abftGroupSums(b: Tensor<'float32'>, options: { transB?: boolean; width?: number } = {}): AbftGroupSums {
  const B = checkTensor(b, 'b', ['float32'], 2);
  const o = plainObject(options, 'options');
  const transB = o.transB === undefined ? false : boolean(o.transB, 'options.transB');
  const width = o.width === undefined ? native.abftGroupWidth() : integer(o.width, 'options.width', 1, 4096);
  const op = operand(B);
  const t = transB !== op.transposed;
  const [k, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  const sums = new Float32Array(2 * k * Math.ceil(n / width));
  native.abftGroupSums(t, k, n, op.data, op.ld, width, sums);
  return { k, n, width, sums };
}

function decode(report: Float64Array): AbftGemmReport {
  const count = report[2];
  return { tiles: report[0], maxRatio: report[1], events: decodeAbftEvents(report, 3, count), eventCount: count };
}

// The report of calls that run inline (synchronously), reused: a fresh 5.6 KB Float64Array costs
// about 2 µs, more than a small checked GEMM itself. Decoded before the call returns.
const DEFAULT_MAX_EVENTS = 64;
const inlineReport = new Float64Array(3 + EVENT_FIELDS * DEFAULT_MAX_EVENTS);

function plan(a: unknown, b: unknown, options: unknown, sync: boolean) {
  const A = checkTensor(a, 'a', ['float32'], 2);
  const B = checkTensor(b, 'b', ['float32'], 2);
  const o = plainObject(options, 'options') as GemmCheckedOptions;
  const transA = o.transA === undefined ? false : boolean(o.transA, 'options.transA');
  const transB = o.transB === undefined ? false : boolean(o.transB, 'options.transB');
  const alpha = o.alpha === undefined ? 1 : finiteNumber(o.alpha, 'options.alpha');
  const check = o.check === undefined ? 'two-sided' : oneOf(o.check, 'options.check', ['one-sided', 'two-sided'] as const);
  const tolerance = o.tolerance === undefined ? 1 : finiteNumber(o.tolerance, 'options.tolerance');
  if (!(tolerance > 0)) throw rangeError('options.tolerance', 'a number > 0', tolerance);
  const correct = o.correct === undefined ? true : boolean(o.correct, 'options.correct');
  const maxEvents = o.maxEvents === undefined ? DEFAULT_MAX_EVENTS : integer(o.maxEvents, 'options.maxEvents', 0, 1 << 20);
  const [m, k] = transA ? [A.shape[1], A.shape[0]] : [A.shape[0], A.shape[1]];
  const [kb, n] = transB ? [B.shape[1], B.shape[0]] : [B.shape[0], B.shape[1]];
  if (kb !== k) throw rangeError('b', `${k} rows in op(b) (the columns of op(a))`, `shape [${B.shape}]${transB ? ' transposed' : ''}`, true);
  let groups: Float32Array | null = null, width = 0;
  if (o.groupSums !== undefined) {
    const g = o.groupSums;
    if (g === null || typeof g !== 'object' || !(g.sums instanceof Float32Array)) throw typeError('options.groupSums', 'group sums from abftGroupSums', g);
    if (g.k !== k || g.n !== n) throw rangeError('options.groupSums', `group sums of a ${k} x ${n} op(b)`, `sums of a ${g.k} x ${g.n} matrix`, true);
    groups = g.sums;
    width = g.width;
  }
  const out = outputTensor(o.out, 'options.out', [m, n]);
  const opA = operand(A), opB = operand(B);
  const inline = sync || runsInline(m, n, k);
  const report = inline && maxEvents === DEFAULT_MAX_EVENTS ? inlineReport : new Float64Array(3 + EVENT_FIELDS * maxEvents);
  const args = [
    'row', transA !== opA.transposed, transB !== opB.transposed, m, n, k, alpha, opA.data, opA.ld, opB.data, opB.ld,
    out.contiguousData(), Math.max(1, n), check, tolerance, correct, groups, width, report,
  ] as const;
  return { args, out, report, inline };
}

/** C = alpha · op(A) · op(B), checked per register tile and repaired in place; off the JS thread (small ones inline). */
export async function gemmChecked(a: Tensor<'float32'>, b: Tensor<'float32'>, options?: GemmCheckedOptions): Promise<{ out: Tensor<'float32'>; report: AbftGemmReport }> {
  const p = plan(a, b, options, false);
  if (p.inline) native.sgemmChecked(false, ...p.args);
  else await native.sgemmChecked(true, ...p.args);
  return { out: p.out, report: decode(p.report) };
}
export function gemmCheckedSync(a: Tensor<'float32'>, b: Tensor<'float32'>, options?: GemmCheckedOptions): { out: Tensor<'float32'>; report: AbftGemmReport } {
  const p = plan(a, b, options, true);
  native.sgemmChecked(false, ...p.args);
  return { out: p.out, report: decode(p.report) };
}

export interface RowCheck {
  /** Per row of C: A·(B·e), |A|·(|B|·e) and C·e, all fp64. */
  expected: Float64Array;
  magnitude: Float64Array;
  actual: Float64Array;
}

/** B's row sums (or their magnitudes) for a row check: a Float64Array of k, what k counts named. */
function rowSumsArgument(v: unknown, name: string, k: number, what: string): Float64Array {
  if (!(v instanceof Float64Array)) throw typeError(name, 'a Float64Array', v);
  if (v.length !== k) throw rangeError(name, `${k} elements (${what})`, `${v.length} elements`, true);
  return v;
}

function rowCheckPlan(a: unknown, bRowSums: unknown, bAbsRowSums: unknown, c: unknown) {
  const A = checkTensor(a, 'a', ['float32'], 2);
  const C = checkTensor(c, 'c', ['float32'], 2);
  const [m, k] = A.shape;
  const n = C.shape[1];
  if (C.shape[0] !== m) throw rangeError('c', `${m} rows (as a)`, `shape [${C.shape}]`, true);
  const bs = rowSumsArgument(bRowSums, 'bRowSums', k, 'the columns of a'), ba = rowSumsArgument(bAbsRowSums, 'bAbsRowSums', k, 'the columns of a');
  const opA = operand(A), opC = operand(C.isContiguous ? C : C.contiguous());
  const r: RowCheck = { expected: new Float64Array(m), magnitude: new Float64Array(m), actual: new Float64Array(m) };
  const args = [opA.transposed, m, n, k, opA.data, opA.ld, bs, ba, opC.data, opC.ld, r.expected, r.magnitude, r.actual] as const;
  return { args, r };
}

/** Global (Huang–Abraham) row check of C = A·B from B's offline row sums B·e and |B|·e. */
export async function abftRowCheck(a: Tensor<'float32'>, bRowSums: Float64Array, bAbsRowSums: Float64Array, c: Tensor<'float32'>): Promise<RowCheck> {
  const p = rowCheckPlan(a, bRowSums, bAbsRowSums, c);
  await native.abftRowCheck(true, ...p.args);
  return p.r;
}
export function abftRowCheckSync(a: Tensor<'float32'>, bRowSums: Float64Array, bAbsRowSums: Float64Array, c: Tensor<'float32'>): RowCheck {
  const p = rowCheckPlan(a, bRowSums, bAbsRowSums, c);
  native.abftRowCheck(false, ...p.args);
  return p.r;
}

// Row-check results of inline calls land in reused views over one ArrayBuffer (off the V8 heap):
// a small new Float64Array lives on the heap and is moved off it (about 1 µs) the first time
// native code reads it. Copied out (slice) before the call returns.
let rowScratch: { m: number; views: [Float64Array, Float64Array, Float64Array] } | null = null;
const ROW_SCRATCH_MAX = 1 << 14;

function rowScratchViews(m: number): [Float64Array, Float64Array, Float64Array] {
  if (rowScratch?.m !== m) {
    const buffer = new ArrayBuffer(3 * 8 * Math.max(1, m));
    rowScratch = { m, views: [0, 1, 2].map((q) => new Float64Array(buffer, q * 8 * m, m)) as [Float64Array, Float64Array, Float64Array] };
  }
  return rowScratch.views;
}

function rowCheckedPlan(a: unknown, b: unknown, bRowSums: unknown, bAbsRowSums: unknown, options: unknown, sync: boolean) {
  const o = plainObject(options, 'options') as GemmOptions;
  if (o.out !== undefined) {
    const out = checkTensor(o.out, 'options.out', ['float32'], 2);
    if (out.shape[1] > 1 && out.strides[1] !== 1) throw rangeError('options.out', 'a row-major Tensor (unit column stride)', `strides [${out.strides}]`, true);
  }
  const p = gemmPlan(a, b, options);
  const [, , , m, n, k] = p.args;
  const sums = [rowSumsArgument(bRowSums, 'bRowSums', k, 'the rows of op(b)'), rowSumsArgument(bAbsRowSums, 'bAbsRowSums', k, 'the rows of op(b)')] as const;
  const inline = sync || runsInline(m, n, k);
  const views: [Float64Array, Float64Array, Float64Array] = inline && m <= ROW_SCRATCH_MAX ? rowScratchViews(m) : [new Float64Array(m), new Float64Array(m), new Float64Array(m)];
  const result = (): RowCheck => (views === rowScratch?.views
    ? { expected: views[0].slice(), magnitude: views[1].slice(), actual: views[2].slice() }
    : { expected: views[0], magnitude: views[1], actual: views[2] });
  return { args: [...p.args, sums[0], sums[1], views[0], views[1], views[2]] as const, out: p.out, inline, result };
}

/**
 * The global scheme's GEMM and check in one native job: C = alpha·op(A)·op(B) + beta·C (C may
 * hold a bias beforehand, with beta = 1), then C's row sums against op(A)·(B·e) and
 * |op(A)|·(|B|·e) from op(B)'s offline row sums. `out`, when given, must be row-major.
 */
export async function gemmRowChecked(a: Tensor<'float32'>, b: Tensor<'float32'>, bRowSums: Float64Array, bAbsRowSums: Float64Array, options?: GemmOptions): Promise<{ out: Tensor<'float32'>; check: RowCheck }> {
  const p = rowCheckedPlan(a, b, bRowSums, bAbsRowSums, options, false);
  if (p.inline) native.sgemmRowChecked(false, ...p.args);
  else await native.sgemmRowChecked(true, ...p.args);
  return { out: p.out, check: p.result() };
}
export function gemmRowCheckedSync(a: Tensor<'float32'>, b: Tensor<'float32'>, bRowSums: Float64Array, bAbsRowSums: Float64Array, options?: GemmOptions): { out: Tensor<'float32'>; check: RowCheck } {
  const p = rowCheckedPlan(a, b, bRowSums, bAbsRowSums, options, true);
  native.sgemmRowChecked(false, ...p.args);
  return { out: p.out, check: p.result() };
}

/**
 * Test-only: the next checked GEMM flips bit `bit` of the accumulator of C(row, col) before it is
 * stored (a register soft error); `null` disarms. Returns whether the previous checked call fired.
 */
export function _setFaultInjection(spec: { row: number; col: number; bit: number } | null): boolean {
  if (spec === null) return native._setFaultInjection(null);
  const o = plainObject(spec, 'spec');
  return native._setFaultInjection(integer(o.row, 'spec.row', 0, 2 ** 31 - 1), integer(o.col, 'spec.col', 0, 2 ** 31 - 1), integer(o.bit, 'spec.bit', 0, 31));
}
