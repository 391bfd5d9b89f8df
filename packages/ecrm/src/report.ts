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
  cpuMsPerStep: number;
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
    recoveryMs, lostMs: Math.max(0, lostMs), recoveryThroughput, maxStepMs: times[times.length - 1] ?? NaN, medianStepMs: times[times.length >> 1] ?? NaN, cpuMsPerStep: result.cpuMsPerStep,
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
  /** Runs of the whole list, interleaved so load from other tenants hits every mode alike; each
   * metric is the median over the runs. */
  repeat?: number;
  log?: (line: string) => void;
}

export const comparisonModes = ['none', 'checkpoint', 'checkpoint-tuned', 'cpr', 'xor', 'xor-replicated', 'rs', 'sum'] as const;

export async function runComparison(o: ComparisonOptions): Promise<ComparisonRow[]> {
  for (const m of o.modes) {
    if (!(comparisonModes as readonly string[]).includes(m)) throw new RangeError(`Expected one of ${comparisonModes.join(', ')} for a mode but received ${JSON.stringify(m)}`);
  }
  const runs: ComparisonRow[][] = o.modes.map(() => []);
  for (let rep = 0; rep < (o.repeat ?? 1); rep++) {
    for (const [i, token] of o.modes.entries()) {
      o.log?.(`running ${token}${o.repeat && o.repeat > 1 ? ` (${rep + 1}/${o.repeat})` : ''} ...`);
      const row = summarize(await trainDlrm(comparisonRun(o, token)));
      if (token === 'checkpoint-tuned') row.label = `${row.label} (tuned)`;
      runs[i].push(row);
      o.log?.(`  ${formatRow(row)}`);
    }
  }
  const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
  const rows = runs.map((list) => {
    const m = (key: keyof ComparisonRow) => median(list.map((r) => r[key] as number));
    return {
      ...list[0], steadyThroughput: m('steadyThroughput'), recoveryMs: m('recoveryMs'), lostMs: m('lostMs'), recoveryThroughput: m('recoveryThroughput'),
      maxStepMs: m('maxStepMs'), medianStepMs: m('medianStepMs'), cpuMsPerStep: m('cpuMsPerStep'), checkpointMs: m('checkpointMs'), evalLoss: m('evalLoss'), evalAuc: m('evalAuc'),
    };
  });
  const baseline = rows[o.modes.indexOf('none')]?.steadyThroughput;
  for (const r of rows) r.overheadPct = baseline ? 100 * (1 - r.steadyThroughput / baseline) : NaN;
  return rows;
}

function comparisonRun(o: ComparisonOptions, token: string): TrainOptions {
  const base: Omit<TrainOptions, 'mode'> = { steps: o.steps, batchSize: o.batchSize, rowsPerTable: o.rowsPerTable, dim: o.dim, k: o.k, seed: o.seed };
  const fail = [o.failure];
  switch (token) {
    case 'none': return { ...base, mode: 'none' };
    case 'checkpoint': return { ...base, mode: 'checkpoint', checkpointEvery: o.checkpointEvery, failures: fail };
    // Checkpointing tuned to ECRM's expected lost work: ECRM redoes no step, and the closest a
    // checkpoint gets is one every step (half a step lost on average).
    case 'checkpoint-tuned': return { ...base, mode: 'checkpoint', checkpointEvery: 1, failures: fail };
    case 'cpr': return { ...base, mode: 'cpr', checkpointEvery: o.checkpointEvery, failures: fail };
    case 'xor': case 'sum': return { ...base, mode: 'ecrm', code: token, failures: fail };
    case 'xor-replicated': return { ...base, mode: 'ecrm', code: 'xor', state: 'replicated', failures: fail };
    // Two simultaneous losses: the failed shard and its neighbour, killed at the same step.
    case 'rs': return { ...base, mode: 'ecrm', code: 'rs', r: 2, failures: [o.failure, { ...o.failure, server: (o.failure.server + 1) % o.k }] };
    default: throw new RangeError(`Expected a comparison mode for a mode but received ${JSON.stringify(token)}`);
  }
}

const fmt = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '-');

function formatRow(r: ComparisonRow): string {
  return `${r.label}: ${fmt(r.steadyThroughput)} samples/s, ${fmt(r.cpuMsPerStep, 1)} CPU ms/step, recovery ${fmt(r.recoveryMs)} ms, lost ${fmt(r.lostMs)} ms, AUC ${fmt(r.evalAuc, 4)}`;
}

export function comparisonTable(rows: ComparisonRow[]): string {
  const head = ['mode', 'samples/s', 'overhead', 'CPU ms/step', 'median step', 'max step', 'recovery', 'time lost', 'samples/s in recovery', 'steps redone', 'checkpoint time', 'eval loss', 'AUC'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const failed = r.result.failures.length > 0;
    lines.push(`| ${[
      r.label, fmt(r.steadyThroughput), `${fmt(r.overheadPct, 1)}%`, fmt(r.cpuMsPerStep, 1), `${fmt(r.medianStepMs, 1)} ms`, `${fmt(r.maxStepMs, 0)} ms`,
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
