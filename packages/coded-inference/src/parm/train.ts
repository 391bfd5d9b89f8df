// Parity-model training (ParM §3.3): the parity model has the deployed model's architecture and
// learns F_P(P) ≈ Σ_i c_i·F(X_i) by minimising the MSE between its output on the encoded query and
// the encoding of the deployed model's outputs (logits, no softmax), over random k-groups of training
// images, regrouped every epoch. The deployed outputs are computed once per image. The checkpoint
// kept is the one with the best reconstruction accuracy on 5,000 held-out training images (ties
// broken by the lower MSE).
import { Tensor } from '@kintsugi/cuda-core';
import { Adam, CosineLR, crossEntropy, layerFromConfig, manualSeed, mse, Rng, type ImageDataset, type Labels, type Module } from '@kintsugi/cuda-core/nn';

import { ParityCode } from './codes.js';
import { argmaxRows, forwardAll, gather, rows, shiftImages, type InputSpec } from './data.js';

export interface ParityTrainOptions {
  /** The deployed model (eval mode is used for its outputs). */
  deployed: Module;
  code: ParityCode;
  /** Which parity row this model serves (0 ≤ t < r). */
  parityIndex?: number;
  train: ImageDataset;
  input: InputSpec;
  epochs: number;
  /** Default: 64 for k = 2, 32 for k > 2 (the paper's). */
  batchSize?: number;
  lr?: number;
  weightDecay?: number;
  /** Cosine-decay the learning rate over the run (the paper keeps it constant over up to 500 epochs). */
  cosine?: boolean;
  /** Held-out training images for checkpoint selection (default 5,000). */
  validation?: number;
  /**
   * Seed of the held-out draw (default: seed). Rounds that go on training one model should share
   * it, or a later round scores its epochs on images an earlier one trained on.
   */
  validationSeed?: number;
  /**
   * Start from the deployed model's weights ('deployed'), a fresh seeded initialisation ('random'),
   * or the weights of a given model of the same architecture (an earlier parity model, to go on training it).
   */
  init?: 'deployed' | 'random' | Module;
  /**
   * Weight of a cross-entropy term on the decoded predictions: every member j of a group is decoded
   * as F(X_j) + (F_P(P) − target)/c_j, the prediction the decoder would return if X_j were lost, and
   * scored against X_j's label. 0 (default) trains on the MSE alone, as the paper does; the
   * evaluation scores exactly these decoded argmaxes, which MSE only approaches.
   */
  reconstructionWeight?: number;
  /**
   * Translate each training image by a random whole number of pixels in [−shift, shift] on each axis
   * (0, the default: no augmentation). The deployed outputs of shifted images are computed per batch,
   * so the target stays the encoding of what the deployed model says about the very images encoded.
   */
  shift?: number;
  /**
   * Keep an exponential moving average of the weights (and BatchNorm statistics) with this decay per
   * step (0, the default: none). Each epoch scores both the live weights and the average on the
   * held-out images and keeps the better (the average unless the live weights rank higher): the
   * average of late, low-learning-rate steps sits nearer the centre of the minimum that the noisy
   * steps wander around.
   */
  averageDecay?: number;
  seed?: number;
  /** Stop each epoch after this many batches (tests, quick runs). */
  maxBatches?: number;
  /** Train on only this many of the non-held-out images (tests, quick runs). */
  limit?: number;
  onEpoch?: (e: ParityEpoch) => void;
  onProgress?: (done: number, total: number, loss: number) => void;
}

export interface ParityEpoch {
  epoch: number;
  loss: number;
  /** Reconstruction accuracy on the held-out images (argmax of the decoded output vs the label). */
  validationAccuracy: number;
  validationLoss: number;
  /** Reconstruction accuracy of the averaged weights (when averageDecay is set). */
  averageAccuracy?: number;
  seconds: number;
  best: boolean;
}

export interface ParityTrainResult {
  model: Module;
  history: ParityEpoch[];
  bestEpoch: number;
  bestValidationAccuracy: number;
  seconds: number;
}

/** A fresh copy of the deployed architecture (same config), seeded or with the deployed weights. */
export function parityModelLike(deployed: Module, init: 'deployed' | 'random' | Module, seed = 1): Module {
  manualSeed(seed);
  const model = layerFromConfig(deployed.config()) as Module;
  if (init === 'random') return model;
  const src = (init === 'deployed' ? deployed : init).stateDict();
  for (const [name, t] of model.stateDict()) {
    const from = src.get(name);
    if (!from || from.data.length !== t.data.length) throw new RangeError(`The initial weights do not fit the deployed architecture: ${from ? `${name} has ${from.data.length} values, expected ${t.data.length}` : `${name} is missing`}`);
    t.data.set(from.data);
  }
  return model;
}

/**
 * A full-canvas concatenation query puts the k images side by side at full resolution. A model
 * that ends in global average pooling and a linear layer then pools the features of all
 * rows·cols tiles, which is the mean of the per-image pools (apart from the tiles' seams): its
 * logits are W·(Σ_i f_i)/tiles + b, where Σ_i c_i·F(X_i) with c = 1 is W·Σ_i f_i + k·b. Scaling
 * the deployed head's weights by the tile count and its bias by Σ_i c_i starts the parity model at
 * that sum (98.1% reconstructed on MNIST k = 2 before any training), so training only has to
 * correct the seams. Throws for an architecture the larger canvas does not fit.
 */
export function scaleHeadForCanvas(model: Module, code: ParityCode, t = 0): void {
  const layers = (model.config() as { layers?: { type: string }[] }).layers ?? [];
  const n = layers.length;
  if (n < 2 || layers[n - 1].type !== 'Linear' || layers[n - 2].type !== 'GlobalAvgPool2d') {
    throw new RangeError(`A full-canvas concatenation code needs a model that ends in GlobalAvgPool2d and Linear (fully convolutional, any input size); this one ends in ${layers.slice(-2).map((l) => l.type).join(', ') || 'nothing'}`);
  }
  if (code.canvas !== 'full') throw new RangeError(`Expected a full-canvas concatenation code for scaleHeadForCanvas but received a ${code.encoder} code${code.canvas ? ` with a '${code.canvas}' canvas` : ''}`);
  const [rows, cols] = code.grid!;
  const state = model.stateDict();
  const weight = state.get(`${n - 1}.weight`)!.data, bias = state.get(`${n - 1}.bias`)?.data;
  const tiles = rows * cols, sum = code.coefficients[t].reduce((a, b) => a + b, 0);
  for (let i = 0; i < weight.length; i++) weight[i] *= tiles;
  if (bias) for (let i = 0; i < bias.length; i++) bias[i] *= sum;
}

/**
 * Adds the decoded predictions' cross-entropy (mean over the batch, summed over members, times
 * `weight`) to the gradient of the parity output y. Member j decodes to F(X_j) + (y − target)/c_j,
 * so d/dy is crossEntropy's gradient at the decoded logits divided by c_j. Returns the loss term.
 */
export function addReconstructionLoss(y: Float32Array, target: Float32Array, outputs: Float32Array[], labels: Labels[], coefficients: readonly number[], classes: number, weight: number, grad: Float32Array): number {
  const n = y.length / classes;
  let loss = 0;
  for (let j = 0; j < outputs.length; j++) {
    const c = coefficients[j];
    const dec = new Float32Array(y.length);
    for (let i = 0; i < y.length; i++) dec[i] = outputs[j][i] + (y[i] - target[i]) / c;
    const ce = crossEntropy(new Tensor(dec, [n, classes]), labels[j]);
    loss += ce.loss;
    for (let i = 0; i < y.length; i++) grad[i] += (weight / c) * ce.grad.data[i];
  }
  return weight * loss;
}

/** Fixed k-groups of `indices` (the tail that does not fill a group is dropped). */
function groupsOf(indices: Int32Array, k: number): Int32Array[] {
  const g = Math.floor(indices.length / k);
  return Array.from({ length: k }, (_, m) => {
    const a = new Int32Array(g);
    for (let i = 0; i < g; i++) a[i] = indices[i * k + m];
    return a;
  });
}

/**
 * Degraded-mode accuracy of one parity model on given groups: for every group and every member j,
 * the prediction of j is decoded from the parity output and the other k − 1 deployed outputs.
 * Returns the accuracy against the labels and the MSE of the parity output against its target.
 */
export async function reconstructionAccuracy(parity: Module, code: ParityCode, t: number, members: Float32Array[], outputs: Float32Array[], labels: ArrayLike<number>[], shape: readonly [number, number, number], classes: number): Promise<{ accuracy: number; loss: number; correct: number; total: number }> {
  const encoded = await code.encode(members, t, shape);
  const out = await forwardAll(parity, encoded, code.queryShape(shape));
  const target = code.encodeOutputs(outputs, t);
  let loss = 0;
  for (let i = 0; i < out.length; i++) loss += (out[i] - target[i]) ** 2;
  let correct = 0, total = 0;
  const parityOutputs = Array.from({ length: code.r }, (_, i) => (i === t ? out : null));
  for (let j = 0; j < code.k; j++) {
    const [dec] = [(await code.decode(parityOutputs, outputs.map((o, i) => (i === j ? null : o))))[j]];
    const pred = argmaxRows(dec, classes);
    for (let g = 0; g < pred.length; g++) if (pred[g] === labels[j][g]) correct++;
    total += pred.length;
  }
  return { accuracy: correct / total, loss: loss / out.length, correct, total };
}

/** Held-out scores ranked by accuracy, then by MSE: a few thousand images often tie on accuracy. */
function ranksAbove(a: { accuracy: number; loss: number }, b: { accuracy: number; loss: number }): boolean {
  return a.accuracy > b.accuracy || (a.accuracy === b.accuracy && a.loss < b.loss);
}

/** avg ← decay·avg + (1 − decay)·x, elementwise. */
function blend(avg: Float32Array, x: Float32Array, decay: number): void {
  const w = 1 - decay;
  for (let i = 0; i < avg.length; i++) avg[i] += w * (x[i] - avg[i]);
}

export async function trainParityModel(o: ParityTrainOptions): Promise<ParityTrainResult> {
  const { code, deployed, train, input } = o;
  const t = o.parityIndex ?? 0;
  const k = code.k;
  const seed = o.seed ?? 1;
  const shape = input.shape, queryShape = code.queryShape(shape);
  const px = shape[0] * shape[1] * shape[2];
  const batchSize = o.batchSize ?? (k === 2 ? 64 : 32);
  const ceWeight = o.reconstructionWeight ?? 0;
  if (!(ceWeight >= 0 && Number.isFinite(ceWeight))) throw new RangeError(`Expected a finite reconstructionWeight ≥ 0 but received ${ceWeight}`);
  const shift = o.shift ?? 0;
  if (!(Number.isInteger(shift) && shift >= 0 && shift < Math.min(shape[1], shape[2]))) throw new RangeError(`Expected shift to be an integer in [0, ${Math.min(shape[1], shape[2]) - 1}] but received ${shift}`);
  const decay = o.averageDecay ?? 0;
  if (!(decay >= 0 && decay < 1)) throw new RangeError(`Expected averageDecay in [0, 1) but received ${decay}`);
  const blank = (0 - input.mean) / input.std;
  const start = performance.now();

  // Held-out split: a seeded permutation; the first `validation` images are held out.
  const perm = new Int32Array(train.count);
  for (let i = 0; i < perm.length; i++) perm[i] = i;
  new Rng(o.validationSeed ?? seed).shuffle(perm);
  const nVal = Math.min(o.validation ?? 5000, Math.floor(train.count / 2));
  const valIdx = perm.slice(0, nVal);
  let trainIdx = perm.slice(nVal);
  if (o.limit !== undefined) trainIdx = trainIdx.slice(0, o.limit);

  // Deployed outputs for every image used, once.
  const used = new Int32Array(valIdx.length + trainIdx.length);
  used.set(valIdx);
  used.set(trainIdx, valIdx.length);
  const usedX = gather(train, used, input);
  const usedY = await forwardAll(deployed, usedX, shape);
  const classes = usedY.length / used.length;
  // Position of each dataset index in `used`.
  const pos = new Int32Array(train.count).fill(-1);
  used.forEach((s, i) => (pos[s] = i));

  const valGroups = groupsOf(valIdx, k);
  const valMembers = valGroups.map((g) => rows(usedX, px, Array.from(g, (s) => pos[s])));
  const valOutputs = valGroups.map((g) => rows(usedY, classes, Array.from(g, (s) => pos[s])));
  const valLabels = valGroups.map((g) => Array.from(g, (s) => train.labels[s]));

  const model = parityModelLike(deployed, o.init ?? 'random', seed);
  if (code.canvas === 'full' && o.init === 'deployed') scaleHeadForCanvas(model, code, t);
  const opt = new Adam(model.parameters(), { lr: o.lr ?? 1e-3, weightDecay: o.weightDecay ?? 1e-5 });
  const groupsPerEpoch = Math.floor(trainIdx.length / k);
  const batchesPerEpoch = Math.min(Math.floor(groupsPerEpoch / batchSize), o.maxBatches ?? Infinity);
  const scheduler = o.cosine === false ? null : new CosineLR(opt, { totalSteps: o.epochs * batchesPerEpoch, warmupSteps: 0 });

  const history: ParityEpoch[] = [];
  let best = -1, bestLoss = Infinity, bestEpoch = -1;
  let bestState: Map<string, Float32Array> | null = null;
  const rng = new Rng(seed + 1);
  const shiftRng = new Rng(seed + 2);
  const state = [...model.stateDict()];
  const snapshot = () => new Map(state.map(([n, tt]) => [n, Float32Array.from(tt.data)]));
  const average = decay > 0 ? snapshot() : null;
  const offsets = (n: number) => Int32Array.from({ length: n }, () => Math.floor(shiftRng.next() * (2 * shift + 1)) - shift);
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const e0 = performance.now();
    model.train();
    const order = rng.shuffle(trainIdx.slice());
    let lossSum = 0;
    for (let b = 0; b < batchesPerEpoch; b++) {
      const members: Float32Array[] = [], outs: Float32Array[] = [], labels: number[][] = [];
      for (let m = 0; m < k; m++) {
        const ids = new Array<number>(batchSize);
        const ls = new Array<number>(batchSize);
        for (let i = 0; i < batchSize; i++) {
          const s = order[(b * batchSize + i) * k + m];
          ids[i] = pos[s];
          ls[i] = train.labels[s];
        }
        if (shift > 0) {
          const moved = shiftImages(rows(usedX, px, ids), shape, offsets(batchSize), offsets(batchSize), blank);
          members.push(moved);
          outs.push(await forwardAll(deployed, moved, shape, batchSize));
        } else {
          members.push(rows(usedX, px, ids));
          outs.push(rows(usedY, classes, ids));
        }
        labels.push(ls);
      }
      const x = await code.encode(members, t, shape);
      const target = code.encodeOutputs(outs, t);
      opt.zeroGrad();
      const y = await model.forward(new Tensor(x, [batchSize, ...queryShape]));
      let { loss, grad } = mse(y, new Tensor(target, [batchSize, classes]));
      if (ceWeight > 0) loss += addReconstructionLoss(y.contiguousData(), target, outs, labels, code.coefficients[t], classes, ceWeight, grad.data);
      await model.backward(grad);
      opt.step();
      scheduler?.step();
      if (average) for (const [n, tt] of state) blend(average.get(n)!, tt.data, decay);
      lossSum += loss;
      o.onProgress?.(b + 1, batchesPerEpoch, lossSum / (b + 1));
    }
    const v = await reconstructionAccuracy(model, code, t, valMembers, valOutputs, valLabels, shape, classes);
    // weights: null for the live ones (copied only if they are kept)
    let candidate = { accuracy: v.accuracy, loss: v.loss, weights: null as Map<string, Float32Array> | null };
    let averageAccuracy: number | undefined;
    if (average) {
      const live = snapshot();
      for (const [n, tt] of state) tt.data.set(average.get(n)!);
      const a = await reconstructionAccuracy(model, code, t, valMembers, valOutputs, valLabels, shape, classes);
      averageAccuracy = a.accuracy;
      if (!ranksAbove(candidate, a)) candidate = { accuracy: a.accuracy, loss: a.loss, weights: average };
      for (const [n, tt] of state) tt.data.set(live.get(n)!);
    }
    const isBest = ranksAbove(candidate, { accuracy: best, loss: bestLoss });
    if (isBest) {
      best = candidate.accuracy;
      bestLoss = candidate.loss;
      bestEpoch = epoch;
      bestState = candidate.weights ? new Map([...candidate.weights].map(([n, a]) => [n, Float32Array.from(a)])) : snapshot();
    }
    const rec: ParityEpoch = { epoch, loss: lossSum / Math.max(1, batchesPerEpoch), validationAccuracy: v.accuracy, validationLoss: v.loss, averageAccuracy, seconds: (performance.now() - e0) / 1000, best: isBest };
    history.push(rec);
    o.onEpoch?.(rec);
  }
  if (bestState) for (const [n, tt] of model.stateDict()) tt.data.set(bestState.get(n)!);
  model.eval();
  return { model, history, bestEpoch, bestValidationAccuracy: best, seconds: (performance.now() - start) / 1000 };
}
