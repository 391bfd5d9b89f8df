// The study's SVG charts and the general line chart: well-formed standalone SVG with axes, labels
// and a legend.
import { describe, expect, it } from 'vitest';

import { lineChartSvg, rooflineSvg, utilizationSvg, type LayerResult, type StudyResult } from '../../src/index.js';

/** Throws unless every element is closed in order (a small XML well-formedness check). */
function checkBalanced(svg: string): number {
  const stack: string[] = [];
  let elements = 0;
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)([^>]*?)(\/?)>/g)) {
    const [, closing, name, attrs, selfClosing] = m;
    expect(attrs).not.toMatch(/[<&](?!amp;|lt;|gt;|quot;)/);
    if (closing) expect(stack.pop()).toBe(name);
    else if (!selfClosing) stack.push(name);
    elements++;
  }
  expect(stack).toEqual([]);
  return elements;
}

const layer = (network: string, name: string, batch: number, intensity: number, utilization: number, nvml: number | null): LayerResult => ({
  network, layer: name, label: name, kind: 'conv', count: 1, batch, ms: 1, runs: 3, flops: 1e9, bytes: 1e9 / intensity, intensity,
  flopsPerSec: utilization * 1e12, utilization, nvmlUtilization: nvml,
});

const study = (nvml: boolean): StudyResult => ({
  device: 'Test GPU <sm_80> & co', dtype: 'fp32', peakFlops: 1e12, bandwidth: 1e11, repeats: 3, batches: [1, 8], skipped: [],
  layers: [
    layer('resnet18', 'conv1', 1, 30, 0.4, nvml ? 0.9 : null),
    layer('resnet18', 'fc', 1, 0.5, 0.01, nvml ? 0.6 : null),
    layer('mobilenetv2', 'features.1.depthwise', 8, 2, 0.05, nvml ? 1 : null),
  ],
  networks: [],
});

describe('SVG charts', () => {
  it('draws a roofline with axes, the roof, one dot per layer and a legend', () => {
    const svg = rooflineSvg(study(false));
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(checkBalanced(svg)).toBeGreaterThan(20);
    for (const label of ['Arithmetic intensity (FLOP/byte)', 'Performance (FLOP/s)', 'roof: 1 TFLOP/s', 'bandwidth 100 GB/s', 'resnet18', 'mobilenetv2', '1 T', '100 G']) {
      expect(svg).toContain(`>${label}<`);
    }
    expect(svg).toContain('Test GPU &lt;sm_80&gt; &amp; co');
    expect(svg.match(/<circle /g)?.length).toBe(3 + 2); // layers + legend dots
    expect(svg).toContain('<polyline');
  });

  it('draws FLOP-based bars, with NVML bars beside them only when sampled', () => {
    const plain = utilizationSvg(study(false));
    checkBalanced(plain);
    expect(plain).toContain('>Utilization (% of peak)<');
    expect(plain).toContain('>100%<');
    expect(plain).toContain('>features.1.depthwise b8<');
    expect(plain).not.toContain('NVML');
    const withNvml = utilizationSvg(study(true));
    checkBalanced(withNvml);
    expect(withNvml).toContain('>NVML utilization.gpu<');
    expect(withNvml.match(/<title>[^<]*NVML/g)?.length).toBe(3);
    expect(withNvml.match(/<title>[^<]*FLOP-based/g)?.length).toBe(3);
  });

  it('draws a line chart on linear or log axes, leaving out what a log axis cannot show', () => {
    const series = [
      { label: 'a <fast> & lean', points: [[1, 1], [10, 0.1], [100, 0.001]] as [number, number][] },
      { label: 'b', points: [[2, 1], [50, 0.5], [200, 0], [300, Number.NaN]] as [number, number][] },
    ];
    const svg = lineChartSvg(series, { title: 'Tail', xLabel: 'latency (ms)', yLabel: '1 − CDF', logY: true });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    checkBalanced(svg);
    expect(svg).not.toMatch(/NaN|Infinity/);
    expect(svg).toContain('a &lt;fast&gt; &amp; lean');
    for (const label of ['>Tail<', '>latency (ms)<', '>1 − CDF<', '>1<', '>0.1<', '>0.001<']) expect(svg).toContain(label);
    const lines = [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1].split(' ').length);
    // b's y = 0 and NaN points cannot sit on a log axis: 3 and 2 points drawn.
    expect(lines).toEqual([3, 2]);
    const linear = lineChartSvg(series, { title: 'T', xLabel: 'x', yLabel: 'y', xRange: [0, 400], yRange: [0, 1], yTick: (v) => `${Math.round(100 * v)}%` });
    checkBalanced(linear);
    expect(linear).toContain('>40%<');
    expect([...linear.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1].split(' ').length)).toEqual([3, 3]);
  });
});
