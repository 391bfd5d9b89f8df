// The `kintsugi` command. With no subcommand it runs the main job: every kernel on the best
// device found, checked against a reference, with a table of sizes, throughput and pass/fail.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { colSums, rowSums } from './checksum.js';
import { conv2d, conv2dParams } from './conv.js';
import { cpuInfo, cudaStatus, devices, numThreads } from './device.js';
import { embeddingBag } from './embedding.js';
import { gemm } from './gemm.js';
import { sumDecode, sumEncode, xorEncode } from './parity.js';
import { Tensor } from './tensor.js';
import { markdownTable } from './util/table.js';
import { convOutputAt, gemmProjectionError } from './verify.js';

export interface Row {
  kernel: string;
  size: string;
  ms: number;
  rate: string;
  check: string;
  pass: boolean;
}

async function timeIt(fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn(); // warm-up: first-touch page faults and packing buffers
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

const gflops = (flops: number, ms: number) => `${(flops / ms / 1e6).toFixed(1)} GFLOP/s`;
const gbps = (bytes: number, ms: number) => `${(bytes / ms / 1e6).toFixed(2)} GB/s`;

async function gemmRows(quick: boolean): Promise<Row[]> {
  const rows: Row[] = [];
  const sizes = quick ? [64, 256, 512] : [64, 256, 512, 1024, 2048];
  for (const s of sizes) {
    const a = Tensor.random([s, s], 1), b = Tensor.random([s, s], 2);
    const c = await gemm(a, b);
    const err = gemmProjectionError(a.data, b.data, c.data, s, s, s);
    const ms = await timeIt(() => gemm(a, b, { out: c }), s >= 1024 ? 5 : 20);
    // Normalised projection error: fp32 rounding gives ~1e-7·k; 1e-4 means a wrong result.
    rows.push({ kernel: 'sgemm', size: `${s}x${s}x${s}`, ms, rate: gflops(2 * s ** 3, ms), check: `proj err ${err.toExponential(1)}`, pass: err < 1e-4 });
  }
  for (const m of [1, 16]) {
    const n = 4096, k = 4096;
    const a = Tensor.random([m, k], 3), b = Tensor.random([k, n], 4);
    const c = await gemm(a, b);
    const err = gemmProjectionError(a.data, b.data, c.data, m, n, k);
    const ms = await timeIt(() => gemm(a, b, { out: c }), 10);
    rows.push({ kernel: 'sgemm (inference)', size: `${m}x${n}x${k}`, ms, rate: gflops(2 * m * n * k, ms), check: `proj err ${err.toExponential(1)}`, pass: err < 1e-4 });
  }
  return rows;
}

async function convRows(quick: boolean): Promise<Row[]> {
  const layers = [
    { name: 'conv 3x3 (ResNet-18 layer1)', x: [1, 64, 56, 56], w: [64, 64, 3, 3], opts: { padding: 1 } },
    { name: 'conv 1x1 stride 2', x: [1, 64, 56, 56], w: [128, 64, 1, 1], opts: { stride: 2 } },
    { name: 'conv 7x7 stride 2', x: [1, 3, 224, 224], w: [64, 3, 7, 7], opts: { stride: 2, padding: 3 } },
    { name: 'conv 3x3 depthwise', x: [1, 128, 56, 56], w: [128, 1, 3, 3], opts: { padding: 1, groups: 128 } },
  ];
  const rows: Row[] = [];
  for (const layer of quick ? layers.slice(0, 2) : layers) {
    const x = Tensor.random(layer.x, 5), w = Tensor.random(layer.w, 6), bias = Tensor.random([layer.w[0]], 7);
    const p = conv2dParams(x.shape, w.shape, layer.opts);
    const y = await conv2d(x, w, bias, layer.opts);
    // Check 64 sampled outputs against a direct float64 computation.
    let worst = 0;
    for (let i = 0; i < 64; i++) {
      const co = (i * 7919) % p.cOut, oy = (i * 104729) % p.outH, ox = (i * 1299709) % p.outW;
      const want = convOutputAt(x.data, w.data, p, 0, co, oy, ox, bias.data);
      const got = y.get(0, co, oy, ox);
      worst = Math.max(worst, Math.abs(got - want) / (1 + Math.abs(want)));
    }
    const ms = await timeIt(() => conv2d(x, w, bias, layer.opts), 10);
    rows.push({ kernel: layer.name, size: `${layer.x.join('x')} * ${layer.w.join('x')}`, ms, rate: gflops(p.flops, ms), check: `max err ${worst.toExponential(1)}`, pass: worst < 1e-4 });
  }
  return rows;
}

async function codingRows(): Promise<Row[]> {
  const rows: Row[] = [];
  const len = 4 << 20, k = 4;
  const blocks = Array.from({ length: k }, (_, i) => {
    const b = new Uint8Array(len);
    for (let j = 0; j < len; j++) b[j] = (j * (i + 3) + i) & 255;
    return b;
  });
  const parity = await xorEncode(blocks);
  const recovered = await xorEncode([parity, ...blocks.slice(1)]);
  const exact = recovered.every((v, i) => v === blocks[0][i]);
  const ms = await timeIt(() => xorEncode(blocks), 10);
  rows.push({ kernel: 'xor parity encode', size: `${k} x 4 MiB`, ms, rate: gbps(k * len, ms), check: exact ? 'decode exact' : 'decode WRONG', pass: exact });

  const fl = Array.from({ length: k }, (_, i) => Tensor.random([len / 4], 10 + i).data);
  const coeffs = [1, 2, 3, 4];
  const sum = await sumEncode(fl, coeffs);
  const back = await sumDecode(sum, fl.slice(1), coeffs.slice(1), coeffs[0]);
  let worst = 0;
  for (let i = 0; i < back.length; i++) worst = Math.max(worst, Math.abs(back[i] - fl[0][i]));
  const msSum = await timeIt(() => sumEncode(fl, coeffs), 10);
  rows.push({ kernel: 'float-sum parity encode', size: `${k} x 4 MiB`, ms: msSum, rate: gbps(k * len, msSum), check: `decode err ${worst.toExponential(1)}`, pass: worst < 1e-5 });

  const m = 2048, n = 1024;
  const a = Tensor.random([m, n], 20);
  const rs = await rowSums(a), cs = await colSums(a);
  let total = 0;
  for (let i = 0; i < a.data.length; i++) total += a.data[i];
  const rsTotal = rs.data.reduce((s, v) => s + v, 0), csTotal = cs.data.reduce((s, v) => s + v, 0);
  const agree = Math.abs(rsTotal - total) < 1e-6 * m * n && Math.abs(csTotal - total) < 1e-6 * m * n;
  const msRows = await timeIt(() => rowSums(a), 10);
  rows.push({ kernel: 'row checksums (fp64 acc.)', size: `${m}x${n}`, ms: msRows, rate: gbps(4 * m * n, msRows), check: agree ? 'totals agree' : 'totals differ', pass: agree });
  return rows;
}

async function embeddingRows(): Promise<Row[]> {
  const rowsN = 100_000, dim = 64, bags = 2048, perBag = 20;
  const table = Tensor.random([rowsN, dim], 30);
  const indices = new Int32Array(bags * perBag);
  for (let i = 0; i < indices.length; i++) indices[i] = (i * 2654435761) % rowsN;
  const offsets = Int32Array.from({ length: bags + 1 }, (_, b) => b * perBag);
  const out = await embeddingBag(table, indices, offsets, { mode: 'sum' });
  let worst = 0;
  for (const b of [0, 1, bags - 1]) {
    for (let d = 0; d < dim; d++) {
      let s = 0;
      for (let j = offsets[b]; j < offsets[b + 1]; j++) s += table.data[indices[j] * dim + d];
      worst = Math.max(worst, Math.abs(out.get(b, d) - s));
    }
  }
  const ms = await timeIt(() => embeddingBag(table, indices, offsets), 10);
  return [{ kernel: 'embedding bag (sum)', size: `${bags} bags x ${perBag} of ${rowsN}x${dim}`, ms, rate: gbps(indices.length * dim * 4, ms), check: `max err ${worst.toExponential(1)}`, pass: worst < 1e-4 }];
}

function printTable(rows: Row[]): void {
  const header = ['kernel', 'size', 'median ms', 'throughput', 'check', 'result'];
  console.log(markdownTable(header, rows.map((r) => [r.kernel, r.size, r.ms.toFixed(3), r.rate, r.check, r.pass ? 'PASS' : 'FAIL'])));
}

async function demo(args: string[]): Promise<number> {
  const quick = args.includes('--quick');
  const cpu = cpuInfo();
  const gpu = cudaStatus();
  const device = devices().find((d) => d.kind === 'cuda') ?? devices()[0];
  console.log(`Kintsugi ${device.kind === 'cuda' ? 'GPU' : 'CPU'} run on ${device.name} (${device.kind}${device.kind === 'cpu' ? `, ${cpu.activeIsa}, ${numThreads()} threads` : ''})`);
  if (!gpu.deviceCount) console.log(`CUDA: ${gpu.compiled ? 'backend compiled' : 'not compiled'}; ${gpu.reason}`);
  const rows = [...(await gemmRows(quick)), ...(await convRows(quick)), ...(await codingRows()), ...(await embeddingRows())];
  if (gpu.deviceCount > 0) {
    const { gpuDemoRows } = await import('./cuda/demo.js');
    rows.push(...(await gpuDemoRows(quick)));
  }
  printTable(rows);
  const failed = rows.filter((r) => !r.pass).length;
  console.log(failed ? `${failed} check(s) FAILED` : `all ${rows.length} checks passed`);
  return failed ? 1 : 0;
}

// Commands provided by the higher packages. cuda-core does not depend on them: they are found by
// name in the current project (where `npm install @kintsugi/abft` puts them) or beside this package.
const packageCommands: Record<string, { module: string; exportName: string }> = {
  abft: { module: '@kintsugi/abft/cli', exportName: 'abftCommand' },
  serve: { module: '@kintsugi/coded-inference/cli', exportName: 'serveCommand' },
  loadgen: { module: '@kintsugi/coded-inference/cli', exportName: 'loadgenCommand' },
  parm: { module: '@kintsugi/coded-inference/cli', exportName: 'parmCommand' },
  ecrm: { module: '@kintsugi/ecrm/cli', exportName: 'ecrmCommand' },
};

type Command = (argv: string[]) => Promise<number>;

async function findPackageCommand(name: string): Promise<Command | undefined> {
  const spec = packageCommands[name];
  for (const base of [join(process.cwd(), 'package.json'), import.meta.url]) {
    let path: string;
    try {
      path = createRequire(base).resolve(spec.module);
    } catch {
      continue;
    }
    const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    if (typeof mod[spec.exportName] === 'function') return mod[spec.exportName] as Command;
  }
  return undefined;
}

function usage(): void {
  console.log(`Usage: kintsugi [command]

Commands:
  demo [--quick]   run every kernel on the best device, check it, print throughput (default)
  devices          list devices and why there is or is not a GPU
  train ...        train a model (kintsugi train --help)
  util ...         per-layer FLOP-based utilization of CNNs, roofline (kintsugi util --help)
  abft ...         fault-injection campaigns and ABFT overhead (@kintsugi/abft)
  serve ...        the coded-inference frontend with model workers (@kintsugi/coded-inference)
  loadgen ...      ParM vs equal resources, replication and hedging under load (@kintsugi/coded-inference)
  parm ...         parity-model training and degraded-mode evaluation (@kintsugi/coded-inference)
  ecrm ...         erasure-coded DLRM training with failures (@kintsugi/ecrm)
  help             this text`);
}

export async function main(argv: string[]): Promise<number> {
  const [command = 'demo', ...rest] = argv;
  switch (command) {
    case 'demo':
    case '--quick':
      return demo(command === '--quick' ? ['--quick', ...rest] : rest);
    case 'devices':
      console.log(JSON.stringify({ devices: devices(), cuda: cudaStatus(), cpu: cpuInfo() }, null, 2));
      return 0;
    case 'train': {
      const { trainCommand } = await import('./nn/cli.js');
      return trainCommand(rest);
    }
    case 'util': {
      const { utilCommand } = await import('./util/cli.js');
      return utilCommand(rest);
    }
    case 'help':
    case '--help':
    case '-h':
      usage();
      return 0;
    default: {
      if (Object.hasOwn(packageCommands, command)) {
        const run = await findPackageCommand(command);
        if (run) return run(rest);
        const pkg = packageCommands[command].module.replace(/\/cli$/, '');
        console.error(`"kintsugi ${command}" is provided by ${pkg}, which was not found: npm install ${pkg}`);
        return 2;
      }
      console.error(`Unknown command "${command}".`);
      usage();
      return 2;
    }
  }
}
