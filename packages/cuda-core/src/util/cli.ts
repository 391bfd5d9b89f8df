// `kintsugi util`: the utilization study from the command line. Prints per-layer and per-network
// markdown tables and writes util.json, roofline.svg and layers.svg.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { cudaStatus, devices, numThreads } from '../device.js';
import { cudaProperties } from '../cuda/memory.js';
import { NvmlSampler, nvmlAvailable } from '../nvml.js';
import { networkNames } from './networks.js';
import { cpuPeak, dtypes, type CpuPeak, type Dtype } from './peak.js';
import { createCpuRunner, defaultBatches, runStudy, withPeak, type LayerResult, type LayerRunner, type StudyResult } from './study.js';
import { rooflineSvg, utilizationSvg } from './svg.js';
import { markdownTable } from './table.js';

const usage = `Usage: kintsugi util [options]

Times every conv and linear layer of ImageNet CNNs (224x224) at each batch size and reports
FLOP-based utilization (achieved FLOP/s / peak FLOP/s) beside NVML's utilization.gpu (GPU only).

Options:
  --device D        cpu | cuda:N (default cpu)
  --networks LIST   comma-separated: ${networkNames.join(',')} (default all)
  --batches LIST    comma-separated batch sizes (default 1,8 on the CPU; ${defaultBatches.join(',')} on a GPU)
  --repeats N       timed runs per layer and batch, median reported (default 3)
  --max-layers N    only the first N distinct layers of each network
  --layers LIST     only these layer names (e.g. conv1,fc)
  --budget-s S      start no new layer after S seconds; the rest is listed as skipped
  --peak KIND       CPU peak: measured (1024^3 sgemm, default) | theoretical (threads x clock x FLOP/cycle)
  --dtype T         fp32 (default) | tf32 | fp16 | bf16 (GPU only; convolutions take fp32 or fp16)
  --out DIR         where util.json, roofline.svg and layers.svg go (default ./util-results)
  --json            print the result as JSON instead of tables
  -h, --help        this text`;

class UsageError extends Error {}

function list(value: string | undefined, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (!items.length) throw new UsageError(`Expected a comma-separated list for --${name} but received ${JSON.stringify(value)}`);
  return items;
}

function positiveInteger(value: string, name: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`Expected a positive integer for --${name} but received ${JSON.stringify(value)}`);
  return n;
}

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      device: { type: 'string', default: 'cpu' },
      networks: { type: 'string' },
      batches: { type: 'string' },
      repeats: { type: 'string', default: '3' },
      'max-layers': { type: 'string' },
      layers: { type: 'string' },
      'budget-s': { type: 'string' },
      peak: { type: 'string', default: 'measured' },
      dtype: { type: 'string', default: 'fp32' },
      out: { type: 'string', default: 'util-results' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help' as const;
  const device = /^(cpu|cuda)(?::(\d+))?$/.exec(values.device);
  if (!device || (device[1] === 'cpu' && device[2] !== undefined && device[2] !== '0')) {
    throw new UsageError(`Expected cpu or cuda:N for --device but received ${JSON.stringify(values.device)}`);
  }
  const networks = list(values.networks, 'networks') ?? networkNames;
  for (const n of networks) {
    if (!(networkNames as string[]).includes(n)) throw new UsageError(`Expected one of ${networkNames.join(', ')} for --networks but received ${JSON.stringify(n)}`);
  }
  const batches = list(values.batches, 'batches')?.map((b) => positiveInteger(b, 'batches'));
  const budget = values['budget-s'] === undefined ? undefined : Number(values['budget-s']);
  if (budget !== undefined && !(budget > 0)) throw new UsageError(`Expected a positive number of seconds for --budget-s but received ${JSON.stringify(values['budget-s'])}`);
  if (values.peak !== 'measured' && values.peak !== 'theoretical') throw new UsageError(`Expected measured or theoretical for --peak but received ${JSON.stringify(values.peak)}`);
  if (!(dtypes as readonly string[]).includes(values.dtype)) throw new UsageError(`Expected one of ${dtypes.join(', ')} for --dtype but received ${JSON.stringify(values.dtype)}`);
  if (device[1] === 'cpu' && values.dtype !== 'fp32') throw new UsageError(`Expected fp32 for --dtype on the CPU (its kernels are float32) but received ${JSON.stringify(values.dtype)}`);
  return {
    kind: device[1] as 'cpu' | 'cuda',
    dtype: values.dtype as Dtype,
    index: Number(device[2] ?? 0),
    networks,
    batches,
    repeats: positiveInteger(values.repeats, 'repeats'),
    maxLayers: values['max-layers'] === undefined ? undefined : positiveInteger(values['max-layers'], 'max-layers'),
    layers: list(values.layers, 'layers'),
    budgetMs: budget === undefined ? undefined : budget * 1e3,
    peak: values.peak as 'measured' | 'theoretical',
    out: resolve(values.out),
    json: values.json,
  };
}

type Options = Exclude<ReturnType<typeof parseOptions>, 'help'>;

/** The runner for --device. A CUDA runner (device tensors, CUDA-event timing) plugs in here. */
/** The runner for --device; peakInfo is the CPU's peak measurement (null on a GPU, whose peak comes from the table). */
async function createRunner(o: Options): Promise<{ runner: LayerRunner; peakInfo: CpuPeak | null }> {
  if (o.kind === 'cuda') {
    const gpu = devices().find((d) => d.kind === 'cuda' && d.index === o.index);
    if (!gpu) {
      const status = cudaStatus();
      throw new UsageError(`No CUDA device cuda:${o.index} for --device (found ${status.deviceCount}; ${status.compiled ? 'CUDA backend compiled' : 'CUDA backend not compiled'}: ${status.reason}). Use --device cpu.`);
    }
    const { createCudaRunner } = await import('./cuda-runner.js');
    return { runner: createCudaRunner(o.index), peakInfo: null };
  }
  const peak = await cpuPeak({ source: o.peak });
  if (peak.warning) process.stderr.write(`Warning: ${peak.warning}\n`);
  return { runner: await createCpuRunner({ peak }), peakInfo: peak };
}

const pct = (v: number | null) => (v === null ? '-' : (100 * v).toFixed(1));
const g = (v: number) => (v >= 1e11 ? (v / 1e9).toFixed(0) : (v / 1e9).toPrecision(3));

function layerTable(rows: LayerResult[]): string {
  return markdownTable(
    ['network', 'layer', 'batch', 'ms', 'GFLOP', 'AI (FLOP/B)', 'GFLOP/s', 'FLOP util %', 'NVML util %'],
    rows.map((r) => [r.network, r.label, String(r.batch), r.ms.toFixed(3), g(r.flops), r.intensity.toFixed(1), (r.flopsPerSec / 1e9).toFixed(1), pct(r.utilization), pct(r.nvmlUtilization)]),
  );
}

function networkTable(result: StudyResult): string {
  return markdownTable(
    ['network', 'batch', 'ms (sum of layers)', 'GFLOP', 'GFLOP/s', 'FLOP util %', 'NVML util %', 'layers'],
    result.networks.map((n) => [n.title, String(n.batch), n.ms.toFixed(2), g(n.flops), (n.flopsPerSec / 1e9).toFixed(1), pct(n.utilization), pct(n.nvmlUtilization), n.complete ? 'all' : 'partial']),
  );
}

async function run(o: Options): Promise<void> {
  const { runner, peakInfo: peakBefore } = await createRunner(o);
  const batches = o.batches ?? (o.kind === 'cpu' ? [1, 8] : defaultBatches);
  const progress = (r: LayerResult) => process.stderr.write(`${r.network} ${r.label} batch ${r.batch}: ${r.ms.toFixed(3)} ms, ${(100 * r.utilization).toFixed(1)}%\n`);
  // On a GPU, NVML's utilization.gpu is sampled beside the FLOP-based figure when NVML loads.
  // NVML numbers devices in its own (PCI) order, CUDA in CUDA_VISIBLE_DEVICES / fastest-first
  // order: the UUID names the same board in both.
  const sampler = o.kind === 'cuda' && nvmlAvailable().available ? new NvmlSampler({ device: cudaProperties(o.index).uuid, intervalMs: 10 }).start() : undefined;
  let result: StudyResult;
  try {
    result = await runStudy({ networks: o.networks, batches, runner, dtype: o.dtype, nvml: sampler, repeats: o.repeats, maxLayers: o.maxLayers, layers: o.layers, budgetMs: o.budgetMs, onResult: o.json ? undefined : progress });
  } finally {
    await sampler?.stop();
  }
  let peakInfo = peakBefore;
  if (peakBefore?.source === 'measured') {
    // Measure again after the study and keep the best: a busy moment during the first measurement
    // would otherwise understate the peak and overstate every layer's utilization.
    peakInfo = await cpuPeak({ refresh: true });
    if (peakInfo.peakFlops > result.peakFlops) result = withPeak(result, peakInfo.peakFlops);
  }
  const over = result.layers.filter((l) => l.utilization > 1).length;
  if (over) process.stderr.write(`Warning: ${over} layer run(s) beat the peak; the machine was likely busy while the peak was measured.\n`);
  await mkdir(o.out, { recursive: true });
  const meta = { date: new Date().toISOString(), node: process.version, threads: numThreads(), peak: peakInfo };
  const files = { json: join(o.out, 'util.json'), roofline: join(o.out, 'roofline.svg'), layers: join(o.out, 'layers.svg') };
  await Promise.all([
    writeFile(files.json, `${JSON.stringify({ ...meta, ...result }, null, 2)}\n`),
    writeFile(files.roofline, rooflineSvg(result)),
    writeFile(files.layers, utilizationSvg(result)),
  ]);
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ ...meta, ...result }, null, 2)}\n`);
    return;
  }
  const bw = result.bandwidth ? `, bandwidth ${(result.bandwidth / 1e9).toFixed(1)} GB/s` : '';
  const source = !peakInfo ? 'SMs x SM clock x FLOP/clock/SM of the architecture' : peakInfo.source === 'measured' ? 'measured: best 1024^3 sgemm before and after the study' : 'theoretical';
  const theory = !peakInfo || peakInfo.theoreticalFlops === null ? '' : `; theoretical ${(peakInfo.theoreticalFlops / 1e9).toFixed(1)} at ${peakInfo.clockMHz?.toFixed(0)} MHz`;
  console.log(`Device: ${result.device}; peak ${(result.peakFlops / 1e9).toFixed(1)} GFLOP/s ${result.dtype} (${source}${theory})${bw}; median of ${result.repeats} runs\n`);
  console.log(layerTable(result.layers));
  console.log();
  console.log(networkTable(result));
  if (result.skipped.length) console.log(`\nSkipped ${result.skipped.length} layer runs after the ${(o.budgetMs as number) / 1e3} s budget.`);
  console.log(`\nWrote ${files.json}, ${files.roofline}, ${files.layers}`);
}

/** Runs `kintsugi util …`; resolves with the exit code (0 ok, 1 failure, 2 usage). */
export async function utilCommand(argv: string[]): Promise<number> {
  let opts: ReturnType<typeof parseOptions>;
  try {
    opts = parseOptions(argv);
    if (opts === 'help') {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    await run(opts);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`kintsugi util: ${(err as Error).message}\n\n${usage}\n`);
      return 2;
    }
    process.stderr.write(`kintsugi util failed: ${(err as Error).message}\n`);
    return 1;
  }
}
