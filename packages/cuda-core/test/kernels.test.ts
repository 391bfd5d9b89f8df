// Every public kernel against a float64 reference on random and edge shapes.
// Tolerances: float32 results vs float64 references use atol 1e-5 + rtol 1e-4 scaled by
// sqrt(reduction length) (rounding error of a length-K fp32 sum grows like sqrt(K)·eps on random
// data); small-integer inputs are compared exactly.
import { execFileSync } from 'node:child_process';

import { describe, expect, it } from 'vitest';

import {
  colSums, colSumsSync, conv2d, conv2dBackward, conv2dBackwardSync, conv2dParams, conv2dSync, embeddingBag, embeddingBagBackward,
  embeddingBagBackwardSync, embeddingBagSync, pairwiseDots, pairwiseDotsSync, pairwiseDotsBackward, pairwiseDotsBackwardSync, pairwiseDotCount, gatherRowsSync, scatterRowsSync, largePageFloat32Array, sharedLargePageFloat32Array, mallocTuning, gemm, gemmSync, PackedConv2dWeights, PackedWeights, rowSums, rowSumsSync, sgemm, sgemmSync, sumDecode,
  sumEncode, sumEncodeSync, ReedSolomonCode, setNumThreads, numThreads, setSpinMicros, spinMicros, Tensor, weightedColSums, weightedRowSums, xorEncode, xorEncodeSync, xorInto,
} from '../src/index.js';
import { convBackwardRef, convRef, gemmRef, worstError } from './reference.js';

const tol = (k: number) => ({ atol: 1e-5 * Math.sqrt(k + 1), rtol: 1e-4 * Math.sqrt(k + 1) });

function smallInts(shape: number[], seed: number): Tensor<'float32'> {
  const t = Tensor.zeros(shape);
  let s = seed;
  for (let i = 0; i < t.data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    t.data[i] = ((s >>> 16) % 7) - 3;
  }
  return t;
}

describe('gemm', () => {
  const shapes: [number, number, number][] = [[1, 1, 1], [2, 3, 4], [7, 5, 3], [17, 33, 9], [64, 64, 64], [65, 31, 129], [1, 300, 257], [130, 1, 70], [3, 5, 1000]];
  for (const [m, n, k] of shapes) {
    for (const transA of [false, true])
      for (const transB of [false, true]) {
        it(`${m}x${n}x${k} transA=${transA} transB=${transB}`, async () => {
          const a = Tensor.random(transA ? [k, m] : [m, k], m * 31 + k);
          const b = Tensor.random(transB ? [n, k] : [k, n], n * 17 + k);
          const c = await gemm(a, b, { transA, transB });
          const want = gemmRef(a.data, b.data, m, n, k, { transA, transB });
          const { atol, rtol } = tol(k);
          expect(worstError(c.data, want, atol, rtol)).toBeLessThanOrEqual(1);
        });
      }
  }

  it('small integers give exact results, sync and async agree', async () => {
    const a = smallInts([37, 53], 1), b = smallInts([53, 29], 2);
    const want = gemmRef(a.data, b.data, 37, 29, 53);
    expect(Array.from(gemmSync(a, b).data)).toEqual(Array.from(want));
    expect(Array.from((await gemm(a, b)).data)).toEqual(Array.from(want));
  });

  it('alpha, beta and an existing output', async () => {
    const a = Tensor.random([20, 30], 3), b = Tensor.random([30, 10], 4), c = Tensor.random([20, 10], 5);
    const c0 = c.toArray();
    await gemm(a, b, { alpha: 0.5, beta: -2, out: c });
    const want = gemmRef(a.data, b.data, 20, 10, 30, { alpha: 0.5, beta: -2, c: c0 });
    expect(worstError(c.data, want, 1e-5, 1e-4)).toBeLessThanOrEqual(1);
  });

  it('beta = 0 ignores NaN already in the output; NaN and Inf in inputs propagate', async () => {
    const a = Tensor.random([8, 8], 6), b = Tensor.random([8, 8], 7);
    const c = Tensor.zeros([8, 8]);
    c.data.fill(NaN);
    await gemm(a, b, { out: c, beta: 0 });
    expect(c.data.every(Number.isFinite)).toBe(true);
    a.set(NaN, 2, 3);
    b.set(Infinity, 1, 5);
    const d = await gemm(a, b);
    for (let j = 0; j < 8; j++) expect(Number.isNaN(d.get(2, j))).toBe(true);
    // Row 0 meets the Inf in column 5 through a[0][1]; the sign depends on a[0][1].
    expect(Math.abs(d.get(0, 5))).toBe(Infinity);
    expect(Number.isFinite(d.get(0, 4))).toBe(true);
  });

  it('k = 0 gives beta·C, m = 0 and n = 0 give empty results', async () => {
    const c = Tensor.fromArray([1, 2, 3, 4], [2, 2]);
    await gemm(Tensor.zeros([2, 0]), Tensor.zeros([0, 2]), { out: c, beta: 3 });
    expect(Array.from(c.data)).toEqual([3, 6, 9, 12]);
    expect((await gemm(Tensor.zeros([0, 4]), Tensor.zeros([4, 3]))).shape).toEqual([0, 3]);
    expect((await gemm(Tensor.zeros([2, 4]), Tensor.zeros([4, 0]))).shape).toEqual([2, 0]);
  });

  it('views: transposed and sliced tensors map to leading dimensions without copies', async () => {
    const base = Tensor.random([40, 50], 8);
    const a = base.slice(0, 3, 23).slice(1, 5, 35); // 20x30 view with ld 50
    const b = Tensor.random([10, 30], 9).transpose(); // 30x10, column-major
    const c = await gemm(a, b);
    const want = gemmRef(a.toArray(), b.toArray(), 20, 10, 30);
    expect(worstError(c.data, want, 1e-5, 1e-3)).toBeLessThanOrEqual(1);
    // Column-major output view.
    const outT = Tensor.zeros([10, 20]).transpose();
    await gemm(a, b, { out: outT });
    expect(worstError(outT.toArray(), want, 1e-5, 1e-3)).toBeLessThanOrEqual(1);
  });

  it('BLAS-style sgemm: column-major with padded leading dimensions', async () => {
    const m = 5, n = 4, k = 3, lda = 7, ldb = 6, ldc = 9;
    const a = new Float32Array(lda * k), b = new Float32Array(ldb * n), c = new Float32Array(ldc * n).fill(-1);
    const A = new Float64Array(m * k), B = new Float64Array(k * n);
    for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) a[p * lda + i] = A[i * k + p] = i - p;
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) b[j * ldb + p] = B[p * n + j] = p * j + 1;
    await sgemm({ layout: 'col', m, n, k, a, lda, b, ldb, c, ldc, alpha: 2 });
    const want = gemmRef(A, B, m, n, k, { alpha: 2 });
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) expect(c[j * ldc + i]).toBe(want[i * n + j]);
    // Padding between columns is untouched.
    expect(c[m]).toBe(-1);
    const r = new Float32Array(m * n);
    sgemmSync({ m, n, k, a: Float32Array.from(A), lda: k, b: Float32Array.from(B), ldb: n, c: r, ldc: n, alpha: 2 });
    expect(Array.from(r)).toEqual(Array.from(want));
  });

  it('the pool computes the same with its threads sleeping at once or spinning long between jobs', async () => {
    const before = spinMicros(), threads = numThreads();
    const a = Tensor.random([257, 129], 11), b = Tensor.random([129, 200], 12);
    try {
      setNumThreads(2);
      const ref = gemmSync(a, b).data;
      for (const us of [0, 100, 5000]) {
        setSpinMicros(us);
        expect(spinMicros()).toBe(us);
        for (let i = 0; i < 3; i++) {
          expect(Array.from((await gemm(a, b)).data)).toEqual(Array.from(ref));
          expect(Array.from(gemmSync(a, b).data)).toEqual(Array.from(ref));
        }
      }
    } finally {
      setSpinMicros(before);
      setNumThreads(threads);
    }
  });

  it('a background worker thread runs its kernels alone, at idle priority, and leaves the pool to the others', async () => {
    const { Worker } = await import('node:worker_threads');
    const threads = numThreads();
    const w = new Worker(new URL('./fixtures/background-thread.mjs', import.meta.url));
    const got = await new Promise<{ before: number; granted: boolean; after: number; exact: boolean }>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(got.before).toBe(threads);
    expect(got.after).toBe(1);
    expect(got.exact).toBe(true);
    expect(got.granted).toBe(process.platform === 'linux');
    expect(numThreads()).toBe(threads);
  });

  it('large K stays accurate', async () => {
    const a = Tensor.random([3, 20000], 10), b = Tensor.random([20000, 5], 11);
    const c = await gemm(a, b);
    const { atol, rtol } = tol(20000);
    expect(worstError(c.data, gemmRef(a.data, b.data, 3, 5, 20000), atol, rtol)).toBeLessThanOrEqual(1);
  });

  it('PackedWeights multiplies like gemm, sync and async, and refuses use after dispose', async () => {
    const w = Tensor.random([64, 48], 12), x = Tensor.random([9, 64], 13);
    const packed = new PackedWeights(w);
    const want = gemmRef(x.data, w.data, 9, 48, 64);
    expect(worstError((await packed.matmul(x)).data, want, 1e-5, 1e-3)).toBeLessThanOrEqual(1);
    expect(worstError(packed.matmulSync(x).data, want, 1e-5, 1e-3)).toBeLessThanOrEqual(1);
    const wt = new PackedWeights(Tensor.from(w.transpose().toArray(), [48, 64]), { transB: true });
    expect(worstError(wt.matmulSync(x).data, want, 1e-5, 1e-3)).toBeLessThanOrEqual(1);
    packed.dispose();
    expect(packed.disposed).toBe(true);
    expect(() => packed.matmulSync(x)).toThrow(/disposed PackedWeights/);
    await expect(packed.matmul(x)).rejects.toThrow(TypeError);
  });
});

describe('conv2d', () => {
  const cases = [
    { name: '1x1 image, 1x1 kernel', x: [1, 1, 1, 1], w: [1, 1, 1, 1], o: {} },
    { name: '3x3 pad 1', x: [2, 3, 7, 6], w: [4, 3, 3, 3], o: { padding: 1 } },
    { name: 'stride 2, odd sizes', x: [1, 5, 9, 11], w: [3, 5, 3, 2], o: { stride: 2 } },
    { name: 'dilation 2', x: [1, 2, 10, 10], w: [3, 2, 3, 3], o: { dilation: 2, padding: 2 } },
    { name: 'groups 2', x: [2, 4, 6, 6], w: [6, 2, 3, 3], o: { groups: 2, padding: [1, 0] } },
    { name: 'depthwise', x: [1, 8, 9, 9], w: [8, 1, 3, 3], o: { groups: 8, padding: 1 } },
    { name: '1x1 strided', x: [2, 6, 8, 8], w: [5, 6, 1, 1], o: { stride: 2 } },
    { name: 'padding larger than kernel', x: [1, 2, 3, 3], w: [2, 2, 2, 2], o: { padding: 3 } },
    { name: 'stride larger than kernel', x: [1, 3, 12, 12], w: [2, 3, 2, 2], o: { stride: [4, 3] } },
    { name: '7x7 stride 2', x: [1, 3, 20, 20], w: [4, 3, 7, 7], o: { stride: 2, padding: 3 } },
  ];
  for (const c of cases) {
    it(`${c.name}: forward and backward match the reference`, async () => {
      const x = Tensor.random(c.x, 21), w = Tensor.random(c.w, 22), bias = Tensor.random([c.w[0]], 23);
      const p = conv2dParams(c.x, c.w, c.o);
      const k = p.cIn / p.groups * p.kh * p.kw;
      const { atol, rtol } = tol(k);
      const y = await conv2d(x, w, bias, c.o);
      expect(y.shape).toEqual([p.n, p.cOut, p.outH, p.outW]);
      expect(worstError(y.data, convRef(x.data, w.data, bias.data, p), atol, rtol)).toBeLessThanOrEqual(1);
      expect(worstError(conv2dSync(x, w, null, c.o).data, convRef(x.data, w.data, null, p), atol, rtol)).toBeLessThanOrEqual(1);
      const dy = Tensor.random(y.shape, 24);
      const g = await conv2dBackward(x, w, dy, c.o);
      const want = convBackwardRef(x.data, w.data, dy.data, p);
      const kb = p.n * p.outH * p.outW * 4;
      expect(worstError(g.dx!.data, want.dx, tol(kb).atol, tol(kb).rtol)).toBeLessThanOrEqual(1);
      expect(worstError(g.dw!.data, want.dw, tol(kb).atol, tol(kb).rtol)).toBeLessThanOrEqual(1);
      expect(worstError(g.db!.data, want.db, tol(kb).atol, tol(kb).rtol)).toBeLessThanOrEqual(1);
      const s = conv2dBackwardSync(x, w, dy, { ...c.o, input: false, bias: false });
      expect(s.dx).toBeUndefined();
      expect(worstError(s.dw!.data, want.dw, tol(kb).atol, tol(kb).rtol)).toBeLessThanOrEqual(1);
    });
  }

  it('NaN and Inf in the input propagate to the outputs that read them', async () => {
    const x = Tensor.random([1, 1, 5, 5], 25), w = Tensor.fromArray(new Array(9).fill(1), [1, 1, 3, 3]);
    x.set(NaN, 0, 0, 0, 0);
    x.set(Infinity, 0, 0, 4, 4);
    const y = await conv2d(x, w, null, { padding: 1 });
    expect(Number.isNaN(y.get(0, 0, 0, 0))).toBe(true);
    expect(Number.isNaN(y.get(0, 0, 1, 1))).toBe(true);
    expect(y.get(0, 0, 4, 4)).toBe(Infinity);
    expect(Number.isFinite(y.get(0, 0, 2, 2))).toBe(true);
  });
});

describe('outputs the kernels allocate', () => {
  it('come from memory glibc keeps for reuse (mallocTuning), unless the process says otherwise', () => {
    const glibc = Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);
    expect(mallocTuning()).toEqual(glibc ? { tuned: true, mmapThresholdBytes: 32 << 20, trimThresholdBytes: 64 << 20 } : { tuned: false, mmapThresholdBytes: 0, trimThresholdBytes: 0 });
    // In a fresh process: the opt-out and a user's own malloc settings leave malloc alone.
    const probe = (env: Record<string, string>) => JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e',
      `import { mallocTuning } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)}; console.log(JSON.stringify(mallocTuning()));`],
    { env: { ...process.env, ...env }, encoding: 'utf8' })) as { tuned: boolean };
    expect(probe({ KINTSUGI_MALLOC_TUNE: '0' }).tuned).toBe(false);
    expect(probe({ MALLOC_TRIM_THRESHOLD_: '1048576' }).tuned).toBe(false);
    expect(probe({}).tuned).toBe(glibc);
  });
  // gemm and conv2d give their fresh outputs uninitialised (Tensor.empty): every element must be
  // written. An output pre-filled with NaN shows it: the results must equal, bit for bit.
  const nanLike = (shape: readonly number[]) => {
    const t = Tensor.empty(shape);
    t.data.fill(NaN);
    return t;
  };
  it('Tensor.empty: shape, dtype and length; small ones zeroed; bad dtype refused', () => {
    for (const dtype of ['float32', 'float64', 'int32', 'uint8'] as const) {
      const t = Tensor.empty([33, 65], dtype);
      expect(t.shape).toEqual([33, 65]);
      expect(t.dtype).toBe(dtype);
      expect(t.data.length).toBe(33 * 65);
    }
    expect(Array.from(Tensor.empty([3, 5]).data)).toEqual(new Array(15).fill(0));
    expect(Tensor.empty([0, 7]).data.length).toBe(0);
    expect(() => Tensor.empty([2, 2], 'float16' as never)).toThrow(/dtype/);
    expect(() => Tensor.empty([2, -1])).toThrow(/shape/);
  });
  it('gemm, PackedWeights and conv2d write every element of a fresh output', async () => {
    const a = Tensor.random([70, 90], 1), b = Tensor.random([90, 130], 2);
    const ref = await gemm(a, b);
    expect(Array.from(ref.data)).toEqual(Array.from((await gemm(a, b, { out: nanLike([70, 130]) })).data));
    const packed = new PackedWeights(b);
    expect(Array.from(packed.matmulSync(a).data)).toEqual(Array.from(ref.data));
    packed.dispose();
    for (const c of [
      { x: [2, 6, 20, 20], w: [16, 6, 3, 3], o: { padding: 1 } },
      { x: [2, 8, 21, 21], w: [32, 8, 1, 1], o: { stride: 2 } },
      { x: [1, 8, 30, 30], w: [8, 1, 3, 3], o: { groups: 8, padding: 1 } },
      { x: [2, 4, 17, 17], w: [6, 2, 3, 3], o: { groups: 2 } },
    ]) {
      const x = Tensor.random(c.x, 3), w = Tensor.random(c.w, 4), bias = Tensor.random([c.w[0]], 5);
      const y = await conv2d(x, w, bias, c.o);
      expect(y.data.length * 4).toBeGreaterThanOrEqual(4096);
      const want = Array.from((await conv2d(x, w, bias, { ...c.o, out: nanLike(y.shape) })).data);
      expect(Array.from(y.data)).toEqual(want);
      const pw = new PackedConv2dWeights(w, c.o);
      // (its own kernel: another summation order than conv2d's, so compared with itself)
      expect(Array.from((await pw.forward(x, bias)).data)).toEqual(Array.from((await pw.forward(x, bias, { out: nanLike(y.shape) })).data));
      pw.dispose();
    }
  });
});

describe('PackedConv2dWeights', () => {
  const cases = [
    { name: '3x3 pad 1, odd width, 48 channels', x: [2, 5, 7, 13], w: [48, 5, 3, 3], o: { padding: 1 } },
    { name: 'stride 2, 80 channels (a block and a vector)', x: [1, 4, 11, 15], w: [80, 4, 3, 3], o: { stride: 2, padding: 1 } },
    { name: '1x1 stride 2 (downsample)', x: [1, 8, 14, 13], w: [64, 8, 1, 1], o: { stride: 2 } },
    { name: '7x7 stride 2 pad 3', x: [1, 3, 20, 20], w: [64, 3, 7, 7], o: { stride: 2, padding: 3 } },
    { name: 'dilation, padding past the kernel, 70 channels', x: [1, 3, 9, 10], w: [70, 3, 3, 3], o: { dilation: 2, padding: 4 } },
    { name: 'groups (raw weights kept)', x: [2, 4, 6, 6], w: [32, 2, 3, 3], o: { groups: 2, padding: 1 } },
    { name: 'few output channels (raw weights kept)', x: [1, 3, 6, 5], w: [5, 3, 3, 3], o: { padding: 1 } },
  ];
  for (const c of cases) {
    it(`${c.name}: forward matches conv2d's reference`, async () => {
      const x = Tensor.random(c.x, 31), w = Tensor.random(c.w, 32), bias = Tensor.random([c.w[0]], 33);
      const p = conv2dParams(c.x, c.w, c.o);
      const { atol, rtol } = tol(p.cIn / p.groups * p.kh * p.kw);
      const packed = new PackedConv2dWeights(w, c.o);
      expect(packed.shape).toEqual(c.w);
      const y = await packed.forward(x, bias);
      expect(y.shape).toEqual([p.n, p.cOut, p.outH, p.outW]);
      expect(worstError(y.data, convRef(x.data, w.data, bias.data, p), atol, rtol)).toBeLessThanOrEqual(1);
      expect(worstError(packed.forwardSync(x).data, convRef(x.data, w.data, null, p), atol, rtol)).toBeLessThanOrEqual(1);
      expect(worstError((await conv2d(x, packed, bias, c.o)).data, convRef(x.data, w.data, bias.data, p), atol, rtol)).toBeLessThanOrEqual(1);
      // Small integers: every sum is exact, so the packed path equals the plain one bit for bit.
      const xi = smallInts(c.x, 34), wi = smallInts(c.w, 35);
      const pi = new PackedConv2dWeights(wi, c.o);
      expect(Array.from(pi.forwardSync(xi).data)).toEqual(Array.from(conv2dSync(xi, wi, null, c.o).data));
      pi.dispose();
      packed.dispose();
    });
  }

  it('one packing serves other input sizes and strides; out is overwritten', async () => {
    const w = Tensor.random([32, 4, 3, 3], 36), packed = new PackedConv2dWeights(w, { padding: 1 });
    for (const [shape, o] of [[[1, 4, 9, 7], { padding: 1 }], [[2, 4, 5, 12], { stride: 2, padding: 0 }]] as const) {
      const x = Tensor.random([...shape], 37);
      const p = conv2dParams([...shape], [32, 4, 3, 3], o);
      const out = Tensor.zeros([p.n, p.cOut, p.outH, p.outW]);
      out.data.fill(NaN);
      const y = conv2dSync(x, packed, null, { ...o, out });
      expect(y).toBe(out);
      const { atol, rtol } = tol(36);
      expect(worstError(y.data, convRef(x.data, w.data, null, p), atol, rtol)).toBeLessThanOrEqual(1);
    }
  });

  it('NaN and Inf in the input propagate', async () => {
    const x = Tensor.random([1, 2, 6, 6], 38), w = Tensor.fromArray(new Array(16 * 2 * 9).fill(0.5), [16, 2, 3, 3]);
    x.set(NaN, 0, 0, 0, 0);
    x.set(Infinity, 0, 1, 5, 5);
    const y = await new PackedConv2dWeights(w, { padding: 1 }).forward(x);
    for (let c = 0; c < 16; c++) {
      expect(Number.isNaN(y.get(0, c, 0, 0))).toBe(true);
      expect(Number.isNaN(y.get(0, c, 1, 1))).toBe(true);
      expect(y.get(0, c, 5, 5)).toBe(Infinity);
      expect(Number.isFinite(y.get(0, c, 3, 3))).toBe(true);
    }
  });

  it('disposed weights, wrong shapes and wrong groups raise clear errors', async () => {
    const w = Tensor.random([32, 4, 3, 3], 39), packed = new PackedConv2dWeights(w);
    expect(() => packed.forwardSync(Tensor.random([1, 5, 6, 6], 40))).toThrow(RangeError);
    expect(() => packed.forwardSync(Tensor.random([1, 4, 2, 2], 40))).toThrow(RangeError);
    expect(() => conv2dSync(Tensor.random([1, 4, 6, 6], 40), packed, null, { groups: 2 })).toThrow(RangeError);
    expect(() => packed.forwardSync(Tensor.random([1, 4, 6, 6], 40), Tensor.zeros([31]))).toThrow(RangeError);
    expect(() => new PackedConv2dWeights(Tensor.random([32, 3, 3, 3], 41), { groups: 5 })).toThrow(RangeError);
    expect(() => new PackedConv2dWeights(Tensor.random([32, 4, 3], 41) as never)).toThrow();
    packed.dispose();
    expect(packed.disposed).toBe(true);
    expect(() => packed.forwardSync(Tensor.random([1, 4, 6, 6], 40))).toThrow(/disposed PackedConv2dWeights/);
    await expect(packed.forward(Tensor.random([1, 4, 6, 6], 40))).rejects.toThrow(TypeError);
  });
});

describe('checksums', () => {
  it('row, column and weighted sums in float64 for float32 and float64 inputs', async () => {
    for (const dtype of ['float32', 'float64'] as const) {
      const a = Tensor.zeros([13, 7], dtype);
      a.data.forEach((_, i) => (a.data[i] = Math.sin(i) * 10));
      const w = Tensor.zeros([7], dtype), v = Tensor.zeros([13], dtype);
      w.data.forEach((_, i) => (w.data[i] = i + 1));
      v.data.forEach((_, i) => (v.data[i] = 1 - i));
      const rs = await rowSums(a), cs = colSumsSync(a), wr = await weightedRowSums(a, w), wc = await weightedColSums(a, v);
      for (let i = 0; i < 13; i++) {
        let s = 0, sw = 0;
        for (let j = 0; j < 7; j++) (s += a.get(i, j)), (sw += (j + 1) * a.get(i, j));
        expect(rs.get(i)).toBeCloseTo(s, 9);
        expect(wr.get(i)).toBeCloseTo(sw, 9);
      }
      for (let j = 0; j < 7; j++) {
        let s = 0, sw = 0;
        for (let i = 0; i < 13; i++) (s += a.get(i, j)), (sw += (1 - i) * a.get(i, j));
        expect(cs.get(j)).toBeCloseTo(s, 9);
        expect(wc.get(j)).toBeCloseTo(sw, 9);
      }
    }
  });

  it('views with a leading dimension, and empty matrices', async () => {
    const base = Tensor.random([10, 12], 26);
    const view = base.slice(1, 2, 9);
    const rs = rowSumsSync(view);
    for (let i = 0; i < 10; i++) {
      let s = 0;
      for (let j = 2; j < 9; j++) s += base.get(i, j);
      expect(rs.get(i)).toBeCloseTo(s, 5);
    }
    expect((await colSums(Tensor.zeros([0, 4]))).toArray()).toEqual(new Float64Array(4));
    // Transposed view is copied once and summed correctly.
    const cs = await colSums(base.transpose());
    expect(cs.shape).toEqual([10]);
    expect(cs.get(3)).toBeCloseTo(rs.get(3) + base.get(3, 0) + base.get(3, 1) + base.get(3, 9) + base.get(3, 10) + base.get(3, 11), 5);
  });
});

describe('parity', () => {
  it('XOR encode/decode is exact for odd lengths and any block count', async () => {
    for (const len of [0, 1, 7, 63, 64, 65, 4099]) {
      for (const k of [1, 2, 5]) {
        const blocks = Array.from({ length: k }, (_, b) => Uint8Array.from({ length: len }, (_, i) => (i * 31 + b * 7) & 255));
        const p = await xorEncode(blocks);
        for (let i = 0; i < len; i++) expect(p[i]).toBe(blocks.reduce((acc, bl) => acc ^ bl[i], 0));
        const recovered = xorEncodeSync([p, ...blocks.slice(1)]);
        expect(Buffer.from(recovered).equals(Buffer.from(blocks[0]))).toBe(true);
      }
    }
  });

  it('XOR delta update keeps the parity in step when a block changes', async () => {
    const blocks = [new Uint8Array([1, 2, 3, 4, 5]), new Uint8Array([9, 8, 7, 6, 5])];
    const p = await xorEncode(blocks);
    const updated = new Uint8Array([0, 0, 3, 3, 3]);
    const delta = xorEncodeSync([blocks[0], updated]);
    await xorInto(p, delta);
    expect(Array.from(p)).toEqual(Array.from(xorEncodeSync([updated, blocks[1]])));
  });

  it('float-sum parity with coefficients recovers any one block', async () => {
    const blocks = [0, 1, 2].map((i) => Tensor.random([1001], 30 + i).data);
    const coeffs = [1, 2, -0.5];
    const p = await sumEncode(blocks, coeffs);
    for (let i = 0; i < 1001; i++) expect(p[i]).toBeCloseTo(blocks[0][i] + 2 * blocks[1][i] - 0.5 * blocks[2][i], 5);
    for (let missing = 0; missing < 3; missing++) {
      const others = [0, 1, 2].filter((i) => i !== missing);
      const got = await sumDecode(p, others.map((i) => blocks[i]), others.map((i) => coeffs[i]), coeffs[missing]);
      expect(worstError(got, blocks[missing], 1e-5, 1e-5)).toBeLessThanOrEqual(1);
    }
    const plain = sumEncodeSync(blocks);
    expect(worstError(plain, blocks[0].map((v, i) => v + blocks[1][i] + blocks[2][i]), 1e-6, 1e-6)).toBeLessThanOrEqual(1);
  });
});

describe('Reed-Solomon', () => {
  it('RS(4+2) rebuilds every pair of lost blocks bit-exactly; first parity is the XOR', async () => {
    const code = new ReedSolomonCode(4, 2);
    const data = [0, 1, 2, 3].map((b) => Uint8Array.from({ length: 1003 }, (_, i) => (i * 13 + b * 101 + ((i * b) >> 3)) & 255));
    const parity = await code.encode(data);
    expect(Array.from(parity[0])).toEqual(Array.from(xorEncodeSync(data)));
    const all = [...data, ...parity];
    for (let x = 0; x < 6; x++)
      for (let y = x; y < 6; y++) {
        const blocks = all.map((b, i) => (i === x || i === y ? null : b.slice()));
        const rebuilt = await code.decode(blocks);
        rebuilt.forEach((b, i) => expect(Buffer.from(b).equals(Buffer.from(all[i])), `lost ${x},${y} block ${i}`).toBe(true));
      }
  });

  it('delta update equals re-encoding after a block changes', async () => {
    const code = new ReedSolomonCode(3, 3);
    const data = [5, 6, 7].map((s) => Uint8Array.from({ length: 77 }, (_, i) => (i * s) & 255));
    const parity = code.encodeSync(data);
    const changed = data[1].map((v, i) => (i % 3 ? v : 255 - v));
    await code.updateParity(1, xorEncodeSync([data[1], changed]), parity);
    const fresh = code.encodeSync([data[0], changed, data[2]]);
    parity.forEach((p, i) => expect(Array.from(p)).toEqual(Array.from(fresh[i])));
  });
});

describe('embedding bags', () => {
  const rows = 50, dim = 6;
  const table = Tensor.random([rows, dim], 40);
  const indices = Int32Array.from([3, 3, 7, 49, 0, 12, 12, 12]);
  const offsets = Int32Array.from([0, 3, 3, 4, 8]); // bag 1 is empty
  const weights = Float32Array.from([1, 2, 0.5, -1, 3, 1, 1, 1]);

  function ref(mode: 'sum' | 'mean', w?: Float32Array): Float64Array {
    const out = new Float64Array(4 * dim);
    for (let b = 0; b < 4; b++) {
      const count = offsets[b + 1] - offsets[b];
      for (let j = offsets[b]; j < offsets[b + 1]; j++)
        for (let d = 0; d < dim; d++) out[b * dim + d] += (w ? w[j] : 1) * table.data[indices[j] * dim + d] / (mode === 'mean' ? count : 1);
    }
    return out;
  }

  it('forward: sum, mean, per-index weights, empty bags give zeros', async () => {
    expect(worstError((await embeddingBag(table, indices, offsets)).data, ref('sum'), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
    expect(worstError(embeddingBagSync(table, indices, offsets, { mode: 'mean' }).data, ref('mean'), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
    const wsum = await embeddingBag(table, indices, offsets, { weights });
    expect(worstError(wsum.data, ref('sum', weights), 1e-6, 1e-5)).toBeLessThanOrEqual(1);
    expect(Array.from(wsum.data.subarray(dim, 2 * dim))).toEqual(new Array(dim).fill(0));
  });

  it('backward scatter-adds with repeated rows; into= accumulates in place', async () => {
    const gradOut = Tensor.random([4, dim], 41);
    for (const mode of ['sum', 'mean'] as const) {
      const g = await embeddingBagBackward(gradOut, indices, offsets, { rows, mode, weights, scale: 0.5 });
      const want = new Float64Array(rows * dim);
      for (let b = 0; b < 4; b++) {
        const count = offsets[b + 1] - offsets[b];
        for (let j = offsets[b]; j < offsets[b + 1]; j++)
          for (let d = 0; d < dim; d++) want[indices[j] * dim + d] += (0.5 * weights[j] * gradOut.data[b * dim + d]) / (mode === 'mean' ? count : 1);
      }
      expect(worstError(g.data, want, 1e-6, 1e-5)).toBeLessThanOrEqual(1);
    }
    const into = Tensor.fromArray(new Array(rows * dim).fill(1), [rows, dim]);
    embeddingBagBackwardSync(gradOut, indices, offsets, { into });
    expect(into.get(3, 0)).toBeCloseTo(1 + 2 * gradOut.get(0, 0), 5);
    expect(into.get(1, 0)).toBe(1);
  });
});

describe('pairwise dots (DLRM interaction)', () => {
  // Float64 reference over the pairs in order: (1,0), (2,0), (2,1), … (with self: (0,0), (1,0), (1,1), …).
  function ref(z: Tensor<'float32'>, g: Tensor<'float32'>, self: boolean) {
    const [n, V, d] = z.shape, P = pairwiseDotCount(V, self);
    const out = new Float64Array(n * P), gz = new Float64Array(n * V * d);
    const at = (s: number, i: number, c: number) => z.data[(s * V + i) * d + c];
    for (let s = 0; s < n; s++) {
      let p = 0;
      for (let i = 0; i < V; i++)
        for (let j = 0; j < (self ? i + 1 : i); j++, p++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += at(s, i, c) * at(s, j, c);
          out[s * P + p] = dot;
          const gv = g.data[s * P + p];
          for (let c = 0; c < d; c++) {
            gz[(s * V + i) * d + c] += gv * at(s, j, c);
            gz[(s * V + j) * d + c] += gv * at(s, i, c);
          }
        }
    }
    return { out, gz };
  }

  it('forward and backward match a float64 reference on edge and DLRM shapes, with and without self', async () => {
    const shapes = [[1, 1, 1], [1, 2, 1], [3, 5, 7], [2, 27, 16], [5, 17, 33], [64, 27, 16], [2, 9, 130], [0, 27, 16], [3, 4, 0]];
    for (const [n, V, d] of shapes) {
      for (const self of [false, true]) {
        const z = Tensor.random([n, V, d], 50 + V);
        const P = pairwiseDotCount(V, self);
        const g = Tensor.random([n, P], 60 + d);
        const want = ref(z, g, self);
        const out = await pairwiseDots(z, { self });
        expect(out.shape).toEqual([n, P]);
        expect(worstError(out.data, want.out, 1e-6 * (d + 1), 1e-5)).toBeLessThanOrEqual(1);
        const gz = await pairwiseDotsBackward(z, g, { self });
        expect(gz.shape).toEqual([n, V, d]);
        expect(worstError(gz.data, want.gz, 2e-6 * (V * d + 1), 1e-5)).toBeLessThanOrEqual(1);
        // The sync calls give the same bits, and out= writes in place.
        expect(pairwiseDotsSync(z, { self }).data).toEqual(out.data);
        const into = Tensor.zeros([n, V, d]);
        expect(pairwiseDotsBackwardSync(z, g, { self, out: into })).toBe(into);
        expect(into.data).toEqual(gz.data);
      }
    }
  });

  it('are bitwise the same on 1 and 2 threads, and NaN reaches every dot and gradient it is in', async () => {
    const before = numThreads();
    const z = Tensor.random([300, 27, 16], 70), g = Tensor.random([300, pairwiseDotCount(27)], 71);
    try {
      setNumThreads(1);
      const a = [pairwiseDotsSync(z).data, pairwiseDotsBackwardSync(z, g).data];
      setNumThreads(2);
      const b = [await pairwiseDots(z), await pairwiseDotsBackward(z, g)].map((t) => t.data);
      expect(b[0]).toEqual(a[0]);
      expect(b[1]).toEqual(a[1]);
    } finally {
      setNumThreads(before);
    }
    const w = Tensor.random([1, 3, 2], 72);
    w.data[2 * 2 + 1] = NaN; // vector 2
    const out = pairwiseDotsSync(w); // pairs (1,0), (2,0), (2,1)
    expect([Number.isNaN(out.data[0]), Number.isNaN(out.data[1]), Number.isNaN(out.data[2])]).toEqual([false, true, true]);
    // 0 * NaN is NaN in the gradients of vectors 0 and 1 (column 1); vector 2 is in no pair with itself.
    const gz = pairwiseDotsBackwardSync(w, Tensor.zeros([1, 3]));
    expect([Number.isNaN(gz.data[1]), Number.isNaN(gz.data[3]), Number.isNaN(gz.data[5])]).toEqual([true, true, false]);
    expect([Number.isNaN(gz.data[0]), Number.isNaN(gz.data[2])]).toEqual([false, false]);
  });

  it('reject bad shapes, dtypes and options with clear errors', async () => {
    const z = Tensor.random([2, 4, 3], 73);
    expect(() => pairwiseDotsSync(Tensor.random([8, 3], 74))).toThrow(/a 3-D Tensor for z/);
    expect(() => pairwiseDotsSync(Tensor.zeros([2, 4, 3], 'int32') as unknown as Tensor<'float32'>)).toThrow(/dtype float32/);
    expect(() => pairwiseDotsSync(z, { self: 1 as unknown as boolean })).toThrow(/options.self/);
    expect(() => pairwiseDotsSync(z, { out: Tensor.zeros([2, 5]) })).toThrow(/shape \[2,6\] for options.out/);
    await expect(pairwiseDotsBackward(z, Tensor.zeros([2, 10]))).rejects.toThrow(/shape \[2, 6\] \(samples, pairs\) for gradOut/);
    expect(() => pairwiseDotsBackwardSync(z, Tensor.zeros([2, 10]), { self: true, out: Tensor.zeros([2, 4, 4]) })).toThrow(/options.out/);
    const gone = Tensor.random([2, 4, 3], 75);
    gone.dispose();
    expect(() => pairwiseDotsSync(gone)).toThrow(/a live Tensor/);
  });
});

describe('row moves', () => {
  it('gather and scatter (copy and xor) keep every bit, repeated rows included', () => {
    const width = 5, table = Int32Array.from({ length: 7 * width }, (_, i) => (i * 2654435761) | 0);
    table[3] = 0x7fc00001;  // a NaN payload
    const rows = Int32Array.from([0, 6, 2, 2]);
    const all = gatherRowsSync(table, width, rows);
    expect(Array.from(all.subarray(0, width))).toEqual(Array.from(table.subarray(0, width)));
    expect(Array.from(all.subarray(width, 2 * width))).toEqual(Array.from(table.subarray(6 * width, 7 * width)));
    const part = gatherRowsSync(table, width, rows, { col: 1, cols: 3 });
    expect(Array.from(part.subarray(0, 3))).toEqual(Array.from(table.subarray(1, 4)));
    const src = Int32Array.from({ length: rows.length * width }, (_, i) => i + 1);
    const copied = table.slice();
    scatterRowsSync(copied, width, rows, src);
    expect(Array.from(copied.subarray(2 * width, 3 * width))).toEqual(Array.from(src.subarray(3 * width)));  // the last entry wins
    const xored = table.slice();
    scatterRowsSync(xored, width, rows, src, { xor: true });
    for (let j = 0; j < width; j++) expect(xored[2 * width + j]).toBe(table[2 * width + j] ^ src[2 * width + j] ^ src[3 * width + j]);
    expect(Array.from(xored.subarray(width, 2 * width))).toEqual(Array.from(table.subarray(width, 2 * width)));  // untouched row
  });

  it('a present mask installs each row once, by its first entry, and marks it', () => {
    const width = 3, table = new Int32Array(6 * width).fill(-1);
    const present = Uint8Array.of(0, 1, 0, 0, 0, 0);  // row 1 was installed before
    const rows = Int32Array.of(1, 4, 2, 4), src = Int32Array.from({ length: rows.length * width }, (_, i) => i + 1);
    scatterRowsSync(table, width, rows, src, { present });
    expect(Array.from(present)).toEqual([0, 1, 1, 0, 1, 0]);
    expect(Array.from(table.subarray(width, 2 * width))).toEqual([-1, -1, -1]);  // skipped: present already
    expect(Array.from(table.subarray(4 * width, 5 * width))).toEqual([4, 5, 6]);  // the first entry of row 4
    expect(Array.from(table.subarray(2 * width, 3 * width))).toEqual([7, 8, 9]);
    expect(Array.from(table.subarray(0, width))).toEqual([-1, -1, -1]);  // not listed
    // A second install of the same rows changes nothing.
    scatterRowsSync(table, width, rows, new Int32Array(src.length), { present });
    expect(Array.from(table.subarray(4 * width, 5 * width))).toEqual([4, 5, 6]);
    expect(() => scatterRowsSync(table, width, rows, src, { present: new Uint8Array(5) })).toThrow('Expected a present mask of 6 bytes (one per table row) for present but received 5 bytes');
    expect(() => scatterRowsSync(table, width, rows, src, { present, xor: true })).toThrow(TypeError);
    expect(() => scatterRowsSync(table, width, rows, src, { present: [0, 0] as unknown as Uint8Array })).toThrow(TypeError);
  });

  it('counts tally every row written, saturating at 255, beside a copy, an xor or a present mask', () => {
    const width = 2, table = new Int32Array(5 * width);
    const counts = Uint8Array.of(0, 254, 0, 255, 0);
    const rows = Int32Array.of(1, 1, 3, 2), src = Int32Array.from({ length: rows.length * width }, (_, i) => i + 1);
    scatterRowsSync(table, width, rows, src, { xor: true, counts });
    expect(Array.from(counts)).toEqual([0, 255, 1, 255, 0]);
    expect(Array.from(table.subarray(width, 2 * width))).toEqual([1 ^ 3, 2 ^ 4]);
    const present = Uint8Array.of(0, 0, 1, 0, 0);  // row 2 is present: not written, not counted
    scatterRowsSync(table, width, Int32Array.of(2, 4), Int32Array.of(9, 9, 8, 8), { present, counts });
    expect(Array.from(counts)).toEqual([0, 255, 1, 255, 1]);
    expect(() => scatterRowsSync(table, width, rows, src, { counts: new Uint8Array(4) })).toThrow('Expected counts of 5 bytes (one per table row) for counts but received 4 bytes');
    expect(() => scatterRowsSync(table, width, rows, src, { counts: [0] as unknown as Uint8Array })).toThrow(/options.counts/);
    const shared = new Uint8Array(table.buffer, 0, 5);
    expect(() => scatterRowsSync(table, width, rows, src, { counts: shared })).toThrow(/memory not shared with table/);
  });

  it('large-page tables are zeroed, writable, usable by the row kernels and checked', () => {
    const t = largePageFloat32Array(3 * 1024 * 1024 + 5);  // not a whole number of huge pages
    expect(t.length).toBe(3 * 1024 * 1024 + 5);
    expect(t[0]).toBe(0);
    expect(t[t.length - 1]).toBe(0);
    t[t.length - 1] = 7;
    const words = new Int32Array(t.buffer, 0, 1024 * 1024);
    scatterRowsSync(words, 4, Int32Array.of(5), Int32Array.of(1, 2, 3, 4));
    expect(Array.from(gatherRowsSync(words, 4, Int32Array.of(5)))).toEqual([1, 2, 3, 4]);
    expect(() => largePageFloat32Array(0)).toThrow(RangeError);
    expect(() => largePageFloat32Array(1.5)).toThrow(RangeError);
  });

  it('shared large-page tables are zeroed, shared with workers and usable by every kernel', async () => {
    const t = sharedLargePageFloat32Array(5 * 1024 * 1024 + 3);
    expect(t.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(t[0]).toBe(0);
    expect(t[t.length - 1]).toBe(0);
    // Views of shared memory at an offset read and write the right words, as ordinary ones do.
    const words = new Int32Array(t.buffer, 64, 1024);
    scatterRowsSync(words, 4, Int32Array.of(5), Int32Array.of(1, 2, 3, 4));
    expect(Array.from(new Int32Array(t.buffer, 64 + 5 * 16, 4))).toEqual([1, 2, 3, 4]);
    expect(Array.from(gatherRowsSync(words, 4, Int32Array.of(5)))).toEqual([1, 2, 3, 4]);
    scatterRowsSync(words, 4, Int32Array.of(5), Int32Array.of(1, 1, 1, 1), { xor: true });
    expect(Array.from(gatherRowsSync(words, 4, Int32Array.of(5)))).toEqual([0, 3, 2, 5]);
    // An overlapping output is still refused for shared memory.
    expect(() => gatherRowsSync(words, 4, Int32Array.of(0), { out: new Int32Array(t.buffer, 64, 4) })).toThrow();
    // Another thread sees the writes.
    const { Worker } = await import('node:worker_threads');
    const w = new Worker('const { parentPort, workerData } = require("node:worker_threads"); parentPort.postMessage(new Int32Array(workerData, 64 + 5 * 16, 4)[3]);', { eval: true, workerData: t.buffer });
    expect(await new Promise((r) => w.once('message', r))).toBe(5);
    await w.terminate();
    expect(() => sharedLargePageFloat32Array(0)).toThrow(RangeError);
  });

  it('bad rows, widths and columns give clear errors', () => {
    const table = new Int32Array(20);
    expect(() => gatherRowsSync(table, 4, Int32Array.from([5]))).toThrow('Expected rows in [0, 5) for gather_rows for rows[0] but received 5');
    expect(() => scatterRowsSync(table, 4, Int32Array.from([0, -1]), new Int32Array(8), { xor: true })).toThrow('for rows[1] but received -1');
    expect(() => gatherRowsSync(table, 3, Int32Array.from([0]))).toThrow('Expected a whole number of 3-word rows for table but received 20 words');
    expect(() => gatherRowsSync(table, 0, Int32Array.from([0]))).toThrow(RangeError);
    expect(() => gatherRowsSync(table, 4, Int32Array.from([0]), { col: 3, cols: 2 })).toThrow(RangeError);
    expect(() => scatterRowsSync(table, 4, Int32Array.from([0, 1]), new Int32Array(4))).toThrow(RangeError);
    expect(() => gatherRowsSync(new Float32Array(20) as unknown as Int32Array, 4, Int32Array.from([0]))).toThrow(TypeError);
  });
});

describe('conv2d NHWC', () => {
  // [N, C, H, W] -> [N, H, W, C]
  const toNhwc = (t: Tensor<'float32'>): Tensor<'float32'> => {
    const [n, c, h, w] = t.shape;
    const r = Tensor.zeros([n, h, w, c]);
    for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) r.data[((i * h + y) * w + x) * c + k] = t.data[((i * c + k) * h + y) * w + x];
    return r;
  };
  const cases = [
    { name: '1x1', x: [2, 8, 5, 7], w: [6, 8, 1, 1], o: {} },
    { name: '1x1 stride 2', x: [2, 12, 9, 9], w: [10, 12, 1, 1], o: { stride: 2 } },
    { name: '3x3 pad 1, batch 3', x: [3, 6, 9, 8], w: [8, 6, 3, 3], o: { padding: 1 } },
    { name: '7x7 stride 2', x: [1, 3, 20, 20], w: [16, 3, 7, 7], o: { stride: 2, padding: 3 } },
    { name: 'dilation 2', x: [1, 5, 12, 11], w: [7, 5, 3, 3], o: { dilation: 2, padding: 2 } },
    { name: 'groups 2', x: [2, 6, 7, 7], w: [10, 3, 3, 3], o: { groups: 2, padding: 1 } },
    { name: 'depthwise', x: [3, 16, 9, 10], w: [16, 1, 3, 3], o: { groups: 16, padding: 1 } },
    { name: 'depthwise strided, odd sizes', x: [1, 5, 11, 9], w: [5, 1, 5, 3], o: { groups: 5, stride: [2, 1], padding: [2, 1] } },
    { name: 'odd sizes', x: [1, 7, 13, 11], w: [5, 7, 4, 2], o: { stride: [3, 1], padding: [1, 0], dilation: 2 } },
  ];
  for (const c of cases) {
    it(`${c.name}: equals the NCHW path on permuted tensors, forward and backward`, async () => {
      const o = { ...c.o, layout: 'nhwc' as const };
      const p = conv2dParams(c.x, c.w, c.o);
      // Small integers: every sum is exact in float32, so both layouts agree bit for bit.
      const xi = smallInts(c.x, 41), wi = smallInts(c.w, 42), bi = smallInts([c.w[0]], 43), dyi = smallInts([p.n, p.cOut, p.outH, p.outW], 44);
      const y = await conv2d(toNhwc(xi), wi, bi, o);
      expect(y.shape).toEqual([p.n, p.outH, p.outW, p.cOut]);
      expect(Array.from(y.data)).toEqual(Array.from(toNhwc(conv2dSync(xi, wi, bi, c.o)).data));
      expect(Array.from(conv2dSync(toNhwc(xi), wi, null, o).data)).toEqual(Array.from(toNhwc(conv2dSync(xi, wi, null, c.o)).data));
      const g = await conv2dBackward(toNhwc(xi), wi, toNhwc(dyi), o);
      const want = conv2dBackwardSync(xi, wi, dyi, c.o);
      expect(g.dx!.shape).toEqual([p.n, p.h, p.w, p.cIn]);
      expect(Array.from(g.dx!.data)).toEqual(Array.from(toNhwc(want.dx!).data));
      expect(Array.from(g.dw!.data)).toEqual(Array.from(want.dw!.data));
      expect(Array.from(g.db!.data)).toEqual(Array.from(want.db!.data));
      // Random values against the float64 reference (through the permutation), within tolerance.
      const x = Tensor.random(c.x, 45), w = Tensor.random(c.w, 46), dy = Tensor.random([p.n, p.cOut, p.outH, p.outW], 47);
      const k = p.cIn / p.groups * p.kh * p.kw;
      const yRef = Tensor.from(Float32Array.from(convRef(x.data, w.data, null, p)), [p.n, p.cOut, p.outH, p.outW]);
      expect(worstError(conv2dSync(toNhwc(x), w, null, o).data, toNhwc(yRef).data, tol(k).atol, tol(k).rtol)).toBeLessThanOrEqual(1);
      const gr = conv2dBackwardSync(toNhwc(x), w, toNhwc(dy), o), ref = convBackwardRef(x.data, w.data, dy.data, p);
      const kb = p.n * p.outH * p.outW * 4;
      const dxRef = Tensor.from(Float32Array.from(ref.dx), c.x);
      expect(worstError(gr.dx!.data, toNhwc(dxRef).data, tol(kb).atol, tol(kb).rtol)).toBeLessThanOrEqual(1);
      expect(worstError(gr.dw!.data, ref.dw, tol(kb).atol, tol(kb).rtol)).toBeLessThanOrEqual(1);
      // Packed NHWC weights give the same result.
      const packed = new PackedConv2dWeights(wi, o);
      expect(packed.layout).toBe('nhwc');
      expect(Array.from(packed.forwardSync(toNhwc(xi), bi).data)).toEqual(Array.from(y.data));
      expect(Array.from((await conv2d(toNhwc(xi), packed, bi, c.o)).data)).toEqual(Array.from(y.data));
      packed.dispose();
    });
  }

  it('NaN and Inf in the input propagate', async () => {
    const x = Tensor.random([1, 5, 5, 3], 48), w = Tensor.fromArray(new Array(4 * 3 * 9).fill(1), [4, 3, 3, 3]);
    x.set(NaN, 0, 0, 0, 1);
    x.set(Infinity, 0, 4, 4, 2);
    const y = await conv2d(x, w, null, { padding: 1, layout: 'nhwc' });
    for (let c = 0; c < 4; c++) {
      expect(Number.isNaN(y.get(0, 0, 0, c))).toBe(true);
      expect(Number.isNaN(y.get(0, 1, 1, c))).toBe(true);
      expect(y.get(0, 4, 4, c)).toBe(Infinity);
      expect(Number.isFinite(y.get(0, 2, 2, c))).toBe(true);
    }
  });

  it('wrong shapes per layout raise RangeErrors', async () => {
    const w = Tensor.random([4, 3, 3, 3], 49);
    // An NCHW-shaped x with layout 'nhwc': 7 channels where 3 are expected.
    expect(() => conv2dSync(Tensor.random([1, 3, 6, 7]), w, null, { layout: 'nhwc' })).toThrow(RangeError);
    expect(() => conv2dSync(Tensor.random([1, 3, 6, 7]), w, null, { layout: 'nhwc' })).toThrow(/layout 'nhwc'/);
    await expect(conv2d(Tensor.random([1, 6, 7, 3]), w, null, { layout: 'nchw' })).rejects.toThrow(RangeError);
    expect(() => conv2dSync(Tensor.random([1, 6, 7, 3]), w, null, { layout: 'NHWC' as never })).toThrow(RangeError);
    expect(() => conv2dSync(Tensor.random([1, 6, 7, 3]), w, null, { layout: 3 as never })).toThrow(TypeError);
    const x = Tensor.random([1, 6, 7, 3]);
    // dy must be [N, OH, OW, Cout].
    expect(() => conv2dBackwardSync(x, w, Tensor.random([1, 4, 4, 5]), { layout: 'nhwc' })).toThrow(/shape \[1,4,5,4\] \(layout 'nhwc'\)/);
    expect(() => conv2dSync(x, w, null, { layout: 'nhwc', out: Tensor.zeros([1, 4, 4, 5]) })).toThrow(RangeError);
    // Packed for one layout, called with the other.
    const packed = new PackedConv2dWeights(w, { layout: 'nhwc' });
    expect(() => conv2dSync(x, packed, null, { layout: 'nchw' })).toThrow(/the layout the weights were packed for/);
    expect(conv2dSync(x, packed).shape).toEqual([1, 4, 5, 4]);
  });
});
