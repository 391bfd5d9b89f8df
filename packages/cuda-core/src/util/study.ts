// The utilization study (Kosaian & Phanishayee): every conv and linear layer of some CNNs at a
// range of batch sizes, timed on a device, with FLOP-based utilization = achieved FLOP/s ÷ peak
// beside NVML's utilization.gpu (which only says that some kernel ran during its sample period).
// Devices plug in through LayerRunner and NVML through UtilizationSource, so a CUDA runner and an
// NVML sampler need no change here.
import { performance } from 'node:perf_hooks';

import { conv2d } from '../conv.js';
import { cpuInfo } from '../device.js';
import { gemm } from '../gemm.js';
import { Tensor } from '../tensor.js';
import { integer, rangeError, typeError } from '../validate.js';
import { convOptions, layerBytes, layerFlops, layerIntensity, layerLabel, layerShapes, network, type Layer, type Network } from './networks.js';
import { cpuPeak, dtypeBytes, dtypes, type CpuPeak, type Dtype } from './peak.js';

/** A layer made ready to run at one batch size: inputs, weights and output allocated once. */
export interface PreparedLayer {
  run(): Promise<void> | void;
  dispose(): void;
}

export interface LayerRunner {
  /** What the numbers were measured on, e.g. "AMD EPYC (2 threads, avx512)". */
  device: string;
  /** Peak FLOP/s for a dtype; throws when the device does not support it. */
  peakFlops(dtype: Dtype): number;
  /** Memory bandwidth in bytes/s, for the roofline. */
  bandwidth?: number;
  prepare(layer: Layer, batch: number, dtype: Dtype): Promise<PreparedLayer>;
  /** Milliseconds of each of `repeats` runs, when the device times itself better than the host
   * clock does (CUDA events). Without it the study times `run()` with performance.now(). */
  time?(prepared: PreparedLayer, repeats: number): Promise<number[]>;
}

export interface UtilizationSample {
  /** Percent of the sample period during which a kernel ran (NVML utilization.gpu). */
  gpuUtilization: number;
}

/** A stream of NVML samples (an NvmlSampler is one); the caller starts and stops it. */
export interface UtilizationSource {
  on(event: 'sample', listener: (sample: UtilizationSample) => void): unknown;
  off(event: 'sample', listener: (sample: UtilizationSample) => void): unknown;
}

export interface StudyOptions {
  networks: readonly string[];
  runner: LayerRunner;
  /** Default 1, 2, 4, …, 256. */
  batches?: readonly number[];
  /** Timed runs per layer and batch (median reported); default 5. */
  repeats?: number;
  /** Untimed runs first (page faults, packing buffers, clocks); default 1. */
  warmup?: number;
  dtype?: Dtype;
  nvml?: UtilizationSource;
  /** With nvml: keep running a layer at least this long so samples land in its window; default 500. */
  nvmlWindowMs?: number;
  /** Only layers whose name is listed. */
  layers?: readonly string[];
  /** Only the first N distinct layers of each network. */
  maxLayers?: number;
  /** Start no new layer run after this many ms; the rest is listed as skipped. */
  budgetMs?: number;
  onResult?: (result: LayerResult) => void;
}

export interface LayerResult {
  network: string;
  layer: string;
  label: string;
  kind: Layer['kind'];
  /** Layers of the network with this shape; network totals count each `count` times. */
  count: number;
  batch: number;
  /** Median ms of one run. */
  ms: number;
  runs: number;
  flops: number;
  bytes: number;
  intensity: number;
  flopsPerSec: number;
  /** Achieved FLOP/s ÷ peak FLOP/s. */
  utilization: number;
  /** Mean NVML utilization.gpu (0–1) over the timed runs; null without NVML or with no sample. */
  nvmlUtilization: number | null;
}

export interface NetworkSummary {
  network: string;
  title: string;
  batch: number;
  /** Whether every selected layer was measured (a budget can cut a network short). */
  complete: boolean;
  /** Σ count × ms over the measured layers. */
  ms: number;
  flops: number;
  flopsPerSec: number;
  utilization: number;
  /** Time-weighted mean of the layers' NVML utilization; null when any is null. */
  nvmlUtilization: number | null;
}

export interface StudyResult {
  device: string;
  dtype: Dtype;
  peakFlops: number;
  bandwidth: number | null;
  repeats: number;
  batches: number[];
  layers: LayerResult[];
  networks: NetworkSummary[];
  skipped: { network: string; layer: string; batch: number }[];
}

export const defaultBatches = [1, 2, 4, 8, 16, 32, 64, 128, 256];

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function hostTimes(prepared: PreparedLayer, repeats: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await prepared.run();
    times.push(performance.now() - t);
  }
  return times;
}

/** Validated batch sizes: positive integers. */
export function checkBatches(batches: unknown): number[] {
  if (!Array.isArray(batches) || batches.length === 0) throw typeError('batches', 'a non-empty array of batch sizes', batches);
  return batches.map((b, i) => integer(b, `batches[${i}]`, 1, 1 << 16));
}

function selectLayers(net: Network, names: readonly string[] | undefined, maxLayers: number | undefined): Layer[] {
  let layers = net.layers;
  if (names) layers = layers.filter((l) => names.includes(l.name));
  return maxLayers === undefined ? layers : layers.slice(0, maxLayers);
}

async function measureLayer(o: Required<Pick<StudyOptions, 'runner' | 'repeats' | 'warmup' | 'dtype' | 'nvmlWindowMs'>> & { nvml?: UtilizationSource }, layer: Layer, batch: number) {
  const prepared = await o.runner.prepare(layer, batch, o.dtype);
  const samples: number[] = [];
  const listener = (s: UtilizationSample) => samples.push(s.gpuUtilization);
  try {
    for (let i = 0; i < o.warmup; i++) await prepared.run();
    o.nvml?.on('sample', listener);
    const times: number[] = [];
    const start = performance.now();
    do {
      times.push(...(o.runner.time ? await o.runner.time(prepared, o.repeats) : await hostTimes(prepared, o.repeats)));
    } while (o.nvml && performance.now() - start < o.nvmlWindowMs);
    return { ms: median(times), runs: times.length, nvml: samples.length ? samples.reduce((a, b) => a + b, 0) / samples.length / 100 : null };
  } finally {
    o.nvml?.off('sample', listener);
    prepared.dispose();
  }
}

/** Runs every selected layer of every network at each batch size and summarises utilization. */
export async function runStudy(options: StudyOptions): Promise<StudyResult> {
  const { runner, nvml, onResult } = options;
  if (!runner || typeof runner.prepare !== 'function' || typeof runner.peakFlops !== 'function') throw typeError('options.runner', 'a LayerRunner', runner);
  const nets = options.networks.map((n) => network(n));
  const batches = checkBatches(options.batches ?? defaultBatches);
  const repeats = integer(options.repeats ?? 5, 'options.repeats', 1, 1e6);
  const warmup = integer(options.warmup ?? 1, 'options.warmup', 0, 1e6);
  const dtype = options.dtype ?? 'fp32';
  if (!dtypes.includes(dtype)) throw rangeError('options.dtype', `one of ${dtypes.join(', ')}`, dtype);
  const maxLayers = options.maxLayers === undefined ? undefined : integer(options.maxLayers, 'options.maxLayers', 1);
  const budgetMs = options.budgetMs ?? Infinity;
  const peak = runner.peakFlops(dtype);
  const bytesPer = dtypeBytes[dtype];
  const cfg = { runner, repeats, warmup, dtype, nvml, nvmlWindowMs: options.nvmlWindowMs ?? 500 };

  const result: StudyResult = { device: runner.device, dtype, peakFlops: peak, bandwidth: runner.bandwidth ?? null, repeats, batches, layers: [], networks: [], skipped: [] };
  const started = performance.now();
  for (const net of nets) {
    const layers = selectLayers(net, options.layers, maxLayers);
    if (layers.length === 0) throw rangeError('options.layers', `names of ${net.name} layers`, options.layers?.join(', '));
    for (const batch of batches) {
      const done: LayerResult[] = [];
      for (const layer of layers) {
        if (performance.now() - started > budgetMs) {
          result.skipped.push({ network: net.name, layer: layer.name, batch });
          continue;
        }
        const m = await measureLayer(cfg, layer, batch);
        const flops = layerFlops(layer, batch), flopsPerSec = flops / (m.ms / 1e3);
        const r: LayerResult = {
          network: net.name, layer: layer.name, label: layerLabel(layer), kind: layer.kind, count: layer.count, batch,
          ms: m.ms, runs: m.runs, flops, bytes: layerBytes(layer, batch, bytesPer), intensity: layerIntensity(layer, batch, bytesPer),
          flopsPerSec, utilization: flopsPerSec / peak, nvmlUtilization: m.nvml,
        };
        done.push(r);
        result.layers.push(r);
        onResult?.(r);
      }
      if (done.length) result.networks.push(summarise(net, batch, done, layers.length, peak));
    }
  }
  return result;
}

function summarise(net: Network, batch: number, done: LayerResult[], selected: number, peak: number): NetworkSummary {
  const ms = done.reduce((s, r) => s + r.count * r.ms, 0);
  const flops = done.reduce((s, r) => s + r.count * r.flops, 0);
  const flopsPerSec = flops / (ms / 1e3);
  const nvml = done.every((r) => r.nvmlUtilization !== null) ? done.reduce((s, r) => s + r.count * r.ms * (r.nvmlUtilization as number), 0) / ms : null;
  return { network: net.name, title: net.title, batch, complete: done.length === selected, ms, flops, flopsPerSec, utilization: flopsPerSec / peak, nvmlUtilization: nvml };
}

/** The result with utilization recomputed against another peak (a later, better measurement). */
export function withPeak(result: StudyResult, peakFlops: number): StudyResult {
  return {
    ...result,
    peakFlops,
    layers: result.layers.map((l) => ({ ...l, utilization: l.flopsPerSec / peakFlops })),
    networks: result.networks.map((n) => ({ ...n, utilization: n.flopsPerSec / peakFlops })),
  };
}

/**
 * The CPU runner: NCHW float32 conv2d (groups included) and gemm for linear layers, with inputs,
 * weights and the output allocated in prepare() so that allocation is not timed. Its peak is the
 * measured sgemm rate unless `peak` says otherwise.
 */
export async function createCpuRunner(options: { peak?: CpuPeak } = {}): Promise<LayerRunner & { peak: CpuPeak }> {
  const peak = options.peak ?? (await cpuPeak());
  const info = cpuInfo();
  return {
    device: `${info.brand} (${peak.threads} threads, ${info.activeIsa})`,
    peak,
    bandwidth: peak.bandwidth,
    peakFlops(dtype: Dtype) {
      if (dtype !== 'fp32') throw rangeError('dtype', 'fp32 (the CPU kernels are float32)', dtype);
      return peak.peakFlops;
    },
    async prepare(layer: Layer, batch: number) {
      const { input, weight, output } = layerShapes(layer, batch);
      const x = Tensor.random(input, 1), w = Tensor.random(weight, 2), out = Tensor.zeros(output, 'float32');
      const dispose = () => [x, w, out].forEach((t) => t.dispose());
      if (layer.kind === 'linear') return { run: async () => void (await gemm(x, w, { out })), dispose };
      const opts = { ...convOptions(layer), out };
      return { run: async () => void (await conv2d(x, w, null, opts)), dispose };
    },
  };
}
