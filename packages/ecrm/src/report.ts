// The comparison `kintsugi ecrm` prints: the same DLRM job with the same injected failure under no
// fault tolerance, checkpointing, CPR and ECRM, measured from each run's step timeline.
import { lineChart, type Series } from './svg.js';
import { trainDlrm, type Failure, type TrainOptions, type TrainResult } from './train.js';

export interface ComparisonRow {
  label: string;
  /** Samples/s before the failure (checkpoint writes included), after warm-up. */
  steadyThroughput: number;
  /** Throughput lost against no fault tolerance, %. */
  overheadPct: number;
  /** Failure detected → back to normal: rebuilt and switched over (ECRM), redone past the failure (checkpoint). */
  recoveryMs: number;
  /** Training time the failure cost: recovery window minus the time its new steps take at steady state. */
  lostMs: number;
  /** New progress during the recovery window, samples/s. */
  recoveryThroughput: number;
  /** Longest step after warm-up, ms (a training pause shows here). */
  maxStepMs: number;
  medianStepMs: number;
  lostSteps: number;
  checkpointMs: number;
  evalLoss: number;
  evalAuc: number;
  result: TrainResult;
}

const WARMUP = 3;

export function summarize(result: TrainResult, baseline?: number): ComparisonRow {
  const rec = result.records;
  const firstFailure = result.failures.length ? Math.min(...result.failures.map((f) => f.at)) : Infinity;
  const steady = rec.filter((r, i) => i >= WARMUP && r.t < firstFailure);
  const span = steady.length > 1 ? steady[steady.length - 1].t - rec[WARMUP - 1].t : NaN;
  const steadyThroughput = ((steady.length) * result.batchSize) / (span / 1000);
  const stepMs = 1000 * result.batchSize / steadyThroughput;
  let recoveryMs = 0, lostMs = 0, recoveryThroughput = NaN;
  for (const f of result.failures) {
    const end = Number.isFinite(f.resumedAt) ? f.resumedAt : result.wallMs;
    // The step in flight when the failure hit started before it: count the window from its start.
    const from = Math.max(0, ...rec.filter((r) => r.t <= f.at).map((r) => r.t));
    const useful = rec.filter((r) => !r.redo && r.t > from && r.t <= end).length;
    recoveryMs += end - f.at;
    lostMs += (end - from) - useful * stepMs;
    recoveryThroughput = (useful * result.batchSize) / ((end - from) / 1000);
  }
  const times = rec.slice(WARMUP).map((r) => r.ms).sort((a, b) => a - b);
  return {
    label: result.label, steadyThroughput, overheadPct: baseline ? 100 * (1 - steadyThroughput / baseline) : 0,
    recoveryMs, lostMs: Math.max(0, lostMs), recoveryThroughput, maxStepMs: times[times.length - 1] ?? NaN, medianStepMs: times[times.length >> 1] ?? NaN,
    lostSteps: result.failures.reduce((n, f) => n + f.lostSteps, 0), checkpointMs: result.checkpointMs,
    evalLoss: result.evalLoss, evalAuc: result.evalAuc, result,
  };
}

export interface ComparisonOptions {
  steps: number;
  batchSize: number;
  rowsPerTable: number;
  dim: number;
  k: number;
  seed: number;
  failure: Failure;
  checkpointEvery: number;
  /** Tokens: none, checkpoint, checkpoint-tuned, cpr, xor, xor-replicated, rs, sum. */
  modes: string[];
  log?: (line: string) => void;
}

export async function runComparison(o: ComparisonOptions): Promise<ComparisonRow[]> {
  const base: Omit<TrainOptions, 'mode'> = { steps: o.steps, batchSize: o.batchSize, rowsPerTable: o.rowsPerTable, dim: o.dim, k: o.k, seed: o.seed };
  const rows: ComparisonRow[] = [];
  let baseline: number | undefined;
  for (const token of o.modes) {
    const fail = [o.failure];
    let options: TrainOptions;
    switch (token) {
      case 'none': options = { ...base, mode: 'none' }; break;
      case 'checkpoint': options = { ...base, mode: 'checkpoint', checkpointEvery: o.checkpointEvery, failures: fail }; break;
      // Checkpointing tuned to ECRM's expected lost work: ECRM redoes no step, and the closest a
      // checkpoint gets is one every step (half a step lost on average).
      case 'checkpoint-tuned': options = { ...base, mode: 'checkpoint', checkpointEvery: 1, failures: fail }; break;
      case 'cpr': options = { ...base, mode: 'cpr', checkpointEvery: o.checkpointEvery, failures: fail }; break;
      case 'xor': case 'sum': options = { ...base, mode: 'ecrm', code: token, failures: fail }; break;
      case 'xor-replicated': options = { ...base, mode: 'ecrm', code: 'xor', state: 'replicated', failures: fail }; break;
      case 'rs': options = { ...base, mode: 'ecrm', code: 'rs', r: 2, failures: [o.failure, { ...o.failure, server: (o.failure.server + 1) % o.k }] }; break;
      default: throw new RangeError(`Expected one of none, checkpoint, checkpoint-tuned, cpr, xor, xor-replicated, rs, sum for a mode but received ${JSON.stringify(token)}`);
    }
    o.log?.(`running ${token} ...`);
    const result = await trainDlrm(options);
    const row = summarize(result, baseline);
    if (token === 'none') baseline = row.steadyThroughput;
    if (token === 'checkpoint-tuned') row.label = `${row.label} (tuned)`;
    rows.push(row);
    o.log?.(`  ${formatRow(row)}`);
  }
  return rows;
}

const fmt = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '-');

function formatRow(r: ComparisonRow): string {
  return `${r.label}: ${fmt(r.steadyThroughput)} samples/s, overhead ${fmt(r.overheadPct, 1)}%, recovery ${fmt(r.recoveryMs)} ms, lost ${fmt(r.lostMs)} ms, AUC ${fmt(r.evalAuc, 4)}`;
}

export function comparisonTable(rows: ComparisonRow[]): string {
  const head = ['mode', 'samples/s', 'overhead', 'median step', 'max step', 'recovery', 'time lost', 'samples/s in recovery', 'steps redone', 'checkpoint time', 'eval loss', 'AUC'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const failed = r.result.failures.length > 0;
    lines.push(`| ${[
      r.label, fmt(r.steadyThroughput), `${fmt(r.overheadPct, 1)}%`, `${fmt(r.medianStepMs, 1)} ms`, `${fmt(r.maxStepMs, 0)} ms`,
      failed ? `${fmt(r.recoveryMs)} ms` : '-', failed ? `${fmt(r.lostMs)} ms` : '-', failed ? fmt(r.recoveryThroughput) : '-',
      String(r.lostSteps), `${fmt(r.checkpointMs)} ms`, fmt(r.evalLoss, 4), fmt(r.evalAuc, 4),
    ].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Useful throughput (new steps only) over time, in bins, for each run. */
export function throughputChart(rows: ComparisonRow[]): string {
  const wall = Math.max(...rows.map((r) => r.result.wallMs));
  const bin = Math.max(50, wall / 60);
  const series: Series[] = rows.map((r) => {
    const n = Math.ceil(r.result.wallMs / bin), counts = new Array<number>(n).fill(0);
    for (const rec of r.result.records) if (!rec.redo) counts[Math.min(n - 1, Math.floor(rec.t / bin))]++;
    return {
      label: r.label,
      points: counts.map((c, i) => [((i + 0.5) * bin) / 1000, (c * r.result.batchSize) / (bin / 1000)] as [number, number]),
      markers: r.result.failures.map((f) => f.at / 1000),
    };
  });
  return lineChart(series, { title: 'DLRM training throughput with a shard failure', xLabel: 'time (s)', yLabel: 'new samples / s' });
}
