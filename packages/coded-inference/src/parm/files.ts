// Parity model files: ordinary nn model files (loadModel rebuilds and serves them) whose metadata
// also records the code under "kintsugi.parm": k, r, which parity row this model is, the
// coefficients and the encoder, plus the dataset and the deployed model it was trained against.
import { decodeModel, encodeModel, loadModelFile, type Module } from '@kintsugi/cuda-core/nn';
import { rename, writeFile } from 'node:fs/promises';

import { encoderNames, ParityCode, type CodeSpec } from './codes.js';
import { expected } from '../serving/protocol.js';
import { fromPredict, type ServingModel } from '../serving/model.js';
import { Tensor } from '@kintsugi/cuda-core';

export interface ParityMetadata extends CodeSpec {
  /** The parity row this model computes (0 ≤ parityIndex < r). */
  parityIndex: number;
  dataset?: string;
  /** The deployed model's file name and architecture name. */
  deployed?: string;
  architecture?: string;
  /** Best validation reconstruction accuracy, epochs and seconds of training. */
  validationAccuracy?: number;
  epochs?: number;
  bestEpoch?: number;
  trainSeconds?: number;
  /** How the parity model started: 'deployed' weights, 'random', or the file name of the parity model it continued. */
  init?: string;
  /** Weight of the decoded predictions' cross-entropy in the training loss (0: MSE only). */
  ceWeight?: number;
  /** Random-shift augmentation of the training images, in pixels (0: none). */
  shift?: number;
  /** Decay of the weights' moving average kept in training (0 or absent: none); the file holds the better of it and the live weights. */
  average?: number;
}

export const PARM_KEY = 'kintsugi.parm';

/** Checks and normalises a parsed "kintsugi.parm" value. */
export function checkParityMetadata(value: unknown, source = 'parity metadata'): ParityMetadata {
  const v = value as Partial<ParityMetadata> | null;
  if (!v || typeof v !== 'object') throw new TypeError(expected(source, 'an object with k, r, encoder, coefficients', value));
  if (!(encoderNames as readonly string[]).includes(v.encoder as string)) throw new RangeError(expected(`${source}.encoder`, encoderNames.join(' | '), v.encoder));
  const code = new ParityCode({ k: v.k as number, r: v.r as number, encoder: v.encoder, coefficients: v.coefficients, grid: v.grid, canvas: v.canvas });
  const t = v.parityIndex ?? 0;
  if (!Number.isInteger(t) || t < 0 || t >= code.r) throw new RangeError(expected(`${source}.parityIndex`, `an integer in [0, ${code.r - 1}]`, t));
  return { ...v, ...code.spec, parityIndex: t } as ParityMetadata;
}

/** Model-file bytes of a parity model; `extra` metadata (input normalisation…) is kept. */
export function encodeParityModel(model: Module, meta: ParityMetadata, extra: Record<string, string> = {}): Uint8Array {
  const m = checkParityMetadata(meta);
  return encodeModel(model, { ...extra, [PARM_KEY]: JSON.stringify(m) });
}

export async function saveParityModel(model: Module, path: string, meta: ParityMetadata, extra: Record<string, string> = {}): Promise<void> {
  const bytes = encodeParityModel(model, meta, extra);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

export interface LoadedParityModel {
  model: Module;
  parm: ParityMetadata;
  code: ParityCode;
  metadata: Record<string, string>;
}

function fromDecoded(loaded: { model: unknown; metadata: Record<string, string> }, source: string): LoadedParityModel {
  const text = loaded.metadata[PARM_KEY];
  if (typeof text !== 'string') throw new TypeError(expected(`${source} __metadata__["${PARM_KEY}"]`, 'the parity code (a file written by kintsugi parm train)', text));
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new TypeError(expected(`${source} __metadata__["${PARM_KEY}"]`, 'valid JSON', (err as Error).message, true));
  }
  const parm = checkParityMetadata(parsed, `${source} ${PARM_KEY}`);
  return { model: loaded.model as Module, parm, code: new ParityCode(parm), metadata: loaded.metadata };
}

export function decodeParityModel(bytes: Uint8Array, source = 'parity model file'): LoadedParityModel {
  const loaded = decodeModel(bytes, source);
  (loaded.model as Module).eval();
  return fromDecoded(loaded, source);
}

export async function loadParityModel(path: string): Promise<LoadedParityModel> {
  return fromDecoded(await loadModelFile(path), path);
}

/**
 * A ServingModel for any model file (deployed or parity): inputs are normalised rows of the
 * file's input shape ([1, 28, 28] for the shipped models; a full-canvas parity model's query
 * shape), outputs the logits.
 */
export async function servingModelFromFile(path: string, name: string): Promise<ServingModel> {
  const { model, metadata } = await loadModelFile(path);
  let shape = [1, 28, 28];
  let classes = 10;
  try {
    const i = JSON.parse(metadata['kintsugi.input'] ?? 'null') as { shape?: number[]; classes?: number } | null;
    if (i?.shape) shape = i.shape;
    if (i?.classes) classes = i.classes;
  } catch {
    // keep the defaults
  }
  if (metadata[PARM_KEY] !== undefined) shape = fromDecoded({ model, metadata }, path).code.queryShape(shape as [number, number, number]);
  const net = model as Module;
  return fromPredict({
    name,
    inputShape: shape,
    outputShape: [classes],
    predict: async (batch, n) => (await net.forward(new Tensor(batch, [n, ...shape]))).contiguousData() as Float32Array,
  });
}
