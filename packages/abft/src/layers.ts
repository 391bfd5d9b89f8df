// Protected layers and the model wrapper. ProtectedLinear runs its GEMM under 'none' | 'global' |
// 'thread'; ProtectedConv2d uses FT-CNN checksums (the sum over output channels of a convolution
// is the convolution with the summed filter; a second, channel-weighted filter sum locates the
// channel); protectModel swaps the Linear and Conv2d layers of a Sequential model for protected
// ones and picks each layer's scheme by arithmetic intensity (optionally confirmed by timing).
import { conv2d, Tensor } from '@kintsugi/cuda-core';
import { Conv2d, Linear, Module, Sequential } from '@kintsugi/cuda-core/nn';

import { BOUND_SCALE, cudaIndex, deviceIndex, EPS32, protectedGemm, weightChecksums, type AbftEvent, type Scheme, type WeightChecksums } from './gemm.js';
import { confirmedScheme, cudaMachineBalance, intensityRule, machineBalance, timeSchemes, type LayerDecision, type MachineBalance } from './select.js';
import { bool, finite, oneOf, options as optionsOf, typeError } from './validate.js';

export interface LayerProtectionOptions {
  scheme?: Scheme;
  tolerance?: number;
  correct?: boolean;
  name?: string;
  /** 'cuda:N': run the layer's GEMM with the GPU schemes (inputs uploaded, outputs downloaded). */
  device?: string;
}

function layerOptions(options: unknown, fallbackName: string) {
  const o = optionsOf(options, 'options');
  return {
    scheme: o.scheme === undefined ? 'global' : oneOf(o.scheme, 'options.scheme', ['none', 'global', 'thread'] as const),
    tolerance: o.tolerance === undefined ? 1 : finite(o.tolerance, 'options.tolerance', Number.MIN_VALUE),
    correct: o.correct === undefined ? true : bool(o.correct, 'options.correct'),
    name: o.name === undefined ? fallbackName : String(o.name),
    device: o.device === undefined ? undefined : String(o.device),
  };
}

/** A Linear layer (y = x·Wᵀ + b) whose GEMM is checked; events go to `onEvent`. */
export class ProtectedLinear {
  readonly layer: Linear;
  scheme: Scheme;
  readonly tolerance: number;
  readonly correct: boolean;
  readonly name: string;
  /** 'cuda:N' when the GEMM runs on a GPU. */
  readonly device: string | undefined;
  /** Wᵀ (in x out), contiguous: the fused path streams it in place for small batches. */
  #wt: Tensor<'float32'> | null = null;
  #sumsT: WeightChecksums | null = null;  // of W used transposed ('global', 'none')
  #sumsWt: WeightChecksums | null = null; // of Wᵀ ('thread')
  onEvent: (e: AbftEvent) => void = () => {};

  constructor(layer: Linear, options?: LayerProtectionOptions) {
    if (!(layer instanceof Linear)) throw typeError('layer', 'a Linear layer', layer);
    this.layer = layer;
    const o = layerOptions(options, 'linear');
    this.scheme = o.scheme;
    this.tolerance = o.tolerance;
    this.correct = o.correct;
    this.name = o.name;
    this.device = o.device;
    if (o.device !== undefined) cudaIndex(o.device);  // CudaUnavailableError now rather than at the first forward
  }

  /** Recomputes the offline checksums (after the weights change). */
  refresh(): void {
    this.#wt = null;
    this.#sumsT = null;
    this.#sumsWt = null;
  }

  get gemmShape(): { n: number; k: number } {
    return { n: this.layer.outFeatures, k: this.layer.inFeatures };
  }

  async forward(x: Tensor<'float32'>, scheme: Scheme = this.scheme): Promise<Tensor<'float32'>> {
    const W = this.layer.weight.value;
    const bias = this.layer.bias ? this.layer.bias.value.contiguousData() : undefined;
    const X = x.ndim === 2 ? x : x.reshape([x.shape[0], x.size / x.shape[0]]);
    let r;
    if (this.device !== undefined) {
      r = await protectedGemm(X, W, { scheme, transB: true, bias, tolerance: this.tolerance, correct: this.correct, layer: this.name, device: this.device });
    } else if (scheme === 'thread') {
      if (!this.#wt) this.#wt = W.transpose().contiguous();
      if (!this.#sumsWt) this.#sumsWt = weightChecksums(this.#wt);
      r = await protectedGemm(X, this.#wt, { scheme, checksums: this.#sumsWt, bias, tolerance: this.tolerance, correct: this.correct, layer: this.name });
    } else {
      if (scheme === 'global' && !this.#sumsT) this.#sumsT = weightChecksums(W, { transB: true });
      r = await protectedGemm(X, W, {
        scheme, transB: true, checksums: this.#sumsT ?? undefined, bias, tolerance: this.tolerance, correct: this.correct, layer: this.name,
      });
    }
    for (const e of r.report.events) this.onEvent(e);
    return r.out;
  }
}

/** Conv2d event: the output element (n, channel, y, x) or a recomputed layer. */
export interface ConvEvent extends AbftEvent {
  index?: [number, number, number, number];
}

/**
 * FT-CNN checksums for a Conv2d: per output pixel, Σ_c y[c] − Σ bias = conv(x, Σ_c W[c]);
 * Σ_c (c+1)·y[c] locates the channel; the bound uses conv(|x|, Σ_c |W[c]|).
 */
export class ProtectedConv2d {
  readonly layer: Conv2d;
  scheme: Scheme;
  readonly tolerance: number;
  readonly correct: boolean;
  readonly name: string;
  #filters: { check: Tensor<'float32'>; magnitude: Tensor<'float32'>; all: Tensor<'float32'> } | null = null;
  onEvent: (e: ConvEvent) => void = () => {};

  constructor(layer: Conv2d, options?: LayerProtectionOptions) {
    if (!(layer instanceof Conv2d)) throw typeError('layer', 'a Conv2d layer', layer);
    this.layer = layer;
    const o = layerOptions(options, 'conv');
    // No fused conv path on the CPU: 'thread' runs the FT-CNN (global) checksums.
    this.scheme = o.scheme === 'thread' ? 'global' : o.scheme;
    this.tolerance = o.tolerance;
    this.correct = o.correct;
    this.name = o.name;
  }

  refresh(): void {
    this.#filters = null;
  }

  #checkFilters() {
    if (this.#filters) return this.#filters;
    const W = this.layer.weight.value.contiguous();
    const [cout, cin, kh, kw] = W.shape;
    const per = cin * kh * kw, w = W.data;
    const check = new Float32Array(2 * per), mag = new Float32Array(per);
    for (let c = 0; c < cout; c++) {
      for (let q = 0; q < per; q++) {
        const v = w[c * per + q];
        check[q] += v;
        check[per + q] += (c + 1) * v;
        mag[q] += Math.abs(v);
      }
    }
    const all = new Float32Array(3 * per);
    all.set(check);
    all.set(mag, 2 * per);
    this.#filters = {
      check: new Tensor<'float32'>(check, [2, cin, kh, kw]),
      magnitude: new Tensor<'float32'>(mag, [1, cin, kh, kw]),
      all: new Tensor<'float32'>(all, [3, cin, kh, kw]),
    };
    return this.#filters;
  }

  #exact(x: Tensor<'float32'>, n: number, c: number, oy: number, ox: number): number {
    const W = this.layer.weight.value;
    const [, cin, kh, kw] = W.shape;
    const [, , h, w] = x.shape;
    const s = this.layer.stride, p = this.layer.padding;
    let acc = this.layer.bias ? this.layer.bias.value.data[c] : 0;
    for (let ci = 0; ci < cin; ci++)
      for (let ky = 0; ky < kh; ky++)
        for (let kx = 0; kx < kw; kx++) {
          const iy = oy * s - p + ky, ix = ox * s - p + kx;
          if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
          acc += x.get(n, ci, iy, ix) * W.get(c, ci, ky, kx);
        }
    return Math.fround(acc);
  }

  async forward(x: Tensor<'float32'>, scheme: Scheme = this.scheme): Promise<Tensor<'float32'>> {
    const opts = { stride: this.layer.stride, padding: this.layer.padding };
    const bias = this.layer.bias ? this.layer.bias.value : null;
    const X = x.contiguous();
    const y = await conv2d(X, this.layer.weight.value, bias, opts);
    if (scheme === 'none') return y;
    const f = this.#checkFilters();
    const xd = X.data;
    let nonNegative = true;
    for (let i = 0; i < xd.length; i++) if (xd[i] < 0) { nonNegative = false; break; }
    let check: Tensor<'float32'>, magnitude: Tensor<'float32'>;
    if (nonNegative) {
      // |x| = x: one extra 3-channel convolution gives both checksums and the magnitude.
      const all = await conv2d(X, f.all, null, opts);
      const plane = all.shape[2] * all.shape[3];
      const n = all.shape[0];
      const c = new Float32Array(n * 2 * plane), m = new Float32Array(n * plane);
      for (let b = 0; b < n; b++) {
        c.set(all.data.subarray(b * 3 * plane, b * 3 * plane + 2 * plane), b * 2 * plane);
        m.set(all.data.subarray(b * 3 * plane + 2 * plane, (b + 1) * 3 * plane), b * plane);
      }
      check = new Tensor<'float32'>(c, [n, 2, all.shape[2], all.shape[3]]);
      magnitude = new Tensor<'float32'>(m, [n, 1, all.shape[2], all.shape[3]]);
    } else {
      const absX = new Float32Array(xd.length);
      for (let i = 0; i < xd.length; i++) absX[i] = Math.abs(xd[i]);
      [check, magnitude] = await Promise.all([conv2d(X, f.check, null, opts), conv2d(new Tensor<'float32'>(absX, X.shape), f.magnitude, null, opts)]);
    }
    const [n, cout, oh, ow] = y.shape;
    const plane = oh * ow, yd = y.data, cd = check.data, md = magnitude.data;
    const bd = bias ? bias.data : null;
    let bsum = 0, bwsum = 0, babs = 0;
    if (bd) for (let c = 0; c < cout; c++) { bsum += bd[c]; bwsum += (c + 1) * bd[c]; babs += Math.abs(bd[c]); }
    let recompute = false;
    const events: ConvEvent[] = [];
    for (let b = 0; b < n && !recompute; b++) {
      for (let q = 0; q < plane; q++) {
        let s1 = 0, s2 = 0;
        for (let c = 0; c < cout; c++) {
          const v = yd[(b * cout + c) * plane + q];
          s1 += v;
          s2 += (c + 1) * v;
        }
        const r1 = s1 - bsum - cd[b * 2 * plane + q];
        const bound = BOUND_SCALE * this.tolerance * EPS32 * (md[b * plane + q] + babs) + 1e-30;
        if (Math.abs(r1) <= bound) continue;
        const r2 = s2 - bwsum - cd[b * 2 * plane + plane + q];
        const ch = r2 / r1 - 1, c = Math.round(ch);
        const oy = Math.floor(q / ow), ox = q % ow;
        if (Number.isFinite(ch) && Math.abs(ch - c) < 0.05 && c >= 0 && c < cout) {
          const at = (b * cout + c) * plane + q;
          const before = yd[at];
          const after = this.correct ? this.#exact(X, b, c, oy, ox) : before;
          if (this.correct) yd[at] = after;
          events.push({ layer: this.name, scheme: 'global', row: b * plane + q, col: c, index: [b, c, oy, ox], residual: r1, bound, before, after, action: this.correct ? 'corrected' : 'detected' });
        } else {
          events.push({ layer: this.name, scheme: 'global', row: -1, col: -1, residual: r1, bound, action: this.correct ? 'recomputed' : 'detected' });
          recompute = this.correct;
          break;
        }
      }
    }
    if (recompute) {
      const again = await conv2d(X, this.layer.weight.value, bias, opts);
      yd.set(again.data);
    }
    for (const e of events) this.onEvent(e);
    return y;
  }
}

export interface ProtectModelOptions {
  /** 'auto' (default): intensity-guided per layer; or one scheme for every layer. */
  scheme?: Scheme | 'auto';
  /** A representative input: shapes for the intensity rule and the layer inputs for timing. */
  sample?: Tensor<'float32'>;
  /** Time global vs thread on each layer and keep the faster (default true with 'auto'). */
  confirm?: boolean;
  /** Given machine balance (default: measured once per process on the CPU, the datasheet table on a GPU). */
  balance?: { peakFlops: number; bandwidth: number };
  /** 'cpu' (default) or 'cuda:N': where the Linear layers run their GEMMs (Conv2d has no GPU path and stays on the CPU). */
  device?: string;
  tolerance?: number;
  correct?: boolean;
}

type Protected = ProtectedLinear | ProtectedConv2d;

/** A Sequential model with its Linear and Conv2d layers protected. */
export class ProtectedModel {
  readonly model: Sequential;
  readonly layers: (Module | Protected)[];
  readonly decisions: LayerDecision[] = [];
  readonly events: (AbftEvent | ConvEvent)[] = [];
  machine: MachineBalance | null = null;

  constructor(model: Sequential, layers: (Module | Protected)[]) {
    this.model = model;
    this.layers = layers;
  }

  async forward(x: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    this.model.eval();
    let h = x;
    for (const l of this.layers) h = await l.forward(h);
    return h;
  }

  /** Per layer: GEMM shape, device, intensity, balance and its source, the rule's pick, timings and the choice, with reasons. */
  explain(): LayerDecision[] {
    return this.decisions.map((d) => ({ ...d }));
  }

  clearEvents(): void {
    this.events.length = 0;
  }
}

/** Wraps `model` (a Sequential) so every Linear and Conv2d is checked. */
export async function protectModel(model: Sequential, options?: ProtectModelOptions): Promise<ProtectedModel> {
  if (!(model instanceof Sequential)) throw typeError('model', 'a Sequential model', model);
  const o = optionsOf(options, 'options');
  const scheme = o.scheme === undefined ? 'auto' : oneOf(o.scheme, 'options.scheme', ['auto', 'none', 'global', 'thread'] as const);
  const confirm = o.confirm === undefined ? scheme === 'auto' : bool(o.confirm, 'options.confirm');
  const tolerance = o.tolerance === undefined ? 1 : finite(o.tolerance, 'options.tolerance', Number.MIN_VALUE);
  const correct = o.correct === undefined ? true : bool(o.correct, 'options.correct');
  let sample: Tensor<'float32'> | undefined;
  if (o.sample !== undefined) {
    if (!(o.sample instanceof Tensor) || o.sample.dtype !== 'float32') throw typeError('options.sample', 'a float32 Tensor', o.sample);
    sample = o.sample as Tensor<'float32'>;
  }
  // Checked before anything else needs it: a bad name or a missing GPU is the error to report.
  const index = o.device === undefined ? null : deviceIndex(o.device);
  const device = index === null ? 'cpu' : `cuda:${index}`;
  if (scheme === 'auto' && !sample) throw typeError('options.sample', 'a sample input Tensor (scheme "auto" needs layer shapes)', undefined);
  const layers: (Module | Protected)[] = model.layers.map((l, i) => {
    const name = `${i}:${l.constructor.name}`;
    const base = { scheme: scheme === 'auto' ? 'global' : scheme, tolerance, correct, name } as const;
    if (l instanceof Linear) return new ProtectedLinear(l, index === null ? base : { ...base, device });
    if (l instanceof Conv2d) return new ProtectedConv2d(l, base);
    return l;
  });
  const pm = new ProtectedModel(model, layers);
  for (const l of layers) if (l instanceof ProtectedLinear || l instanceof ProtectedConv2d) l.onEvent = (e: AbftEvent | ConvEvent) => pm.events.push(e);
  const given = o.balance as { peakFlops: number; bandwidth: number } | undefined;
  // On a GPU the balance is the datasheet figure, the same one the GPU overhead table rules with.
  const machine = scheme !== 'auto' ? null : index === null ? await machineBalance(given) : cudaMachineBalance(index, 'fp32', given);
  pm.machine = machine;
  // ProtectedConv2d convolves with the CPU conv2d (its FT-CNN checks read the output on the host).
  const layerDevice = (l: Protected) => (l instanceof ProtectedLinear ? device : 'cpu');
  const cpuNote = (l: Protected) => (layerDevice(l) === device ? '' : `; ${l.layer.constructor.name} has no GPU path: runs on the CPU`);
  const fixed = (l: Protected, m = 0, n = 0, k = 0): LayerDecision => ({
    layer: l.name, type: l.layer.constructor.name, m, n, k, dtype: 'float32', device: layerDevice(l), intensity: NaN, balance: NaN, bound: 'compute',
    prior: l.scheme, scheme: l.scheme, reason: `fixed scheme '${l.scheme}'${cpuNote(l)}`,
  });
  if (!sample) {
    for (const l of layers) if (l instanceof ProtectedLinear || l instanceof ProtectedConv2d) pm.decisions.push(fixed(l));
    return pm;
  }
  model.eval();
  let h = sample;
  for (const l of layers) {
    if (l instanceof ProtectedLinear || l instanceof ProtectedConv2d) {
      const isLinear = l instanceof ProtectedLinear;
      let m: number, n: number, k: number;
      if (l instanceof ProtectedLinear) {
        [m, n, k] = [h.shape[0], l.layer.outFeatures, l.layer.inFeatures];
      } else {
        const W = l.layer.weight.value.shape;
        const oh = Math.floor((h.shape[2] + 2 * l.layer.padding - W[2]) / l.layer.stride) + 1;
        const ow = Math.floor((h.shape[3] + 2 * l.layer.padding - W[3]) / l.layer.stride) + 1;
        // GEMM form of the conv: Cout x (N·OH·OW) x (Cin·KH·KW).
        [m, n, k] = [W[0], h.shape[0] * oh * ow, W[1] * W[2] * W[3]];
      }
      // A GEMM has both schemes on the CPU and on a GPU (cudaGemmChecked); a conv only FT-CNN's.
      const available: Scheme[] = isLinear ? ['global', 'thread'] : ['global'];
      if (scheme !== 'auto') {
        pm.decisions.push(fixed(l, m, n, k));
      } else {
        const rule = intensityRule(m, n, k, machine!.balance, available);
        const d: LayerDecision = {
          layer: l.name, type: l.layer.constructor.name, m, n, k, dtype: 'float32', device: layerDevice(l), intensity: rule.intensity, balance: machine!.balance,
          source: machine!.source, bound: rule.bound, prior: rule.prior, scheme: rule.prior,
          reason: `AI ${rule.intensity.toFixed(1)} ${rule.bound === 'memory' ? '<' : '>='} balance ${machine!.balance.toFixed(1)} FLOP/B: ${rule.bound}-bound → ${rule.prior}`,
        };
        if (!isLinear) d.reason += ` (no fused conv path on the CPU: FT-CNN checksums)${cpuNote(l)}`;
        if (confirm && available.length > 1) {
          const input = h;
          const layer = l as ProtectedLinear;
          d.timings = await timeSchemes((s) => layer.forward(input, s), ['none', ...available]);
          // Keep the rule's pick unless timing shows another faster (by more than OVERTURN_MARGIN of the layer).
          const best = confirmedScheme(d.prior, d.timings, available);
          if (best !== d.prior) {
            d.scheme = best;
            d.reason += `; timing overturns it: ${best} ${d.timings[best]!.toFixed(3)} ms vs ${d.prior} ${d.timings[d.prior]!.toFixed(3)} ms`;
          } else {
            d.reason += `; timing confirms (${available.map((s) => `${s} ${d.timings![s]!.toFixed(3)} ms`).join(', ')})`;
          }
        }
        l.scheme = d.scheme;
        pm.decisions.push(d);
      }
      h = await l.forward(h, 'none');
    } else {
      h = await (l as Module).forward(h);
    }
  }
  return pm;
}
