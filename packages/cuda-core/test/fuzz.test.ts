// 1,500 random bad calls into the raw addon (every export) and the public API: each must return,
// throw, or reject with a typed error — never crash the process or throw an untyped error.
import { describe, expect, it } from 'vitest';

import { _native as native, conv2d, embeddingBag, gemm, rowSums, sumEncode, Tensor, xorEncode } from '../src/index.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function detachedF32(n: number): Float32Array {
  const a = new Float32Array(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

const junk: (() => unknown)[] = [
  () => undefined, () => null, () => NaN, () => Infinity, () => -1, () => 0, () => 1.5, () => 2 ** 40, () => -(2 ** 31), () => 'row',
  () => 'bogus', () => ({}), () => [], () => [new Uint8Array(3)], () => true, () => 10n, () => Symbol('s'), () => () => 0,
  () => new Float32Array(0), () => new Float32Array(7), () => new Float64Array(7), () => new Int32Array(5), () => new Uint8Array(9),
  () => detachedF32(8), () => new native.PackedMatrix(), () => ({ n: 1, cIn: 1, h: 3, w: 3, cOut: 1, kh: 5, kw: 5, strideH: 1, strideW: 1, padH: 0, padW: 0, dilationH: 1, dilationW: 1, groups: 1 }),
];

// Valid argument lists, so that mutating one or two positions probes each check in turn.
function validCalls(): Record<string, unknown[]> {
  const conv = { n: 1, cIn: 2, h: 5, w: 5, cOut: 3, kh: 3, kw: 3, strideH: 1, strideW: 1, padH: 1, padW: 1, dilationH: 1, dilationW: 1, groups: 1 };
  const packed = native.packB('row', false, 4, 3, new Float32Array(12), 3);
  return {
    sgemm: [false, 'row', false, false, 2, 3, 4, 1, new Float32Array(8), 4, new Float32Array(12), 3, 0, new Float32Array(6), 3],
    packB: ['row', false, 4, 3, new Float32Array(12), 3],
    sgemmPacked: [false, 'row', false, 2, 1, new Float32Array(8), 4, packed, 0, new Float32Array(6), 3],
    conv2dForward: [false, conv, new Float32Array(50), new Float32Array(54), new Float32Array(3), new Float32Array(75)],
    conv2dBackwardData: [false, conv, new Float32Array(75), new Float32Array(54), new Float32Array(50)],
    conv2dBackwardWeight: [false, conv, new Float32Array(50), new Float32Array(75), new Float32Array(54), new Float32Array(3)],
    checksum: [false, 'weightedRow', new Float32Array(12), 3, 4, 4, new Float32Array(4), new Float64Array(3)],
    xorEncode: [false, [new Uint8Array(9), new Uint8Array(9)], new Uint8Array(9)],
    xorInto: [false, new Uint8Array(9), new Uint8Array(9)],
    sumEncode: [false, [new Float32Array(7), new Float32Array(7)], new Float32Array([1, 2]), new Float32Array(7)],
    sumDecode: [false, new Float32Array(7), [new Float32Array(7)], new Float32Array([1]), 2, new Float32Array(7)],
    sgemmChecked: [false, 'row', false, false, 2, 3, 4, 1, new Float32Array(8), 4, new Float32Array(12), 3, new Float32Array(6), 3, 'two-sided', 1, true, null, 0, new Float64Array(3 + 11 * 4)],
    abftGroupSums: [false, 4, 3, new Float32Array(12), 3, native.abftGroupWidth(), new Float32Array(1024)],
    sgemmRowChecked: [false, 'row', false, false, 2, 3, 4, 1, new Float32Array(8), 4, new Float32Array(12), 3, 0, new Float32Array(6), 3,
      new Float64Array(4), new Float64Array(4), new Float64Array(2), new Float64Array(2), new Float64Array(2)],
    abftRowCheck: [false, false, 2, 3, 4, new Float32Array(8), 4, new Float64Array(4), new Float64Array(4), new Float32Array(6), 3, new Float64Array(2), new Float64Array(2), new Float64Array(2)],
    rsEncode: [false, 4, 2, [new Uint8Array(9), new Uint8Array(9), new Uint8Array(9), new Uint8Array(9)], [new Uint8Array(9), new Uint8Array(9)]],
    rsDecode: [false, 2, 1, [new Uint8Array(5), new Uint8Array(5), new Uint8Array(5)], [true, false, true]],
    rsUpdateParity: [false, 2, 2, 1, new Uint8Array(6), [new Uint8Array(6), new Uint8Array(6)]],
    embeddingBagForward: [false, new Float32Array(20), 5, 4, new Int32Array([0, 4, 2]), new Int32Array([0, 1, 3]), null, 'sum', new Float32Array(8)],
    embeddingBagBackward: [false, new Float32Array(8), 5, 4, new Int32Array([0, 4, 2]), new Int32Array([0, 1, 3]), null, 'mean', 1, new Float32Array(20)],
    gatherRows: [false, new Int32Array(12), 3, new Int32Array([0, 3, 1]), 1, 2, new Int32Array(6)],
    scatterRows: [false, new Int32Array(12), 3, new Int32Array([0, 3, 1]), new Int32Array(9), true],
    largePages: [100],
    adviseHugePages: [new Float32Array(4)],
    setNumThreads: [2],
    setIsaLimit: ['avx512'],
  };
}

function acceptable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if (e instanceof TypeError || e instanceof RangeError) return /^Expected .+ for .+ but received /.test(e.message) || /^Cannot convert/.test(e.message);
  return typeof (e as { code?: unknown }).code === 'string' && (e as { code: string }).code.startsWith('KINTSUGI_');
}

describe('fuzz', () => {
  it('1,000 random bad calls into the raw addon: typed errors only, no crash', async () => {
    const random = rng(12345);
    const calls = validCalls();
    const names = Object.keys(calls);
    const raw = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    let rejected = 0, succeeded = 0;
    const bad: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const name = names[Math.floor(random() * names.length)];
      const args = calls[name].slice();
      const mutations = 1 + Math.floor(random() * 2);
      for (let j = 0; j < mutations; j++) {
        const pos = Math.floor(random() * (args.length + 1)); // may also append an extra argument
        const value = junk[Math.floor(random() * junk.length)]();
        if (pos === 0 && typeof args[0] === 'boolean' && random() < 0.5) args[0] = true; // async variant
        else args[pos] = value;
      }
      try {
        const out = raw[name](...args);
        if (out instanceof Promise) await out;
        succeeded++;
      } catch (e) {
        rejected++;
        if (!acceptable(e)) bad.push(`${name}: ${String(e)}`);
      }
    }
    native.setNumThreads(native.cpuInfo().logicalCores);
    native.setIsaLimit('avx512');
    expect(bad).toEqual([]);
    expect(rejected).toBeGreaterThan(600); // some mutations (an extra argument, beta = 0) leave a valid call
    expect(rejected + succeeded).toBe(1000);
  });

  it('500 random calls with wrong shapes and dtypes through the public API', async () => {
    const random = rng(777);
    const dims = () => 1 + Math.floor(random() * 5);
    const dtypes = ['float32', 'float64', 'int32', 'uint8'] as const;
    const tensor = () => {
      const rank = Math.floor(random() * 5);
      return Tensor.zeros(Array.from({ length: rank }, dims), dtypes[Math.floor(random() * 4)]);
    };
    const ops = [
      () => gemm(tensor() as Tensor<'float32'>, tensor() as Tensor<'float32'>),
      () => conv2d(tensor() as Tensor<'float32'>, tensor() as Tensor<'float32'>, random() < 0.5 ? null : (tensor() as Tensor<'float32'>), { stride: dims(), padding: dims() - 1 }),
      () => rowSums(tensor() as Tensor<'float32'>),
      () => xorEncode([new Uint8Array(dims()), new Uint8Array(dims())]),
      () => sumEncode([new Float32Array(dims())], [dims()]),
      () => embeddingBag(tensor() as Tensor<'float32'>, Int32Array.from({ length: dims() }, () => Math.floor(random() * 8) - 2), Int32Array.from([0, dims()])),
    ];
    let errors = 0;
    const bad: string[] = [];
    for (let i = 0; i < 500; i++) {
      try {
        await ops[Math.floor(random() * ops.length)]();
      } catch (e) {
        errors++;
        if (!acceptable(e)) bad.push(String(e));
      }
    }
    expect(bad).toEqual([]);
    expect(errors).toBeGreaterThan(100);
  });
});
