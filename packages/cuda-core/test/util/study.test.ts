// The utilization study: its arithmetic with a scripted runner and NVML source, and a tiny real
// run on the CPU.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';

import { conv2d, cpuPeak, createCpuRunner, layerFlops, network, runStudy, Tensor, withPeak, type Layer, type LayerRunner, type UtilizationSample } from '../../src/index.js';

/** Every layer "runs" at exactly half of a 1 TFLOP/s peak; NVML reads 80% and 60% while timed. */
function scriptedRunner(nvml: EventEmitter, prepareMs = 0) {
  const state = { disposed: 0, prepared: 0 };
  const runner: LayerRunner & { flops: Map<object, number> } = {
    device: 'scripted',
    flops: new Map(),
    peakFlops: (dtype) => (dtype === 'fp32' ? 1e12 : 4e12),
    bandwidth: 1e11,
    async prepare(layer: Layer, batch: number) {
      state.prepared++;
      if (prepareMs) await new Promise((r) => setTimeout(r, prepareMs));
      const p = { run: () => void nvml.emit('sample', { gpuUtilization: 0 } satisfies UtilizationSample), dispose: () => void state.disposed++ };
      runner.flops.set(p, layerFlops(layer, batch));
      return p;
    },
    async time(prepared, repeats) {
      nvml.emit('sample', { gpuUtilization: 80 });
      nvml.emit('sample', { gpuUtilization: 60 });
      const ms = ((runner.flops.get(prepared) as number) / 0.5e12) * 1e3;
      return Array.from({ length: repeats }, () => ms);
    },
  };
  return { runner, state };
}

describe('runStudy', () => {
  it('computes utilization, NVML means and network totals through the runner interfaces', async () => {
    const nvml = new EventEmitter();
    const { runner, state } = scriptedRunner(nvml);
    const r = await runStudy({ networks: ['resnet18'], batches: [1, 4], runner, repeats: 3, nvml, nvmlWindowMs: 0 });
    const layers = network('resnet18').layers;
    expect(r.layers.length).toBe(2 * layers.length);
    expect(state.disposed).toBe(state.prepared);
    for (const l of r.layers) {
      expect(l.utilization).toBeCloseTo(0.5, 12);
      expect(l.nvmlUtilization).toBeCloseTo(0.7, 12); // warm-up samples (0%) are not counted
      expect(l.runs).toBe(3);
    }
    expect(r.networks.map((n) => [n.batch, n.complete])).toEqual([[1, true], [4, true]]);
    const total = r.networks[1];
    expect(total.flops / 1e9).toBeCloseTo(4 * 3.628, 2);
    expect(total.ms).toBeCloseTo((total.flops / 0.5e12) * 1e3, 6);
    expect(total.utilization).toBeCloseTo(0.5, 12);
    expect(total.nvmlUtilization).toBeCloseTo(0.7, 12);
    expect(nvml.listenerCount('sample')).toBe(0);
    // Against a peak twice as high, every utilization halves.
    const rescaled = withPeak(r, 2e12);
    expect(rescaled.peakFlops).toBe(2e12);
    expect(rescaled.layers[0].utilization).toBeCloseTo(0.25, 12);
    expect(rescaled.networks[1].utilization).toBeCloseTo(0.25, 12);
    expect(r.layers[0].utilization).toBeCloseTo(0.5, 12);
  });

  it('without NVML reports null, honours layer filters, dtypes and a time budget', async () => {
    const { runner } = scriptedRunner(new EventEmitter(), 5);
    const r = await runStudy({ networks: ['vgg16', 'mobilenetv2'], batches: [2], runner, repeats: 1, maxLayers: 2, dtype: 'fp16' });
    expect(r.layers.map((l) => l.layer)).toEqual(['conv1_1', 'conv1_2', 'features.0', 'features.1.depthwise']);
    expect(r.layers.every((l) => l.nvmlUtilization === null && Math.abs(l.utilization - 0.125) < 1e-12)).toBe(true);
    expect(r.layers[0].bytes).toBe(2 * (2 * 3 * 224 * 224 + 64 * 3 * 9 + 2 * 64 * 224 * 224)); // fp16: 2 bytes
    const only = await runStudy({ networks: ['resnet18'], batches: [1], runner, repeats: 1, layers: ['fc'] });
    expect(only.layers.map((l) => l.layer)).toEqual(['fc']);
    const cut = await runStudy({ networks: ['resnet18'], batches: [1], runner, repeats: 1, budgetMs: 1 });
    expect(cut.layers.length).toBe(1);
    expect(cut.skipped.length).toBe(network('resnet18').layers.length - 1);
    expect(cut.networks[0].complete).toBe(false);
  });

  it('rejects bad options clearly', async () => {
    const { runner } = scriptedRunner(new EventEmitter());
    await expect(runStudy({ networks: ['resnet18'], batches: [0], runner })).rejects.toThrow('Expected an integer in [1, 65536] for batches[0] but received 0');
    await expect(runStudy({ networks: ['resnet18'], batches: [], runner })).rejects.toThrow(/non-empty array/);
    await expect(runStudy({ networks: ['lenet'], batches: [1], runner })).rejects.toThrow(/for network but received "lenet"/);
    await expect(runStudy({ networks: ['resnet18'], batches: [1], runner, layers: ['nope'] })).rejects.toThrow(/names of resnet18 layers/);
    await expect(runStudy({ networks: ['resnet18'], runner: {} as LayerRunner })).rejects.toThrow(/a LayerRunner/);
  });

  it('runs real layers on the CPU with sane numbers', async () => {
    const measured = await cpuPeak();
    // The larger of the measured and theoretical peaks: a busy moment during the short peak
    // measurement must not make a layer look faster than the machine.
    const peak = { ...measured, peakFlops: Math.max(measured.measuredFlops, measured.theoreticalFlops ?? 0) };
    const runner = await createCpuRunner({ peak });
    expect(() => runner.peakFlops('fp16')).toThrow(/fp32/);
    const r = await runStudy({ networks: ['resnet18', 'mobilenetv2'], batches: [1], runner, repeats: 1, maxLayers: 3 });
    expect(r.layers.length).toBe(6);
    expect(r.bandwidth).toBeGreaterThan(0);
    for (const l of r.layers) {
      expect(l.ms).toBeGreaterThan(0);
      expect(l.flopsPerSec).toBeGreaterThan(1e7);
      expect(l.utilization).toBeGreaterThan(0);
      expect(l.utilization).toBeLessThanOrEqual(1.5);
      expect(l.nvmlUtilization).toBeNull();
    }
    expect(r.networks.map((n) => n.network)).toEqual(['resnet18', 'mobilenetv2']);
  });
});

describe('conv2d out', () => {
  it('overwrites a reused output and checks its shape', async () => {
    const x = Tensor.random([2, 4, 9, 9], 1), w = Tensor.random([6, 2, 3, 3], 2);
    const fresh = await conv2d(x, w, null, { padding: 1, groups: 2 });
    const out = Tensor.random(fresh.shape, 3);
    expect(await conv2d(x, w, null, { padding: 1, groups: 2, out })).toBe(out);
    expect(Array.from(out.data)).toEqual(Array.from(fresh.data));
    await expect(conv2d(x, w, null, { padding: 1, groups: 2, out: Tensor.zeros([2, 6, 8, 8]) })).rejects.toThrow(/Expected a contiguous Tensor of shape \[2,6,9,9\] for options.out/);
  });
});
