// The load generator's statistics and arrival process, and the serve CLI's argument parsing.
import { describe, expect, it } from 'vitest';

import { parseServeArgs, quantile, runPoissonLoad } from '../../src/serving/index.js';

describe('Poisson load generator', () => {
  it('computes nearest-rank quantiles', () => {
    const v = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(quantile(v, 0.5)).toBe(500);
    expect(quantile(v, 0.99)).toBe(990);
    expect(quantile(v, 0.999)).toBe(999);
    expect(quantile([], 0.5)).toBeNaN();
  });

  it('sends every query at about the requested rate and counts reconstructions and errors', async () => {
    const sent: number[] = [];
    const r = await runPoissonLoad({
      rate: 2000, queries: 400, seed: 3,
      send: async (i) => {
        sent.push(i);
        if (i % 100 === 7) throw new Error(`boom ${i}`);
        return { reconstructed: i % 4 === 0 };
      },
    });
    expect(sent).toHaveLength(400);
    expect(r.errors).toBe(4);
    expect(r.firstError).toBe('boom 7');
    expect(r.reconstructed).toBe(100);
    // 400 arrivals at 2000/s take about 0.2 s; timers on a busy machine only make it slower.
    expect(r.durationS).toBeGreaterThan(0.1);
    expect(r.medianMs).toBeLessThanOrEqual(r.p99Ms);
    expect(r.p99Ms).toBeLessThanOrEqual(r.p999Ms);
    await expect(runPoissonLoad({ rate: 0, queries: 1, send: async () => ({ reconstructed: false }) })).rejects.toThrow('Expected a positive number of queries per second for options.rate but received 0');
  });
});

describe('serve command line', () => {
  it('builds k data and r parity worker specs, or remote ones from urls', () => {
    const o = parseServeArgs(['--model', 'linear:in=4,out=2', '--k', '3', '--r', '2', '--protocol', 'grpc', '--batch', '4']);
    expect(o.data).toEqual([1, 2, 3].map(() => ({ model: 'linear:in=4,out=2', protocol: 'grpc' })));
    expect(o.parity).toHaveLength(2);
    expect(o).toMatchObject({ k: 3, r: 2, batchSize: 4, host: '127.0.0.1', port: 0 });
    const remote = parseServeArgs(['--k', '1', '--data-url', 'grpc://127.0.0.1:8001=resnet']);
    expect(remote.data).toEqual([{ url: 'grpc://127.0.0.1:8001', model: 'resnet' }]);
    expect(remote.r).toBe(0);
    expect(() => parseServeArgs(['--modle', 'x'])).toThrow(/^Expected --model, .* for an option but received --modle$/);
  });
});
