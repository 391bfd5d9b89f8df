// The load generator's statistics, arrival process, records and time bound, and the serve CLI's
// argument parsing.
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

  it('records every query, scores predictions against labels, and stops sending at its time bound', async () => {
    const r = await runPoissonLoad({
      rate: 1000, queries: 100_000, maxDurationS: 0.3, seed: 5,
      label: (i) => (i % 3 === 0 ? undefined : i % 10),
      send: async (i) => {
        if (i % 97 === 5) throw new Error(i % 2 ? 'HTTP 504: too slow' : 'timeout: no answer within 10 ms');
        // Right for even queries: argmax at i % 10; wrong for odd ones.
        const output = new Float32Array(10);
        output[i % 2 === 0 ? i % 10 : (i + 1) % 10] = 1;
        return { reconstructed: i % 5 === 0, output };
      },
    });
    // About 300 arrivals in 0.3 s, far fewer than the 100,000 allowed.
    expect(r.queries).toBeGreaterThan(100);
    expect(r.queries).toBeLessThan(1000);
    expect(r.records).toHaveLength(r.queries);
    expect(r.records.map((x) => x.i)).toEqual(Array.from({ length: r.queries }, (_, i) => i));
    expect(r.answered + r.errors).toBe(r.queries);
    // Queries 5, 102, 199, … fail: odd ones with an HTTP 504, even ones with a timeout.
    expect(r.errorKinds['HTTP 504']).toBeGreaterThanOrEqual(1);
    expect(r.errorKinds['HTTP 504'] + (r.errorKinds.timeout ?? 0)).toBe(r.errors);
    const labelled = r.records.filter((x) => x.error === null && x.i % 3 !== 0);
    expect(r.labelled).toBe(labelled.length);
    expect(r.correct).toBe(labelled.filter((x) => x.i % 2 === 0).length);
    expect(r.reconstructedLabelled).toBe(labelled.filter((x) => x.i % 5 === 0).length);
    expect(r.p90Ms).toBeLessThanOrEqual(r.p99Ms);
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
