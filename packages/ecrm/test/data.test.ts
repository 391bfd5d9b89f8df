import { describe, expect, it, onTestFinished } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auc, parseCriteoTsv, readCriteoTsv, spreadRank, SyntheticCriteo, toCriteoTsv } from '../src/index.js';

describe('Criteo-shaped data', () => {
  const gen = new SyntheticCriteo({ rowsPerTable: 1000, batchSize: 512, seed: 3 });

  it('generates reproducible batches with Zipf-skewed categories and learnable labels', () => {
    const a = gen.batch(5), b = gen.batch(5);
    expect(a.dense.length).toBe(512 * 13);
    expect(a.sparse.length).toBe(512 * 26);
    expect(Buffer.from(a.sparse.buffer).equals(Buffer.from(b.sparse.buffer))).toBe(true);
    const counts = new Map<number, number>();
    for (let s = 0; s < 512; s++) counts.set(a.sparse[s * 26], (counts.get(a.sparse[s * 26]) ?? 0) + 1);
    const top = Math.max(...counts.values());
    expect(top).toBeGreaterThan(512 / 20); // the hottest row of a 1000-row table takes > 5% of lookups
    const ctr = a.labels.reduce((x, y) => x + y, 0) / 512;
    expect(ctr).toBeGreaterThan(0.15);
    expect(ctr).toBeLessThan(0.6);
    // The hidden model separates clicks: its own logit has a high AUC.
    const scores = Array.from({ length: 512 }, (_, s) => Array.from({ length: 8 }, (_, t) => gen.truth(t, a.sparse[s * 26 + t])).reduce((x, y) => x + y, 0));
    expect(auc(scores, a.labels)).toBeGreaterThan(0.65);
  });

  it('spreads ranks over a table exactly (rank × 2654435761 mod rows, past 2^53)', () => {
    for (const [rank, rows] of [[0, 7], [6, 7], [2 ** 28 - 1, 2 ** 28], [123456789, 200000003], [99999, 100000], [2 ** 27 + 5, 2 ** 28 - 57]]) {
      expect(spreadRank(rank, rows)).toBe(Number((BigInt(rank) * 2654435761n) % BigInt(rows)));
    }
  });

  it('round-trips through the Criteo TSV format', async () => {
    const batch = gen.batch(1);
    const dir = await mkdtemp(join(tmpdir(), 'ecrm-tsv-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'train.txt');
    await writeFile(file, toCriteoTsv(batch));
    const back = await readCriteoTsv(file, { rowsPerTable: 1000, maxLines: 100 });
    expect(back.size).toBe(100);
    expect([...back.sparse]).toEqual([...batch.sparse.subarray(0, 2600)]);
    expect([...back.dense]).toEqual([...batch.dense.subarray(0, 1300)]);
    expect([...back.labels]).toEqual([...batch.labels.subarray(0, 100)]);
  });

  it('reads missing fields and reports malformed lines by number', () => {
    const ok = ['1', ...Array(13).fill(''), ...Array(26).fill('')].join('\t');
    const parsed = parseCriteoTsv(`${ok}\n`, { rowsPerTable: 10 });
    expect(parsed.labels[0]).toBe(1);
    expect(parsed.dense.every((x) => x === 0)).toBe(true);
    const line = (f: string[]) => f.join('\t');
    const good = ['0', ...Array(13).fill('3'), ...Array(26).fill('a1b2c3d4')];
    expect(() => parseCriteoTsv(`${line(good)}\n${line(good.slice(1))}\n`, { rowsPerTable: 10 })).toThrow(/Expected 40 tab-separated fields .* for line 2 but received 39/);
    const badInt = good.slice();
    badInt[5] = 'x7';
    expect(() => parseCriteoTsv(`${line(good)}\n${line(good)}\n${line(badInt)}`, { rowsPerTable: 10 })).toThrow(/Expected an integer or an empty field for I5 on line 3 but received "x7"/);
    const badLabel = good.slice();
    badLabel[0] = '2';
    expect(() => parseCriteoTsv(line(badLabel), { rowsPerTable: 10 })).toThrow(/Expected 0 or 1 for the label on line 1 but received "2"/);
    const badCat = good.slice();
    badCat[20] = 'zz';
    expect(() => parseCriteoTsv(line(badCat), { rowsPerTable: 10 })).toThrow(/for C7 on line 1 but received "zz"/);
  });

  it('computes AUC with ties', () => {
    expect(auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBeCloseTo(0.75);
    expect(auc([1, 1, 1, 1], [0, 1, 0, 1])).toBeCloseTo(0.5);
    expect(auc([3, 2, 1], [1, 0, 0])).toBe(1);
  });
});
