// The comparison `kintsugi ecrm` prints: the same DLRM job with the same injected failure under no
// fault tolerance, checkpointing, CPR and ECRM, measured from each run's step timeline.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { lineChart, type Series } from './svg.js';
import type { DlrmArchitecture } from './model.js';
import { interleavedStepTimes, modeLabel, trainDlrm, type Failure, type TrainOptions, type TrainResult } from './train.js';

export interface ComparisonRow {
  label: string;
  /** Samples/s before the failure (checkpoint writes included), after warm-up. */
  steadyThroughput: number;
  /** Throughput lost against no fault tolerance, %. */
  overheadPct: number;
  /** Failure detected → the lost rows are served again (ECRM: by the spare, decoding rows not yet
   * rebuilt; checkpoint/CPR: restarted and loaded). Training waits for this much at least. */
  serveMs: number;
  /** Failure detected → fully recovered: every row rebuilt and switched over (ECRM), the lost steps
   * redone and new progress again (checkpoint), new progress again (CPR). */
  recoveryMs: number;
  /** Training time the failure cost: the recovery window (from the start of the step the failure
   * hit) minus the time its new steps take at steady state. Counts pauses, redone steps and the
   * slowdown while a rebuild runs beside training, the same way for every mode. */
  lostMs: number;
  /** Recovery time: serving again (serveMs) plus the training time lost after that (slowdown
   * beside a rebuild, redone steps), each counted once. */
  recoveryCostMs: number;
  /** Longest time without new progress in the recovery window, ms (the training pause). */
  recoveryStepMs: number;
  /** The same, counted from the failure's detection rather than from the end of the last step
   * before it (a killed process takes some ms to tear down before its sockets close). */
  detectedPauseMs: number;
  /** New progress during the recovery window, samples/s. */
  recoveryThroughput: number;
  /** Longest step after warm-up, ms (a training pause shows here). */
  maxStepMs: number;
  medianStepMs: number;
  cpuMsPerStep: number;
  /** The shard processes' part of cpuMsPerStep. */
  shardCpuMsPerStep: number;
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
  let serveMs = 0, recoveryMs = 0, lostMs = 0, recoveryCostMs = 0, recoveryThroughput = NaN, recoveryStepMs = NaN, detectedPauseMs = NaN;
  const lastStep = rec.length ? rec[rec.length - 1].t : 0;
  for (const f of result.failures) {
    const end = Number.isFinite(f.resumedAt) ? f.resumedAt : result.wallMs;
    // Training time only: a rebuild still running after the last step costs no training time here
    // (rebuildAfterTrainingMs says how long it went on).
    const trainingEnd = Math.min(end, lastStep);
    // The step in flight when the failure hit started before it: count the window from its start.
    const from = Math.max(0, ...rec.filter((r) => r.t <= f.at).map((r) => r.t));
    const window = rec.filter((r) => r.t > from && r.t <= Math.max(trainingEnd, from));
    const useful = window.filter((r) => !r.redo).length;
    const servedAt = Number.isFinite(f.servedAt) ? f.servedAt : end;
    serveMs += servedAt - f.at;
    const afterServing = rec.filter((r) => !r.redo && r.t > servedAt && r.t <= trainingEnd).length;
    recoveryCostMs += (servedAt - f.at) + Math.max(0, (trainingEnd - servedAt) - afterServing * stepMs);
    recoveryMs += end - f.at;
    lostMs += (trainingEnd - from) - useful * stepMs;
    recoveryThroughput = (useful * result.batchSize) / ((trainingEnd - from) / 1000);
    // The longest time without new progress: between consecutive new steps, from the end of the
    // last step before the failure (a restart's pause lies between steps, not inside one).
    let last = from, lastDetected = f.at;
    for (const r of rec.filter((r) => r.t > from && !r.redo && r.t <= Math.max(trainingEnd, from) + 1e-9).concat(rec.filter((r) => r.t > trainingEnd && !r.redo).slice(0, 1))) {
      recoveryStepMs = Math.max(Number.isFinite(recoveryStepMs) ? recoveryStepMs : 0, r.t - last);
      last = r.t;
      if (r.t <= f.at) continue;
      detectedPauseMs = Math.max(Number.isFinite(detectedPauseMs) ? detectedPauseMs : 0, r.t - lastDetected);
      lastDetected = r.t;
    }
  }
  const times = rec.slice(WARMUP).map((r) => r.ms).sort((a, b) => a - b);
  return {
    label: result.label, steadyThroughput, overheadPct: baseline ? 100 * (1 - steadyThroughput / baseline) : 0,
    serveMs, recoveryMs, lostMs: Math.max(0, lostMs), recoveryCostMs, recoveryThroughput, recoveryStepMs, detectedPauseMs, maxStepMs: times[times.length - 1] ?? NaN, medianStepMs: times[times.length >> 1] ?? NaN, cpuMsPerStep: result.cpuMsPerStep, shardCpuMsPerStep: result.cpuMsPerStep - result.trainerCpuMsPerStep,
    lostSteps: result.failures.reduce((n, f) => n + f.lostSteps, 0), checkpointMs: result.checkpointMs,
    evalLoss: result.evalLoss, evalAuc: result.evalAuc, result,
  };
}

export interface ComparisonOptions {
  steps: number;
  batchSize: number;
  rowsPerTable: number;
  dim: number;
  arch?: DlrmArchitecture;
  k: number;
  seed: number;
  failure: Failure;
  checkpointEvery: number;
  /** Tokens: none, checkpoint, checkpoint-tuned, cpr, xor, xor-replicated, rs, sum. */
  modes: string[];
  /** Runs of the whole list, interleaved so load from other tenants hits every mode alike; each
   * metric is the median over the runs. */
  repeat?: number;
  /** ECRM rebuild tuning: slots per range read and a pause between ranges (cluster defaults otherwise). */
  rebuild?: { rangeSlots?: number; pauseMs?: number };
  log?: (line: string) => void;
}

/** Steps of the untimed run before a comparison (see runComparison). */
const WARMUP_RUN_STEPS = 40;

export const comparisonModes = ['none', 'checkpoint', 'checkpoint-tuned', 'cpr', 'xor', 'xor-replicated', 'rs', 'sum'] as const;

export async function runComparison(o: ComparisonOptions): Promise<ComparisonRow[]> {
  for (const m of o.modes) {
    if (!(comparisonModes as readonly string[]).includes(m)) throw new RangeError(`Expected one of ${comparisonModes.join(', ')} for a mode but received ${JSON.stringify(m)}`);
  }
  const runs: ComparisonRow[][] = o.modes.map(() => []);
  // An untimed run first: the trainer's code is compiled by V8 during the first job it runs, which
  // made the first mode (no FT) look slowest (`--quick`: xor at −28 % "overhead").
  o.log?.('warming up ...');
  await trainDlrm({ ...comparisonRun(o, 'none'), steps: Math.min(o.steps, WARMUP_RUN_STEPS), evalBatches: 1 });
  for (let rep = 0; rep < (o.repeat ?? 1); rep++) {
    for (const [i, token] of o.modes.entries()) {
      o.log?.(`running ${token}${o.repeat && o.repeat > 1 ? ` (${rep + 1}/${o.repeat})` : ''} ...`);
      await settle();
      const row = summarize(await trainDlrm(comparisonRun(o, token)));
      if (token === 'checkpoint-tuned') row.label = `${row.label} (tuned)`;
      runs[i].push(row);
      o.log?.(`  ${formatRow(row)}`);
    }
  }
  const rows = runs.map((list) => {
    const m = (key: keyof ComparisonRow) => quantile(list.map((r) => r[key] as number), 0.5);
    return {
      ...list[0], steadyThroughput: m('steadyThroughput'), serveMs: m('serveMs'), recoveryMs: m('recoveryMs'), recoveryCostMs: m('recoveryCostMs'), recoveryStepMs: m('recoveryStepMs'), detectedPauseMs: m('detectedPauseMs'), lostMs: m('lostMs'), recoveryThroughput: m('recoveryThroughput'),
      maxStepMs: m('maxStepMs'), medianStepMs: m('medianStepMs'), cpuMsPerStep: m('cpuMsPerStep'), shardCpuMsPerStep: m('shardCpuMsPerStep'), checkpointMs: m('checkpointMs'), evalLoss: m('evalLoss'), evalAuc: m('evalAuc'),
    };
  });
  const baseline = rows[o.modes.indexOf('none')]?.steadyThroughput;
  for (const r of rows) r.overheadPct = baseline ? 100 * (1 - r.steadyThroughput / baseline) : NaN;
  return rows;
}

/**
 * Lets the machine go quiet before a run: what the last one left behind (a checkpointing run's
 * gigabytes of dirty pages being written back, its killed processes being torn down) would
 * otherwise take cores from the next mode's measurement on a small machine.
 */
async function settle(): Promise<void> {
  if (process.platform !== 'win32') await promisify(execFile)('sync').catch(() => undefined);
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}
const SETTLE_MS = 250;

/** The training options of no FT and of the ECRM tokens (null for the checkpointing ones). */
function codeOf(token: string): Pick<TrainOptions, 'mode' | 'code' | 'state' | 'r'> | null {
  switch (token) {
    case 'none': return { mode: 'none' };
    case 'xor': case 'sum': return { mode: 'ecrm', code: token };
    case 'xor-replicated': return { mode: 'ecrm', code: 'xor', state: 'replicated' };
    case 'rs': return { mode: 'ecrm', code: 'rs', r: 2 };
    default: return null;
  }
}

function comparisonRun(o: ComparisonOptions, token: string): TrainOptions {
  const base: Omit<TrainOptions, 'mode'> = { steps: o.steps, batchSize: o.batchSize, rowsPerTable: o.rowsPerTable, dim: o.dim, arch: o.arch, k: o.k, seed: o.seed, rebuild: o.rebuild };
  const fail = [o.failure];
  switch (token) {
    case 'none': return { ...base, mode: 'none' };
    case 'checkpoint': return { ...base, mode: 'checkpoint', checkpointEvery: o.checkpointEvery, failures: fail };
    // Checkpointing tuned to ECRM's expected lost work: ECRM redoes no step, and the closest a
    // checkpoint gets is one every step (half a step lost on average).
    case 'checkpoint-tuned': return { ...base, mode: 'checkpoint', checkpointEvery: 1, failures: fail };
    case 'cpr': return { ...base, mode: 'cpr', checkpointEvery: o.checkpointEvery, failures: fail };
    case 'xor': case 'sum': case 'xor-replicated': return { ...base, ...codeOf(token)!, failures: fail };
    // Two simultaneous losses: the failed shard and its neighbour, killed at the same step.
    case 'rs': return { ...base, ...codeOf(token)!, failures: [o.failure, { ...o.failure, server: (o.failure.server + 1) % o.k }] };
    default: throw new RangeError(`Expected a comparison mode for a mode but received ${JSON.stringify(token)}`);
  }
}

export interface InterleavedOverheadOptions {
  /** No FT first (the baseline), then ECRM tokens: xor, xor-replicated, rs, sum. */
  modes: string[];
  steps: number;
  warmup?: number;
  batchSize: number;
  rowsPerTable: number;
  dim: number;
  arch?: DlrmArchitecture;
  k: number;
  seed: number;
}

export interface InterleavedOverheadRow {
  label: string;
  medianStepMs: number;
  /** Median over the rounds of this mode's step time ÷ the baseline's in the same round, − 1. */
  overheadPct: number;
  /** The same ratio's first and third quartiles (%). */
  quartilesPct: [number, number];
}

/**
 * Steady-state overhead with the modes' steps interleaved (see interleavedStepTimes): all clusters
 * up at once, one step each in turn. Robust to the VM's slow spells, which sequential runs are not.
 */
export async function runInterleavedOverhead(o: InterleavedOverheadOptions): Promise<InterleavedOverheadRow[]> {
  if (o.modes[0] !== 'none') throw new RangeError(`Expected 'none' (the baseline) as the first mode but received ${JSON.stringify(o.modes[0])}`);
  const jobs = o.modes.map((token): TrainOptions => {
    const code = codeOf(token);
    if (!code) throw new RangeError(`Expected one of none, xor, xor-replicated, rs, sum for a mode but received ${JSON.stringify(token)}`);
    return { ...code, steps: o.steps, batchSize: o.batchSize, rowsPerTable: o.rowsPerTable, dim: o.dim, arch: o.arch, k: o.k, seed: o.seed };
  });
  const times = await interleavedStepTimes(jobs, o.steps, o.warmup);
  return jobs.map((job, j) => {
    const ratios = times[j].map((t, r) => 100 * (t / times[0][r] - 1));
    return { label: modeLabel({ ...job, k: o.k }), medianStepMs: quantile(times[j], 0.5), overheadPct: quantile(ratios, 0.5), quartilesPct: [quantile(ratios, 0.25), quantile(ratios, 0.75)] };
  });
}

export function interleavedOverheadTable(rows: InterleavedOverheadRow[]): string {
  const lines = ['| mode | median step | overhead (median of per-round ratios) | quartiles |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.label} | ${fmt(r.medianStepMs, 2)} ms | ${fmt(r.overheadPct, 1)}% | ${fmt(r.quartilesPct[0], 1)}% … ${fmt(r.quartilesPct[1], 1)}% |`);
  return lines.join('\n');
}

const fmt = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '-');
/** The q-quantile of xs, the element at ⌊q × n⌋ of the sorted values (q = 0.5: the median, upper for even n). */
const quantile = (xs: number[], q: number) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

function formatRow(r: ComparisonRow): string {
  return `${r.label}: ${fmt(r.steadyThroughput)} samples/s, ${fmt(r.cpuMsPerStep, 1)} CPU ms/step, serving after ${fmt(r.serveMs)} ms, recovery time ${fmt(r.recoveryCostMs)} ms, rebuilt after ${fmt(r.recoveryMs)} ms, lost ${fmt(r.lostMs)} ms, longest pause ${fmt(r.recoveryStepMs)} ms (${fmt(r.detectedPauseMs)} ms after detection), AUC ${fmt(r.evalAuc, 4)}${r.result.hedges?.sent ? `, pulls hedged ${r.result.hedges.sent} (the spare first ${r.result.hedges.won})` : ''}`;
}

export function comparisonTable(rows: ComparisonRow[]): string {
  const head = ['mode', 'samples/s', 'overhead', 'CPU ms/step (shards)', 'median step', 'max step', 'serving again', 'recovery time', 'time lost', 'fully recovered', 'longest pause', 'samples/s in recovery', 'steps redone', 'checkpoint time', 'eval loss', 'AUC'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const failed = r.result.failures.length > 0;
    lines.push(`| ${[
      r.label, fmt(r.steadyThroughput), `${fmt(r.overheadPct, 1)}%`, `${fmt(r.cpuMsPerStep, 1)} (${fmt(r.shardCpuMsPerStep, 1)})`, `${fmt(r.medianStepMs, 1)} ms`, `${fmt(r.maxStepMs, 0)} ms`,
      failed ? `${fmt(r.serveMs)} ms` : '-', failed ? `${fmt(r.recoveryCostMs)} ms` : '-', failed ? `${fmt(r.lostMs)} ms` : '-', failed ? `${fmt(r.recoveryMs)} ms` : '-', failed ? `${fmt(r.recoveryStepMs)} ms (${fmt(r.recoveryStepMs / r.medianStepMs, 1)}× step)` : '-', failed ? fmt(r.recoveryThroughput) : '-',
      String(r.lostSteps), `${fmt(r.checkpointMs)} ms`, fmt(r.evalLoss, 4), fmt(r.evalAuc, 4),
    ].join(' | ')} |`);
  }
  return lines.join('\n');
}

/**
 * The ratios the comparison is about: ECRM xor's steady-state overhead against checkpointing
 * tuned to the same expected lost work, and the cost of a failure against a restart from a
 * checkpoint (time lost and time to full recovery, defined the same way for both).
 */
export function comparisonSummary(rows: ComparisonRow[]): string {
  const xor = rows.find((r) => r.label.startsWith('ecrm xor') && !r.label.includes('replicated'));
  if (!xor) return '';
  const lines: string[] = [];
  const ratio = (a: number, b: number) => (b > 0 && Number.isFinite(a / b) ? a / b : NaN);
  const tuned = rows.find((r) => r.label.endsWith('(tuned)'));
  if (tuned) {
    lines.push(`- steady-state overhead: ecrm xor ${fmt(xor.overheadPct, 1)}% of no-FT throughput; tuned checkpointing ${fmt(tuned.overheadPct, 1)}% ` +
      `→ ECRM's overhead is ${fmt(100 * ratio(xor.overheadPct, tuned.overheadPct), 0)}% of the checkpoint's (CPU: ${fmt(xor.cpuMsPerStep, 1)} vs ${fmt(tuned.cpuMsPerStep, 1)} ms/step)`);
  }
  const none = rows.find((r) => r.label === 'no fault tolerance');
  if (none) {
    lines.push(`- by median step: ecrm xor ${fmt(xor.medianStepMs, 1)} vs no-FT ${fmt(none.medianStepMs, 1)} ms (+${fmt(100 * (xor.medianStepMs / none.medianStepMs - 1), 1)}%); ` +
      `by CPU: ${fmt(xor.cpuMsPerStep, 1)} vs ${fmt(none.cpuMsPerStep, 1)} ms/step (+${fmt(100 * (xor.cpuMsPerStep / none.cpuMsPerStep - 1), 1)}%, shards ${fmt(xor.shardCpuMsPerStep, 1)} vs ${fmt(none.shardCpuMsPerStep, 1)})`);
  }
  if (xor.result.failures.length) {
    // A step always takes a step's time: the pause is the wait beyond it.
    const beyond = xor.recoveryStepMs - xor.medianStepMs;
    lines.push(`- training pause (ecrm xor): the longest gap between two steps was ${fmt(xor.recoveryStepMs)} ms, ${fmt(xor.recoveryStepMs / xor.medianStepMs, 1)}× the median step: ` +
      `${fmt(beyond)} ms without progress beyond a normal step (${beyond <= xor.medianStepMs ? 'within' : 'more than'} one step)`);
  }
  for (const c of rows.filter((r) => r.label.startsWith('checkpoint') && r.result.failures.length)) {
    lines.push(`- ${c.label} vs ecrm xor: recovery time ${fmt(c.recoveryCostMs)} vs ${fmt(xor.recoveryCostMs)} ms (${fmt(ratio(c.recoveryCostMs, xor.recoveryCostMs), 1)}× faster); ` +
      `time lost ${fmt(c.lostMs)} vs ${fmt(xor.lostMs)} ms (${fmt(ratio(c.lostMs, xor.lostMs), 1)}×); ` +
      `serving again ${fmt(c.serveMs)} vs ${fmt(xor.serveMs)} ms (${fmt(ratio(c.serveMs, xor.serveMs), 1)}×); ` +
      `fully recovered ${fmt(c.recoveryMs)} vs ${fmt(xor.recoveryMs)} ms (${fmt(ratio(c.recoveryMs, xor.recoveryMs), 1)}×); ` +
      `longest pause without progress ${fmt(c.recoveryStepMs)} vs ${fmt(xor.recoveryStepMs)} ms, from the detection ${fmt(c.detectedPauseMs)} vs ${fmt(xor.detectedPauseMs)} ms (median step ${fmt(xor.medianStepMs, 1)} ms)`);
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
