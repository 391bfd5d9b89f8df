// Training-step time of the nn models: forward, cross-entropy, backward and an Adam step on one
// batch, repeated; prints the median and minimum step and images per second.
//
//   node bench/node/train-step.mjs [--batch 64] [--steps 40] [--models resnet-small,cnn,mlp] [--canvas 28x56]
//
// --canvas HxW sets the input size (28x28 by default; ParM's full-canvas k = 2 parity model trains
// on 28x56). The first 5 steps are warm-up. No peer: onnxruntime-node does not train.
import { performance } from 'node:perf_hooks';
import { cpuInfo, numThreads, Tensor } from '@kintsugi/cuda-core';
import { Adam, cnn, crossEntropy, manualSeed, mlp, resnetSmall } from '@kintsugi/cuda-core/nn';

const args = { batch: 64, steps: 40, models: ['resnet-small', 'cnn', 'mlp'], canvas: [28, 28] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i], v = argv[i + 1];
  if (a === '--help' || a === '-h') {
    console.log('node bench/node/train-step.mjs [--batch N] [--steps N] [--models resnet-small,cnn,mlp] [--canvas HxW]');
    process.exit(0);
  }
  if (v === undefined) throw new TypeError(`Expected a value after ${a}`);
  i++;
  if (a === '--batch' || a === '--steps') {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`Expected a positive integer for ${a} but received ${v}`);
    args[a.slice(2)] = n;
  } else if (a === '--models') args.models = v.split(',');
  else if (a === '--canvas') {
    const m = /^(\d+)x(\d+)$/.exec(v);
    if (!m) throw new RangeError(`Expected HxW for --canvas but received ${v}`);
    args.canvas = [Number(m[1]), Number(m[2])];
  } else throw new RangeError(`Expected an option but received ${a}`);
}

const [h, w] = args.canvas;
console.log(`${cpuInfo().brand}, ${numThreads()} threads; batch ${args.batch}, input 1x${h}x${w}, ${args.steps} steps after 5 warm-up\n`);
console.log('| model | median step ms | min ms | images/s |\n|---|--:|--:|--:|');
for (const name of args.models) {
  manualSeed(1);
  if (name === 'cnn' && h !== w) {
    console.log(`| cnn | (square inputs only) | | |`);
    continue;
  }
  const model = name === 'mlp' ? mlp(h * w) : name === 'cnn' ? cnn(1, 10, h) : name === 'resnet-small' ? resnetSmall() : null;
  if (!model) throw new RangeError(`Expected resnet-small, cnn or mlp in --models but received ${name}`);
  const opt = new Adam(model.parameters(), { lr: 1e-4 });
  const x = Tensor.random(name === 'mlp' ? [args.batch, h * w] : [args.batch, 1, h, w], 3);
  const labels = Int32Array.from({ length: args.batch }, (_, i) => i % 10);
  const times = [];
  for (let it = 0; it < args.steps + 5; it++) {
    const t0 = performance.now();
    opt.zeroGrad();
    const y = await model.forward(x);
    await model.backward(crossEntropy(y, labels).grad);
    opt.step();
    if (it >= 5) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1];
  console.log(`| ${name} | ${median.toFixed(1)} | ${times[0].toFixed(1)} | ${Math.round((1000 * args.batch) / median)} |`);
}
