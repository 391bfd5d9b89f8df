// The CUDA backend through the public API. Without a GPU (this machine, CI) the tests check the
// "no GPU" paths: clear errors with codes, never a crash. With one, every kernel is compared with
// the CPU implementation on random and edge shapes.
import { describe, expect, it } from 'vitest';

import {
  colSums, conv2d, conv2dBackward, cublasStatus, CudaEvent, cudaChecksum, cudaConv2d, cudaConv2dBackward, CudaStream, CudaUnavailableError,
  cudaEmbeddingBag, cudaEmbeddingBagBackward, cudaPairwiseDots, cudaPairwiseDotsBackward, cudaGemm, cudaMemoryInfo, cudaProperties, cudaStatus, cudaSumDecode, cudaSumEncode, cudaXorEncode,
  DeviceTensor, embeddingBag, gemm, pairwiseDotsBackwardSync, pairwiseDotsSync, rowSums, synchronize, Tensor, timeCuda, xorEncode, _native,
} from '../src/index.js';
import { worstError } from './reference.js';

const gpus = cudaStatus().deviceCount;

describe('CUDA without a GPU', () => {
  it.skipIf(gpus > 0)('reports why there is no device', () => {
    const s = cudaStatus();
    expect(s.deviceCount).toBe(0);
    expect(s.reason.length).toBeGreaterThan(10);
  });
  it.skipIf(gpus > 0)('every entry point fails with a clear error and a code', async () => {
    const attempts: (() => unknown)[] = [
      () => DeviceTensor.empty([4]),
      () => new CudaStream(),
      () => new CudaEvent(),
      () => cudaProperties(0),
      () => cudaMemoryInfo(0),
      () => synchronize(0),
    ];
    for (const attempt of attempts) {
      let error: unknown;
      try {
        await attempt();
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(CudaUnavailableError);
      expect((error as Error).message).toMatch(/No CUDA device is available: /);
      expect((error as CudaUnavailableError).code).toBe('KINTSUGI_UNSUPPORTED');
    }
    await expect(DeviceTensor.from(Tensor.random([2, 2]))).rejects.toBeInstanceOf(CudaUnavailableError);
  });
  it.skipIf(gpus > 0)('a CUDA runtime failure names the call and the CUDA error', () => {
    let error: (Error & { code?: string }) | undefined;
    try {
      new _native.CudaBuffer(0, 16);
    } catch (err) {
      error = err as Error & { code?: string };
    }
    if (cudaStatus().compiled) {
      expect(error?.message).toMatch(/^cudaGetDeviceCount failed: cudaError\w+ \(.+\)$/);
      expect(error?.code).toBe('KINTSUGI_DEVICE_ERROR');
    } else {
      expect(error?.message).toMatch(/without the CUDA backend/);
      expect(error?.code).toBe('KINTSUGI_UNSUPPORTED');
    }
  });
  it('cuBLAS status names the libraries it tried when it is missing', () => {
    const s = cublasStatus();
    if (s.available) expect(s.library).toMatch(/^libcublas\.so\.1[123]$/);
    else expect(s.reason).toMatch(/cuBLAS is not (available|usable)|without the CUDA backend/);
    if (!s.available && /not available/.test(s.reason ?? '')) expect(s.reason).toMatch(/libcublas\.so\.13.*libcublas\.so\.12.*libcublas\.so\.11/);
  });
});

// ---- On a GPU ----
const gpu = describe.runIf(gpus > 0);

function smallInts(shape: number[], seed: number, scale = 1): Tensor<'float32'> {
  const t = Tensor.zeros(shape);
  let s = seed;
  for (let i = 0; i < t.data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    t.data[i] = (((s >>> 16) % 9) - 4) * scale;
  }
  return t;
}

async function roundTrip(t: Tensor<'float32'>, dtype: 'float32' | 'float16' | 'bfloat16' = 'float32'): Promise<DeviceTensor> {
  return DeviceTensor.from(t, { dtype });
}

gpu('DeviceTensor', () => {
  it('uploads and downloads every dtype exactly', async () => {
    const values = Tensor.fromArray([0, 1, -2, 0.5, 1024, -0.125, Infinity, -Infinity, NaN, 3], [10]);
    for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
      const d = await roundTrip(values, dtype);
      const back = (await d.download()).data;
      expect(Array.from(back)).toEqual(Array.from(values.data));
      d.dispose();
    }
    const ints = Tensor.fromArray([1, -5, 2 ** 30], [3], 'int32');
    const di = await DeviceTensor.from(ints);
    expect(Array.from((await di.download()).data)).toEqual([1, -5, 2 ** 30]);
  });
  it('rounds float16 to nearest even and keeps pinned async copies ordered on a stream', async () => {
    const x = Tensor.fromArray([1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 2 ** -25], [4]);
    const back = (await (await roundTrip(x, 'float16')).download()).data;
    expect(Array.from(back)).toEqual([1, 1 + 2 ** -9, Infinity, 0]);
    const stream = new CudaStream();
    const n = 1 << 20;
    const src = DeviceTensor.empty([n]);
    const host = new Float32Array(n).map((_, i) => i);
    await src.upload(host);
    const pinned = new Float32Array((await import('../src/index.js')).pinnedArray(n).buffer);
    src.downloadAsync(pinned, stream);
    await stream.synchronize();
    expect(pinned[n - 1]).toBe(n - 1);
    stream.dispose();
  });
  it('reports properties, memory and clear errors for disposed tensors and out-of-memory', async () => {
    const p = cudaProperties(0);
    expect(p.multiprocessors).toBeGreaterThan(0);
    expect(p.memoryBandwidth).toBeGreaterThan(1e11);
    const mem = cudaMemoryInfo(0);
    expect(mem.total).toBeGreaterThan(mem.free * 0.5);
    const t = DeviceTensor.empty([4]);
    t.dispose();
    await expect(t.download()).rejects.toThrow(/disposed DeviceTensor/);
    let oom: unknown;
    try {
      DeviceTensor.empty([Math.ceil(mem.total / 4) * 2]);
    } catch (err) {
      oom = err;
    }
    expect((oom as { code?: string }).code).toBe('KINTSUGI_OUT_OF_MEMORY');
    expect((oom as Error).message).toMatch(/cudaMalloc failed: cudaErrorMemoryAllocation/);
    expect(() => DeviceTensor.empty([2], { device: 99 })).toThrow(RangeError);
  });
});

gpu('cudaGemm against the CPU', () => {
  const shapes: [number, number, number][] = [[1, 1, 1], [67, 35, 129], [1, 513, 17], [128, 128, 128], [130, 257, 65], [33, 17, 8191], [256, 256, 0]];
  for (const backend of ['kintsugi', ...(cublasStatus().available ? ['cublas' as const] : [])] as const)
    for (const dtype of ['float32', 'float16', 'bfloat16'] as const)
      for (const [m, n, k] of shapes)
        for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
          it(`${backend} ${dtype} ${m}x${n}x${k} transA=${transA} transB=${transB}`, async () => {
            // Small integers / 8 are exact in fp16 and bf16, and their products sum exactly in fp32.
            const a = smallInts(transA ? [k, m] : [m, k], m * 7 + k, 0.125), b = smallInts(transB ? [n, k] : [k, n], n * 3 + k, 0.125);
            const expected = await gemm(a, b, { transA, transB, alpha: 2 });
            const [da, db] = [await roundTrip(a, dtype), await roundTrip(b, dtype)];
            const c = DeviceTensor.from(Tensor.fromArray(new Array(m * n).fill(NaN), [m, n]));
            const out = cudaGemm(da, db, { transA, transB, alpha: 2, beta: 0, out: await c, backend });
            const got = (await out.download()).data;
            expect(Array.from(got)).toEqual(Array.from(expected.data));
            for (const t of [da, db, out]) t.dispose();
          });
        }
  it('beta accumulates, tf32 is close, NaN and Inf propagate', async () => {
    const a = Tensor.random([70, 90], 1), b = Tensor.random([90, 50], 2), c0 = Tensor.random([70, 50], 3);
    const expected = await gemm(a, b, { alpha: 0.5, beta: 2, out: c0.clone() });
    const dc = await DeviceTensor.from(c0);
    cudaGemm(await DeviceTensor.from(a), await DeviceTensor.from(b), { alpha: 0.5, beta: 2, out: dc });
    expect(worstError((await dc.download()).data as Float32Array, expected.data, 1e-5 * 10, 1e-4 * 10)).toBeLessThanOrEqual(1);
    const tf = cudaGemm(await DeviceTensor.from(a), await DeviceTensor.from(b), { tf32: true });
    const plain = await gemm(a, b);
    expect(worstError((await tf.download()).data as Float32Array, plain.data, 5e-3 * 10, 5e-3)).toBeLessThanOrEqual(1);
    a.data[0] = NaN;
    b.data[1] = Infinity;
    const bad = (await cudaGemm(await DeviceTensor.from(a), await DeviceTensor.from(b)).download()).data;
    expect(Number.isNaN(bad[0])).toBe(true);
  });
  it('rejects mismatched shapes and dtypes', async () => {
    const a = DeviceTensor.empty([3, 4]), b = DeviceTensor.empty([5, 6]), h = DeviceTensor.empty([4, 2], { dtype: 'float16' });
    expect(() => cudaGemm(a, b)).toThrow(/Expected 4 rows in op\(b\)/);
    expect(() => cudaGemm(a, h)).toThrow(TypeError);
    expect(() => cudaGemm(a, DeviceTensor.empty([4, 2]), { beta: 1 })).toThrow(RangeError);
  });
});

gpu('cudaConv2d against the CPU', () => {
  const cases: [string, number[], number[], Record<string, unknown>][] = [
    ['1x1', [2, 8, 9, 9], [16, 8, 1, 1], {}],
    ['1x1 stride 2', [3, 8, 9, 9], [16, 8, 1, 1], { stride: 2 }],
    ['3x3 pad 1', [2, 5, 11, 7], [7, 5, 3, 3], { padding: 1 }],
    ['7x7 stride 2 pad 3', [1, 3, 23, 23], [8, 3, 7, 7], { stride: 2, padding: 3 }],
    ['groups 2', [2, 8, 6, 6], [6, 4, 3, 3], { groups: 2, padding: 1 }],
    ['depthwise', [2, 12, 10, 10], [12, 1, 3, 3], { groups: 12, padding: 1, stride: 2 }],
    ['dilation 2', [1, 4, 12, 12], [5, 4, 3, 3], { dilation: 2, padding: 2 }],
  ];
  for (const [name, xs, ws, options] of cases) {
    it(`${name} forward and backward (float32, float16)`, async () => {
      const x = smallInts(xs, 1, 0.25), w = smallInts(ws, 2, 0.25), bias = smallInts([ws[0]], 3, 0.25);
      const y = await conv2d(x, w, bias, options);
      const dy = smallInts([...y.shape], 4, 0.25);
      const grads = await conv2dBackward(x, w, dy, { ...options, bias: true });
      for (const dtype of ['float32', 'float16'] as const) {
        const [dx, dw, db, ddy] = await Promise.all([x, w, bias, dy].map((t) => DeviceTensor.from(t, { dtype })));
        const got = await cudaConv2d(dx, dw, db, options).download();
        // Multiples of 1/16 sum exactly in fp32; fp16 outputs round to 11 significant bits.
        const same = (got: ArrayLike<number>, want: Float32Array) =>
          dtype === 'float32' ? expect(Array.from(got)).toEqual(Array.from(want)) : expect(worstError(got, want, 1e-6, 2 ** -10)).toBeLessThanOrEqual(1);
        same(got.data, y.data);
        const g = cudaConv2dBackward(dx, dw, ddy, { ...options, bias: true });
        same((await g.dx.download()).data, grads.dx!.data);
        same((await g.dw.download()).data, grads.dw!.data);
        same((await g.db!.download()).data, grads.db!.data);
      }
    });
  }
});

gpu('checksums, parity and embedding bags against the CPU', () => {
  it('row and column sums', async () => {
    const a = Tensor.random([257, 1031], 5);
    const d = await DeviceTensor.from(a);
    const rows = (await cudaChecksum(d, 'rows').download()).data, cols = (await cudaChecksum(d, 'cols').download()).data;
    const r = await rowSums(a), c = await colSums(a);
    for (let i = 0; i < r.length; i++) expect(Math.abs(rows[i] - r[i])).toBeLessThan(1e-9);
    for (let j = 0; j < c.length; j++) expect(Math.abs(cols[j] - c[j])).toBeLessThan(1e-9);
  });
  it('xor parity is bit-exact and decodes a lost block; sum parity encodes and decodes', async () => {
    const len = 100_003;
    const blocks = [1, 2, 3].map((s) => new Uint8Array(len).map((_, i) => (i * 31 + s * 17) & 255));
    const expected = await xorEncode(blocks);
    const dev = await Promise.all(blocks.map((b) => DeviceTensor.from(b)));
    const parity = await cudaXorEncode(dev);
    expect(Buffer.compare((await parity.download()).data as Uint8Array, expected)).toBe(0);
    const lost = await cudaXorEncode([parity, dev[1], dev[2]]);
    expect(Buffer.compare((await lost.download()).data as Uint8Array, blocks[0])).toBe(0);
    const floats = [1, 2, 3].map((s) => smallInts([len], s).data);
    const fdev = await Promise.all(floats.map((f) => DeviceTensor.from(f)));
    const coeffs = new Float32Array([1, 2, 3]);
    const p = await cudaSumEncode(fdev, { coeffs });
    const back = await cudaSumDecode(p, [fdev[0], fdev[2]], { coeffs: new Float32Array([1, 3]), missingCoeff: 2 });
    expect(Array.from((await back.download()).data.subarray(0, 50))).toEqual(Array.from(floats[1].subarray(0, 50)));
  });
  it('embedding bags: sum, mean, weights, repeated rows and empty bags', async () => {
    const table = Tensor.random([50, 24], 9);
    const indices = new Int32Array([3, 3, 7, 49, 0, 3]), offsets = new Int32Array([0, 2, 2, 5, 6]);
    const weights = new Float32Array([1, 0.5, 2, -1, 3, 1]);
    const dt = await DeviceTensor.from(table);
    for (const mode of ['sum', 'mean'] as const) {
      const expected = await embeddingBag(table, indices, offsets, { mode, weights });
      const got = await (await cudaEmbeddingBag(dt, indices, offsets, { mode, weights })).download();
      expect(worstError(got.data as Float32Array, expected.data, 1e-6, 1e-6)).toBeLessThanOrEqual(1);
    }
    const grad = Tensor.random([4, 24], 10);
    const gt = await DeviceTensor.zeros([50, 24]);
    await cudaEmbeddingBagBackward(await DeviceTensor.from(grad), indices, offsets, gt, { scale: 0.5 });
    const row3 = (await gt.download()).data.subarray(3 * 24, 4 * 24);
    for (let j = 0; j < 24; j++) expect(row3[j]).toBeCloseTo(0.5 * (2 * grad.data[j] + grad.data[3 * 24 + j]), 5);
    await expect(cudaEmbeddingBag(dt, new Int32Array([50]), new Int32Array([0, 1]))).rejects.toThrow(RangeError);
  });
  it('pairwise dots give the CPU\'s values, with and without self, and check shapes', async () => {
    for (const [n, v, d] of [[1, 1, 1], [3, 5, 7], [256, 27, 16], [2, 40, 130]]) {
      for (const self of [false, true]) {
        const z = Tensor.random([n, v, d], 11 + v);
        const dz = await DeviceTensor.from(z);
        const out = pairwiseDotsSync(z, { self });
        const got = (await (await cudaPairwiseDots(dz, { self })).download()).data as Float32Array;
        expect(worstError(got, out.data, 1e-6, 1e-6)).toBeLessThanOrEqual(1);
        const g = Tensor.random(out.shape, 12 + d);
        const want = pairwiseDotsBackwardSync(z, g, { self });
        const gz = (await (await cudaPairwiseDotsBackward(dz, await DeviceTensor.from(g), { self })).download()).data as Float32Array;
        expect(worstError(gz, want.data, 1e-6, 1e-6)).toBeLessThanOrEqual(1);
      }
    }
    const dz = await DeviceTensor.from(Tensor.random([2, 4, 3], 13));
    await expect(cudaPairwiseDotsBackward(dz, await DeviceTensor.from(Tensor.random([2, 5], 14)))).rejects.toThrow(/shape \[2, 6\] \(samples, pairs\) for gradOut/);
    await expect(cudaPairwiseDots(dz, { out: DeviceTensor.empty([2, 5]) })).rejects.toThrow(/options.out/);
  });
  it('times kernels with events', async () => {
    const a = DeviceTensor.zeros([512, 512]);
    const t = await timeCuda(() => cudaGemm(a, a, { out: DeviceTensor.empty([512, 512]) }), { repeat: 5 });
    expect(t.times).toHaveLength(5);
    expect(t.minMs).toBeGreaterThan(0);
  });
});
