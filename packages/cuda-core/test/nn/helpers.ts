// Finite-difference gradient checking for explicit-backward layers. The scalar checked is
// f = Σ forward(x) ⊙ R for a fixed random R, so backward(R) must equal ∂f/∂x and ∂f/∂θ. Outputs are
// float32 (the kernels' precision); f and the differences are accumulated in float64.
import { Tensor } from '../../src/index.js';
import { Layer, Module, ReLU, Rng, type Parameter } from '../../src/nn/index.js';

export function randomTensor(shape: number[], seed: number, lo = -1, hi = 1): Tensor<'float32'> {
  const t = Tensor.zeros(shape, 'float32');
  const rng = new Rng(seed);
  for (let i = 0; i < t.size; i++) t.data[i] = rng.uniform(lo, hi);
  return t;
}

/** Values bounded away from 0 (|v| ≥ gap): ReLU kinks then sit outside any ±eps perturbation. */
export function awayFromZero(shape: number[], seed: number, gap = 0.1): Tensor<'float32'> {
  const t = randomTensor(shape, seed);
  for (let i = 0; i < t.size; i++) t.data[i] = Math.sign(t.data[i] || 1) * (gap + Math.abs(t.data[i]));
  return t;
}

/** A random permutation of evenly spaced values: max-pool ties can't flip under ±eps. */
export function distinct(shape: number[], seed: number, step = 0.05): Tensor<'float32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  const order = new Rng(seed).shuffle(Int32Array.from({ length: n }, (_, i) => i));
  return new Tensor(Float32Array.from(order, (v) => (v - n / 2) * step), shape);
}

export function dot64(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export interface GradCheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Check at most this many coordinates per tensor (evenly spread). */
  maxChecks?: number;
  seed?: number;
}

function relusOf(layer: Layer): ReLU[] {
  const own = layer instanceof ReLU ? [layer] : [];
  return own.concat(...layer.children().map(([, c]) => relusOf(c)));
}

/**
 * Records the sign pattern of every ReLU input during forwards, so a probe whose ±eps
 * perturbation moves some ReLU input across 0 (where f has a kink and central differences are
 * meaningless) can be recognised and skipped rather than reported as a mismatch.
 */
function watchKinks(module: Module): { reset(): void; pattern(): string } {
  let bits: number[] = [];
  for (const relu of relusOf(module)) {
    const forward = relu.forward.bind(relu);
    relu.forward = async (x) => {
      const d = x.contiguousData();
      let h = 0;
      for (let i = 0; i < d.length; i++) h = (Math.imul(h, 31) + (d[i] > 0 ? 1 : 0) + i) | 0;
      bits.push(h);
      return forward(x);
    };
  }
  return { reset: () => { bits = []; }, pattern: () => bits.join(',') };
}

export interface Mismatch {
  what: string;
  index: number;
  analytic: number;
  numeric: number;
}

function indicesToCheck(n: number, max: number): number[] {
  if (n <= max) return Array.from({ length: n }, (_, i) => i);
  const step = n / max;
  return Array.from({ length: max }, (_, i) => Math.floor(i * step + step / 2));
}

/**
 * Compares backward with central differences for the input and every parameter; returns the
 * mismatches (|analytic − numeric| > atol + rtol·|numeric|) so a failing test prints them.
 */
export async function gradCheck(module: Module, x: Tensor<'float32'>, options: GradCheckOptions = {}): Promise<{ mismatches: Mismatch[]; checked: number; skipped: number }> {
  const { eps = 1e-2, atol = 1e-3, rtol = 1e-2, maxChecks = 40, seed = 99 } = options;
  const kinks = watchKinks(module);
  const y0 = await module.forward(x);
  const r = randomTensor([...y0.shape], seed);
  const f = async () => dot64((await module.forward(x)).contiguousData(), r.data);

  module.zeroGrad();
  await module.forward(x);
  const dx = (await module.backward(r)).contiguousData().slice();
  const analyticParams = module.parameters().map((p) => p.grad.data.slice());

  const mismatches: Mismatch[] = [];
  let checked = 0, skipped = 0;
  const probe = async (what: string, data: Float32Array, analytic: Float32Array) => {
    for (const i of indicesToCheck(data.length, maxChecks)) {
      const saved = data[i];
      kinks.reset();
      data[i] = saved + eps;
      const fp = await f();
      const patternPlus = kinks.pattern();
      kinks.reset();
      data[i] = saved - eps;
      const fm = await f();
      data[i] = saved;
      if (kinks.pattern() !== patternPlus) {
        skipped++;
        continue;
      }
      const numeric = (fp - fm) / (2 * eps);
      checked++;
      if (Math.abs(analytic[i] - numeric) > atol + rtol * Math.abs(numeric)) mismatches.push({ what, index: i, analytic: analytic[i], numeric });
    }
  };
  await probe('input', x.data, dx);
  const params: Parameter[] = module.parameters();
  for (let k = 0; k < params.length; k++) await probe(`param ${k} [${params[k].value.shape}]`, params[k].value.data, analyticParams[k]);
  return { mismatches, checked, skipped };
}
