// Losses return the mean loss over the batch and its gradient with respect to the prediction, so a
// training step is `const { loss, grad } = crossEntropy(logits, y); await model.backward(grad)`.
// Sums run in float64: a batch mean of float32 terms otherwise drifts in the last digits.
import { checkTensor, Tensor } from '../tensor.js';
import { rangeError, typeError } from '../validate.js';

export interface LossResult {
  /** Mean loss over the batch. */
  loss: number;
  /** d(loss)/d(prediction), same shape as the prediction. */
  grad: Tensor<'float32'>;
}

export type Labels = Int32Array | Uint8Array | readonly number[];

function labelsOf(labels: unknown, n: number, classes: number): ArrayLike<number> {
  if (!(labels instanceof Int32Array || labels instanceof Uint8Array || Array.isArray(labels))) {
    throw typeError('labels', 'an Int32Array, Uint8Array or array of class indices', labels);
  }
  const l = labels as ArrayLike<number>;
  if (l.length !== n) throw rangeError('labels', `${n} labels (one per row)`, l.length, true);
  for (let i = 0; i < n; i++) {
    const v = l[i];
    if (!Number.isInteger(v) || v < 0 || v >= classes) throw rangeError(`labels[${i}]`, `a class index in [0, ${classes - 1}]`, v);
  }
  return l;
}

/** log-softmax of each row of logits [N, C], in float64. */
export function logSoftmax(logits: Tensor<'float32'>): Float64Array {
  const X = checkTensor(logits, 'logits', ['float32'], 2);
  const [n, c] = X.shape;
  const x = X.contiguousData();
  const out = new Float64Array(n * c);
  for (let r = 0; r < n; r++) {
    const o = r * c;
    let max = -Infinity;
    for (let j = 0; j < c; j++) max = Math.max(max, x[o + j]);
    let sum = 0;
    for (let j = 0; j < c; j++) sum += Math.exp(x[o + j] - max);
    const lse = max + Math.log(sum);
    for (let j = 0; j < c; j++) out[o + j] = x[o + j] - lse;
  }
  return out;
}

/** Cross-entropy of logits [N, C] against class indices: mean of −log softmax(x)[label]. */
export function crossEntropy(logits: Tensor<'float32'>, labels: Labels): LossResult {
  const X = checkTensor(logits, 'logits', ['float32'], 2);
  const [n, c] = X.shape;
  if (n === 0) throw rangeError('logits', 'at least one row', `shape [${X.shape}]`, true);
  const l = labelsOf(labels, n, c);
  const lsm = logSoftmax(X);
  const grad = Tensor.zeros([n, c], 'float32');
  let loss = 0;
  // d/dx of the mean loss is (softmax − onehot) / N.
  for (let r = 0; r < n; r++) {
    const o = r * c;
    loss -= lsm[o + l[r]];
    for (let j = 0; j < c; j++) grad.data[o + j] = Math.exp(lsm[o + j]) / n;
    grad.data[o + l[r]] -= 1 / n;
  }
  return { loss: loss / n, grad };
}

function pairOf(pred: unknown, target: unknown): { p: Float32Array; t: Float32Array; shape: readonly number[] } {
  const P = checkTensor(pred, 'prediction', ['float32']);
  const T = checkTensor(target, 'target', ['float32']);
  if (P.ndim !== T.ndim || P.shape.some((d, i) => d !== T.shape[i])) {
    throw rangeError('target', `shape [${P.shape}] (the prediction's)`, `shape [${T.shape}]`, true);
  }
  if (P.size === 0) throw rangeError('prediction', 'at least one element', `shape [${P.shape}]`, true);
  return { p: P.contiguousData(), t: T.contiguousData(), shape: P.shape };
}

/** Mean squared error over all elements. */
export function mse(pred: Tensor<'float32'>, target: Tensor<'float32'>): LossResult {
  const { p, t, shape } = pairOf(pred, target);
  const n = p.length;
  const grad = Tensor.zeros(shape, 'float32');
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const d = p[i] - t[i];
    loss += d * d;
    grad.data[i] = (2 * d) / n;
  }
  return { loss: loss / n, grad };
}

/**
 * Binary cross-entropy on logits (targets in [0, 1]), mean over all elements. Uses
 * max(x,0) − x·t + log(1 + e^−|x|), which never exponentiates a large positive number.
 */
export function binaryCrossEntropyWithLogits(logits: Tensor<'float32'>, target: Tensor<'float32'>): LossResult {
  const { p, t, shape } = pairOf(logits, target);
  const n = p.length;
  const grad = Tensor.zeros(shape, 'float32');
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const x = p[i], y = t[i];
    if (!(y >= 0 && y <= 1)) throw rangeError(`target[${i}]`, 'a value in [0, 1]', y);
    loss += Math.max(x, 0) - x * y + Math.log1p(Math.exp(-Math.abs(x)));
    const sig = x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
    grad.data[i] = (sig - y) / n;
  }
  return { loss: loss / n, grad };
}

/** Index of the largest logit in each row. */
export function argmax(logits: Tensor<'float32'>): Int32Array {
  const X = checkTensor(logits, 'logits', ['float32'], 2);
  const [n, c] = X.shape;
  const x = X.contiguousData();
  const out = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let j = 1; j < c; j++) if (x[r * c + j] > x[r * c + best]) best = j;
    out[r] = best;
  }
  return out;
}

/** Rows whose argmax equals the label. */
export function countCorrect(logits: Tensor<'float32'>, labels: ArrayLike<number>): number {
  const pred = argmax(logits);
  let correct = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) correct++;
  return correct;
}
