// Bad input gets a clear TypeError / RangeError naming the argument and the value, never a crash
// or a silent wrong answer; Promise-returning calls reject rather than throw.
import { describe, expect, it } from 'vitest';

import {
  _native as native, colSums, conv2d, conv2dBackward, embeddingBag, embeddingBagBackward, gemm, gemmSync, PackedWeights, rowSums,
  ReedSolomonCode, setIsaLimit, setNumThreads, setSpinMicros, sgemm, sgemmSync, sumDecode, sumEncode, Tensor, weightedRowSums, xorEncode, xorInto,
} from '../src/index.js';

const shape = /^Expected .+ for .+ but received .+$/;

function detached(n: number): Float32Array {
  const a = new Float32Array(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

describe('tensor and options validation', () => {
  it('Tensor constructor checks data, shape, strides and extent', () => {
    expect(() => new Tensor([1, 2, 3] as unknown as Float32Array)).toThrow(TypeError);
    expect(() => new Tensor(new Float32Array(5), [2, 3])).toThrow(/at least 6 elements/);
    expect(() => new Tensor(new Float32Array(6), [2, 3], [3])).toThrow(RangeError);
    expect(() => new Tensor(new Float32Array(6), [2, -3])).toThrow(RangeError);
    expect(() => new Tensor(new Float32Array(6), [2, 1.5])).toThrow(TypeError);
    expect(() => Tensor.zeros([2], 'float16' as 'float32')).toThrow(/dtype/);
    expect(() => Tensor.zeros([2, 3]).reshape([4, 2])).toThrow(/a shape with 6 elements/);
    expect(() => Tensor.zeros([2, 3]).get(2, 0)).toThrow(RangeError);
  });

  it('a disposed tensor is refused with a clear message', async () => {
    const a = Tensor.random([2, 2]);
    a.dispose();
    expect(() => a.data).toThrow(/disposed Tensor/);
    await expect(gemm(a, Tensor.random([2, 2]))).rejects.toThrow(/Expected a live Tensor for a but received a disposed Tensor/);
    expect(() => gemmSync(Tensor.random([2, 2]), a)).toThrow(TypeError);
  });

  it('gemm: shapes, dtypes, ranks, options', async () => {
    const a = Tensor.random([3, 4]), b = Tensor.random([5, 2]);
    await expect(gemm(a, b)).rejects.toThrow(RangeError);
    await expect(gemm(a, b)).rejects.toThrow(/Expected 4 rows in op\(b\)/);
    await expect(gemm(Tensor.zeros([3, 4], 'float64') as unknown as Tensor<'float32'>, b)).rejects.toThrow(/dtype float32/);
    await expect(gemm(Tensor.random([3, 4, 1]), b)).rejects.toThrow(/2-D Tensor/);
    await expect(gemm(a, Tensor.random([4, 2]), { alpha: NaN })).rejects.toThrow(/finite number for options.alpha/);
    await expect(gemm(a, Tensor.random([4, 2]), { transA: 'yes' as unknown as boolean })).rejects.toThrow(TypeError);
    await expect(gemm(a, Tensor.random([4, 2]), { out: Tensor.zeros([3, 3]) })).rejects.toThrow(/shape \[3, 2\]/);
    await expect(gemm(a, Tensor.random([4, 2]), { beta: 1 })).rejects.toThrow(/options.beta/);
  });

  it('sgemm: leading dimensions, short buffers, aliasing, detached buffers', async () => {
    const base = { m: 2, n: 2, k: 2, a: new Float32Array(4), lda: 2, b: new Float32Array(4), ldb: 2, c: new Float32Array(4), ldc: 2 };
    await expect(sgemm({ ...base, lda: 1 })).rejects.toThrow(/Expected a leading dimension >= 2 for lda but received 1/);
    await expect(sgemm({ ...base, b: new Float32Array(3) })).rejects.toThrow(/Expected at least 4 elements for b but received 3/);
    await expect(sgemm({ ...base, c: base.a })).rejects.toThrow(/memory not shared with a for c/);
    await expect(sgemm({ ...base, a: detached(4) })).rejects.toThrow(/attached buffer/);
    await expect(sgemm({ ...base, a: new Float64Array(4) as unknown as Float32Array })).rejects.toThrow(/Float32Array for args.a/);
    expect(() => sgemmSync({ ...base, layout: 'diagonal' as 'row' })).toThrow(RangeError);
    expect(() => sgemmSync({ ...base, m: -1 })).toThrow(RangeError);
    expect(() => sgemmSync(undefined as unknown as typeof base)).toThrow(TypeError);
  });

  it('conv2d: ranks, channel and group mismatches, kernels larger than the input', async () => {
    const x = Tensor.random([1, 4, 5, 5]);
    await expect(conv2d(x, Tensor.random([2, 3, 3, 3]))).rejects.toThrow(/4 input channels per group/);
    await expect(conv2d(x, Tensor.random([2, 4, 7, 7]))).rejects.toThrow(/a kernel that fits/);
    await expect(conv2d(x, Tensor.random([3, 2, 3, 3]), null, { groups: 2 })).rejects.toThrow(/divisor of the 3 output channels/);
    await expect(conv2d(x, Tensor.random([2, 4, 3, 3]), null, { stride: 0 })).rejects.toThrow(/options.stride/);
    await expect(conv2d(x, Tensor.random([2, 4, 3, 3]), null, { padding: [1, -1] })).rejects.toThrow(/options.padding\[1\]/);
    await expect(conv2d(x, Tensor.random([2, 4, 3, 3]), Tensor.random([3]))).rejects.toThrow(/bias/);
    await expect(conv2dBackward(x, Tensor.random([2, 4, 3, 3]), Tensor.random([1, 2, 4, 4]))).rejects.toThrow(/shape \[1,2,3,3\]/);
    await expect(conv2d(Tensor.random([4, 5, 5]), Tensor.random([2, 4, 3, 3]))).rejects.toThrow(/4-D Tensor/);
  });

  it('checksums, parity and embedding bags', async () => {
    await expect(rowSums(Tensor.zeros([3], 'float32'))).rejects.toThrow(/2-D/);
    await expect(colSums(Tensor.zeros([2, 2], 'int32') as unknown as Tensor<'float32'>)).rejects.toThrow(/dtype float32 \| float64/);
    await expect(weightedRowSums(Tensor.random([3, 4]), Tensor.random([3]))).rejects.toThrow(/shape \[4\]/);
    await expect(xorEncode([])).rejects.toThrow(/at least 1 blocks/);
    await expect(xorEncode([new Uint8Array(3), new Uint8Array(4)])).rejects.toThrow(/blocks\[1\]/);
    await expect(xorEncode([new Float32Array(3) as unknown as Uint8Array])).rejects.toThrow(TypeError);
    const buf = new Uint8Array(8);
    await expect(xorInto(buf.subarray(0, 4), buf.subarray(2, 6))).rejects.toThrow(/memory not shared/);
    await expect(sumEncode([new Float32Array(2)], [1, 2])).rejects.toThrow(/1 coefficients/);
    await expect(sumDecode(new Float32Array(2), [new Float32Array(2)], [1], 0)).rejects.toThrow(/non-zero coefficient/);
    const table = Tensor.random([10, 4]);
    await expect(embeddingBag(table, Int32Array.from([1, 10]), Int32Array.from([0, 2]))).rejects.toThrow(/Expected .*\[0, 10\).* but received 10/);
    await expect(embeddingBag(table, Int32Array.from([1, -1]), Int32Array.from([0, 2]))).rejects.toThrow(RangeError);
    await expect(embeddingBag(table, Int32Array.from([1, 2]), Int32Array.from([0, 3]))).rejects.toThrow(RangeError);
    await expect(embeddingBag(table, Int32Array.from([1, 2]), Int32Array.from([0, 2, 1, 2]))).rejects.toThrow(RangeError);
    await expect(embeddingBag(table, [1, 2] as unknown as Int32Array, Int32Array.from([0, 2]))).rejects.toThrow(/Int32Array for indices/);
    await expect(embeddingBag(table, Int32Array.from([1]), Int32Array.from([0, 1]), { mode: 'max' as 'sum' })).rejects.toThrow(/options.mode/);
    await expect(embeddingBagBackward(Tensor.random([1, 4]), Int32Array.from([1]), Int32Array.from([0, 1]), {})).rejects.toThrow(/options.rows/);
  });

  it('Reed-Solomon: code sizes, block counts, too many losses, aliasing', async () => {
    expect(() => new ReedSolomonCode(4, 5)).toThrow(RangeError);
    expect(() => new ReedSolomonCode(0, 1)).toThrow(RangeError);
    expect(() => new ReedSolomonCode(254, 2)).toThrow(/k \+ r <= 255/);
    const code = new ReedSolomonCode(2, 1);
    await expect(code.encode([new Uint8Array(4)])).rejects.toThrow(/2 data blocks/);
    await expect(code.encode([new Uint8Array(4), new Uint8Array(5)])).rejects.toThrow(/data\[1\]/);
    await expect(code.decode([null, null, new Uint8Array(4)])).rejects.toThrow(/at most 1 lost blocks/);
    await expect(code.decode([new Uint8Array(4), null])).rejects.toThrow(/3 entries/);
    await expect(code.updateParity(2, new Uint8Array(4), [new Uint8Array(4)])).rejects.toThrow(/dataIndex/);
    const shared = new Uint8Array(8);
    await expect(code.updateParity(0, shared.subarray(0, 4), [shared.subarray(2, 6)])).rejects.toThrow(/memory not shared/);
  });

  it('threads, spin and ISA settings are checked', () => {
    expect(() => setNumThreads(0)).toThrow(RangeError);
    expect(() => setSpinMicros(-1)).toThrow(RangeError);
    expect(() => setSpinMicros(1.5)).toThrow(TypeError);
    expect(() => setSpinMicros(2_000_000)).toThrow(RangeError);
    expect(() => setIsaLimit('sse' as 'avx2')).toThrow(RangeError);
  });

  it('PackedWeights checks its input and its lifetime', async () => {
    expect(() => new PackedWeights(Tensor.random([3]) as Tensor<'float32'>)).toThrow(/2-D/);
    const p = new PackedWeights(Tensor.random([4, 3]));
    expect(() => p.matmulSync(Tensor.random([2, 5]))).toThrow(/4 columns/);
    p.dispose();
    p.dispose(); // idempotent
    await expect(p.matmul(Tensor.random([2, 4]))).rejects.toThrow(/disposed PackedWeights/);
  });
});

describe('the raw addon checks its arguments too', () => {
  it('maps native error kinds to TypeError / RangeError / Error with stable codes', () => {
    const cases: [string, ErrorConstructor, string][] = [
      ['type', TypeError, 'KINTSUGI_INVALID_TYPE'], ['range', RangeError, 'KINTSUGI_OUT_OF_RANGE'], ['unsupported', Error, 'KINTSUGI_UNSUPPORTED'],
      ['device', Error, 'KINTSUGI_DEVICE_ERROR'], ['oom', Error, 'KINTSUGI_OUT_OF_MEMORY'], ['internal', Error, 'KINTSUGI_INTERNAL'],
    ];
    for (const [kind, Ctor, code] of cases) {
      try {
        native._throwNativeError(kind);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(Ctor);
        expect((e as { code: string }).code).toBe(code);
      }
    }
  });

  it('async calls reject (never throw) on bad arguments', async () => {
    const call = (native.sgemm as unknown as (...a: unknown[]) => Promise<unknown>)(true, 'row', false, false, 2, 2, 2, 1, 'nope');
    expect(call).toBeInstanceOf(Promise);
    await expect(call).rejects.toThrow(shape);
  });

  it('missing and wrong arguments name the argument', () => {
    const raw = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => raw.sgemm(false)).toThrow(/Expected one of 'row' \| 'col' for layout but received undefined/);
    expect(() => raw.conv2dForward(false, { n: 1 })).toThrow(/for params.cIn but received undefined/);
    expect(() => raw.checksum(false, 'row', new Float32Array(4), 2, 2, 1, null, new Float64Array(2))).toThrow(/leading dimension >= 2 for ld/);
    expect(() => raw.embeddingBagForward(false, new Float32Array(4), 2, 2, new Int32Array(1), new Int32Array(0), null, 'sum', new Float32Array(0))).toThrow(/offsets/);
    expect(() => raw.sgemmPacked(false, 'row', false, 1, 1, new Float32Array(4), 4, {}, 0, new Float32Array(4), 4)).toThrow(/PackedMatrix for packed/);
    expect(() => raw.sgemmPacked(false, 'row', false, 1, 1, new Float32Array(4), 4, new native.PackedMatrix(), 0, new Float32Array(4), 4)).toThrow(/disposed PackedMatrix/);
  });
});
