import { describe, expect, it } from 'vitest';
import { abftRowCheck, gemm, gemmRowChecked, gemmRowCheckedSync, Tensor } from '@kintsugi/cuda-core';
import { Conv2d, Linear, ReLU, Sequential, Flatten, manualSeed } from '@kintsugi/cuda-core/nn';

import { arithmeticIntensity, confirmedScheme, OVERTURN_MARGIN, overheadLayers, overheadMarkdown, protectedGemm, runOverhead, protectModel, ProtectedConv2d, ProtectedLinear, weightChecksums } from '../src/index.js';
import { armAccumulatorFault, flipBitOf, flipTensorBit, injectFaults, runCampaign } from '../src/inject.js';

const close = (a: Tensor<'float32'>, b: Tensor<'float32'>, tol = 1e-4) => {
  for (let i = 0; i < a.size; i++) if (!(Math.abs(a.data[i] - b.data[i]) <= tol * (1 + Math.abs(b.data[i])))) return false;
  return true;
};

describe('protectedGemm schemes', () => {
  it('clean runs: no events on any scheme, results match gemm (zero false positives)', async () => {
    for (const [m, n, k] of [[1, 64, 13], [8, 256, 512], [33, 70, 300], [128, 128, 1024]]) {
      for (const lo of [-1, 0]) {
        const a = Tensor.random([m, k], m + k, lo, 1), b = Tensor.random([k, n], n, lo, 1);
        const ref = await gemm(a, b);
        for (const scheme of ['global', 'thread'] as const) {
          const r = await protectedGemm(a, b, { scheme, checksums: weightChecksums(b) });
          expect(r.report.events, `${scheme} ${m}x${n}x${k}`).toEqual([]);
          expect(r.report.maxRatio).toBeLessThan(0.125);
          expect(close(r.out, ref)).toBe(true);
        }
      }
    }
  });

  it('a flipped accumulator is located and corrected by the fused path; an output flip by the global check', async () => {
    const a = Tensor.random([40, 200], 1), b = Tensor.random([200, 96], 2);
    const ref = await gemm(a, b);
    for (const bit of [30, 29, 28]) {
      armAccumulatorFault({ row: 17, col: 50, bit });
      const t = await protectedGemm(a, b, { scheme: 'thread', layer: 'L' });
      expect(t.report.events).toHaveLength(1);
      expect(t.report.events[0]).toMatchObject({ layer: 'L', scheme: 'thread', row: 17, col: 50, action: 'corrected' });
      expect(close(t.out, ref)).toBe(true);
    }
    // Global: plain GEMM output corrupted before the check.
    const { globalCheck } = await import('../src/gemm.js');
    const c = ref.clone();
    c.set(flipBitOf(c.get(3, 9), 29), 3, 9);
    const rep = await globalCheck(a, b, c, { scheme: 'global', transA: false, transB: false, check: 'two-sided', tolerance: 1, correct: true, layer: 'g', m: 40, n: 96, k: 200 });
    expect(rep.events).toHaveLength(1);
    expect(rep.events[0]).toMatchObject({ row: 3, col: 9, action: 'corrected' });
    expect(close(c, ref)).toBe(true);
  });

  it('gemmRowChecked: the GEMM and the row check in one call equal gemm then abftRowCheck (views, bias, sync)', async () => {
    for (const [m, n, k] of [[1, 1, 1], [1, 64, 13], [7, 33, 17], [40, 96, 200]]) {
      const a = Tensor.random([k, m], m + 1), b = Tensor.random([n, k], n + 2);
      const opA = a.transpose(), opB = b.transpose();  // views: transposes without copies
      const sums = weightChecksums(b, { transB: true });
      const ref = await gemm(opA, opB);
      const want = await abftRowCheck(opA, sums.rowSums, sums.absRowSums, ref);
      const { out, check } = await gemmRowChecked(opA, opB, sums.rowSums, sums.absRowSums);
      expect(Array.from(out.data)).toEqual(Array.from(ref.data));
      expect(check).toEqual(want);
      // A bias preloaded in out and accumulated (beta = 1) enters the row sums.
      const biased = Tensor.zeros([m, n]);
      biased.data.fill(0.5);
      const sync = gemmRowCheckedSync(opA, opB, sums.rowSums, sums.absRowSums, { out: biased, beta: 1 });
      for (let i = 0; i < m; i++) expect(sync.check.actual[i]).toBeCloseTo(want.actual[i] + 0.5 * n, 3);
    }
    const a = Tensor.random([4, 8], 1), b = Tensor.random([8, 5], 2);
    const s = weightChecksums(b);
    await expect(gemmRowChecked(a, b, new Float64Array(7), s.absRowSums)).rejects.toThrow('Expected 8 elements (the rows of op(b)) for bRowSums but received 7 elements');
    await expect(gemmRowChecked(a, b, s.rowSums, new Float32Array(8) as never)).rejects.toThrow(/Expected a Float64Array for bAbsRowSums/);
    await expect(gemmRowChecked(a, b, s.rowSums, s.absRowSums, { out: Tensor.zeros([5, 4]).transpose() })).rejects.toThrow(/Expected a row-major Tensor \(unit column stride\) for options.out/);
    await expect(gemmRowChecked(a, Tensor.random([7, 5], 3), s.rowSums, s.absRowSums)).rejects.toThrow(RangeError);
  });

  it('options.out: every scheme writes the product (and bias) into the given Tensor; bad outputs are refused', async () => {
    const a = Tensor.random([5, 40], 1), w = Tensor.random([40, 24], 2), bias = Float32Array.from({ length: 24 }, (_, j) => j / 8);
    const ref = await gemm(a, w);
    for (let i = 0; i < 5; i++) for (let j = 0; j < 24; j++) ref.data[i * 24 + j] += bias[j];
    for (const scheme of ['none', 'global', 'thread'] as const) {
      const out = Tensor.zeros([5, 24]);
      out.data.fill(123);  // stale contents must not leak into the result
      const r = await protectedGemm(a, w, { scheme, out, bias, checksums: weightChecksums(w) });
      expect(r.out).toBe(out);
      expect(r.report.events).toEqual([]);
      expect(close(out, ref)).toBe(true);
    }
    await expect(protectedGemm(a, w, { out: Tensor.zeros([5, 23]) })).rejects.toThrow('Expected a contiguous [5, 24] Tensor for options.out but received shape [5,23]');
    await expect(protectedGemm(a, w, { out: Tensor.zeros([24, 5]).transpose() })).rejects.toThrow(/Expected a contiguous \[5, 24\] Tensor for options.out but received shape \[5,24\] \(not contiguous\)/);
    await expect(protectedGemm(a, w, { out: new Float32Array(120) as never })).rejects.toThrow(/Expected a float32 Tensor for options.out/);
    await expect(protectedGemm(a, w, { out: a as never })).rejects.toThrow(RangeError);
  });

  it('timing confirmation keeps the prior within the margin and otherwise takes the fastest', () => {
    const none = 10;
    expect(OVERTURN_MARGIN).toBeLessThanOrEqual(0.01);
    expect(confirmedScheme('thread', { none, global: 11.0, thread: 11.0 + 0.5 * OVERTURN_MARGIN * none }, ['global', 'thread'])).toBe('thread');
    expect(confirmedScheme('thread', { none, global: 11.0, thread: 11.0 + 2 * OVERTURN_MARGIN * none }, ['global', 'thread'])).toBe('global');
    expect(confirmedScheme('global', { none, global: 12, thread: 11 }, ['global', 'thread'])).toBe('thread');
    expect(confirmedScheme('global', { none, global: 11, thread: 12 }, ['global', 'thread'])).toBe('global');
  });

  it('the CPU overhead table: every layer timed under none/global/thread, the guided row is the confirmed scheme', async () => {
    const r = await runOverhead({ quick: true, reps: 2 });
    expect(r.rows.length).toBe(overheadLayers(true).length);
    for (const row of r.rows) {
      expect(row.noneMs).toBeGreaterThan(0);
      for (const v of [row.globalPct, row.threadPct]) expect(Number.isFinite(v)).toBe(true);
      expect(['global', 'thread']).toContain(row.choice);
      expect(row.guidedPct).toBe(row.choice === 'global' ? row.globalPct : row.threadPct);
    }
    expect(overheadMarkdown(r)).toContain('| suite | layer | M x N x K | AI | none ms | global % | thread % | guided % | rule | choice |');
  }, 60_000);

  it('bad input raises clear errors', async () => {
    const a = Tensor.random([4, 8], 1), b = Tensor.random([8, 5], 2);
    await expect(protectedGemm(a, b, { scheme: 'fast' as never })).rejects.toThrow("Expected one of 'none' | 'global' | 'thread' for options.scheme but received \"fast\"");
    await expect(protectedGemm(a, b, { checksums: weightChecksums(Tensor.random([8, 6], 3)) })).rejects.toThrow(/Expected checksums of a 8 x 5 op\(b\) for options.checksums/);
    await expect(protectedGemm(a, b, { checksums: { k: 8, n: 5 } as never })).rejects.toThrow(TypeError);
    await expect(protectedGemm(new Tensor<'float64'>(new Float64Array(32), [4, 8]) as never, b)).rejects.toThrow(/Expected a float32 Tensor for a/);
    await expect(protectedGemm(a, Tensor.random([7, 5], 1))).rejects.toThrow(RangeError);
    expect(() => armAccumulatorFault({ row: 0, col: 0, bit: 32 })).toThrow('Expected an integer in [0, 31] for spec.bit but received 32');
    expect(() => flipTensorBit(a, 99, 1)).toThrow(RangeError);
    expect(() => injectFaults(a, { rate: 2 })).toThrow(/options.rate/);
    expect(() => injectFaults(a, { rate: 0.1, bits: [] })).toThrow(/options.bits/);
    await expect(runCampaign({ targets: ['register' as never] })).rejects.toThrow(/options.targets\[0\]/);
  });
});

describe('layers and models', () => {
  it('ProtectedLinear and ProtectedConv2d match the plain layers and repair a corrupted output', async () => {
    manualSeed(3);
    const lin = new Linear(100, 30), x = Tensor.random([5, 100], 4);
    const ref = await lin.forward(x);
    for (const scheme of ['none', 'global', 'thread'] as const) {
      const p = new ProtectedLinear(lin, { scheme });
      expect(close(await p.forward(x), ref)).toBe(true);
    }
    const conv = new Conv2d(3, 8, 3, { padding: 1 });
    (conv.bias!.value.data as Float32Array).set([0.1, -0.2, 0.3, 0, 0.5, -0.1, 0.2, 0.05]);
    const img = Tensor.random([2, 3, 9, 9], 5);
    const cref = await conv.forward(img);
    const pc = new ProtectedConv2d(conv);
    const events: unknown[] = [];
    pc.onEvent = (e) => events.push(e);
    expect(close(await pc.forward(img), cref)).toBe(true);
    expect(events).toEqual([]);
  });

  it('protectModel picks a scheme per layer by intensity and explains it; clean inference has no events', async () => {
    manualSeed(5);
    const model = new Sequential(new Flatten(), new Linear(64, 512), new ReLU(), new Linear(512, 10));
    const x = Tensor.random([4, 1, 8, 8], 9);
    const pm = await protectModel(model, { sample: x, balance: { peakFlops: 100e9, bandwidth: 20e9 }, confirm: false });
    const d = pm.explain();
    expect(d).toHaveLength(2);
    expect(d[0]).toMatchObject({ m: 4, n: 512, k: 64, bound: 'memory', prior: 'thread', scheme: 'thread' });
    expect(d[0].intensity).toBeCloseTo(arithmeticIntensity(4, 512, 64));
    expect(d[0].reason).toMatch(/memory-bound → thread/);
    const y = await pm.forward(x), ref = await model.forward(x);
    expect(close(y, ref)).toBe(true);
    expect(pm.events).toEqual([]);
    const timed = await protectModel(model, { sample: x, balance: { peakFlops: 100e9, bandwidth: 20e9 } });
    expect(timed.explain()[0].timings?.global).toBeGreaterThan(0);
    expect(timed.explain()[0].reason).toMatch(/timing (confirms|overturns)/);
  });
});

describe('fault campaign', () => {
  it('zero false positives, full recall and correction of accumulator and output flips', async () => {
    const r = await runCampaign({ shapes: [[8, 128, 256]], trials: 3, cleanRuns: 5, bits: [30, 27, 23, 20] });
    for (const c of r.clean) expect(c.falsePositives).toBe(0);
    const get = (scheme: string, target: string) => r.summary.find((s) => s.scheme === scheme && s.target === target)!;
    for (const s of ['global', 'thread']) {
      expect(get(s, 'accumulator').recall).toBeGreaterThanOrEqual(0.99);
      expect(get(s, 'accumulator').correctedRate).toBe(1);
      expect(get(s, 'weight').recall).toBeGreaterThanOrEqual(0.99);
    }
    expect(get('global', 'output').recall).toBeGreaterThanOrEqual(0.99);
    expect(get('global', 'output').correctedRate).toBe(1);
  });
});
