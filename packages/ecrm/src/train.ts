// The training harness every fault-tolerance mode runs in: the same model, data, shards and failure
// injection; only what happens on a failure differs.
//   none        no fault tolerance (a failure ends the run)
//   checkpoint  full checkpoint every N steps; on failure everything restarts from the last one and
//               the lost steps are redone
//   cpr         partial recovery: only the failed shard is restored from its checkpoint, the others
//               keep their state and training goes on (its updates since the checkpoint are lost)
//   ecrm        erasure-coded shards: the lost shard is rebuilt from parity while training goes on
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setSpinMicros, spinMicros, Tensor } from '@kintsugi/cuda-core';
import { binaryCrossEntropyWithLogits, Rng } from '@kintsugi/cuda-core/nn';
import type { CodeMode } from './codec.js';
import { EmbeddingCluster, ShardLostError, type ClusterEvent } from './cluster.js';
import { auc, SPARSE_FEATURES, SyntheticCriteo, type BatchSource } from './data.js';
import { DenseAdagrad, DLRM, DLRM_ARCHITECTURES, lookupRows, type DlrmArchitecture } from './model.js';
import type { EmbeddingOptimizer } from './optim.js';
import { integer, oneOf, rangeError } from './validate.js';

export type FtMode = 'none' | 'checkpoint' | 'cpr' | 'ecrm';

export interface Failure {
  step: number;
  /** Server index: data 0..k−1, parity k..k+r−1. */
  server: number;
  /** 'step': killed before the step starts; 'prepare'/'after-first-delta': dies inside the push. */
  when?: 'step' | 'prepare' | 'after-first-delta';
  /** With when 'step': wait for rebuilds under way to finish first (failures one after another,
   * which r = 1 survives only in turn). */
  afterRebuilds?: boolean;
}

export interface TrainOptions {
  mode: FtMode;
  code?: CodeMode;
  r?: number;
  state?: 'encoded' | 'replicated';
  steps: number;
  batchSize?: number;
  rowsPerTable?: number;
  dim?: number;
  /** The MLPs' hidden layers (DLRM_ARCHITECTURES; default 'small'). */
  arch?: DlrmArchitecture;
  k?: number;
  seed?: number;
  lr?: number;
  mlpLr?: number;
  optimizer?: EmbeddingOptimizer;
  checkpointEvery?: number;
  failures?: Failure[];
  /** Held-out batches for the final loss and AUC. */
  evalBatches?: number;
  source?: BatchSource;
  rebuild?: { rangeSlots?: number; pauseMs?: number };
  /** ECRM: late pulls also asked of a standby spare (default true). */
  hedgePulls?: boolean;
  timeoutMs?: number;
  /**
   * How long cuda-core's kernel pool spins between jobs while this job trains (setSpinMicros; the
   * previous setting comes back after). Default 0: the trainer shares the host's cores with its
   * shard processes, and a spinning pool thread holds a core they need during the push.
   */
  poolSpinMicros?: number;
  /** Read back every embedding row and MLP weight at the end (bit-exactness checks). */
  collectParameters?: boolean;
  onStep?: (s: StepRecord) => void;
}

export interface StepRecord {
  step: number;
  /** ms since training started, at the end of the step. */
  t: number;
  ms: number;
  loss: number;
  /** A step redone after a restart from a checkpoint (no new progress). */
  redo: boolean;
}

export interface TrainResult {
  mode: FtMode;
  label: string;
  batchSize: number;
  records: StepRecord[];
  events: ClusterEvent[];
  /**
   * Failures, ms since start. at: detection. servedAt: the lost rows are served again (ECRM: the
   * spare answers, decoding rows not yet rebuilt; checkpoint/CPR: the restarted shards have loaded
   * the checkpoint). resumedAt: fully recovered (ECRM: every row rebuilt and switched over;
   * checkpoint: the lost steps redone, new progress again; CPR: new progress again).
   */
  failures: { at: number; server: number[]; servedAt: number; resumedAt: number; lostSteps: number }[];
  checkpointMs: number;
  checkpoints: number;
  /** How long a rebuild went on after the last step (0: it finished while training ran). */
  rebuildAfterTrainingMs: number;
  /** ECRM: pulls also sent to the standby spare for being late, and those it answered first. */
  hedges: { sent: number; won: number };
  /** CPU per training step, ms: the trainer and every shard process (killed ones' share is lost). */
  cpuMsPerStep: number;
  /** The trainer's share of cpuMsPerStep (the rest is the shard processes'). */
  trainerCpuMsPerStep: number;
  wallMs: number;
  evalLoss: number;
  evalAuc: number;
  embeddings?: Float32Array;
  mlp?: Float32Array[];
  parityConsistent?: boolean;
}

export function modeLabel(o: Pick<TrainOptions, 'mode' | 'code' | 'r' | 'state' | 'k' | 'checkpointEvery'>): string {
  if (o.mode === 'ecrm') return `ecrm ${o.code ?? 'xor'} k=${o.k ?? 4} r=${o.r ?? 1}${o.state === 'replicated' ? ' state=replicated' : ''}`;
  if (o.mode === 'checkpoint' || o.mode === 'cpr') return `${o.mode} every ${o.checkpointEvery ?? 20}`;
  return 'no fault tolerance';
}

/** What a training job runs on: its data, shard cluster, model and dense optimizer. */
interface Job {
  mode: FtMode;
  source: BatchSource;
  cluster: EmbeddingCluster;
  model: DLRM;
  opt: DenseAdagrad;
  steps: number;
  /** Batches loaded ahead, by step (their rows hinted to the cluster). */
  ahead: Map<number, { batch: ReturnType<BatchSource['batch']>; lookup: ReturnType<typeof lookupRows> }>;
  /** The last step whose dense update was taken (a step redone after a failure takes it once). */
  denseStepped: number;
}

/** Checks a job's options and starts its cluster and model. */
async function startJob(options: TrainOptions): Promise<Job> {
  const mode = oneOf(options.mode, 'options.mode', ['none', 'checkpoint', 'cpr', 'ecrm'] as const);
  const steps = integer(options.steps, 'options.steps', 1);
  const k = options.k ?? 4, dim = options.dim ?? 16, seed = options.seed ?? 1;
  const source = options.source ?? new SyntheticCriteo({ rowsPerTable: options.rowsPerTable ?? 2000, batchSize: options.batchSize ?? 256, seed });
  const rows = source.rowsPerTable;
  if (mode === 'checkpoint' || mode === 'cpr') integer(options.checkpointEvery ?? 20, 'options.checkpointEvery', 1);
  const arch = DLRM_ARCHITECTURES[oneOf(options.arch ?? 'small', 'options.arch', Object.keys(DLRM_ARCHITECTURES) as DlrmArchitecture[])];
  // Built before the cluster: a bad option must not leave shard processes behind.
  const model = new DLRM({ dim, seed: seed + 1, bottom: [...arch.bottom], top: [...arch.top] });
  const failures = options.failures ?? [];
  const inPush = failures.find((f) => f.when && f.when !== 'step');
  if (failures.filter((f) => f.when && f.when !== 'step').length > 1) throw rangeError('options.failures', 'at most one failure inside a push', failures.length, true);
  const cluster = await EmbeddingCluster.start({
    totalRows: rows * SPARSE_FEATURES, rowsPerTable: rows, dim, k, seed,
    protection: mode === 'ecrm' ? options.code ?? 'xor' : 'none', r: options.r, state: options.state,
    optimizer: options.optimizer, lr: options.lr ?? 0.05, spares: mode === 'ecrm' ? options.r ?? 1 : mode === 'cpr' ? 1 : 0,
    timeoutMs: options.timeoutMs, rebuild: options.rebuild, hedgePulls: options.hedgePulls,
    crash: inPush ? { shard: inPush.server, step: inPush.step, when: inPush.when as 'prepare' | 'after-first-delta' } : undefined,
  });
  return { mode, source, cluster, model, opt: new DenseAdagrad(model.parameters(), options.mlpLr ?? 0.02), steps, ahead: new Map(), denseStepped: -1 };
}

/**
 * One training step: pull the batch's rows, forward and backward, push the embedding gradients
 * with the dense update taken beside the push. Returns the loss.
 */
async function trainStep(job: Job, step: number): Promise<number> {
  const { cluster, model, opt, source, steps } = job;
  // A batch made ahead of its step, or now.
  const prepared = (s: number) => {
    let p = job.ahead.get(s);
    if (!p) {
      const batch = source.batch(s);
      p = { batch, lookup: lookupRows(batch, source.rowsPerTable) };
      job.ahead.set(s, p);
    }
    return p;
  };
  const { batch, lookup } = prepared(step);
  job.ahead.delete(step);
  const wasRebuilding = cluster.rebuilding;
  const table = await cluster.pull(step, lookup.rows);
  // While a shard is being rebuilt, the rebuilding shard is told the next batch's rows once this
  // pull is answered, and decodes those it lacks while this step computes. That batch was made
  // during the last push, unless this pull found the failure (made here, it held up the handling
  // of every pull's replies: pulls during a rebuild took 1.9–6.6 ms instead of 0.6–2.1 ms).
  const prefetched = cluster.rebuilding && step + 1 < steps;
  if (prefetched) cluster.prefetch(prepared(step + 1).lookup.rows);
  opt.zeroGrad();
  const logits = await model.forward(batch, lookup, table);
  const { loss, grad } = binaryCrossEntropyWithLogits(logits, new Tensor(batch.labels, [batch.size, 1]));
  const tableGrad = await model.backward(grad);
  const pushed = cluster.push(step, lookup.rows, tableGrad);
  // The dense update runs while the shards apply this one (and stage their parity deltas).
  // When an unprotected push fails after it, CPR redoes the step against the restored
  // shard: the dense step already taken for it is not taken again.
  if (job.denseStepped !== step) opt.step();
  job.denseStepped = step;
  // The next batch is made while the shards apply this push (it hides there); while a shard is
  // being rebuilt, the one after it too, for the next pull's hint. Not in the step that found the
  // failure: its push waits for the takeover, whose replies this thread handles.
  if (step + 1 < steps) prepared(step + 1);
  if (wasRebuilding && cluster.rebuilding && step + 2 < steps) prepared(step + 2);
  // Kept by the cluster: a failure this push finds has the replacement decode them at once.
  if (!prefetched && step + 1 < steps) cluster.prefetch(prepared(step + 1).lookup.rows);
  await pushed;
  return loss;
}

/**
 * Runs fn with the kernel pool spinning `micros` between jobs. Measured with the reference MLPs
 * (`kintsugi ecrm overhead --rows 100000`, 3 pairs of runs): xor's overhead 6.8, 6.0 and 5.1 % with
 * no spin against 7.3, 8.5 and 10.8 % with the default 1,000 µs, and its upper quartile 15–17 %
 * against 22–24 %; no-FT's step was no slower.
 */
async function withPoolSpin<T>(micros: number | undefined, fn: () => Promise<T>): Promise<T> {
  const before = spinMicros();
  setSpinMicros(integer(micros ?? 0, 'options.poolSpinMicros', 0, 1_000_000));
  try {
    return await fn();
  } finally {
    setSpinMicros(before);
  }
}

export async function trainDlrm(options: TrainOptions): Promise<TrainResult> {
  return withPoolSpin(options.poolSpinMicros, () => train(options));
}

async function train(options: TrainOptions): Promise<TrainResult> {
  const job = await startJob(options);
  const { mode, source, cluster, model, opt, steps } = job;
  const k = options.k ?? 4;
  const every = options.checkpointEvery ?? 20;
  const failures = [...(options.failures ?? [])];
  const dir = mode === 'checkpoint' || mode === 'cpr' ? await mkdtemp(join(tmpdir(), 'ecrm-ckpt-')) : null;
  const result: TrainResult = {
    mode, label: modeLabel({ ...options, k }), batchSize: source.batch(0).size, records: [], events: cluster.events, failures: [],
    checkpointMs: 0, checkpoints: 0, rebuildAfterTrainingMs: 0, hedges: { sent: 0, won: 0 }, cpuMsPerStep: NaN, trainerCpuMsPerStep: NaN, wallMs: 0, evalLoss: NaN, evalAuc: NaN,
  };
  try {
    let mlpCheckpoint = opt.snapshot(), checkpointStep = 0;
    if (dir) await cluster.checkpoint(dir);
    const cpu0 = process.cpuUsage(), serverCpu0 = await cluster.cpuMs();
    const start = performance.now();
    let step = 0, frontier = 0;
    let pendingRecovery: TrainResult['failures'][number] | null = null;
    while (step < steps) {
      // Each injected failure fires once (a redo after a restart passes its step again).
      for (const f of failures.filter((f) => f.step === step && (f.when ?? 'step') === 'step')) {
        failures.splice(failures.indexOf(f), 1);
        if (f.afterRebuilds) await cluster.rebuilt();
        cluster.kill(f.server);
      }
      const t0 = performance.now();
      try {
        const loss = await trainStep(job, step);
        const t = performance.now() - start;
        const record = { step, t, ms: performance.now() - t0, loss, redo: step < frontier };
        result.records.push(record);
        options.onStep?.(record);
        if (pendingRecovery && !record.redo) {
          pendingRecovery.resumedAt = t;
          pendingRecovery = null;
        }
        step++;
        frontier = Math.max(frontier, step);
        if (dir && step % every === 0 && step < steps) {
          const c0 = performance.now();
          await cluster.checkpoint(dir);
          mlpCheckpoint = opt.snapshot();
          checkpointStep = step;
          result.checkpointMs += performance.now() - c0;
          result.checkpoints++;
        }
      } catch (e) {
        if (!(e instanceof ShardLostError) || !dir) throw e;
        // Failures of an unprotected cluster: a fresh process takes the lost shard's place.
        const failure = { at: performance.now() - start, server: e.servers, servedAt: NaN, resumedAt: NaN, lostSteps: 0 };
        result.failures.push(failure);
        pendingRecovery = failure;
        job.ahead.clear();
        const lostData = e.servers.filter((s) => s < k);
        if (mode === 'checkpoint') {
          // A restart: the whole job relaunches and loads the last checkpoint; lost steps are redone.
          await cluster.restartData();
          await cluster.restore(dir);
          failure.servedAt = performance.now() - start;
          opt.restore(mlpCheckpoint);
          job.denseStepped = -1;
          failure.lostSteps = step - checkpointStep;
          step = checkpointStep;
        } else {
          // CPR: only the lost shard goes back in time (on a spare); this step is redone against it.
          await cluster.replace(e.servers, { restore: true });
          await cluster.restore(dir, lostData);
          failure.servedAt = performance.now() - start;
          failure.lostSteps = step - checkpointStep;
        }
      }
    }
    result.wallMs = performance.now() - start;
    result.hedges = { sent: cluster.hedgesSent, won: cluster.hedgedPulls };
    const cpu = process.cpuUsage(cpu0);
    result.cpuMsPerStep = ((cpu.user + cpu.system) / 1000 + (await cluster.cpuMs()) - serverCpu0) / result.records.length;
    result.trainerCpuMsPerStep = (cpu.user + cpu.system) / 1000 / result.records.length;
    for (const f of cluster.events) if (f.kind === 'failure' && mode === 'ecrm') {
      const serving = cluster.events.find((e) => e.kind === 'serving' && e.server === f.server && e.at >= f.at);
      result.failures.push({ at: f.at - start, server: [f.server], servedAt: serving ? serving.at - start : NaN, resumedAt: NaN, lostSteps: 0 });
    }
    const trainedUntil = performance.now();
    await cluster.rebuilt();
    // Waiting here for a rebuild still under way is no training time: summaries must see it.
    result.rebuildAfterTrainingMs = performance.now() - trainedUntil;
    // ECRM's recovery ends when the rebuilt shard is switched over.
    for (const f of result.failures) if (mode === 'ecrm') {
      const done = cluster.events.find((e) => e.kind === 'rebuild-done' && e.server === f.server[0] && e.at - start >= f.at);
      f.resumedAt = done ? done.at - start : NaN;
    }
    const evaluation = await evaluate(cluster, model, source, options.evalBatches ?? 8, steps);
    result.evalLoss = evaluation.loss;
    result.evalAuc = evaluation.auc;
    if (options.collectParameters) {
      result.embeddings = await cluster.readAll();
      result.mlp = opt.snapshot();
      result.parityConsistent = await cluster.parityConsistent();
    }
    return result;
  } finally {
    await cluster.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Step times of several jobs trained side by side: every job's cluster is up at once and they take
 * turns, one step each, the order rotating every round, so a slow spell of the machine falls on
 * all of them alike (sequential runs on a noisy VM differ by more than the overheads being
 * measured). `warmup` steps each first, then `steps` timed rounds: times[job][round], ms. No
 * failures are injected; checkpointing modes are refused (their checkpoints are not steps).
 */
export async function interleavedStepTimes(jobs: TrainOptions[], steps: number, warmup = 20): Promise<number[][]> {
  return withPoolSpin(jobs[0]?.poolSpinMicros, () => interleaved(jobs, steps, warmup));
}

async function interleaved(jobs: TrainOptions[], steps: number, warmup: number): Promise<number[][]> {
  integer(steps, 'steps', 1);
  integer(warmup, 'warmup', 0);
  for (const [i, o] of jobs.entries()) {
    if (o.mode === 'checkpoint' || o.mode === 'cpr') throw rangeError(`jobs[${i}].mode`, "'none' or 'ecrm' (checkpointing is measured by trainDlrm)", o.mode);
    if (o.failures?.length) throw rangeError(`jobs[${i}].failures`, 'none (steady state only)', o.failures.length);
  }
  const started: Job[] = [];
  try {
    for (const o of jobs) started.push(await startJob({ ...o, steps: warmup + steps }));
    const times = started.map(() => new Array<number>(steps).fill(NaN));
    for (let round = 0; round < warmup + steps; round++) {
      for (let i = 0; i < started.length; i++) {
        const j = (i + round) % started.length;
        const t0 = performance.now();
        await trainStep(started[j], round);
        if (round >= warmup) times[j][round - warmup] = performance.now() - t0;
      }
    }
    return times;
  } finally {
    await Promise.all(started.map((j) => j.cluster.close()));
  }
}

/** Loss and AUC on held-out batches (steps far past training's, so never trained on). */
async function evaluate(cluster: EmbeddingCluster, model: DLRM, source: BatchSource, batches: number, step: number): Promise<{ loss: number; auc: number }> {
  const scores: number[] = [], labels: number[] = [];
  let loss = 0;
  const offset = source instanceof SyntheticCriteo ? 1_000_000 : 0;
  for (let b = 0; b < batches; b++) {
    const batch = source.batch(offset + b);
    const lookup = lookupRows(batch, source.rowsPerTable);
    const table = await cluster.pull(step, lookup.rows);
    const logits = await model.forward(batch, lookup, table);
    loss += binaryCrossEntropyWithLogits(logits, new Tensor(batch.labels, [batch.size, 1])).loss;
    scores.push(...logits.data);
    labels.push(...batch.labels);
  }
  return { loss: loss / batches, auc: auc(scores, labels) };
}

/** A failure at a random step in the middle half of the run, on a random data shard. */
export function randomFailure(steps: number, k: number, seed: number): Failure {
  const rng = new Rng(seed);
  return { step: Math.floor(steps / 4 + rng.next() * (steps / 2)), server: rng.int(k), when: 'step' };
}
