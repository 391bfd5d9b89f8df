#!/usr/bin/env node
// ResNet-18 convolutions, ours (PackedConv2dWeights, Promise API) against onnxruntime-node, measured
// interleaved by wall time and by process CPU time (process.cpuUsage: user + system of every
// thread). On a shared, loaded machine the wall-time median includes time spent waiting for a core;
// CPU time does not, so it tracks the work each side does.
//
//   node bench/node/conv-cputime.mjs [--batch N] [--reps R] [--sync]
import { performance } from 'node:perf_hooks';
import ort from 'onnxruntime-node';
import { Tensor, PackedConv2dWeights, conv2dParams, setNumThreads } from '@kintsugi/cuda-core';
import { model, node, floatTensor, floatValue } from './onnx.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : dflt; };
const batch = opt('--batch', 1), reps = opt('--reps', 41), sync = argv.includes('--sync');
setNumThreads(1);
const LAYERS = [
  ['conv1 7×7/2', 3, 64, 224, 7, 2, 3, 1], ['layer1 3×3', 64, 64, 56, 3, 1, 1, 4], ['layer2.0 3×3/2', 64, 128, 56, 3, 2, 1, 1],
  ['layer2 3×3', 128, 128, 28, 3, 1, 1, 3], ['layer2.0 ds 1×1/2', 64, 128, 56, 1, 2, 0, 1], ['layer3.0 3×3/2', 128, 256, 28, 3, 2, 1, 1],
  ['layer3 3×3', 256, 256, 14, 3, 1, 1, 3], ['layer3.0 ds 1×1/2', 128, 256, 28, 1, 2, 0, 1], ['layer4.0 3×3/2', 256, 512, 14, 3, 2, 1, 1],
  ['layer4 3×3', 512, 512, 7, 3, 1, 1, 3], ['layer4.0 ds 1×1/2', 256, 512, 14, 1, 2, 0, 1],
];
const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[s.length >> 1]; };
const sums = { oursWall: 0, ortWall: 0, oursCpu: 0, ortCpu: 0 };
console.log(`batch ${batch}, 1 thread, ${reps} interleaved reps, medians; ours: PackedConv2dWeights.${sync ? 'forwardSync' : 'forward'}`);
console.log('| layer | × | ours wall ms | ORT wall ms | ratio | ours CPU ms | ORT CPU ms | ratio |\n|---|---|---|---|---|---|---|---|');
for (const [name, cIn, cOut, hw, k, s, p, count] of LAYERS) {
  const xShape = [batch, cIn, hw, hw], wShape = [cOut, cIn, k, k], o = { stride: s, padding: p };
  const q = conv2dParams(xShape, wShape, o);
  const X = Tensor.random(xShape, 3), W = Tensor.random(wShape, 4);
  const bytes = model({
    nodes: [node('Conv', ['x', 'w'], ['y'], { kernel_shape: [k, k], strides: [s, s], pads: [p, p, p, p], dilations: [1, 1], group: 1 })],
    initializers: [floatTensor('w', wShape, W.data)], inputs: [floatValue('x', xShape)], outputs: [floatValue('y', [batch, cOut, q.outH, q.outW])],
  });
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '0' } } } });
  const feeds = { x: new ort.Tensor('float32', X.data, xShape) };
  const packed = new PackedConv2dWeights(W, o);
  const sides = [async () => (sync ? packed.forwardSync(X) : await packed.forward(X)), async () => (await session.run(feeds)).y];
  const wall = [[], []], cpu = [[], []];
  for (const f of sides) { await f(); await f(); }
  for (let r = 0; r < reps; r++) {
    for (let j = 0; j < 2; j++) {
      const i = (r + j) % 2;
      const c0 = process.cpuUsage(), t0 = performance.now();
      await sides[i]();
      const t1 = performance.now(), c1 = process.cpuUsage(c0);
      wall[i].push(t1 - t0);
      cpu[i].push((c1.user + c1.system) / 1000);
    }
  }
  const w0 = median(wall[0]), w1 = median(wall[1]), u0 = median(cpu[0]), u1 = median(cpu[1]);
  sums.oursWall += count * w0; sums.ortWall += count * w1; sums.oursCpu += count * u0; sums.ortCpu += count * u1;
  console.log(`| ${name} | ${count} | ${w0.toFixed(3)} | ${w1.toFixed(3)} | ${(w1 / w0).toFixed(2)} | ${u0.toFixed(3)} | ${u1.toFixed(3)} | ${(u1 / u0).toFixed(2)} |`);
  await session.release();
  packed.dispose();
}
console.log(`| sum of 20 | 20 | ${sums.oursWall.toFixed(2)} | ${sums.ortWall.toFixed(2)} | ${(sums.ortWall / sums.oursWall).toFixed(2)} | ${sums.oursCpu.toFixed(2)} | ${sums.ortCpu.toFixed(2)} | ${(sums.ortCpu / sums.oursCpu).toFixed(2)} |`);
