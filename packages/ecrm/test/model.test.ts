// DLRM's backward against finite differences of its loss: the gradient of the embedding rows a
// batch looks up, which flows through the pairwise-dot interaction and the embedding bags.
import { describe, expect, it } from 'vitest';
import { setSpinMicros, spinMicros, Tensor } from '@kintsugi/cuda-core';
import { binaryCrossEntropyWithLogits } from '@kintsugi/cuda-core/nn';
import { DLRM, DLRM_ARCHITECTURES, lookupRows, SyntheticCriteo, trainDlrm } from '../src/index.js';

describe('DLRM', () => {
  it('returns the lookup rows\' gradient of the loss (checked against central differences)', async () => {
    const dim = 4;
    const batch = new SyntheticCriteo({ rowsPerTable: 40, batchSize: 6, seed: 2 }).batch(0);
    const lookup = lookupRows(batch, 40);
    const model = new DLRM({ dim, seed: 3 });
    const table = new Float32Array(lookup.rows.length * dim);
    let s = 1;
    for (let i = 0; i < table.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      table[i] = ((s >>> 8) / 2 ** 24 - 0.5) * 1.5;
    }
    const labels = new Tensor(batch.labels, [batch.size, 1]);
    const loss = async (t: Float32Array) => binaryCrossEntropyWithLogits(await model.forward(batch, lookup, t), labels);
    const { grad } = await loss(table);
    const analytic = await model.backward(grad);
    expect(analytic.length).toBe(table.length);
    // The entries with the largest gradients (rows shared by several samples among them).
    const order = Array.from(analytic.keys()).sort((a, b) => Math.abs(analytic[b]) - Math.abs(analytic[a])).slice(0, 12);
    const h = 1e-2;
    for (const i of order) {
      const keep = table[i];
      table[i] = keep + h;
      const up = (await loss(table)).loss;
      table[i] = keep - h;
      const down = (await loss(table)).loss;
      table[i] = keep;
      const numeric = (up - down) / (2 * h);
      expect(Math.abs(numeric - analytic[i])).toBeLessThan(0.03 * Math.abs(analytic[i]) + 2e-4);
    }
    expect(Math.abs(analytic[order[0]])).toBeGreaterThan(1e-3); // the check is not vacuous
  });

  it('deduplicates a batch\'s lookups in first-use order (against a Map)', () => {
    // Tables of 3 rows: almost every lookup repeats one (the open-addressing table's probe chains).
    for (const [rows, size] of [[3, 50], [1000, 257], [2 ** 22, 64]]) {
      const batch = new SyntheticCriteo({ rowsPerTable: rows, batchSize: size, seed: 5 }).batch(2);
      const { rows: got, local } = lookupRows(batch, rows);
      const seen = new Map<number, number>();
      const want: number[] = [];
      batch.sparse.forEach((r, i) => {
        const g = (i % 26) * rows + r;
        if (!seen.has(g)) seen.set(g, want.push(g) - 1);
        expect(local[i]).toBe(seen.get(g));
      });
      expect(Array.from(got)).toEqual(want);
    }
  });

  it('trains with the kernel pool not spinning, and gives the setting back', async () => {
    setSpinMicros(777);
    try {
      let during = -1;
      await trainDlrm({ mode: 'none', steps: 2, batchSize: 8, rowsPerTable: 50, dim: 4, evalBatches: 1, onStep: () => (during = spinMicros()) });
      expect(during).toBe(0);
      expect(spinMicros()).toBe(777);
    } finally {
      setSpinMicros(1000);
    }
  });

  it('builds DLRM\'s reference Criteo Kaggle MLPs (13-512-256-64-16, 367-512-256-1)', async () => {
    const { bottom, top } = DLRM_ARCHITECTURES.kaggle;
    const model = new DLRM({ dim: 16, bottom: [...bottom], top: [...top] });
    const shapes = model.parameters().map((p) => p.value.shape.join('x'));
    expect(shapes).toEqual(['512x13', '512', '256x512', '256', '64x256', '64', '16x64', '16', '512x367', '512', '256x512', '256', '1x256', '1']);
    await expect(trainDlrm({ mode: 'none', steps: 1, poolSpinMicros: -1 })).rejects.toThrow(/options.poolSpinMicros/);
    await expect(trainDlrm({ mode: 'none', steps: 1, arch: 'huge' as 'small' })).rejects.toThrow("Expected one of 'kaggle' | 'small' for options.arch but received \"huge\"");
  });
});
