// Real shard processes on loopback: failures are SIGKILLs, recovery runs while training continues,
// and the parameters at the end are compared bit for bit with a run that had no failure.
import { beforeAll, describe, expect, it } from 'vitest';
import { EmbeddingCluster, ShardLostError, trainDlrm, type TrainOptions, type TrainResult } from '../src/index.js';

const base = {
  steps: 20, batchSize: 64, rowsPerTable: 300, dim: 8, k: 4, seed: 5, evalBatches: 2, collectParameters: true,
  // Small locked ranges with pauses, so the rebuild overlaps training and degraded reads happen.
  rebuild: { rangeSlots: 64, pauseMs: 1 }, timeoutMs: 4000,
} satisfies Partial<TrainOptions>;

const bits = (f: Float32Array) => Buffer.from(f.buffer, f.byteOffset, f.byteLength);

function expectSameParameters(run: TrainResult, reference: TrainResult): void {
  expect(bits(run.embeddings!).equals(bits(reference.embeddings!))).toBe(true);
  expect(run.mlp!.length).toBe(reference.mlp!.length);
  run.mlp!.forEach((m, i) => expect(bits(m).equals(bits(reference.mlp![i]))).toBe(true));
}

const rebuildStats = (r: TrainResult) => r.events.filter((e) => e.kind === 'rebuild-done').map((e) => e.detail as { degradedReads: number; prefetches: number; ranges: number });

describe('recovery from shard loss', () => {
  let reference: TrainResult;
  beforeAll(async () => {
    reference = await trainDlrm({ ...base, mode: 'none' });
  });

  it('the reference run learns', () => {
    const first = reference.records[0].loss, last = reference.records.at(-1)!.loss;
    expect(last).toBeLessThan(first);
    expect(reference.evalAuc).toBeGreaterThan(0.6);
  });

  it('xor: a data shard killed mid-run is rebuilt on a spare with degraded reads; parameters are bit-exact', async () => {
    const run = await trainDlrm({ ...base, mode: 'ecrm', code: 'xor', failures: [{ step: 8, server: 2 }] });
    expect(run.failures.map((f) => f.server)).toEqual([[2]]);
    const [stats] = rebuildStats(run);
    expect(stats.degradedReads).toBeGreaterThan(0);
    // The trainer told the replacement its next batches' rows while it was rebuilding.
    expect(stats.prefetches).toBeGreaterThan(0);
    expect(stats.ranges).toBeGreaterThan(1);
    expect(run.parityConsistent).toBe(true);
    expectSameParameters(run, reference);
  });

  it('prefetched rows are exact: a slow rebuild served by prefetches and degraded reads alone', async () => {
    // Ranges far apart: the rows training touches arrive through prefetches, some of them for
    // rows the same step then updates, and the result must still match bit for bit.
    const run = await trainDlrm({ ...base, mode: 'ecrm', code: 'xor', rebuild: { rangeSlots: 32, pauseMs: 25 }, failures: [{ step: 3, server: 1 }] });
    const [stats] = rebuildStats(run);
    expect(stats.prefetches).toBeGreaterThan(5);
    expect(run.parityConsistent).toBe(true);
    expectSameParameters(run, reference);
  });

  it('rs r = 2: two data shards killed at the same step are both rebuilt bit-exactly', async () => {
    const run = await trainDlrm({ ...base, mode: 'ecrm', code: 'rs', r: 2, failures: [{ step: 6, server: 0 }, { step: 6, server: 3 }] });
    expect(run.failures.map((f) => f.server[0]).sort()).toEqual([0, 3]);
    expect(rebuildStats(run)).toHaveLength(2);
    expect(run.parityConsistent).toBe(true);
    expectSameParameters(run, reference);
  });

  it('rs r = 2: a shard dying inside a push after staging on one parity loses and duplicates no update', async () => {
    const run = await trainDlrm({ ...base, mode: 'ecrm', code: 'rs', r: 2, failures: [{ step: 9, server: 1, when: 'after-first-delta' }] });
    expect(run.failures).toHaveLength(1);
    expect(run.parityConsistent).toBe(true);
    expectSameParameters(run, reference);
  });

  it('xor with replicated optimizer state: a parity shard and later a data shard are rebuilt bit-exactly', async () => {
    // With r = 1 the second failure must come after the first rebuild (which runs at the lowest
    // priority, so a busy machine can starve it for a while): injected once it is done.
    const run = await trainDlrm({ ...base, mode: 'ecrm', code: 'xor', state: 'replicated', rebuild: { rangeSlots: 4096, pauseMs: 0 }, failures: [{ step: 2, server: 4 }, { step: 12, server: 1, afterRebuilds: true }] });
    expect(run.failures.map((f) => f.server[0])).toEqual([4, 1]);
    expect(run.parityConsistent).toBe(true);
    expectSameParameters(run, reference);
  });

  it('sum parity recovers approximately: training goes on, the rebuilt rows are close but not exact', async () => {
    const run = await trainDlrm({ ...base, mode: 'ecrm', code: 'sum', failures: [{ step: 8, server: 2 }] });
    expect(run.records).toHaveLength(base.steps);
    let maxErr = 0;
    run.embeddings!.forEach((v, i) => (maxErr = Math.max(maxErr, Math.abs(v - reference.embeddings![i]))));
    expect(maxErr).toBeLessThan(1e-3);
  });

  it('checkpoint restart redoes the lost steps to the same bits; CPR keeps going with lost updates', async () => {
    const ckpt = await trainDlrm({ ...base, mode: 'checkpoint', checkpointEvery: 5, failures: [{ step: 13, server: 1 }] });
    expect(ckpt.failures[0].lostSteps).toBe(3);
    expect(ckpt.records.filter((r) => r.redo)).toHaveLength(3);
    expectSameParameters(ckpt, reference);
    const cpr = await trainDlrm({ ...base, mode: 'cpr', checkpointEvery: 5, failures: [{ step: 13, server: 1 }] });
    expect(cpr.records.filter((r) => r.redo)).toHaveLength(0);
    expect(cpr.failures[0].lostSteps).toBe(3);
    expect(bits(cpr.embeddings!).equals(bits(reference.embeddings!))).toBe(false);
  });

  it('xor r = 1: a second loss while the first is still being rebuilt is a clear error, not a hang', async () => {
    // Slow ranges keep the first rebuild going when the second shard dies.
    const t0 = Date.now();
    await expect(trainDlrm({ ...base, mode: 'ecrm', code: 'xor', rebuild: { rangeSlots: 8, pauseMs: 20 }, failures: [{ step: 3, server: 1 }, { step: 5, server: 2 }] }))
      .rejects.toThrow(/Expected 4 healthy servers to decode from for the rebuild of data 2 but received 3|rebuild failed/);
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it.each(['encoded', 'replicated'] as const)('rebuilds with ranges of many socket reads each (%s state), bit-exactly', async (state) => {
    // 26 × 4096 rows × 16 dims over k = 4: ranges of 16384 slots are megabyte replies, reassembled
    // in the rebuild's reused frame buffers; replicated state reads two parts from the parity.
    const totalRows = 26 * 4096, k = 4;
    const cluster = await EmbeddingCluster.start({ totalRows, rowsPerTable: 4096, dim: 16, k, protection: 'xor', state, rebuild: { rangeSlots: 16384 }, timeoutMs: 10_000 });
    try {
      // Every row updated: the rebuild reads every slot (rows never updated it would not read).
      const all = Int32Array.from({ length: totalRows }, (_, i) => i);
      await cluster.push(0, all, new Float32Array(all.length * 16).map((_, i) => Math.sin(i)));
      const some = all.filter((g) => g % 11 === 0);
      const before = await cluster.readAll();
      cluster.kill(1);
      // Degraded reads for a few rows; the rest arrive through the background rebuild's ranges.
      await cluster.pull(1, some.subarray(0, 256));
      await cluster.rebuilt();
      expect(cluster.health).toEqual(['healthy', 'healthy', 'healthy', 'healthy', 'healthy']);
      const after = await cluster.readAll();
      expect(Buffer.from(after.buffer).equals(Buffer.from(before.buffer))).toBe(true);
      expect(await cluster.parityConsistent()).toBe(true);
      const [done] = cluster.events.filter((e) => e.kind === 'rebuild-done').map((e) => e.detail as { ranges: number });
      // The first read is of the 4096 most updated slots, the rest in reads of 16384.
      expect(done.ranges).toBe(1 + Math.ceil((totalRows / k - 4096) / 16384));
    } finally {
      await cluster.close();
    }
  });

  it('a data shard\'s rebuild reads only the slots updated since the start, and computes the rest', async () => {
    const totalRows = 26 * 2048, k = 4, dim = 8;
    const cluster = await EmbeddingCluster.start({ totalRows, rowsPerTable: 2048, dim, k, protection: 'xor', rebuild: { rangeSlots: 100 }, timeoutMs: 10_000 });
    try {
      // 300 distinct rows updated over three steps; shard 1 holds the rows g with g % 4 = 1.
      const updated = Int32Array.from({ length: 300 }, (_, i) => (i * 173) % totalRows);
      for (let step = 0; step < 3; step++) await cluster.push(step, updated, new Float32Array(updated.length * dim).map((_, i) => Math.cos(i + step)));
      const before = await cluster.readAll();
      const touched = updated.filter((g) => g % k === 1).length;
      cluster.kill(1);
      // A row of the lost shard never updated, and one updated: both served during the rebuild.
      const probe = Int32Array.of(5, updated.find((g) => g % k === 1)!);
      const served = await cluster.pull(3, probe);
      expect(Array.from(served)).toEqual(Array.from(probe).flatMap((g) => Array.from(before.subarray(g * (dim + 1), g * (dim + 1) + dim))));
      await cluster.push(3, probe, new Float32Array(probe.length * dim).fill(0.5));
      await cluster.rebuilt();
      const [done] = cluster.events.filter((e) => e.kind === 'rebuild-done').map((e) => e.detail as { ranges: number; rebuiltSlots: number });
      // Reads of up to 100 touched slots each (the probe's never-updated row may have joined them
      // by its update), never a range of untouched ones.
      expect(done.rebuiltSlots).toBeGreaterThanOrEqual(touched);
      expect(done.rebuiltSlots).toBeLessThanOrEqual(touched + 1);
      expect(done.ranges).toBe(Math.ceil(done.rebuiltSlots / 100));
      // After the switch-over: every row, read or computed, matches a cluster that never failed.
      const twin = await EmbeddingCluster.start({ totalRows, rowsPerTable: 2048, dim, k, protection: 'xor', timeoutMs: 10_000 });
      try {
        for (let step = 0; step < 3; step++) await twin.push(step, updated, new Float32Array(updated.length * dim).map((_, i) => Math.cos(i + step)));
        await twin.push(3, probe, new Float32Array(probe.length * dim).fill(0.5));
        expect(Buffer.from((await cluster.readAll()).buffer).equals(Buffer.from((await twin.readAll()).buffer))).toBe(true);
      } finally {
        await twin.close();
      }
      expect(await cluster.parityConsistent()).toBe(true);
      // The replacement keeps a complete record: a later loss of another shard rebuilds exactly too.
      const state = await cluster.readAll();
      cluster.kill(2);
      await cluster.pull(4, Int32Array.of(2, 6, 5));
      await cluster.rebuilt();
      expect(Buffer.from((await cluster.readAll()).buffer).equals(Buffer.from(state.buffer))).toBe(true);
      expect(await cluster.parityConsistent()).toBe(true);
    } finally {
      await cluster.close();
    }
  });

  it('a pull a data shard is late with is answered exactly by the standby spare; the shard stays', async () => {
    const cluster = await EmbeddingCluster.start({ totalRows: 400, rowsPerTable: 100, dim: 4, k: 2, protection: 'xor', timeoutMs: 5000 });
    const stopped = cluster.pids[1];
    try {
      const rows = Int32Array.from({ length: 400 }, (_, i) => i);
      // Steps that give the cluster its usual pull latency (the hedging delay is a multiple of it).
      for (let step = 0; step < 10; step++) {
        await cluster.pull(step, rows);
        await cluster.push(step, rows, new Float32Array(400 * 4).map((_, i) => Math.sin(i + step)));
      }
      const expected = await cluster.pull(10, rows);
      process.kill(stopped, 'SIGSTOP');  // alive but silent: its pulls wait
      const started = performance.now();
      expect(await cluster.pull(10, rows)).toEqual(expected);
      expect(performance.now() - started).toBeLessThan(1000);
      expect(cluster.hedgesSent).toBeGreaterThanOrEqual(1);
      expect(cluster.hedgedPulls).toBe(1);
      process.kill(stopped, 'SIGCONT');
      // The late shard answers again and keeps its role: nothing was declared failed.
      await cluster.push(10, rows, new Float32Array(400 * 4).fill(0.25));
      expect(cluster.events.filter((e) => e.kind === 'failure')).toEqual([]);
      expect(cluster.health).toEqual(['healthy', 'healthy', 'healthy']);
      expect(await cluster.parityConsistent()).toBe(true);
    } finally {
      process.kill(stopped, 'SIGCONT');
      await cluster.close();
    }
  });

  it('a reader that only pulls gets the lost shard rebuilt without pushing or waiting on rebuilt()', async () => {
    const cluster = await EmbeddingCluster.start({ totalRows: 400, rowsPerTable: 100, dim: 4, k: 2, protection: 'xor', timeoutMs: 2000 });
    try {
      const rows = Int32Array.from({ length: 400 }, (_, i) => i);
      const before = await cluster.pull(0, rows);
      cluster.kill(1);
      expect(await cluster.pull(0, rows)).toEqual(before);  // degraded reads
      expect(cluster.health[1]).toBe('rebuilding');
      // The background rebuild follows a served pull after a short delay when no push comes.
      await expect.poll(() => cluster.health[1], { timeout: 5000, interval: 10 }).toBe('healthy');
      expect(cluster.events.map((e) => e.kind)).toEqual(['failure', 'serving', 'rebuild-start', 'rebuild-done']);
      expect(await cluster.pull(0, rows)).toEqual(before);
    } finally {
      await cluster.close();
    }
  });

  it('an unprotected cluster reports the lost shard; an unreachable one fails fast with a clear error', async () => {
    const cluster = await EmbeddingCluster.start({ totalRows: 400, rowsPerTable: 100, dim: 4, k: 2, timeoutMs: 1000 });
    try {
      expect(await cluster.pull(0, Int32Array.of(1, 2, 3))).toHaveLength(12);
      cluster.kill(1);
      const err = await cluster.pull(1, Int32Array.of(1, 2, 3)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ShardLostError);
      expect((err as ShardLostError).servers).toEqual([1]);
      expect((err as Error).message).toMatch(/Expected every embedding server to answer but received no answer from server 1/);
    } finally {
      await cluster.close();
    }
    const t0 = Date.now();
    await expect(EmbeddingCluster.start({ totalRows: 400, rowsPerTable: 100, dim: 4, k: 1, timeoutMs: 500, addresses: [{ host: '127.0.0.1', port: 1 }] }))
      .rejects.toThrow(/Expected a connection to data 0 \(127.0.0.1:1\) but received connect ECONNREFUSED/);
    expect(Date.now() - t0).toBeLessThan(5000);
    await expect(EmbeddingCluster.start({ totalRows: 400, rowsPerTable: 100, dim: 4, k: 4, protection: 'xor', r: 2 })).rejects.toThrow(/Expected 1 for mode 'xor'/);
  });
});
