// 2-D convolution on NCHW or NHWC float32 tensors, forward and backward.
import { native, type NativeConvParams } from './addon.js';
import { INLINE_FLOPS } from './gemm.js';
import { checkTensor, Tensor } from './tensor.js';
import { boolean, integer, oneOf, pair, plainObject, rangeError, typeError } from './validate.js';

export type Conv2dLayout = 'nchw' | 'nhwc';

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
  /**
   * Activation layout: 'nchw' (default; x [N, C, H, W], y [N, Cout, OH, OW]) or 'nhwc'
   * (x [N, H, W, C], y [N, OH, OW, Cout]; dx like x, dy like y). Weights are [Cout, C/groups, KH, KW]
   * in both.
   */
  layout?: Conv2dLayout;
}

/** The shape of y (and dy) for conv2dParams' result, in its layout. */
export function conv2dOutputShape(p: { n: number; cOut: number; outH: number; outW: number; layout: Conv2dLayout }): number[] {
  return p.layout === 'nhwc' ? [p.n, p.outH, p.outW, p.cOut] : [p.n, p.cOut, p.outH, p.outW];
}

/** Shape arithmetic and FLOPs of a convolution, without running it. */
export function conv2dParams(inputShape: readonly number[], weightShape: readonly number[], options?: Conv2dOptions): NativeConvParams & { layout: Conv2dLayout; outH: number; outW: number; flops: number } {
  const o = plainObject(options, 'options') as Conv2dOptions;
  const layout = o.layout === undefined ? 'nchw' : oneOf(o.layout, 'options.layout', ['nchw', 'nhwc'] as const);
  const [strideH, strideW] = pair(o.stride, 'options.stride', 1, 1);
  const [padH, padW] = pair(o.padding, 'options.padding', 0, 0);
  const [dilationH, dilationW] = pair(o.dilation, 'options.dilation', 1, 1);
  const groups = o.groups === undefined ? 1 : integer(o.groups, 'options.groups', 1, 2 ** 31 - 1);
  const [n, cIn, h, w] = layout === 'nhwc' ? [inputShape[0], inputShape[3], inputShape[1], inputShape[2]] : inputShape;
  const [cOut, cPerGroup, kh, kw] = weightShape;
  if (cIn % groups !== 0) throw rangeError('options.groups', `a divisor of the ${cIn} input channels`, groups);
  if (cOut % groups !== 0) throw rangeError('options.groups', `a divisor of the ${cOut} output channels`, groups);
  if (cPerGroup !== cIn / groups) {
    const where = layout === 'nhwc' ? ` for x [N, H, W, C] of shape [${inputShape}] (layout 'nhwc')` : '';
    throw rangeError('w', `${cIn / groups} input channels per group (shape [${cOut}, ${cIn / groups}, kh, kw])${where}`, `shape [${weightShape}]`, true);
  }
  const outH = Math.floor((h + 2 * padH - dilationH * (kh - 1) - 1) / strideH) + 1;
  const outW = Math.floor((w + 2 * padW - dilationW * (kw - 1) - 1) / strideW) + 1;
  if (outH < 1 || outW < 1) throw rangeError('w', `a kernel that fits the padded ${h}x${w} input`, `a ${kh}x${kw} kernel with dilation ${dilationH}x${dilationW}`, true);
  const flops = 2 * n * cOut * outH * outW * cPerGroup * kh * kw;
  return { n, cIn, h, w, cOut, kh, kw, strideH, strideW, padH, padW, dilationH, dilationW, groups, layout, outH, outW, flops };
}

function plan(x: unknown, w: unknown, bias: unknown, options: unknown) {
  const X = checkTensor(x, 'x', ['float32'], 4);
  const packed = w instanceof PackedConv2dWeights ? w : null;
  const W = packed ? null : checkTensor(w, 'w', ['float32'], 4);
  const { out, ...convOptions } = plainObject(options, 'options') as Conv2dForwardOptions;
  if (packed && convOptions.groups !== undefined && convOptions.groups !== packed.groups) {
    throw rangeError('options.groups', `${packed.groups}, the groups the weights were packed for`, convOptions.groups);
  }
  if (packed && convOptions.layout !== undefined && convOptions.layout !== packed.layout) {
    throw rangeError('options.layout', `'${packed.layout}', the layout the weights were packed for`, convOptions.layout);
  }
  const p = conv2dParams(X.shape, packed ? packed.shape : W!.shape, packed ? { ...convOptions, groups: packed.groups, layout: packed.layout } : convOptions);
  let B: Tensor<'float32'> | null = null;
  if (bias !== undefined && bias !== null) {
    B = checkTensor(bias, 'bias', ['float32'], 1);
    if (B.shape[0] !== p.cOut) throw rangeError('bias', `shape [${p.cOut}]`, `shape [${B.shape}]`, true);
  }
  const shape = conv2dOutputShape(p);
  let y: Tensor<'float32'>;
  if (out !== undefined) {
    y = checkTensor(out, 'options.out', ['float32'], 4);
    if (!y.isContiguous || y.shape.some((d, i) => d !== shape[i])) throw rangeError('options.out', `a contiguous Tensor of shape [${shape}]`, `shape [${y.shape}]${y.isContiguous ? '' : ' (not contiguous)'}`, true);
  } else {
    y = Tensor.empty(shape, 'float32');
  }
  return { p, x: X.contiguousData(), w: W ? W.contiguousData() : null, packed: packed ? packed.data() : null, b: B ? B.contiguousData() : null, y };
}


/**
 * y = conv2d(x, w) + bias, x: [N, C, H, W] (or [N, H, W, C] with `layout: 'nhwc'`),
 * w: [Cout, C/groups, KH, KW] or weights packed once with `PackedConv2dWeights` (their groups and
 * layout apply; stride, padding and dilation come from options).
 */
export async function conv2d(x: Tensor<'float32'>, w: Tensor<'float32'> | PackedConv2dWeights, bias?: Tensor<'float32'> | null, options?: Conv2dForwardOptions): Promise<Tensor<'float32'>> {
  const q = plan(x, w, bias, options);
  if (q.p.flops < INLINE_FLOPS) {  // see INLINE_FLOPS
    if (q.packed) native.conv2dForwardPacked(false, q.p, q.x, q.packed, q.b, q.y.contiguousData());
    else native.conv2dForward(false, q.p, q.x, q.w!, q.b, q.y.contiguousData());
  } else if (q.packed) {
    await native.conv2dForwardPacked(true, q.p, q.x, q.packed, q.b, q.y.contiguousData());
  } else {
    await native.conv2dForward(true, q.p, q.x, q.w!, q.b, q.y.contiguousData());
  }
  return q.y;
}
export function conv2dSync(x: Tensor<'float32'>, w: Tensor<'float32'> | PackedConv2dWeights, bias?: Tensor<'float32'> | null, options?: Conv2dForwardOptions): Tensor<'float32'> {
  const q = plan(x, w, bias, options);
  if (q.packed) native.conv2dForwardPacked(false, q.p, q.x, q.packed, q.b, q.y.contiguousData());
  else native.conv2dForward(false, q.p, q.x, q.w!, q.b, q.y.contiguousData());
  return q.y;
}

const disposeSymbol: typeof Symbol.dispose = Symbol.dispose ?? (Symbol.for('nodejs.dispose') as typeof Symbol.dispose);

/**
 * Convolution weights reordered once into the layout the fastest forward kernel reads (on AVX-512:
 * 16 output channels per vector, for a direct convolution with no per-call repacking; pointwise
 * weights with few input channels also keep a plain copy for the implicit GEMM, faster over many
 * output pixels), for
 * inference with constant weights, as a runtime does with its initializers. Stride, padding and
 * dilation given here are the defaults of `forward`; the packing depends only on the weight
 * shape and groups, so `conv2d(x, packed, bias, options)` may use others.
 */
export class PackedConv2dWeights {
  /** [Cout, C/groups, KH, KW] of the weights packed. */
  readonly shape: readonly [number, number, number, number];
  readonly groups: number;
  /** The activation layout the weights were packed for (NHWC packs GEMM panels of the reordered weights). */
  readonly layout: Conv2dLayout;
  readonly options: Readonly<Conv2dOptions>;
  #data: Float32Array | null;

  constructor(weights: Tensor<'float32'>, options: Conv2dOptions = {}) {
    const W = checkTensor(weights, 'weights', ['float32'], 4);
    const o = plainObject(options, 'options') as Conv2dOptions;
    const [cOut, cPerGroup, kh, kw] = W.shape;
    const groups = o.groups === undefined ? 1 : integer(o.groups, 'options.groups', 1, 2 ** 31 - 1);
    const layout = o.layout === undefined ? 'nchw' : oneOf(o.layout, 'options.layout', ['nchw', 'nhwc'] as const);
    // A 1-pixel input is enough to validate the shape and groups (stride etc. are checked per call).
    const input = layout === 'nhwc' ? [1, kh, kw, cPerGroup * groups] : [1, cPerGroup * groups, kh, kw];
    const p = conv2dParams(input, W.shape, { ...o, padding: 0, stride: 1, dilation: 1, groups, layout });
    this.shape = [cOut, cPerGroup, kh, kw];
    this.groups = groups;
    this.layout = layout;
    this.options = Object.freeze({ stride: o.stride, padding: o.padding, dilation: o.dilation, groups, layout });
    const data = new Float32Array(native.conv2dPackedSize(p));
    native.conv2dPackWeights(false, p, W.contiguousData(), data);
    this.#data = data;
  }

  get disposed(): boolean {
    return this.#data === null;
  }

  /** @internal the packed buffer (throws once disposed). */
  data(): Float32Array {
    if (this.#data === null) throw typeError('w', 'live PackedConv2dWeights', 'disposed PackedConv2dWeights', true);
    return this.#data;
  }

  /** conv2d(x, this, bias) with the options given at packing. */
  async forward(x: Tensor<'float32'>, bias?: Tensor<'float32'> | null, options?: { out?: Tensor<'float32'> }): Promise<Tensor<'float32'>> {
    return conv2d(x, this, bias, { ...this.options, ...plainObject(options, 'options') });
  }
  forwardSync(x: Tensor<'float32'>, bias?: Tensor<'float32'> | null, options?: { out?: Tensor<'float32'> }): Tensor<'float32'> {
    return conv2dSync(x, this, bias, { ...this.options, ...plainObject(options, 'options') });
  }

  /** Frees the packed buffer; later calls throw a TypeError (calls in flight keep it alive). */
  dispose(): void {
    this.#data = null;
  }
  [disposeSymbol](): void {
    this.dispose();
  }
}

export interface Conv2dForwardOptions extends Conv2dOptions {
  /** Output [N, Cout, outH, outW] ([N, outH, outW, Cout] for NHWC), overwritten (reused buffers keep allocation out of timed loops). */
  out?: Tensor<'float32'>;
}

export interface Conv2dGradients {
  dx?: Tensor<'float32'>;
  dw?: Tensor<'float32'>;
  db?: Tensor<'float32'>;
}
export interface Conv2dBackwardOptions extends Conv2dOptions {
  /** Which gradients to compute (all by default). */
  input?: boolean;
  weight?: boolean;
  bias?: boolean;
}

function backwardPlan(x: unknown, w: unknown, dy: unknown, options: unknown) {
  const X = checkTensor(x, 'x', ['float32'], 4);
  const W = checkTensor(w, 'w', ['float32'], 4);
  const DY = checkTensor(dy, 'dy', ['float32'], 4);
  const o = plainObject(options, 'options') as Conv2dBackwardOptions;
  const p = conv2dParams(X.shape, W.shape, o);
  const expected = conv2dOutputShape(p);
  if (DY.shape.some((d, i) => d !== expected[i])) throw rangeError('dy', `shape [${expected}]${p.layout === 'nhwc' ? " (layout 'nhwc')" : ''}`, `shape [${DY.shape}]`, true);
  const want = (key: 'input' | 'weight' | 'bias') => (o[key] === undefined ? true : boolean(o[key], `options.${key}`));
  const grads: Conv2dGradients = {};
  if (want('input')) grads.dx = Tensor.zeros(X.shape, 'float32');
  if (want('weight')) grads.dw = Tensor.zeros(W.shape, 'float32');
  if (want('bias')) grads.db = Tensor.zeros([p.cOut], 'float32');
  return { p, x: X.contiguousData(), w: W.contiguousData(), dy: DY.contiguousData(), grads };
}

/** Gradients of conv2d with respect to its input, weights and bias. */
export async function conv2dBackward(x: Tensor<'float32'>, w: Tensor<'float32'>, dy: Tensor<'float32'>, options?: Conv2dBackwardOptions): Promise<Conv2dGradients> {
  const q = backwardPlan(x, w, dy, options);
  const { dx, dw, db } = q.grads;
  await Promise.all([
    dx ? native.conv2dBackwardData(true, q.p, q.dy, q.w, dx.data) : undefined,
    dw || db ? native.conv2dBackwardWeight(true, q.p, q.x, q.dy, dw ? dw.data : new Float32Array(q.w.length), db ? db.data : null) : undefined,
  ]);
  return q.grads;
}
export function conv2dBackwardSync(x: Tensor<'float32'>, w: Tensor<'float32'>, dy: Tensor<'float32'>, options?: Conv2dBackwardOptions): Conv2dGradients {
  const q = backwardPlan(x, w, dy, options);
  const { dx, dw, db } = q.grads;
  if (dx) native.conv2dBackwardData(false, q.p, q.dy, q.w, dx.data);
  if (dw || db) native.conv2dBackwardWeight(false, q.p, q.x, q.dy, dw ? dw.data : new Float32Array(q.w.length), db ? db.data : null);
  return q.grads;
}
