// The coded frontend end to end with real worker processes and a linear model, for which the
// parity model is the model itself and reconstruction is exact up to float rounding.
import { createServer } from 'node:net';

import { describe, expect, it } from 'vitest';

import { CodedFrontend, ServingError } from '../../src/serving/index.js';
import { frontendFixture, get, post } from './helpers.js';

const SPEC = 'linear:in=8,out=4,seed=3';
const fixture = frontendFixture(SPEC);
const frontend = (options: Parameters<typeof fixture.start>[0]) => fixture.start(options);

const sample = (i: number) => Float32Array.from({ length: 8 }, (_, j) => Math.sin(i * 8 + j));
async function expectPrediction(out: ArrayLike<number>, i: number) {
  const want = await fixture.model.predict(sample(i), 1);
  expect(out.length).toBe(4);
  for (let j = 0; j < 4; j++) expect(out[j]).toBeCloseTo(want[j], 4);
}
const data = (n: number, extra: object = {}) => Array.from({ length: n }, () => ({ model: SPEC, ...extra }));

describe('coded frontend (k = 2, r = 1)', () => {
  it('serves KServe v2 requests over HTTP with each prediction from its own worker', async () => {
    const f = await frontend({ k: 2, r: 1, data: data(2), parity: data(1), reconstructAfterMs: 5000 });
    expect(f.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await get(`${f.url}/v2/health/ready`)).json).toEqual({ ready: true });
    expect((await get(`${f.url}/v2/models/linear`)).json).toMatchObject({ name: 'linear', inputs: [{ shape: [-1, 8] }], outputs: [{ shape: [-1, 4] }] });
    const rows = [0, 1, 2];
    const r = await post(`${f.url}/v2/models/linear/infer`, { inputs: [{ name: 'input', shape: [3, 8], datatype: 'FP32', data: rows.flatMap((i) => Array.from(sample(i))) }] });
    expect(r.status).toBe(200);
    const out = (r.json.outputs as { shape: number[]; data: number[] }[])[0];
    expect(out.shape).toEqual([3, 4]);
    for (const i of rows) await expectPrediction(out.data.slice(i * 4, i * 4 + 4), i);
    expect(r.json.parameters).toEqual({ reconstructed: false, reconstructed_rows: [] });
  });

  it('reconstructs the straggler\'s predictions from parity, exactly, and marks them', async () => {
    // Data worker 1 sleeps 8 s per request: every query in its slot must come back decoded (slots
    // stay with their assigned worker: no rebalancing to the fast one within the test).
    const f = await frontend({ k: 2, r: 1, data: [{ model: SPEC }, { model: SPEC, faults: { delayMs: 8000 } }], parity: data(1), requestTimeoutMs: 10_000, rebalanceAfterMs: 5000 });
    const t0 = performance.now();
    const results = await Promise.all([0, 1, 2, 3].map((i) => f.infer(sample(i))));
    expect(performance.now() - t0).toBeLessThan(5000);
    for (const [i, p] of results.entries()) await expectPrediction(p.output, i);
    // Queries 0, 1 form one group and 2, 3 the next; in each, the query that went to the slow
    // worker (which slot that is depends on the load balancer) is the one reconstructed.
    expect(results.slice(0, 2).filter((p) => p.reconstructed)).toHaveLength(1);
    expect(results.slice(2, 4).filter((p) => p.reconstructed)).toHaveLength(1);
    const http = await post(`${f.url}/v2/models/linear/infer`, { inputs: [{ name: 'input', shape: [2, 8], datatype: 'FP32', data: [...sample(4), ...sample(5)] }] });
    expect(http.json.parameters).toMatchObject({ reconstructed: true });
    expect((http.json.parameters as { reconstructed_rows: number[] }).reconstructed_rows).toHaveLength(1);
    expect(f.stats().reconstructed).toBe(3);
  });

  it('rescues a straggler within a bound and keeps later slots out of the slowed worker\'s queue', async () => {
    // Data worker 1 takes 3 s per request. Each group's query assigned to it must come back decoded
    // well before that, and the frontend must not pile later groups' slots up inside that worker.
    const f = await frontend({ k: 2, r: 1, data: [{ model: SPEC }, { model: SPEC, faults: { delayMs: 3000 } }], parity: data(1), requestTimeoutMs: 10_000 });
    let worst = 0;
    for (let g = 0; g < 4; g++) {
      const results = await Promise.all([2 * g, 2 * g + 1].map((i) => f.infer(sample(i))));
      for (const [n, p] of results.entries()) await expectPrediction(p.output, 2 * g + n);
      worst = Math.max(worst, ...results.map((p) => p.latencyMs));
      expect(f.dataWorkers[1].outstanding).toBeLessThanOrEqual(1);
    }
    expect(worst).toBeLessThan(1000);
    expect(f.stats().reconstructed).toBeGreaterThanOrEqual(1);
    expect(f.stats().errors).toBe(0);
  });

  it('with reconstructAfterMs, gives the query\'s own worker that long before returning the decode', async () => {
    const f = await frontend({ k: 2, r: 1, data: [{ model: SPEC }, { model: SPEC, faults: { delayMs: 4000 } }], parity: data(1), reconstructAfterMs: 400 });
    const results = await Promise.all([0, 1].map((i) => f.infer(sample(i))));
    const late = results.find((p) => p.reconstructed)!;
    expect(late).toBeDefined();
    expect(late.latencyMs).toBeGreaterThanOrEqual(390);
    expect(late.latencyMs).toBeLessThan(3000);
    expect(results.find((p) => !p.reconstructed)!.latencyMs).toBeLessThan(late.latencyMs);
    for (const [i, p] of results.entries()) await expectPrediction(p.output, i);
  });

  it('batches B coding groups per worker request and pads a short group with its own queries', async () => {
    const f = await frontend({ k: 2, r: 1, data: data(2), parity: data(1), batchSize: 4, fillTimeoutMs: 20, reconstructAfterMs: 5000 });
    const full = await Promise.all(Array.from({ length: 8 }, (_, i) => f.infer(sample(i))));
    for (const [i, p] of full.entries()) await expectPrediction(p.output, i);
    expect(f.stats().dispatches).toBe(1);
    // 5 queries: one full batch would need 8, so the fill timeout sends 3 groups, the last padded.
    const part = await Promise.all(Array.from({ length: 5 }, (_, i) => f.infer(sample(10 + i))));
    for (const [i, p] of part.entries()) await expectPrediction(p.output, 10 + i);
    expect(f.stats().dispatches).toBe(2);
  });

  it('answers every query when a data worker is SIGKILLed mid-flight, then restarts it', async () => {
    const f = await frontend({ k: 2, r: 1, data: [{ model: SPEC, faults: { delayMs: 400 } }, { model: SPEC }], parity: data(1) });
    const before = f.dataWorkers[0].pid!;
    const restarted = new Promise((r) => f.dataWorkers[0].once('restart', r));
    const inflight = [0, 1, 2, 3].map((i) => f.infer(sample(i)));
    await new Promise((r) => setTimeout(r, 100));
    process.kill(before, 'SIGKILL');
    const results = await Promise.all(inflight);
    for (const [i, p] of results.entries()) await expectPrediction(p.output, i);
    expect(results[0].reconstructed).toBe(true);
    await restarted;
    expect(f.dataWorkers[0].pid).not.toBe(before);
    expect(f.dataWorkers[0].state).toBe('ready');
    expect(f.stats().workers[0]).toMatchObject({ state: 'ready', restarts: 1 });
    expect(f.dataWorkers[0].lastError).toMatch(/exited \(SIGKILL\)/);
    // After the restart the worker answers for itself again.
    const again = await f.infer(sample(9));
    await expectPrediction(again.output, 9);
  });

  it('survives a worker that dies on its own after N requests (fault injection) and one that wedges', async () => {
    const f = await frontend({
      k: 2, r: 1,
      data: [{ model: SPEC, firstFaults: { dieAfter: 1 } }, { model: SPEC, firstFaults: { hangAfter: 1 } }],
      parity: data(1), maxAttempts: 5,
    });
    // Both data workers fail on their 2nd request: one by SIGKILL, one by blocking its event loop
    // (only the health checks can find that one). Nothing may be lost or hang.
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => f.infer(sample(i))));
    for (const [i, p] of results.entries()) await expectPrediction(p.output, i);
    // The wedged one is found by 3 failed health checks (≤ 1 s each), then killed and restarted.
    for (let t = 0; t < 80 && (f.dataWorkers[0].restarts < 1 || f.dataWorkers[1].restarts < 1); t++) await new Promise((r) => setTimeout(r, 100));
    expect(f.dataWorkers[0].restarts).toBeGreaterThanOrEqual(1);
    expect(f.dataWorkers[1].restarts).toBeGreaterThanOrEqual(1);
    expect(f.dataWorkers[1].lastError).toMatch(/health checks failed|exited/);
    expect(f.stats().errors).toBe(0);
  });
});

describe('coded frontend (r = 2, gRPC workers)', () => {
  it('decodes two lost predictions of a group from two parities with distinct coefficients', async () => {
    const slow = { model: SPEC, protocol: 'grpc' as const, faults: { delayMs: 8000 } };
    const fast = { model: SPEC, protocol: 'grpc' as const };
    const f = await frontend({ k: 3, r: 2, data: [fast, slow, slow], parity: [fast, fast], requestTimeoutMs: 10_000 });
    expect(f.codes.map((c) => Array.from(c.coefficients))).toEqual([[1, 1, 1], [1, 2, 3]]);
    const t0 = performance.now();
    const results = await Promise.all([0, 1, 2].map((i) => f.infer(sample(i))));
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(results.map((p) => p.reconstructed)).toEqual([false, true, true]);
    for (const [i, p] of results.entries()) await expectPrediction(p.output, i);
  });
});

describe('frontend errors', () => {
  it('answers bad HTTP requests with 4xx and clear messages', async () => {
    const f = await frontend({ k: 1, data: data(1) });
    const infer = (body: unknown, name = 'linear') => post(`${f.url}/v2/models/${name}/infer`, body);
    expect(await infer({ inputs: [] }, 'resnet')).toEqual({ status: 404, json: { error: 'Expected \'linear\' for model name but received "resnet"' } });
    expect(await infer({ inputs: [{ name: 'input', shape: [1, 7], datatype: 'FP32', data: Array(7).fill(0) }] })).toEqual({ status: 400, json: { error: 'Expected [n, 8] with n ≥ 1 for inputs[0].shape but received [1, 7]' } });
    expect((await infer({ inputs: [{ name: 'input', shape: [1, 8], datatype: 'BYTES', data: [] }] })).json.error).toBe('Expected \'FP32\' for inputs[0].datatype but received "BYTES"');
    expect((await infer({ inputs: [{ name: 'x', shape: [1, 8], datatype: 'FP32', data: [] }] })).json.error).toBe('Expected \'input\' for inputs[0].name but received "x"');
    const bad = await infer('not json');
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/^Expected a JSON request body for body but received malformed JSON/);
    await expect(f.infer(new Float32Array(3))).rejects.toThrow('Expected a Float32Array of 8 values (shape [8]) for input but received 3 values');
  });

  it('gives an explicit error, not a hang, when its only worker is unreachable', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const remote = { url: `http://127.0.0.1:${port}`, model: 'linear' };
    // Without shapes the frontend cannot even start, and says why.
    await expect(new CodedFrontend({ k: 1, data: [remote] }).start({ listen: false })).rejects.toThrow(/Expected a data worker that answers model metadata for options.model but received none/);
    const f = await frontend({ k: 1, data: [remote], model: { name: 'linear', inputShape: [8], outputShape: [4] }, requestTimeoutMs: 3000 });
    const t0 = performance.now();
    const err = await f.infer(sample(0)).catch((e: ServingError) => e);
    expect(err).toBeInstanceOf(ServingError);
    expect((err as ServingError).status).toBe(503);
    expect((err as ServingError).message).toMatch(/^No prediction after 3 attempts and no parity to decode from: Worker data\[0\] \(http:\/\/127\.0\.0\.1:\d+\) is down/);
    expect(performance.now() - t0).toBeLessThan(2900);
    const http = await post(`${f.url}/v2/models/linear/infer`, { inputs: [{ name: 'input', shape: [8], datatype: 'FP32', data: Array.from(sample(0)) }] });
    expect(http.status).toBe(503);
    expect((await get(`${f.url}/v2/health/ready`)).status).toBe(503);
  });

  it('times a query out with a 504 when no worker and no decode answers in time', async () => {
    const f = await frontend({ k: 1, data: [{ model: SPEC, faults: { delayMs: 5000 } }], requestTimeoutMs: 500 });
    const err = await f.infer(sample(0)).catch((e: ServingError) => e);
    expect((err as ServingError).status).toBe(504);
    expect((err as ServingError).message).toMatch(/^No prediction within 500 ms/);
  });

  it('balances the replication baseline (k = 1, r = 0) over its replicas', async () => {
    const f = await frontend({ k: 1, data: data(3) });
    const results = await Promise.all(Array.from({ length: 9 }, (_, i) => f.infer(sample(i))));
    for (const [i, p] of results.entries()) await expectPrediction(p.output, i);
    expect(results.every((p) => !p.reconstructed)).toBe(true);
  });

  it('serves concatenation-encoded parity models: the parity query tiles the group\'s images', async () => {
    const fixtureModule = new URL('./fixtures/pixel-sum.mjs', import.meta.url).pathname;
    const spec = (name: string) => `module:${fixtureModule}#${name}`;
    const image = (i: number) => Float32Array.from({ length: 8 }, (_, j) => Math.cos(i * 8 + j) + 0.25 * i);
    const want = (i: number) => {
      const s = image(i).reduce((a, b) => a + b, 0);
      return [s, -2 * s];
    };
    for (const [k, parity, grid, canvas] of [[2, 'parityK2', undefined, undefined], [2, 'parityK2', [2, 1], undefined], [4, 'parityK4', undefined, undefined], [2, 'parityK2Full', undefined, 'full']] as const) {
      // The last data worker sleeps 8 s: its query of every group is decoded from the tiled parity.
      const slow = { model: spec('deployed'), faults: { delayMs: 8000 } };
      const f = await frontend({ k, r: 1, encoder: 'concat', grid: grid ? [...grid] : undefined, canvas, data: [...Array.from({ length: k - 1 }, () => ({ model: spec('deployed') })), slow], parity: [{ model: spec(parity) }], requestTimeoutMs: 10_000, rebalanceAfterMs: 5000 });
      const results = await Promise.all(Array.from({ length: k }, (_, i) => f.infer(image(i))));
      expect(results.filter((p) => p.reconstructed)).toHaveLength(1);
      for (const [i, p] of results.entries()) {
        expect(p.output[0]).toBeCloseTo(want(i)[0], 4);
        expect(p.output[1]).toBeCloseTo(want(i)[1], 4);
      }
      await f.close();
    }
    // A flat input cannot be tiled; a full canvas needs a parity model of the canvas's shape.
    await expect(frontend({ k: 2, r: 1, encoder: 'concat', data: data(2), parity: data(1) })).rejects.toThrow('Expected an image [C, H, W] of at least 1×2 pixels for the model input for a concatenation encoder but received [8]');
    await expect(frontend({ k: 2, r: 1, encoder: 'concat', canvas: 'full', data: [{ model: spec('deployed') }, { model: spec('deployed') }], parity: [{ model: spec('parityK2') }] }))
      .rejects.toThrow(/Expected input \[1,2,8\] and output \[2\] for the shapes of parity\[0\] \(pixel-sum-parity-k2\) but received input \[1,2,4\]/);
  });

  it('rejects bad options with "Expected … for … but received …"', () => {
    expect(() => new CodedFrontend({ k: 2, r: 1, data: data(1), parity: data(1) })).toThrow('Expected at least 2 data workers (k) for options.data but received an array of length 1');
    expect(() => new CodedFrontend({ k: 2, r: 3, data: data(2) })).toThrow('Expected an integer in [0, 2] for options.r but received 3');
    expect(() => new CodedFrontend({ k: 2, r: 2, data: data(2), parity: data(2), coefficients: [[1, 1], [2, 2]] })).toThrow(/columns 0 and 1 are independent/);
    expect(() => new CodedFrontend({ k: 10, r: 1, encoder: 'concat', data: data(10), parity: data(1) })).toThrow(/3 or 4 \(2×2 grid\) or 5…9 \(3×3 grid\) for k of a concatenation encoder but received 10/);
    expect(() => new CodedFrontend({ k: 2, r: 1, encoder: 'xor' as 'sum', data: data(2), parity: data(1) })).toThrow("Expected 'sum' or 'concat' for options.encoder but received \"xor\"");
    expect(() => new CodedFrontend({ k: 2, r: 1, grid: [2, 1], data: data(2), parity: data(1) })).toThrow("Expected nothing without encoder: 'concat' for options.grid but received an array of length 2");
    expect(() => new CodedFrontend({ k: 2, r: 1, canvas: 'full', data: data(2), parity: data(1) })).toThrow("Expected nothing without encoder: 'concat' for options.canvas but received \"full\"");
    expect(() => new CodedFrontend({ k: 2, r: 1, encoder: 'concat', canvas: 'huge' as 'full', data: data(2), parity: data(1) })).toThrow('Expected same | full for options.canvas but received "huge"');
    expect(() => new CodedFrontend({ k: 3, r: 1, encoder: 'concat', grid: [1, 2], data: data(3), parity: data(1) })).toThrow(/rows·cols ≥ k = 3 for grid/);
  });
});
