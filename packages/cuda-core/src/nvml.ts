// GPU utilization sampling through NVML. A native thread samples on a steady-clock schedule into a
// bounded ring buffer; this class drains it from a timer (every max(intervalMs, 10) ms), so the JS
// thread never waits on NVML, and turns the packed samples into events, an async iterator and a
// summary. Without NVML (no driver), construction throws an Error "NVML not available: ..." with
// code KINTSUGI_UNSUPPORTED; KINTSUGI_NVML_LIBRARY (or options.library) names another library.
import { EventEmitter } from 'node:events';

import { native, type NativeNvmlDevice, type NativeNvmlSampler } from './addon.js';
import { finiteNumber, integer, plainObject, typeError } from './validate.js';

export interface NvmlSample {
  /** Steady (monotonic) clock, ms: use for intervals. */
  timeMs: number;
  /** Wall clock, ms since the Unix epoch: use to line samples up with logs. */
  epochMs: number;
  /** NVML utilization.gpu: % of the last sample period in which a kernel was running. */
  gpuUtilization: number;
  /** NVML utilization.memory: % of the period in which device memory was read or written. */
  memoryUtilization: number;
  memoryUsed: number;  // bytes
  memoryTotal: number; // bytes
  smClockMHz: number;
  powerW: number;
  temperatureC: number;
}

/** The numeric fields summarised; a field the device does not report is NaN in every sample. */
export const nvmlFields = ['gpuUtilization', 'memoryUtilization', 'memoryUsed', 'memoryTotal', 'smClockMHz', 'powerW', 'temperatureC'] as const;
export type NvmlField = (typeof nvmlFields)[number];

export interface NvmlFieldStats {
  /** Samples with a value (NaN ones are left out); the statistics are NaN when 0. */
  count: number;
  mean: number;
  min: number;
  max: number;
  /** Percentiles with linear interpolation between the nearest ranks. */
  p50: number;
  p95: number;
}

export interface NvmlSummary {
  device: string;
  intervalMs: number;
  /** Samples delivered in this run (drops are not included). */
  count: number;
  /** Wall time of the run: start() to stop(), or to now while running. */
  durationMs: number;
  /** Samples overwritten in the native buffer before they were drained. */
  drops: number;
  /** Schedule ticks skipped because sampling fell behind by whole intervals. */
  lateTicks: number;
  /** CPU time of the native sampler thread in this run. */
  samplerCpuMs: number;
  /** samplerCpuMs / durationMs: the share of one core that sampling cost. */
  cpuFraction: number;
  running: boolean;
  fields: Record<NvmlField, NvmlFieldStats>;
}

export interface NvmlSamplerOptions {
  /** Device index (NVML's order) or UUID ("GPU-..."). Default 0. */
  device?: number | string;
  /** Sample period in ms, >= 1. Default 10. */
  intervalMs?: number;
  /** Samples the native buffer holds between drains; the oldest are dropped beyond it. Default: 10 s worth, at least 1024. */
  bufferSize?: number;
  /** Path of the NVML library (default: $KINTSUGI_NVML_LIBRARY, else libnvidia-ml.so.1). */
  library?: string;
}

export interface NvmlDevice {
  index: number;
  name: string;
  uuid: string;
  memoryTotal: number;
}

const FIELDS = native.nvmlSampleFields;  // doubles per packed sample
const FIELD_OFFSET: Record<NvmlField, number> = {
  gpuUtilization: 2, memoryUtilization: 3, memoryUsed: 4, memoryTotal: 5, smClockMHz: 6, powerW: 7, temperatureC: 8,
};

function optionalLibrary(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) throw typeError(name, 'a library path string', value);
  return value;
}

/** Whether NVML loads and initialises here, and why not. Never throws for a missing NVML. */
export function nvmlAvailable(library?: string): { available: boolean; reason: string; library: string } {
  return native.nvmlAvailable(optionalLibrary(library, 'library'));
}

/** The GPUs NVML reports. Throws "NVML not available" (code KINTSUGI_UNSUPPORTED) without NVML. */
export function nvmlDevices(library?: string): NvmlDevice[] {
  return native.nvmlDevices(optionalLibrary(library, 'library')).map((d: NativeNvmlDevice) => ({ ...d }));
}

function decode(d: Float64Array, i: number): NvmlSample {
  const o = i * FIELDS;
  return {
    timeMs: d[o], epochMs: d[o + 1], gpuUtilization: d[o + 2], memoryUtilization: d[o + 3], memoryUsed: d[o + 4], memoryTotal: d[o + 5],
    smClockMHz: d[o + 6], powerW: d[o + 7], temperatureC: d[o + 8],
  };
}

/** Statistics of the non-NaN values (sorted in place). */
export function fieldStats(values: number[]): NvmlFieldStats {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return { count: 0, mean: NaN, min: NaN, max: NaN, p50: NaN, p95: NaN };
  const at = (q: number) => {
    const pos = (n - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  };
  let sum = 0;
  for (const x of v) sum += x;
  return { count: n, mean: sum / n, min: v[0], max: v[n - 1], p50: at(0.5), p95: at(0.95) };
}

// One consumer of the async iterator: its queue, and the next() waiting on it.
interface IteratorState {
  queue: NvmlSample[];
  head: number;
  waiting?: { resolve: (r: IteratorResult<NvmlSample>) => void; reject: (e: Error) => void };
  done: boolean;
  error?: Error;
}

function deviceError(message: string): Error {
  return Object.assign(new Error(message), { code: 'KINTSUGI_DEVICE_ERROR' });
}

/**
 * Samples one GPU through NVML.
 *
 * ```ts
 * const sampler = new NvmlSampler({ device: 0, intervalMs: 10 });
 * sampler.on('sample', (s) => console.log(s.gpuUtilization));
 * sampler.start();
 * // ... run work ...
 * const summary = await sampler.stop(); // summary.fields.gpuUtilization.mean, summary.cpuFraction
 * ```
 *
 * Events: 'sample' (NvmlSample), 'error' (an NVML failure ended the run; emitted only when there is
 * a listener, and stop() rejects with it either way). The drain timer keeps the process alive only
 * while someone consumes samples ('sample' listeners or an async iterator). The samples of the
 * current run are kept (72 bytes each) for summary().
 */
export class NvmlSampler extends EventEmitter {
  readonly device: number | string;
  readonly intervalMs: number;
  readonly bufferSize: number;
  readonly name: string;
  #native: NativeNvmlSampler;
  #timer: NodeJS.Timeout | undefined;
  #chunks: Float64Array[] = [];
  #iterators = new Set<IteratorState>();
  #error: Error | undefined;

  constructor(options: NvmlSamplerOptions = {}) {
    super();
    const o = plainObject(options, 'options');
    const device = o.device ?? 0;
    if (typeof device === 'string') {
      if (!device.startsWith('GPU-')) throw typeError('options.device', 'a device index or a UUID starting with "GPU-"', device);
      this.device = device;
    } else {
      this.device = integer(device, 'options.device', 0, 2 ** 31 - 1);
    }
    this.intervalMs = finiteNumber(o.intervalMs ?? 10, 'options.intervalMs', 1, 3_600_000);
    this.bufferSize = integer(o.bufferSize ?? Math.max(1024, Math.ceil(10_000 / this.intervalMs)), 'options.bufferSize', 1, 2 ** 24);
    // Throws "NVML not available" / a RangeError for a device NVML does not have.
    this.#native = new native.NvmlSampler(this.device, this.bufferSize, optionalLibrary(o.library, 'options.library'));
    this.name = this.#native.name;
    this.on('newListener', (event) => {
      if (event === 'sample') this.#timer?.ref();
    });
    this.on('removeListener', (event) => {
      if (event === 'sample') this.#updateRef();
    });
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Starts a run (clearing the previous run's samples). Throws when already running. */
  start(): this {
    if (this.#timer) throw Object.assign(new Error('NvmlSampler is already running: await stop() first'), { code: 'KINTSUGI_UNSUPPORTED' });
    this.#native.start(this.intervalMs);
    this.#chunks = [];
    this.#error = undefined;
    this.#timer = setInterval(() => this.#poll(), Math.max(this.intervalMs, 10));
    this.#updateRef();
    return this;
  }

  /** Stops the run, delivers the last samples and resolves with the summary (rejects if NVML failed). */
  async stop(): Promise<NvmlSummary> {
    if (this.#timer) {
      this.#native.stop();  // joins the native thread: at most one NVML read away
      this.#end();
    }
    if (this.#error) throw this.#error;
    return this.summary();
  }

  /** Statistics of the current (or last) run's samples; drains pending samples first. */
  summary(): NvmlSummary {
    if (this.#timer) this.#poll();
    const st = this.#native.stats();
    const count = this.#chunks.reduce((n, c) => n + c.length / FIELDS, 0);
    const fields = {} as Record<NvmlField, NvmlFieldStats>;
    for (const f of nvmlFields) {
      const values = new Array<number>(count);
      let k = 0;
      for (const c of this.#chunks) for (let o = FIELD_OFFSET[f]; o < c.length; o += FIELDS) values[k++] = c[o];
      fields[f] = fieldStats(values);
    }
    return {
      device: this.name, intervalMs: this.intervalMs, count, durationMs: st.wallMs, drops: st.drops, lateTicks: st.lateTicks,
      samplerCpuMs: st.threadCpuMs, cpuFraction: st.wallMs > 0 ? st.threadCpuMs / st.wallMs : 0, running: this.running, fields,
    };
  }

  /** The current run's samples, in order. */
  samples(): NvmlSample[] {
    if (this.#timer) this.#poll();
    const out: NvmlSample[] = [];
    for (const c of this.#chunks) for (let i = 0; i < c.length / FIELDS; ++i) out.push(decode(c, i));
    return out;
  }

  /** Yields samples until the run stops (ends at once when not running); throws if NVML fails. */
  [Symbol.asyncIterator](): AsyncIterableIterator<NvmlSample> {
    const state: IteratorState = { queue: [], head: 0, done: !this.#timer };
    if (!state.done) this.#iterators.add(state);
    this.#updateRef();
    const close = () => {
      state.done = true;
      state.queue = [];
      state.head = 0;
      this.#iterators.delete(state);
      this.#updateRef();
    };
    const iterator: AsyncIterableIterator<NvmlSample> = {
      next: () => {
        if (state.head < state.queue.length) {
          const value = state.queue[state.head++];
          if (state.head > 1024 && state.head * 2 > state.queue.length) {  // keep the queue from growing
            state.queue = state.queue.slice(state.head);
            state.head = 0;
          }
          return Promise.resolve({ value, done: false });
        }
        if (state.error) {
          const error = state.error;
          state.error = undefined;
          return Promise.reject(error);
        }
        if (state.done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          state.waiting = { resolve, reject };
        });
      },
      return: () => {
        close();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  // Drains the native buffer and delivers; notices a run that NVML ended.
  #poll(): void {
    this.#deliver(this.#native.drain());
    if (!this.#native.running && this.#timer) {  // the native thread ended on its own: an NVML error
      this.#end();
      if (this.#error && this.listenerCount('error') > 0) this.emit('error', this.#error);
    }
  }

  // The run is over (stopped, or ended by NVML): last samples, timer off, iterators finished.
  #end(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#deliver(this.#native.drain());
    const { error } = this.#native.stats();
    if (error) this.#error = deviceError(error);
    for (const state of this.#iterators) {
      state.done = true;
      if (state.waiting) {
        const { resolve, reject } = state.waiting;
        state.waiting = undefined;
        if (this.#error) reject(this.#error);
        else resolve({ value: undefined, done: true });
      } else if (this.#error) {
        state.error = this.#error;
      }
    }
    this.#iterators.clear();
  }

  #deliver(data: Float64Array): void {
    if (data.length === 0) return;
    this.#chunks.push(data);
    // Sample objects are made only when someone consumes them.
    if (this.listenerCount('sample') === 0 && this.#iterators.size === 0) return;
    for (let i = 0; i < data.length / FIELDS; ++i) {
      const sample = decode(data, i);
      for (const state of this.#iterators) {
        if (state.waiting) {
          const { resolve } = state.waiting;
          state.waiting = undefined;
          resolve({ value: sample, done: false });
        } else {
          state.queue.push(sample);
        }
      }
      this.emit('sample', sample);
    }
  }

  // A sampler nobody consumes must not keep the process alive.
  #updateRef(): void {
    if (!this.#timer) return;
    if (this.listenerCount('sample') > 0 || this.#iterators.size > 0) this.#timer.ref();
    else this.#timer.unref();
  }
}
