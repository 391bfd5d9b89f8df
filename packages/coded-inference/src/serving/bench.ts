// ParM's serving comparison at small scale: coded (k data workers + r parity workers) against an
// equal-resources baseline (k + r replicas of the deployed model behind a least-loaded balancer),
// every worker a real process with the same injected service time and background slowdowns, and
// the same Poisson load sent over HTTP to each frontend in turn.
//
//   node dist/serving/bench.js [--rate 120] [--queries 3000] [--k 2] [--r 1] [--delay-ms 4]
//        [--slow-prob 0.03] [--slow-ms 60] [--batch 1] [--fill-timeout-ms 10] [--json out.json]
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { runIfMain } from './entry.js';

import { CodedFrontend } from './frontend.js';
import { httpSender, runPoissonLoad, type LoadResult } from './loadgen.js';
import type { ManagedWorkerSpec } from './process.js';
import { expected } from './protocol.js';

export interface ServingBenchOptions {
  rate: number;
  queries: number;
  k: number;
  r: number;
  delayMs: number;
  slowProbability: number;
  slowMs: number;
  batchSize: number;
  fillTimeoutMs: number;
  inputs: number;
  outputs: number;
}

export interface ServingBenchRow extends LoadResult {
  config: string;
  workers: number;
}

const defaults: ServingBenchOptions = { rate: 120, queries: 3000, k: 2, r: 1, delayMs: 4, slowProbability: 0.03, slowMs: 60, batchSize: 1, fillTimeoutMs: 10, inputs: 64, outputs: 10 };

async function measure(config: string, frontend: CodedFrontend, o: ServingBenchOptions): Promise<ServingBenchRow> {
  await frontend.start();
  try {
    const sample = (i: number) => Float32Array.from({ length: o.inputs }, (_, j) => Math.sin(i * 31 + j));
    const send = httpSender(frontend.url, frontend.modelMetadata.name, frontend.modelMetadata.inputs[0].name, sample);
    // Warm-up outside the measurement: connections, JIT, the workers' first GEMMs.
    await runPoissonLoad({ rate: o.rate, queries: Math.min(200, o.queries), send, seed: 99 });
    const result = await runPoissonLoad({ rate: o.rate, queries: o.queries, send, seed: 7 });
    return { config, workers: frontend.dataWorkers.length + frontend.parityWorkers.length, ...result };
  } finally {
    await frontend.close();
  }
}

export async function runServingBench(options: Partial<ServingBenchOptions> = {}): Promise<ServingBenchRow[]> {
  const o = { ...defaults, ...options };
  const spec = `linear:in=${o.inputs},out=${o.outputs},seed=1`;
  // Each worker draws its own slowdowns (distinct seeds), as independent background load would.
  const worker = (i: number): ManagedWorkerSpec => ({ model: spec, faults: { delayMs: o.delayMs, slowProbability: o.slowProbability, slowMs: o.slowMs, seed: 1000 + i } });
  const n = o.k + o.r;
  const coded = new CodedFrontend({
    k: o.k, r: o.r, batchSize: o.batchSize, fillTimeoutMs: o.fillTimeoutMs,
    data: Array.from({ length: o.k }, (_, i) => worker(i)),
    parity: Array.from({ length: o.r }, (_, i) => worker(o.k + i)),
  });
  const rows = [await measure(`ParM k=${o.k} r=${o.r}`, coded, o)];
  const baseline = new CodedFrontend({ k: 1, r: 0, batchSize: o.batchSize, fillTimeoutMs: o.fillTimeoutMs, data: Array.from({ length: n }, (_, i) => worker(i)) });
  rows.push(await measure(`equal resources (${n} replicas)`, baseline, o));
  return rows;
}

export function benchMarkdown(rows: ServingBenchRow[], o: ServingBenchOptions): string {
  const f = (x: number) => x.toFixed(2);
  const lines = [
    `Serving bench: ${o.queries} Poisson queries at ${o.rate} qps over HTTP, linear ${o.inputs}→${o.outputs}, batch ${o.batchSize}; ` +
      `each worker: ${o.delayMs} ms service time, slowed by ${o.slowMs} ms with probability ${o.slowProbability}; ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}.`,
    '',
    '| config | workers | median ms | p99 ms | p99.9 ms | p99.9 − median | mean ms | reconstructed | errors | achieved qps |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.config} | ${r.workers} | ${f(r.medianMs)} | ${f(r.p99Ms)} | ${f(r.p999Ms)} | ${f(r.p999Ms - r.medianMs)} | ${f(r.meanMs)} | ${r.reconstructed} | ${r.errors} | ${r.achievedQps.toFixed(1)} |`),
  ];
  return lines.join('\n');
}

function parse(argv: string[]): Partial<ServingBenchOptions> & { json?: string } {
  const names: Record<string, keyof ServingBenchOptions> = {
    rate: 'rate', queries: 'queries', k: 'k', r: 'r', 'delay-ms': 'delayMs', 'slow-prob': 'slowProbability', 'slow-ms': 'slowMs',
    batch: 'batchSize', 'fill-timeout-ms': 'fillTimeoutMs', in: 'inputs', out: 'outputs',
  };
  const out: Partial<ServingBenchOptions> & { json?: string } = {};
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '');
    const value = argv[i + 1];
    if (key === 'json') {
      out.json = value;
      continue;
    }
    const name = names[key];
    if (!name) throw new RangeError(expected('an option', Object.keys(names).map((n) => `--${n}`).concat('--json').join(', '), argv[i]));
    const v = Number(value);
    if (!Number.isFinite(v) || v < 0) throw new RangeError(expected(`--${key}`, 'a non-negative number', value));
    out[name] = v;
  }
  return out;
}


/** `kintsugi loadgen ...`: coded serving against the equal-resources baseline under the same load. */
export async function loadgenCommand(argv: string[]): Promise<number> {
  const { json, ...opts } = parse(argv);
  const rows = await runServingBench(opts);
  const o = { ...defaults, ...opts };
  process.stdout.write(`${benchMarkdown(rows, o)}\n`);
  if (json) writeFileSync(json, JSON.stringify({ options: o, rows, cpus: cpus().length, node: process.version, date: new Date().toISOString() }, null, 2));
  return 0;
}

runIfMain(import.meta.url, 'kintsugi loadgen', loadgenCommand);
