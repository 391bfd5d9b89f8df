// The layers. Linear, Conv2d and EmbeddingBag run on the native kernels through ./ops.js; the
// cheap memory-bound ones (activations, pooling, normalisation) are plain loops here, which the JIT
// handles well and which keep every backward formula readable next to its forward.
import { checkTensor, emptyArray, Tensor } from '../tensor.js';
import { finiteNumber, integer, oneOf, plainObject, rangeError, typeError } from '../validate.js';
import { Layer, Module, Parameter, type LayerConfig } from './module.js';
import { addInto, bagBackward, bagForward, batchNormBackward, batchNormForward, convBackward, convForward, matmul, reluBackward, reluForward } from './ops.js';
import { globalRng, type Rng } from './rng.js';

function uniformTensor(shape: number[], bound: number, rng: Rng): Tensor<'float32'> {
  const t = Tensor.zeros(shape, 'float32');
  const d = t.data;
  for (let i = 0; i < d.length; i++) d[i] = rng.uniform(-bound, bound);
  return t;
}

function notForwarded(layer: string): Error {
  return typeError(`${layer}.backward`, 'a preceding forward call', 'none', true);
}

function input4d(x: unknown, layer: string, channels?: number): Tensor<'float32'> {
  const t = checkTensor(x, `${layer} input`, ['float32'], 4);
  if (channels !== undefined && t.shape[1] !== channels) {
    throw rangeError(`${layer} input`, `shape [N, ${channels}, H, W]`, `shape [${t.shape}]`, true);
  }
  return t.contiguous();
}

function sameShape(dy: Tensor<'float32'>, shape: readonly number[], layer: string): Float32Array {
  const t = checkTensor(dy, `${layer} gradient`, ['float32']);
  if (t.ndim !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw rangeError(`${layer} gradient`, `shape [${shape}] (the forward output)`, `shape [${t.shape}]`, true);
  }
  return t.contiguousData();
}

// ---------------------------------------------------------------------------------------------

export interface LinearOptions {
  bias?: boolean;
  rng?: Rng;
}

let ones: Tensor<'float32'> | null = null;
/** A [1, n] row of ones (one kept and grown, viewed at the length asked for). */
function onesRow(n: number): Tensor<'float32'> {
  if (!ones || ones.data.length < n) ones = new Tensor(new Float32Array(Math.max(n, 256)).fill(1), [1, Math.max(n, 256)]);
  return new Tensor(ones.data.subarray(0, n), [1, n]);
}

/** y = x Wᵀ + b with W: [out, in] (PyTorch's layout, so weights move between the two as they are). */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  #x: Tensor<'float32'> | null = null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, options: LinearOptions = {}) {
    super();
    integer(inFeatures, 'inFeatures', 1, 2 ** 31 - 1);
    integer(outFeatures, 'outFeatures', 1, 2 ** 31 - 1);
    const o = plainObject(options, 'options') as LinearOptions;
    const rng = o.rng ?? globalRng();
    // He (Kaiming) uniform: the layers mostly feed ReLUs, which halve the variance.
    this.weight = new Parameter(uniformTensor([outFeatures, inFeatures], Math.sqrt(6 / inFeatures), rng));
    this.bias = o.bias === false ? null : new Parameter(Tensor.zeros([outFeatures], 'float32'));
  }

  override ownParameters(): [string, Parameter][] {
    return this.bias ? [['weight', this.weight], ['bias', this.bias]] : [['weight', this.weight]];
  }
  override config(): LayerConfig {
    return { type: 'Linear', inFeatures: this.inFeatures, outFeatures: this.outFeatures, bias: this.bias !== null };
  }

  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = checkTensor(x, 'Linear input', ['float32'], 2);
    if (X.shape[1] !== this.inFeatures) throw rangeError('Linear input', `shape [N, ${this.inFeatures}]`, `shape [${X.shape}]`, true);
    this.#x = X;
    const n = X.shape[0];
    const y = Tensor.empty([n, this.outFeatures], 'float32');  // bias rows or beta = 0: written whole
    if (this.bias) {
      // Start from the broadcast bias and let the GEMM accumulate onto it (beta = 1).
      const b = this.bias.value.data, yd = y.data, m = this.outFeatures;
      for (let r = 0; r < n; r++) yd.set(b, r * m);
      return matmul(X, this.weight.value, { transB: true, out: y, beta: 1 });
    }
    return matmul(X, this.weight.value, { transB: true, out: y });
  }

  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const x = this.#x;
    if (!x) throw notForwarded('Linear');
    const g = checkTensor(dy, 'Linear gradient', ['float32'], 2);
    if (g.shape[0] !== x.shape[0] || g.shape[1] !== this.outFeatures) {
      throw rangeError('Linear gradient', `shape [${x.shape[0]}, ${this.outFeatures}]`, `shape [${g.shape}]`, true);
    }
    await matmul(g, x, { transA: true, out: this.weight.grad, beta: 1 });
    if (this.bias) {
      // The bias gradient, dy's column sums, as a GEMM 1s[1, N] · dy (accumulated, beta = 1): in a
      // JavaScript loop it took ~0.8 ms a step for DLRM's reference MLPs at batch 256.
      await matmul(onesRow(g.shape[0]), g, { out: new Tensor(this.bias.grad.data, [1, this.outFeatures]), beta: 1 });
    }
    return matmul(g, this.weight.value);
  }
}

// ---------------------------------------------------------------------------------------------

export interface Conv2dLayerOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
  rng?: Rng;
}

/** 2-D convolution, NCHW, weight [out, in, k, k]. */
export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly stride: number;
  readonly padding: number;
  #x: Tensor<'float32'> | null = null;

  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: number, options: Conv2dLayerOptions = {}) {
    super();
    integer(inChannels, 'inChannels', 1, 2 ** 31 - 1);
    integer(outChannels, 'outChannels', 1, 2 ** 31 - 1);
    integer(kernelSize, 'kernelSize', 1, 65535);
    const o = plainObject(options, 'options') as Conv2dLayerOptions;
    this.stride = o.stride === undefined ? 1 : integer(o.stride, 'options.stride', 1, 65535);
    this.padding = o.padding === undefined ? 0 : integer(o.padding, 'options.padding', 0, 65535);
    const rng = o.rng ?? globalRng();
    const fanIn = inChannels * kernelSize * kernelSize;
    this.weight = new Parameter(uniformTensor([outChannels, inChannels, kernelSize, kernelSize], Math.sqrt(6 / fanIn), rng));
    this.bias = o.bias === false ? null : new Parameter(Tensor.zeros([outChannels], 'float32'));
  }

  override ownParameters(): [string, Parameter][] {
    return this.bias ? [['weight', this.weight], ['bias', this.bias]] : [['weight', this.weight]];
  }
  override config(): LayerConfig {
    return {
      type: 'Conv2d', inChannels: this.inChannels, outChannels: this.outChannels, kernelSize: this.kernelSize,
      stride: this.stride, padding: this.padding, bias: this.bias !== null,
    };
  }

  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = input4d(x, 'Conv2d', this.inChannels);
    this.#x = X;
    return convForward(X, this.weight.value, this.bias ? this.bias.value : null, { stride: this.stride, padding: this.padding });
  }

  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const x = this.#x;
    if (!x) throw notForwarded('Conv2d');
    const g = checkTensor(dy, 'Conv2d gradient', ['float32'], 4).contiguous();
    const grads = await convBackward(x, this.weight.value, g, { stride: this.stride, padding: this.padding, bias: this.bias !== null });
    await addInto(this.weight.grad.data, grads.dw!.data);
    if (this.bias) await addInto(this.bias.grad.data, grads.db!.data);
    return grads.dx!;
  }
}

// ---------------------------------------------------------------------------------------------

function poolGeometry(x: Tensor<'float32'>, k: number, s: number, p: number, layer: string) {
  const [n, c, h, w] = x.shape;
  const oh = Math.floor((h + 2 * p - k) / s) + 1;
  const ow = Math.floor((w + 2 * p - k) / s) + 1;
  if (oh < 1 || ow < 1) throw rangeError(`${layer} input`, `at least ${k - 2 * p}x${k - 2 * p} spatial size`, `shape [${x.shape}]`, true);
  return { n, c, h, w, oh, ow };
}

/** The window geometry (kernel, stride, padding) the pooling layers share. */
abstract class Pool2d extends Module {
  readonly stride: number;
  readonly padding: number;

  constructor(readonly kernelSize: number, options: { stride?: number; padding?: number } = {}) {
    super();
    integer(kernelSize, 'kernelSize', 1, 65535);
    const o = plainObject(options, 'options') as { stride?: number; padding?: number };
    this.stride = o.stride === undefined ? kernelSize : integer(o.stride, 'options.stride', 1, 65535);
    this.padding = o.padding === undefined ? 0 : integer(o.padding, 'options.padding', 0, Math.floor(kernelSize / 2));
  }
  protected poolConfig(type: string): LayerConfig {
    return { type, kernelSize: this.kernelSize, stride: this.stride, padding: this.padding };
  }
}

/** Max over k×k windows; the winning input index is kept so backward routes each gradient once. */
export class MaxPool2d extends Pool2d {
  #argmax: Int32Array | null = null;
  #inShape: readonly number[] = [];
  #outShape: number[] = [];

  override config(): LayerConfig {
    return this.poolConfig('MaxPool2d');
  }

  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = input4d(x, 'MaxPool2d');
    const k = this.kernelSize, s = this.stride, p = this.padding;
    const { n, c, h, w, oh, ow } = poolGeometry(X, k, s, p, 'MaxPool2d');
    const xd = X.contiguousData();
    const y = Tensor.empty([n, c, oh, ow], 'float32');  // both loops write every output
    const yd = y.data;
    const arg = emptyArray(Int32Array, yd.length);
    let o = 0;
    if (k === 2 && s === 2 && p === 0) {
      // The common 2×2/2 case without bounds checks: a CNN's hottest non-GEMM loop.
      for (let plane = 0; plane < n * c; plane++) {
        const base = plane * h * w;
        for (let i = 0; i < oh; i++) {
          let r0 = base + 2 * i * w;
          for (let j = 0; j < ow; j++, o++, r0 += 2) {
            let best = xd[r0], at = r0;
            if (xd[r0 + 1] > best) { best = xd[r0 + 1]; at = r0 + 1; }
            if (xd[r0 + w] > best) { best = xd[r0 + w]; at = r0 + w; }
            if (xd[r0 + w + 1] > best) { best = xd[r0 + w + 1]; at = r0 + w + 1; }
            yd[o] = best;
            arg[o] = at;
          }
        }
      }
    } else {
      for (let plane = 0; plane < n * c; plane++) {
        const base = plane * h * w;
        for (let i = 0; i < oh; i++) {
          const y0 = i * s - p;
          for (let j = 0; j < ow; j++, o++) {
            const x0 = j * s - p;
            let best = -Infinity, at = -1;
            for (let di = 0; di < k; di++) {
              const yy = y0 + di;
              if (yy < 0 || yy >= h) continue;
              for (let dj = 0; dj < k; dj++) {
                const xx = x0 + dj;
                if (xx < 0 || xx >= w) continue;
                const idx = base + yy * w + xx;
                const v = xd[idx];
                // `at < 0` keeps NaN inputs routed somewhere instead of leaving -1.
                if (v > best || at < 0) { best = v; at = idx; }
              }
            }
            yd[o] = best;
            arg[o] = at;
          }
        }
      }
    }
    this.#argmax = arg;
    this.#inShape = X.shape;
    this.#outShape = [n, c, oh, ow];
    return y;
  }

  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const arg = this.#argmax;
    if (!arg) throw notForwarded('MaxPool2d');
    const g = sameShape(dy, this.#outShape, 'MaxPool2d');
    const dx = Tensor.zeros(this.#inShape, 'float32');
    const dxd = dx.data;
    for (let o = 0; o < arg.length; o++) dxd[arg[o]] += g[o];
    return dx;
  }
}

/** Mean over k×k windows (padding counts as zeros in the mean, as PyTorch's default). */
export class AvgPool2d extends Pool2d {
  #inShape: readonly number[] | null = null;
  #outShape: number[] = [];

  override config(): LayerConfig {
    return this.poolConfig('AvgPool2d');
  }

  // Forward and backward share one window walk; `scatter` picks the direction.
  #walk(src: Float32Array, dst: Float32Array, shape: readonly number[], oh: number, ow: number, scatter: boolean): void {
    const [, , h, w] = shape;
    const k = this.kernelSize, s = this.stride, p = this.padding, inv = 1 / (k * k);
    const planes = shape[0] * shape[1];
    let o = 0;
    for (let plane = 0; plane < planes; plane++) {
      const base = plane * h * w;
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++, o++) {
          let acc = 0;
          const g = scatter ? src[o] * inv : 0;
          for (let di = 0; di < k; di++) {
            const yy = i * s - p + di;
            if (yy < 0 || yy >= h) continue;
            for (let dj = 0; dj < k; dj++) {
              const xx = j * s - p + dj;
              if (xx < 0 || xx >= w) continue;
              if (scatter) dst[base + yy * w + xx] += g;
              else acc += src[base + yy * w + xx];
            }
          }
          if (!scatter) dst[o] = acc * inv;
        }
      }
    }
  }

  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = input4d(x, 'AvgPool2d');
    const { n, c, oh, ow } = poolGeometry(X, this.kernelSize, this.stride, this.padding, 'AvgPool2d');
    const y = Tensor.zeros([n, c, oh, ow], 'float32');
    this.#walk(X.contiguousData(), y.data, X.shape, oh, ow, false);
    this.#inShape = X.shape;
    this.#outShape = [n, c, oh, ow];
    return y;
  }

  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    if (!this.#inShape) throw notForwarded('AvgPool2d');
    const g = sameShape(dy, this.#outShape, 'AvgPool2d');
    const dx = Tensor.zeros(this.#inShape, 'float32');
    this.#walk(g, dx.data, this.#inShape, this.#outShape[2], this.#outShape[3], true);
    return dx;
  }
}

/** [N, C, H, W] → [N, C]: the mean of each channel (the head of ResNets). */
export class GlobalAvgPool2d extends Module {
  #inShape: readonly number[] | null = null;

  override config(): LayerConfig {
    return { type: 'GlobalAvgPool2d' };
  }
  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = input4d(x, 'GlobalAvgPool2d');
    const [n, c, h, w] = X.shape;
    const xd = X.contiguousData(), hw = h * w;
    const y = Tensor.zeros([n, c], 'float32');
    for (let plane = 0; plane < n * c; plane++) {
      let acc = 0;
      for (let i = plane * hw, end = i + hw; i < end; i++) acc += xd[i];
      y.data[plane] = acc / hw;
    }
    this.#inShape = X.shape;
    return y;
  }
  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const shape = this.#inShape;
    if (!shape) throw notForwarded('GlobalAvgPool2d');
    const g = sameShape(dy, [shape[0], shape[1]], 'GlobalAvgPool2d');
    const hw = shape[2] * shape[3];
    const dx = Tensor.empty(shape, 'float32');
    for (let plane = 0; plane < g.length; plane++) dx.data.fill(g[plane] / hw, plane * hw, (plane + 1) * hw);
    return dx;
  }
}

// ---------------------------------------------------------------------------------------------

export class ReLU extends Module {
  #y: Float32Array | null = null;
  #shape: readonly number[] = [];

  override config(): LayerConfig {
    return { type: 'ReLU' };
  }
  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = checkTensor(x, 'ReLU input', ['float32']);
    const xd = X.contiguousData();
    const y = emptyArray(Float32Array, xd.length);
    // Native, on the bits: a set sign bit (negatives, -0, -Inf) selects +0, else the value passes
    // unchanged (no branch on the activations' random signs).
    await reluForward(xd, y);
    this.#y = y;
    this.#shape = X.shape;
    return new Tensor(y, X.shape);
  }
  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const y = this.#y;
    if (!y) throw notForwarded('ReLU');
    const g = sameShape(dy, this.#shape, 'ReLU');
    const dx = emptyArray(Float32Array, g.length);
    // dy times a 0/1 mask (+ 0 turns the -0 of a negative dy times 0 into 0).
    await reluBackward(g, y, dx);
    return new Tensor(dx, this.#shape);
  }
}

/** [N, ...] → [N, product of the rest]. */
export class Flatten extends Module {
  #shape: readonly number[] | null = null;

  override config(): LayerConfig {
    return { type: 'Flatten' };
  }
  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = checkTensor(x, 'Flatten input', ['float32']);
    if (X.ndim < 1) throw rangeError('Flatten input', 'a Tensor with a batch dimension', 'a 0-D Tensor', true);
    this.#shape = X.shape;
    return X.reshape([X.shape[0], X.size / Math.max(1, X.shape[0])]);
  }
  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    if (!this.#shape) throw notForwarded('Flatten');
    const g = checkTensor(dy, 'Flatten gradient', ['float32']);
    if (g.size !== this.#shape.reduce((a, b) => a * b, 1)) {
      throw rangeError('Flatten gradient', `${this.#shape.reduce((a, b) => a * b, 1)} elements`, `shape [${g.shape}]`, true);
    }
    return g.reshape(this.#shape);
  }
}

/** Zeroes each element with probability p in training and scales the rest by 1/(1-p) (inverted dropout). */
export class Dropout extends Module {
  readonly #rng: Rng;
  #mask: Float32Array | null = null;
  #shape: readonly number[] = [];

  constructor(readonly p = 0.5, options: { rng?: Rng } = {}) {
    super();
    finiteNumber(p, 'p');
    if (p < 0 || p >= 1) throw rangeError('p', 'a probability in [0, 1)', p);
    this.#rng = plainObject(options, 'options').rng as Rng | undefined ?? globalRng();
  }
  override config(): LayerConfig {
    return { type: 'Dropout', p: this.p };
  }
  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = checkTensor(x, 'Dropout input', ['float32']);
    this.#shape = X.shape;
    if (!this.training || this.p === 0) {
      this.#mask = null;
      return X;
    }
    const xd = X.contiguousData();
    const mask = emptyArray(Float32Array, xd.length);
    const keep = 1 / (1 - this.p);
    const y = emptyArray(Float32Array, xd.length);
    for (let i = 0; i < xd.length; i++) {
      mask[i] = this.#rng.next() >= this.p ? keep : 0;
      y[i] = xd[i] * mask[i];
    }
    this.#mask = mask;
    return new Tensor(y, X.shape);
  }
  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const g = sameShape(dy, this.#shape, 'Dropout');
    const mask = this.#mask;
    if (!mask) return new Tensor(g, this.#shape);
    const dx = emptyArray(Float32Array, g.length);
    for (let i = 0; i < g.length; i++) dx[i] = g[i] * mask[i];
    return new Tensor(dx, this.#shape);
  }
}

/** Softmax over the last dimension of a 2-D [N, C] input. */
export class Softmax extends Module {
  #y: Tensor<'float32'> | null = null;

  override config(): LayerConfig {
    return { type: 'Softmax' };
  }
  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = checkTensor(x, 'Softmax input', ['float32'], 2);
    const [n, c] = X.shape;
    const xd = X.contiguousData();
    const y = Tensor.zeros([n, c], 'float32');
    for (let r = 0; r < n; r++) {
      const o = r * c;
      let max = -Infinity;
      for (let j = 0; j < c; j++) max = Math.max(max, xd[o + j]);
      let sum = 0;
      for (let j = 0; j < c; j++) sum += (y.data[o + j] = Math.exp(xd[o + j] - max));
      for (let j = 0; j < c; j++) y.data[o + j] /= sum;
    }
    this.#y = y;
    return y;
  }
  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const y = this.#y;
    if (!y) throw notForwarded('Softmax');
    const g = sameShape(dy, y.shape, 'Softmax');
    const [n, c] = y.shape;
    const yd = y.data;
    const dx = Tensor.zeros([n, c], 'float32');
    // dx = y ⊙ (dy − Σ dy·y): the Jacobian-vector product without forming the C×C Jacobian.
    for (let r = 0; r < n; r++) {
      const o = r * c;
      let dot = 0;
      for (let j = 0; j < c; j++) dot += g[o + j] * yd[o + j];
      for (let j = 0; j < c; j++) dx.data[o + j] = yd[o + j] * (g[o + j] - dot);
    }
    return dx;
  }
}

// ---------------------------------------------------------------------------------------------

export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
}

/**
 * Per-channel normalisation of NCHW input. Training uses the batch's statistics (and updates the
 * running ones); eval uses the running ones, so it is then an affine map per channel.
 */
export class BatchNorm2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;
  readonly runningMean: Tensor<'float32'>;
  readonly runningVar: Tensor<'float32'>;
  readonly eps: number;
  readonly momentum: number;
  #xhat: Float32Array | null = null;
  #invStd: Float64Array = new Float64Array(0);
  #shape: readonly number[] = [];
  #batchStats = true;

  constructor(readonly numFeatures: number, options: BatchNormOptions = {}) {
    super();
    integer(numFeatures, 'numFeatures', 1, 2 ** 31 - 1);
    const o = plainObject(options, 'options') as BatchNormOptions;
    this.eps = o.eps === undefined ? 1e-5 : finiteNumber(o.eps, 'options.eps');
    this.momentum = o.momentum === undefined ? 0.1 : finiteNumber(o.momentum, 'options.momentum');
    if (this.eps <= 0) throw rangeError('options.eps', 'a positive number', this.eps);
    if (this.momentum < 0 || this.momentum > 1) throw rangeError('options.momentum', 'a number in [0, 1]', this.momentum);
    this.weight = new Parameter(Tensor.fromArray(new Array<number>(numFeatures).fill(1), [numFeatures], 'float32'));
    this.bias = new Parameter(Tensor.zeros([numFeatures], 'float32'));
    this.runningMean = Tensor.zeros([numFeatures], 'float32');
    this.runningVar = Tensor.fromArray(new Array<number>(numFeatures).fill(1), [numFeatures], 'float32');
  }

  override ownParameters(): [string, Parameter][] {
    return [['weight', this.weight], ['bias', this.bias]];
  }
  override ownBuffers(): [string, Tensor<'float32'>][] {
    return [['runningMean', this.runningMean], ['runningVar', this.runningVar]];
  }
  override config(): LayerConfig {
    return { type: 'BatchNorm2d', numFeatures: this.numFeatures, eps: this.eps, momentum: this.momentum };
  }

  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = input4d(x, 'BatchNorm2d', this.numFeatures);
    const [n, c, h, w] = X.shape;
    const batchStats = this.training;
    if (batchStats && n * h * w < 2) throw rangeError('BatchNorm2d input', 'more than one value per channel in training', `shape [${X.shape}]`, true);
    const xd = X.contiguousData();
    // Per channel, in the native kernel: mean and variance over the batch in float64 (two passes:
    // the one-pass E[x²]−E[x]² loses digits when the mean is large) or the running ones.
    const xhat = emptyArray(Float32Array, xd.length);
    const y = Tensor.empty(X.shape, 'float32');
    const invStd = new Float64Array(c);
    const call = { n, c, hw: h * w, eps: this.eps, momentum: this.momentum, training: batchStats };
    await batchNormForward(call, xd, this.weight.value.data, this.bias.value.data, this.runningMean.data, this.runningVar.data, xhat, y.data, invStd);
    this.#xhat = xhat;
    this.#invStd = invStd;
    this.#shape = X.shape;
    this.#batchStats = batchStats;
    return y;
  }

  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const xhat = this.#xhat;
    if (!xhat) throw notForwarded('BatchNorm2d');
    const g = sameShape(dy, this.#shape, 'BatchNorm2d');
    const [n, c, h, w] = this.#shape;
    const dx = Tensor.empty(this.#shape, 'float32');
    // With batch statistics the mean and variance depend on every input: dx carries the two
    // correction terms (dy − mean(dy) − xhat·mean(dy·xhat)).
    const call = { n, c, hw: h * w, eps: this.eps, momentum: this.momentum, training: this.#batchStats };
    await batchNormBackward(call, g, xhat, this.weight.value.data, this.#invStd, this.weight.grad.data, this.bias.grad.data, dx.data);
    return dx;
  }
}

// ---------------------------------------------------------------------------------------------

export class Sequential extends Module {
  readonly layers: Module[];

  constructor(...layers: Module[]) {
    super();
    layers.forEach((l, i) => {
      if (!(l instanceof Module)) throw typeError(`layers[${i}]`, 'a Module', l);
    });
    this.layers = layers;
  }
  override children(): [string, Layer][] {
    return this.layers.map((l, i) => [String(i), l]);
  }
  override config(): LayerConfig {
    return { type: 'Sequential', layers: this.layers.map((l) => l.config()) };
  }
  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    let h = x;
    for (const layer of this.layers) h = await layer.forward(h);
    return h;
  }
  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    let g = dy;
    for (let i = this.layers.length - 1; i >= 0; i--) g = await this.layers[i].backward(g);
    return g;
  }
}

/**
 * The basic ResNet block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), with a 1×1
 * conv + BN shortcut when the stride or channel count changes and the identity otherwise.
 */
export class ResidualBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu1 = new ReLU();
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly shortcut: Sequential | null;
  readonly relu2 = new ReLU();

  constructor(readonly inChannels: number, readonly outChannels: number, readonly stride = 1, options: { rng?: Rng } = {}) {
    super();
    integer(stride, 'stride', 1, 65535);
    const rng = (plainObject(options, 'options').rng as Rng | undefined) ?? globalRng();
    this.conv1 = new Conv2d(inChannels, outChannels, 3, { stride, padding: 1, bias: false, rng });
    this.bn1 = new BatchNorm2d(outChannels);
    this.conv2 = new Conv2d(outChannels, outChannels, 3, { padding: 1, bias: false, rng });
    this.bn2 = new BatchNorm2d(outChannels);
    this.shortcut = stride !== 1 || inChannels !== outChannels
      ? new Sequential(new Conv2d(inChannels, outChannels, 1, { stride, bias: false, rng }), new BatchNorm2d(outChannels))
      : null;
  }
  override children(): [string, Layer][] {
    // The ReLUs have no state to save; they are listed so traversals (train/eval, tests) see every layer.
    const c: [string, Layer][] = [['conv1', this.conv1], ['bn1', this.bn1], ['relu1', this.relu1], ['conv2', this.conv2], ['bn2', this.bn2]];
    if (this.shortcut) c.push(['shortcut', this.shortcut]);
    c.push(['relu2', this.relu2]);
    return c;
  }
  override config(): LayerConfig {
    return { type: 'ResidualBlock', inChannels: this.inChannels, outChannels: this.outChannels, stride: this.stride };
  }

  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const X = input4d(x, 'ResidualBlock', this.inChannels);
    let h = await this.conv1.forward(X);
    h = await this.relu1.forward(await this.bn1.forward(h));
    h = await this.bn2.forward(await this.conv2.forward(h));
    const s = this.shortcut ? await this.shortcut.forward(X) : X;
    await addInto(h.data, s.contiguousData());
    return this.relu2.forward(h);
  }

  async backward(dy: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const g = await this.relu2.backward(dy);
    let m = await this.conv2.backward(await this.bn2.backward(g));
    m = await this.conv1.backward(await this.bn1.backward(await this.relu1.backward(m)));
    // The sum fans the gradient out to both paths; their input gradients add up.
    const s = this.shortcut ? await this.shortcut.backward(g) : g;
    const dx = m.contiguous();
    await addInto(dx.data, s.contiguousData());
    return dx;
  }
}

// ---------------------------------------------------------------------------------------------

/** Bags of rows to pool: bag b is indices[offsets[b] .. offsets[b + 1]). */
export interface Bags {
  indices: Int32Array;
  offsets: Int32Array;
  /** Optional per-index weights (per-sample weights). */
  weights?: Float32Array;
}

/**
 * Sums or averages bags of table rows (the embedding layer of recommendation models). Its input is
 * index bags, not a tensor, so it is a Layer rather than a Module; backward marks the touched rows
 * on the weight so sparse optimizers update only those.
 */
export class EmbeddingBag extends Layer {
  readonly weight: Parameter;
  readonly mode: 'sum' | 'mean';
  #bags: Bags | null = null;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, options: { mode?: 'sum' | 'mean'; rng?: Rng; scale?: number } = {}) {
    super();
    integer(numEmbeddings, 'numEmbeddings', 1, 2 ** 31 - 1);
    integer(embeddingDim, 'embeddingDim', 1, 2 ** 31 - 1);
    const o = plainObject(options, 'options') as { mode?: 'sum' | 'mean'; rng?: Rng; scale?: number };
    this.mode = o.mode === undefined ? 'mean' : oneOf(o.mode, 'options.mode', ['sum', 'mean'] as const);
    const rng = o.rng ?? globalRng();
    // Uniform ±sqrt(1/rows), as DLRM initialises its tables; `scale` overrides the bound.
    const bound = o.scale === undefined ? Math.sqrt(1 / numEmbeddings) : finiteNumber(o.scale, 'options.scale');
    this.weight = new Parameter(uniformTensor([numEmbeddings, embeddingDim], bound, rng));
  }
  override ownParameters(): [string, Parameter][] {
    return [['weight', this.weight]];
  }
  override config(): LayerConfig {
    return { type: 'EmbeddingBag', numEmbeddings: this.numEmbeddings, embeddingDim: this.embeddingDim, mode: this.mode };
  }

  async forward(bags: Bags): Promise<Tensor<'float32'>> {
    const b = plainObject(bags, 'bags') as Partial<Bags>;
    if (!(b.indices instanceof Int32Array)) throw typeError('bags.indices', 'an Int32Array', b.indices);
    if (!(b.offsets instanceof Int32Array)) throw typeError('bags.offsets', 'an Int32Array', b.offsets);
    const checked: Bags = { indices: b.indices, offsets: b.offsets, weights: b.weights };
    const out = await bagForward(this.weight.value, checked.indices, checked.offsets, { mode: this.mode, weights: checked.weights });
    this.#bags = checked;
    return out;
  }

  /** Accumulates the table gradient; there is no input gradient (indices are not differentiable). */
  async backward(dy: Tensor<'float32'>): Promise<void> {
    const bags = this.#bags;
    if (!bags) throw notForwarded('EmbeddingBag');
    await bagBackward(checkTensor(dy, 'EmbeddingBag gradient', ['float32'], 2), bags.indices, bags.offsets, {
      mode: this.mode, weights: bags.weights, into: this.weight.grad,
    });
    this.weight.addRows(bags.indices);
  }
}

// ---------------------------------------------------------------------------------------------

function num(config: LayerConfig, key: string): number {
  const v = config[key];
  if (typeof v !== 'number') throw typeError(`config.${key} (${config.type})`, 'a number', v);
  return v;
}

/** Rebuilds a layer (and its children) from its config; the weights are fresh until loaded. */
export function layerFromConfig(config: unknown): Layer {
  const c = plainObject(config, 'config') as LayerConfig;
  switch (c.type) {
    case 'Linear': return new Linear(num(c, 'inFeatures'), num(c, 'outFeatures'), { bias: c.bias !== false });
    case 'Conv2d':
      return new Conv2d(num(c, 'inChannels'), num(c, 'outChannels'), num(c, 'kernelSize'), {
        stride: num(c, 'stride'), padding: num(c, 'padding'), bias: c.bias !== false,
      });
    case 'MaxPool2d': return new MaxPool2d(num(c, 'kernelSize'), { stride: num(c, 'stride'), padding: num(c, 'padding') });
    case 'AvgPool2d': return new AvgPool2d(num(c, 'kernelSize'), { stride: num(c, 'stride'), padding: num(c, 'padding') });
    case 'GlobalAvgPool2d': return new GlobalAvgPool2d();
    case 'ReLU': return new ReLU();
    case 'Flatten': return new Flatten();
    case 'Dropout': return new Dropout(num(c, 'p'));
    case 'Softmax': return new Softmax();
    case 'BatchNorm2d': return new BatchNorm2d(num(c, 'numFeatures'), { eps: num(c, 'eps'), momentum: num(c, 'momentum') });
    case 'ResidualBlock': return new ResidualBlock(num(c, 'inChannels'), num(c, 'outChannels'), num(c, 'stride'));
    case 'EmbeddingBag':
      return new EmbeddingBag(num(c, 'numEmbeddings'), num(c, 'embeddingDim'), { mode: oneOf(c.mode, 'config.mode', ['sum', 'mean'] as const) });
    case 'Sequential': {
      if (!Array.isArray(c.layers)) throw typeError('config.layers (Sequential)', 'an array of layer configs', c.layers);
      const layers = c.layers.map((l: unknown, i: number) => {
        const layer = layerFromConfig(l);
        if (!(layer instanceof Module)) throw typeError(`config.layers[${i}]`, 'a tensor-to-tensor layer config', (l as LayerConfig).type, true);
        return layer;
      });
      return new Sequential(...layers);
    }
    default:
      throw rangeError('config.type', 'a known layer type (Linear, Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, ReLU, Flatten, Dropout, Softmax, BatchNorm2d, ResidualBlock, EmbeddingBag, Sequential)', c.type);
  }
}
