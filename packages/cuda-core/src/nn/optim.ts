// Optimizers update Parameter.value in place from Parameter.grad. A parameter whose `rows` hint is
// set (an embedding table after a backward) is updated only on those rows: "lazy" sparse updates,
// as sparse optimizers do in PyTorch/FBGEMM, so a step costs O(touched rows), not O(table).
import { finiteNumber, integer, plainObject, rangeError, typeError } from '../validate.js';
import { Parameter } from './module.js';
import { adagradUpdate } from './ops.js';

function paramList(params: Iterable<Parameter>): Parameter[] {
  const list = [...params];
  list.forEach((p, i) => {
    if (!(p instanceof Parameter)) throw typeError(`params[${i}]`, 'a Parameter', p);
  });
  return list;
}

function nonNegative(value: unknown, name: string): number {
  const v = finiteNumber(value, name);
  if (v < 0) throw rangeError(name, 'a non-negative number', v);
  return v;
}

/** Calls fn(start, end) on each index range the step must touch: all of p, or its hinted rows. */
function forEachRange(p: Parameter, fn: (start: number, end: number) => void): void {
  if (p.rows === null) {
    fn(0, p.size);
    return;
  }
  const dim = p.value.shape[1];
  for (const r of p.rows) fn(r * dim, (r + 1) * dim);
}

export abstract class Optimizer {
  readonly params: Parameter[];
  /** The learning rate of the next step (schedules set it). */
  lr: number;
  /** Steps taken so far. */
  steps = 0;

  constructor(params: Iterable<Parameter>, lr: number) {
    this.params = paramList(params);
    this.lr = nonNegative(lr, 'options.lr');
  }

  zeroGrad(): void {
    for (const p of this.params) p.zeroGrad();
  }

  step(): void {
    this.steps++;
    this.params.forEach((p, i) => this.update(p, i));
  }

  protected abstract update(p: Parameter, index: number): void;
}

export interface SgdOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** SGD with (Nesterov) momentum and L2 weight decay, PyTorch's formulation (no dampening). */
export class SGD extends Optimizer {
  readonly momentum: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  readonly #velocity: (Float32Array | null)[];

  constructor(params: Iterable<Parameter>, options: SgdOptions) {
    const o = plainObject(options, 'options') as Partial<SgdOptions>;
    super(params, o.lr as number);
    this.momentum = o.momentum === undefined ? 0 : nonNegative(o.momentum, 'options.momentum');
    this.weightDecay = o.weightDecay === undefined ? 0 : nonNegative(o.weightDecay, 'options.weightDecay');
    this.nesterov = o.nesterov === true;
    this.#velocity = this.params.map((p) => (this.momentum > 0 ? new Float32Array(p.size) : null));
  }

  protected update(p: Parameter, index: number): void {
    const w = p.value.data, g = p.grad.data, v = this.#velocity[index];
    const lr = this.lr, mu = this.momentum, wd = this.weightDecay, nesterov = this.nesterov;
    forEachRange(p, (start, end) => {
      for (let i = start; i < end; i++) {
        let d = g[i] + wd * w[i];
        if (v) {
          v[i] = mu * v[i] + d;
          d = nesterov ? d + mu * v[i] : v[i];
        }
        w[i] -= lr * d;
      }
    });
  }
}

export interface AdamOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** L2 penalty added to the gradient (Adam), or decoupled from it with `decoupled` (AdamW). */
  weightDecay?: number;
  decoupled?: boolean;
}

export class Adam extends Optimizer {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly decoupled: boolean;
  readonly #m: Float32Array[];
  readonly #v: Float32Array[];

  constructor(params: Iterable<Parameter>, options: AdamOptions = {}) {
    const o = plainObject(options, 'options') as AdamOptions;
    super(params, o.lr === undefined ? 1e-3 : o.lr);
    this.beta1 = o.beta1 === undefined ? 0.9 : finiteNumber(o.beta1, 'options.beta1');
    this.beta2 = o.beta2 === undefined ? 0.999 : finiteNumber(o.beta2, 'options.beta2');
    for (const [name, b] of [['options.beta1', this.beta1], ['options.beta2', this.beta2]] as const) {
      if (b < 0 || b >= 1) throw rangeError(name, 'a number in [0, 1)', b);
    }
    this.eps = o.eps === undefined ? 1e-8 : nonNegative(o.eps, 'options.eps');
    this.weightDecay = o.weightDecay === undefined ? 0 : nonNegative(o.weightDecay, 'options.weightDecay');
    this.decoupled = o.decoupled === true;
    this.#m = this.params.map((p) => new Float32Array(p.size));
    this.#v = this.params.map((p) => new Float32Array(p.size));
  }

  protected update(p: Parameter, index: number): void {
    const w = p.value.data, g = p.grad.data, m = this.#m[index], v = this.#v[index];
    const { beta1: b1, beta2: b2, eps, lr, weightDecay: wd, decoupled } = this;
    // Bias corrections fold into the step size so the inner loop stays short.
    const c1 = 1 - b1 ** this.steps, c2 = 1 - b2 ** this.steps;
    const stepSize = lr / c1, sqrtC2 = Math.sqrt(c2);
    forEachRange(p, (start, end) => {
      for (let i = start; i < end; i++) {
        const gi = decoupled ? g[i] : g[i] + wd * w[i];
        if (decoupled) w[i] -= lr * wd * w[i];
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / sqrtC2 + eps);
      }
    });
  }
}

export interface AdagradOptions {
  lr?: number;
  eps?: number;
  weightDecay?: number;
  initialAccumulator?: number;
}

function adagradOptions(options: unknown): Required<AdagradOptions> {
  const o = plainObject(options, 'options') as AdagradOptions;
  return {
    lr: o.lr === undefined ? 1e-2 : o.lr,
    eps: o.eps === undefined ? 1e-10 : nonNegative(o.eps, 'options.eps'),
    weightDecay: o.weightDecay === undefined ? 0 : nonNegative(o.weightDecay, 'options.weightDecay'),
    initialAccumulator: o.initialAccumulator === undefined ? 0 : nonNegative(o.initialAccumulator, 'options.initialAccumulator'),
  };
}

/** The options both Adagrad variants read. */
abstract class AdagradBase extends Optimizer {
  readonly eps: number;
  readonly weightDecay: number;
  protected readonly initialAccumulator: number;

  constructor(params: Iterable<Parameter>, options: AdagradOptions) {
    const o = adagradOptions(options);
    super(params, o.lr);
    this.eps = o.eps;
    this.weightDecay = o.weightDecay;
    this.initialAccumulator = o.initialAccumulator;
  }
}

/** Adagrad with one accumulator per element (dense; sparse rows are honoured through the hint). */
export class Adagrad extends AdagradBase {
  readonly #sum: Float32Array[];

  constructor(params: Iterable<Parameter>, options: AdagradOptions = {}) {
    super(params, options);
    this.#sum = this.params.map((p) => new Float32Array(p.size).fill(this.initialAccumulator));
  }

  protected update(p: Parameter, index: number): void {
    const w = p.value.data, g = p.grad.data, s = this.#sum[index];
    const { lr, eps, weightDecay: wd } = this;
    if (p.rows === null) {
      adagradUpdate(w, g, s, lr, eps, wd);
      return;
    }
    forEachRange(p, (start, end) => {
      for (let i = start; i < end; i++) {
        const gi = g[i] + wd * w[i];
        s[i] += gi * gi;
        w[i] -= (lr * gi) / (Math.sqrt(s[i]) + eps);
      }
    });
  }
}

/**
 * Row-wise Adagrad for embedding tables: one accumulator per row (the mean of the row's squared
 * gradient), as DLRM/FBGEMM use, so the state is rows floats instead of rows × dim. Updates only the
 * rows a backward touched. 1-D parameters fall back to element-wise Adagrad.
 */
export class RowwiseAdagrad extends AdagradBase {
  readonly #sum: Float32Array[];

  constructor(params: Iterable<Parameter>, options: AdagradOptions = {}) {
    super(params, options);
    this.#sum = this.params.map((p) => new Float32Array(p.value.ndim === 2 ? p.value.shape[0] : p.size).fill(this.initialAccumulator));
  }

  protected update(p: Parameter, index: number): void {
    const w = p.value.data, g = p.grad.data, s = this.#sum[index];
    const { lr, eps, weightDecay: wd } = this;
    if (p.value.ndim !== 2) {
      for (let i = 0; i < p.size; i++) {
        const gi = g[i] + wd * w[i];
        s[i] += gi * gi;
        w[i] -= (lr * gi) / (Math.sqrt(s[i]) + eps);
      }
      return;
    }
    const [rows, dim] = p.value.shape;
    const updateRow = (r: number) => {
      const o = r * dim;
      let sq = 0;
      for (let j = 0; j < dim; j++) {
        const gi = g[o + j] + wd * w[o + j];
        sq += gi * gi;
      }
      s[r] += sq / dim;
      const scale = lr / (Math.sqrt(s[r]) + eps);
      for (let j = 0; j < dim; j++) w[o + j] -= scale * (g[o + j] + wd * w[o + j]);
    };
    if (p.rows === null) for (let r = 0; r < rows; r++) updateRow(r);
    else for (const r of p.rows) updateRow(r);
  }
}

// ---------------------------------------------------------------------------------------------

/** A learning-rate schedule: call step() once per scheduled unit (batch or epoch) after optimizer.step(). */
export abstract class LrScheduler {
  readonly baseLr: number;
  /** Schedule steps taken. */
  t = 0;

  constructor(readonly optimizer: Optimizer) {
    if (!(optimizer instanceof Optimizer)) throw typeError('optimizer', 'an Optimizer', optimizer);
    this.baseLr = optimizer.lr;
  }
  abstract lrAt(t: number): number;
  step(): number {
    this.t++;
    this.optimizer.lr = this.lrAt(this.t);
    return this.optimizer.lr;
  }
}

/** lr = base · gamma^⌊t / stepSize⌋. */
export class StepLR extends LrScheduler {
  readonly stepSize: number;
  readonly gamma: number;

  constructor(optimizer: Optimizer, options: { stepSize: number; gamma?: number }) {
    super(optimizer);
    const o = plainObject(options, 'options');
    this.stepSize = integer(o.stepSize, 'options.stepSize', 1);
    this.gamma = o.gamma === undefined ? 0.1 : nonNegative(o.gamma, 'options.gamma');
  }
  lrAt(t: number): number {
    return this.baseLr * this.gamma ** Math.floor(t / this.stepSize);
  }
}

/** Linear warm-up, then half a cosine from base down to minLr at totalSteps (held there after). */
export class CosineLR extends LrScheduler {
  readonly totalSteps: number;
  readonly minLr: number;
  readonly warmupSteps: number;

  constructor(optimizer: Optimizer, options: { totalSteps: number; minLr?: number; warmupSteps?: number }) {
    super(optimizer);
    const o = plainObject(options, 'options');
    this.totalSteps = integer(o.totalSteps, 'options.totalSteps', 1);
    this.minLr = o.minLr === undefined ? 0 : nonNegative(o.minLr, 'options.minLr');
    this.warmupSteps = o.warmupSteps === undefined ? 0 : integer(o.warmupSteps, 'options.warmupSteps', 0, this.totalSteps - 1);
    if (this.warmupSteps > 0) optimizer.lr = this.lrAt(0);
  }
  lrAt(t: number): number {
    if (t < this.warmupSteps) return (this.baseLr * (t + 1)) / this.warmupSteps;
    const progress = Math.min(1, (t - this.warmupSteps) / Math.max(1, this.totalSteps - this.warmupSteps));
    return this.minLr + ((this.baseLr - this.minLr) * (1 + Math.cos(Math.PI * progress))) / 2;
  }
}
