// What a worker serves: a small model interface, independent of any nn library, so that the
// serving layer can be tested with a linear model and any network plugs in with a two-line adapter:
//
//   import { fromPredict } from '@kintsugi/coded-inference';
//   export default fromPredict({ name: 'mlp', inputShape: [784], outputShape: [10], predict: (x, n) => net.forward(x, n) });
import { pathToFileURL } from 'node:url';
import { basename, isAbsolute, resolve } from 'node:path';

import { gemm, Tensor } from '@kintsugi/cuda-core';

import { expected } from './protocol.js';

export interface ServingModel {
  /** The name under which the model is served (/v2/models/{name}). */
  readonly name: string;
  /** The shape of one sample (no batch dimension). */
  readonly inputShape: readonly number[];
  /** The shape of one prediction (no batch dimension). */
  readonly outputShape: readonly number[];
  /** Predictions for `rows` samples stored row-major in `batch`; resolves with rows × outputSize values. */
  predict(batch: Float32Array, rows: number): Promise<Float32Array>;
}

function checkShape(shape: unknown, name: string): number[] {
  if (!Array.isArray(shape) || shape.length === 0 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new TypeError(expected(name, 'a non-empty array of positive integers', shape));
  }
  return shape.slice() as number[];
}

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * Adapts any batch prediction function. The output length is checked on every call, because a
 * wrong-sized prediction would otherwise corrupt a decode silently.
 */
export function fromPredict(options: { name: string; inputShape: readonly number[]; outputShape: readonly number[]; predict: (batch: Float32Array, rows: number) => Promise<Float32Array> | Float32Array }): ServingModel {
  if (typeof options?.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(options.name)) throw new TypeError(expected('options.name', 'a model name of letters, digits, _ . -', options?.name));
  if (typeof options.predict !== 'function') throw new TypeError(expected('options.predict', 'a function', options.predict));
  const inputShape = checkShape(options.inputShape, 'options.inputShape');
  const outputShape = checkShape(options.outputShape, 'options.outputShape');
  const outSize = sizeOf(outputShape);
  const fn = options.predict;
  return {
    name: options.name,
    inputShape,
    outputShape,
    async predict(batch, rows) {
      const out = await fn(batch, rows);
      if (!(out instanceof Float32Array) || out.length !== rows * outSize) {
        throw new RangeError(expected(`the prediction of model '${options.name}'`, `a Float32Array of ${rows * outSize} values`, out instanceof Float32Array ? `${out.length} values` : typeof out, true));
      }
      return out;
    },
  };
}

/**
 * y = x · W with the native GEMM. Linear models are where ParM's decoding is exact (the parity
 * model is the model itself: F(X1 + X2) = F(X1) + F(X2)), which makes them the serving tests' oracle.
 */
export function linearModel(weights: Tensor<'float32'>, name = 'linear'): ServingModel {
  if (!(weights instanceof Tensor) || weights.dtype !== 'float32' || weights.ndim !== 2) throw new TypeError(expected('weights', 'a 2-D float32 Tensor', weights));
  const [inputs, outputs] = weights.shape;
  return fromPredict({
    name,
    inputShape: [inputs],
    outputShape: [outputs],
    predict: async (batch, rows) => (await gemm(Tensor.from(batch, [rows, inputs]), weights)).contiguousData(),
  });
}

/**
 * A model from a command-line spec, so worker processes can be told what to serve:
 *   linear:in=20,out=10,seed=1[,name=linear]   seeded random weights (same spec → same model)
 *   module:/path/to/model.js[#export]          a module exporting a ServingModel or a (async) factory
 *   file:/path/to/model.safetensors[#name]     an nn model file (deployed or parity model), served as `name`
 *                                              (default: the file's stem)
 */
export async function loadModelSpec(spec: string): Promise<ServingModel> {
  if (typeof spec !== 'string') throw new TypeError(expected('model spec', "'linear:in=…,out=…', 'module:<path>' or 'file:<path>'", spec));
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const rest = colon < 0 ? '' : spec.slice(colon + 1);
  if (kind === 'linear') {
    const opts = Object.fromEntries(rest.split(',').filter(Boolean).map((kv) => kv.split('=') as [string, string]));
    const int = (key: string, fallback?: number) => {
      const v = opts[key] === undefined ? fallback : Number(opts[key]);
      if (v === undefined || !Number.isInteger(v) || v < 1) throw new RangeError(expected(`${key} in model spec '${spec}'`, 'a positive integer', opts[key] ?? 'nothing', true));
      return v;
    };
    const inputs = int('in'), outputs = int('out'), seed = int('seed', 1);
    return linearModel(Tensor.random([inputs, outputs], seed), opts.name ?? 'linear');
  }
  if (kind === 'module') {
    const [file, exportName = 'default'] = rest.split('#');
    if (!file) throw new RangeError(expected(`the path in model spec '${spec}'`, 'a module path', 'nothing', true));
    const mod = (await import(pathToFileURL(isAbsolute(file) ? file : resolve(file)).href)) as Record<string, unknown>;
    let value = mod[exportName];
    if (typeof value === 'function') value = await (value as () => unknown)();
    const m = value as ServingModel;
    if (!m || typeof m.predict !== 'function' || typeof m.name !== 'string') throw new TypeError(expected(`export '${exportName}' of ${file}`, 'a ServingModel or a function returning one', value));
    return m;
  }
  if (kind === 'file') {
    const [file, name = basename(file).replace(/\.[^.]*$/, '')] = rest.split('#');
    if (!file) throw new RangeError(expected(`the path in model spec '${spec}'`, 'a model file path', 'nothing', true));
    // Imported here: the parity-model code depends on this module, not the other way round.
    const { servingModelFromFile } = await import('../parm/files.js');
    return servingModelFromFile(isAbsolute(file) ? file : resolve(file), name);
  }
  throw new RangeError(expected('model spec', "'linear:in=…,out=…', 'module:<path>[#export]' or 'file:<path>[#name]'", spec));
}
