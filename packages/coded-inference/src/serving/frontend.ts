// The coded serving frontend (ParM): queries are batched and grouped into coding groups of k;
// the i-th query of every group goes to data worker i, and the parity query P = Σ c·X of every
// group goes to a parity worker (r = 1 or 2, distinct coefficients). Each prediction is returned
// the moment its own worker answers; a prediction whose worker is late or failed is decoded from
// the parity output and the other k − 1 predictions as soon as enough of them are back, and is
// marked reconstructed. Every query ends with a prediction or an explicit error: a request timeout,
// retries when decoding is impossible, and workers that fail in-flight calls when they die.
// With r = 0 and k = 1 the same machinery is a load balancer, optionally with redundancy
// (replication or hedged requests): the baselines ParM is measured against share its queueing,
// worker handles and v2 client.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { sumEncode } from '@kintsugi/cuda-core';

import { SummationCode } from '../index.js';
import { canvasNames, checkGrid, concatEncode, concatGrid, concatQueryShape, type CanvasName } from '../parm/codes.js';
import { quantile } from './loadgen.js';
import { WorkerHandle, type HealthOptions, type WorkerSpec } from './process.js';
import { expected, parseInferRequest, parseJsonBody, ServingError, type V2InferResponse, type V2ModelMetadata } from './protocol.js';
import { readBody, sendError } from './worker.js';

/**
 * Redundancy without coding (r = 0, k = 1): each query may run on more than one data worker and
 * the first answer wins. Copies still waiting in the frontend when one answers are dropped; copies
 * already in flight are left to finish, because the worker computes them either way (aborting the
 * call would only let the next request queue behind it inside the worker).
 */
export type Redundancy =
  /** `copies` (default 2) copies of every query, to distinct workers, at once. */
  | { mode: 'replicate'; copies?: number }
  /**
   * One copy; a second one goes to another worker once the first has been in flight longer than
   * `afterMs`, or by default than the `quantile` (0.95) of the last `window` (1000) worker-call
   * latencies observed (no hedging before `minSamples`, 20, have been seen).
   */
  | { mode: 'hedge'; quantile?: number; afterMs?: number; window?: number; minSamples?: number };

/** A checked Redundancy with its defaults filled in. */
export type RedundancyConfig = { mode: 'replicate'; copies: number } | { mode: 'hedge'; quantile: number; afterMs?: number; window: number; minSamples: number };

export interface CodedFrontendOptions {
  /** Queries per coding group; k = 1 with r = 0 is plain load balancing (the equal-resources baseline). */
  k: number;
  /** Parity queries per group: 0, 1 or 2. */
  r?: number;
  /** Replication or hedged requests instead of parity (r = 0, k = 1, at least 2 data workers). */
  redundancy?: Redundancy;
  /** At least k workers serving the deployed model. */
  data: WorkerSpec[];
  /** Exactly r workers serving the parity model(s); parity worker j serves coefficient vector j. */
  parity?: WorkerSpec[];
  /** r coefficient vectors of length k; default all ones, then 1, 2, …, k (any two columns independent). */
  coefficients?: number[][];
  /**
   * How a group's queries become the parity query: 'sum' (default, Σ c_i·X_i) or 'concat' (the k
   * images downsampled and tiled into one, k = 2…9, for parity models trained with that encoder;
   * the model's input must be [C, H, W]). Decoding is the same subtraction either way.
   */
  encoder?: 'sum' | 'concat';
  /** The concatenation encoder's tile grid [rows, cols] (default by k; [2, 1] stacks a k = 2 pair). */
  grid?: [number, number];
  /**
   * The concatenation encoder's canvas: 'same' (default: the parity query has the model's input
   * shape) or 'full' (the images at full resolution, [C, rows·H, cols·W]: the parity workers' model
   * takes that shape).
   */
  canvas?: CanvasName;
  /** Coding groups per worker request (B): each data worker gets up to B queries per call. */
  batchSize?: number;
  /** How long the first queued query waits for a full batch of k·B before a partial one is sent. */
  fillTimeoutMs?: number;
  /**
   * 0 (default): decode a late prediction as soon as k of the k + r outputs are back, as ParM does.
   * > 0: give the query's own worker this long before its reconstruction is returned (a failed
   * worker's queries are decoded at once either way).
   */
  reconstructAfterMs?: number;
  /**
   * Requests the frontend keeps in flight per worker (default 1: a worker runs one at a time).
   * Everything else waits in the frontend, where a slot whose query got decoded is dropped unsent
   * and a parity batch no group needs any more is skipped, instead of queueing inside a worker
   * behind a slowed request, where one slowdown would turn every request behind it into a straggler.
   */
  maxOutstanding?: number;
  /**
   * A slot batch waits this long for the data worker it was assigned (distinct workers per group,
   * so one slowdown costs a group one prediction, which parity restores); after that any free
   * data worker takes it. Default 10 ms; Infinity: never (the slot waits for its worker or its decode).
   */
  rebalanceAfterMs?: number;
  /** A query still unanswered after this gets a 504. */
  requestTimeoutMs?: number;
  /** Tries per query when its worker failed and it could not be decoded. */
  maxAttempts?: number;
  /** Per-sample shapes and model name; read from the first data worker's metadata when absent. */
  model?: { name: string; inputShape: number[]; outputShape: number[]; inputName?: string };
  health?: HealthOptions;
  workerEntry?: string;
  port?: number;
  /** 127.0.0.1 unless told otherwise. */
  host?: string;
}

export interface Prediction {
  output: Float32Array;
  /** True when decoded from parity, not computed by the query's own worker. */
  reconstructed: boolean;
  latencyMs: number;
}

export interface FrontendStats {
  queries: number;
  direct: number;
  reconstructed: number;
  errors: number;
  retries: number;
  dispatches: number;
  /** Inference calls sent to workers (data and parity): the compute the queries cost. */
  workerCalls: number;
  /** Hedge copies queued (redundancy 'hedge'). */
  hedges: number;
  workers: { label: string; role: 'data' | 'parity'; state: string; pid?: number; restarts: number; outstanding: number; busyMs: number; lastError: string }[];
}

interface Query {
  input: Float32Array;
  attempts: number;
  settled: boolean;
  /** Its prediction from a worker (not a decode), once it has one. */
  output: Float32Array | null;
  startedAt: number;
  lastError: ServingError | null;
  retrying: boolean;
  timer: NodeJS.Timeout;
  resolve(p: Prediction): void;
  reject(e: ServingError): void;
}

/** One batch of coding groups in flight: slot i of every group went to one data worker. */
interface Dispatch {
  /** Groups in the batch (B, or fewer when the fill timeout sent a short batch). */
  groups: number;
  /** slots[i][g]: the query in slot i of group g (a short group is padded with its own queries). */
  slots: Query[][];
  inputs: (Float32Array | null)[];
  sentAt: number[];
  slotOut: (Float32Array | null)[];
  slotFailed: (ServingError | null)[];
  parityOut: (Float32Array | null)[];
  parityFailed: boolean[];
  /** Reconstructions computed but not yet handed out (reconstructAfterMs > 0). */
  recon: (Float32Array | null)[];
  /** Data workers this dispatch's slots were assigned to (distinct while there are enough). */
  used: Set<WorkerHandle>;
  /** Per slot: the workers a copy was sent to (a further copy never goes to one of them). */
  sentTo: Set<WorkerHandle>[];
  /** Per slot: copies queued or in flight; the slot has failed when the last one fails. */
  live: number[];
  retried: boolean[];
  /** All slots and the parity batch have been sent. */
  sealed: boolean;
  decoding: boolean;
  again: boolean;
  timers: NodeJS.Timeout[];
}

/** The dispatch still taking queries. */
interface OpenDispatch {
  d: Dispatch;
  queries: Query[];
  timer: NodeJS.Timeout | null;
}

/** A slot batch waiting in the frontend for a free data worker. */
interface SlotJob {
  d: Dispatch;
  i: number;
  batch: Float32Array;
  /** The worker the slot was assigned to; another takes it after rebalanceAfterMs. */
  home: WorkerHandle;
  queuedAt: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The last `window` latencies (a ring) and their q-quantile (Infinity until `minSamples` are in). */
class RecentLatencies {
  #ring: number[] = [];
  #next = 0;
  #cached = Infinity;
  #sinceSort = Infinity;
  constructor(readonly window: number, readonly q: number, readonly minSamples: number) {}

  add(ms: number): void {
    if (this.#ring.length < this.window) this.#ring.push(ms);
    else this.#ring[this.#next] = ms;
    this.#next = (this.#next + 1) % this.window;
    this.#sinceSort++;
  }

  quantile(): number {
    if (this.#ring.length < this.minSamples) return Infinity;
    // Re-sorted after every 16 new samples: the estimate moves slowly and a sort per query is waste.
    if (this.#sinceSort >= 16) {
      this.#cached = quantile([...this.#ring].sort((a, b) => a - b), this.q);
      this.#sinceSort = 0;
    }
    return this.#cached;
  }
}

function positiveInt(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new RangeError(expected(name, `an integer in [${min}, ${max}]`, v));
  return v;
}
function nonNegative(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(expected(name, 'a non-negative number', v));
  return v;
}

function checkRedundancy(v: Redundancy, k: number, r: number, workers: number): RedundancyConfig {
  const name = 'options.redundancy';
  if (!v || typeof v !== 'object' || (v.mode !== 'replicate' && v.mode !== 'hedge')) throw new RangeError(expected(name, "{ mode: 'replicate' | 'hedge', … }", v));
  if (k !== 1 || r !== 0) throw new RangeError(expected(name, 'k = 1 and r = 0 (redundancy stands in for coding)', `k = ${k}, r = ${r}`, true));
  if (workers < 2) throw new RangeError(expected(name, 'at least 2 data workers (a copy goes to another worker)', `${workers}`, true));
  if (v.mode === 'replicate') return { mode: 'replicate', copies: positiveInt(v.copies ?? 2, `${name}.copies`, 2, workers) };
  const q = v.quantile ?? 0.95;
  if (typeof q !== 'number' || !(q > 0 && q < 1)) throw new RangeError(expected(`${name}.quantile`, 'a number in (0, 1)', q));
  return {
    mode: 'hedge', quantile: q,
    afterMs: v.afterMs === undefined ? undefined : nonNegative(v.afterMs, `${name}.afterMs`),
    window: positiveInt(v.window ?? 1000, `${name}.window`, 1, 1_000_000),
    minSamples: positiveInt(v.minSamples ?? 20, `${name}.minSamples`, 1, 1_000_000),
  };
}

export class CodedFrontend {
  readonly k: number;
  readonly r: number;
  readonly batchSize: number;
  readonly codes: SummationCode[];
  readonly encoder: 'sum' | 'concat';
  #grid: [number, number] = [1, 1];
  #canvas: CanvasName = 'same';
  /** The parity queries' shape: the model input's, or a full canvas's. */
  #parityInput: number[] = [];
  readonly dataWorkers: WorkerHandle[];
  readonly parityWorkers: WorkerHandle[];
  #fillTimeoutMs: number;
  #reconstructAfterMs: number;
  #requestTimeoutMs: number;
  #maxAttempts: number;
  #model: { name: string; inputShape: number[]; outputShape: number[]; inputName: string } | null;
  #inSize = 0;
  #outSize = 0;
  /** Every unsettled query, so close() can answer each one. */
  #pending = new Set<Query>();
  #open: OpenDispatch | null = null;
  #maxOutstanding: number;
  #rebalanceAfterMs: number;
  /** Slot batches not yet sent, oldest first. */
  #slotQueue: SlotJob[] = [];
  #slotTimer: NodeJS.Timeout | null = null;
  #slotTimerAt = Infinity;
  /** Per parity worker: parity batches not yet sent, oldest first. */
  #parityQueue: { d: Dispatch; batch: Float32Array }[][] = [];
  #rr = 0;
  #redundancy: RedundancyConfig | null = null;
  /** Recent data-worker call latencies, for the hedging threshold. */
  #calls: RecentLatencies;
  #server: Server | null = null;
  #host: string;
  #port: number;
  #closed = false;
  #stats = { queries: 0, direct: 0, reconstructed: 0, errors: 0, retries: 0, dispatches: 0, workerCalls: 0, hedges: 0 };

  constructor(options: CodedFrontendOptions) {
    const o = options ?? ({} as CodedFrontendOptions);
    this.k = positiveInt(o.k, 'options.k', 1, 64);
    this.r = positiveInt(o.r ?? 0, 'options.r', 0, 2);
    if (!Array.isArray(o.data) || o.data.length < this.k) throw new RangeError(expected('options.data', `at least ${this.k} data workers (k)`, o.data));
    const parity = o.parity ?? [];
    if (!Array.isArray(parity) || parity.length !== this.r) throw new RangeError(expected('options.parity', `${this.r} parity workers (r)`, parity));
    if (this.r > 0 && this.k < 2) throw new RangeError(expected('options.k', 'at least 2 when r > 0 (a group of one is its own replica)', this.k));
    const coeffs = o.coefficients ?? [Array(this.k).fill(1), Array.from({ length: this.k }, (_, i) => i + 1)].slice(0, this.r);
    if (!Array.isArray(coeffs) || coeffs.length !== this.r) throw new RangeError(expected('options.coefficients', `${this.r} coefficient vectors`, coeffs));
    this.codes = coeffs.map((c) => new SummationCode(this.k, c));
    this.encoder = o.encoder ?? 'sum';
    if (this.encoder !== 'sum' && this.encoder !== 'concat') throw new RangeError(expected('options.encoder', "'sum' or 'concat'", this.encoder));
    if (this.encoder === 'concat') {
      if (this.r === 0) throw new RangeError(expected('options.r', 'at least 1 with a concatenation encoder', this.r));
      this.#grid = o.grid !== undefined ? checkGrid(o.grid, this.k) : concatGrid(this.k);
      if (o.canvas !== undefined && !(canvasNames as readonly string[]).includes(o.canvas)) throw new RangeError(expected('options.canvas', canvasNames.join(' | '), o.canvas));
      this.#canvas = o.canvas ?? 'same';
    } else if (o.grid !== undefined || o.canvas !== undefined) {
      throw new RangeError(expected(o.grid !== undefined ? 'options.grid' : 'options.canvas', "nothing without encoder: 'concat'", o.grid ?? o.canvas));
    }
    if (this.r === 2) {
      // Two lost predictions are solved from both parities: every 2×2 minor must be non-singular.
      const [a, b] = this.codes.map((c) => c.coefficients);
      for (let i = 0; i < this.k; i++) for (let j = i + 1; j < this.k; j++) {
        if (Math.abs(a[i] * b[j] - a[j] * b[i]) < 1e-6) throw new RangeError(expected('options.coefficients', `vectors whose columns ${i} and ${j} are independent`, 'dependent columns', true));
      }
    }
    this.batchSize = positiveInt(o.batchSize ?? 1, 'options.batchSize', 1, 4096);
    if (o.redundancy !== undefined) this.#redundancy = checkRedundancy(o.redundancy, this.k, this.r, o.data.length);
    const h = this.#redundancy?.mode === 'hedge' ? this.#redundancy : { quantile: 0.95, window: 1000, minSamples: Infinity };
    this.#calls = new RecentLatencies(h.window, h.quantile, h.minSamples);
    this.#fillTimeoutMs = nonNegative(o.fillTimeoutMs ?? 2, 'options.fillTimeoutMs');
    this.#reconstructAfterMs = nonNegative(o.reconstructAfterMs ?? 0, 'options.reconstructAfterMs');
    this.#requestTimeoutMs = nonNegative(o.requestTimeoutMs ?? 5000, 'options.requestTimeoutMs');
    this.#maxAttempts = positiveInt(o.maxAttempts ?? 3, 'options.maxAttempts', 1, 100);
    this.#maxOutstanding = positiveInt(o.maxOutstanding ?? 1, 'options.maxOutstanding', 1, 1024);
    this.#rebalanceAfterMs = o.rebalanceAfterMs === Infinity ? Infinity : nonNegative(o.rebalanceAfterMs ?? 10, 'options.rebalanceAfterMs');
    this.#host = o.host ?? '127.0.0.1';
    this.#port = o.port ?? 0;
    this.#model = o.model ? { inputName: 'input', ...o.model } : null;
    const handleOpts = (role: string, i: number) => ({ health: o.health, entry: o.workerEntry, label: `${role}[${i}]` });
    this.dataWorkers = o.data.map((s, i) => new WorkerHandle(s, handleOpts('data', i)));
    this.parityWorkers = parity.map((s, i) => new WorkerHandle(s, handleOpts('parity', i)));
    this.#parityQueue = this.parityWorkers.map(() => []);
    // A worker that comes (back) up takes what waits for it.
    this.dataWorkers.forEach((w) => w.on('ready', () => this.#pumpSlots()));
    this.parityWorkers.forEach((w, j) => w.on('ready', () => this.#pumpParity(j)));
  }

  /** The redundancy in use (null: none, or coding). */
  get redundancy(): RedundancyConfig | null {
    return this.#redundancy;
  }

  get port(): number {
    return this.#server ? (this.#server.address() as AddressInfo).port : 0;
  }
  get url(): string {
    return `http://${this.#host}:${this.port}`;
  }
  get modelMetadata(): V2ModelMetadata {
    const m = this.#needModel();
    return { name: m.name, versions: ['1'], platform: 'kintsugi-coded', inputs: [{ name: m.inputName, datatype: 'FP32', shape: [-1, ...m.inputShape] }], outputs: [{ name: 'output', datatype: 'FP32', shape: [-1, ...m.outputShape] }] };
  }

  #needModel() {
    if (!this.#model) throw new ServingError(503, 'Expected a started frontend for model metadata but received one that has not read its workers\' metadata');
    return this.#model;
  }

  /** Starts the workers, reads the model's shapes, and listens for HTTP queries. */
  async start(options: { listen?: boolean } = {}): Promise<this> {
    const all = [...this.dataWorkers, ...this.parityWorkers];
    const results = await Promise.allSettled(all.map((w) => w.start()));
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      await Promise.all(all.map((w) => w.stop()));
      throw (results[failed] as PromiseRejectedResult).reason;
    }
    if (!this.#model) {
      const source = this.dataWorkers.find((w) => w.metadata);
      if (!source?.metadata) {
        await Promise.all(all.map((w) => w.stop()));
        throw new ServingError(503, `Expected a data worker that answers model metadata for options.model but received none (${this.dataWorkers.map((w) => `${w.label}: ${w.lastError || w.state}`).join('; ')})`);
      }
      const md = source.metadata;
      this.#model = { name: md.name, inputName: md.inputs[0].name, inputShape: md.inputs[0].shape.slice(1), outputShape: md.outputs[0].shape.slice(1) };
    }
    const m = this.#model;
    if (this.encoder === 'concat') {
      const [rows, cols] = this.#grid;
      const [, h, w] = m.inputShape;
      if (m.inputShape.length !== 3 || h < rows || w < cols) {
        await this.close();
        throw new RangeError(expected('the model input for a concatenation encoder', `an image [C, H, W] of at least ${rows}×${cols} pixels`, `[${m.inputShape}]`, true));
      }
    }
    this.#inSize = m.inputShape.reduce((a, b) => a * b, 1);
    this.#outSize = m.outputShape.reduce((a, b) => a * b, 1);
    // The parity model has the deployed model's architecture: its shapes must match (its input is
    // the larger canvas of a full-canvas concatenation code).
    const parityInput = this.encoder === 'concat' ? concatQueryShape(m.inputShape as [number, number, number], this.#grid, this.#canvas) : m.inputShape;
    this.#parityInput = parityInput;
    for (const w of [...this.dataWorkers, ...this.parityWorkers]) {
      const md = w.metadata;
      if (!md) continue;
      const inS = md.inputs[0].shape.slice(1), outS = md.outputs[0].shape.slice(1);
      const want = this.parityWorkers.includes(w) ? parityInput : m.inputShape;
      if (inS.join() !== want.join() || outS.join() !== m.outputShape.join()) {
        await this.close();
        throw new RangeError(expected(`the shapes of ${w.label} (${md.name})`, `input [${want}] and output [${m.outputShape}]`, `input [${inS}] and output [${outS}]`, true));
      }
    }
    if (options.listen !== false) {
      this.#server = createServer((req, res) => void this.#handle(req, res));
      await new Promise<void>((resolve, reject) => {
        this.#server!.once('error', reject);
        this.#server!.listen(this.#port, this.#host, () => resolve());
      });
    }
    return this;
  }

  /** One query (one sample, row-major). Resolves with its prediction or rejects with a ServingError. */
  infer(input: Float32Array): Promise<Prediction> {
    if (this.#closed) return Promise.reject(new ServingError(503, 'Expected an open frontend for infer but received a closed one'));
    const m = this.#needModel();
    if (!(input instanceof Float32Array) || input.length !== this.#inSize) {
      return Promise.reject(new ServingError(400, expected('input', `a Float32Array of ${this.#inSize} values (shape [${m.inputShape}])`, input instanceof Float32Array ? `${input.length} values` : typeof input, true)));
    }
    this.#stats.queries++;
    return new Promise<Prediction>((resolve, reject) => {
      const q: Query = {
        input, attempts: 1, settled: false, output: null, retrying: false, startedAt: performance.now(), lastError: null,
        timer: setTimeout(() => {
          const why = q.lastError ? ` (last error: ${q.lastError.message})` : '';
          this.#fail(q, new ServingError(504, `No prediction within ${this.#requestTimeoutMs} ms: neither the query's worker nor a decode from parity answered in time${why}`));
        }, this.#requestTimeoutMs),
        resolve, reject,
      };
      this.#pending.add(q);
      this.#enqueue(q);
    });
  }

  /**
   * Adds a query to the open dispatch. Slot batches leave as soon as they hold B queries (with
   * B = 1 a query goes to its data worker the moment it arrives, as in ParM, where only the parity
   * query waits for its group); the parity batch leaves once all k slots are full, or when the
   * fill timeout expires and the short slots are padded.
   */
  #enqueue(q: Query): void {
    let o = this.#open;
    if (!o) {
      o = this.#open = { d: this.#newDispatch(), queries: [], timer: null };
      const opened = o;
      o.timer = setTimeout(() => this.#seal(opened, true), this.#fillTimeoutMs);
    }
    o.queries.push(q);
    const B = this.batchSize;
    if (o.queries.length % B === 0) {
      const s = o.queries.length / B - 1;
      if (s === 0) this.#setGroups(o.d, B);
      this.#sendSlot(o, s, o.queries.slice(s * B, s * B + B));
      if (s === this.k - 1) this.#seal(o, false);
    }
  }

  #newDispatch(): Dispatch {
    const k = this.k;
    return {
      groups: 0, slots: Array.from({ length: k }, () => []), inputs: new Array(k).fill(null), sentAt: new Array(k).fill(0),
      slotOut: new Array(k).fill(null), slotFailed: new Array(k).fill(null),
      parityOut: new Array(this.r).fill(null), parityFailed: new Array(this.r).fill(false),
      recon: new Array(k).fill(null), retried: new Array(k).fill(false), used: new Set(),
      sentTo: Array.from({ length: k }, () => new Set()), live: new Array(k).fill(0),
      sealed: false, decoding: false, again: false, timers: [],
    };
  }

  #setGroups(d: Dispatch, groups: number): void {
    d.groups = groups;
    this.#stats.dispatches++;
  }

  /** Ready workers first, then the least loaded, ties in rotation; never one this dispatch already uses. */
  #pickData(used: Set<WorkerHandle>): WorkerHandle {
    const n = this.dataWorkers.length;
    const start = this.#rr++ % n;
    let order = this.dataWorkers.map((w, i) => ({ w, rank: (i - start + n) % n })).filter((x) => !used.has(x.w));
    // Every worker taken (a hedge whose first copy moved off its home): any will do as a home, since
    // the pump never sends a copy to a worker that already ran one.
    if (order.length === 0) order = this.dataWorkers.map((w, i) => ({ w, rank: (i - start + n) % n }));
    // Load: calls in flight plus slot batches waiting in the frontend for that worker.
    const load = (w: WorkerHandle) => w.outstanding + this.#slotQueue.filter((j) => j.home === w).length;
    order.sort((a, b) => Number(b.w.state === 'ready') - Number(a.w.state === 'ready') || load(a.w) - load(b.w) || a.rank - b.rank);
    return order[0].w;
  }

  #free(w: WorkerHandle): boolean {
    return w.state === 'ready' && w.outstanding < this.#maxOutstanding;
  }

  /**
   * Sends waiting slot batches to free data workers: a batch to its own worker, or after
   * rebalanceAfterMs to any free one (least loaded first). Batches whose queries are all answered
   * (decoded meanwhile) are dropped. With no data worker up at all, a batch is sent anyway and
   * fails at once, so the retry path (with its backoff and attempt limit) takes over.
   */
  #pumpSlots(): void {
    if (this.#closed) return;
    const now = performance.now();
    const anyReady = this.dataWorkers.some((w) => w.state === 'ready');
    let wake = Infinity;
    for (let n = 0; n < this.#slotQueue.length; ) {
      const job = this.#slotQueue[n];
      if (!this.#unsettled(job.d, job.i)) {
        this.#slotQueue.splice(n, 1);
        continue;
      }
      // Its decode is under way: a worker spent on it now would be a worker the next group lacks.
      if (this.#decodable(job.d)) {
        n++;
        continue;
      }
      let w: WorkerHandle | undefined;
      // A worker that already ran a copy of this slot is no use for another copy.
      const taken = job.d.sentTo[job.i];
      if (!anyReady) w = job.home;
      else if (this.#free(job.home) && !taken.has(job.home)) w = job.home;
      else if (now - job.queuedAt >= this.#rebalanceAfterMs) {
        w = this.dataWorkers.filter((x) => this.#free(x) && !taken.has(x)).sort((a, b) => Number(job.d.used.has(a)) - Number(job.d.used.has(b)) || a.outstanding - b.outstanding)[0];
      } else wake = Math.min(wake, job.queuedAt + this.#rebalanceAfterMs);
      if (!w) {
        n++;
        continue;
      }
      this.#slotQueue.splice(n, 1);
      this.#sendSlotTo(w, job);
    }
    if (wake < Infinity && wake < this.#slotTimerAt) {
      if (this.#slotTimer) clearTimeout(this.#slotTimer);
      this.#slotTimerAt = wake;
      this.#slotTimer = setTimeout(() => {
        this.#slotTimer = null;
        this.#slotTimerAt = Infinity;
        this.#pumpSlots();
      }, Math.max(0, wake - now));
    }
  }

  #sendSlotTo(w: WorkerHandle, job: SlotJob): void {
    const { d, i } = job;
    d.used.add(w);
    d.sentTo[i].add(w);
    this.#stats.workerCalls++;
    const sentAt = performance.now();
    const hedge = this.#redundancy;
    if (hedge?.mode === 'hedge' && d.sentTo[i].size === 1) {
      const after = hedge.afterMs ?? this.#calls.quantile();
      if (after < Infinity) d.timers.push(setTimeout(() => this.#hedge(d, i), after));
    }
    w.infer(this.#call(job.batch, d.groups)).then(
      (out) => {
        this.#calls.add(performance.now() - sentAt);
        this.#pumpSlots();
        this.#onSlot(d, i, out);
      },
      (err) => {
        this.#pumpSlots();
        this.#onSlotFailed(d, i, err instanceof ServingError ? err : new ServingError(502, String(err?.message ?? err)));
      },
    );
  }

  /** Sends waiting parity batches to parity worker j while it is free; skips those no group needs. */
  #pumpParity(j: number): void {
    if (this.#closed) return;
    const queue = this.#parityQueue[j], w = this.parityWorkers[j];
    while (queue.length > 0) {
      const { d, batch } = queue[0];
      if (!d.slots.some((_, i) => this.#unsettled(d, i))) {
        queue.shift();
        continue;
      }
      // A worker that is down gets the batch anyway: it fails at once and the group is rechecked.
      if (w.state === 'ready' && !this.#free(w)) return;
      queue.shift();
      this.#stats.workerCalls++;
      w.infer(this.#call(batch, d.groups, this.#parityInput)).then(
        (out) => {
          this.#pumpParity(j);
          this.#onParity(d, j, out);
        },
        () => {
          this.#pumpParity(j);
          this.#onParityFailed(d, j);
        },
      );
    }
  }

  #call(batch: Float32Array, rows: number, inputShape = this.#model!.inputShape) {
    const m = this.#model!;
    return { inputName: m.inputName, batch, rows, inputShape, outputShape: m.outputShape, timeoutMs: this.#requestTimeoutMs };
  }

  #sendSlot(o: OpenDispatch, i: number, column: Query[]): void {
    const d = o.d;
    d.slots[i] = column;
    const batch = new Float32Array(d.groups * this.#inSize);
    column.forEach((q, g) => batch.set(q.input, g * this.#inSize));
    d.inputs[i] = batch;
    d.sentAt[i] = performance.now();
    const copies = this.#redundancy?.mode === 'replicate' ? this.#redundancy.copies : 1;
    for (let c = 0; c < copies; c++) this.#queueCopy(d, i);
    this.#pumpSlots();
    if (this.r > 0 && this.#reconstructAfterMs > 0) d.timers.push(setTimeout(() => void this.#tryDecode(d), this.#reconstructAfterMs));
  }

  /** Queues one copy of slot i's batch for a data worker this dispatch does not use yet. */
  #queueCopy(d: Dispatch, i: number): void {
    const home = this.#pickData(new Set([...d.used, ...d.sentTo[i]]));
    d.used.add(home);
    d.live[i]++;
    this.#slotQueue.push({ d, i, batch: d.inputs[i]!, home, queuedAt: performance.now() });
  }

  /** The first copy of slot i has been out past the threshold: a second one goes to another worker. */
  #hedge(d: Dispatch, i: number): void {
    if (this.#closed || d.slotFailed[i] || !this.#unsettled(d, i)) return;
    this.#stats.hedges++;
    this.#queueCopy(d, i);
    this.#pumpSlots();
  }

  /** Closes the open dispatch: pads what the fill timeout left short, then sends the parity batch. */
  #seal(o: OpenDispatch, byTimer: boolean): void {
    if (this.#open === o) this.#open = null;
    if (o.timer) clearTimeout(o.timer);
    const d = o.d, k = this.k, B = this.batchSize;
    if (byTimer) {
      const n = o.queries.length;
      if (n === 0) return;
      const sent = Math.floor(n / B);
      // A short group is filled with copies of its own queries rather than zeros: every slot then
      // carries a real query, and a copy's answer serves as a replica of the original.
      if (sent === 0) {
        // Nothing has left yet: lay the queries out group by group over as few groups as possible.
        const groups = Math.ceil(n / k);
        this.#setGroups(d, groups);
        for (let i = 0; i < k; i++) {
          const column = Array.from({ length: groups }, (_, g) => {
            const members = o.queries.slice(g * k, g * k + k);
            return members[i % members.length];
          });
          this.#sendSlot(o, i, column);
        }
      } else {
        for (let i = sent; i < k; i++) {
          const column = Array.from({ length: B }, (_, g) => o.queries[i * B + g] ?? d.slots[0][g]);
          this.#sendSlot(o, i, column);
        }
      }
    }
    d.sealed = true;
    // The encoder works on the whole batch at once: the sum is elementwise and the tiling per image,
    // so slot batches become the batch of parity queries in one call for all groups.
    const inputs = d.inputs as Float32Array[];
    const tiled = this.encoder === 'concat' ? concatEncode(inputs, this.#needModel().inputShape as [number, number, number], this.#grid, this.#canvas) : null;
    this.codes.forEach((code, j) => {
      (tiled ? Promise.resolve(tiled) : code.encode(inputs)).then(
        (batch) => {
          this.#parityQueue[j].push({ d, batch });
          this.#pumpParity(j);
        },
        () => this.#onParityFailed(d, j),
      );
    });
    void this.#tryDecode(d);
  }

  #settle(q: Query, output: Float32Array, reconstructed: boolean): void {
    if (q.settled) return;
    q.settled = true;
    clearTimeout(q.timer);
    this.#pending.delete(q);
    if (reconstructed) this.#stats.reconstructed++;
    else {
      this.#stats.direct++;
      q.output = output;
    }
    q.resolve({ output, reconstructed, latencyMs: performance.now() - q.startedAt });
  }

  #fail(q: Query, err: ServingError): void {
    if (q.settled) return;
    q.settled = true;
    clearTimeout(q.timer);
    this.#pending.delete(q);
    this.#stats.errors++;
    q.reject(err);
  }

  #row(batch: Float32Array, g: number): Float32Array {
    // A copy, so a caller that keeps one prediction does not pin the whole batch.
    return batch.slice(g * this.#outSize, (g + 1) * this.#outSize);
  }

  #onSlot(d: Dispatch, i: number, out: Float32Array): void {
    d.slotOut[i] = out;
    d.slots[i].forEach((q, g) => this.#settle(q, this.#row(out, g), false));
    void this.#tryDecode(d);
  }

  #onSlotFailed(d: Dispatch, i: number, err: ServingError): void {
    for (const q of d.slots[i]) q.lastError = err;
    // Another copy is still queued or in flight: it may yet answer.
    if (--d.live[i] > 0) return;
    d.slotFailed[i] = err;
    this.#checkRecoverable(d);
    void this.#tryDecode(d);
  }

  #onParity(d: Dispatch, j: number, out: Float32Array): void {
    d.parityOut[j] = out;
    void this.#tryDecode(d);
  }

  #onParityFailed(d: Dispatch, j: number): void {
    d.parityFailed[j] = true;
    this.#checkRecoverable(d);
  }

  /** Enough outputs are back to decode every slot still missing (or a decode is running). */
  #decodable(d: Dispatch): boolean {
    if (this.r === 0 || !d.sealed) return false;
    this.#fillFromAnswers(d);
    const missing = d.slotOut.filter((o) => o === null).length;
    return missing <= Math.min(2, d.parityOut.filter((o) => o !== null).length);
  }

  #unsettled(d: Dispatch, i: number): boolean {
    return d.slots[i].some((q) => !q.settled);
  }

  /**
   * When more slots have failed than parities can still arrive, decoding is impossible: the failed
   * slots' queries go back to the queue (another worker, a restarted one, or a new group).
   */
  #checkRecoverable(d: Dispatch): void {
    const failed = d.slotFailed.map((e, i) => (e ? i : -1)).filter((i) => i >= 0);
    const parities = d.parityFailed.filter((f) => !f).length;
    if (failed.length <= Math.min(parities, 2)) return;
    for (const i of failed) {
      if (d.retried[i]) continue;
      d.retried[i] = true;
      for (const q of d.slots[i]) if (!q.settled) void this.#retry(q, d.slotFailed[i]!);
    }
  }

  async #retry(q: Query, err: ServingError): Promise<void> {
    if (q.settled || q.retrying) return;
    if (q.attempts >= this.#maxAttempts) {
      this.#fail(q, new ServingError(err.status === 504 ? 504 : 503, `No prediction after ${q.attempts} attempts and no parity to decode from: ${err.message}`));
      return;
    }
    q.attempts++;
    q.retrying = true;
    this.#stats.retries++;
    // Back off a little so a crashed worker has time to come back.
    await sleep(50 * (q.attempts - 1));
    q.retrying = false;
    if (q.settled || this.#closed) return;
    this.#enqueue(q);
  }

  /**
   * A slot never sent because its queries were answered elsewhere (a short group's copies of its
   * own queries, answered by the original) still counts for decoding: its output is those answers.
   */
  #fillFromAnswers(d: Dispatch): void {
    d.slotOut.forEach((o, i) => {
      if (o || d.slots[i].length === 0 || !d.slots[i].every((q) => q.output)) return;
      const out = new Float32Array(d.slots[i].length * this.#outSize);
      d.slots[i].forEach((q, g) => out.set(q.output!, g * this.#outSize));
      d.slotOut[i] = out;
    });
  }

  async #tryDecode(d: Dispatch): Promise<void> {
    if (this.r === 0 || !d.sealed) return;
    if (d.decoding) {
      d.again = true;
      return;
    }
    this.#fillFromAnswers(d);
    const missing = d.slotOut.map((o, i) => (o ? -1 : i)).filter((i) => i >= 0 && this.#unsettled(d, i));
    if (missing.length === 0) {
      for (const t of d.timers) clearTimeout(t);
      return;
    }
    const due = (i: number) => d.slotFailed[i] !== null || performance.now() - d.sentAt[i] >= this.#reconstructAfterMs - 0.5;
    // Hand out reconstructions already computed whose time has come.
    for (const i of missing) if (d.recon[i] && due(i)) this.#settleRecon(d, i, d.recon[i]!);
    const notDone = d.slotOut.map((o, i) => (o ? -1 : i)).filter((i) => i >= 0);
    const parities = d.parityOut.map((o, j) => (o ? j : -1)).filter((j) => j >= 0);
    if (notDone.length > parities.length || notDone.length > 2 || notDone.every((i) => d.recon[i])) return;
    // Decoded now even when not yet due, so the answer is ready the moment its deadline passes.
    d.decoding = true;
    try {
      if (notDone.length === 1) {
        const i = notDone[0], j = parities[0];
        d.recon[i] = await this.codes[j].decode(d.parityOut[j]!, d.slotOut, i);
      } else {
        const [i, l] = notDone;
        const [ja, jb] = parities;
        const [ri, rl] = await this.#decodeTwo(d, i, l, ja, jb);
        d.recon[i] = ri;
        d.recon[l] = rl;
      }
    } catch (err) {
      for (const i of notDone) for (const q of d.slots[i]) this.#fail(q, new ServingError(500, `Decoding failed: ${(err as Error).message}`));
    } finally {
      d.decoding = false;
    }
    for (const i of notDone) if (d.recon[i] && d.slotOut[i] === null && due(i)) this.#settleRecon(d, i, d.recon[i]!);
    if (d.again) {
      d.again = false;
      void this.#tryDecode(d);
    }
  }

  #settleRecon(d: Dispatch, i: number, batch: Float32Array): void {
    d.slots[i].forEach((q, g) => this.#settle(q, this.#row(batch, g), true));
  }

  /**
   * Two lost predictions from two parities with coefficient vectors a, b: with R_a = P_a − Σ a_m F_m
   * over the available m (a decode with unit missing coefficient), a_i F_i + a_l F_l = R_a and
   * b_i F_i + b_l F_l = R_b, solved by Cramer's rule as two weighted sums.
   */
  async #decodeTwo(d: Dispatch, i: number, l: number, ja: number, jb: number): Promise<[Float32Array, Float32Array]> {
    const residual = async (j: number) => {
      const code = this.codes[j];
      const avail: Float32Array[] = [], coeffs: number[] = [];
      d.slotOut.forEach((o, m) => {
        if (o) {
          avail.push(o);
          coeffs.push(code.coefficients[m]);
        }
      });
      // (P − Σ c_m F_m) / 1 through the one-missing decoder of a code over [available…, one unknown].
      const sub = new SummationCode(avail.length + 1, [...coeffs, 1]);
      return sub.decode(d.parityOut[j]!, [...avail, null], avail.length);
    };
    const [Ra, Rb] = await Promise.all([residual(ja), residual(jb)]);
    const a = this.codes[ja].coefficients, b = this.codes[jb].coefficients;
    const det = a[i] * b[l] - a[l] * b[i];
    const Fi = await sumEncode([Ra, Rb], [b[l] / det, -a[l] / det]);
    const Fl = await sumEncode([Ra, Rb], [-b[i] / det, a[i] / det]);
    return [Fi, Fl];
  }

  stats(): FrontendStats {
    const ws = (role: 'data' | 'parity') => (w: WorkerHandle) => ({ label: w.label, role, state: w.state, pid: w.pid, restarts: w.restarts, outstanding: w.outstanding, busyMs: w.busyMs, lastError: w.lastError });
    return { ...this.#stats, workers: [...this.dataWorkers.map(ws('data')), ...this.parityWorkers.map(ws('parity'))] };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0].replace(/\/versions\/[^/]+/, '');
      const method = req.method ?? 'GET';
      const json = (status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      if (method === 'GET' && path === '/v2/health/live') return json(200, { live: true });
      if (method === 'GET' && path === '/v2/health/ready') {
        const ready = this.dataWorkers.some((w) => w.state === 'ready');
        return json(ready ? 200 : 503, { ready });
      }
      if (method === 'GET' && path === '/v2') return json(200, { name: 'kintsugi-coded-frontend', version: '0.1.0', extensions: [] });
      if (method === 'GET' && path === '/v2/frontend/stats') return json(200, this.stats());
      const m = /^\/v2\/models\/([^/]+)(\/ready|\/infer)?$/.exec(path);
      if (!m) throw new ServingError(404, expected('the path', 'a KServe v2 endpoint (/v2/health/{live,ready}, /v2/models/{name}[/ready|/infer])', path));
      const model = this.#needModel();
      const name = decodeURIComponent(m[1]);
      if (name !== model.name) throw new ServingError(404, expected('model name', `'${model.name}'`, name));
      if (m[2] !== '/infer') {
        if (method !== 'GET') throw new ServingError(405, expected(`the method of ${path}`, 'GET', method));
        return json(200, m[2] === '/ready' ? { name, ready: this.dataWorkers.some((w) => w.state === 'ready') } : this.modelMetadata);
      }
      if (method !== 'POST') throw new ServingError(405, expected(`the method of ${path}`, 'POST', method));
      const body = parseJsonBody(await readBody(req));
      const { batch, rows, id } = parseInferRequest(body, model.inputShape, model.inputName);
      // Each row is its own query (its own coding-group slot); the reply waits for all of them.
      const results = await Promise.all(Array.from({ length: rows }, (_, r) => this.infer(batch.slice(r * this.#inSize, (r + 1) * this.#inSize))));
      const data = new Float32Array(rows * this.#outSize);
      results.forEach((p, r) => data.set(p.output, r * this.#outSize));
      const reconstructedRows = results.flatMap((p, r) => (p.reconstructed ? [r] : []));
      const response: V2InferResponse = {
        model_name: model.name,
        model_version: '1',
        ...(id ? { id } : {}),
        outputs: [{ name: 'output', datatype: 'FP32', shape: [rows, ...model.outputShape], data: Array.from(data) }],
        parameters: { reconstructed: reconstructedRows.length > 0, reconstructed_rows: reconstructedRows },
      };
      return json(200, response);
    } catch (err) {
      sendError(res, err);
    }
  }

  /** Stops listening, fails queued queries with an explicit error, and stops the workers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#open?.timer) clearTimeout(this.#open.timer);
    this.#open = null;
    if (this.#slotTimer) clearTimeout(this.#slotTimer);
    this.#slotQueue = [];
    this.#parityQueue = this.#parityQueue.map(() => []);
    for (const q of [...this.#pending]) this.#fail(q, new ServingError(503, 'The frontend closed before the query was answered'));
    await Promise.all([...this.dataWorkers, ...this.parityWorkers].map((w) => w.stop()));
    if (this.#server) {
      const server = this.#server;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
  }
}
