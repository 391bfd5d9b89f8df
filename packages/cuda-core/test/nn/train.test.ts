// Short training runs on real data slices: loss must fall and test accuracy pass a floor. Floors
// are far below the full-run targets (those are measured by `kintsugi train`, see the nn README)
// but far above chance (10%), so a broken backward or optimizer fails here.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  Adam, buildModel, DataLoader, evaluate, loadFashionMnist, loadMnist, loadModelFile, randomSubset, SGD, subset, trainEpoch, trainStep,
  type ImageDataset,
} from '../../src/nn/index.js';
import { trainCommand } from '../../src/nn/cli.js';

let mnist: { train: ImageDataset; test: ImageDataset } | undefined;
async function mnistSlices() {
  mnist ??= { train: await loadMnist('train'), test: await loadMnist('test') };
  return mnist;
}

describe('training on real data', () => {
  it('MNIST MLP (784-200-100-10): 3 epochs on 5,000 images reach ≥ 90% on 2,000 test images', async () => {
    const { train, test } = await mnistSlices();
    const model = buildModel('mlp', 1);
    const loader = new DataLoader(subset(train, 5000), { batchSize: 64, shuffle: true, seed: 1 });
    const opt = new Adam(model.parameters(), { lr: 2e-3 });
    const losses: number[] = [];
    for (let e = 0; e < 3; e++) losses.push((await trainEpoch(model, loader, opt, { epoch: e })).loss);
    expect(losses[1]).toBeLessThan(losses[0]);
    expect(losses[2]).toBeLessThan(losses[1]);
    const r = await evaluate(model, new DataLoader(subset(test, 2000), { batchSize: 500 }));
    expect(r.accuracy).toBeGreaterThanOrEqual(0.9);
  });

  it('MNIST CNN: 40 steps of 32 images lower the loss and give ≥ 75% on 500 test images', async () => {
    const { train, test } = await mnistSlices();
    const model = buildModel('cnn', 2);
    const loader = new DataLoader(subset(train, 1280), { batchSize: 32, shuffle: true, seed: 2 });
    const opt = new Adam(model.parameters(), { lr: 2e-3 });
    const losses: number[] = [];
    for (const batch of loader.batches(0)) losses.push((await trainStep(model, opt, batch)).loss);
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(losses.slice(-10))).toBeLessThan(0.5 * mean(losses.slice(0, 10)));
    const r = await evaluate(model, new DataLoader(subset(test, 500), { batchSize: 250 }));
    expect(r.accuracy).toBeGreaterThanOrEqual(0.75);
  });

  it('Fashion-MNIST MLP: 2 epochs on 4,000 images give ≥ 70% on 2,000 held-out images', async () => {
    const f = await loadFashionMnist();
    const model = buildModel('mlp', 3);
    const loader = new DataLoader(randomSubset(f.train, 4000, 3), { batchSize: 64, shuffle: true, seed: 3 });
    const opt = new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
    const first = await trainEpoch(model, loader, opt, { epoch: 0 });
    const second = await trainEpoch(model, loader, opt, { epoch: 1 });
    expect(second.loss).toBeLessThan(first.loss);
    const r = await evaluate(model, new DataLoader(randomSubset(f.test, 2000, 4), { batchSize: 500 }));
    expect(r.accuracy).toBeGreaterThanOrEqual(0.7);
  });

  it('resnet-small: 15 steps lower the loss', async () => {
    const { train } = await mnistSlices();
    const model = buildModel('resnet-small', 4);
    const loader = new DataLoader(subset(train, 480), { batchSize: 32, shuffle: true, seed: 4 });
    const opt = new Adam(model.parameters(), { lr: 3e-3 });
    const losses: number[] = [];
    for (const batch of loader.batches(0)) losses.push((await trainStep(model, opt, batch)).loss);
    expect(losses.length).toBe(15);
    expect((losses[12] + losses[13] + losses[14]) / 3).toBeLessThan((losses[0] + losses[1] + losses[2]) / 3);
  });

  it('the JS thread stays responsive: timers fire while a CNN trains', async () => {
    const { train } = await mnistSlices();
    const model = buildModel('cnn', 5);
    const loader = new DataLoader(subset(train, 640), { batchSize: 128 });
    const opt = new Adam(model.parameters());
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const start = performance.now();
    await trainEpoch(model, loader, opt);
    const ms = performance.now() - start;
    clearInterval(timer);
    // Large convolutions and GEMMs are awaited off-thread, so the event loop runs during every step.
    expect(ticks).toBeGreaterThanOrEqual(10);
    expect(ms).toBeGreaterThan(0);
  });
});

describe('kintsugi train', () => {
  it('trains, evaluates and writes a loadable model file; bad arguments exit 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kintsugi-train-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'm.safetensors');
    const code = await trainCommand(['--dataset', 'mnist', '--model', 'mlp', '--epochs', '1', '--limit', '2000', '--lr', '0.002', '--out', out]);
    expect(code).toBe(0);
    const { model, metadata } = await loadModelFile(out);
    expect(model.parameterCount()).toBe(784 * 200 + 200 + 200 * 100 + 100 + 100 * 10 + 10);
    const metrics = JSON.parse(metadata['kintsugi.metrics']) as { testAccuracy: number; testSamples: number };
    expect(metrics.testSamples).toBe(2000);
    expect(metrics.testAccuracy).toBeGreaterThan(0.8);
    expect(JSON.parse(metadata['kintsugi.input'])).toMatchObject({ shape: [1, 28, 28], mean: 0.1307, std: 0.3081 });
    expect(await trainCommand(['--dataset', 'cifar', '--model', 'mlp'])).toBe(2);
    expect(await trainCommand(['--dataset', 'mnist', '--model', 'mlp', '--epochs', '-1'])).toBe(2);
    expect(await trainCommand(['--dataset', 'mnist', '--model', 'mlp', '--bogus'])).toBe(2);
  });
});
