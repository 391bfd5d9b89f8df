// NVML sampling: the clear error without NVML, and the sampler against the mock library
// (native/build/libmock_nvml.so, loaded through KINTSUGI_NVML_LIBRARY): events, async iteration,
// summary statistics, stop/restart, argument checks, NVML failures, and the sampler's CPU cost.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

import { NvmlSampler, nvmlAvailable, nvmlDevices, type NvmlSample, type NvmlSummary } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const mock = resolve(here, '../../../native/build/libmock_nvml.so');
const dist = join(here, '..', 'dist', 'index.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Waits at least `ms`, then on until the run has `n` samples (at most 5 s): on a busy machine the
// sampler thread may be starved for a while, and the checks need a few samples.
async function runFor(s: NvmlSampler, ms: number, n: number) {
  await sleep(ms);
  for (const t0 = Date.now(); s.summary().count < n && Date.now() - t0 < 5000; ) await sleep(5);
}

// Reference statistics computed here, independently of the sampler's summary.
function reference(values: number[]) {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  const q = (p: number) => {
    const pos = (v.length - 1) * p, lo = Math.floor(pos);
    return lo + 1 < v.length ? v[lo] * (1 - (pos - lo)) + v[lo + 1] * (pos - lo) : v[lo];
  };
  return { count: v.length, mean: v.reduce((a, b) => a + b, 0) / v.length, min: v[0], max: v[v.length - 1], p50: q(0.5), p95: q(0.95) };
}

function expectStats(summary: NvmlSummary, samples: NvmlSample[]) {
  for (const f of ['gpuUtilization', 'memoryUtilization', 'memoryUsed', 'memoryTotal', 'smClockMHz', 'temperatureC'] as const) {
    const want = reference(samples.map((s) => s[f]));
    const got = summary.fields[f];
    expect(got.count, f).toBe(want.count);
    for (const k of ['mean', 'min', 'max', 'p50', 'p95'] as const) expect(got[k], `${f}.${k}`).toBeCloseTo(want[k], 6);
  }
}

describe('without NVML', () => {
  it('constructing a sampler throws "NVML not available" with a code (child process, KINTSUGI_NVML_LIBRARY unset)', (ctx) => {
    if (!existsSync(dist)) ctx.skip(true, 'packages/cuda-core/dist is not built (run the install)');
    const env = { ...process.env };
    delete env.KINTSUGI_NVML_LIBRARY;
    const code = `
      const out = { availability: k.nvmlAvailable() };
      try { new k.NvmlSampler(); out.constructed = true; } catch (e) { out.error = { name: e.name, message: e.message, code: e.code }; }
      try { k.nvmlDevices(); } catch (e) { out.devicesError = e.message; }
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import * as k from '${pathToFileURL(dist).href}'; ${code}`], { encoding: 'utf8', env });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    if (out.availability.available) ctx.skip(true, 'this machine has NVML');
    expect(out.availability.reason).toMatch(/^NVML not available: could not load libnvidia-ml\.so\.1 \(.+\)$/);
    expect(out.availability.library).toBe('libnvidia-ml.so.1');
    expect(out.constructed).toBeUndefined();
    expect(out.error.name).toBe('Error');
    expect(out.error.message).toMatch(/^NVML not available: could not load libnvidia-ml\.so\.1 \(.*cannot open shared object file.*\)$/);
    expect(out.error.code).toBe('KINTSUGI_UNSUPPORTED');
    expect(out.devicesError).toMatch(/NVML not available/);
  });

  // Runs before the mock is loaded in this process (a loaded library stays loaded).
  it('a library path that does not load gives the same error in this process', () => {
    const bad = '/nonexistent/libnvidia-ml.so.1';
    expect(nvmlAvailable(bad)).toMatchObject({ available: false, library: bad });
    let error: (Error & { code?: string }) | undefined;
    try {
      new NvmlSampler({ library: bad });
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(/^NVML not available: could not load \/nonexistent\/libnvidia-ml\.so\.1 \(/);
    expect(error?.code).toBe('KINTSUGI_UNSUPPORTED');
    expect(() => nvmlDevices(bad)).toThrow(/NVML not available/);
  });
});

describe.skipIf(!existsSync(mock))('with the mock NVML library', () => {
  const samplers: NvmlSampler[] = [];
  const make = (options: ConstructorParameters<typeof NvmlSampler>[0]) => {
    const s = new NvmlSampler(options);
    samplers.push(s);
    return s;
  };
  beforeAll(() => {
    process.env.KINTSUGI_NVML_LIBRARY = mock;  // read on every attempt until a library loads
  });
  afterEach(async () => {
    delete process.env.MOCK_NVML_FAIL_AFTER;
    for (const s of samplers.splice(0)) if (s.running) await s.stop().catch(() => undefined);
  });

  it('loads and lists the devices', () => {
    expect(nvmlAvailable()).toEqual({ available: true, reason: '', library: mock });
    const list = nvmlDevices();
    expect(list.map((d) => d.name)).toEqual(['Mock GPU 0', 'Mock GPU 1']);
    expect(list[1]).toEqual({ index: 1, name: 'Mock GPU 1', uuid: 'GPU-00000000-0000-0000-0000-000000000001', memoryTotal: 16 * 2 ** 30 });
    expect(make({ device: 'GPU-00000000-0000-0000-0000-000000000001' }).name).toBe('Mock GPU 1');
  });

  it('rejects invalid arguments with TypeError / RangeError and a code', () => {
    const cases: [unknown, ErrorConstructor, RegExp, string][] = [
      [{ intervalMs: 0 }, RangeError, /^Expected a finite number in \[1, 3600000\] for options.intervalMs but received 0$/, 'KINTSUGI_OUT_OF_RANGE'],
      [{ intervalMs: NaN }, RangeError, /for options.intervalMs but received NaN/, 'KINTSUGI_OUT_OF_RANGE'],
      [{ intervalMs: '10' }, TypeError, /^Expected a number for options.intervalMs but received "10"$/, 'KINTSUGI_INVALID_TYPE'],
      [{ device: -1 }, RangeError, /^Expected an integer in \[0, 2147483647\] for options.device but received -1$/, 'KINTSUGI_OUT_OF_RANGE'],
      [{ device: 2 }, RangeError, /^Expected a device index in \[0, 1\] for device but received 2$/, 'KINTSUGI_OUT_OF_RANGE'],
      [{ device: 1.5 }, TypeError, /Expected an integer for options.device but received 1.5/, 'KINTSUGI_INVALID_TYPE'],
      [{ device: 'GPU-unknown' }, RangeError, /Expected the UUID of an NVML device for device/, 'KINTSUGI_OUT_OF_RANGE'],
      [{ device: 'cuda:0' }, TypeError, /for options.device but received "cuda:0"/, 'KINTSUGI_INVALID_TYPE'],
      [{ bufferSize: 0 }, RangeError, /for options.bufferSize but received 0/, 'KINTSUGI_OUT_OF_RANGE'],
      [{ library: 5 }, TypeError, /for options.library but received 5/, 'KINTSUGI_INVALID_TYPE'],
      [[], TypeError, /^Expected an options object for options but received an array of length 0$/, 'KINTSUGI_INVALID_TYPE'],
    ];
    for (const [options, type, message, code] of cases) {
      let error: unknown;
      try {
        make(options as ConstructorParameters<typeof NvmlSampler>[0]);
      } catch (e) {
        error = e;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(type);
      expect((error as Error).message).toMatch(message);
      expect((error as { code?: string }).code).toBe(code);
    }
  });

  it('samples at 1 ms: events in order, deterministic values, NaN for an unsupported field, summary matches the samples', async () => {
    const s = make({ device: 1, intervalMs: 1 });
    const events: NvmlSample[] = [];
    s.on('sample', (x: NvmlSample) => events.push(x));
    const epoch0 = Date.now();
    s.start();
    expect(s.running).toBe(true);
    await runFor(s, 100, 3);
    const summary = await s.stop();
    expect(s.running).toBe(false);
    expect(summary.count).toBe(events.length);
    // ~100 ticks. A busy machine can starve the thread (skipped ticks count as late), never add ticks.
    expect(summary.count).toBeGreaterThanOrEqual(3);
    expect(summary.count + summary.lateTicks).toBeLessThanOrEqual(summary.durationMs + 2);
    expect(summary.drops).toBe(0);
    expect(summary.durationMs).toBeGreaterThanOrEqual(99);
    expect(summary.device).toBe('Mock GPU 1');
    expect(s.samples()).toEqual(events);
    for (let i = 1; i < events.length; ++i) {
      const [a, b] = [events[i - 1], events[i]];
      expect(b.timeMs).toBeGreaterThan(a.timeMs);
      expect(b.gpuUtilization).toBe((a.gpuUtilization + 1) % 101);  // the mock counts its reads
      expect(b.memoryUsed - a.memoryUsed).toBe(2 ** 20);
      // Absolute schedule: never earlier than the tick after the previous one minus jitter.
      expect(b.timeMs - events[0].timeMs).toBeGreaterThanOrEqual(i - 0.3);
    }
    for (const x of events) {
      expect(x.memoryUtilization).toBe(Math.floor(x.gpuUtilization / 2));
      expect(x).toMatchObject({ memoryTotal: 16 * 2 ** 30, smClockMHz: 1100, temperatureC: 41 });
      expect(x.powerW).toBeNaN();
      expect(x.epochMs).toBeGreaterThanOrEqual(epoch0 - 1);
      expect(x.epochMs).toBeLessThan(epoch0 + 60_000);
    }
    expectStats(summary, events);
    expect(summary.fields.powerW).toEqual({ count: 0, mean: NaN, min: NaN, max: NaN, p50: NaN, p95: NaN });
    expect(summary.fields.smClockMHz).toMatchObject({ min: 1100, max: 1100, mean: 1100, p95: 1100 });
    expect(summary.samplerCpuMs).toBeGreaterThan(0);
    expect(summary.cpuFraction).toBeCloseTo(summary.samplerCpuMs / summary.durationMs, 12);
    expect(summary.cpuFraction).toBeLessThan(0.5);
  });

  it('samples at 10 ms through the async iterator until stopped', async () => {
    const s = make({ intervalMs: 10 });
    s.start();
    const got: NvmlSample[] = [];
    for await (const x of s) {
      got.push(x);
      if (got.length === 5) void s.stop();  // delivers what is buffered, then the loop ends
    }
    expect(s.running).toBe(false);
    const summary = s.summary();
    expect(got.length).toBe(summary.count);
    expect(got.length).toBeGreaterThanOrEqual(5);
    expect(got.length + summary.lateTicks).toBeLessThanOrEqual(summary.durationMs / 10 + 2);
    const span = got[got.length - 1].timeMs - got[0].timeMs;
    expect(span).toBeGreaterThanOrEqual((got.length - 1) * 10 - 0.5);
    expect(span).toBeLessThanOrEqual((got.length - 1 + summary.lateTicks) * 10 + 40);  // + the last wake-up's delay
    expectStats(summary, got);
    // An iterator made while stopped ends at once.
    const it = s[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  it('an iterator left early detaches; the run goes on', async () => {
    const s = make({ intervalMs: 2 });
    s.start();
    let n = 0;
    for await (const x of s) {
      expect(x.temperatureC).toBe(40);
      if (++n === 3) break;
    }
    expect(s.running).toBe(true);
    await runFor(s, 20, 4);
    const summary = await s.stop();
    expect(summary.count).toBeGreaterThan(3);
  });

  it('stop is idempotent and a restart begins a fresh run', async () => {
    const s = make({ intervalMs: 1 });
    s.start();
    expect(() => s.start()).toThrow(expect.objectContaining({ code: 'KINTSUGI_UNSUPPORTED', message: expect.stringMatching(/already running/) }));
    await runFor(s, 30, 2);
    const first = await s.stop();
    const again = await s.stop();
    expect(again.count).toBe(first.count);
    expect(again.samplerCpuMs).toBe(first.samplerCpuMs);
    const last = s.samples().at(-1)!;
    s.start();
    await runFor(s, 30, 2);
    const second = await s.stop();
    expect(second.count).toBeGreaterThan(0);
    expect(second.count + second.lateTicks).toBeLessThanOrEqual(second.durationMs + 2);
    const samples = s.samples();
    expect(samples.length).toBe(second.count);
    expect(samples[0].timeMs).toBeGreaterThan(last.timeMs);
    expect(samples[0].gpuUtilization).toBe((last.gpuUtilization + 1) % 101);  // same NVML session, next read
  });

  it('a full native buffer drops the oldest samples and counts them', async () => {
    const s = make({ intervalMs: 1, bufferSize: 4 });
    s.start();
    // Hold the JS thread so the drain timer cannot run while the native thread keeps sampling;
    // again if the thread was starved meanwhile (summary() drains, so each try starts empty).
    for (let attempt = 0; attempt < 20 && s.summary().drops === 0; ++attempt) {
      const until = performance.now() + 50;
      while (performance.now() < until) {
        // busy
      }
    }
    const summary = await s.stop();
    expect(summary.drops).toBeGreaterThan(0);
    const got = s.samples();
    expect(got.length).toBe(summary.count);
    for (let i = 1; i < got.length; ++i) expect(got[i].timeMs).toBeGreaterThan(got[i - 1].timeMs);
  });

  it('an NVML failure ends the run: an error event, the iterator throws, stop() rejects with a code', async () => {
    process.env.MOCK_NVML_FAIL_AFTER = '0';  // every utilization read now fails
    const s = make({ intervalMs: 1 });
    const errors: Error[] = [];
    s.on('error', (e: Error) => errors.push(e));
    s.start();
    const iterated = (async () => {
      for await (const _ of s) {
        // no samples arrive
      }
    })();
    await expect(iterated).rejects.toThrow(/nvmlDeviceGetUtilizationRates failed: GPU is lost/);
    expect(s.running).toBe(false);
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error & { code?: string }).code).toBe('KINTSUGI_DEVICE_ERROR');
    await expect(s.stop()).rejects.toMatchObject({ code: 'KINTSUGI_DEVICE_ERROR', message: expect.stringMatching(/GPU is lost/) });
    delete process.env.MOCK_NVML_FAIL_AFTER;
    s.start();
    await runFor(s, 10, 1);
    expect((await s.stop()).count).toBeGreaterThan(0);
  });

  it('sampling at 100 Hz for 1 s costs under 1% of a core', async () => {
    const s = make({ intervalMs: 10 });
    s.start();
    await sleep(1000);
    const summary = await s.stop();
    expect(summary.count + summary.drops + summary.lateTicks).toBeGreaterThanOrEqual(50);  // ~100 ticks
    expect(summary.durationMs).toBeGreaterThanOrEqual(999);
    expect(summary.samplerCpuMs).toBeGreaterThan(0);
    expect(summary.cpuFraction, `sampler thread: ${summary.samplerCpuMs.toFixed(3)} ms CPU in ${summary.durationMs.toFixed(0)} ms`).toBeLessThan(0.01);
  });
});
