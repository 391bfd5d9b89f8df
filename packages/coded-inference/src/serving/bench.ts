// ParM's serving comparison at small scale: coded serving (k data workers + 1 parity worker)
// against the baselines, all behind the same frontend (its queueing, worker handles and v2
// client), every worker a real process with the same injected service time, slowdowns and
// crash, and the same Poisson load sent over HTTP to each approach in turn:
//
//   parm-kK       ParM, k = K, r = 1: K data workers and one parity worker
//   equal-N       equal resources: N replicas of the deployed model, each query on one of them
//   replicate-N   N replicas, each query sent to two of them, the first answer wins
//   hedge-N       N replicas, a query re-sent to another replica once it has been out longer
//                 than the running p95 of worker-call latencies, the first answer wins
//
//   node dist/serving/bench.js [--compare] [--approaches parm-k2,equal-3,...] [--rate 75]
//        [--queries 3000] [--repeat 1] [--delay-ms 10] [--slow-prob 0.005] [--slow-ms 100]
//        [--background-cpu 1] [--crash-at-s 10] [--model linear|mnist] [--out DIR] ...
//   (`kintsugi loadgen ...` is the same command; --help lists every option)
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { startCpuLoad, type CpuLoad } from './background.js';
import { runIfMain } from './entry.js';
import { CodedFrontend, type CodedFrontendOptions, type FrontendStats } from './frontend.js';
import { httpSender, runPoissonLoad, summarize, type LoadSummary, type QueryRecord } from './loadgen.js';
import type { ManagedWorkerSpec } from './process.js';
import type { CanvasName } from '../parm/codes.js';
import { expected } from './protocol.js';
import { ccdfPoints, comparisonJson, comparisonMarkdown, writeComparison, type CcdfPoint } from './report.js';

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export type ApproachKind = 'parm' | 'equal' | 'replicate' | 'hedge';

export interface Approach {
  /** As given on the command line: parm-k2, equal-3, replicate-3, hedge-3. */
  name: string;
  kind: ApproachKind;
  /** Worker processes in all. */
  workers: number;
  /** ParM's k (1 for the others). */
  k: number;
  /** Worker calls per query by design (measured ones are reported beside it). */
  nominalCalls: number;
  /** What the approach spends, in words. */
  resources: string;
}

/** parm-kK (K + 1 workers), equal-N, replicate-N, hedge-N (N ≥ 2 for the redundant ones). */
export function parseApproach(name: string, copies = 2): Approach {
  const m = /^(parm-k|equal-|replicate-|hedge-)(\d+)$/.exec(typeof name === 'string' ? name : '');
  if (!m) throw new RangeError(expected('an approach', 'parm-k<K>, equal-<N>, replicate-<N> or hedge-<N>', name));
  const n = Number(m[2]);
  const kind = m[1].replace(/-k?$/, '') as ApproachKind;
  if (kind === 'parm') {
    if (n < 2 || n > 8) throw new RangeError(expected(`k in approach '${name}'`, 'an integer in [2, 8]', n));
    return { name, kind, workers: n + 1, k: n, nominalCalls: (n + 1) / n, resources: `${n + 1} workers (${n} data + 1 parity); ${n + 1}/${n} calls per query` };
  }
  const min = kind === 'equal' ? 1 : Math.max(2, copies);
  if (n < min || n > 16) throw new RangeError(expected(`the workers in approach '${name}'`, `an integer in [${min}, 16]`, n));
  if (kind === 'equal') return { name, kind, workers: n, k: 1, nominalCalls: 1, resources: `${n} workers; 1 call per query` };
  if (kind === 'replicate') return { name, kind, workers: n, k: 1, nominalCalls: copies, resources: `${n} workers; ${copies} calls per query (${copies}× the compute)` };
  return { name, kind, workers: n, k: 1, nominalCalls: 1.05, resources: `${n} workers; 1 call per query + a hedge for the slowest ~5%` };
}

export interface ComparisonOptions {
  approaches: string[];
  /** Mean Poisson arrivals per second, the same for every approach. */
  rate: number;
  /** Measured queries per run, and a bound on a run's sending time. */
  queries: number;
  maxDurationS: number;
  /** Runs per approach, interleaved (approach order within a round, rounds one after the other). */
  repeat: number;
  /**
   * How runs combine into an approach's latency figures: 'median' (default), the median over the
   * runs of each run's own percentiles, so that one run hit by a stall of the shared machine does
   * not decide the tail; or 'pooled', percentiles over all the runs' queries together.
   */
  aggregate: 'median' | 'pooled';
  /** Unmeasured queries before each run (connections, JIT, the hedging estimate). */
  warmup: number;
  /**
   * 'linear' (exact parity, no labels), 'mnist' (the shipped MLP and its sum-encoder parity models)
   * or 'mnist-resnet' (the shipped ResNet and its concatenation-encoder parity models, k = 2…4),
   * 'mnist-resnet-full' (the same with the full-canvas k = 2 parity model: its queries cost two
   * deployed ones); the MNIST workloads report accuracy against the test labels.
   */
  model: 'linear' | 'mnist' | 'mnist-resnet' | 'mnist-resnet-full';
  inputs: number;
  outputs: number;
  /** Every worker's service time per request (a sleep: it stands for accelerator time and holds the worker, not a CPU). */
  delayMs: number;
  /** Slowdowns: with this probability a request on a slowed worker takes slowMs longer. */
  slowProbability: number;
  slowMs: number;
  /** Workers (by index; ParM: data workers 0…k−1, parity worker k) that get the slowdowns; 'all' by default. */
  slowWorkers: number[] | 'all';
  /** CPU busy time per request on every worker (real CPU load). */
  burnMs: number;
  /** Busy-looping background processes for the whole comparison, their duty cycle, and an optional CPU to pin them to. */
  backgroundCpu: number;
  backgroundDuty: number;
  backgroundPin: number | null;
  backgroundNice: number;
  /**
   * Pin every worker process to this CPU (null: not pinned), e.g. the background load's, so the
   * load interferes with the model servers rather than with the frontend, as on separate hosts.
   */
  workerPin: number | null;
  /** Pin this process (the frontend and the load generator) to this CPU (null: not pinned). */
  frontendPin: number | null;
  /** SIGKILL worker `crashWorker` this many seconds into every measured run (null: no crash); the frontend restarts it. */
  crashAtS: number | null;
  crashWorker: number;
  batchSize: number;
  fillTimeoutMs: number;
  /**
   * How long a query of a baseline waits for its assigned worker before any free one takes it
   * (0: one shared queue, the baselines' best); and the same for ParM's slots, where null (never)
   * is best: a slot stuck behind a slow worker is what parity decodes, and moving it there would
   * load the very workers the decode waits for.
   */
  rebalanceMs: number;
  parmRebalanceMs: number | null;
  requestTimeoutMs: number;
  /** Copies per query for replicate-N, and the hedging quantile for hedge-N. */
  copies: number;
  hedgeQuantile: number;
  seed: number;
}

export const compareApproaches = ['parm-k2', 'equal-3', 'replicate-3', 'hedge-3', 'parm-k4', 'equal-5', 'replicate-5', 'hedge-5'];

export const comparisonDefaults: ComparisonOptions = {
  approaches: ['parm-k2', 'equal-3'], rate: 75, queries: 3000, maxDurationS: 120, repeat: 1, aggregate: 'median', warmup: 200,
  model: 'linear', inputs: 64, outputs: 10,
  delayMs: 10, slowProbability: 0.005, slowMs: 100, slowWorkers: 'all', burnMs: 0,
  backgroundCpu: 0, backgroundDuty: 0.5, backgroundPin: null, backgroundNice: 0, workerPin: null, frontendPin: null, crashAtS: null, crashWorker: 0,
  batchSize: 1, fillTimeoutMs: 20, rebalanceMs: 0, parmRebalanceMs: null, requestTimeoutMs: 5000, copies: 2, hedgeQuantile: 0.95, seed: 7,
};

/** One measured run of one approach. */
export interface ComparisonRun {
  approach: string;
  round: number;
  summary: LoadSummary;
  records: QueryRecord[];
  stats: FrontendStats;
  /** Event-loop delay of the process hosting the frontend and the load generator (ms). */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  loadAvg: number;
  /** Share of the run each worker was busy (a call in flight), averaged over the workers. */
  utilization: number;
  /** CPU time of the process hosting the frontend and the load generator, per query (ms). */
  frontendCpuMs: number;
  crashedPid: number | null;
}

/** One approach over all its runs (query records pooled). */
export interface ComparisonRow extends Approach {
  /** Counts over all runs; latency figures per `aggregate`. */
  summary: LoadSummary;
  /** Everything over all the runs' queries together. */
  pooled: LoadSummary;
  /** Worker calls per query sent, measured. */
  callsPerQuery: number;
  hedges: number;
  retries: number;
  restarts: number;
  /** Mean worker busy share over the runs. */
  utilization: number;
  gapMs: number;
  /** The same-sized equal-resources baseline's gap over this one's (higher is better); null without that baseline. */
  gapRatio: number | null;
  /** Median relative to that baseline's (0.03 = 3 % higher). */
  medianVsEqual: number | null;
  ccdf: CcdfPoint[];
}

export interface Comparison {
  options: ComparisonOptions;
  command: string;
  environment: { cpus: number; cpuModel: string; node: string; commit: string; loadAvgStart: number; loadAvgEnd: number; date: string; dataset: string };
  rows: ComparisonRow[];
  runs: Omit<ComparisonRun, 'records'>[];
}

interface Workload {
  encoder?: 'sum' | 'concat';
  canvas?: CanvasName;
  dataSpec: string;
  paritySpec: (k: number) => string;
  sample: (i: number) => Float32Array;
  label?: (i: number) => number;
  dataset: string;
}

async function workload(o: ComparisonOptions): Promise<Workload> {
  if (o.model === 'linear') {
    const spec = `linear:in=${o.inputs},out=${o.outputs},seed=1`;
    return {
      dataSpec: spec, paritySpec: () => spec, dataset: `synthetic inputs, linear ${o.inputs}→${o.outputs} model (the parity model is the model: exact decoding)`,
      sample: (i) => Float32Array.from({ length: o.inputs }, (_, j) => Math.sin(i * 31 + j)),
    };
  }
  // A shipped MNIST model and its parity models (trained with `kintsugi parm train`), on the test set.
  const { loadDatasets, inputSpec, gather } = await import('../parm/data.js');
  const { loadModelFile } = await import('@kintsugi/cuda-core/nn');
  const full = o.model === 'mnist-resnet-full', resnet = full || o.model === 'mnist-resnet';
  const name = resnet ? 'mnist-resnet' : 'mnist-mlp';
  const parityName = (k: number) => (full ? `${name}-parity-full-k${k}` : resnet ? `${name}-parity-concat-k${k}` : `${name}-parity-k${k}`);
  const deployed = join(pkgDir, `models/${name}.safetensors`);
  const { metadata } = await loadModelFile(deployed);
  const { test, note } = await loadDatasets('mnist');
  const spec = inputSpec(metadata, 'mnist');
  return {
    encoder: resnet ? 'concat' : 'sum',
    canvas: full ? 'full' : undefined,
    dataSpec: `file:${deployed}#${name}`,
    paritySpec: (k) => `file:${join(pkgDir, `models/${parityName(k)}.safetensors`)}#${parityName(k)}`,
    sample: (i) => gather(test, [i % test.count], spec),
    label: (i) => test.labels[i % test.count],
    dataset: `${note}; ${name} and its ${full ? 'full-canvas concatenation' : resnet ? 'concatenation' : 'sum'}-encoder parity models from models/`,
  };
}

function checkOptions(o: ComparisonOptions): Approach[] {
  const int = (v: number, name: string, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(expected(name, `an integer in [${min}, ${max}]`, v));
  };
  const num = (v: number, name: string, min: number, max = Infinity) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new RangeError(expected(name, max === Infinity ? `a number ≥ ${min}` : `a number in [${min}, ${max}]`, v));
  };
  if (!(o.rate > 0)) throw new RangeError(expected('--rate', 'a positive number of queries per second', o.rate));
  int(o.queries, '--queries', 1, 10_000_000);
  num(o.maxDurationS, '--max-duration-s', 0.001);
  int(o.repeat, '--repeat', 1, 100);
  int(o.warmup, '--warmup', 0, 1_000_000);
  if (o.aggregate !== 'median' && o.aggregate !== 'pooled') throw new RangeError(expected('--aggregate', "'median' or 'pooled'", o.aggregate));
  if (!['linear', 'mnist', 'mnist-resnet', 'mnist-resnet-full'].includes(o.model)) throw new RangeError(expected('--model', "'linear', 'mnist', 'mnist-resnet' or 'mnist-resnet-full'", o.model));
  num(o.delayMs, '--delay-ms', 0);
  num(o.slowProbability, '--slow-prob', 0, 1);
  num(o.slowMs, '--slow-ms', 0);
  num(o.burnMs, '--burn-ms', 0);
  num(o.fillTimeoutMs, '--fill-timeout-ms', 0);
  num(o.rebalanceMs, '--rebalance-ms', 0);
  if (o.parmRebalanceMs !== null) num(o.parmRebalanceMs, '--parm-rebalance-ms', 0);
  int(o.backgroundCpu, '--background-cpu', 0, 64);
  num(o.backgroundDuty, '--background-duty', 0.001, 1);
  int(o.backgroundNice, '--background-nice', 0, 19);
  int(o.copies, '--copies', 2, 16);
  num(o.hedgeQuantile, '--hedge-quantile', 0.001, 0.999);
  if (!Array.isArray(o.approaches) || o.approaches.length === 0) throw new RangeError(expected('--approaches', 'a non-empty list', o.approaches));
  const approaches = o.approaches.map((a) => parseApproach(a, o.copies));
  const most = Math.max(...approaches.map((a) => a.workers));
  for (const [v, name] of [[o.backgroundPin, '--background-pin'], [o.workerPin, '--worker-pin'], [o.frontendPin, '--frontend-pin']] as const) if (v !== null) int(v, name, 0, cpus().length - 1);
  if (o.crashAtS !== null) {
    num(o.crashAtS, '--crash-at-s', 0);
    // A data worker in every approach (ParM's parity worker is index k).
    int(o.crashWorker, '--crash-worker', 0, Math.min(...approaches.map((a) => (a.kind === 'parm' ? a.k : a.workers))) - 1);
  }
  if (o.slowWorkers !== 'all') for (const w of o.slowWorkers) int(w, '--slow-workers', 0, most - 1);
  const unshipped = approaches.find((a) => a.kind === 'parm' && a.k !== 2);
  if (o.model === 'mnist-resnet-full' && unshipped) {
    throw new RangeError(expected('--approaches', 'parm-k2 as the only ParM approach with --model mnist-resnet-full (the shipped full-canvas parity model is k = 2)', unshipped.name, true));
  }
  return approaches;
}

function frontendFor(a: Approach, o: ComparisonOptions, w: Workload): CodedFrontend {
  // Worker i gets the same faults in every approach; its slowdowns are drawn from its own seed.
  const spec = (i: number, model: string): ManagedWorkerSpec => {
    const slowed = o.slowWorkers === 'all' || o.slowWorkers.includes(i);
    return { model, faults: { delayMs: o.delayMs, burnMs: o.burnMs || undefined, seed: o.seed * 1000 + i, ...(slowed ? { slowProbability: o.slowProbability, slowMs: o.slowMs } : {}) } };
  };
  const common: Partial<CodedFrontendOptions> = { batchSize: o.batchSize, fillTimeoutMs: o.fillTimeoutMs, rebalanceAfterMs: o.rebalanceMs, requestTimeoutMs: o.requestTimeoutMs };
  if (a.kind === 'parm') {
    return new CodedFrontend({ ...common, rebalanceAfterMs: o.parmRebalanceMs ?? Infinity, k: a.k, r: 1, encoder: w.encoder, canvas: w.canvas, data: Array.from({ length: a.k }, (_, i) => spec(i, w.dataSpec)), parity: [spec(a.k, w.paritySpec(a.k))] });
  }
  const data = Array.from({ length: a.workers }, (_, i) => spec(i, w.dataSpec));
  const redundancy = a.kind === 'replicate' ? { mode: 'replicate' as const, copies: o.copies } : a.kind === 'hedge' ? { mode: 'hedge' as const, quantile: o.hedgeQuantile } : undefined;
  return new CodedFrontend({ ...common, k: 1, r: 0, data, redundancy });
}

/** Pins a process and all its threads to one CPU. */
function pin(pid: number | undefined, cpu: number): void {
  if (pid) execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

async function measure(a: Approach, round: number, o: ComparisonOptions, w: Workload): Promise<ComparisonRun> {
  const frontend = await frontendFor(a, o, w).start();
  try {
    if (o.workerPin !== null) {
      for (const h of [...frontend.dataWorkers, ...frontend.parityWorkers]) {
        pin(h.pid, o.workerPin);
        h.on('restart', (pid: number) => pin(pid, o.workerPin!));
      }
    }
    const md = frontend.modelMetadata;
    const send = httpSender(frontend.url, md.name, md.inputs[0], w.sample, o.requestTimeoutMs + 5000);
    if (o.warmup > 0) await runPoissonLoad({ rate: o.rate, queries: o.warmup, send: (i) => send(o.queries + i), seed: o.seed + 99 });
    const before = frontend.stats();
    const cpuBefore = process.cpuUsage();
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    let crashedPid: number | null = null;
    const crash = o.crashAtS === null ? null : setTimeout(() => {
      crashedPid = frontend.dataWorkers[o.crashWorker].pid ?? null;
      if (crashedPid) process.kill(crashedPid, 'SIGKILL');
    }, o.crashAtS * 1000);
    const result = await runPoissonLoad({ rate: o.rate, queries: o.queries, maxDurationS: o.maxDurationS, send, label: w.label, seed: o.seed + round });
    if (crash) clearTimeout(crash);
    loop.disable();
    const after = frontend.stats();
    const cpu = process.cpuUsage(cpuBefore);
    // Counters of the measured run only (the warm-up's subtracted).
    const stats: FrontendStats = { ...after };
    for (const key of ['queries', 'direct', 'reconstructed', 'errors', 'retries', 'dispatches', 'workerCalls', 'hedges'] as const) stats[key] = after[key] - before[key];
    const { records, firstError: _first, ...summary } = result;
    const busy = after.workers.reduce((t, x, j) => t + x.busyMs - before.workers[j].busyMs, 0);
    const utilization = busy / (after.workers.length * result.durationS * 1000);
    const frontendCpuMs = (cpu.user + cpu.system) / 1000 / result.queries;
    return { approach: a.name, round, summary, records, stats, loopDelayP99Ms: loop.percentile(99) / 1e6, loopDelayMaxMs: loop.max / 1e6, loadAvg: loadavg()[0], utilization, frontendCpuMs, crashedPid };
  } finally {
    await frontend.close();
  }
}

/**
 * One approach's row from its runs: counts over all runs, latency figures per `aggregate` (see
 * ComparisonOptions), and the 1 − CDF of all its queries. The baseline ratios are filled in later.
 */
export function combineRuns(a: Approach, runs: Pick<ComparisonRun, 'summary' | 'records' | 'stats' | 'utilization'>[], aggregate: ComparisonOptions['aggregate']): ComparisonRow {
  const records = runs.flatMap((r) => r.records);
  const pooled = summarize(records, runs.reduce((t, r) => t + r.summary.durationS, 0));
  const summary = { ...pooled };
  if (aggregate === 'median') for (const key of ['medianMs', 'p90Ms', 'p99Ms', 'p999Ms', 'meanMs'] as const) summary[key] = median(runs.map((r) => r.summary[key]));
  const total = (key: 'workerCalls' | 'hedges' | 'retries') => runs.reduce((t, r) => t + r.stats[key], 0);
  return {
    ...a, summary, pooled, callsPerQuery: total('workerCalls') / Math.max(1, summary.queries), hedges: total('hedges'), retries: total('retries'),
    restarts: runs.reduce((t, r) => t + r.stats.workers.reduce((u, x) => u + x.restarts, 0), 0),
    utilization: runs.reduce((t, r) => t + r.utilization, 0) / Math.max(1, runs.length),
    gapMs: summary.p999Ms - summary.medianMs, gapRatio: null, medianVsEqual: null, ccdf: ccdfPoints(records),
  };
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b), m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: pkgDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** Runs every approach `repeat` times, interleaved, under the same load and faults. */
export async function runComparison(options: Partial<ComparisonOptions> = {}, log: (line: string) => void = () => {}, command = ''): Promise<Comparison> {
  const o: ComparisonOptions = { ...comparisonDefaults, ...options };
  const approaches = checkOptions(o);
  const w = await workload(o);
  const loadAvgStart = loadavg()[0];
  // Workers forked later inherit this; --worker-pin re-pins them.
  if (o.frontendPin !== null) pin(process.pid, o.frontendPin);
  let background: CpuLoad | null = null;
  if (o.backgroundCpu > 0) background = await startCpuLoad({ processes: o.backgroundCpu, duty: o.backgroundDuty, cpu: o.backgroundPin ?? undefined, nice: o.backgroundNice, seed: o.seed });
  const runs: ComparisonRun[] = [];
  try {
    for (let round = 0; round < o.repeat; round++) {
      for (const a of approaches) {
        const run = await measure(a, round, o, w);
        runs.push(run);
        const s = run.summary;
        const firstError = run.records.find((r) => r.error !== null)?.error;
        log(`round ${round + 1}/${o.repeat} ${a.name}: median ${s.medianMs.toFixed(2)} ms, p99 ${s.p99Ms.toFixed(2)}, p99.9 ${s.p999Ms.toFixed(2)}, ${s.answered}/${s.queries} answered, ${s.errors} errors${firstError ? ` (first: ${firstError})` : ''}, ${s.reconstructed} reconstructed, loop delay p99 ${run.loopDelayP99Ms.toFixed(1)} ms, load ${run.loadAvg.toFixed(2)}`);
      }
    }
  } finally {
    await background?.stop();
  }
  const rows = approaches.map((a) => combineRuns(a, runs.filter((r) => r.approach === a.name), o.aggregate));
  for (const row of rows) {
    const base = rows.find((b) => b.kind === 'equal' && b.workers === row.workers);
    if (!base) continue;
    row.gapRatio = base.gapMs / row.gapMs;
    row.medianVsEqual = row.summary.medianMs / base.summary.medianMs - 1;
  }
  return {
    options: o, command,
    environment: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, commit: gitCommit(), loadAvgStart, loadAvgEnd: loadavg()[0], date: new Date().toISOString(), dataset: w.dataset },
    rows, runs: runs.map(({ records: _r, ...rest }) => rest),
  };
}

const usage = `kintsugi loadgen [--compare] [options]   (also: node dist/serving/bench.js …)

Serves the same Poisson load with ParM and its baselines and prints a table of latency
percentiles. With --compare, runs ${compareApproaches.join(', ')}
and writes <out>/<name>.{json,csv,md} and <name>-tail.svg.

  --approaches A,B,…     parm-k<K>, equal-<N>, replicate-<N>, hedge-<N> (default parm-k2,equal-3)
  --rate QPS             Poisson arrivals per second (75)
  --queries N            measured queries per run (3000); --max-duration-s S bounds a run's sending (120)
  --repeat R             runs per approach, interleaved (1); --aggregate median|pooled: the table's
                         latencies are the median over runs of each run's percentiles (median),
                         or percentiles over all runs' queries together (pooled)
  --warmup N             unmeasured queries before each run (200)
  --model NAME           linear (exact parity; --inputs 64 --outputs 10), or with accuracy the shipped MNIST
                         mnist (MLP, sum-encoder parity models), mnist-resnet (concatenation encoder) or
                         mnist-resnet-full (its full-canvas k = 2 parity model: parm-k2 only)
  --delay-ms D           service time of every request on every worker (10)
  --slow-prob P          a request on a slowed worker is slowed with probability P (0.005) …
  --slow-ms S            … by S ms (100); --slow-workers all|0,2,… picks the slowed workers (all)
  --burn-ms B            CPU busy time per request on every worker (0)
  --background-cpu N     busy-looping background processes (0), --background-duty F (0.5),
                         --background-pin CPU (not pinned), --background-nice N (0);
                         --worker-pin CPU pins the workers, --frontend-pin CPU this process (not pinned)
  --crash-at-s T         SIGKILL worker --crash-worker W (0) T s into every measured run
  --batch B --fill-timeout-ms T --request-timeout-ms T   frontend settings (1, 20, 5000)
  --rebalance-ms T       a baseline's query waits T ms for its worker before any free one takes it (0)
  --parm-rebalance-ms T  the same for ParM's slots (never: they wait for their worker or their decode)
  --copies C --hedge-quantile Q                           replication copies (2), hedging quantile (0.95)
  --seed S               arrivals, samples and slowdown draws (7)
  --out DIR --name STEM  where --compare writes (packages/coded-inference/results, serving-compare)
  --json FILE            also write the full comparison as JSON (without --compare)`;

export interface LoadgenArgs {
  options: Partial<ComparisonOptions>;
  compare: boolean;
  out: string;
  name: string;
  json?: string;
  help: boolean;
}

export function parseLoadgenArgs(argv: string[]): LoadgenArgs {
  const numeric: Record<string, keyof ComparisonOptions> = {
    rate: 'rate', queries: 'queries', 'max-duration-s': 'maxDurationS', repeat: 'repeat', warmup: 'warmup', inputs: 'inputs', outputs: 'outputs',
    'delay-ms': 'delayMs', 'slow-prob': 'slowProbability', 'slow-ms': 'slowMs', 'burn-ms': 'burnMs',
    'background-cpu': 'backgroundCpu', 'background-duty': 'backgroundDuty', 'background-pin': 'backgroundPin', 'background-nice': 'backgroundNice', 'worker-pin': 'workerPin', 'frontend-pin': 'frontendPin',
    'crash-at-s': 'crashAtS', 'crash-worker': 'crashWorker', batch: 'batchSize', 'fill-timeout-ms': 'fillTimeoutMs', 'rebalance-ms': 'rebalanceMs', 'parm-rebalance-ms': 'parmRebalanceMs',
    'request-timeout-ms': 'requestTimeoutMs', copies: 'copies', 'hedge-quantile': 'hedgeQuantile', seed: 'seed',
  };
  const result: LoadgenArgs = { options: {}, compare: false, out: join(pkgDir, 'results'), name: 'serving-compare', help: false };
  const o = result.options as Record<string, unknown>;
  const known = ['--compare', '--help', ...Object.keys(numeric).map((k) => `--${k}`), '--approaches', '--aggregate', '--model', '--slow-workers', '--out', '--name', '--json'];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--compare') {
      result.compare = true;
      continue;
    }
    if (flag === '--help' || flag === '-h') {
      result.help = true;
      continue;
    }
    const key = flag?.startsWith('--') ? flag.slice(2) : '';
    const value = argv[i + 1];
    if (!known.includes(flag)) throw new RangeError(expected('an option', known.join(', '), flag));
    if (value === undefined || value.startsWith('--')) throw new RangeError(expected(`the value of ${flag}`, 'a value', 'nothing', true));
    i++;
    if (key === 'approaches') o.approaches = value.split(',').map((s) => s.trim()).filter(Boolean);
    else if (key === 'model') o.model = value;
    else if (key === 'aggregate') o.aggregate = value;
    else if (key === 'slow-workers') o.slowWorkers = value === 'all' ? 'all' : value.split(',').map(Number);
    else if (key === 'name') result.name = value;
    else if (key === 'out') result.out = resolve(value);
    else if (key === 'json') result.json = value;
    else {
      const v = Number(value);
      if (!Number.isFinite(v) || v < 0) throw new RangeError(expected(flag, 'a non-negative number', value));
      o[numeric[key]] = v;
    }
  }
  if (result.compare && !o.approaches) o.approaches = compareApproaches;
  return result;
}

/** `kintsugi loadgen ...`: ParM against its baselines under the same load and faults. */
export async function loadgenCommand(argv: string[]): Promise<number> {
  const args = parseLoadgenArgs(argv);
  if (args.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const command = `kintsugi loadgen ${argv.join(' ')}`.trim();
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const comparison = await runComparison(args.options, log, command);
  process.stdout.write(`${comparisonMarkdown(comparison)}\n`);
  if (args.compare) {
    const files = await writeComparison(comparison, args.out, args.name);
    process.stdout.write(`\nwrote ${files.join(', ')}\n`);
  } else if (args.json) writeFileSync(args.json, comparisonJson(comparison));
  return 0;
}

runIfMain(import.meta.url, 'kintsugi loadgen', loadgenCommand);
