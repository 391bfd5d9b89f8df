// Results of a serving comparison as files: JSON (everything but per-query records), CSV (one row
// per approach), a markdown table, and the latency tail as an SVG plot of 1 − CDF on a log axis,
// one curve per approach, where the tail ParM cuts is visible at a glance.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { lineChartSvg } from '@kintsugi/cuda-core';

import type { Comparison, ComparisonRow } from './bench.js';
import type { QueryRecord } from './loadgen.js';

/** Latency (ms) and the share of queries slower than it, errors counted as never answered. */
export type CcdfPoint = [latencyMs: number, slowerShare: number];

/**
 * The complementary CDF of the answered latencies, thinned to about 300 evenly spaced points plus
 * every point of the slowest 1 % (where the curve is steep and the tail lives).
 */
export function ccdfPoints(records: readonly QueryRecord[]): CcdfPoint[] {
  const n = records.length;
  const lat = records.filter((r) => r.error === null).map((r) => r.latencyMs).sort((a, b) => a - b);
  const step = Math.max(1, Math.ceil(lat.length / 300)), tail = lat.length - Math.ceil(lat.length / 100);
  const out: CcdfPoint[] = [];
  lat.forEach((v, j) => {
    if (j % step === 0 || j >= tail || j === lat.length - 1) out.push([Number(v.toFixed(3)), (n - j) / n]);
  });
  return out;
}

const fixed = (v: number | null, digits = 2) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const percent = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%`);
const accuracy = (correct: number, total: number) => (total > 0 ? `${((100 * correct) / total).toFixed(2)}%` : '-');

interface Column {
  head: string;
  md: (r: ComparisonRow) => string;
  /** The CSV value, when it differs from the markdown text. */
  csv?: (r: ComparisonRow) => string | number | null;
}

// One list of columns for both tables, so the CSV and the markdown never disagree.
const columns: Column[] = [
  { head: 'approach', md: (r) => r.name },
  { head: 'resources', md: (r) => r.resources },
  { head: 'worker calls/query', md: (r) => fixed(r.callsPerQuery), csv: (r) => r.callsPerQuery },
  { head: 'worker busy', md: (r) => `${(100 * r.utilization).toFixed(0)}%`, csv: (r) => r.utilization },
  { head: 'median ms', md: (r) => fixed(r.summary.medianMs), csv: (r) => r.summary.medianMs },
  { head: 'p90 ms', md: (r) => fixed(r.summary.p90Ms), csv: (r) => r.summary.p90Ms },
  { head: 'p99 ms', md: (r) => fixed(r.summary.p99Ms), csv: (r) => r.summary.p99Ms },
  { head: 'p99.9 ms', md: (r) => fixed(r.summary.p999Ms), csv: (r) => r.summary.p999Ms },
  { head: 'p99.9 − p50 ms', md: (r) => fixed(r.gapMs), csv: (r) => r.gapMs },
  { head: 'gap: equal ÷ this', md: (r) => (r.gapRatio === null || !Number.isFinite(r.gapRatio) ? '-' : `${r.gapRatio.toFixed(2)}×`), csv: (r) => r.gapRatio },
  { head: 'median vs equal', md: (r) => percent(r.medianVsEqual), csv: (r) => r.medianVsEqual },
  { head: 'mean ms', md: (r) => fixed(r.summary.meanMs), csv: (r) => r.summary.meanMs },
  { head: 'pooled p50 / p99.9 ms', md: (r) => `${fixed(r.pooled.medianMs)} / ${fixed(r.pooled.p999Ms)}`, csv: (r) => `${fixed(r.pooled.medianMs, 3)}/${fixed(r.pooled.p999Ms, 3)}` },
  { head: 'answered qps', md: (r) => fixed(r.summary.achievedQps, 1), csv: (r) => r.summary.achievedQps },
  { head: 'reconstructed', md: (r) => `${r.summary.reconstructed} (${fixed((100 * r.summary.reconstructed) / Math.max(1, r.summary.answered))}%)`, csv: (r) => r.summary.reconstructed / Math.max(1, r.summary.answered) },
  { head: 'hedged', md: (r) => String(r.hedges), csv: (r) => r.hedges },
  { head: 'answered/errors', md: (r) => `${r.summary.answered}/${r.summary.errors}`, csv: (r) => `${r.summary.answered}/${r.summary.errors}` },
  { head: 'accuracy (reconstructed)', md: (r) => (r.summary.labelled > 0 ? `${accuracy(r.summary.correct, r.summary.labelled)} (${accuracy(r.summary.reconstructedCorrect, r.summary.reconstructedLabelled)})` : '-'), csv: (r) => (r.summary.labelled > 0 ? r.summary.correct / r.summary.labelled : null) },
];

function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(Number(v.toPrecision(6))) : '') : v;
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One row per approach (header first), RFC 4180 quoting. */
export function comparisonCsv(c: Comparison): string {
  const head = [...columns.map((col) => col.head), 'workers', 'queries', 'retries', 'restarts', 'reconstructed accuracy'];
  const rows = c.rows.map((r) => [
    ...columns.map((col) => (col.csv ? col.csv(r) : col.md(r))), r.workers, r.summary.queries, r.retries, r.restarts,
    r.summary.reconstructedLabelled > 0 ? r.summary.reconstructedCorrect / r.summary.reconstructedLabelled : null,
  ]);
  return [head, ...rows].map((row) => row.map(csvField).join(',')).join('\n') + '\n';
}

export function comparisonJson(c: Comparison): string {
  return `${JSON.stringify(c, null, 1)}\n`;
}

/** The comparison table with the command, the setup and the per-run figures. */
export function comparisonMarkdown(c: Comparison): string {
  const o = c.options, e = c.environment;
  const slowed = o.slowWorkers === 'all' ? 'every worker' : `workers ${o.slowWorkers.join(', ')}`;
  const faults = [
    `service time ${o.delayMs} ms per request (a sleep)`,
    `${slowed} slowed by ${o.slowMs} ms with probability ${o.slowProbability} per request`,
    o.burnMs > 0 ? `${o.burnMs} ms of CPU burnt per request` : '',
    o.backgroundCpu > 0 ? `${o.backgroundCpu} busy background process(es), duty ${o.backgroundDuty}, nice ${o.backgroundNice}${o.backgroundPin === null ? '' : `, pinned to CPU ${o.backgroundPin}`}` : '',
    o.workerPin === null ? '' : `workers pinned to CPU ${o.workerPin}`,
    o.frontendPin === null ? '' : `frontend and load generator pinned to CPU ${o.frontendPin}`,
    o.crashAtS === null ? '' : `worker ${o.crashWorker} SIGKILLed ${o.crashAtS} s into each run (restarted by the frontend)`,
  ].filter(Boolean);
  const lines = [
    `\`${c.command || 'kintsugi loadgen'}\``,
    '',
    `${o.queries} Poisson queries at ${o.rate} qps per run (${o.warmup} unmeasured first), ${o.repeat} run(s) per approach, interleaved; ` +
      `${o.aggregate === 'median' && o.repeat > 1 ? `latencies: the median over the runs of each run's own figures (pooled over all ${o.repeat * o.queries} queries in the "pooled" column)` : 'latencies over all runs\' queries pooled'}. ` +
      `Batch ${o.batchSize}, fill timeout ${o.fillTimeoutMs} ms. Workload: ${e.dataset}. Faults, the same for every approach (worker i the same in each): ${faults.join('; ')}. ` +
      `${e.cpus} CPUs (${e.cpuModel}), node ${e.node}, commit ${e.commit}, load average ${e.loadAvgStart.toFixed(2)} at the start and ${e.loadAvgEnd.toFixed(2)} at the end.`,
    '',
    `| ${columns.map((col) => col.head).join(' | ')} |`,
    `|${columns.map(() => '---').join('|')}|`,
    ...c.rows.map((r) => `| ${columns.map((col) => col.md(r)).join(' | ')} |`),
    '',
    'Runs (CPU time and event-loop delay of the process hosting the frontend and the load generator, and the load average after the run):',
    '',
    '| round | approach | median ms | p99.9 ms | worker busy | errors | retries | frontend CPU ms/query | loop delay p99 / max ms | load |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...c.runs.map((r) => `| ${r.round + 1} | ${r.approach} | ${fixed(r.summary.medianMs)} | ${fixed(r.summary.p999Ms)} | ${(100 * r.utilization).toFixed(0)}% | ${r.summary.errors} | ${r.stats.retries} | ${fixed(r.frontendCpuMs)} | ${fixed(r.loopDelayP99Ms, 1)} / ${fixed(r.loopDelayMaxMs, 1)} | ${fixed(r.loadAvg)} |`),
  ];
  return lines.join('\n');
}

/** 1 − CDF of latency, log y axis, one curve per approach. */
export function tailSvg(c: Comparison): string {
  // The curves are over every query of every run, so the legend gives the pooled p99.9 too.
  const series = c.rows.map((r) => ({ label: `${r.name} (p99.9 ${fixed(r.pooled.p999Ms, 1)} ms)`, points: r.ccdf }));
  const smallest = Math.min(...c.rows.map((r) => 1 / Math.max(1, r.summary.queries)));
  const most = Math.max(...c.rows.map((r) => r.summary.maxMs).filter(Number.isFinite), 1);
  return lineChartSvg(series, {
    title: `Latency tail: ${c.options.queries * c.options.repeat} queries per approach at ${c.options.rate} qps`,
    xLabel: 'latency (ms)', yLabel: 'share of queries slower (1 − CDF)',
    logY: true, yRange: [10 ** Math.floor(Math.log10(smallest)), 1], xRange: [0, most * 1.05],
    yTick: (v) => (v >= 0.01 ? `${Number((100 * v).toPrecision(2))}%` : `${Number((100 * v).toPrecision(1))}%`),
  });
}

/** Writes <stem>.json, <stem>.csv, <stem>.md and <stem>-tail.svg into `dir`; returns the paths. */
export async function writeComparison(c: Comparison, dir: string, stem: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files: [string, string][] = [
    [`${stem}.json`, comparisonJson(c)],
    [`${stem}.csv`, comparisonCsv(c)],
    [`${stem}.md`, `# Serving comparison: ParM and its baselines\n\n${comparisonMarkdown(c)}\n\nPlot: \`${stem}-tail.svg\`.\n`],
    [`${stem}-tail.svg`, tailSvg(c)],
  ];
  await Promise.all(files.map(([name, text]) => writeFile(join(dir, name), text)));
  return files.map(([name]) => join(dir, name));
}
