// `kintsugi ecrm ...`: the fault-tolerance comparison (default), one training run, or a shard
// server for another host.
import { writeFile } from 'node:fs/promises';
import { FileBatches, readCriteoTsv } from './data.js';
import { DLRM_ARCHITECTURES, type DlrmArchitecture } from './model.js';
import { comparisonSummary, comparisonTable, interleavedOverheadTable, runComparison, runInterleavedOverhead, summarize, throughputChart } from './report.js';
import { ShardServer } from './shard.js';
import { randomFailure, trainDlrm, type FtMode } from './train.js';
import { describe } from './validate.js';

const USAGE = `Usage:
  kintsugi ecrm [report] [options]   train DLRM under each fault-tolerance mode with a shard failure;
                                     print the comparison and write a throughput plot (SVG)
  kintsugi ecrm train [options]      one run: --mode none|checkpoint|cpr|ecrm [--code xor|rs|sum]
  kintsugi ecrm overhead [options]   steady-state overhead with the modes' steps interleaved: all
                                     clusters up at once, one step each in turn (--modes: none
                                     first, then ECRM modes; --steps timed rounds, default 300;
                                     --warmup N, default 300: the shard processes' per-step code
                                     takes a few hundred steps to reach V8's optimised tier)
  kintsugi ecrm serve [--host H] [--port P]   a shard server (configured by the trainer over TCP)

Options:
  --steps N            training steps (default 160; --quick: 60)
  --batch N            batch size (default 256)
  --rows N             rows per table, 26 tables (default 2000)
  --dim N              embedding dimension (default 16)
  --arch A             the MLPs: kaggle (DLRM's reference for Criteo Kaggle: bottom 13-512-256-64-16,
                       top 512-256-1; default) or small (one 64-wide hidden layer each)
  --k N                data shards (default 4)
  --seed N             (default 1)
  --fail-step N|random step at which a data shard is killed (default: mid-run, half a
                       checkpoint interval after a checkpoint)
  --fail-server N      which data shard (default 1)
  --fail-when W        step | prepare | after-first-delta (die between steps or inside a push)
  --checkpoint-every N (default 20)
  --modes LIST         comma list of none, checkpoint, checkpoint-tuned, cpr, xor, xor-replicated,
                       rs, sum (default none,checkpoint,checkpoint-tuned,cpr,xor,xor-replicated,rs)
  --repeat N           run the mode list N times, interleaved; report medians (noisy machines)
  --rebuild-range-slots N  slots an ECRM rebuild reads per range (default 16384)
  --rebuild-pause-ms N     pause between a rebuild's ranges (default 0)
  --svg PATH           plot file (default ecrm-throughput.svg)
  --json PATH          also write the measurements as JSON
  --criteo PATH        train on a Criteo Kaggle TSV file instead of synthetic data (train only)
  --quick              a short run
`;

class UsageError extends Error {}

function parse(argv: string[]): { command: string; flags: Map<string, string> } {
  const flags = new Map<string, string>();
  let command = 'report';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') flags.set('help', '1');
    else if (a === '--quick') flags.set('quick', '1');
    else if (a.startsWith('--')) {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`Expected a value for ${a} but received none`);
      flags.set(a.slice(2), v);
      i++;
    } else if (i === 0) command = a;
    else throw new UsageError(`Expected an option for argument ${i + 1} but received ${describe(a)}`);
  }
  return { command, flags };
}

function int(flags: Map<string, string>, name: string, fallback: number, min = 1): number {
  const v = flags.get(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`Expected an integer >= ${min} for --${name} but received ${describe(v)}`);
  return n;
}

function choice<T extends string>(flags: Map<string, string>, name: string, options: readonly T[], fallback: T): T {
  const v = flags.get(name) ?? fallback;
  if (!options.includes(v as T)) throw new UsageError(`Expected one of ${options.join(', ')} for --${name} but received ${describe(v)}`);
  return v as T;
}

export async function ecrmCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
    const { command, flags } = parsed;
    if (flags.has('help')) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (command === 'serve') {
      const shard = await ShardServer.listen(flags.get('host') ?? '127.0.0.1', int(flags, 'port', 0, 0));
      process.stdout.write(`ECRM_LISTENING ${shard.port}\n`);
      await new Promise(() => undefined); // serves until killed
    }
    if (command !== 'report' && command !== 'train' && command !== 'overhead') throw new UsageError(`Expected report, train, overhead or serve for the ecrm command but received ${describe(command)}`);
    const quick = flags.has('quick');
    const steps = int(flags, 'steps', command === 'overhead' ? (quick ? 60 : 300) : quick ? 60 : 160, 8);
    const k = int(flags, 'k', 4, 2);
    const seed = int(flags, 'seed', 1, 0);
    const every = int(flags, 'checkpoint-every', 20);
    const failStepFlag = flags.get('fail-step');
    const failure = failStepFlag === 'random'
      ? randomFailure(steps, k, seed)
      // By default mid-way between two checkpoints: a checkpoint's expected lost work.
      : { step: int(flags, 'fail-step', every * Math.floor(steps / 2 / every) + Math.floor(every / 2), 0), server: int(flags, 'fail-server', 1, 0), when: choice(flags, 'fail-when', ['step', 'prepare', 'after-first-delta'] as const, 'step') };
    if (failure.server >= k) throw new UsageError(`Expected a data shard in [0, ${k - 1}] for --fail-server but received ${failure.server}`);
    const arch = choice(flags, 'arch', Object.keys(DLRM_ARCHITECTURES) as DlrmArchitecture[], 'kaggle');
    const common = { steps, batchSize: int(flags, 'batch', 256), rowsPerTable: int(flags, 'rows', 2000, 2), dim: int(flags, 'dim', 16), arch, k, seed };
    const layers = DLRM_ARCHITECTURES[arch];
    const model = `DLRM ${arch} (bottom 13-${[...layers.bottom, common.dim].join('-')}, top ${[...layers.top, 1].join('-')}; 26 tables × ${common.rowsPerTable} rows × ${common.dim})`;
    if (command === 'overhead') {
      const modes = (flags.get('modes') ?? 'none,xor,xor-replicated,rs,sum').split(',');
      // Steady state: until the servers' per-step code is optimised (a few hundred steps), V8's
      // compiler threads take CPU beside training. Paired runs of none and xor: 20.3% after 20
      // warm-up steps, 13.0% after 300.
      const warmup = int(flags, 'warmup', 300, 0);
      const rows = await runInterleavedOverhead({ ...common, modes, warmup });
      process.stdout.write(`${model}, batch ${common.batchSize}, k = ${k}; ` +
        `${steps} rounds of one step per mode after ${warmup} warm-up steps, no failure\n\n${interleavedOverheadTable(rows)}\n`);
      return 0;
    }
    if (command === 'train') {
      const mode = choice(flags, 'mode', ['none', 'checkpoint', 'cpr', 'ecrm'] as const, 'ecrm') as FtMode;
      const criteo = flags.get('criteo');
      const source = criteo ? new FileBatches(await readCriteoTsv(criteo, { rowsPerTable: common.rowsPerTable }), common.rowsPerTable, common.batchSize) : undefined;
      const result = await trainDlrm({
        ...common, mode, source, code: choice(flags, 'code', ['xor', 'rs', 'sum'] as const, 'xor'), r: int(flags, 'r', 1),
        checkpointEvery: every, failures: mode === 'none' ? [] : [failure],
        onStep: (s) => { if (s.step % 20 === 0) process.stdout.write(`step ${s.step}${s.redo ? ' (redo)' : ''} loss ${s.loss.toFixed(4)} ${s.ms.toFixed(1)} ms\n`); },
      });
      process.stdout.write(comparisonTable([summarize(result)]) + '\n');
      return 0;
    }
    const modes = (flags.get('modes') ?? 'none,checkpoint,checkpoint-tuned,cpr,xor,xor-replicated,rs').split(',');
    const rows = await runComparison({
      ...common, failure, checkpointEvery: every, modes, repeat: int(flags, 'repeat', 1),
      // Absent flags leave the cluster's own defaults in force.
      rebuild: { rangeSlots: flags.has('rebuild-range-slots') ? int(flags, 'rebuild-range-slots', 0) : undefined, pauseMs: flags.has('rebuild-pause-ms') ? int(flags, 'rebuild-pause-ms', 0, 0) : undefined },
      log: (line) => process.stderr.write(line + '\n'),
    });
    const svg = flags.get('svg') ?? 'ecrm-throughput.svg';
    await writeFile(svg, throughputChart(rows));
    process.stdout.write(`${model}, batch ${common.batchSize}, ${steps} steps, k = ${k}; ` +
      `data shard ${failure.server} killed at step ${failure.step} (${failure.when ?? 'step'})\n\n${comparisonTable(rows)}\n\n${comparisonSummary(rows)}\n\nplot: ${svg}\n`);
    const json = flags.get('json');
    if (json) await writeFile(json, JSON.stringify(rows.map(({ result, ...r }) => ({ ...r, failures: result.failures, events: result.events })), null, 2));
    return 0;
  } catch (e) {
    if (e instanceof UsageError || e instanceof TypeError || e instanceof RangeError) {
      process.stderr.write(`${(e as Error).message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}
