// The training loop. Every layer call is awaited, so the JS thread serves timers and I/O between
// layers (progress output, a server in the same process) while the kernels run on the native pool.
import { Tensor } from '../tensor.js';
import type { Batch, DataLoader } from './data.js';
import { argmax, countCorrect, crossEntropy } from './losses.js';
import type { Module } from './module.js';
import type { LrScheduler, Optimizer } from './optim.js';

export interface StepStats {
  loss: number;
  correct: number;
  samples: number;
}

/** One optimisation step on a batch with cross-entropy; returns the batch's loss and hits. */
export async function trainStep(model: Module, optimizer: Optimizer, batch: Batch): Promise<StepStats> {
  optimizer.zeroGrad();
  const logits = await model.forward(batch.x);
  const { loss, grad } = crossEntropy(logits, batch.y);
  await model.backward(grad);
  optimizer.step();
  return { loss, correct: countCorrect(logits, batch.y), samples: batch.y.length };
}

export interface EpochProgress {
  epoch: number;
  batch: number;
  batches: number;
  samples: number;
  /** Running means over the epoch so far. */
  loss: number;
  accuracy: number;
  samplesPerSecond: number;
}

export interface EpochResult {
  loss: number;
  accuracy: number;
  samples: number;
  seconds: number;
  samplesPerSecond: number;
}

export interface TrainEpochOptions {
  epoch?: number;
  /** Stepped once per batch. */
  scheduler?: LrScheduler;
  onProgress?: (p: EpochProgress) => void;
  /** Stop after this many batches (quick runs and tests). */
  maxBatches?: number;
}

export async function trainEpoch(model: Module, loader: DataLoader, optimizer: Optimizer, options: TrainEpochOptions = {}): Promise<EpochResult> {
  const epoch = options.epoch ?? 0;
  const batches = Math.min(loader.batchesPerEpoch, options.maxBatches ?? Infinity);
  model.train();
  const start = performance.now();
  let loss = 0, correct = 0, samples = 0, b = 0;
  for (const batch of loader.batches(epoch)) {
    if (b >= batches) break;
    const s = await trainStep(model, optimizer, batch);
    options.scheduler?.step();
    loss += s.loss * s.samples;
    correct += s.correct;
    samples += s.samples;
    b++;
    const seconds = (performance.now() - start) / 1000;
    options.onProgress?.({ epoch, batch: b, batches, samples, loss: loss / samples, accuracy: correct / samples, samplesPerSecond: samples / seconds });
  }
  const seconds = (performance.now() - start) / 1000;
  return { loss: loss / Math.max(1, samples), accuracy: correct / Math.max(1, samples), samples, seconds, samplesPerSecond: samples / seconds };
}

/** Loss and accuracy in eval mode (BatchNorm running statistics, no dropout). */
export async function evaluate(model: Module, loader: DataLoader, options: { onProgress?: (done: number, total: number) => void } = {}): Promise<EpochResult> {
  model.eval();
  const start = performance.now();
  let loss = 0, correct = 0, samples = 0;
  for (const batch of loader.batches(0)) {
    const logits = await model.forward(batch.x);
    loss += crossEntropy(logits, batch.y).loss * batch.y.length;
    correct += countCorrect(logits, batch.y);
    samples += batch.y.length;
    options.onProgress?.(samples, loader.dataset.count);
  }
  const seconds = (performance.now() - start) / 1000;
  return { loss: loss / Math.max(1, samples), accuracy: correct / Math.max(1, samples), samples, seconds, samplesPerSecond: samples / seconds };
}

/** Class predictions for a batch of inputs (eval mode). */
export async function predict(model: Module, x: Tensor<'float32'>): Promise<Int32Array> {
  model.eval();
  return argmax(await model.forward(x));
}
