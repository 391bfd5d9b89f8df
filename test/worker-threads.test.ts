// The addon is context-aware: it loads and computes in several worker_threads at once, and each
// thread gets its own PackedMatrix class and error mapping.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

// Eval'd workers resolve packages from the process's cwd, so pass the package entry explicitly.
const require = createRequire(import.meta.url);
const entry = pathToFileURL(join(dirname(require.resolve('@kintsugi/cuda-core/package.json')), 'dist', 'index.js')).href;

const workerSource = `
  const { parentPort, workerData } = require('node:worker_threads');
  import(workerData.entry).then(async ({ gemm, PackedWeights, Tensor }) => {
    const a = Tensor.random([64, 32], workerData.seed), b = Tensor.random([32, 16], workerData.seed + 1);
    const c = await gemm(a, b);
    const packed = new PackedWeights(b);
    const d = packed.matmulSync(a);
    packed.dispose();
    let bad = null;
    try { await gemm(a, a); } catch (e) { bad = e instanceof RangeError; }
    parentPort.postMessage({ c: Array.from(c.data), same: c.data.every((v, i) => v === d.data[i]), bad });
  });
`;

function runWorker(seed: number): Promise<{ c: number[]; same: boolean; bad: boolean }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(workerSource, { eval: true, workerData: { seed, entry } });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

describe('worker_threads', () => {
  it('four workers compute at once and agree with the main thread', async () => {
    const { gemm, Tensor } = await import('@kintsugi/cuda-core');
    const results = await Promise.all([1, 2, 3, 1].map(runWorker));
    for (const r of results) {
      expect(r.same).toBe(true);
      expect(r.bad).toBe(true);
    }
    expect(results[0].c).toEqual(results[3].c);
    const main = await gemm(Tensor.random([64, 32], 1), Tensor.random([32, 16], 2));
    expect(results[0].c).toEqual(Array.from(main.data));
  });
});

// Async kernels run on the addon's own runner threads and come back through a thread-safe
// function per JS thread: a thread that goes away with work in flight must not take the process down.
describe('async work when its JS thread goes away', () => {
  const busy = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.entry).then(async ({ gemm, Tensor }) => {
      const a = Tensor.random([384, 384], 1);
      const inflight = Array.from({ length: 4 }, () => gemm(a, a));
      parentPort.postMessage('started');
      await Promise.all(inflight);
      parentPort.postMessage('done');
    });
  `;

  it('a worker terminated with kernels in flight leaves the main thread computing', async () => {
    const { gemm, Tensor } = await import('@kintsugi/cuda-core');
    for (let round = 0; round < 3; round++) {
      const w = new Worker(busy, { eval: true, workerData: { entry } });
      await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      await w.terminate();
    }
    const c = await gemm(Tensor.random([8, 8], 1), Tensor.random([8, 8], 2));
    expect(c.data.every(Number.isFinite)).toBe(true);
  });

  it('a process that exits with kernels in flight exits cleanly, and one that awaits them exits on its own', () => {
    const script = (finish: string) => `
      import(${JSON.stringify(entry)}).then(async ({ gemm, Tensor }) => {
        const a = Tensor.random([384, 384], 1);
        const all = Promise.all(Array.from({ length: 8 }, () => gemm(a, a)));
        ${finish}
      });
    `;
    for (let i = 0; i < 3; i++) {
      const exited = spawnSync(process.execPath, ['-e', script('process.exit(0);')], { encoding: 'utf8', timeout: 30_000 });
      expect(exited.status, exited.stderr).toBe(0);
      const awaited = spawnSync(process.execPath, ['-e', script("await all; console.log('ok');")], { encoding: 'utf8', timeout: 30_000 });
      expect(awaited.status, awaited.stderr).toBe(0);
      expect(awaited.stdout.trim()).toBe('ok');
    }
  }, 120_000);
});
