#!/usr/bin/env node
// Kintsugi's CPU kernels against onnxruntime-node (CPU execution provider), measured interleaved in
// one process: MatMul, every ResNet-18 convolution, and the ParM MNIST MLP.
//
//   node bench/node/ort-peer.mjs [--quick] [--sync] [--threads N] [--json out.json] [--only matmul,conv,pass,mlp] [--layers NAME,...] [--batches 1,32]
//
// --quick: fewer repetitions, conv at batch 1 only. --sync: call our *Sync kernels throughout, on the
// JS thread as onnxruntime-node's run() does, to separate kernel speed from the off-thread hand-off.
// Each case runs on 1 thread and on N threads (default: every logical CPU). Ours: setNumThreads(n).
// ORT: one session per thread count with intraOpNumThreads n (the calling thread counts as one),
// interOpNumThreads 1, graphOptimizationLevel 'all'; weights are initializers, so ORT prepacks them.
// Convolutions: ours likewise prepacks the weights once (PackedConv2dWeights) and times forward().
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import ort from 'onnxruntime-node';
import { Tensor, gemm, gemmSync, PackedWeights, PackedConv2dWeights, conv2d, conv2dSync, conv2dParams, setNumThreads, cpuInfo } from '@kintsugi/cuda-core';
import { model, node, floatTensor, floatValue } from './onnx.mjs';

// ---------------------------------------------------------------------------------------------
// Arguments

function parseArgs(argv) {
  const sections = ['matmul', 'conv', 'pass', 'mlp'];
  const args = { quick: false, sync: false, threads: os.cpus().length, json: null, only: sections, layers: null, batches: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new TypeError(`Expected a value after ${a}`);
      return argv[++i];
    };
    if (a === '--quick') args.quick = true;
    else if (a === '--sync') args.sync = true;
    else if (a === '--threads') {
      args.threads = Number(value());
      if (!Number.isInteger(args.threads) || args.threads < 1) throw new RangeError(`Expected a positive integer for --threads but received ${argv[i]}`);
    } else if (a === '--json') args.json = value();
    else if (a === '--only') {
      args.only = value().split(',');
      for (const s of args.only) if (!sections.includes(s)) throw new RangeError(`Expected a list of ${sections.join(', ')} for --only but received ${s}`);
    } else if (a === '--layers') {
      // Conv layers whose name contains one of these (e.g. downsample,layer4); no "sum" rows then.
      args.layers = value().split(',').filter(Boolean);
      if (args.layers.length === 0) throw new RangeError(`Expected a comma-separated list of layer names for --layers but received ${argv[i]}`);
    } else if (a === '--batches') {
      args.batches = value().split(',').map(Number);
      if (!args.batches.every((b) => Number.isInteger(b) && b >= 1)) throw new RangeError(`Expected a list of positive integers for --batches but received ${argv[i]}`);
    } else if (a === '--help' || a === '-h') {
      console.log(`node bench/node/ort-peer.mjs [--quick] [--sync] [--threads N] [--json out.json] [--only ${sections.join(',')}] [--layers NAME,...] [--batches 1,32]`);
      process.exit(0);
    } else throw new RangeError(`Unknown argument ${a}`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const threadCounts = [...new Set([1, args.threads])];

// Per (case, thread count): repetitions fill about this much wall time, within [minReps, maxReps].
const timing = args.quick ? { budgetMs: 600, minReps: 3, maxReps: 25 } : { budgetMs: 3000, minReps: 7, maxReps: 100 };

// Below this many FLOPs we call the synchronous kernels, as @kintsugi/cuda-core/nn does (its
// SYNC_FLOPS): the AsyncWorker round trip costs more than it saves on such small calls.
const SYNC_FLOPS = args.sync ? Infinity : 4e6;

// Calls run back to back. onnxruntime's intra-op workers spin for a while after a run (which
// onnxruntime-node 1.20 cannot turn off) and could steal a core from our next call, but on this
// machine our 256³ gemm timed right after an ORT run was no slower than after a 1-20 ms pause
// (pauses only added wake-up cost), so no settling pause is inserted.

// Outputs are checked against each other once per shape and thread count, after warm-up.
const MAX_REL_ERR = 1e-4;

// ---------------------------------------------------------------------------------------------
// Timing

function stats(ms) {
  const s = [...ms].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], reps: s.length };
}

/**
 * Times several implementations of one computation, interleaved: every repetition runs each side
 * once, and the side that goes first rotates, so drift in a noisy shared machine hits all sides alike.
 * Two untimed warm-up calls per side come first (first-call packing, allocation, page faults); the
 * second also sizes the number of repetitions.
 */
// ORT's intra-op threads keep spinning for ~30 ms after a run (onnxruntime-node 1.20 does not pass
// session config entries such as session.intra_op.allow_spinning to the runtime). A call of ours
// timed inside that window finds the other core taken and runs at one thread's speed. With more
// than one thread, every timed call therefore starts after a pause long enough for the spinning to
// end; each side then starts from sleeping pool threads, as a service's sporadic calls do.
const SETTLE_MS = Number(process.env.SETTLE_MS ?? 40);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function measure(sides, threads = 1) {
  const settle = threads > 1 ? SETTLE_MS : 0;
  let estimate = 0;
  for (const side of sides) {
    await side.run();
    const t0 = performance.now();
    await side.run();
    estimate += performance.now() - t0;
  }
  const reps = Math.min(timing.maxReps, Math.max(timing.minReps, Math.round(timing.budgetMs / Math.max(estimate, 1e-3))));
  const times = sides.map(() => []);
  for (let r = 0; r < reps; r++) {
    for (let j = 0; j < sides.length; j++) {
      const i = (r + j) % sides.length;
      if (settle) await sleep(settle);
      const t0 = performance.now();
      await sides[i].run();
      times[i].push(performance.now() - t0);
    }
  }
  return times.map(stats);
}

// ---------------------------------------------------------------------------------------------
// Helpers

// ORT's default spinning stays on (see SETTLE_MS on why measure() pauses between calls instead).
function createSession(bytes, threads) {
  return ort.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
}

/** max |a - b| over max |b|: error relative to the reference output's scale (elementwise relative
 *  error is meaningless where outputs cross zero). */
function maxRelErr(a, b) {
  if (a.length !== b.length) return Infinity;
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= diff)) diff = d; // also catches NaN
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, Number.MIN_VALUE);
}

const rows = [];
let failures = 0;

function record(row) {
  row.ok = row.maxRelErr <= MAX_REL_ERR;
  if (!row.ok) {
    failures++;
    console.error(`FAIL ${row.section} ${row.shape} threads=${row.threads}: max relative error ${row.maxRelErr.toExponential(2)} > ${MAX_REL_ERR}`);
  }
  rows.push(row);
  return row;
}

function result(s) {
  return { medianMs: s.median, minMs: s.min, maxMs: s.max, reps: s.reps };
}

const f2 = (x) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3));
const msCell = (r) => `${f2(r.medianMs)} [${f2(r.minMs)}–${f2(r.maxMs)}]`;
const gflops = (flops, ms) => flops / (ms * 1e6);
const ratioCell = (r) => `${r.ratio.toFixed(2)} (${r.ratioMin.toFixed(2)})`;
const errCell = (row) => (row.ok ? row.maxRelErr.toExponential(1) : `**FAIL** ${row.maxRelErr.toExponential(1)}`);

function table(header, lines) {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...lines.map((l) => `| ${l.join(' | ')} |`)].join('\n');
}

const RATIO_NOTE = 'ratio = ORT ms ÷ ours ms (> 1: Kintsugi is faster), of the medians and, in parentheses, of the minima. Times: median [min–max] over the repetitions.';

// ---------------------------------------------------------------------------------------------
// 1. MatMul: C[M,N] = A[M,K] · B[K,N], B constant

async function benchMatmul() {
  const shapes = [
    ...[256, 512, 1024, 2048].map((s) => [s, s, s]),
    ...[1, 4, 16, 64].map((m) => [m, 4096, 4096]),
  ];
  const out = [];
  for (const [M, N, K] of shapes) {
    const A = Tensor.random([M, K], 1), B = Tensor.random([K, N], 2);
    const C = Tensor.zeros([M, N]), Cp = Tensor.zeros([M, N]);
    const packed = new PackedWeights(B);
    const flops = 2 * M * N * K;
    const small = flops < SYNC_FLOPS;
    const bytes = model({
      nodes: [node('MatMul', ['a', 'b'], ['c'])],
      initializers: [floatTensor('b', [K, N], B.data)],
      inputs: [floatValue('a', [M, K])],
      outputs: [floatValue('c', [M, N])],
    });
    const feeds = { a: new ort.Tensor('float32', A.data, [M, K]) };
    for (const threads of threadCounts) {
      setNumThreads(threads);
      const session = await createSession(bytes, threads);
      let ortOut = null;
      const sides = [
        { run: async () => (small ? gemmSync(A, B, { out: C }) : gemm(A, B, { out: C })) },
        { run: async () => (small ? packed.matmulSync(A, { out: Cp }) : packed.matmul(A, { out: Cp })) },
        { run: async () => { ortOut = (await session.run(feeds)).c.data; } },
      ];
      const [g, p, o] = await measure(sides, threads);
      const shape = `${M}×${N}×${K}`;
      for (const [impl, s, c] of [['gemm', g, C], ['PackedWeights', p, Cp]]) {
        const row = record({
          section: 'matmul', shape, m: M, n: N, k: K, threads, impl, flops,
          ours: result(s), ort: result(o),
          oursGflops: gflops(flops, s.median), ortGflops: gflops(flops, o.median), ratio: o.median / s.median, ratioMin: o.min / s.min,
          maxRelErr: maxRelErr(c.data, ortOut),
        });
        out.push(row);
        console.error(`matmul ${shape} t=${threads} ${impl}: ours ${f2(s.median)} ms, ORT ${f2(o.median)} ms, ratio ${row.ratio.toFixed(2)}`);
      }
      await session.release();
    }
    packed.dispose();
  }
  return table(
    ['M×N×K', 'threads', 'ours', 'ours ms', 'ORT ms', 'ours GFLOP/s', 'ORT GFLOP/s', 'ratio ORT÷ours: median (min)', 'max rel err'],
    out.map((r) => [r.shape, r.threads, r.impl, msCell(r.ours), msCell(r.ort), r.oursGflops.toFixed(1), r.ortGflops.toFixed(1), ratioCell(r), errCell(r)]),
  );
}

// ---------------------------------------------------------------------------------------------
// 2. ResNet-18 convolutions (224×224 input, no bias: every conv feeds a batch norm)

// Distinct conv shapes of ResNet-18 with how many times each occurs (20 in all).
const RESNET18 = [
  { name: 'conv1 7×7/2', cIn: 3, cOut: 64, hw: 224, k: 7, stride: 2, pad: 3, count: 1 },
  { name: 'layer1 3×3', cIn: 64, cOut: 64, hw: 56, k: 3, stride: 1, pad: 1, count: 4 },
  { name: 'layer2.0 3×3/2', cIn: 64, cOut: 128, hw: 56, k: 3, stride: 2, pad: 1, count: 1 },
  { name: 'layer2 3×3', cIn: 128, cOut: 128, hw: 28, k: 3, stride: 1, pad: 1, count: 3 },
  { name: 'layer2.0 downsample 1×1/2', cIn: 64, cOut: 128, hw: 56, k: 1, stride: 2, pad: 0, count: 1 },
  { name: 'layer3.0 3×3/2', cIn: 128, cOut: 256, hw: 28, k: 3, stride: 2, pad: 1, count: 1 },
  { name: 'layer3 3×3', cIn: 256, cOut: 256, hw: 14, k: 3, stride: 1, pad: 1, count: 3 },
  { name: 'layer3.0 downsample 1×1/2', cIn: 128, cOut: 256, hw: 28, k: 1, stride: 2, pad: 0, count: 1 },
  { name: 'layer4.0 3×3/2', cIn: 256, cOut: 512, hw: 14, k: 3, stride: 2, pad: 1, count: 1 },
  { name: 'layer4 3×3', cIn: 512, cOut: 512, hw: 7, k: 3, stride: 1, pad: 1, count: 3 },
  { name: 'layer4.0 downsample 1×1/2', cIn: 256, cOut: 512, hw: 14, k: 1, stride: 2, pad: 0, count: 1 },
];

/** One ResNet-18 layer at a batch size: shapes, our conv options and FLOPs, and its ORT Conv node. */
function convCase(L, batch) {
  const xShape = [batch, L.cIn, L.hw, L.hw], wShape = [L.cOut, L.cIn, L.k, L.k];
  const options = { stride: L.stride, padding: L.pad };
  const p = conv2dParams(xShape, wShape, options);
  const convNode = (x, w, y) => node('Conv', [x, w], [y], { kernel_shape: [L.k, L.k], strides: [L.stride, L.stride], pads: [L.pad, L.pad, L.pad, L.pad], dilations: [1, 1], group: 1 });
  return { xShape, wShape, options, p, yShape: [batch, L.cOut, p.outH, p.outW], convNode };
}

async function benchConv() {
  const batches = args.batches ?? (args.quick ? [1] : [1, 32]);
  const layers = args.layers ? RESNET18.filter((L) => args.layers.some((name) => L.name.includes(name))) : RESNET18;
  if (layers.length === 0) throw new RangeError(`Expected --layers to name some of ${RESNET18.map((L) => L.name).join(', ')} but received ${args.layers.join(',')}`);
  const out = [];
  for (const batch of batches) {
    // Σ over the 20 convs of (occurrences × per-layer statistic), per thread count.
    const sums = new Map(threadCounts.map((t) => [t, { flops: 0, ours: { medianMs: 0, minMs: 0, maxMs: 0 }, ort: { medianMs: 0, minMs: 0, maxMs: 0 }, maxRelErr: 0 }]));
    for (const L of layers) {
      const { xShape, wShape, options, p, yShape, convNode } = convCase(L, batch);
      const X = Tensor.random(xShape, 3), W = Tensor.random(wShape, 4);
      const bytes = model({
        nodes: [convNode('x', 'w', 'y')],
        initializers: [floatTensor('w', wShape, W.data)],
        inputs: [floatValue('x', xShape)],
        outputs: [floatValue('y', yShape)],
      });
      const feeds = { x: new ort.Tensor('float32', X.data, xShape) };
      const small = p.flops < SYNC_FLOPS;
      for (const threads of threadCounts) {
        setNumThreads(threads);
        const session = await createSession(bytes, threads);
        // Both sides return a fresh output each call: ours allocates it, ORT's node binding copies
        // every output into a fresh ArrayBuffer. (Both could write into a preallocated output, ours
        // with `out`, ORT with pre-allocated `fetches`; ORT measured slower that way here, and fresh
        // outputs are what a caller of either gets by default.)
        // Both sides prepack the weights once: ORT its initializers, ours PackedConv2dWeights
        // (packed here, outside the timed calls, as ORT packs at session creation).
        const packed = new PackedConv2dWeights(W, options);
        let ours = null, ortOut = null;
        const sides = [
          { run: async () => { ours = small ? packed.forwardSync(X) : await packed.forward(X); } },
          { run: async () => { ortOut = (await session.run(feeds)).y.data; } },
        ];
        const [s, o] = await measure(sides, threads);
        const shape = `${xShape.join('×')} * ${wShape.join('×')}`;
        const row = record({
          section: 'conv', layer: L.name, count: L.count, batch, shape, threads, impl: 'conv2d', flops: p.flops,
          ours: result(s), ort: result(o),
          oursGflops: gflops(p.flops, s.median), ortGflops: gflops(p.flops, o.median), ratio: o.median / s.median, ratioMin: o.min / s.min,
          maxRelErr: maxRelErr(ours.data, ortOut),
        });
        out.push(row);
        console.error(`conv b=${batch} ${L.name} t=${threads}: ours ${f2(s.median)} ms, ORT ${f2(o.median)} ms, ratio ${row.ratio.toFixed(2)}`);
        const sum = sums.get(threads);
        sum.flops += L.count * p.flops;
        for (const [side, st] of [['ours', s], ['ort', o]]) {
          sum[side].medianMs += L.count * st.median;
          sum[side].minMs += L.count * st.min;
          sum[side].maxMs += L.count * st.max;
        }
        sum.maxRelErr = Math.max(sum.maxRelErr, row.maxRelErr);
        await session.release();
        packed.dispose();
        ours = null;
        ortOut = null;
      }
    }
    for (const [threads, sum] of layers === RESNET18 ? sums : []) {
      out.push(record({
        section: 'conv', layer: 'sum of all 20 convs', count: 20, batch, shape: `ResNet-18 convs, batch ${batch}`, threads, impl: 'conv2d', flops: sum.flops,
        ours: { ...sum.ours, reps: null }, ort: { ...sum.ort, reps: null },
        oursGflops: gflops(sum.flops, sum.ours.medianMs), ortGflops: gflops(sum.flops, sum.ort.medianMs), ratio: sum.ort.medianMs / sum.ours.medianMs, ratioMin: sum.ort.minMs / sum.ours.minMs,
        maxRelErr: sum.maxRelErr, derived: 'Σ occurrences × per-layer median (min, max likewise)',
      }));
    }
  }
  return table(
    ['layer', 'batch', 'x * w', '×', 'threads', 'ours ms', 'ORT ms', 'ours GFLOP/s', 'ORT GFLOP/s', 'ratio ORT÷ours: median (min)', 'max rel err'],
    out.map((r) => [r.layer, r.batch, r.derived ? '' : r.shape, r.count, r.threads, msCell(r.ours), msCell(r.ort), r.oursGflops.toFixed(1), r.ortGflops.toFixed(1), ratioCell(r), errCell(r)]),
  );
}

// ---------------------------------------------------------------------------------------------
// 2b. The 20 convolutions of one ResNet-18 forward pass, back to back: what a network pays, where
// each layer finds the pool threads the previous one left (spinning ORT threads, ours spinning for
// KINTSUGI_SPIN_US), not threads woken from sleep as the per-layer rows' pauses force on both sides.
// ORT: one graph of 20 independent Conv nodes (one run); ours: 20 calls awaited in turn. The pause
// at more than one thread comes once, before each pass.

async function benchConvPass() {
  const batches = args.batches ?? (args.quick ? [1] : [1, 32]);
  const out = [];
  for (const batch of batches) {
    const layers = RESNET18.flatMap((L) => Array.from({ length: L.count }, () => L));
    const convs = layers.map((L, i) => {
      const c = convCase(L, batch);
      return { ...c, i, X: Tensor.random(c.xShape, 3 + i), W: Tensor.random(c.wShape, 40 + i) };
    });
    const flops = convs.reduce((a, c) => a + c.p.flops, 0);
    const bytes = model({
      nodes: convs.map((c) => c.convNode(`x${c.i}`, `w${c.i}`, `y${c.i}`)),
      initializers: convs.map((c) => floatTensor(`w${c.i}`, c.wShape, c.W.data)),
      inputs: convs.map((c) => floatValue(`x${c.i}`, c.xShape)),
      outputs: convs.map((c) => floatValue(`y${c.i}`, c.yShape)),
    });
    const feeds = Object.fromEntries(convs.map((c) => [`x${c.i}`, new ort.Tensor('float32', c.X.data, c.xShape)]));
    for (const threads of threadCounts) {
      setNumThreads(threads);
      const session = await createSession(bytes, threads);
      const packed = convs.map((c) => new PackedConv2dWeights(c.W, c.options));
      let ours = [], ortOut = null;
      const sides = [
        {
          run: async () => {
            ours = [];
            for (let i = 0; i < convs.length; i++) ours.push(convs[i].p.flops < SYNC_FLOPS ? packed[i].forwardSync(convs[i].X) : await packed[i].forward(convs[i].X));
          },
        },
        { run: async () => { ortOut = await session.run(feeds); } },
      ];
      const [s, o] = await measure(sides, threads);
      const err = Math.max(...convs.map((c) => maxRelErr(ours[c.i].data, ortOut[`y${c.i}`].data)));
      const row = record({
        section: 'pass', layer: 'all 20 convs back to back', count: 20, batch, shape: `ResNet-18 convs, batch ${batch}`, threads, impl: 'conv2d', flops,
        ours: result(s), ort: result(o), oursGflops: gflops(flops, s.median), ortGflops: gflops(flops, o.median), ratio: o.median / s.median, ratioMin: o.min / s.min, maxRelErr: err,
      });
      out.push(row);
      console.error(`pass b=${batch} t=${threads}: ours ${f2(s.median)} ms, ORT ${f2(o.median)} ms, ratio ${row.ratio.toFixed(2)}`);
      await session.release();
      for (const pk of packed) pk.dispose();
      ours = [];
      ortOut = null;
    }
  }
  return table(
    ['batch', 'threads', 'ours ms', 'ORT ms', 'ours GFLOP/s', 'ORT GFLOP/s', 'ratio ORT÷ours: median (min)', 'max rel err'],
    out.map((r) => [r.batch, r.threads, msCell(r.ours), msCell(r.ort), r.oursGflops.toFixed(1), r.ortGflops.toFixed(1), ratioCell(r), errCell(r)]),
  );
}

// ---------------------------------------------------------------------------------------------
// 3. MNIST MLP 784-200-100-10 with ReLU (ParM's deployed-model MLP), inference

async function benchMlp() {
  const sizes = [784, 200, 100, 10];
  // Weights stored [out, in] as nn.Linear / PyTorch keep them (so ORT gets Gemm with transB = 1,
  // the form torch.onnx exports); He-uniform weights and small biases keep activations O(1).
  const layers = sizes.slice(1).map((o, l) => {
    const i = sizes[l], bound = Math.sqrt(6 / i);
    const W = Tensor.random([o, i], 10 + l, -bound, bound), b = Tensor.random([o], 20 + l, -0.1, 0.1);
    return { in: i, out: o, W, b, packed: new PackedWeights(W, { transB: true }), relu: l < sizes.length - 2 };
  });
  const flopsPerSample = layers.reduce((acc, L) => acc + 2 * L.in * L.out, 0);
  const nodes = [], initializers = [];
  layers.forEach((L, l) => {
    const x = l === 0 ? 'x' : `h${l}`, y = L.relu ? `z${l + 1}` : 'y';
    initializers.push(floatTensor(`W${l + 1}`, [L.out, L.in], L.W.data), floatTensor(`b${l + 1}`, [L.out], L.b.data));
    nodes.push(node('Gemm', [x, `W${l + 1}`, `b${l + 1}`], [y], { transB: 1 }));
    if (L.relu) nodes.push(node('Relu', [y], [`h${l + 1}`]));
  });
  const out = [];
  for (const batch of [1, 64, 1024]) {
    const X = Tensor.random([batch, sizes[0]], 5, 0, 1); // pixel-like inputs in [0, 1)
    const acts = layers.map((L) => Tensor.zeros([batch, L.out]));
    const bytes = model({ nodes, initializers, inputs: [floatValue('x', [batch, sizes[0]])], outputs: [floatValue('y', [batch, sizes.at(-1)])] });
    const feeds = { x: new ort.Tensor('float32', X.data, [batch, sizes[0]]) };
    const flops = batch * flopsPerSample;

    // Ours: one packed GEMM per layer into a reused buffer, then bias (+ ReLU) in one JS pass.
    const forward = async () => {
      let h = X;
      for (let l = 0; l < layers.length; l++) {
        const L = layers[l], y = acts[l];
        if (2 * batch * L.in * L.out < SYNC_FLOPS) L.packed.matmulSync(h, { out: y });
        else await L.packed.matmul(h, { out: y });
        const d = y.data, b = L.b.data, n = L.out;
        if (L.relu) {
          for (let r = 0; r < d.length; r += n) for (let j = 0; j < n; j++) { const v = d[r + j] + b[j]; d[r + j] = v > 0 ? v : 0; }
        } else {
          for (let r = 0; r < d.length; r += n) for (let j = 0; j < n; j++) d[r + j] += b[j];
        }
        h = y;
      }
      return h;
    };

    for (const threads of threadCounts) {
      setNumThreads(threads);
      const session = await createSession(bytes, threads);
      let ortOut = null;
      const [s, o] = await measure([
        { run: forward },
        { run: async () => { ortOut = (await session.run(feeds)).y.data; } },
      ], threads);
      const row = record({
        section: 'mlp', shape: `784-200-100-10, batch ${batch}`, batch, threads, impl: 'PackedWeights + JS bias/ReLU', flops,
        ours: result(s), ort: result(o),
        oursGflops: gflops(flops, s.median), ortGflops: gflops(flops, o.median), ratio: o.median / s.median, ratioMin: o.min / s.min,
        oursSamplesPerS: batch / (s.median / 1e3), ortSamplesPerS: batch / (o.median / 1e3),
        maxRelErr: maxRelErr(acts.at(-1).data, ortOut),
      });
      out.push(row);
      console.error(`mlp b=${batch} t=${threads}: ours ${f2(s.median)} ms, ORT ${f2(o.median)} ms, ratio ${row.ratio.toFixed(2)}`);
      await session.release();
    }
  }
  for (const L of layers) L.packed.dispose();
  const k = (x) => (x >= 1e4 ? `${(x / 1e3).toFixed(0)}k` : x.toFixed(0));
  return table(
    ['batch', 'threads', 'ours ms', 'ORT ms', 'ours samples/s', 'ORT samples/s', 'ours GFLOP/s', 'ORT GFLOP/s', 'ratio ORT÷ours: median (min)', 'max rel err'],
    out.map((r) => [r.batch, r.threads, msCell(r.ours), msCell(r.ort), k(r.oursSamplesPerS), k(r.ortSamplesPerS), r.oursGflops.toFixed(1), r.ortGflops.toFixed(1), ratioCell(r), errCell(r)]),
  );
}

// ---------------------------------------------------------------------------------------------

function gitCommit() {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

// Which build of our addon is loaded (a fresh native/build or the package's prebuilds/): rows from a
// stale binary are not this commit's numbers.
const addon = process.report.getReport().sharedObjects.find((so) => /kintsugi|cuda-core/.test(so) && so.endsWith('.node')) ?? 'unknown';

const info = cpuInfo();
const meta = {
  commit: gitCommit(),
  cpu: os.cpus()[0]?.model ?? 'unknown',
  logicalCpus: os.cpus().length,
  isa: info.activeIsa,
  addon,
  node: process.version,
  onnxruntime: ort.env.versions?.node ?? '1.20.1',
  threads: threadCounts,
  args: process.argv.slice(2),
  quick: args.quick,
  sync: args.sync,
  date: new Date().toISOString(),
  method: `interleaved, sides rotate first; 2 warm-up calls per side; ${timing.minReps}-${timing.maxReps} reps (~${timing.budgetMs} ms per case); at more than one thread a ${SETTLE_MS} ms pause before every timed call (ORT's threads spin ~30 ms after a run); ${args.sync ? 'all our calls use the *Sync kernels (on the JS thread)' : `our calls under ${SYNC_FLOPS / 1e6} MFLOP use the *Sync kernels, larger ones the async API`}; conv2d's Promise API runs calls under 16 MFLOP on the calling thread; conv weights prepacked once on both sides (ORT: initializers; ours: PackedConv2dWeights)`,
};

console.log(`# Kintsugi vs onnxruntime-node ${meta.onnxruntime} (CPU)\n`);
console.log(`commit ${meta.commit} · ${meta.cpu} (${meta.logicalCpus} logical CPUs, Kintsugi ISA ${meta.isa}) · Node ${meta.node} · threads ${threadCounts.join(' and ')}${args.quick ? ' · --quick' : ''}\n`);
console.log(`addon ${addon}\n`);
console.log(`${RATIO_NOTE}\nMethod: ${meta.method}.\n`);
const sections = { matmul: ['MatMul (B constant: ORT initializer, ours gemm and PackedWeights)', benchMatmul], conv: ['ResNet-18 convolutions (224×224 input, NCHW, no bias)', benchConv], pass: ['ResNet-18 convolutions back to back (one forward pass)', benchConvPass], mlp: ['MLP 784-200-100-10 + ReLU inference', benchMlp] };
const t0 = performance.now();
for (const name of args.only) {
  const [title, run] = sections[name];
  const md = await run();
  console.log(`## ${title}\n\n${md}\n`);
}
console.log(`Total ${((performance.now() - t0) / 1e3).toFixed(0)} s.${failures ? ` ${failures} row(s) FAILED the output check (max relative error > ${MAX_REL_ERR}).` : ''}`);
if (args.json) {
  writeFileSync(args.json, `${JSON.stringify({ ...meta, maxRelErrTolerance: MAX_REL_ERR, ratio: 'ort.medianMs / ours.medianMs (> 1: Kintsugi faster); ratioMin the same of the minima', rows }, null, 2)}\n`);
  console.error(`wrote ${args.json}`);
}
if (failures) process.exitCode = 1;
