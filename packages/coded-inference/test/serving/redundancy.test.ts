// The baselines ParM is measured against, on the same frontend: replication (every query on two
// workers) and hedged requests (a second copy once the first is late), with real worker processes
// and a linear model; and every mode, ParM included, when a worker dies mid-flight.
import { describe, expect, it } from 'vitest';

import { CodedFrontend, type CodedFrontendOptions, type Prediction } from '../../src/serving/index.js';
import { frontendFixture } from './helpers.js';

const SPEC = 'linear:in=8,out=4,seed=5';
// The baselines' queries wait in one queue for any free worker, as in the comparison bench.
const fixture = frontendFixture(SPEC, { rebalanceAfterMs: 0 });
const frontend = (options: Parameters<typeof fixture.start>[0]) => fixture.start(options, false);

const sample = (i: number) => Float32Array.from({ length: 8 }, (_, j) => Math.cos(i * 8 + j));
const worker = (faults: object = {}) => ({ model: SPEC, faults });

async function expectPredictions(results: Prediction[], first = 0) {
  for (const [n, p] of results.entries()) {
    const want = await fixture.model.predict(sample(first + n), 1);
    expect(p.output.length).toBe(4);
    for (let j = 0; j < 4; j++) expect(p.output[j]).toBeCloseTo(want[j], 4);
  }
}

/** Every query counted once: answered directly, reconstructed, or failed. */
function expectEachOnce(f: CodedFrontend, queries: number) {
  const s = f.stats();
  expect(s.queries).toBe(queries);
  expect(s.direct + s.reconstructed + s.errors).toBe(queries);
}

describe('replication baseline', () => {
  it('sends every query to two workers and answers each exactly once, from the faster copy', async () => {
    const f = await frontend({ k: 1, data: [worker({ delayMs: 400 }), worker({ delayMs: 5 }), worker({ delayMs: 5 })], redundancy: { mode: 'replicate' } });
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => f.infer(sample(i))));
    await expectPredictions(results);
    expectEachOnce(f, 6);
    expect(f.stats().errors).toBe(0);
    // Two copies each (fewer when a queued copy was dropped because the other had answered).
    expect(f.stats().workerCalls).toBeGreaterThan(6);
    expect(f.stats().workerCalls).toBeLessThanOrEqual(12);
    // The 400 ms worker never holds a query up: its copy always has a twin on a fast worker.
    expect(Math.max(...results.map((p) => p.latencyMs))).toBeLessThan(350);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});

describe('hedged requests', () => {
  it('re-sends a query to another worker only after the fixed threshold, first answer wins', async () => {
    const f = await frontend({ k: 1, data: [worker({ delayMs: 700 }), worker({ delayMs: 5 }), worker({ delayMs: 5 })], redundancy: { mode: 'hedge', afterMs: 150 } });
    const results: Prediction[] = [];
    // One at a time, so each query's first copy goes to a free worker and every worker gets some.
    for (let i = 0; i < 6; i++) results.push(await f.infer(sample(i)));
    await expectPredictions(results);
    expectEachOnce(f, 6);
    const slow = results.filter((p) => p.latencyMs >= 150);
    expect(f.stats().hedges).toBe(slow.length);
    expect(slow.length).toBeGreaterThan(0);
    // A hedged query waited out the threshold, then the fast worker answered long before the slow one.
    for (const p of slow) expect(p.latencyMs).toBeLessThan(600);
    for (const p of results.filter((x) => x.latencyMs < 150)) expect(p.latencyMs).toBeLessThan(100);
    expect(f.stats().workerCalls).toBe(6 + slow.length);
  });

  it('hedges nothing while every call is faster than the threshold', async () => {
    const f = await frontend({ k: 1, data: [worker({ delayMs: 5 }), worker({ delayMs: 5 })], redundancy: { mode: 'hedge', afterMs: 300 } });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => f.infer(sample(i))));
    await expectPredictions(results);
    expect(f.stats()).toMatchObject({ hedges: 0, workerCalls: 8, direct: 8 });
  });

  it('takes its threshold from a running quantile of call latencies, once it has enough of them', async () => {
    const f = await frontend({ k: 1, redundancy: { mode: 'hedge', quantile: 0.5, minSamples: 12 }, data: [worker({ delayMs: 600 }), worker({ delayMs: 5 }), worker({ delayMs: 5 })] });
    // The first queries spread over the idle workers; the rest go to the fast workers. Nothing is
    // hedged: the 12th latency (the slow worker's) comes in only when all 12 are answered.
    const first = await Promise.all(Array.from({ length: 12 }, (_, i) => f.infer(sample(i))));
    await expectPredictions(first);
    expect(first.filter((p) => p.latencyMs >= 600)).toHaveLength(1);
    expect(f.stats().hedges).toBe(0);
    // Now the median call is a few ms: the query that lands on the slow worker is hedged after that
    // (and a fast call slower than the median may be hedged too).
    const second = await Promise.all(Array.from({ length: 3 }, (_, i) => f.infer(sample(20 + i))));
    await expectPredictions(second, 20);
    expect(f.stats().hedges).toBeGreaterThanOrEqual(1);
    expect(Math.max(...second.map((p) => p.latencyMs))).toBeLessThan(300);
    expectEachOnce(f, 15);
  });
});

describe('a worker crash loses no query, in every mode', () => {
  const modes: [string, Partial<CodedFrontendOptions>][] = [
    ['equal resources', { k: 1 }],
    ['replication', { k: 1, redundancy: { mode: 'replicate' } }],
    ['hedging', { k: 1, redundancy: { mode: 'hedge', afterMs: 30 } }],
    ['ParM k = 2', { k: 2, r: 1, parity: [worker({ delayMs: 5 })], rebalanceAfterMs: Infinity }],
  ];
  for (const [name, options] of modes) {
    it(name, async () => {
      // Data worker 0 SIGKILLs itself while its 3rd request is in flight; the frontend restarts it.
      const data = [{ model: SPEC, faults: { delayMs: 20 }, firstFaults: { delayMs: 20, dieAfter: 2 } }, worker({ delayMs: 20 }), worker({ delayMs: 20 })];
      const f = await frontend({ ...options, k: options.k!, data: options.k === 2 ? data.slice(0, 2) : data, maxAttempts: 5 });
      const restarted = new Promise((r) => f.dataWorkers[0].once('restart', r));
      const results: Prediction[] = [];
      for (let wave = 0; wave < 4; wave++) results.push(...(await Promise.all(Array.from({ length: 4 }, (_, i) => f.infer(sample(wave * 4 + i))))));
      await expectPredictions(results);
      expectEachOnce(f, 16);
      expect(f.stats().errors).toBe(0);
      await restarted;
      expect(f.dataWorkers[0].restarts).toBe(1);
      expect(f.dataWorkers[0].lastError).toMatch(/exited \(SIGKILL\)/);
    });
  }
});

describe('redundancy options', () => {
  const data = [worker(), worker()];
  it('rejects bad options with "Expected … for … but received …"', () => {
    expect(() => new CodedFrontend({ k: 2, r: 1, data, parity: [worker()], redundancy: { mode: 'replicate' } })).toThrow('Expected k = 1 and r = 0 (redundancy stands in for coding) for options.redundancy but received k = 2, r = 1');
    expect(() => new CodedFrontend({ k: 1, data: [worker()], redundancy: { mode: 'hedge' } })).toThrow('Expected at least 2 data workers (a copy goes to another worker) for options.redundancy but received 1');
    expect(() => new CodedFrontend({ k: 1, data, redundancy: { mode: 'mirror' } as never })).toThrow("Expected { mode: 'replicate' | 'hedge', … } for options.redundancy but received an object");
    expect(() => new CodedFrontend({ k: 1, data, redundancy: { mode: 'replicate', copies: 3 } })).toThrow('Expected an integer in [2, 2] for options.redundancy.copies but received 3');
    expect(() => new CodedFrontend({ k: 1, data, redundancy: { mode: 'hedge', quantile: 1 } })).toThrow('Expected a number in (0, 1) for options.redundancy.quantile but received 1');
    expect(() => new CodedFrontend({ k: 1, data, redundancy: { mode: 'hedge', afterMs: -1 } })).toThrow('Expected a non-negative number for options.redundancy.afterMs but received -1');
  });
});
