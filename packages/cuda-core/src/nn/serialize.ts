// Model files: one safetensors file holding every parameter and buffer by path (`0.weight`,
// `2.conv1.weight`, `2.bn1.runningMean`) and, in its __metadata__, the architecture as JSON
// ("kintsugi.config") so loadModel rebuilds the layers without the code that built them. Other
// packages (parity models, ABFT-protected layers) load a model trained once this way.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { Tensor } from '../tensor.js';
import { plainObject, rangeError, typeError } from '../validate.js';
import { layerFromConfig } from './layers.js';
import { Layer, Module, type LayerConfig } from './module.js';
import { decodeSafetensors, encodeSafetensors } from './safetensors.js';

export const MODEL_FORMAT = 'kintsugi-nn/1';

/** Copies tensors into the model's parameters and buffers; names and shapes must match exactly. */
export function loadStateDict(model: Layer, tensors: Map<string, Tensor>, source = 'state dict'): void {
  const state = model.stateDict();
  const missing = [...state.keys()].filter((k) => !tensors.has(k));
  const unexpected = [...tensors.keys()].filter((k) => !state.has(k));
  if (missing.length > 0) throw rangeError(`${source}`, `tensors ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''} for this architecture`, `a file without them (${missing.length} missing)`, true);
  if (unexpected.length > 0) throw rangeError(`${source}`, 'only tensors of this architecture', `unexpected ${unexpected.slice(0, 5).join(', ')}`, true);
  // Check every shape before copying any, so a bad file leaves the model untouched.
  for (const [name, target] of state) {
    const t = tensors.get(name)!;
    if (t.dtype !== 'float32') throw typeError(`${source} tensor "${name}"`, 'dtype float32', t.dtype, true);
    if (t.ndim !== target.ndim || t.shape.some((d, i) => d !== target.shape[i])) {
      throw rangeError(`${source} tensor "${name}"`, `shape [${target.shape}]`, `shape [${t.shape}]`, true);
    }
  }
  for (const [name, target] of state) target.data.set(tensors.get(name)!.contiguousData() as Float32Array);
}

/** The bytes of a model file (see saveModel). */
export function encodeModel(model: Layer, metadata: Record<string, string> = {}): Uint8Array {
  if (!(model instanceof Layer)) throw typeError('model', 'a Layer or Module', model);
  const meta = { ...plainObject(metadata, 'metadata') as Record<string, string>, 'kintsugi.format': MODEL_FORMAT, 'kintsugi.config': JSON.stringify(model.config()) };
  return encodeSafetensors(model.stateDict(), meta);
}

/** Writes parameters, buffers and architecture to `path` (written to a temp file, then renamed). */
export async function saveModel(model: Layer, path: string, metadata: Record<string, string> = {}): Promise<void> {
  if (typeof path !== 'string') throw typeError('path', 'a file path string', path);
  const bytes = encodeModel(model, metadata);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
}

export interface LoadedModel<T extends Layer = Layer> {
  model: T;
  /** The file's __metadata__ (kintsugi.config and whatever saveModel was given). */
  metadata: Record<string, string>;
  config: LayerConfig;
}

/** Rebuilds a model from the bytes of a model file. */
export function decodeModel(bytes: Uint8Array, name = 'model file'): LoadedModel {
  const { tensors, metadata } = decodeSafetensors(bytes, name);
  const text = metadata['kintsugi.config'];
  if (typeof text !== 'string') throw typeError(`${name} __metadata__["kintsugi.config"]`, 'the architecture JSON (a file written by saveModel)', text);
  let config: LayerConfig;
  try {
    config = JSON.parse(text) as LayerConfig;
  } catch (err) {
    throw typeError(`${name} __metadata__["kintsugi.config"]`, 'valid JSON', (err as Error).message, true);
  }
  const model = layerFromConfig(config);
  loadStateDict(model, tensors, name);
  return { model, metadata, config };
}

/** Loads a file written by saveModel with its metadata; the model is in eval mode. */
export async function loadModelFile(path: string): Promise<LoadedModel> {
  if (typeof path !== 'string') throw typeError('path', 'a file path string', path);
  const loaded = decodeModel(await readFile(path), path);
  loaded.model.eval();
  return loaded;
}

/** Loads a tensor-to-tensor model written by saveModel, rebuilt from its stored architecture, in eval mode. */
export async function loadModel(path: string): Promise<Module> {
  const { model } = await loadModelFile(path);
  if (!(model instanceof Module)) throw typeError(`${path} architecture`, 'a tensor-to-tensor model (use loadModelFile for other layers)', model);
  return model;
}

/** Loads only the weights of a model file into an existing model (shapes must match). */
export async function loadWeights(model: Layer, path: string): Promise<void> {
  if (typeof path !== 'string') throw typeError('path', 'a file path string', path);
  const { tensors } = decodeSafetensors(await readFile(path), path);
  loadStateDict(model, tensors, path);
}
