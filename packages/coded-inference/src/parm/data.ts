// Datasets and model outputs for parity training and evaluation: images are gathered by index and
// normalised with the deployed model's own statistics (recorded in its file), and the deployed
// model's outputs are computed once per image, since every k-group reuses them.
import { Tensor } from '@kintsugi/cuda-core';
import { loadFashionMnist, loadMnist, normalization, type ImageDataset, type Module } from '@kintsugi/cuda-core/nn';

export const datasetNames = ['mnist', 'fashion-mnist'] as const;
export type DatasetName = (typeof datasetNames)[number];

export interface Datasets {
  train: ImageDataset;
  test: ImageDataset;
  note: string;
}

export async function loadDatasets(name: DatasetName, dir?: string): Promise<Datasets> {
  if (name === 'mnist') {
    const [train, test] = await Promise.all([loadMnist('train', { dir }), loadMnist('test', { dir })]);
    return { train, test, note: 'MNIST official split (60,000 train / 10,000 test)' };
  }
  const f = await loadFashionMnist({ dir });
  return {
    train: f.train,
    test: f.test,
    note: `Fashion-MNIST, our split: first ${f.testPerClass} valid images per class = test (${f.test.count}), rest = train (${f.train.count}); ${f.skipped.length} malformed entries skipped`,
  };
}

export interface InputSpec {
  mean: number;
  std: number;
  shape: [number, number, number];
}

/** The input normalisation recorded in a deployed model file (kintsugi.input), else the dataset's. */
export function inputSpec(metadata: Record<string, string>, dataset: DatasetName): InputSpec {
  try {
    const i = JSON.parse(metadata['kintsugi.input'] ?? 'null') as { mean?: number; std?: number; shape?: number[] } | null;
    if (i && typeof i.mean === 'number' && typeof i.std === 'number') {
      const s = i.shape && i.shape.length === 3 ? (i.shape as [number, number, number]) : [1, 28, 28] as [number, number, number];
      return { mean: i.mean, std: i.std, shape: s };
    }
  } catch {
    // fall through to the dataset's statistics
  }
  return { ...normalization[dataset], shape: [1, 28, 28] };
}

/** Normalised images `indices` of `ds`, row-major [n, C·H·W]. */
export function gather(ds: ImageDataset, indices: ArrayLike<number>, spec: InputSpec): Float32Array {
  const px = ds.imageShape[0] * ds.imageShape[1] * ds.imageShape[2];
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = (v / 255 - spec.mean) / spec.std;
  const out = new Float32Array(indices.length * px);
  for (let i = 0; i < indices.length; i++) {
    const src = indices[i] * px, dst = i * px;
    for (let p = 0; p < px; p++) out[dst + p] = lut[ds.images[src + p]];
  }
  return out;
}

/** Forward passes in eval mode over [n, C·H·W] inputs in batches; returns [n, classes]. */
export async function forwardAll(model: Module, x: Float32Array, shape: readonly [number, number, number], batch = 500): Promise<Float32Array> {
  model.eval();
  const px = shape[0] * shape[1] * shape[2];
  const n = x.length / px;
  const parts: Float32Array[] = [];
  for (let s = 0; s < n; s += batch) {
    const m = Math.min(batch, n - s);
    const y = await model.forward(new Tensor(x.slice(s * px, (s + m) * px), [m, ...shape]));
    parts.push(y.contiguousData() as Float32Array);
  }
  const classes = parts[0].length / Math.min(batch, n);
  const out = new Float32Array(n * classes);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Translates every image of a row-major [n, C·H·W] batch by its own (dx[i], dy[i]) pixels, filling
 * the uncovered border with `fill` (the normalised value of a blank pixel): the random-shift
 * augmentation digit classifiers train with.
 */
export function shiftImages(x: Float32Array, shape: readonly [number, number, number], dx: ArrayLike<number>, dy: ArrayLike<number>, fill: number): Float32Array {
  const [c, h, w] = shape;
  const px = c * h * w;
  const n = x.length / px;
  if (dx.length !== n || dy.length !== n) throw new RangeError(`Expected one shift per image (${n}) but received ${dx.length} and ${dy.length}`);
  const out = new Float32Array(x.length).fill(fill);
  for (let i = 0; i < n; i++) {
    const sx = dx[i], sy = dy[i];
    const x0 = Math.max(0, sx), x1 = Math.min(w, w + sx);
    if (x1 <= x0) continue;
    for (let ch = 0; ch < c; ch++) {
      for (let y = Math.max(0, sy); y < Math.min(h, h + sy); y++) {
        const dst = i * px + (ch * h + y) * w;
        const src = i * px + (ch * h + y - sy) * w - sx;
        out.set(x.subarray(src + x0, src + x1), dst + x0);
      }
    }
  }
  return out;
}

/** Rows `indices` of a row-major [n, width] array. */
export function rows(a: Float32Array, width: number, indices: ArrayLike<number>): Float32Array {
  const out = new Float32Array(indices.length * width);
  for (let i = 0; i < indices.length; i++) out.set(a.subarray(indices[i] * width, (indices[i] + 1) * width), i * width);
  return out;
}

export function argmaxRows(a: Float32Array, width: number): Int32Array {
  const n = a.length / width;
  const out = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    let best = 0;
    for (let j = 1; j < width; j++) if (a[r * width + j] > a[r * width + best]) best = j;
    out[r] = best;
  }
  return out;
}

/** Most frequent training label: the trivial "default prediction" baseline. */
export function majorityClass(ds: ImageDataset): { label: number; share: number } {
  const counts = new Array(ds.classes).fill(0);
  for (const l of ds.labels) counts[l]++;
  const label = counts.indexOf(Math.max(...counts));
  return { label, share: counts[label] / ds.count };
}
